//! The cluster store with several nodes and with failing servers: the same message sent to
//! two nodes at once is stored once, a correction on one node is seen on the other, damaged
//! rows and objects are errors, and a dying connection or object store never gives a false
//! success.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use huren_cluster::{blob_key, ClusterError, S3Blobs};
use huren_model::{ContentHash, PatientId};
use huren_store::{Outcome, ReportBackend};
use object_store::ObjectStoreExt;

use crate::conformance::{cluster, lab, node_on, SECRET};
use huren_model::national_id_key;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_store_a_message_once_and_see_each_others_corrections() {
    let Some((a, pg, s3)) = cluster("node-a").await else {
        return;
    };
    let b = node_on(&pg, &s3, "node-b").await;

    // 40 messages, each sent to both nodes at the same moment.
    let mut tasks = vec![];
    for n in 0..40 {
        let m = lab("A", &format!("P{n}"), None, &format!("K{n}"), 1, "both");
        let (a, b, m2) = (a.clone(), b.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            let (x, y) = tokio::join!(a.commit(m), b.commit(m2));
            (x.expect("node a"), y.expect("node b"))
        }));
    }
    for t in tasks {
        let (x, y) = t.await.expect("task");
        let mut outcomes = [x.reports[0].outcome, y.reports[0].outcome];
        outcomes.sort_by_key(|o| *o == Outcome::Duplicate);
        assert_eq!(outcomes, [Outcome::Stored, Outcome::Duplicate]);
        assert_eq!(x.reports[0].report, y.reports[0].report);
        assert_eq!((x.reports[0].version, y.reports[0].version), (1, 1));
    }
    let client = a.pool().get().await.expect("client");
    let count: i64 = client
        .query_one("SELECT count(*) FROM reports", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 40, "each message stored once");

    // A correction sent to A while B answers queries: B sees it as soon as A has answered.
    let patient = PatientId::Local {
        institution: "A".into(),
        local_id: "P7".into(),
    };
    let before = b.patient_reports(&patient, None).await.expect("query").1;
    assert_eq!(before.len(), 1);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (b, stop, patient) = (b.clone(), stop.clone(), patient.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let metas = b
                    .patient_reports(&patient, None)
                    .await
                    .expect("query on b")
                    .1;
                assert_eq!(metas.len(), 1, "always exactly one current version");
                n += 1;
            }
            n
        })
    };
    let c = a
        .commit(lab("A", "P7", None, "K7", 1, "corrected"))
        .await
        .expect("correction");
    assert_eq!(
        (c.reports[0].outcome, c.reports[0].version),
        (Outcome::Superseded, 2)
    );
    let after = b.patient_reports(&patient, None).await.expect("query").1;
    assert_eq!(
        after.iter().map(|m| m.hash).collect::<Vec<_>>(),
        vec![c.reports[0].report]
    );
    assert_eq!(
        b.report_meta(before[0].hash)
            .await
            .expect("meta")
            .expect("meta")
            .superseded_by,
        Some(c.reports[0].report)
    );
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.expect("reader") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_rows_and_objects_are_errors_not_answers() {
    let Some((s, _pg, _s3)) = cluster("n1").await else {
        return;
    };
    let m = lab("A", "P1", None, "K1", 1, "to damage");
    let original = m.original.hash();
    let h = s.commit(m).await.expect("commit").reports[0].report;
    let client = s.pool().get().await.expect("client");
    client
        .execute(
            "UPDATE reports SET canonical = overlay(canonical placing 'X' from 3 for 1) WHERE hash = $1",
            &[&h.as_bytes().as_slice()],
        )
        .await
        .expect("damage the row");
    let e = s.report(h).await.expect_err("a damaged report is an error");
    assert!(matches!(e, ClusterError::Corrupt(_)), "{e}");
    assert!(s.blob(h).await.is_err());

    // The original's object overwritten behind the store's back.
    s.blobs()
        .object_store()
        .put(
            &S3Blobs::path(&original),
            Bytes::from_static(b"not the original").into(),
        )
        .await
        .expect("overwrite");
    let e = s
        .blob(original)
        .await
        .expect_err("a damaged object is an error");
    assert!(e.to_string().contains(&blob_key(&original)), "{e}");

    // `verify` finds both, and a chain whose head was moved.
    client
        .execute("UPDATE report_chains SET head_version = 7", &[])
        .await
        .expect("damage the head");
    let v = s.verify().await.expect("verify");
    let all = v.problems.join("\n");
    assert_eq!(v.problems.len(), 3, "{all}");
    assert!(
        all.contains(&format!("report {h}: its JSON hashes to")),
        "{all}"
    );
    assert!(all.contains(&blob_key(&original)), "{all}");
    assert!(
        all.contains("chain lab|A|K1: its head is not its last version 1"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_object_store_fails_the_commit_and_records_nothing() {
    let Some((s, _pg, s3)) = cluster("n1").await else {
        return;
    };
    s.commit(lab("A", "P1", None, "K1", 1, "before"))
        .await
        .expect("commit while up");
    drop(s3); // stops SeaweedFS
    let m = lab("A", "P2", None, "K2", 1, "while down");
    let chain = "lab|A|K2";
    let e = tokio::time::timeout(Duration::from_secs(120), s.commit(m))
        .await
        .expect("bounded")
        .expect_err("no success without the object store");
    assert!(matches!(e, ClusterError::CommitFailed(_)), "{e}");
    assert_eq!(s.chain_head(chain).await.expect("head"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_never_give_a_false_success() {
    let Some((s, pg, s3)) = cluster("n1").await else {
        return;
    };
    // A killer on its own connection terminates every other backend every few ms.
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let pool = huren_cluster::pool(pg.postgres_config(), 1).expect("pool");
        tokio::spawn(async move {
            let client = pool.get().await.expect("killer connection");
            let mut killed = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let row = client
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()
                           AND backend_type = 'client backend'",
                        &[],
                    )
                    .await
                    .expect("terminate");
                killed += row.get::<_, i64>(0);
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
            killed
        })
    };
    let mut acked: Vec<ContentHash> = vec![];
    let mut failed = 0;
    for round in 0..20 {
        let tasks: Vec<_> = (0..10)
            .map(|n| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.commit(lab(
                        "A",
                        &format!("P{round}-{n}"),
                        None,
                        &format!("K{round}-{n}"),
                        1,
                        "x",
                    ))
                    .await
                })
            })
            .collect();
        for t in tasks {
            match t.await.expect("task") {
                Ok(c) => acked.push(c.reports[0].report),
                Err(_) => failed += 1,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let killed = killer.await.expect("killer");
    eprintln!(
        "killed {killed} connections: {} acknowledged, {failed} failed",
        acked.len()
    );
    assert!(killed > 0, "the killer killed connections");
    // Every acknowledged report is there, read through a new node.
    let fresh = node_on(&pg, &s3, "n2").await;
    for h in &acked {
        assert!(
            fresh.report(*h).await.expect("read").is_some(),
            "acknowledged report {h} is stored"
        );
    }
}

/// Polls `f` every 20 ms for at most 10 s.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_on_one_node_moves_the_other_nodes_generations() {
    let Some((a, pg, s3)) = cluster("node-a").await else {
        return;
    };
    let b = node_on(&pg, &s3, "node-b").await;
    let unrelated = "Z:nobody";
    let g0 = b.person_generation(unrelated);
    let _feed = b.follow_changes(pg.postgres_config(), None);
    // Listening: the feed marks everything stale once it is connected.
    assert!(eventually(|| b.person_generation(unrelated) != g0).await);

    // A result on A for a local key and for a national ID: B's counters move.
    let person = national_id_key(SECRET, "110101199001011234");
    let (gl, gp, gu) = (
        b.person_generation("A:P1"),
        b.person_generation(&person),
        b.person_generation(unrelated),
    );
    let before_a = a.person_generation(&person);
    a.commit(lab("A", "P1", Some("110101199001011234"), "K1", 1, "x"))
        .await
        .expect("commit");
    assert_ne!(
        a.person_generation(&person),
        before_a,
        "A's own counters move before it answers"
    );
    assert!(eventually(|| b.person_generation("A:P1") != gl).await);
    assert!(eventually(|| b.person_generation(&person) != gp).await);
    assert_eq!(
        b.person_generation(unrelated),
        gu,
        "an unrelated person's counter stays"
    );

    // The feed's connection dies: B reconnects, marks everything stale, and follows again.
    let client = a.pool().get().await.expect("client");
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("kill the listener")
        .get(0);
    assert_eq!(killed, 1);
    assert!(
        eventually(|| b.person_generation(unrelated) != gu).await,
        "resync after reconnecting"
    );
    let g = b.person_generation("A:P2");
    a.commit(lab("A", "P2", None, "K2", 1, "after the reconnect"))
        .await
        .expect("commit");
    assert!(eventually(|| b.person_generation("A:P2") != g).await);
}

/// A follower of the commits never skips a transaction that commits late: while an older
/// transaction is still open, a newer commit is not handed out (it would move the position
/// past the older one); once the older one ends, both are, in transaction order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_of_the_commits_waits_for_an_older_transaction_still_open() {
    let Some((a, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let first = a
        .commit(lab("A", "F1", None, "F1", 1, "first"))
        .await
        .expect("commit");
    let (records, pos) = a.committed_after(0, 64).await.expect("follow");
    let hashes = |r: &[huren_store::JournalRecord]| -> Vec<ContentHash> {
        r.iter()
            .flat_map(|rec| rec.entries.iter())
            .filter_map(|e| match e {
                huren_store::Entry::Report { hash, .. } => Some(*hash),
                _ => None,
            })
            .collect()
    };
    assert_eq!(hashes(&records), vec![first.reports[0].report]);
    assert_eq!(a.committed_after(pos, 64).await.expect("again").0.len(), 0);

    // An older transaction holds its id open (it has written nothing yet); a newer commit
    // lands meanwhile.
    let mut held = a.pool().get().await.expect("client");
    let tx = held.transaction().await.expect("begin");
    tx.query_one("SELECT pg_current_xact_id()", &[])
        .await
        .expect("an id");
    let second = a
        .commit(lab("A", "F2", None, "F2", 1, "second"))
        .await
        .expect("commit");
    let (waiting, same) = a.committed_after(pos, 64).await.expect("follow");
    assert!(waiting.is_empty(), "handed out past an open transaction");
    assert_eq!(same, pos);
    tx.rollback().await.expect("rollback");
    let (records, _) = a.committed_after(pos, 64).await.expect("follow");
    assert_eq!(hashes(&records), vec![second.reports[0].report]);
    // A position saved is the cluster's.
    a.save_follower_position("test", pos).await.expect("save");
    assert_eq!(a.follower_position("test").await.expect("read"), Some(pos));
    assert_eq!(a.follower_position("other").await.expect("read"), None);
    assert!(a.commit_position().await.expect("position") >= pos);
}
