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
    let privacy = server
        .lines
        .iter()
        .find_map(|l| l["privacy_officer_token"].as_str())
        .expect("demo privacy officer token")
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
        .env("PRIVACY_TOKEN", &privacy)
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
        3
    );
    // The privacy officer's identity decision, made on the page: audited once, channel web.
    assert_eq!(summary["identity_reviews"], 1);
    let kept: Vec<_> = audit
        .iter()
        .filter(|r| {
            r["action"] == "identity_review"
                && r["detail"]["channel"] == "web"
                && r["detail"]["decision"] == "keep_existing"
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["outcome"], "ok");
    assert_eq!(kept[0]["detail"]["reason"], "与患者身份证核对，原关联正确");
}

/// A web client without a browser: one cookie jar, no redirects followed.
pub(crate) struct WebClient {
    base: String,
    agent: ureq::Agent,
    cookies: std::collections::BTreeMap<String, String>,
}

impl WebClient {
    pub(crate) fn new(server: &Server) -> WebClient {
        WebClient {
            base: format!("http://{}", server.http),
            agent: ureq::AgentBuilder::new().redirects(0).build(),
            cookies: Default::default(),
        }
    }

    fn keep_cookies(&mut self, r: &ureq::Response) {
        for c in r.all("Set-Cookie") {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn answer(&mut self, r: Result<ureq::Response, ureq::Error>) -> (u16, String, String) {
        let r = match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        self.keep_cookies(&r);
        let location = r.header("Location").unwrap_or("").to_string();
        (r.status(), location, r.into_string().unwrap())
    }

    /// GET: (status, Location, body).
    pub(crate) fn get(&mut self, path: &str) -> (u16, String, String) {
        let req = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("Cookie", &self.cookie_header());
        self.answer(req.call())
    }

    /// POST a form (already URL-encoded): (status, Location, body).
    pub(crate) fn post(&mut self, path: &str, form: &str) -> (u16, String, String) {
        let req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .set("Origin", &self.base)
            .set("Cookie", &self.cookie_header());
        self.answer(req.send_string(form))
    }

    /// Signs in with a token; answers where the sign-in redirected to.
    pub(crate) fn sign_in(&mut self, token: &str) -> String {
        let (st, _, _) = self.get("/");
        assert_eq!(st, 200);
        let pre = self.cookies["huren_presession"].clone();
        let (st, to, body) = self.post("/ui/login", &format!("token={token}&csrf={pre}"));
        assert_eq!(st, 303, "{body}");
        assert!(self.cookies.contains_key("huren_session"));
        to
    }
}

/// The session's CSRF token, from a page's hidden field.
pub(crate) fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

fn open_reviews(server: &Server) -> Vec<serde_json::Value> {
    let (st, body) = server.get_with(
        "/api/v1/identity/reviews",
        &[("Authorization", "Bearer test-privacy-token")],
    );
    assert_eq!(st, 200, "{body}");
    body["reviews"].as_array().unwrap().clone()
}

/// Issue 16: the privacy officer's identity review page. A contradicting national ID opens
/// a review item; the officer sees it on `/ui/identity` (one audit record per view, channel
/// `web`, no clinical content), a resolution without a reason changes nothing, one with a
/// reason goes through the same code as the API and the item is gone; a clinician is refused
/// (audited) and has no link to the page.
#[test]
fn privacy_officer_resolves_an_identity_review_on_the_web_page() {
    use crate::identity::{oru, send, NID, TYPO};
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", &cfg]);
    let mut c = crate::support::Mllp::connect(&server.mllp);
    send(&mut c, &oru("FX-GX", "GX-1", "GX-77", NID, "GX1", "4.4"));
    // The same local ID claimed for another national ID: a review item, nothing moved.
    send(
        &mut c,
        &oru("FX-GX", "GX-TYPO", "GX-77", TYPO, "GX2", "9.87"),
    );
    let open = open_reviews(&server);
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0]["id"].as_str().unwrap().to_string();
    let report = open[0]["reports"][0].as_str().unwrap().to_string();

    // The officer signs in; the navigation links the review page.
    let mut po = WebClient::new(&server);
    let landing = po.sign_in("test-privacy-token");
    let (st, _, home) = po.get(&landing);
    assert_eq!(st, 200);
    assert!(home.contains("href=\"/ui/identity\""), "{home}");

    // The page lists the item: what was claimed, by whom, the links, the report concerned.
    let before = audit_lines(&data).len();
    let (st, _, page) = po.get("/ui/identity");
    assert_eq!(st, 200, "{page}");
    for want in [
        id.as_str(),
        "FX-GX:GX-77",
        "GX-TYPO",
        open[0]["current"].as_str().unwrap(),
        open[0]["claimed"].as_str().unwrap(),
        report.as_str(),
        &format!("action=\"/ui/identity/{id}/resolve\""),
    ] {
        assert!(page.contains(want), "{want} not on the page:\n{page}");
    }
    // No clinical content, no national ID in clear.
    for never in [NID, TYPO, "9.87", "钾"] {
        assert!(!page.contains(never), "{never} on the page");
    }
    let audit = audit_lines(&data);
    let new = &audit[before..];
    assert_eq!(new.len(), 1, "one audit record per view: {new:?}");
    assert_eq!(new[0]["action"], "identity_review");
    assert_eq!(new[0]["outcome"], "ok");
    assert_eq!(new[0]["actor"], "privacy.zx");
    assert_eq!(new[0]["detail"]["channel"], "web");
    assert_eq!(new[0]["detail"]["open"], 1);
    let csrf = csrf_of(&page);
    let resolve = format!("/ui/identity/{id}/resolve");

    // Without the session's CSRF token: refused, nothing changes, nothing audited.
    let before = audit_lines(&data).len();
    let (st, _, _) = po.post(
        &resolve,
        &format!("csrf={}&decision=accept&reason=x", "0".repeat(64)),
    );
    assert_eq!(st, 403);
    assert_eq!(audit_lines(&data).len(), before);
    // Without a reason: a clear error, nothing changes (the refusal audited once).
    let (st, _, body) = po.post(&resolve, &format!("csrf={csrf}&decision=accept&reason=+"));
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("请填写理由"), "{body}");
    assert_eq!(open_reviews(&server).len(), 1);
    let audit = audit_lines(&data);
    let refused: Vec<_> = audit[before..]
        .iter()
        .filter(|r| r["action"] == "identity_review")
        .collect();
    assert_eq!(
        refused.len(),
        2,
        "the refusal and the API's list: {refused:?}"
    );
    assert_eq!(refused[0]["outcome"], "bad_request");
    assert_eq!(refused[0]["detail"]["channel"], "web");

    // A clinician: no link, the page and the form refused (audited).
    let mut dr = WebClient::new(&server);
    dr.sign_in("test-clinician-token");
    let (_, _, search) = dr.get("/ui/search");
    assert!(!search.contains("/ui/identity"));
    let dr_csrf = csrf_of(&search);
    let before = audit_lines(&data).len();
    let (st, _, body) = dr.get("/ui/identity");
    assert_eq!(st, 403, "{body}");
    assert!(!body.contains("FX-GX:GX-77"));
    let (st, _, _) = dr.post(
        &resolve,
        &format!("csrf={dr_csrf}&decision=accept&reason=mine"),
    );
    assert_eq!(st, 403);
    let audit = audit_lines(&data);
    let denied = &audit[before..];
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied.iter().all(|r| r["actor"] == "dr.zx"
        && r["action"] == "identity_review"
        && r["outcome"].as_str().unwrap().starts_with("denied")));
    assert_eq!(open_reviews(&server).len(), 1);

    // With a reason: decided through the same code as the API, back to the list with the
    // result; the item is gone and the local ID moved.
    let before = audit_lines(&data).len();
    let (st, to, body) = po.post(
        &resolve,
        &format!("csrf={csrf}&decision=accept&reason=%E4%B8%8E%E7%99%BB%E8%AE%B0%E5%A4%84%E6%A0%B8%E5%AF%B9"),
    );
    assert_eq!(st, 303, "{body}");
    assert!(to.starts_with("/ui/identity?done=accept"), "{to}");
    let decided: Vec<_> = audit_lines(&data)[before..].to_vec();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["outcome"], "ok");
    assert_eq!(decided[0]["detail"]["decision"], "accept_claim");
    assert_eq!(decided[0]["detail"]["reason"], "与登记处核对");
    assert_eq!(decided[0]["detail"]["moved_local"], "FX-GX:GX-77");
    assert_eq!(decided[0]["detail"]["channel"], "web");
    let (st, _, page) = po.get(&to);
    assert_eq!(st, 200);
    assert!(page.contains("id=\"done\""), "{page}");
    assert!(page.contains("id=\"no-reviews\""), "{page}");
    assert!(!page.contains("FX-GX:GX-77"));
    assert!(open_reviews(&server).is_empty());
    // Decided once: a second post says so and changes nothing.
    let (st, _, body) = po.post(&resolve, &format!("csrf={csrf}&decision=keep&reason=again"));
    assert_eq!(st, 409, "{body}");
    // The local ID's reports are the claimed person's now.
    let (st, body) = server.get(&format!("/api/v1/patients/nid:{TYPO}/reports"));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["reports"].as_array().unwrap().len(), 2, "{body}");
}
