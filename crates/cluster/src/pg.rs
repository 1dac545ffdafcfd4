//! The PostgreSQL side: a connection pool and the schema's migrations.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use huren_model::ContentHash;
use tokio_postgres::NoTls;

/// One schema migration: SQL embedded in the binary, applied once, in version order.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its number (`0001_…` → 1); applied in increasing order.
    pub version: i32,
    /// The file's name without number and extension.
    pub name: &'static str,
    /// The SQL, run as one batch inside the migration transaction.
    pub sql: &'static str,
}

impl Migration {
    /// BLAKE3 of the SQL: an applied migration whose file was edited afterwards is refused.
    pub fn checksum(&self) -> String {
        ContentHash::of(self.sql.as_bytes()).to_string()
    }
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "regional_events",
        sql: include_str!("../migrations/0002_regional_events.sql"),
    },
    Migration {
        version: 3,
        name: "consent_events",
        sql: include_str!("../migrations/0003_consent_events.sql"),
    },
    Migration {
        version: 4,
        name: "node_queries",
        sql: include_str!("../migrations/0004_node_queries.sql"),
    },
    Migration {
        version: 5,
        name: "cluster_demo",
        sql: include_str!("../migrations/0005_cluster_demo.sql"),
    },
    Migration {
        version: 6,
        name: "commit_order",
        sql: include_str!("../migrations/0006_commit_order.sql"),
    },
];

/// The advisory-lock key migrations run under (`"huren-mg"` in ASCII).
pub const MIGRATION_LOCK: i64 = 0x6875_7265_6e2d_6d67;

/// Why `migrate` failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// No connection from the pool.
    #[error("postgres: no connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed (the transaction was rolled back: nothing of this run is applied).
    #[error("postgres: migration {step}: {source}")]
    Sql {
        /// What was being done.
        step: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// An applied migration's SQL differs from this build's file of the same number.
    #[error("migration {version} was applied with checksum {applied}, this build has {ours}: a migration file was edited after it ran")]
    Edited {
        /// The migration.
        version: i32,
        /// Recorded checksum.
        applied: String,
        /// This build's checksum.
        ours: String,
    },
    /// The database has a migration this build does not know: a newer huren migrated it.
    #[error("the database has migration {0}, which this build does not know: run a newer huren")]
    Newer(i32),
}

/// A pool of `max_size` connections to `config` without TLS (see [`pool_with`]).
pub fn pool(
    config: tokio_postgres::Config,
    max_size: usize,
) -> Result<Pool, deadpool_postgres::BuildError> {
    pool_with(config, None, max_size)
}

/// A pool of `max_size` connections to `config`, over TLS with `tls` when given, waiting at
/// most 10 s for a new connection and 30 s for a free one.
pub fn pool_with(
    config: tokio_postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_size: usize,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager_config = ManagerConfig {
        // Fast: a connection is reused unless tokio-postgres saw it closed; a dead one is
        // noticed by the next query's error (the write path retries the batch then).
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(t) => Manager::from_config(
            config,
            tokio_postgres_rustls::MakeRustlsConnect::new((*t).clone()),
            manager_config,
        ),
        None => Manager::from_config(config, NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(30)))
        .build()
}

/// Applies every migration the database lacks, in one transaction under
/// `pg_advisory_xact_lock(MIGRATION_LOCK)`, recording each in `huren_migrations`. Idempotent;
/// nodes running it at once serialise on the lock, and the later ones find everything applied.
/// Returns the versions this call applied.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, MigrateError> {
    migrate_with(pool, MIGRATIONS).await
}

/// [`migrate`] with a given list of migrations (for tests).
pub async fn migrate_with(pool: &Pool, migrations: &[Migration]) -> Result<Vec<i32>, MigrateError> {
    let sql = |step: &str| {
        let step = step.to_string();
        move |source| MigrateError::Sql { step, source }
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(sql("begin"))?;
    // Held until commit or rollback; the table is created under it too, so two first nodes
    // never race on CREATE TABLE.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(sql("advisory lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS huren_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(sql("create huren_migrations"))?;
    let rows = tx
        .query(
            "SELECT version, checksum FROM huren_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(sql("read huren_migrations"))?;
    let mut applied = std::collections::BTreeMap::new();
    for r in rows {
        let v: i32 = r.try_get(0).map_err(sql("read huren_migrations"))?;
        let c: String = r.try_get(1).map_err(sql("read huren_migrations"))?;
        applied.insert(v, c);
    }
    if let Some((&v, _)) = applied
        .iter()
        .find(|(v, _)| !migrations.iter().any(|m| m.version == **v))
    {
        return Err(MigrateError::Newer(v));
    }
    let mut done = Vec::new();
    for m in migrations {
        let ours = m.checksum();
        if let Some(c) = applied.get(&m.version) {
            if *c != ours {
                return Err(MigrateError::Edited {
                    version: m.version,
                    applied: c.clone(),
                    ours,
                });
            }
            continue;
        }
        let step = format!("{:04}_{}", m.version, m.name);
        tx.batch_execute(m.sql).await.map_err(sql(&step))?;
        // Under the lock no one else can have inserted it; ON CONFLICT keeps it a no-op
        // rather than an error should that ever change.
        tx.execute(
            "INSERT INTO huren_migrations (version, name, checksum) VALUES ($1, $2, $3)
             ON CONFLICT (version) DO NOTHING",
            &[&m.version, &m.name, &ours],
        )
        .await
        .map_err(sql(&step))?;
        done.push(m.version);
    }
    tx.commit().await.map_err(sql("commit"))?;
    Ok(done)
}
