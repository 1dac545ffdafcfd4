//! The cluster store: the embedded store's report commit and reads over PostgreSQL and a blob
//! back end ([`BlobBackend`]: S3 in production).
//!
//! **Write path** (one group commit per node, like the embedded writer): the ingests waiting
//! are taken together; their originals and attachments are PUT (create-only, in parallel);
//! then one PostgreSQL transaction (READ COMMITTED) locks the batch's version chains in
//! sorted key order, reads what is stored of the batch, plans it with the embedded store's own
//! [`Planner`] and writes the rows; only after the commit is any caller answered. Uniqueness
//! comes from constraints (`ON CONFLICT`), never from check-then-insert; a serialisation or
//! deadlock failure retries the whole transaction (bounded). Identity changes that move a link
//! take one advisory transaction lock (`IDENTITY_LOCK`); a claim that changes nothing takes
//! none.
//!
//! **Reads** verify each report's canonical JSON against its hash and each blob against its
//! key.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Pool, Transaction};
use futures::{StreamExt, TryStreamExt};
use huren_model::{ContentHash, InstanceRecord, PatientId, Report, ReportKind, ReportStatus};
use huren_store::generations::Generations;
use huren_store::index::{claim_of, namespace, ClaimContext};
use huren_store::plan::{PlanView, Planner, Prepared};
use huren_store::{
    Committed, Entry, IdentityLink, IdentityOp, Ingest, ReportBackend, ReportMeta, ReviewItem,
    StoreError,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use crate::blobs::Put;
use crate::blobs::{BlobBackend, BlobError};

/// The advisory lock a transaction takes before it moves identity links.
pub const IDENTITY_LOCK: i64 = 0x6875_7265_6e2d_6964; // "huren-id"

/// How many times a transaction that lost a serialisation or deadlock race is retried.
const RETRIES: usize = 5;

/// Why a cluster store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// PostgreSQL answered an error (or the connection broke).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A blob operation failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The ingest itself is refused (as the embedded store refuses it).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data does not check out.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The batch this ingest was in could not be committed; nothing of it is recorded.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// What the cluster back end does not do yet.
    #[error("not supported by the cluster back end yet: {0}")]
    Unsupported(&'static str),
    /// The node's commit task has stopped.
    #[error("the commit task has stopped")]
    WriterGone,
    /// A request the cluster refuses as asked (e.g. a grace period below the minimum).
    #[error("{0}")]
    Invalid(String),
}

/// Tuning of a cluster store.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// This node's name (written with every row it makes).
    pub node: String,
    /// Secret for national-ID keys (the same on every node and as the embedded store's).
    pub national_id_secret: String,
    /// Most ingests in one group commit.
    pub max_batch: usize,
    /// Blob PUTs in flight at once.
    pub put_concurrency: usize,
    /// Once a group fails, fail every later one too (for a copy, where a later version must
    /// never be committed before an earlier one that failed).
    pub stop_after_failure: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            node: "node-1".into(),
            national_id_secret: String::new(),
            max_batch: 256,
            put_concurrency: 32,
            stop_after_failure: false,
        }
    }
}

type Reply = oneshot::Sender<Result<Committed, ClusterError>>;

struct Job {
    ingest: Prepared,
    /// The file of a spooled original ([`ClusterStore::submit_spooled`]).
    file: Option<std::path::PathBuf>,
    reply: Reply,
}

/// A node's handle on the cluster store; cheap to clone. The group-commit task stops when
/// the last handle is dropped.
pub struct ClusterStore<B> {
    inner: Arc<Inner<B>>,
    tx: mpsc::UnboundedSender<Job>,
}

impl<B> Clone for ClusterStore<B> {
    fn clone(&self) -> Self {
        ClusterStore {
            inner: self.inner.clone(),
            tx: self.tx.clone(),
        }
    }
}

struct Inner<B> {
    pool: Pool,
    blobs: B,
    options: ClusterOptions,
    /// Per-person change counters: bumped by this node's commits before they are answered,
    /// and by the other nodes' commits as their notifications arrive.
    generations: Arc<Generations>,
}

impl<B: BlobBackend + 'static> ClusterStore<B> {
    /// A store on `pool` (migrated: see [`crate::migrate`]) and `blobs`, with its commit task
    /// spawned on the current tokio runtime.
    pub fn new(pool: Pool, blobs: B, options: ClusterOptions) -> ClusterStore<B> {
        let inner = Arc::new(Inner {
            pool,
            blobs,
            options,
            generations: Arc::new(Generations::new()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (group_tx, group_rx) = mpsc::channel(2);
        tokio::spawn(put_stage(inner.clone(), rx, group_tx));
        tokio::spawn(commit_stage(inner.clone(), group_rx));
        ClusterStore { inner, tx }
    }

    /// A counter that moves whenever a commit on any node may change the reports of `person`
    /// (the embedded store's `person_generation`): read it before a query; an answer derived
    /// from that query is current while it has not moved. Other nodes' commits arrive through
    /// [`ClusterStore::follow_changes`].
    pub fn person_generation(&self, person: &str) -> u64 {
        self.inner.generations.get(person)
    }

    /// Follows the other nodes' commits: a task on its own connection `LISTEN`s on
    /// [`CHANGES_CHANNEL`] and bumps the generation stripes each notification names. After
    /// every (re)connection it marks everything stale first (notifications sent while it was
    /// away are lost), then retries a lost connection every second. It ends when the last
    /// handle on the store is dropped. `tls` as for the pool ([`crate::ClusterConfig`]).
    pub fn follow_changes(
        &self,
        config: crate::PgConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let Some((generations, node)) = weak
                .upgrade()
                .map(|i| (i.generations.clone(), i.options.node.clone()))
            else {
                return;
            };
            loop {
                match listen(&config, &tls, &generations, &node, &weak).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "change feed lost; reconnecting in 1 s");
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// The per-person change counters ([`ClusterStore::person_generation`]).
    pub fn generations(&self) -> Arc<Generations> {
        self.inner.generations.clone()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.options.node
    }

    /// The blob back end.
    pub fn blobs(&self) -> &B {
        &self.inner.blobs
    }

    /// The PostgreSQL pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Commits an ingest and its DICOM instance records.
    pub async fn commit_instances(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
    ) -> Result<Committed, ClusterError> {
        self.submit(ingest, instances)?.await
    }

    /// Queues an ingest for the group commit now and returns its answer to await: ingests
    /// submitted one after another are committed in that order.
    pub fn submit(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
    ) -> Result<
        impl std::future::Future<Output = Result<Committed, ClusterError>> + use<B>,
        ClusterError,
    > {
        self.submit_spooled(ingest, instances, None)
    }

    /// [`ClusterStore::submit`] of an ingest whose original was spooled to a file
    /// ([`huren_store::Original::Stored`]): `file` is where it is. The blob is streamed from
    /// the file to the object store ([`BlobBackend::put_file`]), never held whole; the
    /// caller keeps the file until the answer.
    pub fn submit_spooled(
        &self,
        ingest: Ingest,
        instances: Vec<InstanceRecord>,
        file: Option<std::path::PathBuf>,
    ) -> Result<
        impl std::future::Future<Output = Result<Committed, ClusterError>> + use<B>,
        ClusterError,
    > {
        if matches!(ingest.original, huren_store::Original::Stored(_)) && file.is_none() {
            return Err(ClusterError::Unsupported(
                "an original spooled to a file, without the file",
            ));
        }
        let ingest = Prepared::new(ingest, instances)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                ingest,
                file,
                reply,
            })
            .map_err(|_| ClusterError::WriterGone)?;
        Ok(async move { rx.await.map_err(|_| ClusterError::WriterGone)? })
    }

    /// The person a local key belongs to (the key itself when unlinked).
    pub async fn person_of(&self, local: &str) -> Result<String, ClusterError> {
        let client = self.inner.pool.get().await?;
        person_of(&**client, local).await
    }

    /// A person's current reports, newest first (the embedded index's order: clinical time,
    /// then received time, then local key and hash).
    pub async fn reports_of_person(
        &self,
        person: &str,
        kind: Option<ReportKind>,
    ) -> Result<Vec<ReportMeta>, ClusterError> {
        let client = self.inner.pool.get().await?;
        let kind = kind.map(|k| k.as_str().to_string());
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM reports
                     WHERE superseded_by IS NULL
                       AND patient_key IN (
                           SELECT patient_key FROM identity_links WHERE person_key = $1
                           UNION SELECT $1 WHERE $1 NOT LIKE 'nidk:%')
                       AND ($2::text IS NULL OR kind = $2)
                     ORDER BY time_ms DESC NULLS LAST, received_at COLLATE \"C\" DESC,
                              patient_key COLLATE \"C\", hash"
            ))
            .await?;
        let rows = client.query(&stmt, &[&person, &kind]).await?;
        rows.iter().map(meta_of_row).collect()
    }
}

impl<B: BlobBackend + 'static> ClusterStore<B> {
    /// The reports committed by the transactions after position `after` (a transaction id),
    /// up to `max_transactions` of them, as journal records (one per transaction, its reports
    /// by version then hash), and the position after them. Only transactions older than
    /// every one still running are read, so none that commits later can fall behind the
    /// position.
    pub async fn committed_after(
        &self,
        after: u64,
        max_transactions: i64,
    ) -> Result<(Vec<huren_store::JournalRecord>, u64), ClusterError> {
        let client = self.inner.pool.get().await?;
        let after_text = after.to_string();
        let rows = client
            .query(
                &format!(
                    "WITH xids AS (
                         SELECT DISTINCT commit_xid FROM reports
                         WHERE commit_xid > ($1::text)::xid8
                           AND commit_xid < pg_snapshot_xmin(pg_current_snapshot())
                         ORDER BY commit_xid LIMIT $2)
                     SELECT commit_xid::text, {META_COLUMNS} FROM reports
                     WHERE commit_xid IN (SELECT commit_xid FROM xids)
                     ORDER BY commit_xid, version, hash"
                ),
                &[&after_text, &max_transactions],
            )
            .await?;
        let mut out: Vec<huren_store::JournalRecord> = Vec::new();
        let mut pos = after;
        for r in &rows {
            let xid: u64 = r
                .try_get::<_, &str>(0)?
                .parse()
                .map_err(|_| ClusterError::Corrupt("commit_xid".into()))?;
            let meta = meta_of_offset_row(r, 1)?;
            if out.last().is_none_or(|rec| rec.seq != xid) {
                out.push(huren_store::JournalRecord {
                    seq: xid,
                    entries: vec![],
                });
            }
            pos = xid;
            if let Some(rec) = out.last_mut() {
                rec.entries.push(huren_store::Entry::Report {
                    hash: meta.hash,
                    original: meta.original,
                    kind: meta.kind,
                    status: meta.status,
                    chain: meta.chain,
                    local: meta.local,
                    institution: meta.institution,
                    time_ms: meta.time_ms,
                    received_at: meta.received_at,
                    outcome: if meta.version == 1 {
                        huren_store::Outcome::Stored
                    } else {
                        huren_store::Outcome::Superseded
                    },
                });
            }
        }
        Ok((out, pos))
    }

    /// The current reports of one local key, in hash order.
    pub async fn reports_of_local(&self, local: &str) -> Result<Vec<ReportMeta>, ClusterError> {
        let client = self.inner.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {META_COLUMNS} FROM reports
                     WHERE patient_key = $1 AND superseded_by IS NULL ORDER BY hash"
                ),
                &[&local],
            )
            .await?;
        rows.iter().map(meta_of_row).collect()
    }

    /// The position a follower starting now begins at: everything committed so far is
    /// before it, everything committed later after it.
    pub async fn commit_position(&self) -> Result<u64, ClusterError> {
        let client = self.inner.pool.get().await?;
        let row = client
            .query_one(
                "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint - 1",
                &[],
            )
            .await?;
        Ok(row.try_get::<_, i64>(0)?.max(0) as u64)
    }

    /// A follower's saved position, `None` before its first save.
    pub async fn follower_position(&self, name: &str) -> Result<Option<u64>, ClusterError> {
        let client = self.inner.pool.get().await?;
        Ok(client
            .query_opt(
                "SELECT position FROM follower_cursors WHERE name = $1",
                &[&name],
            )
            .await?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
            .map(|p| p.max(0) as u64))
    }

    /// Saves a follower's position (committed when it returns).
    pub async fn save_follower_position(&self, name: &str, pos: u64) -> Result<(), ClusterError> {
        let client = self.inner.pool.get().await?;
        let pos = i64::try_from(pos).map_err(|_| ClusterError::Invalid("position".into()))?;
        client
            .execute(
                "INSERT INTO follower_cursors (name, position, node) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE
                 SET position = excluded.position, node = excluded.node, saved_at = now()",
                &[&name, &pos, &self.inner.options.node],
            )
            .await?;
        Ok(())
    }
}

/// The last version [`ClusterStore::verify`] saw of the chain it is walking.
struct Walk {
    chain: String,
    version: i32,
    hash: Vec<u8>,
    superseded_by: Option<Vec<u8>>,
}

/// What [`ClusterStore::verify`] found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClusterVerify {
    /// Reports whose JSON was re-hashed.
    pub reports: u64,
    /// Version chains checked (numbering, supersession, head).
    pub chains: u64,
    /// Blobs read back from the object store and re-hashed.
    pub blobs_checked: u64,
    /// Problems found; empty means healthy.
    pub problems: Vec<String>,
}

impl<B: BlobBackend + 'static> ClusterStore<B> {
    /// Re-hashes every report's JSON and every blob the index lists (read back from the
    /// object store), and checks every version chain: numbered 1..n without gaps, each
    /// version superseded by the next, the last one current and the chain's head.
    pub async fn verify(&self) -> Result<ClusterVerify, ClusterError> {
        let mut out = ClusterVerify::default();
        let client = self.inner.pool.get().await?;
        let heads: HashMap<String, (i32, Option<Vec<u8>>)> = client
            .query(
                "SELECT chain_key, head_version, head_hash FROM report_chains",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let rows = client
            .query_raw(
                "SELECT hash, canonical, chain_key, version, superseded_by FROM reports
                 ORDER BY chain_key, version",
                std::iter::empty::<i32>(),
            )
            .await?;
        futures::pin_mut!(rows);
        // The chain being walked: its last version seen.
        let mut walk: Option<Walk> = None;
        let close = |w: Option<Walk>, out: &mut ClusterVerify| {
            if let Some(w) = w {
                out.chains += 1;
                let (chain, v) = (&w.chain, w.version);
                if w.superseded_by.is_some() {
                    out.problems
                        .push(format!("chain {chain}: its last version {v} is superseded"));
                }
                if heads.get(chain) != Some(&(v, Some(w.hash))) {
                    out.problems.push(format!(
                        "chain {chain}: its head is not its last version {v}"
                    ));
                }
            }
        };
        while let Some(row) = rows.try_next().await? {
            out.reports += 1;
            let hash: Vec<u8> = row.try_get(0)?;
            let canonical: &[u8] = row.try_get(1)?;
            let chain: String = row.try_get(2)?;
            let version: i32 = row.try_get(3)?;
            let superseded_by: Option<Vec<u8>> = row.try_get(4)?;
            let h = hash_of(&hash, "report")?;
            if ContentHash::of(canonical) != h {
                out.problems.push(format!(
                    "report {h}: its JSON hashes to {}",
                    ContentHash::of(canonical)
                ));
            }
            match walk.take() {
                Some(w) if w.chain == chain => {
                    let v = w.version;
                    if version != v + 1 {
                        out.problems.push(format!(
                            "chain {chain}: version {version} follows version {v}"
                        ));
                    }
                    if w.superseded_by.as_deref() != Some(hash.as_slice()) {
                        out.problems.push(format!(
                            "chain {chain}: version {v} is not superseded by version {version}"
                        ));
                    }
                }
                other => {
                    close(other, &mut out);
                    if version != 1 {
                        out.problems
                            .push(format!("chain {chain}: starts at version {version}"));
                    }
                }
            }
            walk = Some(Walk {
                chain,
                version,
                hash,
                superseded_by,
            });
        }
        close(walk.take(), &mut out);
        let blobs: Vec<ContentHash> = client
            .query("SELECT hash FROM blobs", &[])
            .await?
            .iter()
            .map(|r| hash_of(r.try_get(0)?, "blob"))
            .collect::<Result<_, _>>()?;
        let checked = futures::stream::iter(blobs)
            .map(|h| async move { (h, self.inner.blobs.get(h).await) })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        for (h, r) in checked {
            out.blobs_checked += 1;
            match r {
                Ok(Some(_)) => {}
                Ok(None) => out
                    .problems
                    .push(format!("blob {h}: listed but not in the object store")),
                Err(e) => out.problems.push(e.to_string()),
            }
        }
        Ok(out)
    }
}

/// Drives a connection, sending its notifications' payloads (and then its error) to `tx`.
pub(crate) fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    tx: mpsc::UnboundedSender<Result<String, tokio_postgres::Error>>,
) -> tokio::task::JoinHandle<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(Ok(n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    })
}

/// One session of the change feed: connect, `LISTEN`, mark everything stale, then apply
/// notifications until the connection ends (an error) or the store is dropped (`Ok`).
async fn listen<B>(
    config: &crate::PgConfig,
    tls: &Option<Arc<rustls::ClientConfig>>,
    generations: &Generations,
    node: &str,
    store: &std::sync::Weak<Inner<B>>,
) -> Result<(), ClusterError> {
    let mut config = config.clone();
    config.connect_timeout(Duration::from_secs(10));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (client, driver) = match tls {
        Some(t) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**t).clone());
            let (client, connection) = config.connect(tls).await?;
            (client, drive(connection, tx))
        }
        None => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            (client, drive(connection, tx))
        }
    };
    let _stop = AbortOnDrop(driver);
    client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await?;
    generations.bump_all();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        if store.strong_count() == 0 {
            return Ok(());
        }
        match next {
            Err(_) => continue,
            Ok(None) => return Err(ClusterError::WriterGone),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(payload))) => {
                let mut parts = payload.splitn(3, ' ');
                let (Some("v1"), Some(from), Some(list)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    generations.bump_all();
                    continue;
                };
                if from == node_tag(node) {
                    continue; // bumped before the commit was answered
                }
                for s in list.split(',') {
                    match s.parse::<u16>() {
                        Ok(s) => generations.bump_stripe(s),
                        Err(_) => generations.bump_all(),
                    }
                }
            }
        }
    }
}

/// A node's name as notifications carry it: at most 64 characters, no spaces.
fn node_tag(node: &str) -> String {
    node.chars()
        .take(64)
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The columns [`meta_of_row`] reads.
const META_COLUMNS: &str = "hash, original, kind, status, chain_key, patient_key, institution, \
                            time_ms, received_at, version, superseded_by, identity_review";

fn hash_of(bytes: &[u8], what: &str) -> Result<ContentHash, ClusterError> {
    <[u8; 32]>::try_from(bytes)
        .map(ContentHash::from_bytes)
        .map_err(|_| ClusterError::Corrupt(format!("{what}: a hash of {} bytes", bytes.len())))
}

fn kind_of(s: &str) -> Result<ReportKind, ClusterError> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| ClusterError::Corrupt(format!("report kind {s:?}")))
}

fn status_of(s: &str) -> Result<ReportStatus, ClusterError> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| ClusterError::Corrupt(format!("report status {s:?}")))
}

fn status_str(s: ReportStatus) -> &'static str {
    match s {
        ReportStatus::Preliminary => "preliminary",
        ReportStatus::Final => "final",
        ReportStatus::Corrected => "corrected",
        ReportStatus::Cancelled => "cancelled",
    }
}

fn meta_of_row(row: &tokio_postgres::Row) -> Result<ReportMeta, ClusterError> {
    meta_of_offset_row(row, 0)
}

/// [`meta_of_row`] of columns starting at `o`.
fn meta_of_offset_row(row: &tokio_postgres::Row, o: usize) -> Result<ReportMeta, ClusterError> {
    let superseded: Option<Vec<u8>> = row.try_get(o + 10)?;
    let version: i32 = row.try_get(o + 9)?;
    Ok(ReportMeta {
        hash: hash_of(row.try_get(o)?, "report")?,
        original: hash_of(row.try_get(o + 1)?, "original")?,
        kind: kind_of(row.try_get(o + 2)?)?,
        status: status_of(row.try_get(o + 3)?)?,
        chain: row.try_get(o + 4)?,
        local: row.try_get(o + 5)?,
        institution: row.try_get(o + 6)?,
        time_ms: row.try_get(o + 7)?,
        received_at: row.try_get(o + 8)?,
        version: u32::try_from(version)
            .map_err(|_| ClusterError::Corrupt(format!("version {version}")))?,
        superseded_by: superseded
            .map(|h| hash_of(&h, "superseded_by"))
            .transpose()?,
        identity_review: row.try_get(o + 11)?,
    })
}

async fn person_of(client: &impl GenericClient, local: &str) -> Result<String, ClusterError> {
    let row = client
        .query_opt(
            "SELECT person_key FROM identity_links WHERE patient_key = $1",
            &[&local],
        )
        .await?;
    Ok(match row {
        Some(r) => r.try_get(0)?,
        None => local.to_string(),
    })
}

/// Stage one of the group commit: takes what is waiting (up to `max_batch`), PUTs its blobs
/// and hands the group to stage two. While stage two commits one group, this stage stores the
/// next group's blobs.
async fn put_stage<B: BlobBackend>(
    inner: Arc<Inner<B>>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    next: mpsc::Sender<Group>,
) {
    let max = inner.options.max_batch.max(1);
    let mut failed = false;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if failed {
            fail_all(
                jobs.into_iter().map(|j| j.reply),
                "an earlier group failed (stop_after_failure)",
            );
            continue;
        }
        let started = std::time::Instant::now();
        match put_group(&inner, jobs, started).await {
            Some(group) => {
                if let Err(mpsc::error::SendError(g)) = next.send(group).await {
                    fail_all(
                        g.jobs.into_iter().map(|j| j.reply),
                        "the commit task has stopped",
                    );
                }
            }
            None => failed = inner.options.stop_after_failure,
        }
    }
}

/// Stage two: one transaction for each group whose blobs are stored (groups that wait
/// together are committed together, up to `max_batch` ingests), then the answers.
async fn commit_stage<B: BlobBackend>(inner: Arc<Inner<B>>, mut rx: mpsc::Receiver<Group>) {
    let max = inner.options.max_batch.max(1);
    let mut failed = false;
    while let Some(mut group) = rx.recv().await {
        while group.jobs.len() < max {
            match rx.try_recv() {
                Ok(g) => group.merge(g),
                Err(_) => break,
            }
        }
        if failed {
            fail_all(
                group.jobs.into_iter().map(|j| j.reply),
                "an earlier group failed (stop_after_failure)",
            );
            continue;
        }
        let (n, started) = (group.jobs.len(), group.started);
        failed = !commit_group(&inner, group).await && inner.options.stop_after_failure;
        huren_metrics::global().commit(n, started.elapsed());
    }
}

/// Ingests whose blobs are stored, waiting for their transaction.
struct Group {
    jobs: Vec<Job>,
    /// Length of each blob of the group that is not a report's JSON.
    sizes: HashMap<ContentHash, i64>,
    /// The blobs the object store had already (checked again under the sweep lock).
    existed: HashSet<ContentHash>,
    /// When the first stage took it.
    started: std::time::Instant,
}

impl Group {
    fn merge(&mut self, other: Group) {
        self.jobs.extend(other.jobs);
        self.sizes.extend(other.sizes);
        self.existed.extend(other.existed);
        self.started = self.started.min(other.started);
    }
}

/// An ingest's blob bytes as the owner of a [`Bytes`] (no copy for the PUT).
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The plan of one job inside a group.
struct Planned {
    committed: Committed,
    entries: Vec<Entry>,
}

/// PUTs every blob the jobs carry, create-only, before any row names it (a PUT of a blob
/// already stored is a no-op). `None` when a PUT failed: every job is answered with the
/// failure.
/// Where a blob of a group comes from.
enum Source {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A spooled file, streamed.
    File(std::path::PathBuf),
}

async fn put_group<B: BlobBackend>(
    inner: &Inner<B>,
    jobs: Vec<Job>,
    started: std::time::Instant,
) -> Option<Group> {
    let mut seen = HashSet::new();
    let mut blobs: Vec<(ContentHash, Source)> = Vec::new();
    let mut sizes: HashMap<ContentHash, i64> = HashMap::new();
    let report_hashes: HashSet<ContentHash> = jobs
        .iter()
        .flat_map(|j| j.ingest.reports.iter().map(|(_, h, _)| *h))
        .collect();
    for j in &jobs {
        for (h, b) in j.ingest.blobs() {
            // A report's canonical JSON lives in its row, not in the object store.
            if !report_hashes.contains(&h) && seen.insert(h) {
                sizes.insert(h, b.len() as i64);
                // Shared with the ingest, not copied.
                blobs.push((h, Source::Bytes(Bytes::from_owner(SharedBytes(b)))));
            }
        }
        if let (Some(f), Some(path)) = (&j.ingest.stored_original, &j.file) {
            if seen.insert(f.hash()) {
                sizes.insert(f.hash(), f.len() as i64);
                blobs.push((f.hash(), Source::File(path.clone())));
            }
        }
    }
    let put = futures::stream::iter(blobs)
        .map(|(h, b)| async move {
            match b {
                Source::Bytes(b) => inner.blobs.put(h, b).await,
                Source::File(p) => inner.blobs.put_file(h, p).await,
            }
            .map(|p| (h, p))
        })
        .buffer_unordered(inner.options.put_concurrency.max(1))
        .try_collect::<Vec<(ContentHash, Put)>>()
        .await;
    match put {
        Ok(done) => Some(Group {
            jobs,
            sizes,
            existed: done
                .into_iter()
                .filter(|(_, p)| *p == Put::Existed)
                .map(|(h, _)| h)
                .collect(),
            started,
        }),
        Err(e) => {
            fail_all(jobs.into_iter().map(|j| j.reply), &e.to_string());
            None
        }
    }
}

/// One transaction for the group, retried (bounded) when it loses a race or its connection.
/// Whether it committed.
async fn commit_group<B: BlobBackend>(inner: &Inner<B>, group: Group) -> bool {
    let Group {
        jobs,
        sizes,
        existed,
        ..
    } = group;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match transact(inner, &jobs, &sizes, &existed).await {
            Ok(TxOutcome { results, txid }) => {
                for (job, r) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(r.map(|mut c| {
                        if c.seq == 1 {
                            c.seq = txid;
                        }
                        c
                    }));
                }
                return true;
            }
            Err(e) if attempt < RETRIES && retryable(&e) => {
                tracing::warn!(error = %e, attempt, "cluster commit lost a race; retrying");
                tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
            }
            Err(e) => {
                fail_all(jobs.into_iter().map(|j| j.reply), &e.to_string());
                return false;
            }
        }
    }
}

/// Whether a failed transaction may simply run again: it lost a race (serialisation,
/// deadlock, a unique key another node took first), or its connection broke. Running it again
/// is safe even when the broken connection had committed it: the retry plans under the same
/// locks and finds the reports stored (answered as duplicates, durable either way).
fn retryable(e: &ClusterError) -> bool {
    use tokio_postgres::error::SqlState;
    match e {
        ClusterError::Postgres(e) => {
            e.is_closed()
                || matches!(
                    e.code(),
                    Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                        || *c == SqlState::T_R_DEADLOCK_DETECTED
                        || *c == SqlState::UNIQUE_VIOLATION
                        || *c == SqlState::ADMIN_SHUTDOWN
                )
        }
        ClusterError::Pool(_) => true,
        _ => false,
    }
}

fn fail_all(replies: impl Iterator<Item = Reply>, why: &str) {
    tracing::error!(error = why, "cluster group commit failed");
    for r in replies {
        let _ = r.send(Err(ClusterError::CommitFailed(why.to_string())));
    }
}

struct TxOutcome {
    /// Per job: its answer (`seq` 1 marks "wrote something", replaced by the txid).
    results: Vec<Result<Committed, ClusterError>>,
    txid: u64,
}

/// What the transaction read of the stored state, for the planner.
struct View {
    versions: HashMap<ContentHash, u32>,
    chains: HashMap<String, u32>,
    blobs: HashSet<ContentHash>,
}

impl PlanView for View {
    fn report_version(&self, hash: &ContentHash) -> Result<Option<u32>, StoreError> {
        Ok(self.versions.get(hash).copied())
    }

    fn chain_length(&self, chain: &str) -> Result<u32, StoreError> {
        Ok(self.chains.get(chain).copied().unwrap_or(0))
    }

    fn has_blob(&self, hash: &ContentHash, _len: Option<usize>) -> Result<bool, StoreError> {
        Ok(self.blobs.contains(hash))
    }
}

fn bytes_list<'a>(hashes: impl Iterator<Item = &'a ContentHash>) -> Vec<Vec<u8>> {
    hashes.map(|h| h.as_bytes().to_vec()).collect()
}

async fn transact<B: BlobBackend>(
    inner: &Inner<B>,
    jobs: &[Job],
    sizes: &HashMap<ContentHash, i64>,
    existed: &HashSet<ContentHash>,
) -> Result<TxOutcome, ClusterError> {
    let mut client = inner.pool.get().await?;
    let tx = client.transaction().await?;

    // Lock the group's chains in sorted order (creating their rows), then read what is stored
    // of the group. The statements are pipelined: sent together, run by the server in order
    // (each read after the locks, with its own READ COMMITTED snapshot), answered in one
    // round trip.
    let mut chains: Vec<String> = jobs
        .iter()
        .flat_map(|j| {
            j.ingest
                .reports
                .iter()
                .map(|(r, _, _)| r.source.chain_key(r.kind))
        })
        .collect();
    chains.sort();
    chains.dedup();
    let reports = bytes_list(
        jobs.iter()
            .flat_map(|j| j.ingest.reports.iter().map(|(_, h, _)| h)),
    );
    let wanted = bytes_list(sizes.keys());
    let (sweep, txid, insert, lock, known, blobs) = futures::try_join!(
        tx.prepare_cached("SELECT pg_advisory_xact_lock_shared($1)"),
        tx.prepare_cached("SELECT txid_current()"),
        tx.prepare_cached(
            "INSERT INTO report_chains (chain_key)
             SELECT k FROM unnest($1::text[]) AS k ORDER BY k
             ON CONFLICT (chain_key) DO NOTHING",
        ),
        tx.prepare_cached(
            "SELECT chain_key, head_version FROM report_chains
             WHERE chain_key = ANY($1) ORDER BY chain_key FOR UPDATE",
        ),
        tx.prepare_cached("SELECT hash, version FROM reports WHERE hash = ANY($1)"),
        tx.prepare_cached("SELECT hash FROM blobs WHERE hash = ANY($1)"),
    )?;
    // The parameter lists outlive the joined futures that borrow them.
    let p_chains: [&(dyn ToSql + Sync); 1] = [&chains];
    let p_reports: [&(dyn ToSql + Sync); 1] = [&reports];
    let p_wanted: [&(dyn ToSql + Sync); 1] = [&wanted];
    // The sweep lock, shared: no orphan sweep runs until this transaction ends.
    let (_, txid, _, locked, known, listed) = futures::try_join!(
        tx.execute(&sweep, &[&crate::sweep::SWEEP_LOCK]),
        tx.query_one(&txid, &[]),
        tx.execute(&insert, &p_chains),
        tx.query(&lock, &p_chains),
        tx.query(&known, &p_reports),
        tx.query(&blobs, &p_wanted),
    )?;
    let txid: i64 = txid.try_get(0)?;
    let mut view = View {
        versions: HashMap::new(),
        chains: HashMap::new(),
        blobs: HashSet::new(),
    };
    for row in locked {
        let v: i32 = row.try_get(1)?;
        view.chains.insert(row.try_get(0)?, v.max(0) as u32);
    }
    for row in known {
        let v: i32 = row.try_get(1)?;
        view.versions
            .insert(hash_of(row.try_get(0)?, "report")?, v.max(0) as u32);
    }
    for row in listed {
        view.blobs.insert(hash_of(row.try_get(0)?, "blob")?);
    }

    // Plan every job against that view, in order.
    let mut planner = Planner::new();
    let mut planned: Vec<Result<Planned, ClusterError>> = Vec::with_capacity(jobs.len());
    for j in jobs {
        planned.push(match planner.plan(&view, &j.ingest) {
            Ok((committed, entries)) => Ok(Planned { committed, entries }),
            Err(e) => Err(e.into()),
        });
    }

    // A blob the object store had but no row names was an orphan when it was PUT: a sweep
    // may have removed it since. No sweep runs now (the lock above), so look again and put
    // back what is gone; once this transaction commits, its row keeps it.
    for h in existed.iter().filter(|h| !view.blobs.contains(h)) {
        if !inner.blobs.exists(*h).await? {
            let file = jobs.iter().find_map(|j| {
                j.ingest
                    .stored_original
                    .as_ref()
                    .filter(|f| f.hash() == *h)
                    .and(j.file.clone())
            });
            if let Some(path) = file {
                tracing::warn!(blob = %h, "a reused orphan blob was swept before its commit; stored again");
                inner.blobs.put_file(*h, path).await?;
                continue;
            }
            let Some(bytes) = jobs
                .iter()
                .find_map(|j| j.ingest.blobs().into_iter().find(|(b, _)| b == h))
            else {
                continue;
            };
            tracing::warn!(blob = %h, "a reused orphan blob was swept before its commit; stored again");
            inner
                .blobs
                .put(*h, Bytes::from_owner(SharedBytes(bytes.1)))
                .await?;
        }
    }

    // Blob rows: every blob of the group that the index does not list yet.
    let new_blobs: Vec<(&ContentHash, &i64)> = sizes
        .iter()
        .filter(|(h, _)| !view.blobs.contains(h))
        .collect();
    if !new_blobs.is_empty() {
        let hashes = bytes_list(new_blobs.iter().map(|(h, _)| *h));
        let lens: Vec<i64> = new_blobs.iter().map(|(_, l)| **l).collect();
        tx.execute(
            "INSERT INTO blobs (hash, size) SELECT * FROM unnest($1::bytea[], $2::bigint[])
             ON CONFLICT (hash) DO NOTHING",
            &[&hashes, &lens],
        )
        .await?;
    }

    let canonical: HashMap<ContentHash, &Arc<Vec<u8>>> = jobs
        .iter()
        .flat_map(|j| j.ingest.reports.iter().map(|(_, h, b)| (*h, b)))
        .collect();
    // Each chain's length as the group's reports are added (the planner's numbering).
    let mut lengths: HashMap<String, i32> = view
        .chains
        .iter()
        .map(|(c, v)| (c.clone(), *v as i32))
        .collect();
    let mut rows = ReportRows::default();
    let mut identity: Vec<(String, &IdentityOp)> = Vec::new();
    let mut results = Vec::with_capacity(jobs.len());
    for (k, p) in planned.iter_mut().enumerate() {
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                results.push(Err(std::mem::replace(e, ClusterError::WriterGone)));
                continue;
            }
        };
        for (e, entry) in p.entries.iter().enumerate() {
            match entry {
                Entry::Report { .. } => rows.push(entry, &canonical, &mut lengths)?,
                Entry::Instance {
                    record,
                    received_at,
                } => put_instance(&tx, record, received_at).await?,
                Entry::Original { .. } => {}
                Entry::Identity(op) => identity.push((format!("{txid}-{k}.{e}"), op)),
            }
        }
        if !p.entries.is_empty() {
            p.committed.seq = 1;
        }
        results.push(Ok(p.committed.clone()));
    }
    // The keys whose answers this group changes: its reports' local keys and the keys its
    // identity changes name, with the persons they belong to before (only when links move)
    // and after.
    let mut keys: Vec<String> = rows.patient.clone();
    for (_, op) in &identity {
        match op {
            IdentityOp::Claim { local, person, .. } | IdentityOp::Link { local, person } => {
                keys.push(local.clone());
                keys.push(person.clone());
            }
            IdentityOp::Merge { from, into } => {
                keys.push(from.clone());
                keys.push(into.clone());
            }
            IdentityOp::Resolve { .. } => {}
        }
    }
    keys.sort();
    keys.dedup();
    let mut touched = keys.clone();
    // The reports first (one statement each: rows, supersessions, chain heads), then the
    // identity changes in order (a claim marks reports of its own message).
    rows.write(&tx, &inner.options.node).await?;
    apply_identity_ops(&tx, &inner.options.node, &identity, &keys, &mut touched).await?;
    touched.extend(persons_of(&tx, &keys).await?);
    let stripes = notify(&tx, &inner.options.node, &touched).await?;
    tx.commit().await?;
    // Durable: this node's caches see the change before any caller is answered.
    for s in stripes {
        inner.generations.bump_stripe(s);
    }
    Ok(TxOutcome {
        results,
        txid: txid as u64,
    })
}

/// The channel commits announce their changes on (`LISTEN`ed by every node).
pub const CHANGES_CHANNEL: &str = "huren_changes";

/// The persons `keys` (local keys) belong to now.
async fn persons_of(tx: &Transaction<'_>, keys: &[String]) -> Result<Vec<String>, ClusterError> {
    if keys.is_empty() {
        return Ok(vec![]);
    }
    let stmt = tx
        .prepare_cached(
            "SELECT DISTINCT person_key FROM identity_links WHERE patient_key = ANY($1)",
        )
        .await?;
    tx.query(&stmt, &[&keys])
        .await?
        .iter()
        .map(|r| r.try_get(0).map_err(ClusterError::from))
        .collect()
}

/// Announces the generation stripes of `touched` to every node, inside the transaction (so
/// only a commit is announced): `v1 NODE s,s,…`, in notifications of at most 1,200 stripes
/// (7,200 bytes of list, under PostgreSQL's 8,000-byte payload limit with any node name).
async fn notify(
    tx: &Transaction<'_>,
    node: &str,
    touched: &[String],
) -> Result<Vec<u16>, ClusterError> {
    let mut stripes: Vec<u16> = touched.iter().map(|k| Generations::stripe_of(k)).collect();
    stripes.sort_unstable();
    stripes.dedup();
    if stripes.is_empty() {
        return Ok(stripes);
    }
    let payloads: Vec<String> = stripes
        .chunks(1200)
        .map(|c| {
            let list: Vec<String> = c.iter().map(u16::to_string).collect();
            format!("v1 {} {}", node_tag(node), list.join(","))
        })
        .collect();
    let stmt = tx
        .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .await?;
    tx.query(&stmt, &[&CHANGES_CHANNEL, &payloads]).await?;
    Ok(stripes)
}

/// The report rows of a group, as column arrays for one `INSERT … SELECT FROM unnest`.
#[derive(Default)]
struct ReportRows {
    hash: Vec<Vec<u8>>,
    chain: Vec<String>,
    version: Vec<i32>,
    patient: Vec<String>,
    institution: Vec<String>,
    kind: Vec<&'static str>,
    status: Vec<&'static str>,
    time_ms: Vec<Option<i64>>,
    received_at: Vec<String>,
    original: Vec<Vec<u8>>,
    /// The canonical JSON, shared with the ingest.
    canonical: Vec<Arc<Vec<u8>>>,
}

impl ReportRows {
    fn push(
        &mut self,
        entry: &Entry,
        canonical: &HashMap<ContentHash, &Arc<Vec<u8>>>,
        lengths: &mut HashMap<String, i32>,
    ) -> Result<(), ClusterError> {
        let Entry::Report { chain, .. } = entry else {
            return Ok(());
        };
        let length = lengths.entry(chain.clone()).or_insert(0);
        let Some(m) = ReportMeta::of_entry(entry, (*length + 1) as u32) else {
            return Ok(());
        };
        let bytes = canonical.get(&m.hash).ok_or_else(|| {
            ClusterError::Corrupt(format!("report {} planned without its bytes", m.hash))
        })?;
        *length += 1;
        self.hash.push(m.hash.as_bytes().to_vec());
        self.chain.push(m.chain);
        self.version.push(*length);
        self.patient.push(m.local);
        self.institution.push(m.institution);
        self.kind.push(m.kind.as_str());
        self.status.push(status_str(m.status));
        self.time_ms.push(m.time_ms);
        self.received_at.push(m.received_at);
        self.original.push(m.original.as_bytes().to_vec());
        self.canonical.push(Arc::clone(bytes));
        Ok(())
    }

    async fn write(&self, tx: &Transaction<'_>, node: &str) -> Result<(), ClusterError> {
        if self.hash.is_empty() {
            return Ok(());
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO reports (hash, chain_key, version, patient_key, institution, kind,
                                      status, time_ms, received_at, original, canonical, node)
                 SELECT u.*, $12 FROM unnest($1::bytea[], $2::text[], $3::int[], $4::text[],
                     $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::bytea[],
                     $11::bytea[]) AS u",
            )
            .await?;
        let canonical: Vec<&[u8]> = self.canonical.iter().map(|b| b.as_slice()).collect();
        tx.execute(
            &insert,
            &[
                &self.hash,
                &self.chain,
                &self.version,
                &self.patient,
                &self.institution,
                &self.kind,
                &self.status,
                &self.time_ms,
                &self.received_at,
                &self.original,
                &canonical,
                &node,
            ],
        )
        .await?;
        // Each new version supersedes the one before it (in the group or stored).
        let supersede = tx
            .prepare_cached(
                "UPDATE reports r SET superseded_by = u.hash
                 FROM unnest($1::text[], $2::int[], $3::bytea[]) AS u (chain, version, hash)
                 WHERE u.version > 1 AND r.chain_key = u.chain AND r.version = u.version - 1",
            )
            .await?;
        tx.execute(&supersede, &[&self.chain, &self.version, &self.hash])
            .await?;
        // The head of each chain: its last version in the group.
        let mut heads: HashMap<&str, (i32, &Vec<u8>)> = HashMap::new();
        for ((c, v), h) in self.chain.iter().zip(&self.version).zip(&self.hash) {
            let e = heads.entry(c.as_str()).or_insert((*v, h));
            if *v >= e.0 {
                *e = (*v, h);
            }
        }
        let (mut chains, mut versions, mut hashes) = (vec![], vec![], vec![]);
        for (c, (v, h)) in heads {
            chains.push(c);
            versions.push(v);
            hashes.push(h.as_slice());
        }
        let head = tx
            .prepare_cached(
                "UPDATE report_chains c SET head_hash = u.hash, head_version = u.version
                 FROM unnest($1::text[], $2::int[], $3::bytea[]) AS u (chain, version, hash)
                 WHERE c.chain_key = u.chain",
            )
            .await?;
        tx.execute(&head, &[&chains, &versions, &hashes]).await?;
        Ok(())
    }
}

async fn put_instance(
    tx: &Transaction<'_>,
    record: &InstanceRecord,
    received_at: &str,
) -> Result<(), ClusterError> {
    let json = serde_json::to_string(record)
        .map_err(|e| ClusterError::Corrupt(format!("instance record: {e}")))?;
    tx.execute(
        "INSERT INTO instances (sop_instance_uid, study_uid, series_uid, institution,
                                patient_key, blob, record, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, ($7::text)::jsonb, ($8::text)::timestamptz)
         ON CONFLICT (sop_instance_uid) DO UPDATE
         SET record = excluded.record, blob = excluded.blob, received_at = excluded.received_at",
        &[
            &record.sop_instance_uid,
            &record.study_instance_uid,
            &record.series_instance_uid,
            &record.institution,
            &format!("{}:{}", record.institution, record.patient_id),
            &record.original.as_bytes().as_slice(),
            &json,
            &received_at,
        ],
    )
    .await?;
    Ok(())
}

/// Applies a group's identity ops in order. When every op is a claim its local key already
/// satisfies (the steady state: a known patient's next result), one read decides it and
/// nothing is locked or written; otherwise the identity lock is taken and each op applied.
async fn apply_identity_ops(
    tx: &Transaction<'_>,
    node: &str,
    ops: &[(String, &IdentityOp)],
    keys: &[String],
    touched: &mut Vec<String>,
) -> Result<(), ClusterError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut claims: Vec<(&str, &str)> = Vec::new();
    let mut only_claims = true;
    for (_, op) in ops {
        match op {
            IdentityOp::Claim { local, person, .. } | IdentityOp::Link { local, person } => {
                claims.push((local, person))
            }
            _ => only_claims = false,
        }
    }
    if only_claims {
        let locals: Vec<&str> = claims.iter().map(|(l, _)| *l).collect();
        let stmt = tx
            .prepare_cached(
                "SELECT patient_key, person_key FROM identity_links WHERE patient_key = ANY($1)",
            )
            .await?;
        let linked: HashMap<String, String> = tx
            .query(&stmt, &[&locals])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        if claims
            .iter()
            .all(|(l, p)| linked.get(*l).map(String::as_str) == Some(*p))
        {
            return Ok(());
        }
    }
    let mut locked = false;
    lock_identity(tx, &mut locked).await?;
    // Links may move: the persons `keys` belong to before, whose answers change too.
    touched.extend(persons_of(tx, keys).await?);
    // Under the lock: claims of local keys that are unlinked, are no one's person (no group
    // to move) and appear once in the group are each one row: written together. Everything
    // else (merges, contradictions, moves of a group) goes one op at a time, in order.
    let mut rest: Vec<&(String, &IdentityOp)> = ops.iter().collect();
    if only_claims {
        let locals: Vec<&str> = claims.iter().map(|(l, _)| *l).collect();
        let linked: HashSet<String> = tx
            .query(
                "SELECT patient_key FROM identity_links WHERE patient_key = ANY($1)
                 UNION SELECT person_key FROM identity_links WHERE person_key = ANY($1)",
                &[&locals],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let mut count: HashMap<&str, usize> = HashMap::new();
        for l in &locals {
            *count.entry(l).or_default() += 1;
        }
        let (mut simple_l, mut simple_p) = (Vec::new(), Vec::new());
        rest.retain(|(_, op)| match op {
            IdentityOp::Claim { local, person, .. } | IdentityOp::Link { local, person }
                if !linked.contains(local.as_str())
                    && count.get(local.as_str()) == Some(&1)
                    && local != person =>
            {
                simple_l.push(local.as_str());
                simple_p.push(person.as_str());
                false
            }
            _ => true,
        });
        if !simple_l.is_empty() {
            tx.execute(
                "INSERT INTO identity_links (patient_key, person_key, source, linked_at, node)
                 SELECT l, p, 'claim', now(), $3 FROM unnest($1::text[], $2::text[]) AS u (l, p)",
                &[&simple_l, &simple_p, &node],
            )
            .await?;
        }
    }
    for (id, op) in rest {
        apply_identity(tx, node, op, id, &mut locked, touched).await?;
    }
    Ok(())
}

async fn lock_identity(tx: &Transaction<'_>, locked: &mut bool) -> Result<(), ClusterError> {
    if !*locked {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&IDENTITY_LOCK])
            .await?;
        *locked = true;
    }
    Ok(())
}

async fn link(
    tx: &Transaction<'_>,
    node: &str,
    local: &str,
    person: &str,
    source: &str,
) -> Result<(), ClusterError> {
    tx.execute(
        "INSERT INTO identity_links (patient_key, person_key, source, linked_at, node)
         VALUES ($1, $2, $3, now(), $4)
         ON CONFLICT (patient_key) DO UPDATE
         SET person_key = excluded.person_key, source = excluded.source,
             linked_at = excluded.linked_at, node = excluded.node",
        &[&local, &person, &source, &node],
    )
    .await?;
    Ok(())
}

/// Moves the local keys of `ns` that belong to `from` to `into` (the embedded index's
/// `move_group_ns`).
async fn move_group(
    tx: &Transaction<'_>,
    node: &str,
    from: &str,
    into: &str,
    ns: &str,
    source: &str,
) -> Result<(), ClusterError> {
    if from == into {
        return Ok(());
    }
    tx.execute(
        "UPDATE identity_links SET person_key = $2, source = $4, linked_at = now(), node = $5
         WHERE person_key = $1 AND patient_key <> $2 AND starts_with(patient_key, $3 || ':')",
        &[&from, &into, &ns, &source, &node],
    )
    .await?;
    // `from` itself, when it is a local key of `ns` that was its own person.
    if !from.starts_with("nidk:") && namespace(from) == Some(ns) && from != into {
        link(tx, node, from, into, source).await?;
    }
    Ok(())
}

async fn apply_identity(
    tx: &Transaction<'_>,
    node: &str,
    op: &IdentityOp,
    id: &str,
    locked: &mut bool,
    touched: &mut Vec<String>,
) -> Result<(), ClusterError> {
    match op {
        IdentityOp::Link { .. } | IdentityOp::Claim { .. } => match claim_of(op) {
            Some((local, person, ctx)) => claim(tx, node, local, person, ctx, id, locked).await,
            None => Ok(()),
        },
        IdentityOp::Merge { from, into } => {
            let Some(ns) = namespace(from) else {
                return Ok(());
            };
            if namespace(into) != Some(ns) {
                return Ok(());
            }
            lock_identity(tx, locked).await?;
            let pf = person_of(&**tx, from).await?;
            let pi = person_of(&**tx, into).await?;
            if pf != pi {
                move_group(tx, node, &pf, &pi, ns, "merge").await?;
                link(tx, node, from, &pi, "merge").await?;
            }
            Ok(())
        }
        IdentityOp::Resolve {
            review,
            decision,
            by,
            reason,
            at,
        } => {
            lock_identity(tx, locked).await?;
            resolve(tx, node, id, review, *decision, (by, reason, at), touched).await
        }
    }
}

/// The embedded index's resolution of a review item: an accepted claim moves that one local
/// key to the claimed person (nothing else); either decision lifts the identity-uncertain
/// mark of the claim's reports. An unknown or already decided item changes nothing. The
/// item's `seq` is the transaction's id, which the commit answers as its `seq`.
async fn resolve(
    tx: &Transaction<'_>,
    node: &str,
    id: &str,
    review: &str,
    decision: huren_store::ReviewDecision,
    (by, reason, at): (&str, &str, &str),
    touched: &mut Vec<String>,
) -> Result<(), ClusterError> {
    let Some(row) = tx
        .query_opt(
            "SELECT item::text FROM identity_reviews WHERE id = $1 FOR UPDATE",
            &[&review],
        )
        .await?
    else {
        tracing::warn!(
            review,
            "resolution of an unknown identity review item ignored"
        );
        return Ok(());
    };
    let mut item: ReviewItem = serde_json::from_str(row.try_get::<_, &str>(0)?)
        .map_err(|e| ClusterError::Corrupt(format!("identity review item: {e}")))?;
    if !matches!(item.state, huren_store::ReviewState::Open) {
        return Ok(());
    }
    let from = person_of(&**tx, &item.local).await?;
    touched.extend([from.clone(), item.local.clone(), item.claimed.clone()]);
    if decision == huren_store::ReviewDecision::AcceptClaim && from != item.claimed {
        link(tx, node, &item.local, &item.claimed, "review").await?;
    }
    if !item.reports.is_empty() {
        tx.execute(
            "UPDATE reports SET identity_review = NULL
             WHERE hash = ANY($1) AND identity_review = $2",
            &[&bytes_list(item.reports.iter()), &review],
        )
        .await?;
    }
    let seq = id
        .split('-')
        .next()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ClusterError::Corrupt(format!("identity op id {id}")))?;
    item.state = huren_store::ReviewState::Resolved {
        decision,
        from,
        by: by.to_string(),
        reason: reason.to_string(),
        at: at.to_string(),
        seq,
    };
    let json = serde_json::to_string(&item)
        .map_err(|e| ClusterError::Corrupt(format!("identity review item: {e}")))?;
    tx.execute(
        "UPDATE identity_reviews SET open = false, item = ($2::text)::jsonb WHERE id = $1",
        &[&review, &json],
    )
    .await?;
    Ok(())
}

/// The embedded index's `apply_claim`: link `local` (and its institution's group) to `person`
/// unless it is linked to another national ID; then open a review item.
async fn claim(
    tx: &Transaction<'_>,
    node: &str,
    local: &str,
    person: &str,
    ctx: Option<ClaimContext<'_>>,
    id: &str,
    locked: &mut bool,
) -> Result<(), ClusterError> {
    // A claim that changes nothing reads without the lock: it writes nothing, so it is
    // ordered before any concurrent link change.
    if person_of(&**tx, local).await? == person {
        return Ok(());
    }
    lock_identity(tx, locked).await?;
    let current = person_of(&**tx, local).await?;
    if current == person {
        return Ok(());
    }
    if current.starts_with("nidk:") {
        let original = ctx.as_ref().map(|c| c.original.as_bytes().to_vec());
        if let Some(o) = &original {
            let same = tx
                .query_opt(
                    "SELECT 1 FROM identity_reviews
                     WHERE open AND local_key = $1 AND claimed = $2 AND original = $3",
                    &[&local, &person, o],
                )
                .await?;
            if same.is_some() {
                return Ok(());
            }
        }
        let item = ReviewItem::opened(id, local, &current, person, ctx.as_ref());
        let reports = &item.reports;
        let json = serde_json::to_string(&item)
            .map_err(|e| ClusterError::Corrupt(format!("identity review item: {e}")))?;
        tx.execute(
            "INSERT INTO identity_reviews (id, local_key, claimed, original, open, item)
             VALUES ($1, $2, $3, $4, true, ($5::text)::jsonb)
             ON CONFLICT (id) DO NOTHING",
            &[&id, &local, &person, &original, &json],
        )
        .await?;
        if !reports.is_empty() {
            tx.execute(
                "UPDATE reports SET identity_review = $1 WHERE hash = ANY($2)",
                &[&id, &bytes_list(reports.iter())],
            )
            .await?;
        }
        return Ok(());
    }
    if let Some(ns) = namespace(local) {
        move_group(tx, node, &current, person, ns, "claim").await?;
    }
    link(tx, node, local, person, "claim").await
}

impl<B: BlobBackend + 'static> ReportBackend for ClusterStore<B> {
    type Error = ClusterError;

    async fn commit(&self, ingest: Ingest) -> Result<Committed, ClusterError> {
        self.commit_instances(ingest, vec![]).await
    }

    async fn report(&self, hash: ContentHash) -> Result<Option<Report>, ClusterError> {
        let client = self.inner.pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT canonical FROM reports WHERE hash = $1")
            .await?;
        let Some(row) = client
            .query_opt(&stmt, &[&hash.as_bytes().as_slice()])
            .await?
        else {
            return Ok(None);
        };
        let bytes: &[u8] = row.try_get(0)?;
        if ContentHash::of(bytes) != hash {
            return Err(ClusterError::Corrupt(format!(
                "report {hash}: its stored JSON hashes to {}",
                ContentHash::of(bytes)
            )));
        }
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| ClusterError::Corrupt(format!("report {hash}: {e}")))
    }

    async fn report_meta(&self, hash: ContentHash) -> Result<Option<ReportMeta>, ClusterError> {
        let client = self.inner.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {META_COLUMNS} FROM reports WHERE hash = $1"
            ))
            .await?;
        client
            .query_opt(&stmt, &[&hash.as_bytes().as_slice()])
            .await?
            .as_ref()
            .map(meta_of_row)
            .transpose()
    }

    async fn blob(&self, hash: ContentHash) -> Result<Option<Vec<u8>>, ClusterError> {
        {
            let client = self.inner.pool.get().await?;
            if let Some(row) = client
                .query_opt(
                    "SELECT canonical FROM reports WHERE hash = $1",
                    &[&hash.as_bytes().as_slice()],
                )
                .await?
            {
                let bytes: Vec<u8> = row.try_get(0)?;
                if ContentHash::of(&bytes) != hash {
                    return Err(ClusterError::Corrupt(format!(
                        "report {hash}: its stored JSON does not match its hash"
                    )));
                }
                return Ok(Some(bytes));
            }
        }
        Ok(self.inner.blobs.get(hash).await?.map(|b| b.to_vec()))
    }

    async fn versions(&self, chain: &str) -> Result<Vec<ContentHash>, ClusterError> {
        let client = self.inner.pool.get().await?;
        client
            .query(
                "SELECT hash FROM reports WHERE chain_key = $1 ORDER BY version",
                &[&chain],
            )
            .await?
            .iter()
            .map(|r| hash_of(r.try_get(0)?, "report"))
            .collect()
    }

    async fn chain_head(&self, chain: &str) -> Result<Option<(u32, ContentHash)>, ClusterError> {
        let client = self.inner.pool.get().await?;
        let Some(row) = client
            .query_opt(
                "SELECT head_version, head_hash FROM report_chains
                 WHERE chain_key = $1 AND head_hash IS NOT NULL",
                &[&chain],
            )
            .await?
        else {
            return Ok(None);
        };
        let v: i32 = row.try_get(0)?;
        Ok(Some((
            v.max(0) as u32,
            hash_of(row.try_get(1)?, "chain head")?,
        )))
    }

    async fn person_key(&self, id: &PatientId) -> Result<String, ClusterError> {
        match id {
            PatientId::National(nid) => Ok(huren_model::national_id_key(
                &self.inner.options.national_id_secret,
                nid,
            )),
            PatientId::Local {
                institution,
                local_id,
            } => self.person_of(&format!("{institution}:{local_id}")).await,
        }
    }

    async fn patient_reports(
        &self,
        id: &PatientId,
        kind: Option<ReportKind>,
    ) -> Result<(IdentityLink, Vec<ReportMeta>), ClusterError> {
        let person = ReportBackend::person_key(self, id).await?;
        let link = IdentityLink::of_person(&person);
        Ok((link, self.reports_of_person(&person, kind).await?))
    }

    async fn identity_reviews(&self, open_only: bool) -> Result<Vec<ReviewItem>, ClusterError> {
        let client = self.inner.pool.get().await?;
        client
            .query(
                "SELECT item::text FROM identity_reviews WHERE open OR NOT $1 ORDER BY opened",
                &[&open_only],
            )
            .await?
            .iter()
            .map(|r| {
                let s: &str = r.try_get(0)?;
                serde_json::from_str(s)
                    .map_err(|e| ClusterError::Corrupt(format!("identity review item: {e}")))
            })
            .collect()
    }
}
