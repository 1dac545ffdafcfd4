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
