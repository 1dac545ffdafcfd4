//! One conformance suite for the report store, run against the embedded store (journal +
//! files + sled) and the cluster store (PostgreSQL + SeaweedFS's S3): dedup by hash, versions
//! and supersession, reads by patient across institutions, identity claims, contradictions
//! and merges, concurrent writers, and refused input. Whatever one back end answers, the other
//! must answer the same.

use std::sync::Arc;

use huren_cluster::{migrate, pool, ClusterOptions, ClusterStore, S3Blobs};
use huren_model::{
    national_id_key, ContentHash, LabBody, PatientId, PatientRef, Report, ReportKind, ReportStatus,
    Source, SystemKind,
};
use huren_store::{
    IdentityLink, IdentityOp, Ingest, Outcome, ReportBackend, ReviewDecision, ReviewState, Store,
    StoreOptions,
};

use crate::support;

pub const SECRET: &str = "conformance-secret";

/// A lab (or ECG) report of `inst:local`, chain `source_key`, with a distinguishing conclusion.
pub fn report(
    inst: &str,
    local: &str,
    nid: Option<&str>,
    source_key: &str,
    day: u32,
    text: &str,
    original: &[u8],
) -> Report {
    Report {
        kind: ReportKind::Lab,
        source: Source {
            institution: inst.into(),
            system: SystemKind::Lis,
            application: None,
            source_key: source_key.into(),
        },
        patient: PatientRef {
            institution: inst.into(),
            local_id: local.into(),
            national_id_key: nid.map(|n| national_id_key(SECRET, n)),
            ..Default::default()
        },
        status: ReportStatus::Final,
        order: Default::default(),
        specimen_collected_at: Some(format!("2026-06-{day:02}T10:00:00+08:00")),
        performed_at: None,
        reported_at: None,
        lab: Some(LabBody::default()),
        ecg: None,
        imaging: None,
        conclusion: Some(text.into()),
        original: ContentHash::of(original),
        attachments: vec![],
    }
}

/// An ingest of `original` with `reports`.
pub fn ingest(original: &[u8], reports: Vec<Report>) -> Ingest {
    Ingest {
        original: original.into(),
        reports,
        identity: vec![],
        received_at: "2026-06-30T08:00:00+08:00".into(),
        attachments: vec![],
        message_id: Some("MSG".into()),
    }
}

/// A lab message of one report.
pub fn lab(inst: &str, local: &str, nid: Option<&str>, key: &str, day: u32, text: &str) -> Ingest {
    let original = format!("{inst}|{local}|{nid:?}|{key}|{day}|{text}").into_bytes();
    ingest(
        &original,
        vec![report(inst, local, nid, key, day, text, &original)],
    )
}

fn local(inst: &str, id: &str) -> PatientId {
    PatientId::Local {
        institution: inst.into(),
        local_id: id.into(),
    }
}

async fn hashes<S: ReportBackend>(
    s: &S,
    id: &PatientId,
    kind: Option<ReportKind>,
) -> Vec<ContentHash> {
    s.patient_reports(id, kind)
        .await
        .expect("patient reports")
        .1
        .into_iter()
        .map(|m| m.hash)
        .collect()
}

/// The suite. `label` names the back end in failures.
pub async fn conformance<S: ReportBackend + 'static>(s: Arc<S>, label: &str) {
    // Stored, then the same message again: a duplicate of version 1.
    let first = lab("A", "P1", Some("110101199001011234"), "K1", 1, "first");
    let c = s.commit(first.clone()).await.expect("commit");
    assert_eq!(c.reports.len(), 1, "{label}");
    assert_eq!(c.reports[0].outcome, Outcome::Stored, "{label}");
    assert_eq!(c.reports[0].version, 1, "{label}");
    let h1 = c.reports[0].report;
    let again = s.commit(first.clone()).await.expect("resend");
    assert_eq!(again.reports[0].outcome, Outcome::Duplicate, "{label}");
    assert_eq!(again.reports[0].version, 1, "{label}");
    assert_eq!(again.reports[0].report, h1, "{label}");

    // Reads: the report as given, its original, its metadata.
    let got = s.report(h1).await.expect("report").expect("stored");
    assert_eq!(
        got, first.reports[0],
        "{label}: the report reads back as committed"
    );
    let orig = s
        .blob(first.original.hash())
        .await
        .expect("blob")
        .expect("original stored");
    assert_eq!(ContentHash::of(&orig), first.original.hash(), "{label}");
    let canonical = s.blob(h1).await.expect("blob").expect("canonical JSON");
    assert_eq!(ContentHash::of(&canonical), h1, "{label}");
    let m = s.report_meta(h1).await.expect("meta").expect("meta");
    assert_eq!(
        (
            m.version,
            m.chain.as_str(),
            m.local.as_str(),
            m.institution.as_str()
        ),
        (1, "lab|A|K1", "A:P1", "A"),
        "{label}"
    );
    assert_eq!(m.kind, ReportKind::Lab, "{label}");
    assert_eq!(m.superseded_by, None, "{label}");
    assert_eq!(m.received_at, "2026-06-30T08:00:00+08:00", "{label}");
    assert_eq!(
        m.time_ms,
        huren_store::plan::time_ms("2026-06-01T10:00:00+08:00"),
        "{label}"
    );
    assert!(s
        .report(ContentHash::of(b"nothing"))
        .await
        .expect("read")
        .is_none());
    assert!(s
        .report_meta(ContentHash::of(b"nothing"))
        .await
        .expect("read")
        .is_none());
    assert!(s
        .blob(ContentHash::of(b"nothing"))
        .await
        .expect("read")
        .is_none());

    // A correction: version 2 supersedes version 1.
    let corr = lab("A", "P1", Some("110101199001011234"), "K1", 1, "corrected");
    let c2 = s.commit(corr).await.expect("correction");
    assert_eq!(c2.reports[0].outcome, Outcome::Superseded, "{label}");
    assert_eq!(c2.reports[0].version, 2, "{label}");
    let h2 = c2.reports[0].report;
    assert_eq!(
        s.versions("lab|A|K1").await.expect("versions"),
        vec![h1, h2],
        "{label}"
    );
    assert_eq!(
        s.chain_head("lab|A|K1").await.expect("head"),
        Some((2, h2)),
        "{label}"
    );
    assert_eq!(
        s.chain_head("lab|A|none").await.expect("head"),
        None,
        "{label}"
    );
    assert_eq!(
        s.report_meta(h1)
            .await
            .expect("meta")
            .expect("meta")
            .superseded_by,
        Some(h2),
        "{label}"
    );
    assert_eq!(
        hashes(&*s, &local("A", "P1"), None).await,
        vec![h2],
        "{label}"
    );

    // One message with two versions of one chain and the same report twice.
    let original = b"two versions in one message".to_vec();
    let r1 = report("A", "P2", None, "K2", 3, "v1", &original);
    let r2 = report("A", "P2", None, "K2", 3, "v2", &original);
    let c = s
        .commit(ingest(&original, vec![r1.clone(), r2, r1]))
        .await
        .expect("commit");
    let got: Vec<(Outcome, u32)> = c.reports.iter().map(|r| (r.outcome, r.version)).collect();
    assert_eq!(
        got,
        vec![
            (Outcome::Stored, 1),
            (Outcome::Superseded, 2),
            (Outcome::Duplicate, 1)
        ],
        "{label}"
    );

    // The same person at another institution, through the national ID: both, newest first.
    let b = s
        .commit(lab("B", "Q9", Some("110101199001011234"), "KB", 5, "at B"))
        .await
        .expect("commit B");
    let hb = b.reports[0].report;
    let national = PatientId::National("110101199001011234".into());
    let (link, metas) = s.patient_reports(&national, None).await.expect("reports");
    assert_eq!(link, IdentityLink::ExactNationalId, "{label}");
    assert_eq!(
        metas.iter().map(|m| m.hash).collect::<Vec<_>>(),
        vec![hb, h2],
        "{label}: newest first, current versions only"
    );
    assert_eq!(
        hashes(&*s, &local("B", "Q9"), None).await,
        vec![hb, h2],
        "{label}"
    );
    assert_eq!(
        s.person_key(&local("B", "Q9")).await.expect("person"),
        national_id_key(SECRET, "110101199001011234"),
        "{label}"
    );
    let (link, _) = s
        .patient_reports(&local("A", "P2"), None)
        .await
        .expect("reports");
    assert_eq!(link, IdentityLink::LocalOnly, "{label}");

    // An ECG of the same person: the kind filter.
    let ecg_orig = b"an ECG".to_vec();
    let mut ecg = report(
        "A",
        "P1",
        Some("110101199001011234"),
        "E1",
        7,
        "ecg",
        &ecg_orig,
    );
    ecg.kind = ReportKind::Ecg;
    let he = s
        .commit(ingest(&ecg_orig, vec![ecg]))
        .await
        .expect("ecg")
        .reports[0]
        .report;
    assert_eq!(
        hashes(&*s, &national, Some(ReportKind::Ecg)).await,
        vec![he],
        "{label}"
    );
    assert_eq!(
        hashes(&*s, &national, Some(ReportKind::Lab)).await,
        vec![hb, h2],
        "{label}"
    );

    // A contradicting claim: A:P1 is linked to one national ID, a message says another. The
    // link stays, a review item opens, the message's report is marked; a resend opens no
    // second item.
    let other = lab(
        "A",
        "P1",
        Some("310101198001012345"),
        "K3",
        9,
        "contradiction",
    );
    let c = s.commit(other.clone()).await.expect("contradiction");
    let hc = c.reports[0].report;
    let reviews = s.identity_reviews(true).await.expect("reviews");
    assert_eq!(reviews.len(), 1, "{label}: {reviews:?}");
    let item = &reviews[0];
    assert_eq!(item.local, "A:P1", "{label}");
    assert_eq!(
        item.current,
        national_id_key(SECRET, "110101199001011234"),
        "{label}"
    );
    assert_eq!(
        item.claimed,
        national_id_key(SECRET, "310101198001012345"),
        "{label}"
    );
    assert_eq!(item.institution, "A", "{label}");
    assert_eq!(item.reports, vec![hc], "{label}");
    assert_eq!(item.message_id.as_deref(), Some("MSG"), "{label}");
    assert_eq!(
        s.report_meta(hc)
            .await
            .expect("meta")
            .expect("meta")
            .identity_review
            .as_deref(),
        Some(item.id.as_str()),
        "{label}"
    );
    assert_eq!(
        s.person_key(&local("A", "P1")).await.expect("person"),
        national_id_key(SECRET, "110101199001011234"),
        "{label}: the link stays"
    );
    assert!(
        hashes(&*s, &PatientId::National("310101198001012345".into()), None)
            .await
            .is_empty(),
        "{label}"
    );
    let resend = s.commit(other).await.expect("resend");
    assert_eq!(resend.reports[0].outcome, Outcome::Duplicate, "{label}");
    assert_eq!(
        s.identity_reviews(true).await.expect("reviews").len(),
        1,
        "{label}"
    );
    assert_eq!(
        s.identity_reviews(false).await.expect("reviews").len(),
        1,
        "{label}"
    );

    // A merge (ADT A40): C:old's reports now belong to whoever C:new belongs to.
    let old = s
        .commit(lab("C", "old", None, "KO", 11, "old"))
        .await
        .expect("old")
        .reports[0]
        .report;
    let new = s
        .commit(lab("C", "new", None, "KN", 12, "new"))
        .await
        .expect("new")
        .reports[0]
        .report;
    assert_eq!(
        hashes(&*s, &local("C", "new"), None).await,
        vec![new],
        "{label}"
    );
    let mut merge = ingest(b"A40 C:old into C:new", vec![]);
    merge.identity = vec![IdentityOp::Merge {
        from: "C:old".into(),
        into: "C:new".into(),
    }];
    s.commit(merge).await.expect("merge");
    assert_eq!(
        hashes(&*s, &local("C", "new"), None).await,
        vec![new, old],
        "{label}"
    );
    assert_eq!(
        hashes(&*s, &local("C", "old"), None).await,
        vec![new, old],
        "{label}"
    );
    // Another institution's merge moves nothing.
    let mut foreign = ingest(b"A40 across institutions", vec![]);
    foreign.identity = vec![IdentityOp::Merge {
        from: "A:P2".into(),
        into: "C:new".into(),
    }];
    s.commit(foreign).await.expect("foreign merge");
    assert_eq!(
        hashes(&*s, &local("C", "new"), None).await,
        vec![new, old],
        "{label}"
    );
    // A claim of a national ID by the merged group takes both keys along.
    s.commit(lab(
        "C",
        "new",
        Some("440101197001010011"),
        "KN2",
        13,
        "claimed",
    ))
    .await
    .expect("claim");
    assert_eq!(
        hashes(&*s, &PatientId::National("440101197001010011".into()), None)
            .await
            .len(),
        3,
        "{label}: the merged group moved with the claim"
    );

    // Refused: a report that names another original. Nothing is recorded.
    let mut bad = lab("A", "P9", None, "KX", 1, "bad");
    bad.reports[0].original = ContentHash::of(b"another message");
    assert!(s.commit(bad).await.is_err(), "{label}");
    assert_eq!(
        s.chain_head("lab|A|KX").await.expect("head"),
        None,
        "{label}"
    );

    // Concurrent writers: 16 versions of one chain at once get 16 distinct numbers; 8 sends
    // of one message store it once.
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                s.commit(lab("A", "P3", None, "KC", 2, &format!("v{n}")))
                    .await
            })
        })
        .collect();
    let mut versions = vec![];
    let mut stored = 0;
    for t in tasks {
        let c = t.await.expect("task").expect("commit");
        versions.push(c.reports[0].version);
        stored += usize::from(c.reports[0].outcome == Outcome::Stored);
    }
    versions.sort();
    assert_eq!(versions, (1..=16).collect::<Vec<u32>>(), "{label}");
    assert_eq!(stored, 1, "{label}");
    assert_eq!(
        s.versions("lab|A|KC").await.expect("versions").len(),
        16,
        "{label}"
    );
    let same = lab("A", "P4", None, "KS", 2, "same");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, same) = (s.clone(), same.clone());
            tokio::spawn(async move { s.commit(same).await })
        })
        .collect();
    let mut outcomes = vec![];
    for t in tasks {
        outcomes.push(t.await.expect("task").expect("commit").reports[0].outcome);
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Stored).count(),
        1,
        "{label}: {outcomes:?}"
    );
    assert_eq!(
        s.versions("lab|A|KS").await.expect("versions").len(),
        1,
        "{label}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_embedded() {
    let dir = tempfile::tempdir().expect("temp dir");
    conformance(Arc::new(embedded(dir.path())), "embedded").await;
}

/// An embedded store in `dir` keyed with [`SECRET`].
pub fn embedded(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            national_id_secret: SECRET.into(),
            ..StoreOptions::default()
        },
    )
    .expect("open")
}

/// A migrated cluster store on fresh PostgreSQL and SeaweedFS, with its peers (stopped on
/// drop), or `None` outside CI when a peer is missing.
pub async fn cluster(node: &str) -> Option<(ClusterStore<S3Blobs>, support::Peer, support::Peer)> {
    let pg = support::postgres()?;
    let s3 = support::seaweedfs()?;
    let store = node_on(&pg, &s3, node).await;
    Some((store, pg, s3))
}

/// Another node on the same servers.
pub async fn node_on(pg: &support::Peer, s3: &support::Peer, node: &str) -> ClusterStore<S3Blobs> {
    let pool = pool(pg.postgres_config(), 8).expect("pool");
    migrate(&pool).await.expect("migrate");
    let blobs = S3Blobs::connect(&s3.s3_settings()).expect("s3");
    ClusterStore::new(
        pool,
        blobs,
        ClusterOptions {
            node: node.into(),
            national_id_secret: SECRET.into(),
            ..ClusterOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_cluster() {
    let Some((store, _pg, _s3)) = cluster("n1").await else {
        return;
    };
    conformance(Arc::new(store), "cluster").await;
}

/// An identity review decision as a commit (what `Store::resolve_identity_review` commits).
fn decision(review: &str, decision: ReviewDecision) -> Ingest {
    let op = IdentityOp::Resolve {
        review: review.into(),
        decision,
        by: "privacy.zx".into(),
        reason: "registry checked".into(),
        at: "2026-07-01T08:00:00+08:00".into(),
    };
    let bytes = serde_json::to_vec(&serde_json::json!({ "identity_resolution": &op })).unwrap();
    Ingest {
        original: bytes.as_slice().into(),
        identity: vec![op],
        received_at: "2026-07-01T08:00:00+08:00".into(),
        ..Default::default()
    }
}

/// Identity review decisions, the same on both back ends: an accepted claim moves that one
/// local key (and its current reports) to the claimed person and lifts the mark; keeping the
/// existing link lifts the mark and moves nothing; a second decision of one item, or one of
/// an unknown item, changes nothing. The item records the decision with the commit's `seq`.
pub async fn decisions<S: ReportBackend + 'static>(s: Arc<S>, label: &str) {
    let (x, y) = ("110101199001011234", "310101198001012345");
    let kx = national_id_key(SECRET, x);
    let ky = national_id_key(SECRET, y);
    for (n, d) in [ReviewDecision::AcceptClaim, ReviewDecision::KeepExisting]
        .into_iter()
        .enumerate()
    {
        let p = format!("D{n}");
        let h1 = s
            .commit(lab("A", &p, Some(x), &format!("{p}a"), 1, "first"))
            .await
            .expect("first")
            .reports[0]
            .report;
        let h2 = s
            .commit(lab("A", &p, Some(y), &format!("{p}b"), 2, "contradiction"))
            .await
            .expect("contradiction")
            .reports[0]
            .report;
        let open = s.identity_reviews(true).await.expect("reviews");
        assert_eq!(open.len(), 1, "{label}: {open:?}");
        let id = open[0].id.clone();
        let c = s.commit(decision(&id, d)).await.expect("decision");
        assert!(c.seq > 0, "{label}");
        assert!(
            s.identity_reviews(true).await.expect("reviews").is_empty(),
            "{label}"
        );
        let item = s
            .identity_reviews(false)
            .await
            .expect("reviews")
            .into_iter()
            .find(|r| r.id == id)
            .expect("the item");
        match &item.state {
            ReviewState::Resolved {
                decision,
                from,
                by,
                seq,
                ..
            } => {
                assert_eq!(
                    (*decision, from, by.as_str()),
                    (d, &kx, "privacy.zx"),
                    "{label}"
                );
                assert_eq!(*seq, c.seq, "{label}: the decision's commit");
            }
            other => panic!("{label}: {other:?}"),
        }
        let meta = s.report_meta(h2).await.expect("meta").expect("meta");
        assert_eq!(meta.identity_review, None, "{label}: the mark is lifted");
        let person = s.person_key(&local("A", &p)).await.expect("person");
        let mut theirs = hashes(&*s, &PatientId::National(y.into()), None).await;
        theirs.sort();
        let mut both = vec![h1, h2];
        both.sort();
        match d {
            ReviewDecision::AcceptClaim => {
                assert_eq!(person, ky, "{label}: moved to the claimed person");
                assert_eq!(theirs, both, "{label}: with its current reports");
            }
            ReviewDecision::KeepExisting => {
                assert_eq!(person, kx, "{label}: the link stays");
                assert!(
                    !theirs.contains(&h1) && !theirs.contains(&h2),
                    "{label}: nothing moved"
                );
            }
        }
        // Decided again (or the other way), or an unknown item: nothing changes.
        let other = match d {
            ReviewDecision::AcceptClaim => ReviewDecision::KeepExisting,
            ReviewDecision::KeepExisting => ReviewDecision::AcceptClaim,
        };
        s.commit(decision(&id, other)).await.expect("again");
        s.commit(decision("no-such-item", other))
            .await
            .expect("unknown");
        assert_eq!(
            s.person_key(&local("A", &p)).await.expect("person"),
            person,
            "{label}"
        );
        let again = s
            .identity_reviews(false)
            .await
            .expect("reviews")
            .into_iter()
            .find(|r| r.id == id)
            .expect("the item");
        assert_eq!(again, item, "{label}: the first decision stands");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_embedded() {
    let dir = tempfile::tempdir().expect("temp dir");
    decisions(Arc::new(embedded(dir.path())), "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_cluster() {
    let Some((store, _pg, _s3)) = cluster("n1").await else {
        return;
    };
    decisions(Arc::new(store), "cluster").await;
}
