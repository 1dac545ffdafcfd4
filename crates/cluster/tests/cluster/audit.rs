//! The audit trail on the cluster: two nodes append at once, each to its own chain; checkpoints
//! fix every head; `verify_audit` finds an edited entry, a chain cut short after a checkpoint,
//! and a second writer of one node's chain is refused, never a fork.

use huren_audit::AuditRecord;
use huren_cluster::{audit_of_patient, checkpoint, migrate, pool, verify_audit, ClusterAudit};

use crate::support;

fn record(n: usize, patient: Option<&str>) -> AuditRecord {
    AuditRecord {
        actor: format!("doctor-{}", n % 3),
        institution: "FX-ZX".into(),
        role: "clinician".into(),
        action: "read_results".into(),
        patient: patient.map(str::to_string),
        outcome: "ok".into(),
        ..AuditRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_chains_and_checkpoints_hold_and_damage_is_found() {
    let Some(pg) = support::postgres() else {
        return;
    };
    let pool = pool(pg.postgres_config(), 8).expect("pool");
    migrate(&pool).await.expect("migrate");
    let a = ClusterAudit::open(pool.clone(), "node-a").await.expect("a");
    let b = ClusterAudit::open(pool.clone(), "node-b").await.expect("b");

    // 200 appends on each node at once, some about one patient.
    let mut tasks = vec![];
    for n in 0..200 {
        for node in [a.clone(), b.clone()] {
            tasks.push(tokio::spawn(async move {
                let p = (n % 10 == 0).then_some("nidk:patient-1");
                node.append(record(n, p)).await
            }));
        }
    }
    let mut seqs_a = vec![];
    for t in tasks {
        let e = t.await.expect("task").expect("append");
        if e.record.actor.is_empty() {
            unreachable!();
        }
        seqs_a.push(e.seq);
    }
    assert_eq!(seqs_a.len(), 400);
    let first = checkpoint(&pool)
        .await
        .expect("checkpoint")
        .expect("a first checkpoint");
    assert_eq!(first.heads.len(), 2);
    assert_eq!(first.heads["node-a"].0, 200);
    assert_eq!(first.heads["node-b"].0, 200);
    assert!(
        checkpoint(&pool).await.expect("again").is_none(),
        "nothing changed"
    );
    for n in 0..5 {
        a.append(record(n, None)).await.expect("append");
    }
    let second = checkpoint(&pool)
        .await
        .expect("checkpoint")
        .expect("changed");
    assert_eq!((second.seq, second.prev.as_str()), (2, first.hash.as_str()));

    let check = verify_audit(&pool).await.expect("verify");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!((check.entries, check.nodes, check.checkpoints), (405, 2, 2));
    let about = audit_of_patient(&pool, "nidk:patient-1")
        .await
        .expect("query");
    assert_eq!(about.len(), 40, "20 per node");

    // A second process calling itself node-a is refused (the chain cannot fork).
    let impostor = ClusterAudit::open(pool.clone(), "node-a")
        .await
        .expect("open");
    a.append(record(1, None))
        .await
        .expect("the real node-a goes on");
    let e = impostor
        .append(record(2, None))
        .await
        .expect_err("a second writer of node-a's chain");
    assert!(
        e.to_string()
            .contains("another process writes the audit chain"),
        "{e}"
    );
    assert!(verify_audit(&pool)
        .await
        .expect("verify")
        .problems
        .is_empty());

    // An edited entry, then a chain cut short after a checkpoint named its head.
    let client = pool.get().await.expect("client");
    client
        .execute(
            "UPDATE audit_records
             SET record = convert_to(replace(convert_from(record, 'UTF8'), 'read_results', 'read_nothing'), 'UTF8')
             WHERE node = 'node-b' AND seq = 50",
            &[],
        )
        .await
        .expect("edit");
    client
        .execute(
            "DELETE FROM audit_records WHERE node = 'node-a' AND seq > 203",
            &[],
        )
        .await
        .expect("cut");
    let check = verify_audit(&pool).await.expect("verify");
    let all = check.problems.join("\n");
    assert!(
        all.contains("audit chain of node node-b: entry 50: content does not match its hash"),
        "{all}"
    );
    assert!(
        all.contains("audit chain of node node-a: entry 205, named by checkpoint 2, is missing"),
        "{all}"
    );
}

/// The gate's audit trail, the same on both back ends (`huren_audit::AuditTrail`): records
/// appended through it are found by patient (their own or one a search named in
/// `detail.persons`), by actor and action, by time, and page by `after_seq` without overlap
/// or gap; a search's answer named by its set id is filled in from the record that listed it.
fn trail_suite(t: &dyn huren_audit::AuditTrail, label: &str) {
    use huren_audit::AuditFilter;
    let rec = |n: usize| {
        let mut r = record(
            n,
            Some(if n.is_multiple_of(2) {
                "nidk:p1"
            } else {
                "nidk:p2"
            }),
        );
        r.action = if n.is_multiple_of(3) {
            "check"
        } else {
            "read_results"
        }
        .into();
        r
    };
    for n in 0..30 {
        t.append_blocking(rec(n)).expect("append");
    }
    let mut search = record(30, None);
    search.action = "search".into();
    search.detail = serde_json::json!({"persons": ["nidk:p3", "nidk:p1"]});
    t.append_blocking(search).expect("append");
    // An answer listed in full, then named by its set only.
    let mut listed = record(31, Some("nidk:p4"));
    listed.returned = vec!["blake3:a".into(), "blake3:b".into()];
    listed.returned_set = Some("set-1".into());
    t.append_blocking(listed).expect("append");
    let mut again = record(32, Some("nidk:p4"));
    again.returned_set = Some("set-1".into());
    t.append_blocking(again).expect("append");

    let p1 = t.query(&AuditFilter::patient("nidk:p1")).expect("query");
    assert_eq!(p1.len(), 16, "{label}: 15 own records and the search");
    assert!(
        p1.windows(2).all(|w| w[0].seq < w[1].seq),
        "{label}: in order"
    );
    assert_eq!(p1.last().map(|e| e.record.action.as_str()), Some("search"));
    let p3 = t.query(&AuditFilter::patient("nidk:p3")).expect("query");
    assert_eq!(p3.len(), 1, "{label}: named by a search");
    let p4 = t.query(&AuditFilter::patient("nidk:p4")).expect("query");
    assert_eq!(p4.len(), 2, "{label}");
    assert_eq!(
        p4[1].record.returned,
        ["blake3:a", "blake3:b"],
        "{label}: filled in"
    );
    let checks = t
        .query(&AuditFilter {
            actor: Some("doctor-0".into()),
            actions: Some(vec!["check".into()]),
            ..Default::default()
        })
        .expect("query");
    assert_eq!(
        checks.len(),
        10,
        "{label}: n % 3 == 0 is both the action and the actor"
    );
    let today = chrono::Utc::now().date_naive();
    let all_today = t
        .query(&AuditFilter::default().days(Some(today), Some(today)))
        .expect("query");
    assert_eq!(all_today.len(), 33, "{label}");
    let tomorrow = today.succ_opt().expect("tomorrow");
    assert!(t
        .query(&AuditFilter::default().days(Some(tomorrow), None))
        .expect("query")
        .is_empty());
    // Pages of 7 by `after_seq`: every record once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = t
            .query(&AuditFilter {
                after_seq: after,
                limit: Some(7),
                ..Default::default()
            })
            .expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.seq);
        seen.extend(page.into_iter().map(|e| e.hash));
    }
    assert_eq!(seen.len(), 33, "{label}");
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 33, "{label}: no overlap");
}

#[test]
fn the_audit_trail_suite_on_the_file_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = huren_audit::AuditLog::open(dir.path()).expect("open");
    trail_suite(&log, "file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_trail_suite_on_the_cluster() {
    let Some(pg) = support::postgres() else {
        return;
    };
    let pool = pool(pg.postgres_config(), 8).expect("pool");
    migrate(&pool).await.expect("migrate");
    let a = ClusterAudit::open(pool.clone(), "node-a").await.expect("a");
    let trail = huren_cluster::NodeAudit::new(a, tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || trail_suite(&trail, "cluster"))
        .await
        .expect("suite");
}
