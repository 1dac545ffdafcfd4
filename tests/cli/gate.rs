//! The gate (issue 15): every finding of the "Why" as a regression test against the
//! real binary — a read without the patient's authorisation, any code accepted, QIDO without a
//! key listing every institution, direct reads by hash or UID of another institution's data,
//! the search cap, the lockout after wrong codes, the operator's `huren query` unaudited —
//! each also counting the audit records the request wrote (exactly one).

use std::path::Path;

use crate::dicom_web::get_raw;
use crate::support::{huren, msa, oru, Mllp, Server};

const SQ01: &str = "Bearer test-sq01-token";
const ZX: &str = "Bearer test-clinician-token";

fn audit_count(data: &Path) -> usize {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn last_audit(data: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(data.join("audit.log")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// Ingests one file with `huren ingest` (the server is not running); its first report hash.
fn ingest(cfg: &str, data: &Path, institution: &str, file: &Path) -> String {
    let (rc, lines, err) = huren(&[
        "ingest",
        "--config",
        cfg,
        "--data",
        data.to_str().unwrap(),
        "--institution",
        institution,
        file.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{lines:?} {err}");
    lines[0]["report"].as_str().unwrap().to_string()
}

fn uid(v: &serde_json::Value, tag: &str) -> String {
    v[tag]["Value"][0].as_str().unwrap().to_string()
}

#[test]
fn every_read_needs_a_verified_authorisation_or_own_data_and_is_audited_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::dicom::config(dir.path(), "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[access]\nsearch_cap = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let repo = crate::support::repo();
    // A CT study and a second study of FX-ZX, and an ECG of FX-ZY.
    let study_report = ingest(
        &cfg,
        &data,
        "FX-ZX",
        &repo.join("fixtures/dicom/ct_series_1.dcm"),
    );
    ingest(
        &cfg,
        &data,
        "FX-ZX",
        &repo.join("fixtures/dicom/ct_gb18030.dcm"),
    );
    let ecg = ingest(
        &cfg,
        &data,
        "FX-ZY",
        &repo.join("fixtures/ecg/aecg-zh-patient.xml"),
    );
    let srv = Server::start(&data, &["--config", &cfg]);
    let mut c = Mllp::connect(&srv.mllp);
    assert_eq!(
        msa(&c
            .send(&oru("FX-ZX", "G-1", "G1", "GLAB1", "130", "F"))
            .unwrap())
        .0,
        "AA"
    );

    // The lab report's hash, as the patient's own hospital sees it (own data, consent).
    let (st, own) = srv.get("/api/v1/patients/FX-ZX:G1/reports");
    assert_eq!(st, 200, "{own}");
    let lab = own["reports"][0]["meta"]["hash"]
        .as_str()
        .unwrap()
        .to_string();

    let check = |path: &str, headers: &[(&str, &str)], want: u16, code: Option<&str>| {
        let before = audit_count(&data);
        let (st, _, body) = get_raw(&srv, path, headers);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(st, want, "{path}: {body}");
        if let Some(c) = code {
            assert_eq!(body["code"], c, "{path}: {body}");
        }
        assert_eq!(
            audit_count(&data),
            before + 1,
            "{path}: exactly one audit record"
        );
        body
    };

    // 1. /reports answered 200 without any patient authorisation.
    check(
        "/api/v1/patients/FX-ZX:G1/reports",
        &[("Authorization", SQ01)],
        403,
        Some("NO_PATIENT_AUTHORIZATION"),
    );
    // 2. Any non-empty code was accepted.
    check(
        "/api/v1/patients/FX-ZX:G1/reports",
        &[
            ("Authorization", SQ01),
            ("X-Patient-Authorization", "health_card x"),
        ],
        403,
        Some("PATIENT_AUTHORIZATION_INVALID"),
    );
    let consent = srv.authorization("FX-ZX:G1");
    let ok = [
        ("Authorization", SQ01),
        ("X-Patient-Authorization", consent.as_str()),
    ];
    let b = check("/api/v1/patients/FX-ZX:G1/reports", &ok, 200, None);
    assert_eq!(b["count"], 1);
    assert_eq!(last_audit(&data)["detail"]["authorization"], "consent");
    // A consent for G1 is no key to another patient.
    check(
        "/api/v1/patients/FX-ZX:P100/reports",
        &ok,
        403,
        Some("PATIENT_AUTHORIZATION_INVALID"),
    );

    // 4. Direct reads by hash of another institution's data.
    for path in [
        format!("/api/v1/reports/{lab}"),
        format!("/api/v1/reports/{lab}/original"),
    ] {
        check(
            &path,
            &[("Authorization", SQ01)],
            403,
            Some("NO_PATIENT_AUTHORIZATION"),
        );
        check(&path, &ok, 200, None);
    }
    check(
        &format!("/api/v1/reports/{ecg}/ecg.svg"),
        &[("Authorization", SQ01)],
        403,
        Some("NO_PATIENT_AUTHORIZATION"),
    );
    check(
        &format!("/api/v1/reports/{study_report}/original"),
        &[("Authorization", SQ01)],
        403,
        None,
    );
    // The sending institution reads its own report without a consent.
    check(
        &format!("/api/v1/reports/{lab}"),
        &[("Authorization", ZX)],
        200,
        None,
    );

    // 3. QIDO without a key: the caller's own institution only, and capped (search_cap = 1).
    let before = audit_count(&data);
    let (st, _, body) = get_raw(&srv, "/dicomweb/studies", &[("Authorization", SQ01)]);
    assert_eq!(st, 200);
    let studies: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(studies.as_array().unwrap().len(), 0, "{studies}");
    assert_eq!(audit_count(&data), before + 1);
    let url = format!("http://{}/dicomweb/studies", srv.http);
    let r = ureq::get(&url).set("Authorization", ZX).call().unwrap();
    assert!(
        r.header("warning").is_some_and(|w| w.starts_with("299")),
        "the cap is said"
    );
    let zx: serde_json::Value = serde_json::from_reader(r.into_reader()).unwrap();
    assert_eq!(zx.as_array().unwrap().len(), 1, "capped at 1: {zx}");
    let (_, _, body) = get_raw(
        &srv,
        "/dicomweb/studies?limit=1&offset=1",
        &[("Authorization", ZX)],
    );
    let page2: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page2.as_array().unwrap().len(), 1, "the next page: {page2}");
    assert_ne!(page2[0], zx[0]);

    // The CT study's UIDs (own institution).
    let (_, _, body) = get_raw(
        &srv,
        "/dicomweb/instances?Modality=CT&limit=1",
        &[("Authorization", ZX)],
    );
    let inst: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let inst = &inst[0];
    let (study, series, sop, pid) = (
        uid(inst, "0020000D"),
        uid(inst, "0020000E"),
        uid(inst, "00080018"),
        uid(inst, "00100020"),
    );
    // 4. WADO-RS, metadata, frames, rendered and previews of another institution's study.
    let base = format!("/dicomweb/studies/{study}");
    let inst_path = format!("{base}/series/{series}/instances/{sop}");
    for path in [
        base.clone(),
        format!("{base}/metadata"),
        format!("{inst_path}/frames/1"),
        format!("{inst_path}/rendered"),
        format!("/api/v1/imaging/instances/{sop}/preview.png"),
    ] {
        check(
            &path,
            &[("Authorization", SQ01)],
            403,
            Some("NO_PATIENT_AUTHORIZATION"),
        );
    }
    // With the patient's consent, a patient-keyed QIDO across institutions finds the study.
    let ct_consent = srv.authorization(&format!("FX-ZX:{pid}"));
    let (st, _, body) = get_raw(
        &srv,
        &format!("/dicomweb/studies?PatientID={pid}"),
        &[
            ("Authorization", SQ01),
            ("X-Patient-Authorization", ct_consent.as_str()),
        ],
    );
    assert_eq!(st, 200);
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    // A wildcard patient key with the same consent: own institution only.
    let (_, _, body) = get_raw(
        &srv,
        "/dicomweb/studies?PatientID=*",
        &[
            ("Authorization", SQ01),
            ("X-Patient-Authorization", ct_consent.as_str()),
        ],
    );
    let wild: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(wild.as_array().unwrap().len(), 0, "{wild}");
    check(
        &format!("{inst_path}/rendered"),
        &[
            ("Authorization", SQ01),
            ("X-Patient-Authorization", ct_consent.as_str()),
        ],
        200,
        None,
    );

    // Repeated wrong codes lock the person: the right code is refused (429) meanwhile.
    for _ in 0..5 {
        check(
            "/api/v1/patients/FX-ZX:G1/results",
            &[
                ("Authorization", SQ01),
                ("X-Patient-Authorization", "health_card WRONG-00000"),
            ],
            403,
            Some("PATIENT_AUTHORIZATION_INVALID"),
        );
    }
    check(
        "/api/v1/patients/FX-ZX:G1/results",
        &ok,
        429,
        Some("PATIENT_AUTHORIZATION_LOCKED"),
    );

    // A privacy officer reads the audit log, never results.
    check(
        "/api/v1/patients/FX-ZX:G1/reports",
        &[
            ("Authorization", "Bearer test-privacy-token"),
            ("X-Patient-Authorization", consent.as_str()),
        ],
        403,
        Some("ROLE"),
    );
    // Only registrars and institution systems record consents.
    let (st, b) = srv.post(
        "/api/v1/consents",
        &[("Authorization", SQ01)],
        &serde_json::json!({"patient": "FX-ZX:G1",
            "credential": {"kind": "health_card", "value": "1"}}),
    );
    assert_eq!(st, 403, "{b}");
    // A revoked consent no longer opens anything.
    let id = {
        let (st, b) = srv.post(
            "/api/v1/consents",
            &[("Authorization", "Bearer test-registrar-token")],
            &serde_json::json!({"patient": "FX-ZX:G1", "scope": "lab", "ttl_hours": 1,
                "credential": {"kind": "id_card", "value": "3101..."}}),
        );
        assert_eq!(st, 201, "{b}");
        assert_eq!(b["scope"], "lab");
        b["consent"].as_str().unwrap().to_string()
    };
    let url = format!("http://{}/api/v1/consents/{id}", srv.http);
    let r = ureq::delete(&url)
        .set("Authorization", "Bearer test-registrar-token")
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);

    // The national ID, the tokens and the codes never reach the audit log.
    let raw = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(!raw.contains(consent.split(' ').nth(1).unwrap()));
    assert!(!raw.contains("test-sq01-token"));
    drop(c);
    drop(srv);

    // `huren query`: the local operator reads through the gate; one audit record names them.
    let before = audit_count(&data);
    let (rc, lines, err) = huren(&[
        "query",
        "--config",
        &cfg,
        "--data",
        data.to_str().unwrap(),
        "--patient",
        "FX-ZX:G1",
        "--json",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(lines[0]["count"], 1);
    assert_eq!(audit_count(&data), before + 1);
    let rec = last_audit(&data);
    assert_eq!(rec["role"], "operator");
    assert!(rec["actor"].as_str().unwrap().starts_with("operator:"));
    assert_eq!(rec["action"], "cli_query");
    assert_eq!(rec["returned"].as_array().unwrap().len(), 1);
    let (code, _, err) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn c_find_answers_the_calling_institution_only_capped_and_audited() {
    if !crate::dicom::dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::dicom::config(dir.path(), "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[access]\nsearch_cap = 2\n");
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let repo = crate::support::repo();
    // FX-GX's study: never answered to FX-ZX's PACS (FXPACS) by C-FIND.
    ingest(
        &cfg,
        &data,
        "FX-GX",
        &repo.join("fixtures/dicom/ct_gb18030.dcm"),
    );
    let (srv, port) = crate::dicom::start(&data, &cfg);
    let files: Vec<_> = [
        "ct_series_1.dcm",
        "ct_series_2.dcm",
        "ct_series_3.dcm",
        "sr_chinese.dcm",
    ]
    .iter()
    .map(|f| crate::dicom::fixture(f))
    .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (rc, out) = crate::dicom::storescu(&port, &refs, &[], true);
    assert_eq!(rc, 0, "{out}");

    let before = audit_count(&data);
    let (rc, answers, out) = crate::dicom_find::findscu(
        &port,
        "-S",
        &["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID"],
    );
    assert_eq!(rc, 0, "{out}");
    assert_eq!(answers.len(), 1, "FX-ZX's study only: {out}");
    assert!(
        answers[0].contains("FX0001") && !out.contains("FX0002"),
        "{out}"
    );
    assert_eq!(
        audit_count(&data),
        before + 1,
        "one audit record per C-FIND"
    );
    let rec = last_audit(&data);
    assert_eq!(rec["actor"], "ae:FXPACS");
    assert_eq!(rec["role"], "institution_system");
    assert_eq!(rec["action"], "cfind_study");
    assert_eq!(rec["detail"]["authorization"], "own_institution");

    // Over the cap: refused with A700 and a comment, nothing answered.
    let (_, series, out) = crate::dicom_find::findscu(
        &port,
        "-S",
        &["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"],
    );
    assert!(series.len() <= 2, "{out}");
    let (_, images, out) =
        crate::dicom_find::findscu(&port, "-S", &["QueryRetrieveLevel=IMAGE", "SOPInstanceUID"]);
    assert!(images.is_empty(), "{out}");
    assert!(out.contains("Refused: OutOfResources"), "{out}");
    let rec = last_audit(&data);
    assert_eq!(rec["action"], "cfind_image");
    assert_eq!(rec["detail"]["matches"], 0, "nothing answered over the cap");
    drop(srv);
}
