//! `huren bench cfind`: C-FIND latency with a native client, over one or more associations.
//!
//! The shared benchmark's C-FIND figure comes from pynetdicom, whose protocol thread polls
//! its socket with 1 ms sleeps and hands each PDU to the caller through queues; most of its
//! ~4 ms per query is the client. This client sends the same query as the shared tool
//! (Study Root, STUDY level, a random `PatientID` of the bench's load set, seven return
//! keys), waits for every pending answer and the final status, and times each query from
//! the request's first byte to the final response. Each association is sequential, like
//! the shared tool's; `-c` runs several at once (as `wrk -c8` does for QIDO). Loopback
//! only; every wait is bounded by the socket timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use dicom_ul::ClientAssociationOptions;
use serde_json::json;

use crate::bench::pct;

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";

/// What one run measures (the `huren bench cfind` arguments).
#[derive(clap::Args)]
pub struct CfindBench {
    /// The DICOM listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:11112")]
    pub addr: SocketAddr,
    /// Our AE title.
    #[arg(long, default_value = "BENCHSCU")]
    pub calling: String,
    /// The server's AE title.
    #[arg(long, default_value = "HUREN")]
    pub called: String,
    /// Queries in total.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub count: usize,
    /// Concurrent associations, each one query at a time.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub associations: usize,
    /// Patients in the load set (IDs PREFIX00000…).
    #[arg(long, default_value_t = 500)]
    pub patients: u64,
    /// Patient ID prefix (the shared tool's load set uses `BENCH`).
    #[arg(long, default_value = "BENCH")]
    pub prefix: String,
    /// Ask for this one Patient ID every time instead.
    #[arg(long)]
    pub patient_id: Option<String>,
    /// Seconds to wait for each response.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

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

/// A C-FIND-RQ command set announcing an identifier.
fn find_rq(message_id: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(96);
    element(&mut body, 0x0002, STUDY_ROOT_FIND.as_bytes());
    element(&mut body, 0x0100, &0x0020u16.to_le_bytes());
    element(&mut body, 0x0110, &message_id.to_le_bytes());
    element(&mut body, 0x0700, &0u16.to_le_bytes());
    element(&mut body, 0x0800, &0u16.to_le_bytes());
    let mut out = Vec::with_capacity(body.len() + 12);
    element(&mut out, 0x0000, &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
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

/// What one association measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    answers: u64,
    failed: u64,
}

/// Runs the benchmark and answers its figures as JSON.
pub fn run(b: CfindBench) -> Result<serde_json::Value> {
    if !b.addr.ip().is_loopback() {
        bail!("refusing {}: the benchmark talks to loopback only", b.addr);
    }
    if b.count == 0 || b.patients == 0 || b.associations == 0 {
        bail!("--count, --patients and --associations must be at least 1");
    }
    let started = Instant::now();
    let tallies: Vec<Result<Tally>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..b.associations)
            .map(|k| {
                let n = b.count / b.associations + usize::from(k < b.count % b.associations);
                let b = &b;
                s.spawn(move || association(b, k as u64, n))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a benchmark thread failed")))
            })
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(b.count);
    let (mut answers, mut failed) = (0u64, 0u64);
    for t in tallies {
        let t = t?;
        lat.extend(t.latencies_us);
        answers += t.answers;
        failed += t.failed;
    }
    lat.sort_unstable();
    Ok(json!({
        "queries": b.count,
        "associations": b.associations,
        "failed": failed,
        "answers_per_query": (answers as f64 / b.count as f64 * 100.0).round() / 100.0,
        "per_sec": (b.count as f64 / secs).round(),
        "p50_ms": pct(&lat, 0.50),
        "p90_ms": pct(&lat, 0.90),
        "p99_ms": pct(&lat, 0.99),
        "max_ms": lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
    }))
}

/// `count` queries, one after another, over one association.
fn association(b: &CfindBench, k: u64, count: usize) -> Result<Tally> {
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title(b.calling.as_str())
        .called_ae_title(b.called.as_str())
        .with_presentation_context(STUDY_ROOT_FIND, vec![IMPLICIT_VR_LE])
        .read_timeout(Duration::from_secs(b.timeout_secs))
        .write_timeout(Duration::from_secs(b.timeout_secs))
        .establish(b.addr)
        .context("association")?;
    assoc
        .inner_stream()
        .set_nodelay(true)
        .context("TCP_NODELAY")?;
    let pc = assoc
        .presentation_contexts()
        .first()
        .map(|p| p.id)
        .context("the Study Root C-FIND context was not accepted")?;
    // xorshift64*: a fixed sequence of patients per association, the same for every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (k + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut t = Tally {
        latencies_us: Vec::with_capacity(count),
        ..Tally::default()
    };
    for i in 0..count {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let pid = match &b.patient_id {
            Some(p) => p.clone(),
            None => format!(
                "{}{:05}",
                b.prefix,
                x.wrapping_mul(0x2545_F491_4F6C_DD1D) % b.patients
            ),
        };
        let keys = [
            (
                tags::QUERY_RETRIEVE_LEVEL,
                VR::CS,
                Some("STUDY".to_string()),
            ),
            (tags::PATIENT_ID, VR::LO, Some(pid)),
            (tags::STUDY_INSTANCE_UID, VR::UI, None),
            (tags::STUDY_DATE, VR::DA, None),
            (tags::ACCESSION_NUMBER, VR::SH, None),
            (tags::MODALITIES_IN_STUDY, VR::CS, None),
            (tags::STUDY_DESCRIPTION, VR::LO, None),
            (tags::PATIENT_NAME, VR::PN, None),
        ];
        let ident = huren_dicom::identifier::write_identifier(&keys, IMPLICIT_VR_LE)?;
        let id = (i % 0xFFFF) as u16 + 1;
        let t0 = Instant::now();
        assoc.send(&Pdu::PData {
            data: vec![
                PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: find_rq(id),
                },
                PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Data,
                    is_last: true,
                    data: ident,
                },
            ],
        })?;
        let mut cmd = Vec::new();
        'query: loop {
            match assoc.receive().context("waiting for a C-FIND response")? {
                Pdu::PData { data } => {
                    for v in data {
                        if v.value_type != PDataValueType::Command {
                            continue;
                        }
                        cmd.extend_from_slice(&v.data);
                        if !v.is_last {
                            continue;
                        }
                        match status(&cmd) {
                            Some(0xFF00 | 0xFF01) => t.answers += 1,
                            Some(0x0000) => break 'query,
                            Some(s) => {
                                t.failed += 1;
                                tracing::warn!(status = format!("{s:04X}"), "C-FIND failed");
                                break 'query;
                            }
                            None => bail!("a C-FIND response without a status"),
                        }
                        cmd.clear();
                    }
                }
                other => bail!("unexpected PDU during C-FIND: {other:?}"),
            }
        }
        t.latencies_us.push(t0.elapsed().as_micros() as u64);
    }
    let _ = assoc.release();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_parses_as_a_command_and_status_is_read() {
        let rq = find_rq(7);
        let c = huren_server::dicom::scp::Command::parse(&rq).expect("a command set");
        assert_eq!((c.field, c.message_id, c.data_set_type), (0x0020, 7, 0));
        assert_eq!(c.sop_class, STUDY_ROOT_FIND);
        let rsp = c.response(0x8020, 0xFF00, None);
        assert_eq!(status(&rsp), Some(0xFF00));
        assert_eq!(status(&c.response(0x8020, 0xA900, Some("x"))), Some(0xA900));
        assert_eq!(status(&rq), None);
    }
}
