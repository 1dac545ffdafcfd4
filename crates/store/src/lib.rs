//! huren's durable store.
//!
//! *Files are the source of truth*: every commit is a checksummed record in the append-only
//! `journal.log`, and blobs (originals, canonical reports) are named by their BLAKE3 hash.
//! A blob of at most 1 MiB travels inside its journal record and lives there (read back by
//! position); a larger one is a file `objects/ab/cdef…`. One writer thread group-commits
//! everything that is waiting: large blobs written to temp files, synced and renamed into
//! place, then one journal record appended and `fdatasync`ed; only then is any caller
//! answered. The sled index ([`index`]) is derived: it is brought up to date from the journal
//! at start-up and can be rebuilt from scratch with [`Store::reindex`].

mod alerts;
pub mod backend;
mod blobs;
mod cases;
mod consents;
mod error;
pub mod events;
pub mod feed;
pub mod generations;
pub mod index;
mod journal;
mod jsonl;
mod outbox;
pub mod plan;
mod roster;
pub mod shared;
mod spool;
mod streams;
mod tasks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use huren_model::{ContentHash, Hashed, InstanceRecord, PatientId, Report, ReportKind};
use serde::{Deserialize, Serialize};

pub use alerts::{AlertStore, AlertStoreError};
pub use backend::ReportBackend;
pub use blobs::BlobDir;
pub use cases::{CaseStore, CaseStoreError};
pub use consents::ConsentStore;
pub use error::StoreError;
pub use events::{EventSink, Lease};
pub use index::{IdentityLink, Index, ReportMeta, SeriesRow, SledIndex, StudyRow};
pub use index::{ReviewItem, ReviewState};
pub use journal::{Entry, IdentityOp, JournalRecord, ReviewDecision};
pub use outbox::{Enqueue, Outbox, OutboxEntry, OutboxError, OutboxEvent, OutboxState};
pub use roster::{RosterEdit, RosterLog};
pub use shared::{CommitFuture, SharedReports};
pub use spool::{Spool, StoredFile};
pub use tasks::{TaskError, TaskStore};

/// What happened to one report handed to [`Store::commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// New logical report (first version).
    Stored,
    /// The same report (same canonical hash) is already stored; nothing changed.
    Duplicate,
    /// A new version of a report already known by its source key.
    Superseded,
}

/// The result for one report of a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportOutcome {
    /// Content hash of the report's canonical JSON.
    pub report: ContentHash,
    /// What happened.
    pub outcome: Outcome,
    /// Version number in its chain (1 = first).
    pub version: u32,
}

/// Everything one inbound message adds: its original bytes, the reports made from it and any
/// identity changes. Committed atomically: all of it is durable, or none of it is recorded.
#[derive(Clone, Debug, Default)]
pub struct Ingest {
    /// The original as received: its bytes with their hash, or a file already made durable.
    pub original: Original,
    /// Normalised reports (their `original` must be the hash of `original`).
    pub reports: Vec<Report>,
    /// Identity cross-reference changes (links, merges).
    pub identity: Vec<IdentityOp>,
    /// When the gateway received the message (RFC 3339).
    pub received_at: String,
    /// Further blobs the reports name (ECG waveforms, rendered previews), stored with them.
    pub attachments: Vec<Hashed>,
    /// The sender's ID of the message (HL7 MSH-10), kept with the identity claims it makes.
    pub message_id: Option<String>,
}

/// An ingest's original: bytes the commit stores, or a blob a [`Spool`] already made a
/// durable file (a large data set never held in memory whole).
#[derive(Clone, Debug)]
pub enum Original {
    /// The bytes, stored by the commit.
    Bytes(Hashed),
    /// Already durable; the commit records it.
    Stored(StoredFile),
}

impl Original {
    /// The original's hash.
    pub fn hash(&self) -> ContentHash {
        match self {
            Original::Bytes(h) => h.hash(),
            Original::Stored(f) => f.hash(),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Original::Bytes(h) => h.bytes().len() as u64,
            Original::Stored(f) => f.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Original {
    fn default() -> Self {
        Original::Bytes(Hashed::default())
    }
}

impl From<Hashed> for Original {
    fn from(h: Hashed) -> Self {
        Original::Bytes(h)
    }
}

impl From<Vec<u8>> for Original {
    fn from(b: Vec<u8>) -> Self {
        Original::Bytes(Hashed::new(b))
    }
}

impl From<&[u8]> for Original {
    fn from(b: &[u8]) -> Self {
        Original::Bytes(Hashed::from(b))
    }
}

/// The durable answer to an [`Ingest`].
#[derive(Clone, Debug, Serialize)]
pub struct Committed {
    /// Hash of the original bytes.
    pub original: ContentHash,
    /// One outcome per report, in order.
    pub reports: Vec<ReportOutcome>,
    /// Journal sequence number of the group commit that holds it (0 when nothing new).
    pub seq: u64,
}

/// One log's events as a cluster's table holds them: `(stream, event)` in order.
pub type LogEvents = Vec<(String, serde_json::Value)>;

/// The workflow logs of an embedded store, each as the cluster's event table holds it
/// (`(stream, event)` in order), for `huren migrate`: `tasks`, `alerts`, `cases`, `roster`,
/// `outbox`, `webhooks`, `regional` and `consents`. Reads the files only (a store no process
/// serves).
pub fn log_events(dir: impl AsRef<Path>) -> Result<Vec<(&'static str, LogEvents)>, StoreError> {
    let dir = dir.as_ref();
    Ok(vec![
        ("tasks", tasks::file_events(dir)?),
        ("alerts", alerts::file_events(dir)?),
        ("cases", cases::file_events(dir)?),
        ("roster", roster::file_events(dir)?),
        ("outbox", outbox::file_events(dir, "outbox.log")?),
        ("webhooks", outbox::file_events(dir, "webhooks.log")?),
        ("regional", outbox::file_events(dir, "regional.log")?),
        ("consents", consents::file_events(dir)?),
    ])
}

/// The outboxes' channel names (see [`Store::outbox_channel`]).
pub const OUTBOX_CHANNELS: [&str; 3] = ["hl7", "webhook", "regional"];

/// A position in the journal for a follower ([`Store::records_after`]): the last record it
/// has seen and a file offset at or before the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalCursor {
    /// Sequence number of the last record seen (0: none).
    pub seq: u64,
    /// Where to read on.
    pub offset: u64,
}

/// Tuning for the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most ingests in one group commit.
    pub max_batch: usize,
    /// Secret for national-ID keys (see [`huren_model::national_id_key`]).
    pub national_id_secret: String,
    /// Parsed reports kept in memory (reports are immutable by hash, so the cache is never
    /// stale); 0 disables it.
    pub report_cache: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch: 1024,
            national_id_secret: String::new(),
            report_cache: 200_000,
        }
    }
}

/// A handle on an open store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    back: Back,
    options: StoreOptions,
    cache: Option<Arc<ReportCache>>,
    generations: Arc<generations::Generations>,
    tasks: TaskStore,
    roster: RosterLog,
    alerts: AlertStore,
    outbox: Outbox,
    webhooks: Outbox,
    regional: Outbox,
    cases: CaseStore,
}

/// Where the reports live.
enum Back {
    /// The journal, the blob files and the sled index of this machine.
    Embedded {
        blobs: blobs::Blobs,
        index: Arc<SledIndex>,
        writer: writer::WriterHandle,
    },
    /// A cluster's shared store (issue 19). The node's own directory keeps only what is
    /// local to it: spooled originals on their way to the commit, and rendered previews.
    Shared {
        reports: Arc<dyn SharedReports>,
        local: blobs::BlobDir,
        previews: quick_cache::sync::Cache<String, ContentHash>,
    },
}

/// The event tables a cluster node's workflow logs write to ([`Store::open_shared`]).
pub struct SharedSinks {
    /// Reading tasks.
    pub tasks: Arc<dyn EventSink>,
    /// Roster edits.
    pub roster: Arc<dyn EventSink>,
    /// Alerts.
    pub alerts: Arc<dyn EventSink>,
    /// Chest-pain cases.
    pub cases: Arc<dyn EventSink>,
    /// Signed results to the institutions.
    pub outbox: Arc<dyn EventSink>,
    /// Alert notices to webhooks.
    pub webhooks: Arc<dyn EventSink>,
    /// Shared documents to the regional platform.
    pub regional: Arc<dyn EventSink>,
}

/// Parsed reports by hash (immutable, so never stale).
pub(crate) type ReportCache = quick_cache::sync::Cache<ContentHash, Arc<Report>>;

/// What [`Store::resolve_identity_review`] did.
#[derive(Clone, Debug, Serialize)]
pub struct ReviewResolution {
    /// The item as resolved.
    pub review: ReviewItem,
    /// The local key that moved (only with an accepted claim that changed its person).
    pub moved_local: Option<String>,
    /// The person the local key belonged to before.
    pub from: String,
    /// The person it belongs to now.
    pub to: String,
    /// The current reports that moved with it.
    pub moved_reports: Vec<ContentHash>,
}

/// Result of [`Store::verify`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: u64,
    /// Journal records read.
    pub journal_records: u64,
    /// Reports named by the journal.
    pub reports: u64,
    /// Problems found; empty means healthy.
    pub problems: Vec<String>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, repairs a torn journal tail, brings the
    /// index up to date with the journal and starts the writer thread.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let blob_dir = blobs::BlobDir::open(dir.join("objects"))?;
        let journal_path = dir.join("journal.log");
        let mut index = Arc::new(SledIndex::open(dir.join("index"))?);
        if !index.format_is_current()? {
            // Written by an older layout: the index is derived, so rebuild it from the journal.
            tracing::info!(
                format = index::INDEX_FORMAT,
                "index is in an older format; rebuilding it from the journal"
            );
            drop(index);
            let idx_dir = dir.join("index");
            std::fs::remove_dir_all(&idx_dir).map_err(|e| StoreError::io(&idx_dir, e))?;
            index = Arc::new(SledIndex::open(&idx_dir)?);
        }
        // The journal is read from the last record the index applied (all of it when the
        // index does not say where that is, e.g. after `reindex` of an older store).
        let (applied, applied_at) = index.applied()?;
        let (journal, decoded) =
            journal::Journal::open(journal_path.clone(), applied_at.map(|at| (applied, at)))?;
        // Small blobs are read from the journal. A store of the older layout may hold a torn
        // file for a blob of a record after its last checkpoint: remove it (the journal has
        // the bytes) so that `verify` stays clean.
        let checkpoint = blobs::Checkpoint::new(&dir);
        let cp = checkpoint.read();
        let mut removed = 0usize;
        for d in decoded.iter().filter(|d| d.record.seq > cp) {
            for b in &d.inline {
                if blob_dir.remove_if_torn(&b.hash)? {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed torn blob files; the journal holds their bytes"
            );
            blob_dir.sync_all()?;
        }
        let last_seq = decoded.last().map(|d| d.record.seq).unwrap_or(0);
        if last_seq > cp {
            checkpoint.write(last_seq)?;
        }
        let mut replayed = 0usize;
        for d in decoded.iter().filter(|d| d.record.seq > applied) {
            index.put_blob_locations(&d.inline)?;
            index.apply(&d.record, d.start)?;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(replayed, "index was behind the journal; replayed the tail");
            index.flush()?;
        } else if let Some(last) = decoded.last().filter(|_| applied_at.is_none()) {
            // An index of an earlier version knew the sequence number only: note where the
            // record is, so the next open reads from there.
            if last.record.seq == applied {
                index.set_applied(applied, last.start)?;
            }
        }
        let blobs = blobs::Blobs::new(
            blob_dir,
            index.clone(),
            Arc::new(journal::JournalReader::open(journal_path)?),
        );
        let next_seq = last_seq + 1;
        let cache =
            (options.report_cache > 0).then(|| Arc::new(ReportCache::new(options.report_cache)));
        let generations = Arc::new(generations::Generations::new());
        let tasks = TaskStore::open(&dir)?;
        let roster = RosterLog::open(&dir)?;
        let alerts = AlertStore::open(&dir)?;
        let outbox = Outbox::open(&dir)?;
        let webhooks = Outbox::open_file(&dir, "webhooks.log")?;
        let regional = Outbox::open_file(&dir, "regional.log")?;
        let cases = CaseStore::open(&dir)?;
        let writer = writer::spawn(
            journal,
            blobs.clone(),
            index.clone(),
            next_seq,
            options.max_batch,
            cache.clone(),
            generations.clone(),
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                back: Back::Embedded {
                    blobs,
                    index,
                    writer,
                },
                cache,
                options,
                generations,
                tasks,
                roster,
                alerts,
                outbox,
                webhooks,
                regional,
                cases,
            }),
        })
    }

    /// A cluster node's store (issue 19): reports on `reports`, the workflow logs on the
    /// event tables `sinks` (each loaded and folded now). `dir` is the node's own directory,
    /// for what stays local to it (spooled originals, rendered previews).
    pub fn open_shared(
        dir: impl AsRef<Path>,
        options: StoreOptions,
        reports: Arc<dyn SharedReports>,
        sinks: SharedSinks,
    ) -> Result<Store, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let local = blobs::BlobDir::open(dir.join("objects"))?;
        let cache =
            (options.report_cache > 0).then(|| Arc::new(ReportCache::new(options.report_cache)));
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                generations: reports.generations(),
                back: Back::Shared {
                    reports,
                    local,
                    previews: quick_cache::sync::Cache::new(4096),
                },
                cache,
                options,
                tasks: TaskStore::shared(sinks.tasks)?,
                roster: RosterLog::shared(sinks.roster)?,
                alerts: AlertStore::shared(sinks.alerts)?,
                outbox: Outbox::shared(sinks.outbox)?,
                webhooks: Outbox::shared(sinks.webhooks)?,
                regional: Outbox::shared(sinks.regional)?,
                cases: CaseStore::shared(sinks.cases)?,
            }),
        })
    }

    /// Whether this is a cluster node's store ([`Store::open_shared`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.back, Back::Shared { .. })
    }

    /// The embedded parts, or the error for an operation only the embedded store has.
    fn embedded(
        &self,
        what: &str,
    ) -> Result<(&blobs::Blobs, &Arc<SledIndex>, &writer::WriterHandle), StoreError> {
        match &self.inner.back {
            Back::Embedded {
                blobs,
                index,
                writer,
            } => Ok((blobs, index, writer)),
            Back::Shared { .. } => Err(StoreError::Shared(format!(
                "{what} is the embedded store's; a cluster node has no journal"
            ))),
        }
    }

    /// Submits to whichever back end: the answer to await.
    fn submit(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
    ) -> Result<CommitFuture, StoreError> {
        match &self.inner.back {
            Back::Embedded { writer, .. } => {
                let rx = writer.submit(ingest, instances)?;
                Ok(Box::pin(async move {
                    rx.await.map_err(|_| StoreError::WriterGone)?
                }))
            }
            Back::Shared { reports, local, .. } => {
                // A spooled original is streamed from the node's file by the shared store.
                let spooled = match &ingest.original {
                    Original::Stored(f) => Some(local.path(&f.hash())),
                    Original::Bytes(_) => None,
                };
                let fut = reports.submit(ingest, instances, spooled.clone())?;
                Ok(Box::pin(async move {
                    let c = fut.await?;
                    if let Some(p) = spooled {
                        // Stored in the shared store now; the node's copy is not needed.
                        let _ = std::fs::remove_file(p);
                    }
                    Ok(c)
                }))
            }
        }
    }

    /// Blocking form of [`Store::submit`]'s answer.
    fn submit_blocking(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
    ) -> Result<Committed, StoreError> {
        match &self.inner.back {
            Back::Embedded { writer, .. } => writer
                .submit(ingest, instances)?
                .blocking_recv()
                .map_err(|_| StoreError::WriterGone)?,
            Back::Shared { .. } => {
                let fut = self.submit(ingest, instances)?;
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => tokio::task::block_in_place(|| h.block_on(fut)),
                    Err(_) => tokio::runtime::Builder::new_current_thread()
                        .build()
                        .map_err(|e| StoreError::Shared(format!("runtime: {e}")))?
                        .block_on(fut),
                }
            }
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Commits one ingest durably (group commit). Returns only after the journal record that
    /// holds it has been synced, so an acknowledgement may follow.
    pub async fn commit(&self, ingest: Ingest) -> Result<Committed, StoreError> {
        self.submit(ingest, vec![])?.await
    }

    /// Blocking form of [`Store::commit`], for the CLI and tests outside a runtime.
    pub fn commit_blocking(&self, ingest: Ingest) -> Result<Committed, StoreError> {
        self.submit_blocking(ingest, vec![])
    }

    /// Commits a DICOM ingest: the instance's original, the new version of its study
    /// report and the instance records (C-FIND / QIDO keys) in one group commit.
    pub async fn commit_instances(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
    ) -> Result<Committed, StoreError> {
        self.submit(ingest, instances)?.await
    }

    /// Blocking form of [`Store::commit_instances`].
    pub fn commit_instances_blocking(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
    ) -> Result<Committed, StoreError> {
        self.submit_blocking(ingest, instances)
    }

    /// The latest record of a SOP instance.
    pub fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.instance(sop_instance_uid),
            Back::Shared { reports, .. } => reports.instance(sop_instance_uid),
        }
    }

    /// A study's rows on the shared store: folded from its instances as received.
    fn shared_study(
        reports: &dyn SharedReports,
        study_uid: &str,
    ) -> Result<Option<(StudyRow, Vec<SeriesRow>)>, StoreError> {
        Ok(index::study_rows(&reports.instances_of_study(study_uid)?))
    }

    /// A study's query row.
    pub fn study(&self, study_uid: &str) -> Result<Option<StudyRow>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.study(study_uid),
            Back::Shared { reports, .. } => {
                Ok(Self::shared_study(&**reports, study_uid)?.map(|(s, _)| s))
            }
        }
    }

    /// Studies of a DICOM Patient ID, or every study when `patient_id` is `None`.
    pub fn studies(&self, patient_id: Option<&str>) -> Result<Vec<StudyRow>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.studies(patient_id),
            Back::Shared { reports, .. } => {
                let all = reports.instances_of_studies(patient_id)?;
                let mut out = Vec::new();
                for study in all.chunk_by(|a, b| a.study_instance_uid == b.study_instance_uid) {
                    if let Some((st, _)) = index::study_rows(study) {
                        // The row's Patient ID is its first instance's, as in the index.
                        if patient_id.is_none_or(|p| st.patient_id == p) {
                            out.push(st);
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// The series of a study.
    pub fn series_of_study(&self, study_uid: &str) -> Result<Vec<SeriesRow>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.series_of_study(study_uid),
            Back::Shared { reports, .. } => Ok(Self::shared_study(&**reports, study_uid)?
                .map(|(_, s)| s)
                .unwrap_or_default()),
        }
    }

    /// The latest records of a study's instances.
    pub fn instances_of_study(&self, study_uid: &str) -> Result<Vec<InstanceRecord>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.instances_of_study(study_uid),
            Back::Shared { reports, .. } => {
                let mut out = reports.instances_of_study(study_uid)?;
                out.sort_by(|a, b| {
                    (a.series_number, &a.series_instance_uid, a.instance_number).cmp(&(
                        b.series_number,
                        &b.series_instance_uid,
                        b.instance_number,
                    ))
                });
                Ok(out)
            }
        }
    }

    /// The reading tasks (`tasks.log`).
    pub fn tasks(&self) -> &TaskStore {
        &self.inner.tasks
    }

    /// The roster edits (`roster.log`).
    pub fn roster(&self) -> &RosterLog {
        &self.inner.roster
    }

    /// Marks a person's cached answers stale (an alert on their critical value was answered).
    pub fn bump_person(&self, person: &str) {
        self.inner.generations.bump(person);
    }

    /// The alerts (`alerts.log`).
    pub fn alerts(&self) -> &AlertStore {
        &self.inner.alerts
    }

    /// The outbound messages (`outbox.log`).
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// The least free space of the data directory's file system with which a node reports
    /// itself ready (`/readyz`): 256 MiB.
    pub const READY_MIN_FREE: u64 = 256 << 20;

    /// Whether this store can take writes: its writer is not poisoned (a failed journal
    /// write refuses every later commit) and its file system has at least
    /// [`Store::READY_MIN_FREE`] bytes free. `Err` says why not.
    pub fn ready(&self) -> Result<(), String> {
        match &self.inner.back {
            Back::Embedded { writer, .. } => {
                if let Some(p) = writer.poisoned() {
                    return Err(format!("the store refuses writes: {p}"));
                }
            }
            Back::Shared { reports, .. } => reports.ready()?,
        }
        match rustix::fs::statvfs(&self.inner.dir) {
            Ok(s) => {
                let free = s.f_bavail.saturating_mul(s.f_frsize);
                if free < Self::READY_MIN_FREE {
                    return Err(format!(
                        "{} MiB free in the data directory (fewer than {})",
                        free >> 20,
                        Self::READY_MIN_FREE >> 20
                    ));
                }
                Ok(())
            }
            Err(e) => Err(format!("cannot read the data directory's file system: {e}")),
        }
    }

    /// Ingest jobs waiting for the writer (a gauge for `/metrics`).
    pub fn commit_queue(&self) -> usize {
        match &self.inner.back {
            Back::Embedded { writer, .. } => writer.queued(),
            Back::Shared { reports, .. } => reports.queued(),
        }
    }

    /// The chest-pain cases (`cases.log`).
    pub fn cases(&self) -> &CaseStore {
        &self.inner.cases
    }

    /// The alert notifications for webhooks (`webhooks.log`).
    pub fn webhooks(&self) -> &Outbox {
        &self.inner.webhooks
    }

    /// The shared documents for the regional platform (`regional.log`).
    pub fn regional(&self) -> &Outbox {
        &self.inner.regional
    }

    /// An outbox by its channel name ([`OUTBOX_CHANNELS`]): `hl7` (signed results to the
    /// institutions), `webhook` (alert notices), `regional` (shared documents).
    pub fn outbox_channel(&self, channel: &str) -> Option<&Outbox> {
        match channel {
            "hl7" => Some(self.outbox()),
            "webhook" => Some(self.webhooks()),
            "regional" => Some(self.regional()),
            _ => None,
        }
    }

    /// A temporary file of the store to receive a large original into (see [`Spool`]).
    pub fn spool(&self) -> Result<Spool, StoreError> {
        match &self.inner.back {
            Back::Embedded { blobs, .. } => Spool::create(blobs.dir.clone()),
            Back::Shared { local, .. } => Spool::create(local.clone()),
        }
    }

    /// Reads a blob by hash.
    pub fn blob(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.inner.back {
            Back::Embedded { blobs, .. } => blobs.read(hash),
            Back::Shared { reports, .. } => reports.blob(hash),
        }
    }

    /// A derived blob (e.g. a rendered preview) cached under `key` by
    /// [`Store::put_cached_blob`]; `None` when absent or when the file no longer holds the
    /// bytes its hash names (the caller makes it again).
    /// On a cluster node the cache is the node's own (its directory, keys in memory).
    pub fn cached_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (h, bytes) = match &self.inner.back {
            Back::Embedded { blobs, index, .. } => {
                let Some(h) = index.cache_get(key)? else {
                    return Ok(None);
                };
                (h, blobs.read(&h)?)
            }
            Back::Shared {
                local, previews, ..
            } => {
                let Some(h) = previews.get(key) else {
                    return Ok(None);
                };
                (h, local.read_file(&h)?)
            }
        };
        Ok(bytes.filter(|b| ContentHash::of(b) == h))
    }

    /// Keeps a derived blob under a cache key: the blob is written like any other
    /// (content-addressed, synced, renamed) and the key → hash entry goes into the index
    /// only (no journal record: a cache entry is never needed for recovery, and
    /// `huren reindex` forgets it).
    pub fn put_cached_blob(&self, key: &str, bytes: &[u8]) -> Result<ContentHash, StoreError> {
        let h = ContentHash::of(bytes);
        match &self.inner.back {
            Back::Embedded { blobs, index, .. } => {
                blobs.dir.write_synced(&h, bytes)?;
                index.cache_put(key, &h)?;
            }
            Back::Shared {
                local, previews, ..
            } => {
                local.write_synced(&h, bytes)?;
                previews.insert(key.to_string(), h);
            }
        }
        Ok(h)
    }

    /// Reads and decodes a report by hash.
    pub fn report(&self, hash: &ContentHash) -> Result<Option<Report>, StoreError> {
        Ok(self.report_shared(hash)?.map(|r| (*r).clone()))
    }

    /// Like [`Store::report`], shared: served from the in-memory cache when possible.
    pub fn report_shared(&self, hash: &ContentHash) -> Result<Option<Arc<Report>>, StoreError> {
        if let Some(r) = self.inner.cache.as_ref().and_then(|c| c.get(hash)) {
            return Ok(Some(r));
        }
        let index = match &self.inner.back {
            Back::Embedded { index, .. } => index,
            Back::Shared { reports, .. } => {
                let r = reports.report(hash)?.map(Arc::new);
                if let (Some(c), Some(r)) = (&self.inner.cache, &r) {
                    c.insert(*hash, r.clone());
                }
                return Ok(r);
            }
        };
        match index.report_meta(hash)? {
            None => Ok(None),
            Some(_) => match self.blob(hash)? {
                None => Err(StoreError::MissingBlob(*hash)),
                Some(b) => {
                    let r: Arc<Report> = Arc::new(
                        serde_json::from_slice(&b)
                            .map_err(|e| StoreError::Corrupt(format!("report {hash}: {e}")))?,
                    );
                    if let Some(c) = &self.inner.cache {
                        c.insert(*hash, r.clone());
                    }
                    Ok(Some(r))
                }
            },
        }
    }

    /// Index metadata of a report (status, chain, version, superseded-by).
    pub fn report_meta(&self, hash: &ContentHash) -> Result<Option<ReportMeta>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.report_meta(hash),
            Back::Shared { reports, .. } => reports.report_meta(hash),
        }
    }

    /// All versions of a logical report, oldest first.
    pub fn versions(&self, chain_key: &str) -> Result<Vec<ContentHash>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.chain(chain_key),
            Back::Shared { reports, .. } => reports.versions(chain_key),
        }
    }

    /// The newest version of a logical report and its version number; reads one index entry
    /// however long the chain is.
    pub fn chain_head(&self, chain_key: &str) -> Result<Option<(u32, ContentHash)>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.chain_head(chain_key),
            Back::Shared { reports, .. } => reports.chain_head(chain_key),
        }
    }

    /// Resolves a user-written patient identifier to the person key the index uses.
    pub fn person_key(&self, id: &PatientId) -> Result<String, StoreError> {
        match id {
            PatientId::National(nid) => Ok(huren_model::national_id_key(
                &self.inner.options.national_id_secret,
                nid,
            )),
            PatientId::Local {
                institution,
                local_id,
            } => {
                let local = format!("{institution}:{local_id}");
                match &self.inner.back {
                    Back::Embedded { index, .. } => index.person_of(&local),
                    Back::Shared { reports, .. } => reports.person_of(&local),
                }
            }
        }
    }

    /// A counter that moves whenever a commit may change the reports of `person` (a key
    /// from [`Store::person_key`]). Read it before [`Store::patient_reports`]: an answer
    /// derived from that read is current while the counter has not moved.
    pub fn person_generation(&self, person: &str) -> u64 {
        self.inner.generations.get(person)
    }

    /// The patient's current reports (latest version of each chain), newest first, across
    /// every institution linked to the same person. `kind` filters when given.
    pub fn patient_reports(
        &self,
        id: &PatientId,
        kind: Option<ReportKind>,
    ) -> Result<(IdentityLink, Vec<ReportMeta>), StoreError> {
        let person = self.person_key(id)?;
        let link = IdentityLink::of_person(&person);
        let metas = self.reports_of_person(&person, kind)?;
        Ok((link, metas))
    }

    fn reports_of_person(
        &self,
        person: &str,
        kind: Option<ReportKind>,
    ) -> Result<Vec<ReportMeta>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.reports_of_person(person, kind),
            Back::Shared { reports, .. } => reports.reports_of_person(person, kind),
        }
    }

    /// A person's current reports (latest version of each chain), newest first, by person
    /// key (as [`Store::person_key`] gives it).
    pub fn person_reports(&self, person: &str) -> Result<Vec<ReportMeta>, StoreError> {
        self.reports_of_person(person, None)
    }

    /// Identity review items (the open ones only when `open_only`), oldest first.
    pub fn identity_reviews(&self, open_only: bool) -> Result<Vec<ReviewItem>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.reviews(open_only),
            Back::Shared { reports, .. } => reports.identity_reviews(open_only),
        }
    }

    /// One identity review item.
    pub fn identity_review(&self, id: &str) -> Result<Option<ReviewItem>, StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.review(id),
            Back::Shared { reports, .. } => Ok(reports
                .identity_reviews(false)?
                .into_iter()
                .find(|r| r.id == id)),
        }
    }

    /// Decides an open identity review item: a journal record (the decision, with who and
    /// why, is also kept as a blob) applied by the index like every identity op.
    /// [`ReviewDecision::KeepExisting`] leaves every link as it is and lifts the
    /// identity-uncertain mark of the claim's reports (they belong to the existing person);
    /// [`ReviewDecision::AcceptClaim`] relinks the review's one local key to the claimed
    /// person — with all of that local key's reports, and nothing else. Returns what moved.
    pub async fn resolve_identity_review(
        &self,
        id: &str,
        decision: ReviewDecision,
        by: &str,
        reason: &str,
    ) -> Result<ReviewResolution, StoreError> {
        let ingest = self.resolution_ingest(id, decision, by, reason)?;
        let c = self.commit(ingest).await?;
        self.resolution_of(id, c.seq)
    }

    /// Blocking form of [`Store::resolve_identity_review`].
    pub fn resolve_identity_review_blocking(
        &self,
        id: &str,
        decision: ReviewDecision,
        by: &str,
        reason: &str,
    ) -> Result<ReviewResolution, StoreError> {
        let ingest = self.resolution_ingest(id, decision, by, reason)?;
        let c = self.commit_blocking(ingest)?;
        self.resolution_of(id, c.seq)
    }

    fn resolution_ingest(
        &self,
        id: &str,
        decision: ReviewDecision,
        by: &str,
        reason: &str,
    ) -> Result<Ingest, StoreError> {
        let item = self
            .identity_review(id)?
            .ok_or_else(|| StoreError::ReviewNotFound(id.to_string()))?;
        if item.state != ReviewState::Open {
            return Err(StoreError::ReviewClosed(id.to_string()));
        }
        let at = chrono::Utc::now().to_rfc3339();
        let op = IdentityOp::Resolve {
            review: id.to_string(),
            decision,
            by: by.to_string(),
            reason: reason.to_string(),
            at: at.clone(),
        };
        let bytes = serde_json::to_vec(&serde_json::json!({"identity_resolution": &op}))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Ingest {
            original: bytes.as_slice().into(),
            identity: vec![op],
            received_at: at,
            ..Default::default()
        })
    }

    /// What the resolution committed in record `seq` did (an error when another resolution
    /// of the same item came first).
    fn resolution_of(&self, id: &str, seq: u64) -> Result<ReviewResolution, StoreError> {
        let item = self
            .identity_review(id)?
            .ok_or_else(|| StoreError::ReviewNotFound(id.to_string()))?;
        let ReviewState::Resolved {
            decision,
            from,
            seq: s,
            ..
        } = &item.state
        else {
            return Err(StoreError::Corrupt(format!(
                "identity review {id}: resolution committed in record {seq} but not applied"
            )));
        };
        if *s != seq {
            return Err(StoreError::ReviewClosed(id.to_string()));
        }
        let moved = *decision == ReviewDecision::AcceptClaim && *from != item.claimed;
        let moved_reports = if moved {
            match &self.inner.back {
                Back::Embedded { index, .. } => index.reports_of_local(&item.local)?,
                Back::Shared { reports, .. } => reports.reports_of_local(&item.local)?,
            }
            .into_iter()
            .map(|m| m.hash)
            .collect()
        } else {
            vec![]
        };
        Ok(ReviewResolution {
            moved_local: moved.then(|| item.local.clone()),
            from: from.clone(),
            to: if moved {
                item.claimed.clone()
            } else {
                from.clone()
            },
            moved_reports,
            review: item,
        })
    }

    /// Re-hashes every blob (files and journal-resident) and checks that journal, blobs and
    /// index agree.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let (blobs, index, _) = self.embedded("`verify` of a data directory")?;
        let mut rep = VerifyReport::default();
        let (bad, n) = blobs.dir.verify_all()?;
        rep.blobs_checked = n;
        rep.problems.extend(bad);
        let (decoded, bytes, valid) =
            journal::Journal::read_decoded(&self.inner.dir.join("journal.log"))?;
        // Zeros after the last record are the block padding of a direct append.
        if valid < bytes.len() && bytes[valid..].iter().any(|b| *b != 0) {
            rep.problems.push(format!(
                "journal.log: {} bytes from byte {valid} on do not decode as records",
                bytes.len() - valid
            ));
        }
        rep.journal_records = decoded.len() as u64;
        for d in &decoded {
            let rec = &d.record;
            for b in &d.inline {
                rep.blobs_checked += 1;
                let actual = bytes
                    .get(b.start..b.start + b.len)
                    .map(ContentHash::of)
                    .ok_or_else(|| StoreError::Corrupt("inline blob outside journal".into()))?;
                if actual != b.hash {
                    rep.problems.push(format!(
                        "journal seq {}: inline blob {} has content {actual}",
                        rec.seq, b.hash
                    ));
                }
                match index.blob_location(&b.hash)? {
                    None => rep.problems.push(format!(
                        "blob {} (journal seq {}) has no location in the index",
                        b.hash, rec.seq
                    )),
                    Some(loc) if loc != (b.start as u64, b.len) => {
                        if let Err(e) = blobs.read(&b.hash) {
                            rep.problems.push(format!("blob {}: {e}", b.hash));
                        }
                    }
                    Some(_) => {}
                }
            }
            for e in &rec.entries {
                for h in e.blobs() {
                    if !blobs.exists(&h)? {
                        rep.problems
                            .push(format!("journal seq {} names missing blob {h}", rec.seq));
                    }
                }
                if let Entry::Report { hash, .. } = e {
                    rep.reports += 1;
                    if index.report_meta(hash)?.is_none() {
                        rep.problems.push(format!(
                            "report {hash} (journal seq {}) not in index",
                            rec.seq
                        ));
                    }
                }
            }
        }
        let applied = index.applied_seq()?;
        let last = decoded.last().map(|d| d.record.seq).unwrap_or(0);
        if applied != last {
            rep.problems.push(format!(
                "index applied up to seq {applied}, journal ends at seq {last}"
            ));
        }
        Ok(rep)
    }

    /// Every journal record, oldest first: what `huren migrate` copies. Meant for a store no
    /// server is writing to (a record being appended is not read).
    pub fn journal_records(&self) -> Result<Vec<JournalRecord>, StoreError> {
        self.embedded("the journal")?;
        journal::Journal::read_all(&self.inner.dir.join("journal.log"))
    }

    /// Where the journal's committed records end now: the last record the index applied
    /// (durable, answered or about to be) and its offset. A follower that starts here sees
    /// only what is committed later.
    pub fn journal_end(&self) -> Result<JournalCursor, StoreError> {
        if let Back::Shared { reports, .. } = &self.inner.back {
            return Ok(JournalCursor {
                seq: reports.commit_position()?,
                offset: 0,
            });
        }
        let (seq, at) = self.embedded("the journal")?.1.applied()?;
        Ok(JournalCursor {
            seq,
            offset: at.unwrap_or(0),
        })
    }

    /// A journal follower's saved cursor (`<name>.cursor` in the store directory), `None`
    /// before its first save. On a cluster node the cursor is the shared store's
    /// (`SharedReports::follower_position`) and its `seq` a commit position.
    pub fn follower_cursor(&self, name: &str) -> Result<Option<JournalCursor>, StoreError> {
        if let Back::Shared { reports, .. } = &self.inner.back {
            return Ok(reports
                .follower_position(name)?
                .map(|seq| JournalCursor { seq, offset: 0 }));
        }
        let path = self.inner.dir.join(format!("{name}.cursor"));
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Saves a journal follower's cursor whole: a new file synced, renamed over the old one,
    /// the directory synced. A crash leaves the old cursor or the new one.
    pub fn save_follower_cursor(&self, name: &str, c: JournalCursor) -> Result<(), StoreError> {
        if let Back::Shared { reports, .. } = &self.inner.back {
            return reports.save_follower_position(name, c.seq);
        }
        use std::io::Write as _;
        let dir = &self.inner.dir;
        let path = dir.join(format!("{name}.cursor"));
        let tmp = dir.join(format!("{name}.cursor.tmp"));
        let bytes = serde_json::to_vec(&c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
        journal::sync_dir(dir)
    }

    /// The committed journal records after `cursor` (those with a greater sequence number),
    /// oldest first, reading about `max_bytes` of the journal, and the cursor after them; no
    /// records when nothing new is committed. Only records the index has applied are
    /// returned: nothing a crash could still take back. Runs beside the writer. On a cluster
    /// node: the reports committed after the cursor's position, one record per commit
    /// (`SharedReports::committed_after`).
    pub fn records_after(
        &self,
        cursor: JournalCursor,
        max_bytes: usize,
    ) -> Result<(Vec<JournalRecord>, JournalCursor), StoreError> {
        if let Back::Shared { reports, .. } = &self.inner.back {
            let (records, seq) = reports.committed_after(cursor.seq)?;
            return Ok((records, JournalCursor { seq, offset: 0 }));
        }
        let (applied, _) = self.embedded("the journal")?.1.applied()?;
        if applied <= cursor.seq {
            return Ok((Vec::new(), cursor));
        }
        let path = self.inner.dir.join("journal.log");
        let mut at = cursor.offset;
        loop {
            let (decoded, end) = journal::Journal::read_from(&path, at, max_bytes)?;
            if decoded.is_empty() {
                if at == 0 {
                    return Err(StoreError::Corrupt(format!(
                        "journal: record {} is applied but not readable",
                        cursor.seq + 1
                    )));
                }
                // Not a record boundary (a cursor from another journal): read from the start,
                // skipping what the cursor says is done.
                at = 0;
                continue;
            }
            let mut out = Vec::new();
            let mut next = JournalCursor {
                seq: cursor.seq,
                offset: at,
            };
            let ends: Vec<u64> = decoded
                .iter()
                .skip(1)
                .map(|d| d.start)
                .chain(std::iter::once(end))
                .collect();
            for (d, end) in decoded.into_iter().zip(ends) {
                if d.record.seq > applied {
                    break;
                }
                next.offset = end;
                if d.record.seq > cursor.seq {
                    next.seq = d.record.seq;
                    out.push(d.record);
                }
            }
            return Ok((out, next));
        }
    }

    /// Flushes the sled index (it is derived, so this is an optimisation, not a guarantee).
    pub fn flush_index(&self) -> Result<(), StoreError> {
        match &self.inner.back {
            Back::Embedded { index, .. } => index.flush(),
            Back::Shared { .. } => Ok(()),
        }
    }

    /// Rebuilds the index of the store in `dir` from its journal. The store must not be open.
    pub fn reindex(dir: impl AsRef<Path>) -> Result<u64, StoreError> {
        let dir = dir.as_ref();
        let (decoded, _, _) = journal::Journal::read_decoded(&dir.join("journal.log"))?;
        let idx_dir = dir.join("index");
        if idx_dir.exists() {
            std::fs::remove_dir_all(&idx_dir).map_err(|e| StoreError::io(&idx_dir, e))?;
        }
        let index = SledIndex::open(&idx_dir)?;
        for d in &decoded {
            index.put_blob_locations(&d.inline)?;
            index.apply(&d.record, d.start)?;
        }
        index.flush()?;
        Ok(decoded.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huren_model::{LabBody, PatientRef, ReportStatus, Source, SystemKind};

    fn lab(original: &[u8], n: usize) -> Ingest {
        Ingest {
            original: original.into(),
            reports: vec![Report {
                kind: ReportKind::Lab,
                source: Source {
                    institution: "A".into(),
                    system: SystemKind::Lis,
                    application: None,
                    source_key: "K".into(),
                },
                patient: PatientRef {
                    institution: "A".into(),
                    local_id: "P".into(),
                    ..Default::default()
                },
                status: ReportStatus::Final,
                order: Default::default(),
                specimen_collected_at: Some(format!("2025-06-{:02}T10:00:00+08:00", n + 1)),
                performed_at: None,
                reported_at: None,
                lab: Some(LabBody::default()),
                ecg: None,
                imaging: None,
                conclusion: None,
                original: ContentHash::of(original),
                attachments: vec![],
            }],
            identity: vec![],
            received_at: "2025-06-24T10:05:00+08:00".into(),
            attachments: vec![],
            message_id: None,
        }
    }

    /// A follower reads each committed record once, in order, however small its reads and
    /// wherever it starts; a cursor that is not on a record boundary reads from the start.
    #[test]
    fn a_follower_reads_each_committed_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (none, c0) = store
            .records_after(JournalCursor::default(), 1 << 20)
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(c0, JournalCursor::default());
        for n in 0..3 {
            store
                .commit_blocking(lab(format!("m{n}").as_bytes(), n))
                .unwrap();
        }
        let end = store.journal_end().unwrap();
        assert_eq!(end.seq, 3);
        let (recs, c1) = store.records_after(c0, 1 << 20).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(c1.seq, 3);
        // Nothing new: the same cursor back.
        assert_eq!(store.records_after(c1, 1 << 20).unwrap(), (vec![], c1));
        // From the end as it was: only what is committed later.
        store.commit_blocking(lab(b"m3", 3)).unwrap();
        let (later, c2) = store.records_after(end, 1 << 20).unwrap();
        assert_eq!(later.iter().map(|r| r.seq).collect::<Vec<_>>(), [4]);
        assert_eq!(store.records_after(c1, 1 << 20).unwrap().0, later);
        // One byte at a time still moves one record at a time.
        let mut c = JournalCursor::default();
        let mut seen = vec![];
        for _ in 0..10 {
            let (r, next) = store.records_after(c, 1).unwrap();
            seen.extend(r.iter().map(|r| r.seq));
            c = next;
        }
        assert_eq!(seen, [1, 2, 3, 4]);
        assert_eq!(c, c2);
        // An offset inside a record: read from the start, skipping what is done.
        let odd = JournalCursor { seq: 2, offset: 5 };
        let (r, next) = store.records_after(odd, 1 << 20).unwrap();
        assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(next, c2);
        // A saved cursor comes back, also after a reopen.
        assert_eq!(store.follower_cursor("f").unwrap(), None);
        store.save_follower_cursor("f", c1).unwrap();
        store.save_follower_cursor("f", c2).unwrap();
        drop(store);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.follower_cursor("f").unwrap(), Some(c2));
    }

    #[test]
    fn an_index_in_an_older_format_is_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut want = vec![];
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            for n in 0..3 {
                let c = store
                    .commit_blocking(lab(format!("m{n}").as_bytes(), n))
                    .unwrap();
                want.push(c.reports[0].report);
            }
        }
        {
            // What the first layout left: no format key, the chain as one JSON list. (The
            // dropped store's writer thread may still hold sled's lock for a moment on a busy
            // machine: try again, bounded.)
            let mut tries = 0;
            let db = loop {
                match sled::open(dir.path().join("index")) {
                    Ok(db) => break db,
                    Err(e) if tries < 100 => {
                        tries += 1;
                        let _ = e;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(e) => panic!("opening the index: {e}"),
                }
            };
            db.open_tree("meta")
                .unwrap()
                .remove(b"index_format")
                .unwrap();
            db.open_tree("chain_versions").unwrap().clear().unwrap();
            db.open_tree("chain_heads").unwrap().clear().unwrap();
            db.open_tree("chains")
                .unwrap()
                .insert("lab|A|K", serde_json::to_vec(&want).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.versions("lab|A|K").unwrap(), want);
        assert_eq!(store.chain_head("lab|A|K").unwrap(), Some((3, want[2])));
        assert!(store.verify().unwrap().problems.is_empty());
        let c = store.commit_blocking(lab(b"m3", 3)).unwrap();
        assert_eq!(c.reports[0].version, 4);
    }
}
