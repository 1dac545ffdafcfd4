//! `huren ingest`, `check`, `query`, `verify` on the project's fixtures and the third-party corpus.

use std::path::PathBuf;

use crate::support::{huren, repo, third_party};

fn fixture(name: &str) -> String {
    repo()
        .join("fixtures/hl7")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn hl7_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hl7") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn ingest_fixtures_then_query_across_institutions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let good = [
        "oru_multi_obr_cn_utf8.hl7",
        "oru_gb18030.hl7",
        "batch_fhs.hl7",
        "oru_v27_truncation.hl7",
        "adt_a08.hl7",
    ];
    let files: Vec<String> = good.iter().map(|f| fixture(f)).collect();
    let mut args = vec!["ingest", "--config", &cfg, "--data", d];
    args.extend(files.iter().map(String::as_str));
    let (code, lines, err) = huren(&args);
    assert_eq!(code, 0, "{lines:#?}\n{err}");
    assert!(lines.len() >= good.len());
    for l in &lines {
        assert_eq!(l["outcome"], "stored", "{l}");
        assert!(l["report"]
            .as_str()
            .is_none_or(|h| h.starts_with("blake3:")));
        assert!(l["file"].as_str().is_some());
    }
    // Ingesting the same files again stores nothing new.
    let (code, lines, _) = huren(&args);
    assert_eq!(code, 0);
    assert!(
        lines
            .iter()
            .filter(|l| l["kind"] == "lab")
            .all(|l| l["outcome"] == "duplicate"),
        "{lines:#?}"
    );

    // A correction supersedes, a cancellation supersedes again.
    let c = fixture("oru_corrected.hl7");
    let (code, lines, _) = huren(&["ingest", "--config", &cfg, "--data", d, &c]);
    assert_eq!(code, 0);
    assert_eq!(lines[0]["outcome"], "superseded", "{lines:?}");
    let x = fixture("oru_cancelled.hl7");
    let (code, lines, _) = huren(&["ingest", "--config", &cfg, "--data", d, &x]);
    assert_eq!(code, 0);
    assert!(
        matches!(lines[0]["outcome"].as_str(), Some("superseded" | "stored")),
        "{lines:?}"
    );

    // A40 merge, then verify.
    let a40 = fixture("adt_a40.hl7");
    let (code, lines, err) = huren(&["ingest", "--config", &cfg, "--data", d, &a40]);
    assert_eq!(code, 0, "{lines:?} {err}");
    let (code, lines, err) = huren(&["verify", "--data", d]);
    assert_eq!(code, 0, "{lines:?} {err}");
    assert!(lines[0]["reports"].as_u64().unwrap() >= 4);
}

#[test]
fn query_by_national_id_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let f = fixture("oru_multi_obr_cn_utf8.hl7");
    let (code, lines, _) = huren(&["ingest", "--config", &cfg, "--data", d, &f]);
    assert_eq!(code, 0);
    let report_hash = lines[0]["report"].as_str().unwrap().to_string();
    // The fixture carries the (test) national ID 310120199001011234.
    let (code, q, err) = huren(&[
        "query",
        "--config",
        &cfg,
        "--data",
        d,
        "--patient",
        "nid:310120199001011234",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(q[0]["identity_link"], "exact_national_id");
    assert!(q[0]["count"].as_u64().unwrap() >= 2, "{q:?}");
    assert!(q[0]["reports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["meta"]["hash"] == report_hash.as_str()));
    // The raw national ID is nowhere in the store.
    for e in walk(std::path::Path::new(d)) {
        let b = std::fs::read(&e).unwrap();
        let original = String::from_utf8_lossy(&b).contains("MSH|");
        if !original {
            assert!(
                !String::from_utf8_lossy(&b).contains("310120199001011234"),
                "{} holds the raw national ID",
                e.display()
            );
        }
    }
    let (code, q, _) = huren(&[
        "query",
        "--config",
        &cfg,
        "--data",
        d,
        "--patient",
        "nid:310120199001011234",
        "--kind",
        "ecg",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(q[0]["count"], 0);
    let (code, _, err) = huren(&["query", "--data", d, "--patient", "bad"]);
    assert_eq!(code, 2);
    assert!(err.contains("INSTITUTION:LOCAL_ID"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn check_names_file_segment_field_and_reason() {
    let bad = repo().join("fixtures/hl7/malformed");
    let files = hl7_files(&bad);
    assert!(files.len() >= 3, "malformed fixtures missing");
    for f in files {
        let (code, lines, err) = huren(&["check", f.to_str().unwrap()]);
        assert_eq!(code, 1, "{} should be rejected: {lines:?}", f.display());
        let l = lines
            .iter()
            .find(|l| l["outcome"] == "rejected")
            .unwrap_or_else(|| panic!("{lines:?}"));
        assert!(l["error"].as_str().is_some_and(|e| !e.is_empty()), "{l}");
        assert!(
            err.contains(f.file_name().unwrap().to_str().unwrap()),
            "stderr names the file: {err}"
        );
    }
    // Good files check clean and nothing is written anywhere.
    let (code, lines, err) = huren(&["check", &fixture("oru_multi_obr_cn_utf8.hl7")]);
    assert_eq!(code, 0, "{lines:?} {err}");
    assert!(lines.iter().all(|l| l["outcome"] == "valid"));
}

#[test]
fn third_party_corpus_ingests_or_is_rejected_clearly() {
    let Some(tp) = third_party() else { return };
    let root = tp.join("hl7");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let mut stored = 0;
    for sub in ["oru", "adt", "batch"] {
        for f in hl7_files(&root.join(sub)) {
            let (code, lines, err) = huren(&[
                "ingest",
                "--data",
                d,
                "--institution",
                "TP",
                f.to_str().unwrap(),
            ]);
            assert!(
                code == 0 || code == 1,
                "{}: exit {code}: {err}",
                f.display()
            );
            assert!(!err.contains("panicked"), "{}: {err}", f.display());
            for l in &lines {
                match l["outcome"].as_str() {
                    Some("stored" | "duplicate" | "superseded") => stored += 1,
                    // A visit (ADT A01/A03/A04) of a patient with no chest-pain case and no
                    // national ID: acknowledged, nothing to keep (docs/chest-pain.md).
                    Some("not_stored") => {}
                    Some("rejected") => {
                        assert!(l["error"].as_str().is_some_and(|e| !e.is_empty()), "{l}")
                    }
                    other => panic!("{}: unexpected outcome {other:?}", f.display()),
                }
            }
        }
    }
    assert!(stored >= 8, "only {stored} third-party messages stored");
    for f in hl7_files(&root.join("malformed")) {
        let (code, lines, err) = huren(&[
            "ingest",
            "--data",
            d,
            "--institution",
            "TP",
            f.to_str().unwrap(),
        ]);
        assert!(
            code == 0 || code == 1,
            "{}: exit {code}: {err}",
            f.display()
        );
        assert!(!err.contains("panicked"), "{}: {err}", f.display());
        for l in &lines {
            assert!(l["outcome"].is_string(), "{l}");
        }
    }
    let (code, lines, err) = huren(&["verify", "--data", d]);
    assert_eq!(
        code, 0,
        "no half record after the malformed corpus: {lines:?} {err}"
    );
}
