//! The clinicians' web page in a real browser: headless Debian chromium driven by
//! playwright-core (`tests/web/browser.mjs`) against `huren serve --demo`. `.ci/test`
//! installs chromium and playwright-core; without them the test skips, except under CI.
//! Screenshots go to `target/web-shots/` (test artefacts, not committed).

use std::path::Path;
use std::process::Command;

use crate::support::{repo, Server};

pub(crate) fn browser_ready() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ok = Path::new(&chromium).exists()
        && repo()
            .join("tests/web/node_modules/playwright-core")
            .is_dir()
        && Command::new("node").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium, node or tests/web/node_modules missing and CI=true: run .ci/test"
        );
        eprintln!(
            "skipping the browser test: chromium/playwright-core not installed (run .ci/test)"
        );
    }
    ok
}

fn audit_lines(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn clinician_journey_in_a_real_browser() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let server = Server::start(&data, &["--demo"]);
    let commission = server
        .lines
        .iter()
        .find_map(|l| l["commission_token"].as_str())
        .expect("demo commission token")
        .to_string();
    let patient_auth = server
        .lines
        .iter()
        .find_map(|l| l["demo_patient_authorization"].as_str())
        .expect("demo patient authorization")
        .to_string();
    let shots = repo().join("target/web-shots");
    let out = Command::new("node")
        .arg(repo().join("tests/web/browser.mjs"))
        .current_dir(repo().join("tests/web"))
        .env("HUREN_URL", format!("http://{}", server.http))
        .env("HUREN_MLLP", &server.mllp)
        .env("DEMO_TOKEN", &server.token)
        .env("COMMISSION_TOKEN", &commission)
        .env("DEMO_PATIENT_AUTHORIZATION", &patient_auth)
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
    eprintln!("browser summary: {summary}");
    for f in summary["screenshots"].as_array().unwrap() {
        let p = f.as_str().unwrap();
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "screenshot {p} is missing or empty");
    }

    // One audit record per patient view made in the browser, each with the patient.
    let audit = audit_lines(&data);
    let web_views: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|r| r["detail"]["channel"] == "web" && r["outcome"] == "ok")
        .filter(|r| {
            matches!(
                r["action"].as_str(),
                Some("read_results" | "check" | "read_report")
            )
        })
        .collect();
    let views = summary["patient_views"].as_u64().unwrap();
    assert!(views >= 8, "the browser made {views} patient views");
    assert_eq!(
        web_views.len() as u64,
        views,
        "audit records of web patient views vs views made"
    );
    assert!(web_views.iter().all(|r| r["patient"]
        .as_str()
        .is_some_and(|p| p.starts_with("nidk:"))
        && r["outcome"] == "ok"));
    // The refused outpatient break-glass is audited as a denial; the emergency one as a view
    // flagged break-glass with its reason.
    assert!(audit.iter().any(|r| r["action"] == "read_results"
        && r["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("denied"))
        && r["detail"]["channel"] == "web"));
    assert!(web_views.iter().any(|r| r["break_glass"] == true
        && r["detail"]["break_glass_reason"] == "胸痛急诊，患者意识不清"));
    // The national ID never reaches the audit log in clear.
    let raw = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(!raw.contains("310120195805201229"));
    // Decisions, the refused sign-in and the signed-in ones are audited too.
    let decisions = audit
        .iter()
        .filter(|r| r["action"] == "decision" && r["outcome"] == "ok")
        .count();
    assert_eq!(decisions as u64, summary["decisions"].as_u64().unwrap());
    assert!(audit
        .iter()
        .any(|r| r["action"] == "sign_in" && r["outcome"] == "denied: invalid token"));
    assert_eq!(
        audit
            .iter()
            .filter(|r| r["action"] == "sign_in" && r["outcome"] == "ok")
            .count(),
        2
    );
}
