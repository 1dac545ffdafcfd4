//! `huren bench cstore`: C-STORE throughput and per-instance response latency with a native
//! client, over one or more associations.
//!
//! storescu reports no latency per instance, so this client times each C-STORE from the
//! request's first byte to its response (success `0000` required). Each association sends
//! CT slices (the project's fixture, ~1 KB of pixels, Explicit VR Little Endian) of one study
//! of its own, one at a time, with fresh UIDs per run. Loopback only; every wait is bounded
//! by the socket timeout.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use serde_json::json;

use crate::bench::pct;
use crate::dimse_client::{connect, element, next_status, on_threads};

/// What one run measures (the `huren bench cstore` arguments).
#[derive(clap::Args)]
pub struct CstoreBench {
    /// The DICOM listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:11112")]
    pub addr: SocketAddr,
    /// Our AE title (the server must know it).
    #[arg(long, default_value = "BENCHSCU")]
    pub calling: String,
    /// The server's AE title.
    #[arg(long, default_value = "HUREN")]
    pub called: String,
    /// Instances in total.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub count: usize,
    /// Concurrent associations, each one instance at a time.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub associations: usize,
    /// Seconds to wait for each response.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// A C-STORE-RQ command set announcing a data set.
fn store_rq(message_id: u16, class: &str, instance: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(160);
    element(&mut body, 0x0002, class.as_bytes());
    element(&mut body, 0x0100, &0x0001u16.to_le_bytes());
    element(&mut body, 0x0110, &message_id.to_le_bytes());
    element(&mut body, 0x0700, &0u16.to_le_bytes());
    element(&mut body, 0x0800, &0u16.to_le_bytes());
    element(&mut body, 0x1000, instance.as_bytes());
    let mut out = Vec::with_capacity(body.len() + 12);
    element(&mut out, 0x0000, &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Runs the benchmark and answers its figures as JSON.
pub fn run(b: CstoreBench) -> Result<serde_json::Value> {
    if !b.addr.ip().is_loopback() {
        bail!("refusing {}: the benchmark talks to loopback only", b.addr);
    }
    if b.count == 0 || b.associations == 0 {
        bail!("--count and --associations must be at least 1");
    }
    // Fresh UIDs per run: a UID root of this process and time (at most 64 characters with
    // the association, series and instance numbers).
    let run = format!(
        "{}.{}.{}",
        huren_dicom::fixtures::UID_ROOT,
        std::process::id() % 100_000,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let started = Instant::now();
    let tallies = on_threads(b.count, b.associations, |k, n| {
        association(&b, &format!("{run}.{k}"), n)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(b.count);
    let (mut failed, mut bytes) = (0u64, 0u64);
    for (l, f, n) in tallies {
        lat.extend(l);
        failed += f;
        bytes += n;
    }
    lat.sort_unstable();
    Ok(json!({
        "instances": b.count,
        "associations": b.associations,
        "failed": failed,
        "bytes_per_instance": bytes / b.count as u64,
        "per_sec": (b.count as f64 / secs).round(),
        "p50_ms": pct(&lat, 0.50),
        "p90_ms": pct(&lat, 0.90),
        "p99_ms": pct(&lat, 0.99),
        "max_ms": lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
    }))
}

/// `count` instances of study `study`, one after another, over one association: each
/// latency (µs), the failures and the data-set bytes sent.
fn association(b: &CstoreBench, study: &str, count: usize) -> Result<(Vec<u64>, u64, u64)> {
    let class = huren_dicom::fixtures::CT_IMAGE;
    let ts = huren_dicom::EXPLICIT_VR_LE;
    let (mut assoc, pc) = connect(
        b.addr,
        (&b.calling, &b.called),
        (class, ts),
        Duration::from_secs(b.timeout_secs),
    )?;
    let (mut lat, mut failed, mut bytes) = (Vec::with_capacity(count), 0u64, 0u64);
    let pid = format!("CS{}", study.rsplit('.').next().unwrap_or("0"));
    for i in 0..count {
        let o =
            huren_dicom::fixtures::ct_slice(study, &pid, "基准^测试", i as u32 + 1, "ISO_IR 192");
        let sop = format!("{study}.1.{}", i + 1);
        let data = huren_dicom::fixtures::encode(&o, ts);
        bytes += data.len() as u64;
        let id = (i % 0xFFFF) as u16 + 1;
        let t0 = Instant::now();
        assoc.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: store_rq(id, class, &sop),
            }],
        })?;
        {
            let mut w = assoc.send_pdata(pc);
            w.write_all(&data).context("sending the data set")?;
            w.finish().context("sending the data set")?;
        }
        match next_status(&mut assoc, "C-STORE")? {
            0x0000 => {}
            s => {
                failed += 1;
                tracing::warn!(status = format!("{s:04X}"), "C-STORE failed");
            }
        }
        lat.push(t0.elapsed().as_micros() as u64);
    }
    let _ = assoc.release();
    Ok((lat, failed, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse_client::status;

    #[test]
    fn the_request_parses_as_a_store_command_and_status_is_read() {
        let rq = store_rq(9, huren_dicom::fixtures::CT_IMAGE, "1.2.3.4");
        let c = huren_server::dicom::scp::Command::parse(&rq).expect("a command set");
        assert_eq!((c.field, c.message_id, c.data_set_type), (0x0001, 9, 0));
        assert_eq!(c.sop_class, huren_dicom::fixtures::CT_IMAGE);
        let rsp = c.response(0x8001, 0x0000, None);
        assert_eq!(status(&rsp), Some(0x0000));
        assert_eq!(status(&c.response(0x8001, 0xA700, Some("x"))), Some(0xA700));
    }
}
