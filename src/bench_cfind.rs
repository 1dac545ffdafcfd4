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

use anyhow::{bail, Result};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use serde_json::json;

use crate::bench::pct;
use crate::dimse_client::{connect, element, next_status, on_threads};

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
    let tallies = on_threads(b.count, b.associations, |k, n| association(&b, k as u64, n))?;
    let secs = started.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(b.count);
    let (mut answers, mut failed) = (0u64, 0u64);
    for t in tallies {
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
    let (mut assoc, pc) = connect(
        b.addr,
        (&b.calling, &b.called),
        (STUDY_ROOT_FIND, IMPLICIT_VR_LE),
        Duration::from_secs(b.timeout_secs),
    )?;
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
        loop {
            match next_status(&mut assoc, "C-FIND")? {
                0xFF00 | 0xFF01 => t.answers += 1,
                0x0000 => break,
                s => {
                    t.failed += 1;
                    tracing::warn!(status = format!("{s:04X}"), "C-FIND failed");
                    break;
                }
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
    use crate::dimse_client::status;

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
