//! The alert store on a cluster's event table: an alert raised on node A reaches node B's
//! store and change feed through the notifications; both nodes acknowledging every alert at
//! once record one acknowledgement each; a node opened later loads the same alerts.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use huren_alerting::{AlertId, AlertKind, Decision, Event, Raised, State};
use huren_cluster::{follow_events, BlockingEvents, EventTable, Notice, Table};
use huren_store::{AlertStore, AlertStoreError};
use tokio::sync::mpsc;

use crate::conformance::cluster;

fn raised(n: usize) -> Raised {
    Raised {
        id: AlertId(format!("a-{n}")),
        kind: AlertKind::Stemi,
        institution: "FX-SQ01".into(),
        group: "fx-pci".into(),
        report: format!("blake3:{}", "a".repeat(64)),
        summary: "急性下壁心肌梗死".into(),
        at: Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap(),
    }
}

fn ack(by: &str) -> Event {
    Event::Acknowledged {
        by: by.into(),
        at: Utc.with_ymd_and_hms(2026, 12, 7, 8, 1, 0).unwrap(),
        decision: Decision::StemiTransfer,
        note: String::new(),
    }
}

fn node(pool: &deadpool_postgres::Pool, name: &str) -> Arc<AlertStore> {
    let sink = BlockingEvents::new(
        EventTable::new(pool.clone(), Table::Alerts, name),
        tokio::runtime::Handle::current(),
    );
    Arc::new(AlertStore::shared(Arc::new(sink)).expect("open"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_raised_on_one_node_reach_the_other_and_are_acknowledged_once() {
    let Some((store, pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let a = node(&pool, "node-a");
    let b = node(&pool, "node-b");

    // Node B follows the notifications into its store.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _feed = follow_events(pg.postgres_config(), None, tx);
    let follower = {
        let b = b.clone();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                if let Notice::Appended {
                    table: Table::Alerts,
                    stream,
                    ..
                } = n
                {
                    let b = b.clone();
                    blocking(move || b.refresh(&AlertId(stream)).expect("refresh")).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut b_changes = b.feed().subscribe();
    let seq0 = b.feed().sequence();

    for n in 0..20 {
        let a = a.clone();
        let (alert, new) = blocking(move || a.raise(raised(n))).await.expect("raise");
        assert!(new);
        assert_eq!(alert.state, State::Open);
    }
    // B's store and its change feed (what the event-stream pages follow) have them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.count(|_| true) < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B saw {}",
            b.count(|_| true)
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), b_changes.changed()).await;
    }
    assert!(b.feed().sequence() >= seq0 + 20);
    // Raising again on B: the same alert, not new.
    let b2 = b.clone();
    assert!(
        !blocking(move || b2.raise(raised(3)))
            .await
            .expect("raise")
            .1
    );

    // Both nodes acknowledge every alert at the same moment.
    let mut tasks = vec![];
    for n in 0..20 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let id = AlertId(format!("a-{n}"));
            let (ia, ib) = (id.clone(), id.clone());
            let (x, y) = tokio::join!(
                blocking(move || a.apply(&ia, ack("dr.a"))),
                blocking(move || b.apply(&ib, ack("dr.b")))
            );
            (id, x, y)
        }));
    }
    let mut by = std::collections::HashMap::new();
    for t in tasks {
        let (id, x, y) = t.await.expect("task");
        assert!(
            x.is_ok() ^ y.is_ok(),
            "{id:?}: one acknowledgement ({x:?}, {y:?})"
        );
        let loser = if x.is_ok() { y } else { x };
        assert!(
            matches!(loser, Err(AlertStoreError::Refused(_))),
            "the other is refused: {loser:?}"
        );
        let State::Acknowledged { by: who, .. } = a.get(&id).expect("on A").state else {
            panic!("{id:?} not acknowledged on A");
        };
        by.insert(id, who);
    }
    // A node opened now loads the same alerts, each acknowledged by the same physician.
    let c = node(&pool, "node-c");
    assert_eq!(c.count(|_| true), 20);
    for (id, who) in &by {
        let State::Acknowledged { by, .. } = c.get(id).expect("on C").state else {
            panic!("{id:?} not acknowledged on C");
        };
        assert_eq!(&by, who);
    }
    follower.abort();
}
