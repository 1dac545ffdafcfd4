//! The single writer thread: group commit.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use huren_model::ContentHash;
use tokio::sync::oneshot;

use crate::blobs::{Blobs, INLINE_MAX};
use crate::index::{Index, SledIndex};
use crate::journal::{Entry, IdentityOp, Journal, JournalRecord};
use crate::{Committed, Ingest, Outcome, ReportOutcome, StoreError};

type Reply = oneshot::Sender<Result<Committed, StoreError>>;

/// An ingest with its hashing and serialisation done by the caller's thread, so the single
/// writer only plans, writes and syncs.
struct Prepared {
    original: ContentHash,
    /// `None` when the original is already a durable file ([`crate::Original::Stored`]).
    original_bytes: Option<Arc<Vec<u8>>>,
    reports: Vec<(huren_model::Report, ContentHash, Arc<Vec<u8>>)>,
    identity: Vec<IdentityOp>,
    received_at: String,
    attachments: Vec<(ContentHash, Arc<Vec<u8>>)>,
    instances: Vec<huren_model::InstanceRecord>,
    message_id: Option<String>,
}

struct Job {
    ingest: Prepared,
    reply: Reply,
}

/// Sends work to the writer thread; dropping it stops the writer thread after it finishes
/// what is queued (and waits for it).
pub(crate) struct WriterHandle {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Jobs submitted and not yet taken by the writer (a gauge for `/metrics`).
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// Why the writer refuses every commit, once it does (a failed journal write).
    poisoned: Arc<std::sync::OnceLock<String>>,
}

impl WriterHandle {
    pub(crate) fn submit(
        &self,
        ingest: Ingest,
        instances: Vec<huren_model::InstanceRecord>,
    ) -> Result<oneshot::Receiver<Result<Committed, StoreError>>, StoreError> {
        let original = ingest.original.hash();
        let mut reports = Vec::with_capacity(ingest.reports.len());
        for r in ingest.reports {
            if r.original != original {
                return Err(StoreError::OriginalMismatch {
                    report: r.original,
                    original,
                });
            }
            let bytes = r.to_canonical_json()?;
            let hash = ContentHash::of(&bytes);
            reports.push((r, hash, Arc::new(bytes)));
        }
        let prepared = Prepared {
            original,
            original_bytes: match ingest.original {
                crate::Original::Bytes(h) => Some(Arc::new(h.into_bytes())),
                crate::Original::Stored(_) => None,
            },
            reports,
            identity: ingest.identity,
            received_at: ingest.received_at,
            attachments: ingest
                .attachments
                .into_iter()
                .map(|b| (b.hash(), Arc::new(b.into_bytes())))
                .collect(),
            instances,
            message_id: ingest.message_id,
        };
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(StoreError::WriterGone)?;
        // Counted before it is sent, so the writer never takes more than was counted.
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = tx.send(Job {
            ingest: prepared,
            reply,
        });
        if sent.is_err() {
            self.queued
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return Err(StoreError::WriterGone);
        }
        Ok(rx)
    }

    /// Why the writer refuses commits, if it does.
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poisoned.get().cloned()
    }

    /// Jobs submitted and not yet taken by the writer.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Blob = (ContentHash, Arc<Vec<u8>>);

pub(crate) fn spawn(
    journal: Journal,
    blobs: Blobs,
    index: Arc<SledIndex>,
    next_seq: u64,
    max_batch: usize,
    cache: Option<Arc<crate::ReportCache>>,
    generations: Arc<crate::generations::Generations>,
) -> Result<WriterHandle, StoreError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let taken = queued.clone();
    let poison = Arc::new(std::sync::OnceLock::new());
    let mut w = Writer {
        poison: poison.clone(),
        journal,
        blobs,
        index,
        next_seq,
        poisoned: None,
        cache,
        generations,
    };
    let thread = std::thread::Builder::new()
        .name("huren-store-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < max_batch.max(1) {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                taken.fetch_sub(jobs.len(), std::sync::atomic::Ordering::Relaxed);
                let (n, started) = (jobs.len(), std::time::Instant::now());
                w.group(jobs);
                huren_metrics::global().commit(n, started.elapsed());
            }
        })
        .map_err(|e| StoreError::io(&PathBuf::from("writer thread"), e))?;
    Ok(WriterHandle {
        tx: Some(tx),
        thread: Some(thread),
        queued,
        poisoned: poison,
    })
}

struct Writer {
    /// Shared with the handle: set once when the writer is poisoned.
    poison: Arc<std::sync::OnceLock<String>>,
    journal: Journal,
    blobs: Blobs,
    index: Arc<SledIndex>,
    next_seq: u64,
    poisoned: Option<String>,
    /// The store's parsed-report cache: reports just committed go in, so the next version of
    /// a chain (e.g. the next instance of a study) does not read and parse its head back.
    cache: Option<Arc<crate::ReportCache>>,
    /// Per-person counters, bumped once the index shows a commit.
    generations: Arc<crate::generations::Generations>,
}

/// One job's plan inside a group.
struct Planned {
    reply: Reply,
    committed: Committed,
    entries: Vec<Entry>,
}

impl Writer {
    fn group(&mut self, jobs: Vec<Job>) {
        if let Some(p) = &self.poisoned {
            for j in jobs {
                let _ = j.reply.send(Err(StoreError::Poisoned(p.clone())));
            }
            return;
        }
        // In-group view of what earlier jobs of this group add.
        let mut pending_reports: HashMap<ContentHash, u32> = HashMap::new();
        // Chain key → number of versions it will have after the jobs planned so far.
        let mut pending_chains: HashMap<String, u32> = HashMap::new();
        let mut staged_hashes: HashSet<ContentHash> = HashSet::new();
        let mut staged: Vec<Blob> = Vec::new();
        let mut planned: Vec<Planned> = Vec::new();
        let mut stage_err: Option<String> = None;
        let mut fresh: Vec<(ContentHash, huren_model::Report)> = Vec::new();

        for mut job in jobs {
            match self.plan(
                &job.ingest,
                &mut pending_reports,
                &mut pending_chains,
                &mut staged_hashes,
                &mut staged,
            ) {
                Ok((committed, entries)) => {
                    if self.cache.is_some() {
                        fresh.extend(job.ingest.reports.drain(..).map(|(r, h, _)| (h, r)));
                    }
                    planned.push(Planned {
                        reply: job.reply,
                        committed,
                        entries,
                    })
                }
                Err(e @ (StoreError::Io { .. } | StoreError::Poisoned(_))) => {
                    stage_err = Some(e.to_string());
                    let _ = job.reply.send(Err(e));
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if let Some(e) = stage_err {
            return self.fail_all(planned, &e);
        }
        let entries: Vec<Entry> = planned
            .iter()
            .flat_map(|p| p.entries.iter().cloned())
            .collect();
        if entries.is_empty() {
            // Only duplicates: already durable, nothing to write.
            for p in planned {
                let _ = p.reply.send(Ok(p.committed));
            }
            return;
        }
        // Large blobs are made durable on their own first; small ones ride in the record and
        // stay there (the journal is their home; no file is made for them).
        let (small, large): (Vec<Blob>, Vec<Blob>) =
            staged.into_iter().partition(|(_, b)| b.len() <= INLINE_MAX);
        for (h, b) in &large {
            if let Err(e) = self.blobs.dir.write_synced(h, b) {
                return self.fail_all(planned, &e.to_string());
            }
        }
        let rec = JournalRecord {
            seq: self.next_seq,
            entries,
        };
        self.blobs.dir.add_pending(&small);
        let inline: Vec<(ContentHash, &[u8])> =
            small.iter().map(|(h, b)| (*h, b.as_slice())).collect();
        let at = self.journal.len();
        let located = match self.journal.append(&rec, &inline) {
            Ok(l) => l,
            Err(e) => {
                self.blobs.dir.drop_pending(&small);
                if let StoreError::Poisoned(p) = &e {
                    self.poisoned = Some(p.clone());
                    let _ = self.poison.set(p.clone());
                }
                return self.fail_all(planned, &e.to_string());
            }
        };
        self.next_seq += 1;
        // Durable now. The index is derived: a failure here is repaired by replay at start-up
        // (until then the small blobs stay pending, so they can still be read).
        match self
            .index
            .put_blob_locations(&located)
            .and_then(|_| self.index.apply(&rec, at))
        {
            Ok(persons) => {
                for p in &persons {
                    self.generations.bump(p);
                }
                self.blobs.dir.drop_pending(&small);
                if let Some(c) = &self.cache {
                    for (h, r) in fresh {
                        c.insert(h, Arc::new(r));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, seq = rec.seq, "index update failed; restart replays it")
            }
        }
        for mut p in planned {
            if !p.entries.is_empty() {
                p.committed.seq = rec.seq;
            }
            let _ = p.reply.send(Ok(p.committed));
        }
    }

    fn fail_all(&self, planned: Vec<Planned>, why: &str) {
        tracing::error!(error = why, "group commit failed");
        for p in planned {
            let _ = p.reply.send(Err(StoreError::CommitFailed(why.to_string())));
        }
    }

    fn stage(
        &self,
        hash: ContentHash,
        bytes: &Arc<Vec<u8>>,
        staged_hashes: &mut HashSet<ContentHash>,
        staged: &mut Vec<Blob>,
    ) -> Result<(), StoreError> {
        if staged_hashes.contains(&hash) || self.blobs.exists_sized(&hash, bytes.len())? {
            return Ok(());
        }
        staged.push((hash, bytes.clone()));
        staged_hashes.insert(hash);
        Ok(())
    }

    fn stage_original(
        &self,
        hash: ContentHash,
        bytes: &Option<Arc<Vec<u8>>>,
        staged_hashes: &mut HashSet<ContentHash>,
        staged: &mut Vec<Blob>,
    ) -> Result<(), StoreError> {
        match bytes {
            Some(b) => self.stage(hash, b, staged_hashes, staged),
            None => Ok(()),
        }
    }

    fn plan(
        &self,
        ingest: &Prepared,
        pending_reports: &mut HashMap<ContentHash, u32>,
        pending_chains: &mut HashMap<String, u32>,
        staged_hashes: &mut HashSet<ContentHash>,
        staged: &mut Vec<Blob>,
    ) -> Result<(Committed, Vec<Entry>), StoreError> {
        let original = ingest.original;
        let original_bytes = &ingest.original_bytes;
        let prepared = &ingest.reports;
        let mut entries = Vec::new();
        let mut outcomes = Vec::new();
        let mut identity: Vec<IdentityOp> = Vec::new();
        // (local, claimed person) → the reports filed under it: one claim per pair.
        let mut claims: Vec<(String, String, Vec<ContentHash>)> = Vec::new();
        for (r, hash, bytes) in prepared {
            let hash = *hash;
            if let Some(v) = pending_reports.get(&hash) {
                outcomes.push(ReportOutcome {
                    report: hash,
                    outcome: Outcome::Duplicate,
                    version: *v,
                });
                continue;
            }
            if let Some(m) = self.index.report_meta(&hash)? {
                outcomes.push(ReportOutcome {
                    report: hash,
                    outcome: Outcome::Duplicate,
                    version: m.version,
                });
                continue;
            }
            let chain = r.source.chain_key(r.kind);
            let existing = match pending_chains.get(&chain) {
                Some(n) => *n,
                None => self.index.chain_head(&chain)?.map_or(0, |(v, _)| v),
            };
            let version = existing + 1;
            let outcome = if existing == 0 {
                Outcome::Stored
            } else {
                Outcome::Superseded
            };
            self.stage(hash, bytes, staged_hashes, staged)?;
            self.stage_original(original, original_bytes, staged_hashes, staged)?;
            for (h, b) in &ingest.attachments {
                self.stage(*h, b, staged_hashes, staged)?;
            }
            pending_reports.insert(hash, version);
            pending_chains.insert(chain.clone(), version);
            let local = r.patient.local_key();
            if let Some(nidk) = &r.patient.national_id_key {
                match claims.iter_mut().find(|(l, p, _)| l == &local && p == nidk) {
                    Some(c) => c.2.push(hash),
                    None => claims.push((local.clone(), nidk.clone(), vec![hash])),
                }
            }
            entries.push(Entry::Report {
                hash,
                original,
                kind: r.kind,
                status: r.status,
                chain,
                local,
                institution: r.source.institution.clone(),
                time_ms: r.clinical_time().and_then(time_ms),
                received_at: ingest.received_at.clone(),
                outcome,
            });
            outcomes.push(ReportOutcome {
                report: hash,
                outcome,
                version,
            });
        }
        for (local, person, reports) in claims {
            identity.push(IdentityOp::Claim {
                institution: crate::index::namespace(&local)
                    .unwrap_or_default()
                    .to_string(),
                local,
                person,
                message_id: ingest.message_id.clone(),
                original,
                reports,
                at: ingest.received_at.clone(),
            });
        }
        identity.extend(ingest.identity.iter().cloned());
        for rec in &ingest.instances {
            if rec.original != original {
                return Err(StoreError::OriginalMismatch {
                    report: rec.original,
                    original,
                });
            }
            self.stage_original(original, original_bytes, staged_hashes, staged)?;
            entries.push(Entry::Instance {
                record: Box::new(rec.clone()),
                received_at: ingest.received_at.clone(),
            });
        }
        if !identity.is_empty() || (ingest.reports.is_empty() && !self.blobs.exists(&original)?) {
            if ingest.reports.is_empty() {
                self.stage_original(original, original_bytes, staged_hashes, staged)?;
                entries.push(Entry::Original {
                    hash: original,
                    received_at: ingest.received_at.clone(),
                });
            }
            entries.extend(identity.into_iter().map(Entry::Identity));
        }
        Ok((
            Committed {
                original,
                reports: outcomes,
                seq: 0,
            },
            entries,
        ))
    }
}

/// Milliseconds since the epoch of an RFC 3339 time or a `YYYY-MM-DD` date (UTC midnight).
fn time_ms(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}
