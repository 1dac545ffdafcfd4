//! Issue 18, the green channel and chest-pain timings: a STEMI alert opens a case with its
//! machine stamps (ECG received, alert raised, delivered, acknowledged, diagnosis); the
//! cardiologist refers the patient with the ECG attached; the receiving hospital sees the
//! incoming patient; each side stamps its milestones with one click, once, in order; the
//! head of department and the health commission get the KPIs and the CCPC export (checked
//! column by column), nobody else; every view and act goes through the gate, audited once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alerts::{alerts, config, until, upload_stemi, CARDIO};
use crate::support::Server;
use crate::worklist::{audit_lines, call};

const SQ01: &str = "test-sq01-token";
const HEAD: &str = "test-head-token";
const COMMISSION: &str = "test-commission-token";

fn referrals(srv: &Server, token: &str, q: &str) -> Vec<serde_json::Value> {
    let (st, v) = call(
        &srv.http,
        "GET",
        &format!("/api/v1/referrals{q}"),
        token,
        None,
    );
    assert_eq!(st, 200, "{v}");
    v["referrals"].as_array().unwrap().clone()
}

fn stamp(
    srv: &Server,
    token: &str,
    case: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    call(
        &srv.http,
        "POST",
        &format!("/api/v1/referrals/{case}/stamps"),
        token,
        Some(&body.to_string()),
    )
}

fn at(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn a_stemi_case_is_timed_referred_stamped_once_in_order_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    upload_stemi(&srv);
    let alert = alerts(&srv, CARDIO, "open")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The case opens with the alert; its machine stamps come from the stored records.
    until("the case and its stamps", Duration::from_secs(5), || {
        referrals(&srv, SQ01, "")
            .first()
            .is_some_and(|c| c["stamps"]["alert_raised"].is_object())
    });
    let c = &referrals(&srv, SQ01, "")[0];
    let case = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["alert"], alert.as_str());
    assert_eq!(c["institution"], "FX-SQ01");
    assert_eq!(c["pci_institution"], "FX-ZX");
    assert!(
        c["patient"].as_str().unwrap().starts_with("FX-SQ01:"),
        "{c}"
    );
    for m in ["ecg_acquired", "ecg_received", "alert_raised"] {
        assert!(c["stamps"][m]["at"].is_string(), "{m}: {c}");
    }
    assert_eq!(c["stamps"]["ecg_acquired"]["source"], "device");
    assert!(c["referral"].is_null());
    // The receiving hospital's other clinicians do not see it before a referral; the
    // privacy officer never.
    assert_eq!(
        call(
            &srv.http,
            "GET",
            "/api/v1/referrals",
            "test-privacy-token",
            None
        )
        .0,
        403
    );

    // The community doctor enters first medical contact (8 minutes before the cart recorded
    // the ECG) and door-in; a second door-in is refused (409), a device milestone cannot be typed.
    let received = at(&c["stamps"]["ecg_received"]["at"]);
    let fmc = at(&c["stamps"]["ecg_acquired"]["at"]) - chrono::Duration::minutes(8);
    let (st, v) = stamp(
        &srv,
        SQ01,
        &case,
        serde_json::json!({"milestone": "first_medical_contact", "at": fmc.to_rfc3339()}),
    );
    assert_eq!(st, 200, "{v}");
    let before = audit_lines(&data).len();
    let (st, v) = stamp(
        &srv,
        SQ01,
        &case,
        serde_json::json!({"milestone": "door_in"}),
    );
    assert_eq!(st, 200, "{v}");
    let recs = audit_lines(&data)[before..].to_vec();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "referral_stamp");
    assert!(recs[0]["patient"].is_string(), "{recs:?}");
    assert_eq!(
        stamp(
            &srv,
            SQ01,
            &case,
            serde_json::json!({"milestone": "door_in"})
        )
        .0,
        409
    );
    assert_eq!(
        stamp(
            &srv,
            SQ01,
            &case,
            serde_json::json!({"milestone": "ecg_acquired"})
        )
        .0,
        400
    );
    // Arrival is the PCI hospital's to stamp.
    assert_eq!(
        stamp(
            &srv,
            SQ01,
            &case,
            serde_json::json!({"milestone": "arrival"})
        )
        .0,
        403
    );

    // The cardiologist decides (diagnosis and acknowledgement stamped, by them) and refers.
    let (st, v) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/alerts/{alert}/ack"),
        CARDIO,
        Some(r#"{"decision":"stemi_transfer","note":"立即转运"}"#),
    );
    assert_eq!(st, 200, "{v}");
    until("the acknowledgement stamp", Duration::from_secs(5), || {
        referrals(&srv, CARDIO, "")[0]["stamps"]["diagnosis"]["by"] == "dr.zx"
    });
    let eta = (Utc::now() + chrono::Duration::minutes(40)).to_rfc3339();
    let body = serde_json::json!({"alert": alert, "reason": "急性下壁STEMI，转运行急诊PCI", "expected_arrival": eta});
    let (st, v) = call(
        &srv.http,
        "POST",
        "/api/v1/referrals",
        CARDIO,
        Some(&body.to_string()),
    );
    assert_eq!(st, 201, "{v}");
    let r = &v["referral"]["referral"];
    assert_eq!(r["to_institution"], "FX-ZX");
    assert_eq!(r["by"], "dr.zx");
    assert_eq!(r["attachments"][0], v["referral"]["ecg_report"]);
    assert_eq!(
        call(
            &srv.http,
            "POST",
            "/api/v1/referrals",
            CARDIO,
            Some(&body.to_string())
        )
        .0,
        409,
        "one active referral"
    );
    let blank = serde_json::json!({"alert": alert, "reason": " "});
    assert_eq!(
        call(
            &srv.http,
            "POST",
            "/api/v1/referrals",
            SQ01,
            Some(&blank.to_string())
        )
        .0,
        400,
        "a reason is needed"
    );
    // Incoming at the PCI hospital; outgoing at the community centre.
    assert_eq!(referrals(&srv, CARDIO, "?direction=incoming").len(), 1);
    assert!(referrals(&srv, SQ01, "?direction=incoming").is_empty());
    assert_eq!(referrals(&srv, SQ01, "?direction=outgoing").len(), 1);

    // Decision to transfer and door-out at the sender; arrival before door-out is refused
    // (400), then stamped with one click at the PCI hospital.
    for m in ["transfer_decision", "door_out"] {
        let (st, v) = stamp(&srv, SQ01, &case, serde_json::json!({"milestone": m}));
        assert_eq!(st, 200, "{m}: {v}");
    }
    let early = (received - chrono::Duration::minutes(1)).to_rfc3339();
    assert_eq!(
        stamp(
            &srv,
            CARDIO,
            &case,
            serde_json::json!({"milestone": "arrival", "at": early})
        )
        .0,
        400
    );
    let (st, v) = stamp(
        &srv,
        CARDIO,
        &case,
        serde_json::json!({"milestone": "arrival"}),
    );
    assert_eq!(st, 200, "{v}");
    let c = &v["referral"];
    assert_eq!(c["stamps"]["arrival"]["by"], "dr.zx");
    assert!(
        c["intervals"]["door_in_door_out"].as_i64().unwrap() >= 0,
        "{c}"
    );
    // First ECG is the cart's acquisition time: FMC → acquired, 8 minutes.
    assert_eq!(c["intervals"]["fmc_to_ecg"], 480, "{c}");

    // KPIs: the head of the group and the commission; a clinician who heads nothing is refused.
    assert_eq!(
        call(&srv.http, "GET", "/api/v1/kpi/chest-pain", CARDIO, None).0,
        403
    );
    assert_eq!(
        call(
            &srv.http,
            "GET",
            "/api/v1/kpi/chest-pain/export.csv",
            SQ01,
            None
        )
        .0,
        403
    );
    let (st, k) = call(
        &srv.http,
        "GET",
        "/api/v1/kpi/chest-pain?from=2020-01-01",
        HEAD,
        None,
    );
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["total"]["cases"], 1, "{k}");
    let aa = &k["total"]["kpis"]["alert_to_ack"]["overall"];
    assert_eq!(aa["n"], 1, "{k}");
    assert_eq!(
        k["total"]["kpis"]["alert_to_ack"]["by_responder"]["dr.zx"]["n"], 1,
        "{k}"
    );
    assert_eq!(
        k["total"]["kpis"]["door_in_door_out"]["overall"]["within"], 1,
        "{k}"
    );
    assert_eq!(k["thresholds"]["door_in_door_out_min"], 30);
    assert_eq!(
        call(
            &srv.http,
            "GET",
            "/api/v1/kpi/chest-pain?from=2026-13-01",
            HEAD,
            None
        )
        .0,
        400
    );

    // The export: the JSON's columns are the CSV's header, cell by cell; no patient in it.
    let (st, j) = call(
        &srv.http,
        "GET",
        "/api/v1/kpi/chest-pain/export.json?from=2020-01-01",
        COMMISSION,
        None,
    );
    assert_eq!(st, 200, "{j}");
    let before = audit_lines(&data).len();
    let resp = ureq::get(&format!(
        "http://{}/api/v1/kpi/chest-pain/export.csv?from=2020-01-01",
        srv.http
    ))
    .set("Authorization", &format!("Bearer {COMMISSION}"))
    .call()
    .unwrap();
    assert_eq!(resp.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = resp.into_string().unwrap();
    let text = text
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark for spreadsheets");
    let recs = audit_lines(&data)[before..].to_vec();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["action"], "kpi_export");
    assert!(recs[0]["patient"].is_null());
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert!(lines.next().is_none(), "one case, one row");
    let cols = j["columns"].as_array().unwrap();
    let jrow = &j["rows"][0];
    assert_eq!(header.len(), cols.len());
    for (i, col) in cols.iter().enumerate() {
        assert_eq!(header[i], col["ccpc"].as_str().unwrap(), "column {i}");
        let key = col["key"].as_str().unwrap();
        assert_eq!(
            row[i],
            jrow[key].as_str().unwrap_or(""),
            "column {i} ({key})"
        );
    }
    let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(cell("病例编号"), case);
    assert_eq!(cell("转出医院"), "FX-SQ01");
    assert_eq!(cell("确认医师"), "dr.zx");
    // Times in Shanghai to the second: the FMC entered above.
    let fmc_local = fmc
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert_eq!(cell("首次医疗接触时间"), fmc_local);
    assert!(
        !text.contains("FX-SQ01:") && !text.contains(c["patient_name"].as_str().unwrap_or("@@"))
    );
}

/// The web pages: the community doctor stamps door-in with one click and starts the referral
/// from `/ui/referrals` (CSRF-checked, audited like the API); the head of department sees the
/// KPI dashboard with one SVG chart per KPI and downloads the CSV; a clinician who heads
/// nothing has no link and is refused.
#[test]
fn the_green_channel_and_kpi_pages() {
    use crate::web::{csrf_of, WebClient};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    upload_stemi(&srv);
    until("the case and its stamps", Duration::from_secs(5), || {
        referrals(&srv, SQ01, "")
            .first()
            .is_some_and(|c| c["stamps"]["alert_raised"].is_object())
    });
    let case = referrals(&srv, SQ01, "")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut sq = WebClient::new(&srv);
    sq.sign_in(SQ01);
    let (st, _, page) = sq.get("/ui/referrals");
    assert_eq!(st, 200);
    assert!(page.contains(&format!("data-case=\"{case}\"")), "{page}");
    assert!(page.contains("value=\"door_in\""), "a door-in button");
    assert!(
        !page.contains("value=\"arrival\""),
        "arrival is the PCI hospital's"
    );
    assert!(
        !page.contains("nav-kpi"),
        "no KPI link for a clinician who heads nothing"
    );
    let csrf = csrf_of(&page);
    let before = audit_lines(&data).len();
    let (st, to, _) = sq.post(
        &format!("/ui/referrals/{case}/stamp"),
        &format!("csrf={csrf}&milestone=door_in"),
    );
    assert_eq!(
        (st, to.as_str()),
        (303, format!("/ui/referrals#{case}").as_str())
    );
    let recs = audit_lines(&data)[before..].to_vec();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["action"], "referral_stamp");
    // A wrong CSRF token changes nothing.
    let (st, _, _) = sq.post(
        &format!("/ui/referrals/{case}/stamp"),
        "csrf=x&milestone=transfer_decision",
    );
    assert_eq!(st, 403);
    let alert = referrals(&srv, SQ01, "")[0]["alert"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _, body) = sq.post(
        &format!("/ui/referrals/{case}/refer"),
        &format!("csrf={csrf}&alert={alert}&reason=STEMI&eta_min=30"),
    );
    assert_eq!(st, 303, "{body}");
    let c = &referrals(&srv, SQ01, "")[0];
    assert_eq!(c["stamps"]["door_in"]["source"], "entered");
    assert!(c["stamps"]["transfer_decision"].is_null());
    assert_eq!(c["referral"]["reason"], "STEMI");
    assert!(c["referral"]["expected_arrival"].is_string());
    let (_, _, page) = sq.get("/ui/kpi");
    assert!(!page.contains("data-kpi"), "refused: {page}");

    let mut head = WebClient::new(&srv);
    head.sign_in(HEAD);
    let (st, _, page) = head.get("/ui/kpi?from=2020-01-01");
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("nav-kpi"));
    assert_eq!(page.matches("<svg class=\"kpi\"").count(), 4, "{page}");
    assert!(page.contains("id=\"kpi-cases\">1<"), "{page}");
    let (st, _, csv) = head.get("/ui/kpi/export.csv?from=2020-01-01");
    assert_eq!(st, 200);
    assert!(csv.starts_with('\u{feff}') && csv.contains(&case), "{csv}");
}
