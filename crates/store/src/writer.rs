//! The single writer thread: group commit.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use huren_model::ContentHash;
use tokio::sync::oneshot;

use crate::blobs::{Blobs, INLINE_MAX};
use crate::index::{Index, SledIndex};
use crate::journal::{Entry, Journal, JournalRecord};
use crate::plan::{Blob, PlanView, Planner, Prepared};
use crate::{Committed, Ingest, StoreError};

type Reply = oneshot::Sender<Result<Committed, StoreError>>;

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
        let prepared = Prepared::new(ingest, instances)?;
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

/// The writer's view of what is stored, for the planner.
struct View<'a> {
    index: &'a SledIndex,
    blobs: &'a Blobs,
}

impl PlanView for View<'_> {
    fn report_version(&self, hash: &ContentHash) -> Result<Option<u32>, StoreError> {
        Ok(self.index.report_meta(hash)?.map(|m| m.version))
    }

    fn chain_length(&self, chain: &str) -> Result<u32, StoreError> {
        Ok(self.index.chain_head(chain)?.map_or(0, |(v, _)| v))
    }

    fn has_blob(&self, hash: &ContentHash, len: Option<usize>) -> Result<bool, StoreError> {
        match len {
            Some(len) => self.blobs.exists_sized(hash, len),
            None => self.blobs.exists(hash),
        }
    }
}

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
        let mut planner = Planner::new();
        let mut planned: Vec<Planned> = Vec::new();
        let mut stage_err: Option<String> = None;
        let mut fresh: Vec<(ContentHash, huren_model::Report)> = Vec::new();

        for mut job in jobs {
            let view = View {
                index: &self.index,
                blobs: &self.blobs,
            };
            match planner.plan(&view, &job.ingest) {
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
        let (small, large): (Vec<Blob>, Vec<Blob>) = planner
            .into_staged()
            .into_iter()
            .partition(|(_, b)| b.len() <= INLINE_MAX);
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
}
