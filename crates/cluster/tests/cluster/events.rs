//! Event streams on PostgreSQL (the cluster form of the JSON-lines logs): optimistic appends
//! per stream, so two nodes acknowledging one alert at once record exactly one
//! acknowledgement; a batch is all or nothing; every append reaches the other node's
//! follower; a lost connection is reported as a resync.

use std::time::Duration;

use huren_cluster::{follow_events, Appended, EventTable, Notice, Table};
use serde_json::json;
use tokio::sync::mpsc;

use crate::conformance::cluster;

/// The toy fold: an alert is acknowledged once. Reads the stream, checks, appends; on a
/// conflict reads what it missed and checks again. Whether this node's acknowledgement was
/// recorded.
async fn acknowledge(t: &EventTable, alert: &str, by: &str) -> bool {
    let mut known = t.stream(alert, 0).await.expect("read");
    loop {
        if known.iter().any(|e| e.event["kind"] == "ack") {
            return false;
        }
        let next = known.len() as i32 + 1;
        match t
            .append(alert, next, &[json!({"kind": "ack", "by": by})])
            .await
            .expect("append")
        {
            Appended::Recorded => return true,
            Appended::Conflict => {
                let missed = t.stream(alert, known.len() as i32).await.expect("read");
                assert!(!missed.is_empty(), "a conflict means someone wrote");
                known.extend(missed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_acknowledge_each_alert_once_and_follow_each_other() {
    let Some((store, pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let a = EventTable::new(pool.clone(), Table::Alerts, "node-a");
    let b = EventTable::new(pool.clone(), Table::Alerts, "node-b");

    // B follows every append.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _feed = follow_events(pg.postgres_config(), None, tx);
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert_eq!(first.expect("connected"), Some(Notice::Resync));

    for n in 0..40 {
        let id = format!("a-{n}");
        assert_eq!(
            a.append(&id, 1, &[json!({"kind": "raised"})])
                .await
                .expect("raise"),
            Appended::Recorded
        );
    }
    // Both nodes acknowledge every alert at the same moment.
    let mut tasks = vec![];
    for n in 0..40 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("a-{n}");
            let (x, y) = tokio::join!(acknowledge(&a, &id, "dr-a"), acknowledge(&b, &id, "dr-b"));
            (id, x, y)
        }));
    }
    for t in tasks {
        let (id, x, y) = t.await.expect("task");
        assert!(
            x ^ y,
            "{id}: exactly one acknowledgement recorded ({x}, {y})"
        );
        let events = a.stream(&id, 0).await.expect("read");
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2],
            "{id}"
        );
        let by = if x { "dr-a" } else { "dr-b" };
        assert_eq!(events[1].event["by"], by);
        assert_eq!(events[1].node, if x { "node-a" } else { "node-b" });
    }
    assert_eq!(a.all().await.expect("all").len(), 80);
    // Another table is another set of streams.
    let tasks_table = EventTable::new(pool.clone(), Table::Tasks, "node-a");
    assert!(tasks_table.stream("a-1", 0).await.expect("read").is_empty());

    // The follower saw every append: a raise and an acknowledgement of each alert.
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 40 || seen.values().any(|s| *s < 2) {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Notice::Appended { table, stream, seq })) => {
                assert_eq!(table, Table::Alerts);
                let s = seen.entry(stream).or_insert(0);
                *s = (*s).max(seq);
            }
            other => panic!("expected appends, got {other:?} after {seen:?}"),
        }
    }

    // A batch is all or none: one taken number refuses the whole batch.
    let batch = [
        json!({"kind": "x"}),
        json!({"kind": "y"}),
        json!({"kind": "z"}),
    ];
    assert_eq!(
        a.append("a-0", 2, &batch).await.expect("append"),
        Appended::Conflict
    );
    assert_eq!(a.stream("a-0", 0).await.expect("read").len(), 2);
    assert_eq!(
        a.append("a-0", 3, &batch).await.expect("append"),
        Appended::Recorded
    );
    assert_eq!(
        a.stream("a-0", 2)
            .await
            .expect("read")
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(
        a.append("a-0", 0, &batch).await.is_err(),
        "numbers start at 1"
    );

    // The follower's connection dies: it comes back and says to resync.
    while rx.try_recv().is_ok() {}
    let client = pool.get().await.expect("client");
    client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("terminate");
    let mut resynced = false;
    for _ in 0..50 {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(Notice::Resync)) => {
                resynced = true;
                break;
            }
            _ => continue,
        }
    }
    assert!(resynced, "a regained connection reports a resync");
    a.append("a-1", 3, &[json!({"kind": "note"})])
        .await
        .expect("append");
    let n = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert_eq!(
        n.expect("notice"),
        Some(Notice::Appended {
            table: Table::Alerts,
            stream: "a-1".into(),
            seq: 3
        })
    );
}
