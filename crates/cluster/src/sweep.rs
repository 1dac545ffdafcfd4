//! The orphan sweeper. A node that dies between the PUT of a group's blobs and the commit
//! of its transaction leaves blobs that no row names. They are harmless: nothing reads them,
//! and a later PUT of the same bytes finds them. The sweeper removes them after a grace
//! period.
//!
//! It is safe against the commits that run beside it:
//! - **Listing, outside any lock**: the blobs written before `now − grace`.
//! - **Deciding and deleting, under the sweep lock held exclusively** ([`SWEEP_LOCK`], a
//!   transaction-level advisory lock), in chunks. The candidates that a row names now are
//!   kept; the rest are deleted.
//! - **Every commit holds the same lock shared** for its whole transaction, so it never
//!   interleaves with a chunk. A commit whose PUT found a blob already there
//!   ([`crate::blobs::Put::Existed`]) and no row naming it looks again under the lock, and
//!   puts the bytes back if a sweep removed them in between. Its row then keeps the blob.
//! - A blob PUT fresh by a commit that has not committed yet is younger than the grace period.
//!   A commit's retries take seconds; the grace period is at least [`MIN_GRACE`].
//!
//! One sweep at a time in the cluster: a sweep first takes [`SWEEPER_LOCK`] for its session
//! with `pg_try_advisory_lock`; a node that does not get it skips its turn. The session is a
//! connection taken out of the pool, so the lock ends with it, even when a sweep is cancelled.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use huren_model::ContentHash;

use crate::blobs::BlobBackend;
use crate::store::ClusterError;

/// Held shared by every commit and exclusively by a sweep while it decides and deletes.
pub const SWEEP_LOCK: i64 = 0x6875_7265_6e2d_7377; // "huren-sw"
/// Held by the one sweep running in the cluster.
pub const SWEEPER_LOCK: i64 = 0x6875_7265_6e2d_7372; // "huren-sr"
/// The shortest grace period accepted.
pub const MIN_GRACE: Duration = Duration::from_secs(300);
/// The default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Candidates decided per exclusive hold of the sweep lock (commits wait that long at most).
const CHUNK: usize = 500;

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Whether this node swept (false: another node was sweeping).
    pub swept: bool,
    /// Blobs older than the grace period.
    pub listed: usize,
    /// Of those, the ones no row names, removed.
    pub removed: usize,
}

/// One sweep: removes the blobs written more than `grace` ago that no row names. `grace` below
/// [`MIN_GRACE`] is refused unless `allow_short` (the tests).
pub async fn sweep<B: BlobBackend>(
    pool: &deadpool_postgres::Pool,
    blobs: &B,
    grace: Duration,
    allow_short: bool,
) -> Result<SweepReport, ClusterError> {
    if grace < MIN_GRACE && !allow_short {
        return Err(ClusterError::Invalid(format!(
            "the sweep's grace period is {} s; at least {} s",
            grace.as_secs(),
            MIN_GRACE.as_secs()
        )));
    }
    // Out of the pool: the session lock below must end with this connection, never stay
    // with a pooled one if the sweep is cancelled midway.
    let mut client = deadpool_postgres::Object::take(pool.get().await?);
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SWEEPER_LOCK])
        .await?
        .try_get(0)?;
    if !got {
        return Ok(SweepReport::default());
    }
    // The lock ends with the connection, dropped here or on cancellation.
    sweep_locked(&mut client, blobs, grace).await
}

async fn sweep_locked<B: BlobBackend>(
    client: &mut deadpool_postgres::ClientWrapper,
    blobs: &B,
    grace: Duration,
) -> Result<SweepReport, ClusterError> {
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
    let candidates = blobs.list_before(cutoff).await?;
    let mut report = SweepReport {
        swept: true,
        listed: candidates.len(),
        removed: 0,
    };
    for chunk in candidates.chunks(CHUNK) {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SWEEP_LOCK])
            .await?;
        let list: Vec<Vec<u8>> = chunk.iter().map(|h| h.as_bytes().to_vec()).collect();
        let named: HashSet<Vec<u8>> = tx
            .query("SELECT hash FROM blobs WHERE hash = ANY($1)", &[&list])
            .await?
            .into_iter()
            .map(|r| r.try_get::<_, Vec<u8>>(0))
            .collect::<Result<_, _>>()?;
        let orphans: Vec<ContentHash> = chunk
            .iter()
            .filter(|h| !named.contains(h.as_bytes().as_slice()))
            .copied()
            .collect();
        let deleted: Vec<Result<(), crate::BlobError>> = futures::stream::iter(orphans)
            .map(|h| async move {
                let r = blobs.delete(h).await;
                if r.is_ok() {
                    tracing::info!(blob = %h, "orphan blob removed");
                }
                r
            })
            .buffer_unordered(16)
            .collect()
            .await;
        // The lock is held until every delete of the chunk has answered.
        tx.commit().await?;
        for d in deleted {
            d?;
            report.removed += 1;
        }
    }
    Ok(report)
}

/// Sweeps every `every` (the first after one period), with `grace`, for as long as the
/// runtime runs; errors are logged and the next turn tries again.
pub fn spawn_sweeper<B: BlobBackend + Clone + 'static>(
    pool: deadpool_postgres::Pool,
    blobs: B,
    every: Duration,
    grace: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match sweep(&pool, &blobs, grace, false).await {
                Ok(r) if r.removed > 0 => {
                    tracing::warn!(
                        removed = r.removed,
                        listed = r.listed,
                        "orphan blobs removed"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "orphan sweep failed"),
            }
        }
    })
}
