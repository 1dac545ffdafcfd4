//! A serving node on the cluster: the interfaces the embedded `Store` and the gate use,
//! implemented over the cluster store ([`NodeReports`]) and the per-node audit chain
//! ([`ClusterAudit`] as a `huren_audit::AuditTrail`). Blocking calls run on the node's
//! runtime, as [`crate::BlockingEvents`] does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use huren_audit::{AuditAnswer, AuditEntry, AuditFilter, AuditRecord, AuditTrail};
use huren_model::{ContentHash, InstanceRecord, Report, ReportKind};
use huren_store::generations::Generations;
use huren_store::{
    CommitFuture, Committed, Ingest, ReportBackend, ReportMeta, ReviewItem, SharedReports,
    StoreError,
};

use crate::audit::ClusterAudit;
use crate::blobs::BlobBackend;
use crate::store::{ClusterError, ClusterStore};

/// A cluster error as the store's: what the store says itself stays as it is; a failed
/// commit stays a failed commit (the sender gets a failure status); the rest is the shared
/// store's failure.
pub fn store_error(e: ClusterError) -> StoreError {
    match e {
        ClusterError::Store(s) => s,
        ClusterError::CommitFailed(m) => StoreError::CommitFailed(m),
        ClusterError::Corrupt(m) => StoreError::Corrupt(m),
        ClusterError::WriterGone => StoreError::WriterGone,
        other => StoreError::Shared(other.to_string()),
    }
}

/// Runs `fut` to its end from blocking code: on a worker of a multi-thread runtime through
/// `block_in_place`, elsewhere (a blocking thread, the command line) directly on `handle`.
pub(crate) fn block_on<T>(
    handle: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = Result<T, ClusterError>>,
) -> Result<T, StoreError> {
    let r = if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(|| handle.block_on(fut))
    } else {
        handle.block_on(fut)
    };
    r.map_err(store_error)
}

/// The cluster store as a node's `Store` sees it.
pub struct NodeReports<B> {
    store: ClusterStore<B>,
    handle: tokio::runtime::Handle,
    queued: Arc<AtomicUsize>,
}

impl<B: BlobBackend + 'static> NodeReports<B> {
    /// `store`'s reads and commits, run on `handle`.
    pub fn new(store: ClusterStore<B>, handle: tokio::runtime::Handle) -> NodeReports<B> {
        NodeReports {
            store,
            handle,
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn run<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, StoreError> {
        block_on(&self.handle, fut)
    }
}

/// Counts one queued ingest until dropped.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<B: BlobBackend + 'static> SharedReports for NodeReports<B> {
    fn submit(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
        spooled: Option<std::path::PathBuf>,
    ) -> Result<CommitFuture, StoreError> {
        let fut = self
            .store
            .submit_spooled(ingest, instances, spooled)
            .map_err(store_error)?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        let q = Queued(self.queued.clone());
        Ok(Box::pin(async move {
            let r: Result<Committed, ClusterError> = fut.await;
            drop(q);
            r.map_err(store_error)
        }))
    }

    fn report(&self, hash: &ContentHash) -> Result<Option<Report>, StoreError> {
        self.run(ReportBackend::report(&self.store, *hash))
    }

    fn report_meta(&self, hash: &ContentHash) -> Result<Option<ReportMeta>, StoreError> {
        self.run(ReportBackend::report_meta(&self.store, *hash))
    }

    fn blob(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(ReportBackend::blob(&self.store, *hash))
    }

    fn versions(&self, chain: &str) -> Result<Vec<ContentHash>, StoreError> {
        self.run(ReportBackend::versions(&self.store, chain))
    }

    fn chain_head(&self, chain: &str) -> Result<Option<(u32, ContentHash)>, StoreError> {
        self.run(ReportBackend::chain_head(&self.store, chain))
    }

    fn person_of(&self, local: &str) -> Result<String, StoreError> {
        self.run(self.store.person_of(local))
    }

    fn reports_of_person(
        &self,
        person: &str,
        kind: Option<ReportKind>,
    ) -> Result<Vec<ReportMeta>, StoreError> {
        self.run(self.store.reports_of_person(person, kind))
    }

    fn reports_of_local(&self, local: &str) -> Result<Vec<ReportMeta>, StoreError> {
        self.run(self.store.reports_of_local(local))
    }

    fn identity_reviews(&self, open_only: bool) -> Result<Vec<ReviewItem>, StoreError> {
        self.run(ReportBackend::identity_reviews(&self.store, open_only))
    }

    fn instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.run(async {
            let client = self.store.pool().get().await?;
            let row = client
                .query_opt(
                    "SELECT record::text FROM instances WHERE sop_instance_uid = $1",
                    &[&sop_instance_uid],
                )
                .await?;
            row.map(|r| instance_of(r.try_get(0)?)).transpose()
        })
    }

    fn instances_of_study(&self, study_uid: &str) -> Result<Vec<InstanceRecord>, StoreError> {
        self.run(async {
            let client = self.store.pool().get().await?;
            let rows = client
                .query(
                    "SELECT record::text FROM instances WHERE study_uid = $1
                     ORDER BY received_at, sop_instance_uid",
                    &[&study_uid],
                )
                .await?;
            rows.iter().map(|r| instance_of(r.try_get(0)?)).collect()
        })
    }

    fn instances_of_studies(
        &self,
        patient_id: Option<&str>,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.run(async {
            let client = self.store.pool().get().await?;
            let rows = client
                .query(
                    "SELECT record::text FROM instances
                     WHERE $1::text IS NULL
                        OR study_uid IN (SELECT study_uid FROM instances
                                         WHERE record->>'patient_id' = $1)
                     ORDER BY study_uid, received_at, sop_instance_uid",
                    &[&patient_id],
                )
                .await?;
            rows.iter().map(|r| instance_of(r.try_get(0)?)).collect()
        })
    }

    fn generations(&self) -> Arc<Generations> {
        self.store.generations()
    }

    fn ready(&self) -> Result<(), String> {
        let pool = self.store.pool().clone();
        self.run(async move {
            let client = tokio::time::timeout(std::time::Duration::from_secs(2), pool.get())
                .await
                .map_err(|_| ClusterError::Invalid("no PostgreSQL connection in 2 s".into()))??;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
        .map_err(|e| format!("the cluster's PostgreSQL does not answer: {e}"))
    }

    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn committed_after(
        &self,
        after: u64,
    ) -> Result<(Vec<huren_store::JournalRecord>, u64), StoreError> {
        self.run(self.store.committed_after(after, 64))
    }

    fn commit_position(&self) -> Result<u64, StoreError> {
        self.run(self.store.commit_position())
    }

    fn follower_position(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.run(self.store.follower_position(name))
    }

    fn save_follower_position(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.run(self.store.save_follower_position(name, position))
    }
}

fn instance_of(json: &str) -> Result<InstanceRecord, ClusterError> {
    serde_json::from_str(json).map_err(|e| ClusterError::Corrupt(format!("instance record: {e}")))
}

/// The per-node chain as the gate's audit trail.
pub struct NodeAudit {
    audit: ClusterAudit,
    handle: tokio::runtime::Handle,
}

impl NodeAudit {
    /// `audit`, its queries run on `handle`.
    pub fn new(audit: ClusterAudit, handle: tokio::runtime::Handle) -> NodeAudit {
        NodeAudit { audit, handle }
    }
}

/// At most this many rows are read per query round trip when streaming entries.
const PAGE: i64 = 2_000;

impl AuditTrail for NodeAudit {
    fn submit(&self, record: AuditRecord) -> Result<AuditAnswer, StoreError> {
        let audit = self.audit.clone();
        Ok(Box::pin(async move {
            audit.append(record).await.map_err(store_error)
        }))
    }

    fn append_blocking(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        block_on(&self.handle, self.audit.append(record))
    }

    /// The cluster's entries in the order they were committed across nodes. An entry's
    /// `seq` in the answer is that cluster-wide number (`audit_records.id`), which
    /// `after_seq` pages by; its place in its node's chain is what `huren verify` checks.
    fn visit(
        &self,
        filter: &AuditFilter,
        visit: &mut dyn FnMut(AuditEntry) -> bool,
    ) -> Result<usize, StoreError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(0);
        }
        let pool = self.audit.pool().clone();
        let from = filter.from.map(|t| t.to_rfc3339());
        let to = filter.to.map(|t| t.to_rfc3339());
        let persons = filter
            .patient
            .as_ref()
            .map(|p| serde_json::json!([p]).to_string());
        let mut after = filter.after_seq.map_or(0, |a| a as i64);
        let mut n = 0usize;
        // A search's answer listed in full once and named by its set id later (as the file
        // log's query fills it in).
        let mut sets: std::collections::HashMap<String, Vec<String>> = Default::default();
        loop {
            let rows = block_on(&self.handle, async {
                let client = pool.get().await?;
                Ok(client
                    .query(
                        "SELECT id, record FROM audit_records
                         WHERE id > $1
                           AND ($2::text IS NULL OR patient = $2 OR persons @> $3::text::jsonb)
                           AND ($4::text IS NULL OR actor = $4)
                           AND ($5::text IS NULL OR at >= $5::timestamptz)
                           AND ($6::text IS NULL OR at < $6::timestamptz)
                           AND ($7::text[] IS NULL OR action = ANY($7))
                         ORDER BY id LIMIT $8",
                        &[
                            &after,
                            &filter.patient,
                            &persons,
                            &filter.actor,
                            &from,
                            &to,
                            &filter.actions,
                            &PAGE,
                        ],
                    )
                    .await?)
            })?;
            let last = rows.len() < PAGE as usize;
            for r in &rows {
                let id: i64 = r.try_get(0).map_err(|e| store_error(e.into()))?;
                let line: &[u8] = r.try_get(1).map_err(|e| store_error(e.into()))?;
                after = id;
                let mut e: AuditEntry = serde_json::from_slice(line)
                    .map_err(|e| StoreError::Corrupt(format!("audit entry {id}: {e}")))?;
                e.seq = id as u64;
                if let Some(set) = &e.record.returned_set {
                    if e.record.returned.is_empty() {
                        if let Some(list) = sets.get(set) {
                            e.record.returned = list.clone();
                        }
                    } else if !sets.contains_key(set) {
                        sets.insert(set.clone(), e.record.returned.clone());
                    }
                }
                n += 1;
                if !visit(e) || n >= limit {
                    return Ok(n);
                }
            }
            if last {
                return Ok(n);
            }
        }
    }
}

/// Keeps a node's workflow logs and consents current with the other nodes: follows the
/// event notifications ([`crate::follow_events`]) and refreshes the stream each one names
/// (which announces it on that store's change feed, so event-stream pages on this node
/// wake). After a (re)connection, or a refresh that failed, every stream is compared with
/// the table and the ones behind are refreshed. Ends when the store's last handle is
/// dropped elsewhere and the task is aborted, or when the runtime stops.
pub fn follow_into_store(
    store: huren_store::Store,
    consents: Arc<huren_store::ConsentStore>,
    config: crate::PgConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let feed = crate::follow_events(config, tls, tx.clone());
    tokio::spawn(async move {
        let _feed = crate::store::AbortOnDrop(feed);
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(n) = rx.try_recv() {
                batch.push(n);
            }
            let (s, c) = (store.clone(), consents.clone());
            let done = tokio::task::spawn_blocking(move || apply_notices(&s, &c, batch)).await;
            if !matches!(done, Ok(Ok(()))) {
                match done {
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "refreshing from the cluster failed; resync in 1 s")
                    }
                    _ => tracing::warn!("refreshing from the cluster stopped; resync in 1 s"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let _ = tx.send(crate::Notice::Resync);
            }
        }
    })
}

/// Refreshes what `batch` names (everything on a resync).
fn apply_notices(
    store: &huren_store::Store,
    consents: &huren_store::ConsentStore,
    batch: Vec<crate::Notice>,
) -> Result<(), StoreError> {
    use crate::{Notice, Table};
    if batch.contains(&Notice::Resync) {
        store.tasks().refresh_all()?;
        store.alerts().refresh_all()?;
        store.cases().refresh_all()?;
        store.roster().refresh_all()?;
        store.outbox().refresh_all()?;
        store.webhooks().refresh_all()?;
        store.regional().refresh_all()?;
        consents.refresh_all()?;
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    for n in batch {
        let Notice::Appended { table, stream, .. } = n else {
            continue;
        };
        if !seen.insert((table, stream.clone())) {
            continue;
        }
        match table {
            Table::Tasks => {
                store.tasks().refresh(&huren_workflow::TaskId(stream))?;
            }
            Table::Alerts => {
                store.alerts().refresh(&huren_alerting::AlertId(stream))?;
            }
            Table::Cases => {
                store.cases().refresh(&stream)?;
            }
            Table::Roster => {
                store.roster().refresh(&stream)?;
            }
            Table::Outbox => {
                store.outbox().refresh(&stream)?;
            }
            Table::Webhooks => {
                store.webhooks().refresh(&stream)?;
            }
            Table::Regional => {
                store.regional().refresh(&stream)?;
            }
            Table::Consents => {
                consents.refresh(&stream)?;
            }
        }
    }
    Ok(())
}
