//! Mutual recognition end to end: results from two institutions queried by a clinician of a
//! third, verdicts with reasons and HR labels, the pre-order check, decisions and their
//! invariants, statistics, an A40 merge, and the security and audit rules.

use chrono::{Duration, Utc};

use crate::mllp::config_file;
use crate::support::{huren, msa, Mllp, Server};

const NID: &str = "310120199001011234";
const CLIN_SQ01: &str = "Bearer test-sq01-token";

/// An ORU^R01 with one observation collected `days_ago` days ago (local time).
#[allow(clippy::too_many_arguments)]
fn lab(
    facility: &str,
    ctl: &str,
    local: &str,
    nid: Option<&str>,
    filler: &str,
    code: &str,
    name: &str,
    value: &str,
    days_ago: i64,
) -> Vec<u8> {
    let t = (Utc::now() + Duration::hours(8) - Duration::days(days_ago))
        .format("%Y%m%d%H%M%S")
        .to_string();
    let pid3 = match nid {
        Some(n) => format!("{local}^^^{facility}^MR~{n}^^^NNCHN^NI"),
        None => format!("{local}^^^{facility}^MR"),
    };
    format!(
        "MSH|^~\\&|LIS|{facility}|HUREN|FX-YLT|{t}||ORU^R01^ORU_R01|{ctl}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
PID|1||{pid3}||张^伟||19900101|M\r\
OBR|1|ORD{filler}|{filler}|{code}^{name}^L|||{t}|||||||||||||||{t}||CH|F\r\
OBX|1|NM|{code}^{name}^L||{value}|mmol/L|||N|||F|||{t}\r"
    )
    .into_bytes()
}

fn send(c: &mut Mllp, msg: &[u8]) {
    let ack = c.send(msg).expect("ack");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
}

fn find<'a>(
    results: &'a [serde_json::Value],
    inst: &str,
    item: &str,
    days_ago_min: Option<i64>,
) -> &'a serde_json::Value {
    results
        .iter()
        .filter(|r| r["institution"] == inst && r["item"]["regional_code"] == item)
        .find(|r| {
            days_ago_min.is_none_or(|d| {
                let t = chrono::DateTime::parse_from_rfc3339(r["time"].as_str().unwrap()).unwrap();
                Utc::now().signed_duration_since(t) >= Duration::days(d)
            })
        })
        .unwrap_or_else(|| panic!("no {inst} {item} in {results:#?}"))
}

fn codes(r: &serde_json::Value) -> Vec<String> {
    r["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn verdicts_check_decisions_stats_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let auth_code = srv.authorization(&format!("nid:{NID}"));
    let auth = ("X-Patient-Authorization", auth_code.as_str());
    let mut c = Mllp::connect(&srv.mllp);
    let nid = Some(NID);
    send(
        &mut c,
        &lab("FX-ZX", "R-1", "0012345", nid, "ZX1", "K", "钾", "4.10", 2),
    );
    send(
        &mut c,
        &lab("FX-ZX", "R-2", "0012345", nid, "ZX2", "K", "钾", "4.30", 9),
    );
    send(
        &mut c,
        &lab(
            "FX-ZY",
            "R-3",
            "ZY-5566",
            nid,
            "ZY1",
            "HBA1C",
            "糖化血红蛋白",
            "6.8",
            10,
        ),
    );
    send(
        &mut c,
        &lab(
            "FX-ZY",
            "R-4",
            "ZY-5566",
            nid,
            "ZY2",
            "TC",
            "总胆固醇",
            "5.2",
            3,
        ),
    );
    // A result under an older local ID without national ID: not linked yet.
    send(
        &mut c,
        &lab(
            "FX-ZX",
            "R-5",
            "0099887",
            None,
            "ZX3",
            "GLU",
            "葡萄糖",
            "5.10",
            1,
        ),
    );

    // A clinician of a third institution (a community centre) asks.
    let path = format!("/api/v1/patients/nid:{NID}/results");
    let (st, body) = srv.get_with(&path, &[("Authorization", CLIN_SQ01), auth]);
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["identity_link"], "exact_national_id");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{body:#}");
    let k_new = find(results, "FX-ZX", "FX-LAB-K", None);
    assert_eq!(k_new["verdict"]["level"], "recognizable", "{k_new:#}");
    assert_eq!(k_new["verdict"]["label"], "可互认");
    assert_eq!(k_new["verdict"]["hr_label"], "全国HR");
    assert!(codes(k_new).contains(&"CONSORTIUM_INTERNAL".to_string()));
    assert_eq!(k_new["content"]["observations"][0]["value"], "4.10");
    let k_old = find(results, "FX-ZX", "FX-LAB-K", Some(8));
    assert_eq!(k_old["verdict"]["level"], "reference_only");
    let kc = codes(k_old);
    assert!(
        kc.contains(&"EXPIRED".into()) && kc.contains(&"DUPLICATE_OLDER".into()),
        "{kc:?}"
    );
    let a1c = find(results, "FX-ZY", "FX-LAB-HBA1C", None);
    assert_eq!(a1c["verdict"]["level"], "recognizable");
    assert_eq!(a1c["verdict"]["hr_label"], "沪HR");
    let tc = find(results, "FX-ZY", "FX-LAB-TC", None);
    assert_eq!(codes(tc), vec!["SRC_QC_MISSING", "CONSORTIUM_INTERNAL"]);
    // Newest first.
    let times: Vec<&str> = results
        .iter()
        .map(|r| r["time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    // Per-source status: every configured institution, none silently missing.
    let sources = body["sources"].as_array().unwrap();
    assert!(sources
        .iter()
        .any(|s| s["institution"] == "FX-GX" && s["status"] == "no_results"));

    // Pre-order check.
    let hdr = [("Authorization", CLIN_SQ01), auth];
    let (st, chk) = srv.post(
        "/api/v1/recognition/check",
        &hdr,
        &serde_json::json!({"patient": format!("nid:{NID}"), "item_code": "FX-LAB-K"}),
    );
    assert_eq!(st, 200, "{chk}");
    assert_eq!(chk["recognizable"], true);
    assert_eq!(chk["best"]["report"], k_new["report"]);
    let (_, chk) = srv.post(
        "/api/v1/recognition/check",
        &hdr,
        &serde_json::json!({"patient": format!("nid:{NID}"), "item_code": "FX-LAB-TC"}),
    );
    assert_eq!(chk["recognizable"], false);
    assert!(chk["why_not"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["code"] == "SRC_QC_MISSING"));
    let (_, chk) = srv.post(
        "/api/v1/recognition/check",
        &hdr,
        &serde_json::json!({"patient": format!("nid:{NID}"), "item_code": "FX-LAB-CA"}),
    );
    assert_eq!(chk["why_not"][0]["code"], "NO_PRIOR_RESULT");

    // Decisions: invariants answer 422; valid ones are recorded.
    let decide = |report: &serde_json::Value, item: &str, extra: serde_json::Value| {
        let mut b =
            serde_json::json!({"patient": format!("nid:{NID}"), "report": report, "item": item});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        srv.post("/api/v1/recognition/decisions", &hdr, &b)
    };
    let (st, p) = decide(
        &k_new["report"],
        "FX-LAB-K",
        serde_json::json!({"action": "reject", "patient_informed": true}),
    );
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("EXCEPTION_CODE_REQUIRED")),
        "{p}"
    );
    let (st, p) = decide(
        &k_new["report"],
        "FX-LAB-K",
        serde_json::json!({"action": "accept"}),
    );
    assert_eq!(st, 201, "{p}");
    let (st, p) = decide(
        &a1c["report"],
        "FX-LAB-HBA1C",
        serde_json::json!({"action": "reject", "exception_codes": ["E1"], "patient_informed": true}),
    );
    assert_eq!(st, 201, "{p}");
    let (st, p) = decide(
        &tc["report"],
        "FX-LAB-TC",
        serde_json::json!({"action": "accept"}),
    );
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("NOT_RECOGNIZABLE")),
        "{p}"
    );

    // Statistics for the health commission; refused to a clinician.
    let (st, s) = srv.get_with(
        "/api/v1/stats/recognition?group_by=item",
        &[("Authorization", "Bearer test-commission-token")],
    );
    assert_eq!(st, 200, "{s}");
    assert_eq!(s["total"]["accept"], 1);
    assert_eq!(s["total"]["reject"], 1);
    assert_eq!(s["total"]["reject_reasons"]["E1"], 1);
    assert_eq!(s["total"]["estimated_savings_cny"], 8.0);
    assert!(s["total"]["advice"]["recognizable"].as_u64().unwrap() >= 2);
    let (st, _) = srv.get_with("/api/v1/stats/recognition", &[("Authorization", CLIN_SQ01)]);
    assert_eq!(st, 403);

    // Issue 16, finding 12: one current decision per result, clinician and encounter. 50
    // identical accepts count one accept and one item's price; a later reject replaces it.
    let stats_k = || {
        let (st, s) = srv.get_with(
            "/api/v1/stats/recognition?group_by=item",
            &[("Authorization", "Bearer test-commission-token")],
        );
        assert_eq!(st, 200, "{s}");
        let k = s["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == "FX-LAB-K")
            .cloned()
            .unwrap_or_else(|| panic!("no FX-LAB-K group in {s:#}"));
        (s, k)
    };
    for _ in 0..49 {
        let (st, p) = decide(
            &k_new["report"],
            "FX-LAB-K",
            serde_json::json!({"action": "accept"}),
        );
        assert_eq!(st, 201, "{p}");
    }
    let (s, k) = stats_k();
    assert_eq!((&k["accept"], &k["reject"]), (&1.into(), &0.into()), "{k}");
    assert_eq!(k["estimated_savings_cny"], 8.0, "{k}");
    assert_eq!(s["total"]["accept"], 1, "{s}");
    assert_eq!(s["total"]["estimated_savings_cny"], 8.0, "{s}");
    let (st, p) = decide(
        &k_new["report"],
        "FX-LAB-K",
        serde_json::json!({"action": "reject", "exception_codes": ["E2"], "patient_informed": true}),
    );
    assert_eq!(st, 201, "{p}");
    let (s, k) = stats_k();
    assert_eq!((&k["accept"], &k["reject"]), (&0.into(), &1.into()), "{k}");
    assert_eq!(k["estimated_savings_cny"], 0.0, "{k}");
    assert_eq!(s["total"]["accept"], 0, "{s}");
    assert_eq!(s["total"]["reject"], 2, "{s}");
    assert_eq!(s["total"]["reject_reasons"]["E2"], 1, "{s}");

    // Finding 10: a refused decision's free text is bounded in the audit log, and the body
    // of a decision is bounded.
    let log = dir.path().join("data").join("audit.log");
    let before = std::fs::metadata(&log).unwrap().len();
    let long = "长".repeat(20_000);
    let (st, p) = decide(
        &a1c["report"],
        "FX-LAB-HBA1C",
        serde_json::json!({"action": "reject", "exception_codes": ["E6"],
            "other_text": long, "patient_informed": true}),
    );
    assert_eq!(
        (st, p["code"].as_str()),
        (422, Some("OTHER_TEXT_TOO_LONG")),
        "{p}"
    );
    let grown = std::fs::metadata(&log).unwrap().len() - before;
    assert!(
        grown < 8_000,
        "a refused decision wrote {grown} bytes of audit"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"], "invalid: OTHER_TEXT_TOO_LONG");
    assert_eq!(last["detail"]["other_text_chars"], 20_000, "{last}");
    assert!(last["detail"]["other_text_blake3"]
        .as_str()
        .is_some_and(|h| h.starts_with("blake3:")));
    // Over the body limit: 413 before the body is read — or, when the server closed the
    // connection while the client was still sending, the client's broken pipe.
    let big = serde_json::json!({"patient": format!("nid:{NID}"), "report": a1c["report"],
        "item": "FX-LAB-HBA1C", "action": "reject", "exception_codes": ["E6"],
        "other_text": "x".repeat(100_000), "patient_informed": true});
    match srv.try_post("/api/v1/recognition/decisions", &hdr, &big) {
        Ok((st, _)) => assert_eq!(st, 413),
        Err(e) => assert!(
            e.contains("Broken pipe") || e.contains("reset"),
            "neither 413 nor a refused body: {e}"
        ),
    }

    // A40: the old local ID is merged into the one carrying the national ID → union.
    let a40 = "MSH|^~\\&|HIS|FX-ZX|HUREN|FX-YLT|20250625093000||ADT^A40^ADT_A39|A40-1|P|2.5.1|||||CHN|UNICODE UTF-8\r\
EVN|A40|20250625093000\rPID|1||0012345^^^FX-ZX^MR~310120199001011234^^^NNCHN^NI||张^伟||19900101|M\rMRG|0099887^^^FX-ZX^MR\r";
    send(&mut c, a40.as_bytes());
    let (_, body) = srv.get_with(&path, &[("Authorization", CLIN_SQ01), auth]);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{body:#}");
    find(results, "FX-ZX", "FX-LAB-GLU", None);

    // The privacy officer sees who looked; a clinician may not.
    let (st, a) = srv.get_with(
        &format!("/api/v1/audit?patient=nid:{NID}"),
        &[("Authorization", "Bearer test-privacy-token")],
    );
    assert_eq!(st, 200, "{a}");
    let actions: Vec<&str> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "read_results").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        // Every act is kept: the 4 above, 49 repeated accepts, the replacing reject and the
        // refused over-long text (the 413 was refused before the gate).
        actions.iter().filter(|a| **a == "decision").count(),
        55,
        "{actions:?}"
    );
    // First the consent the registrar recorded, then the reads.
    assert_eq!(a["entries"][0]["action"], "record_consent");
    assert_eq!(a["entries"][0]["role"], "registrar");
    assert_eq!(a["entries"][1]["actor"], "dr.sq01");
    let (st, _) = srv.get_with(
        &format!("/api/v1/audit?patient=nid:{NID}"),
        &[("Authorization", CLIN_SQ01)],
    );
    assert_eq!(st, 403);
}

#[test]
fn refusals_are_audited_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let data = dir.path().join("data");
    {
        let srv = Server::start(&data, &["--config", &cfg]);
        let auth_code = srv.authorization(&format!("nid:{NID}"));
        let auth = ("X-Patient-Authorization", auth_code.as_str());
        let mut c = Mllp::connect(&srv.mllp);
        send(
            &mut c,
            &lab(
                "FX-ZX",
                "S-1",
                "0012345",
                Some(NID),
                "ZX1",
                "K",
                "钾",
                "4.10",
                1,
            ),
        );
        let path = format!("/api/v1/patients/nid:{NID}/results");
        let (st, p) = srv.get_with(&path, &[auth]);
        assert_eq!(st, 401, "{p}");
        assert_eq!(p["title"], "unauthenticated");
        let (st, _) = srv.get_with(&path, &[("Authorization", "Bearer wrong"), auth]);
        assert_eq!(st, 401);
        let (st, _) = srv.get_with("/api/v1/reports/blake3:00", &[]);
        assert_eq!(st, 401);
        // No patient authorisation.
        let (st, p) = srv.get_with(&path, &[("Authorization", CLIN_SQ01)]);
        assert_eq!(
            (st, p["code"].as_str()),
            (403, Some("NO_PATIENT_AUTHORIZATION"))
        );
        // Break-glass only in an emergency.
        let bg = ("X-Break-Glass", "%E8%83%B8%E7%97%9B%E6%98%8F%E8%BF%B7"); // 胸痛昏迷
        let (st, _) = srv.get_with(&path, &[("Authorization", CLIN_SQ01), bg]);
        assert_eq!(st, 403);
        let (st, b) = srv.get_with(
            &format!("{path}?encounter=emergency"),
            &[("Authorization", CLIN_SQ01), bg],
        );
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["break_glass"], true);
        assert_eq!(b["results"][0]["verdict"]["level"], "recognizable");
    }
    let (code, lines, err) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let audit = &lines[0]["audit"];
    assert!(audit["entries"].as_u64().unwrap() >= 5, "{audit}");
    let log = std::fs::read_to_string(data.join("audit.log")).unwrap();
    // Failed authentication is audited per peer and window (issue 16, finding 11): the first
    // of the three 401s writes its record; the other two are counted into the record written
    // when the window ends (after this test's server is gone).
    assert_eq!(
        log.matches("\"outcome\":\"denied: no bearer token\"")
            .count(),
        1
    );
    assert_eq!(
        log.matches("\"outcome\":\"denied: invalid token\"").count(),
        0
    );
    assert_eq!(log.matches("denied: the patient").count(), 1);
    assert!(log.contains("\"break_glass\":true"));
    assert!(log.contains("胸痛昏迷"));
    assert!(
        !log.contains(NID),
        "the raw national ID must never reach the audit log"
    );
    assert!(
        !log.contains("998877"),
        "patient authorisation tokens are stored hashed"
    );
    // Edit one byte of the third record.
    let third = log.lines().nth(2).unwrap();
    let edited = log.replacen(third, &third.replacen("denied", "Denied", 1), 1);
    assert_ne!(edited, log);
    std::fs::write(data.join("audit.log"), edited).unwrap();
    let (code, lines, err) = huren(&["verify", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["audit"]["broken"]["line"], 3, "{}", lines[0]);
    assert!(err.contains("chain broken at line 3"), "{err}");
}

/// An ADT^A08 from `facility` carrying its local ID of the patient and the national ID: the
/// identity link that lets DICOM and ECG results (which carry only local IDs) join.
fn a08(facility: &str, local: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|HIS|{facility}|HUREN|FX-YLT|20260101090000||ADT^A08^ADT_A01|A08-{facility}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
EVN|A08|20260101090000\r\
PID|1||{local}^^^{facility}^MR~{NID}^^^NNCHN^NI||张^伟||19900101|M\r\
PV1|1|O\r"
    )
    .into_bytes()
}

/// Lab from FX-ZX, a chest CT with its SR from the imaging centre (DICOM files through
/// `huren ingest`) and a 12-lead ECG from the ECG centre (HL7 aECG), queried by a clinician of
/// a community centre: one answer, each with its verdict and reasons.
#[test]
fn lab_imaging_and_ecg_from_three_institutions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let repo = crate::support::repo();
    let files = dir.path().join("in");
    std::fs::create_dir_all(&files).unwrap();
    let w = |name: &str, bytes: Vec<u8>| {
        let p = files.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let k = w(
        "k.hl7",
        lab("FX-ZX", "E2E-K", "P1", Some(NID), "F1", "K", "钾", "4.1", 2),
    );
    let gx = w("a08-gx.hl7", a08("FX-GX", "FX0001"));
    let zy = w("a08-zy.hl7", a08("FX-ZY", "0012345"));
    let (rc, lines, err) = huren(&["ingest", "--config", &cfg, "--data", d, &k, &gx, &zy]);
    assert_eq!(rc, 0, "{lines:?} {err}");
    let dcm = |f: &str| {
        repo.join("fixtures/dicom")
            .join(f)
            .to_str()
            .unwrap()
            .to_string()
    };
    let (ct1, ct2, ct3, sr) = (
        dcm("ct_series_1.dcm"),
        dcm("ct_series_2.dcm"),
        dcm("ct_series_3.dcm"),
        dcm("sr_chinese.dcm"),
    );
    let (rc, lines, err) = huren(&[
        "ingest",
        "--config",
        &cfg,
        "--data",
        d,
        "--institution",
        "FX-GX",
        &ct1,
        &ct2,
        &ct3,
        &sr,
    ]);
    assert_eq!(rc, 0, "{lines:?} {err}");
    let ecg = repo.join("fixtures/ecg/aecg-zh-patient.xml");
    let (rc, lines, err) = huren(&[
        "ingest",
        "--config",
        &cfg,
        "--data",
        d,
        "--institution",
        "FX-ZY",
        ecg.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{lines:?} {err}");

    let srv = Server::start(&data, &["--config", &cfg]);
    let auth_code = srv.authorization(&format!("nid:{NID}"));
    let auth = ("X-Patient-Authorization", auth_code.as_str());
    let (st, body) = srv.get_with(
        &format!("/api/v1/patients/nid:{NID}/results"),
        &[("Authorization", CLIN_SQ01), auth],
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["identity_link"], "exact_national_id");
    let results = body["results"].as_array().unwrap();

    let k = find(results, "FX-ZX", "FX-LAB-K", None);
    assert_eq!(k["verdict"]["level"], "recognizable", "{k:#}");
    assert_eq!(k["verdict"]["hr_label"], "全国HR");
    assert_eq!(k["content"]["observations"][0]["value"], "4.1");

    let ct = find(results, "FX-GX", "FX-RAD-CT-CHEST", None);
    assert_eq!(ct["kind"], "imaging");
    assert_eq!(ct["item"]["local_code"], "CT-CHEST");
    assert_eq!(ct["item"]["name"], "胸部CT平扫");
    assert_eq!(
        ct["status"], "final",
        "the verified SR makes the study report final"
    );
    assert_eq!(ct["verdict"]["level"], "reference_only");
    let c = codes(ct);
    assert!(c.contains(&"VALIDITY_UNCONFIGURED".to_string()), "{c:?}");
    assert!(!c.contains(&"IMAGES_UNAVAILABLE".to_string()), "{c:?}");
    assert!(c.contains(&"CONSORTIUM_INTERNAL".to_string()), "{c:?}");

    let e = find(results, "FX-ZY", "FX-ECG-12", None);
    assert_eq!(e["kind"], "ecg");
    assert_eq!(e["verdict"]["level"], "reference_only");
    let c = codes(e);
    assert!(c.contains(&"VALIDITY_UNCONFIGURED".to_string()), "{c:?}");

    // Three institutions answered; the other members are listed without results.
    let sources = body["sources"].as_array().unwrap();
    let ok: Vec<&str> = sources
        .iter()
        .filter(|s| s["status"] == "ok")
        .map(|s| s["institution"].as_str().unwrap())
        .collect();
    assert_eq!(ok, ["FX-GX", "FX-ZX", "FX-ZY"], "{sources:#?}");
}

/// The results and check answers are kept between requests (same `evaluated_at`) until a
/// commit changes the patient; every serving is audited (the returned set in full once, then
/// by its hash, read back in full by the audit view); gzip is served to clients that accept it.
#[test]
fn answers_are_kept_until_the_patient_changes_and_every_serving_is_audited() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(dir.path());
    let srv = Server::start(&dir.path().join("data"), &["--config", &cfg]);
    let auth_code = srv.authorization(&format!("nid:{NID}"));
    let auth = ("X-Patient-Authorization", auth_code.as_str());
    let mut c = Mllp::connect(&srv.mllp);
    let nid = Some(NID);
    send(
        &mut c,
        &lab("FX-ZX", "C-1", "0012345", nid, "ZX1", "K", "钾", "4.10", 2),
    );
    send(
        &mut c,
        &lab(
            "FX-ZY",
            "C-2",
            "ZY-1",
            nid,
            "ZY1",
            "TC",
            "总胆固醇",
            "5.2",
            3,
        ),
    );
    let path = format!("/api/v1/patients/nid:{NID}/results");
    let hdr = [("Authorization", CLIN_SQ01), auth];
    let (st, a) = srv.get_with(&path, &hdr);
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["count"], 2);
    // The K result is recognisable for 7 days: the answer holds at most that long.
    let valid_until = a["valid_until"].as_str().expect("valid_until");
    let k = find(a["results"].as_array().unwrap(), "FX-ZX", "FX-LAB-K", None);
    assert!(
        valid_until <= k["verdict"]["expires_at"].as_str().unwrap(),
        "{valid_until}"
    );
    let (_, b) = srv.get_with(&path, &hdr);
    assert_eq!(b, a, "the second answer is the kept one");

    // gzip, byte for byte the same JSON.
    let url = format!("http://{}{}", srv.http, path);
    let r = ureq::get(&url)
        .set("Authorization", CLIN_SQ01)
        .set(auth.0, auth.1)
        .set("Accept-Encoding", "br, gzip")
        .call()
        .unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let mut gz = Vec::new();
    r.into_reader().read_to_end(&mut gz).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut json)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        a
    );

    // Another requester institution gets its own evaluation.
    let (_, other) = srv.get_with(
        &path,
        &[("Authorization", "Bearer test-clinician-token"), auth],
    );
    assert_ne!(other["evaluated_at"], a["evaluated_at"]);

    // A new result of the patient: the next answer is evaluated again and has it.
    send(
        &mut c,
        &lab(
            "FX-ZX",
            "C-3",
            "0012345",
            nid,
            "ZX2",
            "GLU",
            "葡萄糖",
            "5.1",
            1,
        ),
    );
    let (_, d) = srv.get_with(&path, &hdr);
    assert_eq!(d["count"], 3, "{d:#}");
    assert_ne!(d["evaluated_at"], a["evaluated_at"]);
    // Another patient's result leaves the kept answer alone.
    send(
        &mut c,
        &lab(
            "FX-ZX",
            "C-4",
            "OTHER-1",
            Some("310120199202022222"),
            "ZX9",
            "K",
            "钾",
            "4.0",
            1,
        ),
    );
    let (_, e) = srv.get_with(&path, &hdr);
    assert_eq!(e["evaluated_at"], d["evaluated_at"]);

    // The check is kept the same way.
    let body = serde_json::json!({"patient": format!("nid:{NID}"), "item_code": "FX-LAB-K"});
    let (_, c1) = srv.post("/api/v1/recognition/check", &hdr, &body);
    let (_, c2) = srv.post("/api/v1/recognition/check", &hdr, &body);
    assert_eq!(c1["recognizable"], true, "{c1}");
    assert_eq!(c1, c2);

    // Every serving is one audit record; each reads back with the reports it returned, but
    // only the first of an answer spells them out on disk.
    let (st, log) = srv.get_with(
        &format!("/api/v1/audit?patient=nid:{NID}"),
        &[("Authorization", "Bearer test-privacy-token")],
    );
    assert_eq!(st, 200, "{log}");
    let reads: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "read_results")
        .collect();
    assert_eq!(reads.len(), 6, "{log:#}");
    let mine: Vec<&&serde_json::Value> = reads.iter().filter(|e| e["actor"] == "dr.sq01").collect();
    assert_eq!(mine.len(), 5);
    for e in &mine {
        assert!(
            e["returned"].as_array().is_some_and(|x| x.len() >= 2),
            "every record reads back with its reports: {e}"
        );
    }
    let text = std::fs::read_to_string(dir.path().join("data/audit.log")).unwrap();
    let on_disk: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"read_results\"") && l.contains("\"dr.sq01\""))
        .collect();
    assert_eq!(on_disk.len(), 5);
    assert!(on_disk.iter().all(|l| l.contains("\"returned_set\"")));
    let listed = on_disk
        .iter()
        .filter(|l| l.contains("\"returned\""))
        .count();
    assert_eq!(
        listed, 2,
        "listed once per answer: before and after the new result"
    );
}
