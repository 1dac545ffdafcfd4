//! The orphan sweeper on real servers: blobs no row names are removed after the grace period,
//! named ones never. A commit that reuses an orphan keeps it even while sweeps run
//! back to back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use huren_cluster::{sweep, BlobBackend, ClusterError, Put};
use huren_model::ContentHash;
use huren_store::ReportBackend;

use crate::conformance::{cluster, lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphans_are_swept_after_the_grace_period_and_named_blobs_kept() {
    let Some((store, _pg, _s3)) = cluster("n1").await else {
        return;
    };
    let mut originals = vec![];
    for n in 0..20 {
        let m = lab("A", &format!("P{n}"), None, &format!("K{n}"), 1, "kept");
        originals.push(m.original.hash());
        store.commit(m).await.expect("commit");
    }
    // A node died between its PUTs and its commit: ten blobs no row names.
    let mut orphans = vec![];
    for n in 0..10 {
        let bytes = Bytes::from(format!("orphan {n}"));
        let h = ContentHash::of(&bytes);
        assert_eq!(
            store.blobs().put(h, bytes).await.expect("put"),
            Put::Created
        );
        orphans.push(h);
    }
    // Within the grace period nothing is touched; a short one is refused outside tests.
    let r = sweep(
        store.pool(),
        store.blobs(),
        Duration::from_secs(3600),
        false,
    )
    .await
    .expect("sweep");
    assert_eq!((r.swept, r.listed, r.removed), (true, 0, 0));
    let e = sweep(store.pool(), store.blobs(), Duration::from_secs(1), false)
        .await
        .expect_err("too short");
    assert!(matches!(e, ClusterError::Invalid(_)), "{e}");

    // S3 times are whole seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = sweep(store.pool(), store.blobs(), Duration::ZERO, true)
        .await
        .expect("sweep");
    assert!(r.swept);
    assert_eq!(r.listed, 30, "{r:?}");
    assert_eq!(r.removed, 10, "{r:?}");
    for h in &orphans {
        assert!(!store.blobs().exists(*h).await.expect("exists"), "{h}");
    }
    for h in &originals {
        assert!(store.blobs().exists(*h).await.expect("exists"), "{h}");
    }
    let v = store.verify().await.expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.blobs_checked, 20);
    // Again: nothing left to remove.
    let r = sweep(store.pool(), store.blobs(), Duration::ZERO, true)
        .await
        .expect("sweep");
    assert_eq!((r.listed, r.removed), (20, 0));
}

/// Every message's original is an orphan when its commit PUTs it ("already exists"), and
/// sweeps run back to back meanwhile: each commit that is answered keeps its original.
///
/// Six rounds of 25 messages. Each round's orphans are put 3.1 s before its commits, and
/// sweeps with a 2 s grace period run only while the commits run. So the orphans are old
/// enough to be swept, and a blob a commit PUTs fresh is not: S3 times are whole seconds,
/// and a round's commits take well under one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_that_reuses_an_orphan_keeps_it_while_sweeps_run() {
    let Some((store, _pg, _s3)) = cluster("n1").await else {
        return;
    };
    let messages: Vec<_> = (0..150)
        .map(|n| lab("A", &format!("P{n}"), None, &format!("K{n}"), 1, "reused"))
        .collect();
    let removed = Arc::new(AtomicUsize::new(0));
    let mut sweeps = 0;
    for (r, batch) in messages.chunks(25).enumerate() {
        for (k, m) in batch.iter().enumerate() {
            // The bytes `lab` makes its original of.
            let n = r * 25 + k;
            let bytes = Bytes::from(format!("A|P{n}|None|K{n}|1|reused"));
            let h = ContentHash::of(&bytes);
            assert_eq!(h, m.original.hash());
            store.blobs().put(h, bytes).await.expect("orphan");
        }
        tokio::time::sleep(Duration::from_millis(3100)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let sweeper = {
            let (store, stop, removed) = (store.clone(), stop.clone(), removed.clone());
            tokio::spawn(async move {
                let mut sweeps = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = sweep(store.pool(), store.blobs(), Duration::from_secs(2), true)
                        .await
                        .expect("sweep");
                    removed.fetch_add(r.removed, Ordering::Relaxed);
                    sweeps += 1;
                }
                sweeps
            })
        };
        // The commits start a little after the first sweep, later each round, so that in
        // some round their PUTs meet the sweep deciding and deleting.
        tokio::time::sleep(Duration::from_millis([0, 5, 10, 15, 25, 40][r])).await;
        let commits: Vec<_> = batch
            .iter()
            .cloned()
            .map(|m| {
                let store = store.clone();
                tokio::spawn(async move { store.commit(m).await })
            })
            .collect();
        for c in commits {
            c.await.expect("task").expect("commit");
        }
        stop.store(true, Ordering::Relaxed);
        sweeps += sweeper.await.expect("sweeper");
    }
    assert!(sweeps >= 6, "the sweeps ran during the commits: {sweeps}");
    for m in &messages {
        let h = m.original.hash();
        assert!(store.blobs().exists(h).await.expect("exists"), "{h}");
    }
    let v = store.verify().await.expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    eprintln!(
        "{sweeps} sweeps removed {} orphans during 150 commits",
        removed.load(Ordering::Relaxed)
    );
}
