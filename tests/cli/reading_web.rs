//! Issue 17 in a real browser (`tests/web/reading.mjs`, headless Debian chromium driven by
//! playwright-core): a community centre's ECG reaches the reader's open worklist within a
//! second, the reader claims it, reads it beside the patient's previous ECG, signs it with
//! catalogue statements and text, the community doctor's page shows the diagnosis, and the
//! signed report reaches the community centre's HIS (a test MLLP receiver answering AA) once.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::outbox::{config, free_port, Receiver};
use crate::support::{repo, Server};
use crate::worklist::{audit_lines, call};

const SQ01_TOKEN: &str = "test-sq01-token";

/// The project's aECG fixture as another recording: document id ending in `uid`, acquired
/// `hours_ago` before now.
fn ecg_variant(uid: &str, hours_ago: i64) -> Vec<u8> {
    let at = chrono::Utc::now() - chrono::Duration::hours(hours_ago);
    let ts = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
            .format("%Y%m%d%H%M%S")
            .to_string()
    };
    std::fs::read_to_string(repo().join("fixtures/ecg/aecg-zh-patient.xml"))
        .unwrap()
        .replace(
            "7d1c2a10-5a9b-4f3e-9a51-000000000001",
            &format!("7d1c2a10-5a9b-4f3e-9a51-{uid}"),
        )
        .replace("20250624083025", &ts(at + chrono::Duration::seconds(10)))
        .replace("20250624083015", &ts(at))
        .into_bytes()
}

#[test]
fn a_community_ecg_is_read_and_signed_in_the_browser_and_goes_back() {
    if !crate::web::browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let his = Receiver::start(port, "AA", "");
    let cfg = config(dir.path(), port, 5);
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);

    // Last month's ECG of the same patient from the same centre: read and signed already, so
    // the worklist starts empty and the reader has something to compare with.
    let prior = ureq::post(&format!("http://{}/api/v1/ecg", srv.http))
        .set("Authorization", &format!("Bearer {SQ01_TOKEN}"))
        .set("Content-Type", "application/xml")
        .send_bytes(&ecg_variant("0000000a0001", 24 * 30))
        .unwrap();
    assert!(prior.status() < 300);
    let (_, wl) = call(
        &srv.http,
        "GET",
        "/api/v1/worklist",
        crate::support::TEST_TOKEN,
        None,
    );
    let first = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    for (act, body) in [
        ("claim", None),
        ("sign", Some(r#"{"statements":["窦性心律","正常心电图"]}"#)),
    ] {
        let (st, b) = call(
            &srv.http,
            "POST",
            &format!("/api/v1/worklist/{first}/{act}"),
            crate::support::TEST_TOKEN,
            body,
        );
        assert_eq!(st, 200, "{act}: {b}");
    }
    let until = Instant::now() + Duration::from_secs(10);
    while his.messages().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(his.messages().len(), 1, "the earlier reading went back");

    let today = dir.path().join("today.xml");
    std::fs::write(&today, ecg_variant("0000000b0002", 0)).unwrap();
    let shots = repo().join("target/web-shots");
    let before = audit_lines(&data).len();
    let out = Command::new("node")
        .arg(repo().join("tests/web/reading.mjs"))
        .current_dir(repo().join("tests/web"))
        .env("HUREN_URL", format!("http://{}", srv.http))
        .env("READER_TOKEN", crate::support::TEST_TOKEN)
        .env("COMMUNITY_TOKEN", SQ01_TOKEN)
        .env("ECG_FILE", &today)
        .env("SHOTS", &shots)
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser test failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary from the browser test:\n{stdout}\n{stderr}"));
    eprintln!("reading summary: {summary}");
    assert!(
        summary["appeared_ms"].as_u64().unwrap() <= 1000,
        "{summary}"
    );
    for f in summary["screenshots"].as_array().unwrap() {
        let p = f.as_str().unwrap();
        assert!(
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > 10_000,
            "{p}"
        );
    }

    // The signed report reaches the community centre's HIS once, with the diagnosis.
    let until = Instant::now() + Duration::from_secs(10);
    while his.messages().len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let msgs = his.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[1].contains("急性下壁心肌梗死") && msgs[1].contains("建议立即转诊胸痛中心"),
        "{}",
        msgs[1]
    );

    // The reading was audited: the reading page once, each trace once, the claim and the
    // signature once, each naming the patient.
    let task = summary["task"].as_str().unwrap();
    let recs: Vec<serde_json::Value> = audit_lines(&data)[before..]
        .iter()
        .filter(|r| r["detail"]["task"] == task)
        .cloned()
        .collect();
    let count = |a: &str| recs.iter().filter(|r| r["action"] == a).count();
    assert_eq!(count("task_view"), 1, "{recs:?}");
    assert_eq!(count("read_ecg_trace"), 2, "{recs:?}");
    assert_eq!(count("task_claim"), 1);
    assert_eq!(count("task_sign"), 1);
    assert!(recs.iter().all(|r| r["patient"].is_string()), "{recs:?}");
    let view = recs.iter().find(|r| r["action"] == "task_view").unwrap();
    assert_eq!(
        view["returned"].as_array().unwrap().len(),
        2,
        "the report and the previous ECG: {view}"
    );
}
