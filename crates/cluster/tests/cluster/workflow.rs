//! The workflow stores on a cluster's event tables. An alert raised on node A reaches node
//! B's store and change feed through the notifications. Both nodes acknowledging every alert
//! at once record one acknowledgement each, and a node opened later loads the same alerts.
//! Two readers on two nodes claiming one reading task: one claim wins. Two nodes stamping one
//! chest-pain milestone with different times: one time is kept.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use huren_alerting::{AlertId, State};
use huren_cluster::{follow_events, BlockingEvents, EventTable, Notice, Table};
use huren_store::{AlertStore, AlertStoreError, CaseStore, CaseStoreError, TaskError, TaskStore};
use tokio::sync::mpsc;

use crate::conformance::cluster;

use crate::streams::{ack, raised};

/// `table` as node `name`'s blocking sink.
fn sink(pool: &deadpool_postgres::Pool, table: Table, name: &str) -> Arc<BlockingEvents> {
    Arc::new(BlockingEvents::new(
        EventTable::new(pool.clone(), table, name),
        tokio::runtime::Handle::current(),
    ))
}

fn node(pool: &deadpool_postgres::Pool, name: &str) -> Arc<AlertStore> {
    Arc::new(AlertStore::shared(sink(pool, Table::Alerts, name)).expect("open"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_readers_on_two_nodes_claim_each_task_once() {
    let Some((store, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let tasks =
        |name: &str| Arc::new(TaskStore::shared(sink(&pool, Table::Tasks, name)).expect("open"));
    let (a, b) = (tasks("node-a"), tasks("node-b"));
    let at = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
    for n in 0..20 {
        let a = a.clone();
        let c = huren_workflow::Created {
            id: huren_workflow::TaskId(format!("t-{n}")),
            kind: huren_workflow::Kind::Ecg,
            priority: huren_workflow::Priority::Routine,
            centre: huren_workflow::CentreId("fx-ecg".into()),
            institution: "FX-SQ01".into(),
            report: format!("blake3:{}", "b".repeat(64)),
            at,
            due_at: at + chrono::Duration::minutes(30),
            claim_timeout_secs: 900,
        };
        assert!(blocking(move || a.create(c)).await.expect("create").1);
    }
    let mut wins = 0;
    for n in 0..20 {
        let id = huren_workflow::TaskId(format!("t-{n}"));
        let claim = |by: &str| huren_workflow::Event::Claimed { by: by.into(), at };
        let (a, b, ia, ib, ca, cb) = (
            a.clone(),
            b.clone(),
            id.clone(),
            id.clone(),
            claim("reader-a"),
            claim("reader-b"),
        );
        // B has not seen the task: it finds it on its first write.
        let (x, y) = tokio::join!(
            blocking(move || a.apply(&ia, ca)),
            blocking(move || b.apply(&ib, cb))
        );
        assert!(x.is_ok() ^ y.is_ok(), "{id:?}: one claim ({x:?}, {y:?})");
        let loser = if x.is_ok() { y } else { x };
        assert!(matches!(loser, Err(TaskError::Transition(_))), "{loser:?}");
        wins += 1;
    }
    assert_eq!(wins, 20);
    // B, refreshed, holds the same claims as A.
    for n in 0..20 {
        let id = huren_workflow::TaskId(format!("t-{n}"));
        let b2 = b.clone();
        let i2 = id.clone();
        blocking(move || b2.refresh(&i2)).await.expect("refresh");
        assert_eq!(a.get(&id), b.get(&id), "{id:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_stamp_a_milestone_once() {
    use huren_chestpain::{CaseEvent, Milestone, Source, Stamp};
    let Some((store, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let cases =
        |name: &str| Arc::new(CaseStore::shared(sink(&pool, Table::Cases, name)).expect("open"));
    let (a, b) = (cases("node-a"), cases("node-b"));
    let t = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
    for n in 0..10 {
        let a = a.clone();
        let opened = CaseEvent::Opened {
            id: format!("c-{n}"),
            alert: format!("a-{n}"),
            institution: "FX-SQ01".into(),
            pci_institution: "FX-ZX".into(),
            group: "fx-pci".into(),
            patient: "FX-SQ01:P1".into(),
            ecg_report: "blake3:00".into(),
            at: t(0),
        };
        assert!(blocking(move || a.open_case(opened)).await.expect("open").1);
    }
    let stamp = |at: i64, by: &str| CaseEvent::Stamped {
        milestone: Milestone::DoorIn,
        stamp: Stamp {
            at: t(at),
            by: Some(by.into()),
            source: Source::Entered,
            recorded_at: t(at),
        },
    };
    for n in 0..10 {
        let id = format!("c-{n}");
        let (a2, b2, ia, ib) = (a.clone(), b.clone(), id.clone(), id.clone());
        let (sa, sb) = (stamp(10, "nurse-a"), stamp(15, "nurse-b"));
        let (x, y) = tokio::join!(
            blocking(move || a2.apply(&ia, sa, t(20))),
            blocking(move || b2.apply(&ib, sb, t(20)))
        );
        assert!(
            x.is_ok() ^ y.is_ok(),
            "{id}: one door-in time ({x:?}, {y:?})"
        );
        let loser = if x.is_ok() { y } else { x };
        assert!(
            matches!(loser, Err(CaseStoreError::Refused(_))),
            "{loser:?}"
        );
        let b2 = b.clone();
        let i2 = id.clone();
        blocking(move || b2.refresh(&i2)).await.expect("refresh");
        assert_eq!(a.get(&id), b.get(&id), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outbound_message_is_enqueued_once_and_recorded_delivered_once() {
    use huren_store::{Enqueue, Outbox, OutboxError, OutboxEvent, OutboxState};
    let Some((store, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let outbox =
        |name: &str| Arc::new(Outbox::shared(sink(&pool, Table::Outbox, name)).expect("open"));
    let (a, b) = (outbox("node-a"), outbox("node-b"));
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
    let item = |n: usize| Enqueue {
        id: format!("blake3:{n:064}"),
        destination: "FX-SQ01".into(),
        msh10: format!("{n:020}"),
        message: "MSH|^~\\&|HUREN\r".into(),
    };
    // The same 20 messages enqueued on both nodes at once: each stored once.
    let (a2, b2) = (a.clone(), b.clone());
    let (x, y) = tokio::join!(
        blocking(move || a2.enqueue_all((0..20).map(item).collect(), now)),
        blocking(move || b2.enqueue_all((0..20).map(item).collect(), now))
    );
    assert_eq!(x.expect("a") + y.expect("b"), 20, "each message once");
    assert_eq!(
        a.count(OutboxState::Pending) + b.count(OutboxState::Pending),
        40
    );
    // Both nodes record a delivery of every message at once: one is recorded.
    for n in 0..20 {
        let id = item(n).id;
        let delivered = |by: &str| OutboxEvent::Delivered {
            id: id.clone(),
            at: now,
            ack_code: "AA".into(),
            ack_control_id: by.into(),
        };
        let (a2, b2, da, db) = (a.clone(), b.clone(), delivered("a"), delivered("b"));
        let (x, y) = tokio::join!(
            blocking(move || a2.record(da)),
            blocking(move || b2.record(db))
        );
        assert!(x.is_ok() ^ y.is_ok(), "{id}: one delivery ({x:?}, {y:?})");
        let loser = if x.is_ok() { y } else { x };
        assert!(matches!(loser, Err(OutboxError::Refused(_))), "{loser:?}");
    }
    // A third node loads 20 delivered messages, and nothing is due.
    let c = outbox("node-c");
    assert_eq!(c.count(OutboxState::Delivered), 20);
    assert_eq!(c.count(OutboxState::Pending), 0);
    assert!(c.due(now + chrono::Duration::hours(1)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_at_a_time_holds_a_destinations_delivery_lease() {
    use huren_store::Outbox;
    let Some((store, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let outbox =
        |name: &str| Arc::new(Outbox::shared(sink(&pool, Table::Outbox, name)).expect("open"));
    let (a, b) = (outbox("node-a"), outbox("node-b"));
    let a2 = a.clone();
    let held = blocking(move || a2.lease("FX-SQ01")).await.expect("lease");
    assert!(held.is_some(), "A holds FX-SQ01");
    let b2 = b.clone();
    assert!(
        blocking(move || b2.lease("FX-SQ01"))
            .await
            .expect("lease")
            .is_none(),
        "B does not while A does"
    );
    let b2 = b.clone();
    assert!(
        blocking(move || b2.lease("FX-SQ02"))
            .await
            .expect("lease")
            .is_some(),
        "another destination is free"
    );
    drop(held);
    // The lock ends with A's connection.
    let mut got = false;
    for _ in 0..100 {
        let b2 = b.clone();
        if blocking(move || b2.lease("FX-SQ01"))
            .await
            .expect("lease")
            .is_some()
        {
            got = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(got, "B holds FX-SQ01 once A let go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_roster_edit_on_one_node_is_the_roster_on_the_other() {
    use huren_store::{RosterEdit, RosterLog};
    let Some((store, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let roster =
        |name: &str| Arc::new(RosterLog::shared(sink(&pool, Table::Roster, name)).expect("open"));
    let (a, b) = (roster("node-a"), roster("node-b"));
    let edit = |reader: &str| RosterEdit {
        centre: "fx-ecg".into(),
        entries: vec![huren_workflow::RosterEntry {
            reader: reader.into(),
            centre: "fx-ecg".into(),
            days: vec![],
            from: None,
            to: None,
        }],
        by: "dr.chief".into(),
        at: Utc::now(),
    };
    let a2 = a.clone();
    let e1 = edit("dr.x");
    blocking(move || a2.record::<()>(e1, |_| Ok(())))
        .await
        .expect("store")
        .expect("check");
    // B, which has not seen A's edit, records its own: it becomes the next edit.
    let b2 = b.clone();
    let e2 = edit("dr.y");
    blocking(move || b2.record::<()>(e2, |_| Ok(())))
        .await
        .expect("store")
        .expect("check");
    let a2 = a.clone();
    blocking(move || a2.refresh("fx-ecg"))
        .await
        .expect("refresh");
    assert_eq!(a.of("fx-ecg").expect("A").entries[0].reader, "dr.y");
    assert_eq!(b.of("fx-ecg").expect("B").entries[0].reader, "dr.y");
    // A refused edit writes nothing anywhere.
    let b2 = b.clone();
    let e3 = edit("dr.z");
    assert_eq!(
        blocking(move || b2.record(e3, |_| Err("no")))
            .await
            .expect("store"),
        Err("no")
    );
    assert_eq!(
        roster("node-c").of("fx-ecg").expect("C").entries[0].reader,
        "dr.y"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consent_recorded_on_one_node_verifies_on_the_other_after_a_refresh() {
    use huren_store::ConsentStore;
    let Some((store, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let consents = |name: &str| {
        Arc::new(ConsentStore::shared(sink(&pool, Table::Consents, name)).expect("open"))
    };
    let (a, b) = (consents("node-a"), consents("node-b"));
    let consent = crate::streams::consent;
    // Both nodes record a consent for the same person at once: both are kept, once each.
    let (a2, b2, ca, cb) = (a.clone(), b.clone(), consent("c-a"), consent("c-b"));
    let (x, y) = tokio::join!(
        blocking(move || a2.record(ca)),
        blocking(move || b2.record(cb))
    );
    x.expect("a");
    y.expect("b");
    // B does not know A's consent until it reads the person's stream (what the gate does
    // before it refuses a code it cannot verify).
    let b2 = b.clone();
    blocking(move || b2.refresh("nidk:1"))
        .await
        .expect("refresh");
    let a2 = a.clone();
    blocking(move || a2.refresh("nidk:1"))
        .await
        .expect("refresh");
    let ids = |s: &ConsentStore| {
        let mut v: Vec<String> = s.of_person("nidk:1").into_iter().map(|c| c.id).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&a), ["c-a", "c-b"]);
    assert_eq!(ids(&b), ["c-a", "c-b"]);
    // A revocation on B reaches A.
    let b2 = b.clone();
    let revoked = blocking(move || b2.revoke("c-a", Utc::now(), "po"))
        .await
        .expect("revoke")
        .expect("known");
    assert!(revoked.revoked_at.is_some());
    let a2 = a.clone();
    blocking(move || a2.refresh("nidk:1"))
        .await
        .expect("refresh");
    assert!(a.get("c-a").expect("on A").revoked_at.is_some());
    assert!(a.get("c-b").expect("on A").revoked_at.is_none());
    // A node opened now loads the same.
    let c = consents("node-c");
    assert_eq!(ids(&c), ["c-a", "c-b"]);
    assert!(c.get("c-a").expect("on C").revoked_at.is_some());
}
