//! The workflow stores' conformance suite: one scenario over alerts, reading tasks, the
//! outbox and consents, run on the embedded store's JSON-lines files and on the cluster's
//! event tables. Each rule is checked on both (an alert raised once and acknowledged once, a
//! task claimed once, a message enqueued once and delivered once, a consent revoked), then
//! the stores are opened again (a restart: the files replayed, the tables loaded) and must
//! hold the same states. The embedded files are then read as `huren migrate` reads them
//! (`huren_store::log_events`) and loaded on a cluster's tables: the same states again.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use huren_access::{Consent, ConsentScope, CredentialKind};
use huren_alerting::{AlertId, AlertKind, Decision, Event, Raised, State};
use huren_cluster::{BlockingEvents, EventTable, Table};
use huren_store::{
    AlertStore, AlertStoreError, ConsentStore, Enqueue, EventSink, Outbox, OutboxError,
    OutboxEvent, OutboxState, TaskError, TaskStore,
};
use huren_workflow::TaskId;

use crate::conformance::cluster;

/// The four stores of one opening.
struct Stores {
    alerts: AlertStore,
    tasks: TaskStore,
    outbox: Outbox,
    consents: ConsentStore,
}

fn at(min: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 8, min, 0).unwrap()
}

/// A STEMI alert `a-N` raised at 08:00.
pub fn raised(n: usize) -> Raised {
    Raised {
        id: AlertId(format!("a-{n}")),
        kind: AlertKind::Stemi,
        institution: "FX-SQ01".into(),
        group: "fx-pci".into(),
        report: format!("blake3:{}", "a".repeat(64)),
        summary: "急性下壁心肌梗死".into(),
        at: at(0),
    }
}

/// An acknowledgement by `by` at 08:01.
pub fn ack(by: &str) -> Event {
    Event::Acknowledged {
        by: by.into(),
        at: at(1),
        decision: Decision::StemiTransfer,
        note: String::new(),
    }
}

fn task(n: usize) -> huren_workflow::Created {
    huren_workflow::Created {
        id: TaskId(format!("t-{n}")),
        kind: huren_workflow::Kind::Ecg,
        priority: huren_workflow::Priority::Routine,
        centre: huren_workflow::CentreId("fx-ecg".into()),
        institution: "FX-SQ01".into(),
        report: format!("blake3:{}", "b".repeat(64)),
        at: at(0),
        due_at: at(30),
        claim_timeout_secs: 900,
    }
}

fn message(n: usize) -> Enqueue {
    Enqueue {
        id: format!("blake3:{n:064}"),
        destination: "FX-SQ01".into(),
        msh10: format!("{n:020}"),
        message: "MSH|^~\\&|HUREN\r".into(),
    }
}

/// A health-card consent `id` for person `nidk:1`, valid for 24 hours.
pub fn consent(id: &str) -> Consent {
    let t = Utc::now();
    Consent {
        id: id.into(),
        person: "nidk:1".into(),
        kind: CredentialKind::HealthCard,
        scope: ConsentScope::All,
        code_digest: "00".repeat(32),
        credential_digest: String::new(),
        issued_at: t,
        expires_at: t + chrono::Duration::hours(24),
        issued_by: "clerk".into(),
        institution: "FX-ZX".into(),
        revoked_at: None,
    }
}

/// The scenario's writes, each rule checked as it is written.
fn write(s: &Stores, label: &str) {
    for n in 0..3 {
        assert!(s.alerts.raise(raised(n)).expect("raise").1, "{label}");
    }
    assert!(
        !s.alerts.raise(raised(1)).expect("raise").1,
        "{label}: raised once"
    );
    s.alerts
        .apply(&AlertId("a-0".into()), ack("dr.a"))
        .expect("ack");
    assert!(
        matches!(
            s.alerts.apply(&AlertId("a-0".into()), ack("dr.b")),
            Err(AlertStoreError::Refused(_))
        ),
        "{label}: acknowledged once"
    );
    assert!(
        matches!(
            s.alerts.apply(&AlertId("a-9".into()), ack("dr.a")),
            Err(AlertStoreError::Unknown(_))
        ),
        "{label}"
    );

    for n in 0..2 {
        assert!(s.tasks.create(task(n)).expect("create").1, "{label}");
    }
    assert!(!s.tasks.create(task(0)).expect("create").1, "{label}");
    let claim = |by: &str| huren_workflow::Event::Claimed {
        by: by.into(),
        at: at(2),
    };
    s.tasks
        .apply(&TaskId("t-0".into()), claim("reader-a"))
        .expect("claim");
    assert!(
        matches!(
            s.tasks.apply(&TaskId("t-0".into()), claim("reader-b")),
            Err(TaskError::Transition(_))
        ),
        "{label}: claimed once"
    );

    assert_eq!(
        s.outbox
            .enqueue_all((0..3).map(message).collect(), at(3))
            .expect("enqueue"),
        3,
        "{label}"
    );
    assert_eq!(
        s.outbox
            .enqueue_all((0..3).map(message).collect(), at(3))
            .expect("enqueue"),
        0,
        "{label}: enqueued once"
    );
    let delivered = OutboxEvent::Delivered {
        id: message(0).id,
        at: at(4),
        ack_code: "AA".into(),
        ack_control_id: "x".into(),
    };
    s.outbox.record(delivered.clone()).expect("delivered");
    assert!(
        matches!(s.outbox.record(delivered), Err(OutboxError::Refused(_))),
        "{label}: delivered once"
    );

    s.consents.record(consent("c-1")).expect("record");
    s.consents.record(consent("c-2")).expect("record");
    assert!(s
        .consents
        .revoke("c-1", Utc::now(), "po")
        .expect("revoke")
        .is_some());
}

/// What the scenario leaves, as the stores hold it.
fn check(s: &Stores, label: &str) {
    assert_eq!(s.alerts.count(|_| true), 3, "{label}");
    let State::Acknowledged { by, .. } = s.alerts.get(&AlertId("a-0".into())).expect("a-0").state
    else {
        panic!("{label}: a-0 not acknowledged");
    };
    assert_eq!(by, "dr.a", "{label}");
    assert_eq!(
        s.alerts.get(&AlertId("a-1".into())).expect("a-1").state,
        State::Open,
        "{label}"
    );
    assert_eq!(s.tasks.count(|_| true), 2, "{label}");
    let t0 = s.tasks.get(&TaskId("t-0".into())).expect("t-0");
    assert!(
        matches!(&t0.state, huren_workflow::State::InProgress { claimed_by, .. } if claimed_by == "reader-a"),
        "{label}: {t0:?}"
    );
    assert_eq!(s.outbox.count(OutboxState::Delivered), 1, "{label}");
    assert_eq!(s.outbox.count(OutboxState::Pending), 2, "{label}");
    let mut ids: Vec<(String, bool)> = s
        .consents
        .of_person("nidk:1")
        .into_iter()
        .map(|c| (c.id, c.revoked_at.is_some()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [("c-1".to_string(), true), ("c-2".to_string(), false)],
        "{label}"
    );
}

/// The scenario on stores `open` makes: written, checked, opened again and checked again;
/// an alert raised again after the restart is not new.
fn suite(open: &dyn Fn() -> Stores, label: &str) {
    let s = open();
    write(&s, label);
    check(&s, label);
    drop(s);
    let s = open();
    check(&s, &format!("{label}, opened again"));
    assert!(!s.alerts.raise(raised(2)).expect("raise").1, "{label}");
}

fn on_files(dir: &std::path::Path) -> Stores {
    Stores {
        alerts: AlertStore::open(dir).expect("alerts"),
        tasks: TaskStore::open(dir).expect("tasks"),
        outbox: Outbox::open(dir).expect("outbox"),
        consents: ConsentStore::open(dir).expect("consents"),
    }
}

fn on_tables(pool: &deadpool_postgres::Pool, handle: &tokio::runtime::Handle) -> Stores {
    let sink = |t: Table| -> Arc<dyn EventSink> {
        Arc::new(BlockingEvents::new(
            EventTable::new(pool.clone(), t, "node-a"),
            handle.clone(),
        ))
    };
    Stores {
        alerts: AlertStore::shared(sink(Table::Alerts)).expect("alerts"),
        tasks: TaskStore::shared(sink(Table::Tasks)).expect("tasks"),
        outbox: Outbox::shared(sink(Table::Outbox)).expect("outbox"),
        consents: ConsentStore::shared(sink(Table::Consents)).expect("consents"),
    }
}

#[test]
fn the_workflow_suite_on_the_embedded_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    suite(&|| on_files(dir.path()), "files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workflow_suite_on_the_cluster_tables_and_the_files_copied_there() {
    let Some((store, _pg, _s3)) = cluster("node-a").await else {
        return;
    };
    let pool = store.pool().clone();
    let handle = tokio::runtime::Handle::current();
    let (p, h) = (pool.clone(), handle.clone());
    tokio::task::spawn_blocking(move || suite(&|| on_tables(&p, &h), "tables"))
        .await
        .expect("suite");

    // The embedded files of the same scenario, read as `huren migrate` reads them and
    // appended to a fresh cluster's tables, load as the same states.
    let Some((fresh, _pg2, _s32)) = cluster("node-a").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || write(&on_files(&d), "files"))
        .await
        .expect("write");
    let pool = fresh.pool().clone();
    for (log, events) in huren_store::log_events(dir.path()).expect("log events") {
        let table = match log {
            "alerts" => Table::Alerts,
            "tasks" => Table::Tasks,
            "outbox" => Table::Outbox,
            "consents" => Table::Consents,
            _ => {
                assert!(events.is_empty(), "{log}");
                continue;
            }
        };
        let t = EventTable::new(pool.clone(), table, "copy");
        let mut streams: Vec<(String, Vec<serde_json::Value>)> = vec![];
        for (id, v) in events {
            match streams.iter_mut().find(|(s, _)| *s == id) {
                Some((_, evs)) => evs.push(v),
                None => streams.push((id, vec![v])),
            }
        }
        for (id, evs) in streams {
            assert_eq!(
                t.append(&id, 1, &evs).await.expect("append"),
                huren_cluster::Appended::Recorded
            );
        }
    }
    tokio::task::spawn_blocking(move || check(&on_tables(&pool, &handle), "copied"))
        .await
        .expect("check");
}
