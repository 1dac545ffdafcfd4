//! Migrations on a real PostgreSQL: concurrent, idempotent, edits refused.

use std::time::Instant;

use huren_cluster::{migrate, pool, MigrateError, MIGRATIONS};

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrate_applies_each_migration_once() {
    let Some(peer) = support::postgres() else {
        return;
    };
    let pool = pool(peer.postgres_config(), 8).expect("pool");

    // Four nodes start at once.
    let t = Instant::now();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { migrate(&pool).await })
        })
        .collect();
    let mut applied = Vec::new();
    for r in runs {
        applied.extend(r.await.expect("task").expect("migrate"));
    }
    let first = t.elapsed();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    applied.sort();
    assert_eq!(
        applied, all,
        "each migration applied by exactly one of the four"
    );

    let client = pool.get().await.expect("client");
    let rows = client
        .query(
            "SELECT version, count(*) FROM huren_migrations GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .expect("query");
    let listed: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(listed, all.iter().map(|v| (*v, 1)).collect::<Vec<_>>());

    // Idempotent: again, nothing to do.
    let t = Instant::now();
    assert_eq!(migrate(&pool).await.expect("again"), Vec::<i32>::new());
    let noop = t.elapsed();
    eprintln!(
        "TIMING migrate: 4 concurrent on a fresh database {:.1} ms; a no-op run {:.2} ms",
        first.as_secs_f64() * 1000.0,
        noop.as_secs_f64() * 1000.0
    );

    // The schema answers its constraints: a second version 1 of one chain is refused.
    client
        .batch_execute(
            "INSERT INTO blobs (hash, size) VALUES (decode(repeat('aa', 32), 'hex'), 1);
             INSERT INTO report_chains (chain_key) VALUES ('lab|X|1');",
        )
        .await
        .expect("seed");
    let insert = |hash: &'static str| {
        format!(
            "INSERT INTO reports (hash, chain_key, version, patient_key, institution, kind, status,
                                  received_at, original, canonical, node)
             VALUES (decode(repeat('{hash}', 32), 'hex'), 'lab|X|1', 1, 'X:1', 'X', 'lab', 'final',
                     '2026-01-01T00:00:00Z', decode(repeat('aa', 32), 'hex'), '\\x7b7d', 'n1')
             ON CONFLICT (hash) DO NOTHING"
        )
    };
    client
        .batch_execute(&insert("01"))
        .await
        .expect("first version");
    client
        .batch_execute(&insert("01"))
        .await
        .expect("same report again: a no-op");
    let e = client
        .batch_execute(&insert("02"))
        .await
        .expect_err("another report as version 1 of the same chain");
    assert!(format!("{e:?}").contains("reports_chain_version"), "{e:?}");

    // An applied migration whose file changed is refused, and so is an unknown newer one.
    client
        .execute(
            "UPDATE huren_migrations SET checksum = 'blake3:edited' WHERE version = 1",
            &[],
        )
        .await
        .expect("tamper");
    assert!(matches!(
        migrate(&pool).await,
        Err(MigrateError::Edited { version: 1, .. })
    ));
    client
        .batch_execute(&format!(
            "UPDATE huren_migrations SET checksum = '{}' WHERE version = 1;
             INSERT INTO huren_migrations (version, name, checksum) VALUES (9999, 'future', 'x');",
            MIGRATIONS[0].checksum()
        ))
        .await
        .expect("restore and add a future one");
    assert!(matches!(
        migrate(&pool).await,
        Err(MigrateError::Newer(9999))
    ));
}
