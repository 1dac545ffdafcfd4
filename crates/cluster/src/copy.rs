//! `huren migrate`: copies an embedded store into the cluster back end. The journal is
//! replayed in order as the ingests it recorded (each original with its reports, attachments,
//! DICOM instance records and identity changes), through the cluster's own group commit, so
//! every version keeps its number. Resumable: the last journal record whose ingests are all
//! committed is kept in `store_copies`, and a copy started again goes on from there (a record
//! committed twice is answered as duplicates). Verified: every report of the source is read
//! back from the cluster (its JSON checked against its hash) with the same chain and version,
//! and every original is in the object store.

use std::collections::VecDeque;

use futures::StreamExt;

use huren_model::{ContentHash, Hashed, InstanceRecord};
use huren_store::{Entry, IdentityOp, Ingest, JournalRecord, ReportBackend, Store};
use serde::Serialize;

use crate::blobs::BlobBackend;
use crate::store::{ClusterError, ClusterStore};

/// Ingests in flight at once during a copy.
const WINDOW: usize = 512;

/// What a copy did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    /// Journal records in the source.
    pub records: u64,
    /// Records already copied by an earlier run (skipped).
    pub resumed_after: u64,
    /// Ingests committed to the cluster by this run.
    pub ingests: u64,
    /// Reports newly stored or added as versions by this run.
    pub reports_copied: u64,
    /// Reports the cluster already had.
    pub reports_present: u64,
    /// Identity review decisions not copied (the cluster cannot record them yet).
    pub decisions_not_copied: u64,
    /// Reports checked after the copy.
    pub reports_verified: u64,
    /// Originals checked after the copy.
    pub originals_verified: u64,
    /// Disagreements found by the check; empty means the copy is whole.
    pub problems: Vec<String>,
}

/// One ingest rebuilt from a journal record.
struct Rebuilt {
    ingest: Ingest,
    instances: Vec<InstanceRecord>,
}

fn missing(what: &str, hash: &ContentHash, seq: u64) -> ClusterError {
    ClusterError::Corrupt(format!(
        "source journal record {seq}: {what} {hash} is not in the source store"
    ))
}

/// The ingests a journal record recorded, in order.
fn rebuild(
    from: &Store,
    rec: &JournalRecord,
    report: &mut CopyReport,
) -> Result<Vec<Rebuilt>, ClusterError> {
    let mut out: Vec<Rebuilt> = Vec::new();
    let open = |out: &mut Vec<Rebuilt>, original: ContentHash, received_at: &str| {
        let fresh = out
            .last()
            .is_none_or(|r| r.ingest.original.hash() != original);
        if fresh {
            let bytes = from
                .blob(&original)?
                .ok_or_else(|| missing("original", &original, rec.seq))?;
            out.push(Rebuilt {
                ingest: Ingest {
                    original: Hashed::new(bytes).into(),
                    received_at: received_at.to_string(),
                    ..Ingest::default()
                },
                instances: vec![],
            });
        }
        Ok::<_, ClusterError>(())
    };
    for e in &rec.entries {
        match e {
            Entry::Report {
                hash,
                original,
                received_at,
                ..
            } => {
                open(&mut out, *original, received_at)?;
                let r = from
                    .report(hash)?
                    .ok_or_else(|| missing("report", hash, rec.seq))?;
                let last = out.last_mut().ok_or(ClusterError::WriterGone)?;
                for a in &r.attachments {
                    if last.ingest.attachments.iter().all(|h| h.hash() != *a) {
                        let bytes = from
                            .blob(a)?
                            .ok_or_else(|| missing("attachment", a, rec.seq))?;
                        last.ingest.attachments.push(Hashed::new(bytes));
                    }
                }
                last.ingest.reports.push(r);
            }
            Entry::Instance {
                record,
                received_at,
            } => {
                open(&mut out, record.original, received_at)?;
                if let Some(last) = out.last_mut() {
                    last.instances.push((**record).clone());
                }
            }
            Entry::Original { hash, received_at } => open(&mut out, *hash, received_at)?,
            Entry::Identity(op) => match op {
                // A claim with reports is made again from the reports themselves; its message
                // ID rides on the ingest.
                IdentityOp::Claim {
                    original,
                    message_id,
                    reports,
                    at,
                    ..
                } => {
                    open(&mut out, *original, at)?;
                    let last = out.last_mut().ok_or(ClusterError::WriterGone)?;
                    last.ingest.message_id = message_id.clone();
                    if reports.is_empty() {
                        last.ingest.identity.push(op.clone());
                    }
                }
                IdentityOp::Link { .. } | IdentityOp::Merge { .. } => match out.last_mut() {
                    Some(last) => last.ingest.identity.push(op.clone()),
                    None => {
                        return Err(ClusterError::Corrupt(format!(
                            "source journal record {}: an identity change without its message",
                            rec.seq
                        )))
                    }
                },
                IdentityOp::Resolve { .. } => report.decisions_not_copied += 1,
            },
        }
    }
    Ok(out)
}

/// Copies `from` into `to` (a store made with `stop_after_failure`), resuming after the last
/// record an earlier run copied under `source`; calls `progress(done, total)` as records
/// complete; then checks the copy.
pub async fn copy_store<B: BlobBackend + 'static>(
    from: &Store,
    to: &ClusterStore<B>,
    source: &str,
    mut progress: impl FnMut(u64, u64),
) -> Result<CopyReport, ClusterError> {
    let records = from.journal_records()?;
    let mut report = CopyReport {
        records: records.len() as u64,
        ..CopyReport::default()
    };
    let client = to.pool().get().await?;
    let done: i64 = client
        .query_opt("SELECT seq FROM store_copies WHERE source = $1", &[&source])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    report.resumed_after = done as u64;
    let save = |seq: u64| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO store_copies (source, seq) VALUES ($1, $2)
                     ON CONFLICT (source) DO UPDATE
                     SET seq = GREATEST(store_copies.seq, excluded.seq), updated_at = now()",
                    &[&source, &(seq as i64)],
                )
                .await
        }
    };
    let total = records.len() as u64;
    let mut finished = records.iter().filter(|r| r.seq <= done as u64).count() as u64;
    progress(finished, total);
    // In flight: (the record's seq, whether this is its last ingest, the answer).
    let mut flight = VecDeque::new();
    let mut saved_at = std::time::Instant::now();
    for rec in records.iter().filter(|r| r.seq > done as u64) {
        let ingests = rebuild(from, rec, &mut report)?;
        let n = ingests.len();
        if n == 0 {
            finished += 1;
            continue;
        }
        for (k, r) in ingests.into_iter().enumerate() {
            flight.push_back((rec.seq, k + 1 == n, to.submit(r.ingest, r.instances)?));
            if flight.len() >= WINDOW {
                let (seq, last, answer) = flight.pop_front().ok_or(ClusterError::WriterGone)?;
                count(&mut report, answer.await?);
                if last {
                    finished += 1;
                    progress(finished, total);
                    if saved_at.elapsed().as_secs() >= 2 {
                        save(seq).await?;
                        saved_at = std::time::Instant::now();
                    }
                }
            }
        }
    }
    let mut last_seq = None;
    while let Some((seq, last, answer)) = flight.pop_front() {
        count(&mut report, answer.await?);
        if last {
            finished += 1;
            last_seq = Some(seq);
            progress(finished, total);
        }
    }
    if let Some(seq) = last_seq.or(records.last().map(|r| r.seq)) {
        save(seq).await?;
    }
    verify_copy(from, to, &records, &mut report).await?;
    Ok(report)
}

fn count(report: &mut CopyReport, c: huren_store::Committed) {
    report.ingests += 1;
    for r in c.reports {
        if r.outcome == huren_store::Outcome::Duplicate {
            report.reports_present += 1;
        } else {
            report.reports_copied += 1;
        }
    }
}

/// Every report of the source read back from the cluster (hash-checked) with its chain and
/// version; every original present in the object store. 16 reads at a time.
async fn verify_copy<B: BlobBackend + 'static>(
    from: &Store,
    to: &ClusterStore<B>,
    records: &[JournalRecord],
    report: &mut CopyReport,
) -> Result<(), ClusterError> {
    let mut originals = std::collections::HashSet::new();
    let mut reports = Vec::new();
    for rec in records {
        for e in &rec.entries {
            if let Entry::Report { hash, original, .. } = e {
                originals.insert(*original);
                reports.push((*hash, from.report_meta(hash)?));
            }
        }
    }
    report.reports_verified = reports.len() as u64;
    report.originals_verified = originals.len() as u64;
    let problems: Vec<Option<String>> = futures::stream::iter(reports)
        .map(|(hash, want)| async move {
            let got = match to.report(hash).await {
                Ok(Some(_)) => match to.report_meta(hash).await {
                    Ok(m) => m,
                    Err(e) => return Some(format!("report {hash}: {e}")),
                },
                Ok(None) => None,
                Err(e) => return Some(format!("report {hash}: {e}")),
            };
            match (want, got) {
                (Some(w), Some(g)) if (&w.chain, w.version) == (&g.chain, g.version) => None,
                (w, g) => Some(format!(
                    "report {hash}: source has {:?}, cluster has {:?}",
                    w.map(|m| (m.chain, m.version)),
                    g.map(|m| (m.chain, m.version))
                )),
            }
        })
        .buffer_unordered(16)
        .chain(
            futures::stream::iter(originals)
                .map(|o| async move {
                    match to.blobs().exists(o).await {
                        Ok(true) => None,
                        Ok(false) => Some(format!("original {o} is not in the object store")),
                        Err(e) => Some(format!("original {o}: {e}")),
                    }
                })
                .buffer_unordered(16),
        )
        .collect()
        .await;
    report.problems.extend(problems.into_iter().flatten());
    Ok(())
}
