//! The third-party corpus (`$HUREN_THIRD_PARTY/hl7`): real messages nobody on the team wrote.

use std::path::{Path, PathBuf};

use huren_hl7::{interpret, split_batch, Content, Diagnostic, Message, SenderConfig};
use huren_model::ContentHash;

fn root() -> Option<PathBuf> {
    match std::env::var_os("HUREN_THIRD_PARTY") {
        Some(p) if Path::new(&p).is_dir() => Some(PathBuf::from(p).join("hl7")),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "HUREN_THIRD_PARTY must be set under CI"
            );
            eprintln!("skipping: HUREN_THIRD_PARTY not set");
            None
        }
    }
}

fn files(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "hl7") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn cfg() -> SenderConfig {
    SenderConfig {
        institution: "TP".into(),
        charset: None,
        time_zone: chrono_tz::Asia::Shanghai,
        national_id_secret: "s".into(),
    }
}

fn run(p: &Path) -> Vec<Result<Content, String>> {
    run_w(p).into_iter().map(|r| r.map(|(c, _)| c)).collect()
}

/// Every message of a file (batches split): the content and warnings, or the rejection.
fn run_w(p: &Path) -> Vec<Result<(Content, Vec<Diagnostic>), String>> {
    let b = std::fs::read(p).unwrap();
    match split_batch(&b) {
        Err(e) => vec![Err(e.to_string())],
        Ok(parts) => parts
            .into_iter()
            .map(|m| {
                Message::parse(m, None)
                    .and_then(|msg| interpret(&msg, &cfg(), ContentHash::of(m)))
                    .map(|i| (i.content, i.warnings))
                    .map_err(|e| e.to_string())
            })
            .collect(),
    }
}

#[test]
fn every_oru_and_adt_file_is_understood() {
    let Some(r) = root() else { return };
    let mut ok = 0;
    let mut rejected = Vec::new();
    for sub in ["oru", "adt"] {
        for f in files(&r.join(sub)) {
            for res in run(&f) {
                match res {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        rejected.push(format!("{}: {e}", f.file_name().unwrap().to_string_lossy()))
                    }
                }
            }
        }
    }
    // The one rejection: the VAERS report (simple-hl7 oru-imm) has OBRs without any order
    // number, so its results cannot be identified for versioning.
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert!(
        rejected[0].starts_with("simplehl7_oru_imm.hl7: OBR[1]-3:"),
        "{rejected:?}"
    );
    assert!(ok >= 9, "{ok}");
    // Facts checked by reading the files.
    let sample = run(&r.join("oru/pyhl7_sample_hl7.hl7"));
    let Ok(Content::Lab(reports)) = &sample[0] else {
        panic!("{sample:?}")
    };
    assert_eq!(reports.len(), 1, "GHH LAB sample: one OBR");
    let obs = &reports[0].lab.as_ref().unwrap().observations;
    assert_eq!(obs.len(), 2);
    assert_eq!(obs[0].value, "^182", "SN value kept as sent");
    assert_eq!(reports[0].patient.local_id, "555-44-4444");
    assert_eq!(
        reports[0].patient.birth_date, None,
        "196203520 is not a date"
    );
    let lab = |f: &str| match run(&r.join(f)).remove(0) {
        Ok(Content::Lab(r)) => r,
        other => panic!("{f}: {other:?}"),
    };
    let obs = |reports: &[huren_model::Report]| -> Vec<usize> {
        reports
            .iter()
            .map(|r| r.lab.as_ref().unwrap().observations.len())
            .collect()
    };
    let msft = lab("oru/msft_oru_r01_01.hl7");
    // Five OBX, but two come before any OBR (ignored with a warning).
    assert_eq!(obs(&msft), [3]);
    let w = run_w(&r.join("oru/msft_oru_r01_01.hl7"));
    let Ok((_, w)) = &w[0] else { panic!() };
    assert_eq!(
        w.iter()
            .filter(|d| d.message.contains("before any OBR"))
            .count(),
        2
    );
    assert_eq!(msft[0].source.source_key, "986", "OBR-3.1");
    assert_eq!(msft[0].order.placer.as_deref(), Some("845439"));
    assert_eq!(msft[0].patient.local_id, "14");
    assert_eq!(msft[0].patient.name.as_deref(), Some("Finn Huckleberry"));
    assert_eq!(msft[0].patient.birth_date.as_deref(), Some("1963-08-15"));
    assert_eq!(
        msft[0].specimen_collected_at.as_deref(),
        Some("2002-02-15T07:30:00+02:15"),
        "explicit offset kept"
    );
    assert_eq!(
        obs(&lab("oru/msft_lab_oru_1.hl7")).iter().sum::<usize>(),
        10
    );
    assert_eq!(lab("oru/msft_lab_oru_2.hl7").len(), 2, "two OBR groups");
    assert_eq!(obs(&lab("oru/hl7parser_sample_oru_r01_lab.hl7")), [14]);
    let a40 = run(&r.join("adt/msft_adt_a40_01.hl7"));
    match &a40[0] {
        Ok(Content::PatientMerge { surviving, merged }) => {
            assert_eq!(surviving.local_id, "12345");
            assert_eq!(merged[0].local_id, "56789");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&a40[0], Ok(Content::PatientMerge { merged, .. }) if !merged.is_empty()));
    // ADT visits: the A04 sample's PV1-44 (no EVN), the A03 sample's PV1-45 (not EVN-6).
    match &run(&r.join("adt/simplehl7_adt_a04.hl7"))[0] {
        Ok(Content::Visit(v)) => {
            assert_eq!(
                (v.at.as_str(), v.at_field),
                ("1999-12-27T14:08:00+08:00", "PV1-44")
            );
            assert_eq!(v.patient.local_id, "454721", "PID-3");
        }
        other => panic!("{other:?}"),
    }
    match &run(&r.join("other/nhapi_adt_a03.hl7"))[0] {
        Ok(Content::Visit(v)) => {
            assert_eq!(v.event, huren_hl7::VisitEvent::Discharged);
            assert_eq!(
                (v.at.as_str(), v.at_field),
                ("2008-03-03T15:08:00+08:00", "PV1-45")
            );
        }
        other => panic!("{other:?}"),
    }
    let bom = run(&r.join("oru/msft_lab_oru_1.hl7"));
    assert!(bom[0].is_ok(), "UTF-8 BOM file");
}

#[test]
fn batches_split_and_malformed_files_never_panic() {
    let Some(r) = root() else { return };
    for f in files(&r.join("batch")) {
        let res = run(&f);
        assert!(res.len() >= 2, "{}: {res:?}", f.display());
    }
    let mut errors = 0;
    for f in files(&r.join("malformed")) {
        for res in run_w(&f) {
            match res {
                Err(_) => errors += 1,
                // Its only oddity is CRLF segment ends, which are accepted silently.
                Ok(_) if f.ends_with("hl7std_adt_crlf_blank_lines.hl7") => {}
                Ok((_, w)) => assert!(
                    !w.is_empty(),
                    "{}: malformed input accepted without a warning",
                    f.display()
                ),
            }
        }
    }
    assert!(errors >= 30, "{errors} malformed messages refused");
    let crlf = std::fs::read(r.join("malformed/hl7std_adt_crlf_blank_lines.hl7")).unwrap();
    let m = Message::parse(&crlf, None).unwrap();
    assert_eq!(m.segment_count(), 22, "CRLF: no segment lost");
    assert_eq!(m.header().control_id, "24553");
    // The non-default delimiters `MSH^~|\&` are read (ADT^A24 itself is not supported).
    let alt = std::fs::read(r.join("malformed/nhapi_alt_delimiters_adt_a24.hl7")).unwrap();
    let m = Message::parse(&alt, None).unwrap();
    assert_eq!(m.header().field_separator, '^');
    assert_eq!(
        (
            m.header().message_type.as_str(),
            m.header().trigger_event.as_str()
        ),
        ("ADT", "A24")
    );
    let bad = std::fs::read(r.join("malformed/pyhl7_sample_bad_batch.hl7")).unwrap();
    assert!(split_batch(&bad).is_err(), "BHS without MSH");
    let space =
        std::fs::read(r.join("malformed/hl7std_msh2_space_instead_of_backslash.hl7")).unwrap();
    assert_eq!(
        Message::parse(&space, None).unwrap_err().diagnostics[0].location,
        "MSH-2"
    );
    // Other message types are refused with a reason, not mis-read.
    for f in files(&r.join("order")) {
        for res in run(&f) {
            let e = res.expect_err("orders are not results");
            assert!(e.contains("not supported"), "{}: {e}", f.display());
        }
    }
}
