//! Issue 18, the STEMI channel (first slices): a community ECG the cart flags as STEMI and a
//! critical potassium raise durable alerts to the PCI hospital's group; the on-duty doctor
//! sees the alert on the event stream within a second and answers it with a decision; the
//! sending centre sees the decision; unanswered, the alert escalates to the backup and the
//! head, each step stamped, and a kill -9 does not stop the ladder. Every view and act goes
//! through the gate and is audited.

use std::time::{Duration, Instant};

use crate::support::{repo, Server};
use crate::worklist::{audit_lines, call, EventStream};

const SQ01: &str = "test-sq01-token";
pub(crate) const CARDIO: &str = crate::support::TEST_TOKEN; // dr.zx, on duty for fx-pci all day
const BACKUP: &str = "test-backup-token";
const HEAD: &str = "test-head-token";

/// The test configuration with the chest-pain group of FX-ZX (escalating every
/// `escalate` seconds), its backup and head, and FX-SQ01's STEMI and critical values routed
/// to it; K ≥ 6.5 mmol/L is critical.
pub(crate) fn config(dir: &std::path::Path, escalate: u32) -> String {
    let cfg = crate::mllp::config_file(dir);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        r#"
[[clinician]]
id = "dr.backup"
institution = "FX-ZX"
role = "clinician"
token_sha256 = "88a091b37d6435cec155a06d8e83fcc4a3a84db4a919b11259d5082caefcb346"

[[clinician]]
id = "dr.head"
institution = "FX-ZX"
role = "clinician"
token_sha256 = "f72476a7ecf208696ef92a2e14221fb18451e676df53ae8d83fa01f4e3bc321d"

[[alert_group]]
id = "fx-pci"
name = "区中心医院胸痛中心"
institution = "FX-ZX"
phone = "021-5742-0000"
escalate_after_secs = {escalate}
backup = ["dr.backup"]
heads = ["dr.head"]

[[alert_duty]]
reader = "dr.zx"
group = "fx-pci"

[[alert_route]]
institution = "FX-SQ01"
kind = "stemi"
group = "fx-pci"

[[alert_route]]
institution = "FX-SQ01"
kind = "lab_critical"
group = "fx-pci"

[[critical_threshold]]
code = "K"
name = "钾"
high = 6.5
unit = "mmol/L"
"#
    ));
    std::fs::write(&cfg, text).unwrap();
    cfg
}

pub(crate) fn upload_stemi(srv: &Server) -> serde_json::Value {
    // The project's aECG fixture: the cart says 急性下壁心肌梗死 (the stemi rule).
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    let r = crate::worklist::post_ecg(&srv.http, SQ01, &ecg);
    serde_json::from_str(&r.into_string().unwrap()).unwrap()
}

pub(crate) fn alerts(srv: &Server, token: &str, state: &str) -> Vec<serde_json::Value> {
    let (st, v) = call(
        &srv.http,
        "GET",
        &format!("/api/v1/alerts?state={state}"),
        token,
        None,
    );
    assert_eq!(st, 200, "{v}");
    v["alerts"].as_array().unwrap().clone()
}

/// Waits (bounded) until `f` holds.
pub(crate) fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_stemi_ecg_alerts_the_duty_cardiologist_who_answers_and_the_sender_sees_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let mut stream = EventStream::open(&srv.http, CARDIO, None);
    assert_eq!(stream.next(Duration::from_secs(5)).unwrap().0, "ready");

    let sent = Instant::now();
    let up = upload_stemi(&srv);
    assert_eq!(up["critical"]["rule"], "stemi", "{up}");
    // On the duty cardiologist's stream within a second; no patient data in it.
    let got = loop {
        let (ev, _, data) = stream
            .next(Duration::from_secs(1))
            .expect("alert event within 1 s");
        if ev == "alert" {
            break serde_json::from_str::<serde_json::Value>(&data).unwrap();
        }
    };
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(got["kind"], "stemi");
    assert_eq!(got["state"], "open");
    assert_eq!(got["institution"], "FX-SQ01");
    assert!(
        got.get("patient").is_none() && got.get("summary").is_none(),
        "{got}"
    );
    let id = got["id"].as_str().unwrap().to_string();

    // The list: the patient, the sending centre, the group's phone, may answer; the stream
    // stamped the delivery to this screen once the event was out.
    until("the delivery stamp", Duration::from_secs(5), || {
        alerts(&srv, CARDIO, "open")[0]["delivered"][0][0] == "dr.zx"
    });
    let before = audit_lines(&data).len();
    let mine = alerts(&srv, CARDIO, "open");
    assert_eq!(mine.len(), 1, "{mine:?}");
    let a = &mine[0];
    assert_eq!(a["id"], id.as_str());
    assert_eq!(a["summary"], "急性下壁心肌梗死");
    assert_eq!(a["group_phone"], "021-5742-0000");
    // The sending institution and its phone, to call back.
    assert_eq!(a["institution_name"], "奉贤区南桥镇社区卫生服务中心");
    assert_eq!(a["institution_phone"], "021-5712-0001");
    assert!(
        a["patient"].as_str().unwrap().starts_with("FX-SQ01:"),
        "{a}"
    );
    assert_eq!(a["may_acknowledge"], true);
    assert_eq!(a["delivered"][0][0], "dr.zx", "{a}");
    let recs = audit_lines(&data)[before..].to_vec();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["action"], "alerts");
    assert!(recs[0]["detail"]["patients"][0].is_string(), "{recs:?}");
    // The sender's clinicians see it waiting; the backup and the head not yet (step 0).
    let theirs = alerts(&srv, SQ01, "open");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["may_acknowledge"], false);
    assert!(alerts(&srv, BACKUP, "open").is_empty());
    assert!(alerts(&srv, HEAD, "all").is_empty());
    assert_eq!(
        call(
            &srv.http,
            "GET",
            "/api/v1/alerts",
            "test-privacy-token",
            None
        )
        .0,
        403
    );

    // Only a recipient answers, with a fitting decision and a note where one is needed.
    let ack = |token: &str, body: &str| {
        call(
            &srv.http,
            "POST",
            &format!("/api/v1/alerts/{id}/ack"),
            token,
            Some(body),
        )
    };
    assert_eq!(ack(SQ01, r#"{"decision":"stemi_transfer"}"#).0, 403);
    assert_eq!(ack(CARDIO, r#"{"decision":"not_stemi","note":""}"#).0, 400);
    assert_eq!(ack(CARDIO, r#"{"decision":"read_back","note":"x"}"#).0, 400);
    assert_eq!(ack(CARDIO, r#"{"decision":"maybe"}"#).0, 400);
    let before = audit_lines(&data).len();
    let (st, v) = ack(
        CARDIO,
        r#"{"decision":"stemi_transfer","note":"立即转运，导管室已启动"}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["alert"]["state"], "acknowledged");
    let recs = audit_lines(&data)[before..].to_vec();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["action"], "alert_ack");
    assert_eq!(recs[0]["detail"]["decision"], "stemi_transfer");
    assert!(recs[0]["patient"].is_string());
    assert_eq!(
        ack(CARDIO, r#"{"decision":"not_stemi","note":"x"}"#).0,
        409,
        "answered once"
    );
    // The sending centre sees the decision.
    let theirs = alerts(&srv, SQ01, "all");
    assert_eq!(theirs[0]["acknowledged"]["decision"], "stemi_transfer");
    assert_eq!(theirs[0]["acknowledged"]["by"], "dr.zx");
    assert!(alerts(&srv, SQ01, "open").is_empty());
    // The same ECG again raises no second alert.
    upload_stemi(&srv);
    assert_eq!(alerts(&srv, CARDIO, "all").len(), 1);
}

#[test]
fn an_unanswered_alert_escalates_to_the_backup_then_the_head_and_a_crash_does_not_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 2);
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    upload_stemi(&srv);
    // Step 1 after 2 s: the backup sees it and may answer; the head not yet.
    until("step 1", Duration::from_secs(10), || {
        !alerts(&srv, BACKUP, "open").is_empty()
    });
    let b = &alerts(&srv, BACKUP, "open")[0];
    assert_eq!(b["step"], 1, "{b}");
    assert_eq!(b["tiers"], serde_json::json!(["duty", "backup"]));
    assert_eq!(b["may_acknowledge"], true);
    let raised = chrono::DateTime::parse_from_rfc3339(b["raised_at"].as_str().unwrap()).unwrap();
    let step1 = chrono::DateTime::parse_from_rfc3339(b["step_at"].as_str().unwrap()).unwrap();
    let gap = (step1 - raised).num_milliseconds();
    assert!(
        (2000..4000).contains(&gap),
        "stamped 2 s after raising: {gap} ms"
    );

    // kill -9, down for 5 s: after the restart the alert is still open and the ladder goes
    // on from its stored step (one step at once, then every 2 s), to the head.
    srv.kill9();
    std::thread::sleep(Duration::from_secs(5));
    let srv = Server::start(&data, &["--config", &cfg]);
    until("the head", Duration::from_secs(10), || {
        !alerts(&srv, HEAD, "open").is_empty()
    });
    let h = &alerts(&srv, HEAD, "open")[0];
    assert_eq!(h["state"], "open");
    assert!(h["step"].as_u64().unwrap() >= 2, "{h}");
    assert_eq!(h["tiers"], serde_json::json!(["duty", "backup", "head"]));
    // The head cancels it with a reason (wrong patient); the sender sees why.
    let id = h["id"].as_str().unwrap();
    let cancel = |body: &str| {
        call(
            &srv.http,
            "POST",
            &format!("/api/v1/alerts/{id}/cancel"),
            HEAD,
            Some(body),
        )
    };
    assert_eq!(cancel(r#"{"reason":" "}"#).0, 400);
    assert_eq!(cancel(r#"{"reason":"患者信息录入错误"}"#).0, 200);
    let theirs = alerts(&srv, SQ01, "all");
    assert_eq!(theirs[0]["cancelled"]["reason"], "患者信息录入错误");
    let n = alerts(&srv, HEAD, "all")[0]["step"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        alerts(&srv, HEAD, "all")[0]["step"],
        n,
        "a closed alert does not escalate"
    );
}

#[test]
fn a_critical_potassium_alerts_and_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let mut c = crate::support::Mllp::connect(&srv.mllp);
    crate::identity::send(
        &mut c,
        &crate::identity::oru("FX-SQ01", "K1", "SQ-77", crate::identity::NID, "F1", "4.2"),
    );
    assert!(
        alerts(&srv, CARDIO, "all").is_empty(),
        "a normal value raises nothing"
    );
    crate::identity::send(
        &mut c,
        &crate::identity::oru("FX-SQ01", "K2", "SQ-77", crate::identity::NID, "F2", "6.8"),
    );
    let a = alerts(&srv, CARDIO, "open");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["kind"], "lab_critical");
    assert_eq!(a[0]["summary"], "钾 6.8 mmol/L");
    let id = a[0]["id"].as_str().unwrap();
    let ack = |body: &str| {
        call(
            &srv.http,
            "POST",
            &format!("/api/v1/alerts/{id}/ack"),
            CARDIO,
            Some(body),
        )
    };
    assert_eq!(ack(r#"{"decision":"stemi_transfer"}"#).0, 400);
    assert_eq!(ack(r#"{"decision":"read_back","note":""}"#).0, 400);
    let (st, v) = ack(r#"{"decision":"read_back","note":"钾 6.8 mmol/L，已复述"}"#);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["alert"]["acknowledged"]["note"], "钾 6.8 mmol/L，已复述");
}

#[test]
fn the_demo_has_a_reading_centre_and_a_chest_pain_group_with_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let srv = Server::start_env(
        &data,
        &["--demo", "--dicom", "127.0.0.1:0"],
        &[("HUREN_DEMO_ESCALATE_S", Some("1"))],
    );
    let token = |k: &str| {
        srv.lines
            .iter()
            .find_map(|l| l[k].as_str())
            .unwrap_or_else(|| panic!("demo prints {k}"))
            .to_string()
    };
    // The community ECG and the imaging centre's CT wait on the reader's worklist.
    let reader = token("reader_token");
    let (st, wl) = call(&srv.http, "GET", "/api/v1/worklist", &reader, None);
    assert_eq!(st, 200, "{wl}");
    assert_eq!(wl["open"], 2, "{wl}");
    // A newcomer's study sent with storescu to the demo's DICOM port arrives there too.
    if crate::dicom::dcmtk() {
        let port = srv
            .lines
            .iter()
            .find(|l| l["listening"] == "dicom")
            .and_then(|l| l["addr"].as_str())
            .and_then(|a| a.rsplit(':').next())
            .expect("the demo's DICOM listener")
            .to_string();
        let ct = repo().join("fixtures/dicom/ct_series_2.dcm");
        let (rc, out) = crate::dicom::storescu(&port, &[&ct], &[], true);
        assert_eq!(rc, 0, "{out}");
        let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", &reader, None);
        assert_eq!(wl["open"], 3, "{wl}");
        assert!(wl["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["institution"] == "FXPACS" && t["centre"] == "fx-img"));
    }
    // It is a STEMI: the on-duty cardiologist has the alert; unanswered, the backup gets it.
    let cardio = alerts(&srv, &token("cardiologist_token"), "open");
    assert_eq!(cardio.len(), 1, "{cardio:?}");
    assert_eq!(cardio[0]["institution"], "FX-SQ01");
    let backup = token("backup_token");
    until("the backup", Duration::from_secs(10), || {
        !alerts(&srv, &backup, "open").is_empty()
    });
    until("the head", Duration::from_secs(10), || {
        !alerts(&srv, &token("head_token"), "open").is_empty()
    });
    // The community doctor sees it too.
    assert_eq!(alerts(&srv, &token("community_token"), "open").len(), 1);
}

#[test]
fn st_elevation_mimics_raise_no_alert() {
    // Third-party ECGs whose ST elevation is not a STEMI: Philips "ANTERIOR ST ELEVATION,
    // PROBABLY DUE TO LVH" and a Chinese MUSE "ST段抬高（提示心室早期复极）" (early
    // repolarisation). Beside them the project's STEMI fixture, which does raise one.
    let Some(tp) = crate::support::third_party() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    for f in [
        "ecg/philips/v1.04-pagewriter-touch-3191723-utf16le.xml",
        "ecg/muse/guangxi-teaching-sinus-rhythm-zh.xml",
    ] {
        let bytes = std::fs::read(tp.join(f)).unwrap();
        let r = crate::worklist::post_ecg(&srv.http, SQ01, &bytes);
        assert!(r.status() < 300, "{f}");
    }
    assert!(
        alerts(&srv, CARDIO, "all").is_empty(),
        "a mimic raised an alert"
    );
    upload_stemi(&srv);
    assert_eq!(alerts(&srv, CARDIO, "all").len(), 1);
}

#[test]
fn the_alert_reaches_the_cardiologists_page_within_a_second_and_the_decision_the_senders() {
    if !crate::web::browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let out = std::process::Command::new("node")
        .arg(repo().join("tests/web/alerts.mjs"))
        .current_dir(repo().join("tests/web"))
        .env("HUREN_URL", format!("http://{}", srv.http))
        .env("CARDIO_TOKEN", CARDIO)
        .env("COMMUNITY_TOKEN", SQ01)
        .env("ECG_FILE", repo().join("fixtures/ecg/aecg-zh-patient.xml"))
        .env("SHOTS", repo().join("target/web-shots"))
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser test failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary:\n{stdout}\n{stderr}"));
    eprintln!("alert summary: {summary}");
    assert!(summary["appeared_ms"].as_u64().unwrap() <= 1000);
    // The acknowledgement and the trace were audited, naming the patient.
    let audit = audit_lines(&data);
    let ack = audit
        .iter()
        .find(|r| r["action"] == "alert_ack")
        .expect("audited");
    assert_eq!(ack["detail"]["decision"], "stemi_transfer");
    assert!(ack["patient"].is_string());
    assert!(audit
        .iter()
        .any(|r| r["action"] == "read_ecg_trace" && r["detail"]["basis"] == "alert"));
}

#[test]
fn acknowledging_a_critical_value_closes_it_for_the_recognition_verdicts() {
    critical_value_closes(true);
}

/// The same with no OBX-8 flag: K 7.1 mmol/L crosses the configured threshold (≥ 6.5). The
/// alert and the verdicts use one definition of a critical value.
#[test]
fn a_threshold_only_critical_value_is_open_for_the_verdicts_until_read_back() {
    critical_value_closes(false);
}

fn critical_value_closes(flagged_hh: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let mut c = crate::support::Mllp::connect(&srv.mllp);
    // OBX-8 HH: a critical value the LIS flagged itself; else only the threshold.
    let msg = String::from_utf8(crate::identity::oru(
        "FX-SQ01",
        "K9",
        "SQ-78",
        crate::identity::NID,
        "F9",
        "7.1",
    ))
    .unwrap();
    assert!(msg.contains("|mmol/L|||N|"), "{msg}");
    let msg = if flagged_hh {
        msg.replace("|mmol/L|||N|", "|mmol/L||HH|N|")
    } else {
        msg
    };
    crate::identity::send(&mut c, msg.as_bytes());
    let path = format!("/api/v1/patients/nid:{}/results", crate::identity::NID);
    let (st, before) = srv.get(&path);
    assert_eq!(st, 200, "{before}");
    assert!(
        before.to_string().contains("CRITICAL_VALUE_OPEN"),
        "open before the read-back: {before}"
    );
    let a = alerts(&srv, CARDIO, "open");
    assert_eq!(a.len(), 1, "{a:?}");
    let id = a[0]["id"].as_str().unwrap();
    let (st, v) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/alerts/{id}/ack"),
        CARDIO,
        Some(r#"{"decision":"read_back","note":"钾 7.1 mmol/L，已复述，已通知主管医生"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let (st, after) = srv.get(&path);
    assert_eq!(st, 200);
    assert!(
        !after.to_string().contains("CRITICAL_VALUE_OPEN"),
        "closed by the acknowledgement (the cached answer is not reused): {after}"
    );
}

/// A reader signs a STEMI statement while no alert route exists (as after a crash between
/// a signature and its raise, or before a route was configured); at the next start the
/// recent signature raises its alert, with the signed version as its report.
#[test]
fn a_signature_whose_alert_was_not_raised_raises_it_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    upload_stemi(&srv);
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", CARDIO, None);
    let id = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    let claim = format!("/api/v1/worklist/{id}/claim");
    assert_eq!(call(&srv.http, "POST", &claim, CARDIO, None).0, 200);
    let (st, r) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/sign"),
        CARDIO,
        Some(r#"{"statements":["急性下壁心肌梗死"],"text":"II、III、aVF ST 段抬高"}"#),
    );
    assert_eq!(st, 200, "{r}");
    let signed = r["report"].as_str().unwrap().to_string();
    assert!(alerts(&srv, CARDIO, "all").is_empty(), "no route, no alert");
    srv.kill9();
    // The routes are configured; the start raises the signature's alert.
    let cfg = config(dir.path(), 3600);
    let srv = Server::start(&data, &["--config", &cfg]);
    let a = alerts(&srv, CARDIO, "open");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["report"], signed.as_str());
    assert_eq!(a[0]["kind"], "stemi");
}

/// A screen that lost its stream across a kill -9 reconnects with `Last-Event-ID` and gets
/// what it missed: the alert acknowledged meanwhile (and the open alert is still there after
/// the restart).
#[test]
fn a_stream_that_reconnects_after_a_crash_gets_the_alert_events_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    let mut stream = EventStream::open(&srv.http, SQ01, None);
    assert_eq!(stream.next(Duration::from_secs(5)).unwrap().0, "ready");
    upload_stemi(&srv);
    let (cursor, raised) = loop {
        let (ev, id, data) = stream
            .next(Duration::from_secs(2))
            .expect("the alert event");
        if ev == "alert" {
            break (
                id,
                serde_json::from_str::<serde_json::Value>(&data).unwrap(),
            );
        }
    };
    assert_eq!(raised["state"], "open");
    drop(stream);
    srv.kill9();
    let srv = Server::start(&data, &["--config", &cfg]);
    let open = alerts(&srv, CARDIO, "open");
    assert_eq!(open.len(), 1, "still open after the crash");
    let id = open[0]["id"].as_str().unwrap();
    let (st, v) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/alerts/{id}/ack"),
        CARDIO,
        Some(r#"{"decision":"not_stemi","note":"早期复极，门诊随访"}"#),
    );
    assert_eq!(st, 200, "{v}");
    // Reconnect from the last event seen: the acknowledgement comes first, without a patient.
    let mut again = EventStream::open(&srv.http, SQ01, Some(&cursor));
    let got = loop {
        let (ev, _, data) = again
            .next(Duration::from_secs(2))
            .expect("the missed alert event");
        if ev == "alert" {
            break serde_json::from_str::<serde_json::Value>(&data).unwrap();
        }
    };
    assert_eq!(got["id"], id);
    assert_eq!(got["state"], "acknowledged", "{got}");
    assert!(got.get("patient").is_none());
}
