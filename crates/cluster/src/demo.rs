//! `huren serve --demo` on a cluster: one demo for every node. The first node to start
//! writes the demo's national-ID secret and tokens (`cluster_demo`, migration 0005) and every
//! node uses what is stored; one node loads the demo data, under an advisory lock, and notes
//! when it is done, so the data is loaded once however many nodes start (and again by the
//! next node to start if the loader died before it finished).

use deadpool_postgres::Pool;

use crate::store::ClusterError;

/// The advisory-lock key the demo is loaded under (`"huren-dm"` in ASCII).
pub const DEMO_LOCK: i64 = 0x6875_7265_6e2d_646d;

/// The cluster's demo as stored.
#[derive(Clone, Debug)]
pub struct DemoState {
    /// The national-ID secret every node keys with.
    pub secret: String,
    /// The demo's tokens (what `huren serve --demo` prints).
    pub tokens: serde_json::Value,
}

/// The cluster's demo: `secret` and `tokens` stored unless another node stored its own
/// first, then what is stored.
pub async fn demo_state(
    pool: &Pool,
    secret: &str,
    tokens: &serde_json::Value,
) -> Result<DemoState, ClusterError> {
    let client = pool.get().await?;
    let tokens = tokens.to_string();
    client
        .execute(
            "INSERT INTO cluster_demo (id, secret, tokens) VALUES (1, $1, ($2::text)::jsonb)
             ON CONFLICT (id) DO NOTHING",
            &[&secret, &tokens],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT secret, tokens::text FROM cluster_demo WHERE id = 1",
            &[],
        )
        .await?;
    Ok(DemoState {
        secret: row.try_get(0)?,
        tokens: serde_json::from_str(row.try_get::<_, &str>(1)?)
            .map_err(|e| ClusterError::Corrupt(format!("cluster_demo.tokens: {e}")))?,
    })
}

/// Runs `load` unless the demo is loaded already, one node at a time: the demo patient's
/// authorisation, made by `load` (which answers it) or by the node that loaded it. The lock
/// is held on a connection taken out of the pool, so it ends with the node if it dies.
pub async fn demo_once<F, Fut>(pool: &Pool, node: &str, load: F) -> Result<String, ClusterError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let client = deadpool_postgres::Object::take(pool.get().await?);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&DEMO_LOCK])
        .await?;
    let done: Option<String> = client
        .query_opt(
            "SELECT patient_authorization FROM cluster_demo
             WHERE id = 1 AND loaded_at IS NOT NULL",
            &[],
        )
        .await?
        .map(|r| r.try_get::<_, Option<String>>(0))
        .transpose()?
        .flatten();
    let out = match done {
        Some(a) => a,
        None => {
            let a = load().await.map_err(ClusterError::CommitFailed)?;
            client
                .execute(
                    "UPDATE cluster_demo
                     SET loaded_at = now(), loaded_by = $1, patient_authorization = $2
                     WHERE id = 1",
                    &[&node, &a],
                )
                .await?;
            a
        }
    };
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&DEMO_LOCK])
        .await?;
    Ok(out)
}
