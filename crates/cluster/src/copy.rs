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
    /// Identity review decisions copied (each under the id of the cluster's item for the
    /// same claim).
    pub decisions_copied: u64,
    /// Identity review decisions not copied: the cluster has no item for their claim.
    pub decisions_not_copied: u64,
    /// Reports checked after the copy.
    pub reports_verified: u64,
    /// Originals checked after the copy.
    pub originals_verified: u64,
    /// Workflow events (tasks, alerts, cases, roster, the outboxes, consents) appended by
    /// this run, per log.
    pub events_copied: std::collections::BTreeMap<String, u64>,
    /// Workflow events the cluster already had.
    pub events_present: u64,
    /// Audit entries copied by this run (the source's chain, as the cluster chain
    /// `audit_chain`, each entry as it was sealed).
    pub audit_copied: u64,
    /// Audit entries the cluster already had.
    pub audit_present: u64,
    /// The cluster audit chain that holds the source's audit log.
    pub audit_chain: String,
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
                // Its review id is the source's: mapped to the cluster's item when submitted.
                IdentityOp::Resolve { .. } => match out.last_mut() {
                    Some(last) => last.ingest.identity.push(op.clone()),
                    None => report.decisions_not_copied += 1,
                },
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
        for (k, mut r) in ingests.into_iter().enumerate() {
            if r.ingest
                .identity
                .iter()
                .any(|op| matches!(op, IdentityOp::Resolve { .. }))
            {
                // A decision names its review item: the claim that opened it must be
                // committed first, to find the cluster's id of it.
                while let Some((_, last, answer)) = flight.pop_front() {
                    count(&mut report, answer.await?);
                    if last {
                        finished += 1;
                        progress(finished, total);
                    }
                }
                map_decisions(from, to, &mut r.ingest, &mut report).await?;
            }
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
    copy_logs(from.dir(), to, &mut report).await?;
    copy_audit(from.dir(), to, source, &mut report).await?;
    Ok(report)
}

/// The cluster table of a workflow log ([`huren_store::log_events`]).
fn table_of(log: &str) -> Option<crate::Table> {
    use crate::Table;
    Some(match log {
        "tasks" => Table::Tasks,
        "alerts" => Table::Alerts,
        "cases" => Table::Cases,
        "roster" => Table::Roster,
        "outbox" => Table::Outbox,
        "webhooks" => Table::Webhooks,
        "regional" => Table::Regional,
        "consents" => Table::Consents,
        _ => return None,
    })
}

/// The workflow logs: each stream's events the cluster does not have yet are appended after
/// the ones it has (so a copy run again appends nothing), 16 streams at a time; then every
/// stream's length is checked against the source's.
async fn copy_logs<B: BlobBackend + 'static>(
    dir: &std::path::Path,
    to: &ClusterStore<B>,
    report: &mut CopyReport,
) -> Result<(), ClusterError> {
    for (log, events) in huren_store::log_events(dir)? {
        let table = table_of(log).ok_or_else(|| ClusterError::Invalid(log.to_string()))?;
        let t = crate::EventTable::new(to.pool().clone(), table, to.node());
        let mut streams: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        let mut at: std::collections::HashMap<String, usize> = Default::default();
        for (id, v) in events {
            match at.get(&id) {
                Some(&i) => streams[i].1.push(v),
                None => {
                    at.insert(id.clone(), streams.len());
                    streams.push((id, vec![v]));
                }
            }
        }
        let have: std::collections::HashMap<String, i32> = t.lengths().await?.into_iter().collect();
        let results: Vec<Result<(u64, u64), String>> = futures::stream::iter(streams.iter())
            .map(|(id, evs)| {
                let (t, have) = (&t, have.get(id).copied().unwrap_or(0).max(0) as usize);
                async move {
                    if have >= evs.len() {
                        return Ok((0, evs.len() as u64));
                    }
                    let seq = i32::try_from(have + 1).map_err(|_| format!("{id}: too long"))?;
                    match t.append(id, seq, &evs[have..]).await {
                        Ok(crate::Appended::Recorded) => {
                            Ok(((evs.len() - have) as u64, have as u64))
                        }
                        Ok(crate::Appended::Conflict) => Err(format!(
                            "{log} stream {id}: the cluster's stream moved while it was copied"
                        )),
                        Err(e) => Err(format!("{log} stream {id}: {e}")),
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut copied = 0;
        for r in results {
            match r {
                Ok((c, p)) => {
                    copied += c;
                    report.events_present += p;
                }
                Err(e) => report.problems.push(e),
            }
        }
        report.events_copied.insert(log.to_string(), copied);
        let now: std::collections::HashMap<String, i32> = t.lengths().await?.into_iter().collect();
        for (id, evs) in &streams {
            let n = now.get(id).copied().unwrap_or(0).max(0) as usize;
            if n < evs.len() {
                report.problems.push(format!(
                    "{log} stream {id}: the source has {} events, the cluster {n}",
                    evs.len()
                ));
            }
        }
    }
    Ok(())
}

/// Rows of an audit copy per statement.
const AUDIT_BATCH: usize = 1_000;

/// The source's audit log as one cluster chain (`migrated-` and the first 12 hex digits of
/// the BLAKE3 hash of the source's path): each line as it was sealed, so the chain keeps its
/// hashes and `verify_audit` checks it like a node's. Each line is checked (its number, its
/// link, its hash) before it is copied; a copy run again goes on after the chain's last row.
async fn copy_audit<B: BlobBackend + 'static>(
    dir: &std::path::Path,
    to: &ClusterStore<B>,
    source: &str,
    report: &mut CopyReport,
) -> Result<(), ClusterError> {
    let node = format!(
        "migrated-{}",
        &ContentHash::of(source.as_bytes()).hex()[..12]
    );
    report.audit_chain = node.clone();
    let path = dir.join("audit.log");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ClusterError::Invalid(format!("{}: {e}", path.display()))),
    };
    let client = to.pool().get().await?;
    let have: i64 = client
        .query_one(
            "SELECT coalesce(max(seq), 0) FROM audit_records WHERE node = $1",
            &[&node],
        )
        .await?
        .try_get(0)?;
    let mut prev = huren_audit::GENESIS.to_string();
    let mut batch: Vec<(huren_audit::AuditEntry, String)> = Vec::new();
    let mut seq = 0u64;
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        seq += 1;
        let entry = match huren_audit::check_line(line, seq, &prev) {
            Ok(e) => e,
            // A torn last line was never acknowledged.
            Err(_) if i + 1 == lines.len() => break,
            Err(why) => {
                report
                    .problems
                    .push(format!("audit.log line {}: {why}; copied up to it", i + 1));
                break;
            }
        };
        prev = entry.hash.clone();
        if seq as i64 <= have {
            report.audit_present += 1;
            continue;
        }
        batch.push((entry, line.to_string()));
        if batch.len() >= AUDIT_BATCH {
            report.audit_copied += insert_audit(&client, &node, &mut batch).await?;
        }
    }
    report.audit_copied += insert_audit(&client, &node, &mut batch).await?;
    Ok(())
}

/// Inserts a batch of sealed entries into `node`'s chain (emptying it); how many.
async fn insert_audit(
    client: &deadpool_postgres::Object,
    node: &str,
    batch: &mut Vec<(huren_audit::AuditEntry, String)>,
) -> Result<u64, ClusterError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let hash = |h: &str, what: &str| -> Result<Vec<u8>, ClusterError> {
        h.parse::<ContentHash>()
            .map(|c| c.as_bytes().to_vec())
            .map_err(|_| ClusterError::Corrupt(format!("audit {what} {h}")))
    };
    let (mut seqs, mut prevs, mut hashes, mut ats, mut actions, mut actors) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut patients, mut lines, mut persons) = (vec![], vec![], vec![]);
    for (e, line) in batch.iter() {
        seqs.push(e.seq as i64);
        prevs.push((e.seq > 1).then(|| hash(&e.prev, "prev")).transpose()?);
        hashes.push(hash(&e.hash, "hash")?);
        ats.push(e.at.clone());
        actions.push(e.record.action.clone());
        actors.push(e.record.actor.clone());
        patients.push(e.record.patient.clone());
        lines.push(line.as_bytes().to_vec());
        persons.push(
            e.record
                .detail
                .get("persons")
                .filter(|p| p.is_array())
                .map_or_else(|| "[]".to_string(), |p| p.to_string()),
        );
    }
    let n = client
        .execute(
            "INSERT INTO audit_records (node, seq, prev_hash, hash, at, action, actor, patient,
                                        record, persons)
             SELECT $1, s, p, h, a::timestamptz, ac, ar, pa, r, pe::jsonb
             FROM unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::bytea[], $10::text[])
                  WITH ORDINALITY AS u (s, p, h, a, ac, ar, pa, r, pe, o)
             ORDER BY o
             ON CONFLICT DO NOTHING",
            &[
                &node, &seqs, &prevs, &hashes, &ats, &actions, &actors, &patients, &lines, &persons,
            ],
        )
        .await?;
    batch.clear();
    Ok(n)
}

/// Rewrites each decision of `ingest` to the cluster's id of its review item (the item of the
/// same local key, claimed person and message); a decision whose item the cluster lacks is
/// dropped and counted.
async fn map_decisions<B: BlobBackend + 'static>(
    from: &Store,
    to: &ClusterStore<B>,
    ingest: &mut Ingest,
    report: &mut CopyReport,
) -> Result<(), ClusterError> {
    let client = to.pool().get().await?;
    let mut kept = Vec::new();
    for op in std::mem::take(&mut ingest.identity) {
        let IdentityOp::Resolve {
            review,
            decision,
            by,
            reason,
            at,
        } = op
        else {
            kept.push(op);
            continue;
        };
        let Some(item) = from.identity_review(&review)? else {
            report.decisions_not_copied += 1;
            continue;
        };
        let original = item.original.map(|h| h.as_bytes().to_vec());
        let found: Option<String> = client
            .query_opt(
                "SELECT id FROM identity_reviews
                 WHERE local_key = $1 AND claimed = $2
                   AND original IS NOT DISTINCT FROM $3
                 ORDER BY id LIMIT 1",
                &[&item.local, &item.claimed, &original],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        match found {
            Some(id) => {
                report.decisions_copied += 1;
                kept.push(IdentityOp::Resolve {
                    review: id,
                    decision,
                    by,
                    reason,
                    at,
                });
            }
            None => report.decisions_not_copied += 1,
        }
    }
    ingest.identity = kept;
    Ok(())
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
