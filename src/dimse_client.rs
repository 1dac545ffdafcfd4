//! What the native DIMSE benchmark clients (`bench cfind`, `bench cstore`) share: the command
//! set elements, opening an association with one presentation context, reading a response's
//! status, and running the associations on threads of their own.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dicom_ul::pdu::{PDataValueType, Pdu};
use dicom_ul::{ClientAssociation, ClientAssociationOptions};

/// One element of a command set (group 0000, Implicit VR Little Endian), padded to even length.
pub(crate) fn element(out: &mut Vec<u8>, e: u16, v: &[u8]) {
    let pad = v.len() % 2;
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&e.to_le_bytes());
    out.extend_from_slice(&((v.len() + pad) as u32).to_le_bytes());
    out.extend_from_slice(v);
    if pad == 1 {
        out.push(0);
    }
}

/// The Status (0000,0900) of a response command set.
pub(crate) fn status(cmd: &[u8]) -> Option<u16> {
    let mut p = 0usize;
    while p + 8 <= cmd.len() {
        let e = u16::from_le_bytes([cmd[p + 2], cmd[p + 3]]);
        let len = u32::from_le_bytes([cmd[p + 4], cmd[p + 5], cmd[p + 6], cmd[p + 7]]) as usize;
        let v = cmd.get(p + 8..p + 8 + len)?;
        if e == 0x0900 && v.len() >= 2 {
            return Some(u16::from_le_bytes([v[0], v[1]]));
        }
        p += 8 + len;
    }
    None
}

/// An association to `addr` proposing `sop_class` in `ts` (TCP_NODELAY set, every wait bounded
/// by `timeout`), and the accepted context's id.
pub(crate) fn connect(
    addr: SocketAddr,
    (calling, called): (&str, &str),
    (sop_class, ts): (&str, &str),
    timeout: Duration,
) -> Result<(ClientAssociation<TcpStream>, u8)> {
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title(calling)
        .called_ae_title(called)
        .with_presentation_context(sop_class, vec![ts])
        .read_timeout(timeout)
        .write_timeout(timeout)
        .establish(addr)
        .context("association")?;
    assoc
        .inner_stream()
        .set_nodelay(true)
        .context("TCP_NODELAY")?;
    let pc = assoc
        .presentation_contexts()
        .first()
        .map(|p| p.id)
        .with_context(|| format!("the {sop_class} context was not accepted"))?;
    Ok((assoc, pc))
}

/// The status of the next response command set on `assoc` (data sets are skipped); `what`
/// names the operation in errors.
pub(crate) fn next_status(assoc: &mut ClientAssociation<TcpStream>, what: &str) -> Result<u16> {
    let mut cmd = Vec::new();
    loop {
        match assoc
            .receive()
            .with_context(|| format!("waiting for a {what} response"))?
        {
            Pdu::PData { data } => {
                for v in data {
                    if v.value_type != PDataValueType::Command {
                        continue;
                    }
                    cmd.extend_from_slice(&v.data);
                    if v.is_last {
                        return status(&cmd)
                            .with_context(|| format!("a {what} response without a status"));
                    }
                }
            }
            other => bail!("unexpected PDU during {what}: {other:?}"),
        }
    }
}

/// Runs `total` operations over `associations` threads, each its share (`work(k, n)`: the
/// association's number and how many), and answers each thread's result in order.
pub(crate) fn on_threads<T: Send>(
    total: usize,
    associations: usize,
    work: impl Fn(usize, usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    std::thread::scope(|s| {
        let work = &work;
        let workers: Vec<_> = (0..associations)
            .map(|k| {
                let n = total / associations + usize::from(k < total % associations);
                s.spawn(move || work(k, n))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a benchmark thread failed")))
            })
            .collect()
    })
}
