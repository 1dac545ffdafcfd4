//! The audit trail on the cluster: one hash chain per node in `audit_records` (so nodes never
//! wait on one global chain), and checkpoints over every node's head in `audit_checkpoints`
//! (chained themselves), so [`verify_audit`] checks the whole cluster and notices a node chain
//! cut short or rewritten after a checkpoint saw it.
//!
//! Entries have the audit log file's format exactly ([`huren_audit::entry_line`]): the same
//! record sealed the same way has the same hash on either back end. Each node group-commits its
//! appends (one multi-row `INSERT`, durable when it returns, then the answers), like the file
//! log's writer thread. The primary key `(node, seq)` and `UNIQUE (node, prev_hash)` refuse a
//! second writer of one node's chain: it gets an error, never a fork.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::TryStreamExt;
use huren_audit::{AuditEntry, AuditRecord, GENESIS};
use huren_model::ContentHash;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::store::ClusterError;

/// The advisory lock checkpoint writers take (one checkpoint at a time).
pub const CHECKPOINT_LOCK: i64 = 0x6875_7265_6e2d_6370; // "huren-cp"

/// Most records in one group commit.
const MAX_GROUP: usize = 512;

type Reply = oneshot::Sender<Result<AuditEntry, ClusterError>>;

/// A node's audit chain; cheap to clone. Appends are group-committed by one task per chain.
#[derive(Clone)]
pub struct ClusterAudit {
    tx: mpsc::UnboundedSender<(AuditRecord, Reply)>,
    node: Arc<str>,
    pool: Pool,
}

/// The last entry of a chain: its number and hash.
#[derive(Clone, Debug)]
struct Head {
    seq: u64,
    hash: String,
}

fn hash_bytes(s: &str, what: &str) -> Result<Vec<u8>, ClusterError> {
    ContentHash::from_str(s)
        .map(|h| h.as_bytes().to_vec())
        .map_err(|_| ClusterError::Corrupt(format!("{what}: not a hash: {s:?}")))
}

async fn load_head(pool: &Pool, node: &str) -> Result<Head, ClusterError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT seq, hash FROM audit_records WHERE node = $1 ORDER BY seq DESC LIMIT 1",
            &[&node],
        )
        .await?;
    Ok(match row {
        None => Head {
            seq: 0,
            hash: GENESIS.to_string(),
        },
        Some(r) => {
            let seq: i64 = r.try_get(0)?;
            let hash: &[u8] = r.try_get(1)?;
            let hash = <[u8; 32]>::try_from(hash)
                .map(ContentHash::from_bytes)
                .map_err(|_| ClusterError::Corrupt("audit head hash".into()))?;
            Head {
                seq: seq as u64,
                hash: hash.to_string(),
            }
        }
    })
}

impl ClusterAudit {
    /// The chain of `node` on `pool` (migrated), continuing after its last stored entry.
    pub async fn open(pool: Pool, node: &str) -> Result<ClusterAudit, ClusterError> {
        let head = load_head(&pool, node).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let node: Arc<str> = Arc::from(node);
        tokio::spawn(writer(pool.clone(), node.clone(), head, rx));
        Ok(ClusterAudit { tx, node, pool })
    }

    /// The pool it writes to.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// This chain's node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Appends a record; answers once it is durable.
    pub async fn append(&self, record: AuditRecord) -> Result<AuditEntry, ClusterError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((record.bounded(), reply))
            .map_err(|_| ClusterError::WriterGone)?;
        rx.await.map_err(|_| ClusterError::WriterGone)?
    }
}

async fn writer(
    pool: Pool,
    node: Arc<str>,
    mut head: Head,
    mut rx: mpsc::UnboundedReceiver<(AuditRecord, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        match write_group(&pool, &node, &head, jobs).await {
            Ok((h, sent)) => {
                head = h;
                for (reply, entry) in sent {
                    let _ = reply.send(Ok(entry));
                }
            }
            Err((e, replies)) => {
                let why = match &e {
                    ClusterError::Postgres(pe)
                        if pe.code()
                            == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                    {
                        format!(
                            "another process writes the audit chain of node {node:?} \
                             (each node needs its own name): {e}"
                        )
                    }
                    _ => e.to_string(),
                };
                tracing::error!(error = %why, "cluster audit append failed");
                for r in replies {
                    let _ = r.send(Err(ClusterError::CommitFailed(why.clone())));
                }
                // Start again from what is stored (another writer may have moved it).
                if let Ok(h) = load_head(&pool, &node).await {
                    head = h;
                }
            }
        }
    }
}

type Sent = Vec<(Reply, AuditEntry)>;

/// Seals and inserts one group; on failure gives back the replies to fail.
async fn write_group(
    pool: &Pool,
    node: &str,
    head: &Head,
    jobs: Vec<(AuditRecord, Reply)>,
) -> Result<(Head, Sent), (ClusterError, Vec<Reply>)> {
    let at = chrono_now();
    let mut h = head.clone();
    let (mut seqs, mut prevs, mut hashes, mut ats, mut actions, mut actors, mut patients) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut persons: Vec<String> = vec![];
    let mut lines: Vec<Vec<u8>> = vec![];
    let mut sent: Sent = vec![];
    let mut failed: Option<ClusterError> = None;
    let mut replies = vec![];
    for (record, reply) in jobs {
        if failed.is_some() {
            replies.push(reply);
            continue;
        }
        let sealed = huren_audit::entry_line(h.seq + 1, at.clone(), h.hash.clone(), record)
            .map_err(ClusterError::from)
            .and_then(|(entry, mut line)| {
                line.pop(); // the newline
                let prev = (entry.seq > 1)
                    .then(|| hash_bytes(&entry.prev, "audit prev"))
                    .transpose()?;
                Ok((entry, line, prev))
            });
        match sealed {
            Ok((entry, line, prev)) => {
                seqs.push(entry.seq as i64);
                prevs.push(prev);
                match hash_bytes(&entry.hash, "audit hash") {
                    Ok(b) => hashes.push(b),
                    Err(e) => {
                        failed = Some(e);
                        replies.push(reply);
                        continue;
                    }
                }
                ats.push(entry.at.clone());
                actions.push(entry.record.action.clone());
                actors.push(entry.record.actor.clone());
                patients.push(entry.record.patient.clone());
                persons.push(
                    entry
                        .record
                        .detail
                        .get("persons")
                        .filter(|p| p.is_array())
                        .map_or_else(|| "[]".to_string(), |p| p.to_string()),
                );
                lines.push(line);
                h = Head {
                    seq: entry.seq,
                    hash: entry.hash.clone(),
                };
                sent.push((reply, entry));
            }
            Err(e) => {
                failed = Some(e);
                replies.push(reply);
            }
        }
    }
    let fail = |e: ClusterError, sent: Sent, mut replies: Vec<Reply>| {
        replies.extend(sent.into_iter().map(|(r, _)| r));
        (e, replies)
    };
    if let Some(e) = failed {
        return Err(fail(e, sent, replies));
    }
    let insert = async {
        let client = pool.get().await?;
        client
            .execute(
                "INSERT INTO audit_records (node, seq, prev_hash, hash, at, action, actor, patient,
                                            record, persons)
                 SELECT $1, s, p, h, a::timestamptz, ac, ar, pa, r, pe::jsonb
                 FROM unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::text[], $6::text[],
                             $7::text[], $8::text[], $9::bytea[], $10::text[])
                      WITH ORDINALITY AS u (s, p, h, a, ac, ar, pa, r, pe, o)
                 ORDER BY o",
                &[
                    &node, &seqs, &prevs, &hashes, &ats, &actions, &actors, &patients, &lines,
                    &persons,
                ],
            )
            .await?;
        Ok::<_, ClusterError>(())
    };
    match insert.await {
        Ok(()) => Ok((h, sent)),
        Err(e) => Err(fail(e, sent, replies)),
    }
}

/// Now, RFC 3339 UTC with microseconds (the file log's `at` format).
fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A checkpoint over every node's chain head.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// 1-based number.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The previous checkpoint's hash ([`GENESIS`] for the first).
    pub prev: String,
    /// Each node's head: `[seq, hash]`.
    pub heads: std::collections::BTreeMap<String, (u64, String)>,
    /// BLAKE3 over the canonical JSON of everything above.
    pub hash: String,
}

fn checkpoint_hash(c: &Checkpoint) -> Result<String, ClusterError> {
    let mut v = serde_json::to_value(c).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.remove("hash");
    }
    let bytes =
        huren_model::canonical_json(&v).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
    Ok(ContentHash::of(&bytes).to_string())
}

/// Writes a checkpoint over every node's current head (one at a time across the cluster,
/// under [`CHECKPOINT_LOCK`]); `None` when nothing changed since the last one.
pub async fn checkpoint(pool: &Pool) -> Result<Option<Checkpoint>, ClusterError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHECKPOINT_LOCK])
        .await?;
    let last = tx
        .query_opt(
            "SELECT heads::text FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|r| r.try_get::<_, String>(0))
        .transpose()?
        .map(|s| serde_json::from_str::<Checkpoint>(&s))
        .transpose()
        .map_err(|e| ClusterError::Corrupt(format!("audit checkpoint: {e}")))?;
    let mut heads = std::collections::BTreeMap::new();
    for r in tx
        .query(
            "SELECT DISTINCT ON (node) node, seq, hash FROM audit_records ORDER BY node, seq DESC",
            &[],
        )
        .await?
    {
        let seq: i64 = r.try_get(1)?;
        let hash: &[u8] = r.try_get(2)?;
        let hash = <[u8; 32]>::try_from(hash)
            .map(ContentHash::from_bytes)
            .map_err(|_| ClusterError::Corrupt("audit hash".into()))?;
        heads.insert(r.try_get::<_, String>(0)?, (seq as u64, hash.to_string()));
    }
    if last.as_ref().is_some_and(|l| l.heads == heads) {
        return Ok(None);
    }
    let mut c = Checkpoint {
        seq: last.as_ref().map_or(1, |l| l.seq + 1),
        at: chrono_now(),
        prev: last.map_or_else(|| GENESIS.to_string(), |l| l.hash),
        heads,
        hash: String::new(),
    };
    c.hash = checkpoint_hash(&c)?;
    let json = serde_json::to_string(&c).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
    let prev = (c.seq > 1)
        .then(|| hash_bytes(&c.prev, "checkpoint prev"))
        .transpose()?;
    tx.execute(
        "INSERT INTO audit_checkpoints (seq, prev_hash, hash, at, heads)
         VALUES ($1, $2, $3, ($4::text)::timestamptz, ($5::text)::jsonb)",
        &[
            &(c.seq as i64),
            &prev,
            &hash_bytes(&c.hash, "checkpoint hash")?,
            &c.at,
            &json,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(c))
}

/// What [`verify_audit`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditCheck {
    /// Entries checked, over all nodes.
    pub entries: u64,
    /// Node chains walked.
    pub nodes: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Problems found; empty means every chain and checkpoint holds.
    pub problems: Vec<String>,
}

/// Walks every node's chain (numbering, links, each entry's hash over its content, the row's
/// columns against its entry) and every checkpoint (chained, hashed, and every head it names
/// still in its node's chain with that hash).
pub async fn verify_audit(pool: &Pool) -> Result<AuditCheck, ClusterError> {
    let mut out = AuditCheck::default();
    let client = pool.get().await?;
    // The checkpoints first (few): their chain, and the (node, seq) positions they name, so
    // the walk over the records keeps only the hashes found there.
    let mut prev = GENESIS.to_string();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let rows = client
        .query(
            "SELECT heads::text FROM audit_checkpoints ORDER BY seq",
            &[],
        )
        .await?;
    for (expect, r) in (1u64..).zip(rows) {
        out.checkpoints += 1;
        let text: String = r.try_get(0)?;
        let c: Checkpoint = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                out.problems.push(format!("audit checkpoint {expect}: {e}"));
                break;
            }
        };
        if c.seq != expect || c.prev != prev || checkpoint_hash(&c)? != c.hash {
            out.problems.push(format!(
                "audit checkpoint {}: not chained to checkpoint {} or edited",
                c.seq,
                expect.saturating_sub(1)
            ));
            break;
        }
        prev = c.hash.clone();
        checkpoints.push(c);
    }
    let mut named: HashMap<(String, u64), Option<String>> = HashMap::new();
    for c in &checkpoints {
        for (node, (seq, _)) in &c.heads {
            named.insert((node.clone(), *seq), None);
        }
    }
    let rows = client
        .query_raw(
            "SELECT node, seq, record, hash FROM audit_records ORDER BY node, seq",
            std::iter::empty::<i32>(),
        )
        .await?;
    futures::pin_mut!(rows);
    // The chain being walked: node, expected next seq, expected prev; once broken, skipped.
    let mut walk: Option<(String, u64, String, bool)> = None;
    while let Some(row) = rows.try_next().await? {
        out.entries += 1;
        let node: String = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        let record: &[u8] = row.try_get(2)?;
        let col_hash: &[u8] = row.try_get(3)?;
        if walk.as_ref().is_none_or(|w| w.0 != node) {
            out.nodes += 1;
            walk = Some((node.clone(), 1, GENESIS.to_string(), false));
        }
        let Some(w) = walk.as_mut() else { continue };
        if w.3 {
            continue;
        }
        let line = String::from_utf8_lossy(record);
        match huren_audit::check_line(&line, w.1, &w.2) {
            Ok(entry) => {
                let ok_col =
                    hash_bytes(&entry.hash, "audit hash").ok().as_deref() == Some(col_hash);
                if !ok_col || entry.seq as i64 != seq {
                    out.problems.push(format!(
                        "audit chain of node {node}: row {seq} does not match its entry"
                    ));
                    w.3 = true;
                    continue;
                }
                if let Some(found) = named.get_mut(&(node.clone(), entry.seq)) {
                    *found = Some(entry.hash.clone());
                }
                w.1 += 1;
                w.2 = entry.hash;
            }
            Err(why) => {
                out.problems
                    .push(format!("audit chain of node {node}: entry {seq}: {why}"));
                w.3 = true;
            }
        }
    }
    for c in &checkpoints {
        for (node, (seq, hash)) in &c.heads {
            let found = named.get(&(node.clone(), *seq)).and_then(Option::as_ref);
            if found != Some(hash) {
                out.problems.push(format!(
                    "audit chain of node {node}: entry {seq}, named by checkpoint {}, is missing or changed",
                    c.seq
                ));
            }
        }
    }
    Ok(out)
}

/// Every audit entry about a person, over all nodes, oldest first.
pub async fn audit_of_patient(pool: &Pool, person: &str) -> Result<Vec<AuditEntry>, ClusterError> {
    let client = pool.get().await?;
    client
        .query(
            "SELECT record FROM audit_records WHERE patient = $1 ORDER BY at, node, seq",
            &[&person],
        )
        .await?
        .iter()
        .map(|r| {
            let b: &[u8] = r.try_get(0)?;
            serde_json::from_slice(b)
                .map_err(|e| ClusterError::Corrupt(format!("audit entry: {e}")))
        })
        .collect()
}

/// Writes a checkpoint every `every` (when something changed) until the handle is dropped.
pub fn spawn_checkpoints(pool: Pool, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = checkpoint(&pool).await {
                tracing::warn!(error = %e, "audit checkpoint failed; the next tick tries again");
            }
        }
    })
}
