//! Store behaviour on a real temp directory.

use huren_model::{
    ContentHash, LabBody, OrderIds, PatientId, PatientRef, Report, ReportKind, ReportStatus,
    Source, SystemKind,
};
use huren_store::{IdentityLink, IdentityOp, Ingest, Outcome, Store, StoreOptions};

fn report(
    original: &[u8],
    inst: &str,
    local: &str,
    key: &str,
    status: ReportStatus,
    nid: Option<&str>,
) -> Report {
    Report {
        kind: ReportKind::Lab,
        source: Source {
            institution: inst.into(),
            system: SystemKind::Lis,
            application: Some("LIS".into()),
            source_key: key.into(),
        },
        patient: PatientRef {
            institution: inst.into(),
            local_id: local.into(),
            national_id_key: nid.map(|n| huren_model::national_id_key("s", n)),
            ..Default::default()
        },
        status,
        order: OrderIds::default(),
        specimen_collected_at: Some("2025-06-24T10:00:00+08:00".into()),
        performed_at: None,
        reported_at: None,
        lab: Some(LabBody::default()),
        ecg: None,
        imaging: None,
        conclusion: None,
        original: ContentHash::of(original),
        attachments: vec![],
    }
}

fn ingest(original: &[u8], reports: Vec<Report>) -> Ingest {
    Ingest {
        original: original.into(),
        reports,
        identity: vec![],
        received_at: "2025-06-24T10:05:00+08:00".into(),
        attachments: vec![],
        message_id: None,
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        national_id_secret: "s".into(),
        ..Default::default()
    }
}

#[test]
fn same_bytes_twice_stored_once_and_corrections_supersede() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let m1 = b"MSH|1";
    let r1 = report(m1, "A", "P1", "LAB1", ReportStatus::Final, None);
    let c1 = store.commit_blocking(ingest(m1, vec![r1.clone()])).unwrap();
    assert_eq!(c1.reports[0].outcome, Outcome::Stored);
    assert!(c1.seq > 0);
    let c2 = store.commit_blocking(ingest(m1, vec![r1.clone()])).unwrap();
    assert_eq!(c2.reports[0].outcome, Outcome::Duplicate);
    assert_eq!(c2.reports[0].report, c1.reports[0].report);
    assert_eq!(c2.seq, 0, "a duplicate writes nothing");

    let m2 = b"MSH|2 corrected";
    let r2 = report(m2, "A", "P1", "LAB1", ReportStatus::Corrected, None);
    let c3 = store.commit_blocking(ingest(m2, vec![r2])).unwrap();
    assert_eq!(c3.reports[0].outcome, Outcome::Superseded);
    assert_eq!(c3.reports[0].version, 2);

    // Both versions stay retrievable; only the newest is current.
    let chain = store.versions("lab|A|LAB1").unwrap();
    assert_eq!(chain, vec![c1.reports[0].report, c3.reports[0].report]);
    let old = store.report_meta(&c1.reports[0].report).unwrap().unwrap();
    assert_eq!(old.superseded_by, Some(c3.reports[0].report));
    assert!(store.report(&c1.reports[0].report).unwrap().is_some());
    assert_eq!(store.blob(&ContentHash::of(m1)).unwrap().unwrap(), m1);
    let id: PatientId = "A:P1".parse().unwrap();
    let (_, list) = store.patient_reports(&id, None).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].hash, c3.reports[0].report);
    assert_eq!(list[0].status, ReportStatus::Corrected);
}

#[test]
fn national_id_links_institutions_and_a40_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let nid = "310120199001011234";
    store
        .commit_blocking(ingest(
            b"a",
            vec![report(
                b"a",
                "A",
                "P1",
                "L1",
                ReportStatus::Final,
                Some(nid),
            )],
        ))
        .unwrap();
    store
        .commit_blocking(ingest(
            b"b",
            vec![report(
                b"b",
                "B",
                "X9",
                "L2",
                ReportStatus::Final,
                Some(nid),
            )],
        ))
        .unwrap();
    store
        .commit_blocking(ingest(
            b"c",
            vec![report(b"c", "C", "OLD", "L3", ReportStatus::Final, None)],
        ))
        .unwrap();
    let by_nid: PatientId = format!("nid:{nid}").parse().unwrap();
    let (link, list) = store.patient_reports(&by_nid, None).unwrap();
    assert_eq!(link, IdentityLink::ExactNationalId);
    assert_eq!(list.len(), 2);
    let (link, list) = store
        .patient_reports(&"B:X9".parse().unwrap(), None)
        .unwrap();
    assert_eq!(link, IdentityLink::ExactNationalId);
    assert_eq!(list.len(), 2);

    // ADT A40 at C: OLD is merged into NEW, which belongs to the same person as A:P1.
    let mut adt = ingest(b"adt", vec![]);
    adt.identity = vec![
        IdentityOp::Link {
            local: "C:NEW".into(),
            person: huren_model::national_id_key("s", nid),
        },
        IdentityOp::Merge {
            from: "C:OLD".into(),
            into: "C:NEW".into(),
        },
    ];
    let c = store.commit_blocking(adt).unwrap();
    assert!(c.seq > 0);
    let (_, list) = store.patient_reports(&by_nid, None).unwrap();
    assert_eq!(list.len(), 3, "merge brings C:OLD's report to the person");
    let (_, list) = store
        .patient_reports(&"C:OLD".parse().unwrap(), Some(ReportKind::Lab))
        .unwrap();
    assert_eq!(list.len(), 3);
    let (_, list) = store
        .patient_reports(&"C:OLD".parse().unwrap(), Some(ReportKind::Ecg))
        .unwrap();
    assert!(list.is_empty());
}

#[test]
fn index_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let hashes: Vec<_> = {
        let store = Store::open(dir.path(), opts()).unwrap();
        (0..20)
            .map(|i| {
                let m = format!("msg {i}");
                let r = report(
                    m.as_bytes(),
                    "A",
                    &format!("P{}", i % 3),
                    &format!("L{i}"),
                    ReportStatus::Final,
                    None,
                );
                store
                    .commit_blocking(ingest(m.as_bytes(), vec![r]))
                    .unwrap()
                    .reports[0]
                    .report
            })
            .collect()
    };
    // Lose the whole index: opening replays the journal.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        for h in &hashes {
            assert!(store.report(h).unwrap().is_some());
        }
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        assert_eq!(rep.reports, 20);
    }
    assert_eq!(Store::reindex(dir.path()).unwrap(), 20);
    let store = Store::open(dir.path(), opts()).unwrap();
    let (_, l) = store
        .patient_reports(&"A:P0".parse().unwrap(), None)
        .unwrap();
    assert_eq!(l.len(), 7);
}

#[test]
fn verify_names_a_damaged_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    // A blob over the inline limit is a file of its own.
    let big = vec![5u8; 1_500_000];
    let mut i = ingest(
        b"orig",
        vec![report(b"orig", "A", "P", "L", ReportStatus::Final, None)],
    );
    i.attachments = vec![big.clone().into()];
    store.commit_blocking(i).unwrap();
    let hex = ContentHash::of(&big).hex();
    let p = dir.path().join("objects").join(&hex[..2]).join(&hex[2..]);
    assert_eq!(std::fs::read(&p).unwrap(), big, "durable before the answer");
    assert!(store.verify().unwrap().problems.is_empty());
    std::fs::write(&p, b"tampered").unwrap();
    let rep = store.verify().unwrap();
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    assert!(rep.problems[0].contains(&hex));
}

#[test]
fn a_damaged_journal_blob_is_never_served_and_verify_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let orig = b"ORIGINAL-BYTES-0123456789".to_vec();
    let c = store
        .commit_blocking(ingest(
            &orig,
            vec![report(&orig, "A", "P", "L", ReportStatus::Final, None)],
        ))
        .unwrap();
    assert_eq!(store.blob(&c.original).unwrap().unwrap(), orig);
    // Flip one byte of the original's bytes inside the journal record.
    let jp = dir.path().join("journal.log");
    let mut j = std::fs::read(&jp).unwrap();
    let at = j.windows(orig.len()).position(|w| w == orig).unwrap();
    j[at + 3] ^= 0xff;
    std::fs::write(&jp, &j).unwrap();
    assert!(
        store.blob(&c.original).is_err(),
        "bytes that do not match their hash are an error, never an answer"
    );
    let rep = store.verify().unwrap();
    assert!(
        rep.problems.iter().any(|p| p.contains("do not decode")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn concurrent_commits_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let m = format!("t{t} m{i}");
                    let r = report(
                        m.as_bytes(),
                        "A",
                        "P",
                        &format!("{t}-{i}"),
                        ReportStatus::Final,
                        None,
                    );
                    s.commit_blocking(ingest(m.as_bytes(), vec![r])).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rep = store.verify().unwrap();
    assert!(rep.problems.is_empty());
    assert_eq!(rep.reports, 400);
    assert!(
        rep.journal_records < 400,
        "group commit should batch: {} records",
        rep.journal_records
    );
}

#[test]
fn a_report_with_a_foreign_original_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let r = report(b"other", "A", "P", "L", ReportStatus::Final, None);
    assert!(store.commit_blocking(ingest(b"mine", vec![r])).is_err());
    assert_eq!(store.verify().unwrap().journal_records, 0);
    assert!(store.blob(&ContentHash::of(b"mine")).unwrap().is_none());
}

#[test]
fn small_blobs_live_in_the_journal_only_and_torn_files_of_the_older_layout_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = |h: &ContentHash| {
        let hex = h.hex();
        dir.path().join("objects").join(&hex[..2]).join(&hex[2..])
    };
    let c = {
        let store = Store::open(dir.path(), opts()).unwrap();
        let c = store
            .commit_blocking(ingest(
                b"orig-x",
                vec![report(b"orig-x", "A", "P", "L", ReportStatus::Final, None)],
            ))
            .unwrap();
        // Readable at once, and no file is ever made for a small blob.
        assert_eq!(store.blob(&c.original).unwrap().unwrap(), b"orig-x");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!path(&c.original).exists() && !path(&c.reports[0].report).exists());
        c
    };
    // A store of the older layout, after a crash before its checkpoint: a torn file and a
    // file with other bytes, for blobs the journal holds.
    let _ = std::fs::remove_file(dir.path().join("checkpoint"));
    for (h, junk) in [
        (c.original, &b""[..]),
        (c.reports[0].report, &b"not the report"[..]),
    ] {
        std::fs::create_dir_all(path(&h).parent().unwrap()).unwrap();
        std::fs::write(path(&h), junk).unwrap();
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(!path(&c.original).exists() && !path(&c.reports[0].report).exists());
    assert_eq!(store.blob(&c.original).unwrap().unwrap(), b"orig-x");
    assert!(store.report(&c.reports[0].report).unwrap().is_some());
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn attachments_are_committed_with_their_report_and_survive_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let wave = vec![7u8; 1_300_000]; // larger than the inline limit: written and synced itself
    let small = b"preview".to_vec();
    let (c, hw, hs) = {
        let store = Store::open(dir.path(), opts()).unwrap();
        let mut i = ingest(
            b"orig-ecg",
            vec![report(
                b"orig-ecg",
                "A",
                "P",
                "E1",
                ReportStatus::Final,
                None,
            )],
        );
        i.attachments = vec![wave.clone().into(), small.clone().into()];
        let c = store.commit_blocking(i).unwrap();
        let (hw, hs) = (ContentHash::of(&wave), ContentHash::of(&small));
        assert_eq!(store.blob(&hw).unwrap().unwrap(), wave);
        assert_eq!(store.blob(&hs).unwrap().unwrap(), small);
        (c, hw, hs)
    };
    // The small ones have no file (the journal holds them); the large one is a file.
    let file = |h: ContentHash| {
        let hex = h.hex();
        dir.path().join("objects").join(&hex[..2]).join(&hex[2..])
    };
    assert!(!file(hs).exists() && !file(c.original).exists());
    assert!(file(hw).is_file());
    let _ = std::fs::remove_file(dir.path().join("checkpoint"));
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.blob(&hs).unwrap().unwrap(), small);
    assert_eq!(store.blob(&hw).unwrap().unwrap(), wave);
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn a_chain_of_thousands_of_versions_stays_correct_and_survives_reindex() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 2500;
    let mut hashes = Vec::with_capacity(N);
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        // Several committers at once, so groups hold more than one version of the chain.
        let per = N / 5;
        let threads: Vec<_> = (0..5)
            .map(|t| {
                let s = store.clone();
                std::thread::spawn(move || {
                    (0..per)
                        .map(|i| {
                            let m = format!("v t{t} i{i}");
                            let r =
                                report(m.as_bytes(), "A", "P", "LONG", ReportStatus::Final, None);
                            let c = s.commit_blocking(ingest(m.as_bytes(), vec![r])).unwrap();
                            (c.reports[0].version, c.reports[0].report)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            hashes.extend(t.join().unwrap());
        }
        hashes.sort();
        let versions: Vec<u32> = hashes.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=N as u32).collect::<Vec<_>>());
        check_chain(&store, &hashes);
    }
    let check = |hashes: &[(u32, ContentHash)]| {
        let store = Store::open(dir.path(), opts()).unwrap();
        check_chain(&store, hashes);
        assert!(store.verify().unwrap().problems.is_empty());
    };
    // Lost index: replayed at open; explicit reindex; both give the same chain.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    check(&hashes);
    Store::reindex(dir.path()).unwrap();
    check(&hashes);
}

fn check_chain(store: &Store, hashes: &[(u32, ContentHash)]) {
    let chain = store.versions("lab|A|LONG").unwrap();
    assert_eq!(chain, hashes.iter().map(|(_, h)| *h).collect::<Vec<_>>());
    let (v, head) = store.chain_head("lab|A|LONG").unwrap().unwrap();
    assert_eq!((v, head), *hashes.last().unwrap());
    for w in hashes.windows(2) {
        let m = store.report_meta(&w[0].1).unwrap().unwrap();
        assert_eq!((m.version, m.superseded_by), (w[0].0, Some(w[1].1)));
    }
    let last = store.report_meta(&head).unwrap().unwrap();
    assert_eq!((last.version, last.superseded_by), (v, None));
    // Every old version stays readable; only the head is current.
    assert!(store.report(&hashes[0].1).unwrap().is_some());
    let (_, list) = store
        .patient_reports(&"A:P".parse().unwrap(), None)
        .unwrap();
    assert_eq!(list.iter().map(|m| m.hash).collect::<Vec<_>>(), vec![head]);
    // A chain whose key extends this one is not mixed in.
    assert!(store.versions("lab|A|LON").unwrap().is_empty());
}

#[test]
fn a_damaged_blob_location_is_an_error_not_a_huge_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let orig = b"ORIGINAL-BYTES-LOCATION".to_vec();
    let c = {
        let store = Store::open(dir.path(), opts()).unwrap();
        store
            .commit_blocking(ingest(
                &orig,
                vec![report(&orig, "A", "P", "L", ReportStatus::Final, None)],
            ))
            .unwrap()
    };
    {
        // The sled index says the blob is 4 GiB long. (sled releases its file lock from a
        // background thread after the store is dropped: wait for it, boundedly.)
        let t0 = std::time::Instant::now();
        let db = loop {
            match sled::open(dir.path().join("index")) {
                Ok(db) => break db,
                Err(e) if t0.elapsed() < std::time::Duration::from_secs(10) => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("the index stayed locked: {e}"),
            }
        };
        let t = db.open_tree("blob_locations").unwrap();
        let mut v = t
            .get(c.original.as_bytes())
            .unwrap()
            .expect("a location")
            .to_vec();
        v[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        t.insert(c.original.as_bytes(), v).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    let e = store.blob(&c.original).unwrap_err();
    assert!(e.to_string().contains("reindex"), "{e}");
}

/// The per-person counter moves for exactly the persons a commit changes: a new report, a
/// correction (also for the patient the superseded version belonged to), a link and a merge;
/// a duplicate and another patient's report leave it alone.
#[test]
fn person_generations_move_with_the_commits_that_change_a_persons_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let nid = "310120199001011234";
    let person = huren_model::national_id_key("s", nid);
    let gen = |k: &str| store.person_generation(k);
    let g0 = gen(&person);
    let r = report(b"a", "A", "P1", "L1", ReportStatus::Final, Some(nid));
    store
        .commit_blocking(ingest(b"a", vec![r.clone()]))
        .unwrap();
    let g1 = gen(&person);
    assert_ne!(g0, g1, "a new report of the person");
    store.commit_blocking(ingest(b"a", vec![r])).unwrap();
    assert_eq!(gen(&person), g1, "a duplicate changes nothing");

    let other0 = gen("A:Q");
    let o = report(b"z", "A", "Q", "LZ", ReportStatus::Final, None);
    store.commit_blocking(ingest(b"z", vec![o])).unwrap();
    assert_ne!(gen("A:Q"), other0);
    assert_eq!(gen(&person), g1, "another patient's report");

    // A correction of L1 sent for another local patient: both persons' lists change.
    let before = (gen(&person), gen("A:P2"));
    let c = report(b"a2", "A", "P2", "L1", ReportStatus::Corrected, None);
    store.commit_blocking(ingest(b"a2", vec![c])).unwrap();
    assert_ne!(gen(&person), before.0);
    assert_ne!(gen("A:P2"), before.1);

    // A40 (an institution merges only its own IDs): A:Q is merged into A:P1's person.
    let (gp, gz) = (gen(&person), gen("A:Q"));
    let mut adt = ingest(b"adt", vec![]);
    adt.identity = vec![IdentityOp::Merge {
        from: "A:Q".into(),
        into: "A:P1".into(),
    }];
    store.commit_blocking(adt).unwrap();
    assert_ne!(gen(&person), gp, "the merge target's list grows");
    assert_ne!(gen("A:Q"), gz, "the merged person's list empties");
    let (_, list) = store
        .patient_reports(&format!("nid:{nid}").parse().unwrap(), None)
        .unwrap();
    // L1 now belongs to A:P2 (its correction); Z:Q's report joined.
    assert_eq!(list.len(), 1);
}
