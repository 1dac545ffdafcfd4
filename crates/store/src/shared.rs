//! The report store of a cluster node (issue 19), as [`crate::Store`] sees it: commits and
//! reads go to the shared back end (`huren-cluster`: PostgreSQL and an S3-compatible store)
//! through this interface, and the workflow logs to its event tables ([`crate::EventSink`]).
//! Blocking like the sled index it stands in for; the cluster implements it on its runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use huren_model::{ContentHash, InstanceRecord, Report, ReportKind};

use crate::generations::Generations;
use crate::index::{ReportMeta, ReviewItem};
use crate::{Committed, Ingest, JournalRecord, StoreError};

/// A commit's answer, to await.
pub type CommitFuture = Pin<Box<dyn Future<Output = Result<Committed, StoreError>> + Send>>;

/// The shared report store. Every method's meaning is the embedded store's; reads check
/// what they return against its hash.
pub trait SharedReports: Send + Sync {
    /// Queues an ingest (and its DICOM instance records) for the group commit now; the
    /// answer comes once it is durable. Ingests submitted one after another commit in order.
    /// `spooled` is the file of an original spooled to the node's directory
    /// ([`crate::Original::Stored`]), streamed from there; the caller keeps it until the answer.
    fn submit(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
        spooled: Option<std::path::PathBuf>,
    ) -> Result<CommitFuture, StoreError>;
    /// A stored report, checked against its hash.
    fn report(&self, hash: &ContentHash) -> Result<Option<Report>, StoreError>;
    /// A report's metadata.
    fn report_meta(&self, hash: &ContentHash) -> Result<Option<ReportMeta>, StoreError>;
    /// A blob, checked.
    fn blob(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError>;
    /// The versions of a chain, oldest first.
    fn versions(&self, chain: &str) -> Result<Vec<ContentHash>, StoreError>;
    /// The newest version of a chain and its number.
    fn chain_head(&self, chain: &str) -> Result<Option<(u32, ContentHash)>, StoreError>;
    /// The person a local key (`institution:local id`) belongs to (the key when unlinked).
    fn person_of(&self, local: &str) -> Result<String, StoreError>;
    /// A person's current reports, newest first.
    fn reports_of_person(
        &self,
        person: &str,
        kind: Option<ReportKind>,
    ) -> Result<Vec<ReportMeta>, StoreError>;
    /// The current reports of one local key (`institution:local id`), in hash order.
    fn reports_of_local(&self, local: &str) -> Result<Vec<ReportMeta>, StoreError>;
    /// Identity review items, oldest first.
    fn identity_reviews(&self, open_only: bool) -> Result<Vec<ReviewItem>, StoreError>;
    /// The record of a SOP instance.
    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StoreError>;
    /// A study's instance records in the order they were received.
    fn instances_of_study(&self, study_uid: &str) -> Result<Vec<InstanceRecord>, StoreError>;
    /// Every instance record of the studies that hold one of a DICOM Patient ID (of every
    /// study with `None`), by study, each study's in the order they were received: one read
    /// for a list of studies.
    fn instances_of_studies(
        &self,
        patient_id: Option<&str>,
    ) -> Result<Vec<InstanceRecord>, StoreError>;
    /// The per-person change counters, moved by this node's commits and, as their
    /// notifications arrive, by the other nodes'.
    fn generations(&self) -> Arc<Generations>;
    /// Whether commits can be taken (the servers answer); `Err` says why not.
    fn ready(&self) -> Result<(), String>;
    /// Ingests waiting for the group commit.
    fn queued(&self) -> usize;
    /// The reports committed after position `after`, in commit order, as journal records
    /// (one per commit), and the position after them: what a follower of the commits reads
    /// instead of the journal. Nothing that commits later falls behind the position.
    fn committed_after(&self, after: u64) -> Result<(Vec<JournalRecord>, u64), StoreError>;
    /// The position after everything committed so far.
    fn commit_position(&self) -> Result<u64, StoreError>;
    /// A follower's saved position (shared by the nodes), `None` before its first save.
    fn follower_position(&self, name: &str) -> Result<Option<u64>, StoreError>;
    /// Saves a follower's position.
    fn save_follower_position(&self, name: &str, position: u64) -> Result<(), StoreError>;
}
