//! `huren migrate`'s copy: an embedded store filled by the conformance scenario is copied into
//! the cluster, checked, and answers the same; a second run resumes and copies only what is new.

use std::sync::Arc;

use huren_cluster::{copy_store, ClusterOptions, ClusterStore, S3Blobs};
use huren_model::{ContentHash, PatientId};
use huren_store::{ReportBackend, Store, StoreOptions};

use crate::conformance::{conformance, lab, SECRET};
use crate::support;

async fn same_answers<A: ReportBackend, B: ReportBackend>(a: &A, b: &B, id: &PatientId) {
    let (la, ma) = a.patient_reports(id, None).await.expect("a");
    let (lb, mb) = b.patient_reports(id, None).await.expect("b");
    assert_eq!(la, lb, "{id:?}");
    let ha: Vec<(ContentHash, u32)> = ma.iter().map(|m| (m.hash, m.version)).collect();
    let hb: Vec<(ContentHash, u32)> = mb.iter().map(|m| (m.hash, m.version)).collect();
    assert_eq!(ha, hb, "{id:?}");
    assert!(!ha.is_empty(), "{id:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_store_is_copied_checked_and_resumed() {
    let (Some(pg), Some(s3)) = (support::postgres(), support::seaweedfs()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = Arc::new(
        Store::open(
            dir.path(),
            StoreOptions {
                national_id_secret: SECRET.into(),
                ..StoreOptions::default()
            },
        )
        .expect("open"),
    );
    conformance(embedded.clone(), "embedded source").await;

    let pool = huren_cluster::pool(pg.postgres_config(), 8).expect("pool");
    huren_cluster::migrate(&pool).await.expect("migrate");
    let cluster = ClusterStore::new(
        pool,
        S3Blobs::connect(&s3.s3_settings()).expect("s3"),
        ClusterOptions {
            node: "copier".into(),
            national_id_secret: SECRET.into(),
            stop_after_failure: true,
            ..ClusterOptions::default()
        },
    );
    let mut calls = 0;
    let rep = copy_store(&embedded, &cluster, "source-a", |_, _| calls += 1)
        .await
        .expect("copy");
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(calls > 1);
    assert_eq!(rep.resumed_after, 0);
    assert!(rep.reports_verified >= 25, "{rep:?}");
    assert_eq!(rep.reports_copied, rep.reports_verified, "{rep:?}");
    let check = cluster.verify().await.expect("verify");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.reports, rep.reports_verified);

    for id in [
        PatientId::National("110101199001011234".into()),
        PatientId::National("440101197001010011".into()),
        PatientId::Local {
            institution: "C".into(),
            local_id: "old".into(),
        },
        PatientId::Local {
            institution: "A".into(),
            local_id: "P3".into(),
        },
    ] {
        same_answers(&*embedded, &cluster, &id).await;
    }
    assert_eq!(
        cluster.identity_reviews(true).await.expect("reviews").len(),
        embedded.identity_reviews(true).expect("reviews").len()
    );

    // Again, after one more message: only that is copied.
    embedded
        .commit(lab("D", "new", None, "KD", 3, "after the first copy"))
        .await
        .expect("commit");
    let again = copy_store(&embedded, &cluster, "source-a", |_, _| {})
        .await
        .expect("copy again");
    assert!(again.problems.is_empty(), "{:?}", again.problems);
    assert!(again.resumed_after > 0);
    assert_eq!((again.ingests, again.reports_copied), (1, 1), "{again:?}");
    assert!(cluster.verify().await.expect("verify").problems.is_empty());
}
