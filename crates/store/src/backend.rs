//! The report store's interface: what the gateway asks of a store, implemented by the
//! embedded [`Store`] and by the cluster back end (`huren-cluster`), and checked for both by
//! one conformance suite (`crates/cluster/tests/cluster/conformance.rs`).

use std::future::Future;

use huren_model::{ContentHash, PatientId, Report, ReportKind};

use crate::index::{IdentityLink, ReportMeta, ReviewItem};
use crate::{Committed, Ingest, Store, StoreError};

/// Commit and read reports. Every method's meaning is the embedded store's (see [`Store`]).
pub trait ReportBackend: Send + Sync {
    /// The back end's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Commits one ingest durably (with whatever else its group holds), then answers.
    fn commit(&self, ingest: Ingest)
        -> impl Future<Output = Result<Committed, Self::Error>> + Send;
    /// A stored report, checked against its hash.
    fn report(
        &self,
        hash: ContentHash,
    ) -> impl Future<Output = Result<Option<Report>, Self::Error>> + Send;
    /// A report's metadata (version, supersession, identity review).
    fn report_meta(
        &self,
        hash: ContentHash,
    ) -> impl Future<Output = Result<Option<ReportMeta>, Self::Error>> + Send;
    /// A blob (an original, an attachment, a report's canonical JSON), checked.
    fn blob(
        &self,
        hash: ContentHash,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>> + Send;
    /// The versions of a chain, oldest first.
    fn versions(
        &self,
        chain: &str,
    ) -> impl Future<Output = Result<Vec<ContentHash>, Self::Error>> + Send;
    /// The newest version of a chain and its number.
    fn chain_head(
        &self,
        chain: &str,
    ) -> impl Future<Output = Result<Option<(u32, ContentHash)>, Self::Error>> + Send;
    /// The person key a patient identifier resolves to.
    fn person_key(
        &self,
        id: &PatientId,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;
    /// The patient's current reports across linked institutions, newest first.
    fn patient_reports(
        &self,
        id: &PatientId,
        kind: Option<ReportKind>,
    ) -> impl Future<Output = Result<(IdentityLink, Vec<ReportMeta>), Self::Error>> + Send;
    /// Identity review items (open ones only when `open_only`), oldest first.
    fn identity_reviews(
        &self,
        open_only: bool,
    ) -> impl Future<Output = Result<Vec<ReviewItem>, Self::Error>> + Send;
}

impl ReportBackend for Store {
    type Error = StoreError;

    async fn commit(&self, ingest: Ingest) -> Result<Committed, StoreError> {
        Store::commit(self, ingest).await
    }

    async fn report(&self, hash: ContentHash) -> Result<Option<Report>, StoreError> {
        Store::report(self, &hash)
    }

    async fn report_meta(&self, hash: ContentHash) -> Result<Option<ReportMeta>, StoreError> {
        Store::report_meta(self, &hash)
    }

    async fn blob(&self, hash: ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        Store::blob(self, &hash)
    }

    async fn versions(&self, chain: &str) -> Result<Vec<ContentHash>, StoreError> {
        Store::versions(self, chain)
    }

    async fn chain_head(&self, chain: &str) -> Result<Option<(u32, ContentHash)>, StoreError> {
        Store::chain_head(self, chain)
    }

    async fn person_key(&self, id: &PatientId) -> Result<String, StoreError> {
        Store::person_key(self, id)
    }

    async fn patient_reports(
        &self,
        id: &PatientId,
        kind: Option<ReportKind>,
    ) -> Result<(IdentityLink, Vec<ReportMeta>), StoreError> {
        Store::patient_reports(self, id, kind)
    }

    async fn identity_reviews(&self, open_only: bool) -> Result<Vec<ReviewItem>, StoreError> {
        Store::identity_reviews(self, open_only)
    }
}
