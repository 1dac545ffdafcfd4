//! Issue 16 ("Hostile and clumsy peers"): failed authentication rate-limited and audited per
//! peer address and window (finding 11); the web page's sign-in refuses cross-origin posts and
//! forms without their CSRF token, and its language switch redirects only to its own pages
//! (finding 15).

use std::time::{Duration, Instant};

use crate::support::Server;

fn audit(data: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn get(srv: &Server, path: &str, token: &str) -> ureq::Response {
    let url = format!("http://{}{path}", srv.http);
    match ureq::get(&url)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn failed_authentication_is_rate_limited_and_audited_per_peer_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[access]\nauth_failure_limit = 20\nauth_failure_window_seconds = 3\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let path = "/api/v1/patients/FX-ZX:1/results";
    let before = audit(&data).len();
    let start = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..25 {
        let r = get(&srv, path, &format!("wrong-{i}"));
        if r.status() == 429 {
            let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
            assert!((1..=3).contains(&retry), "{retry}");
        }
        statuses.push(r.status());
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "too slow for the window"
    );
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 5], "{statuses:?}");
    // One record for the window's first failure, with the peer's address; none for the rest.
    let recs = audit(&data);
    assert_eq!(recs.len() - before, 1, "{:#?}", &recs[before..]);
    let first = &recs[before];
    assert_eq!(first["outcome"], "denied: invalid token");
    assert_eq!(first["detail"]["peer"], "127.0.0.1");
    assert_eq!(first["detail"]["failures"], 1);
    // A valid token still works from the limited address.
    assert_eq!(
        get(&srv, "/api/v1/stats/recognition", "test-commission-token").status(),
        200
    );
    // When the window has ended, the 24 counted failures are one record.
    let deadline = Instant::now() + Duration::from_secs(15);
    let flushed = loop {
        let f: Vec<_> = audit(&data)
            .into_iter()
            .filter(|r| r["detail"]["window_ended"] == true)
            .collect();
        if !f.is_empty() || Instant::now() > deadline {
            break f;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(flushed.len(), 1, "{flushed:?}");
    assert_eq!(flushed[0]["detail"]["failures"], 24);
    assert_eq!(flushed[0]["detail"]["peer"], "127.0.0.1");
    // The next window opens with a record of its own, and 401 again.
    assert_eq!(get(&srv, path, "wrong-again").status(), 401);
    let last = audit(&data).pop().unwrap();
    assert_eq!(last["detail"]["failures"], 1, "{last}");
}

#[test]
fn sign_in_refuses_cross_origin_posts_and_lang_redirects_stay_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let base = format!("http://{}", srv.http);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let call = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    // The sign-in page sets the pre-session cookie and carries its value as the form's token.
    let home = call(agent.get(&format!("{base}/")).call());
    let set = home.header("Set-Cookie").unwrap().to_string();
    let pre = set
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("huren_presession="))
        .unwrap()
        .to_string();
    assert!(home
        .into_string()
        .unwrap()
        .contains(&format!("value=\"{pre}\"")));
    let login = |origin: Option<&str>, cookie: bool, csrf: &str| {
        let mut req = agent
            .post(&format!("{base}/ui/login"))
            .set("Content-Type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.set("Origin", o);
        }
        if cookie {
            req = req.set("Cookie", &format!("huren_presession={pre}"));
        }
        call(req.send_string(&format!("token=test-clinician-token&csrf={csrf}")))
    };
    let before = audit(&data).len();
    // Cross-origin, even with the right token and CSRF pair: refused, no session.
    let r = login(Some("https://evil.example"), true, &pre);
    assert_eq!(r.status(), 403);
    assert!(r
        .header("Set-Cookie")
        .is_none_or(|c| !c.contains("huren_session")));
    let r = login(Some("null"), true, &pre);
    assert_eq!(r.status(), 403);
    // Same origin without the token pair: refused.
    assert_eq!(login(Some(&base), false, &pre).status(), 403);
    assert_eq!(login(Some(&base), true, &"0".repeat(64)).status(), 403);
    assert_eq!(audit(&data).len(), before, "refused before authentication");
    // Same origin with it: signed in.
    let r = login(Some(&base), true, &pre);
    assert_eq!(r.status(), 303);
    assert_eq!(r.header("Location"), Some("/ui/search"));
    assert!(r
        .all("Set-Cookie")
        .iter()
        .any(|c| c.starts_with("huren_session=")));

    // The language switch redirects only to the page's own routes.
    for (back, want) in [
        ("/%09/evil.example/x", "/"),
        ("//evil.example/x", "/"),
        ("/%5Cevil.example", "/"),
        ("https://evil.example/", "/"),
        ("/ui/search", "/ui/search"),
    ] {
        let r = call(agent.get(&format!("{base}/ui/lang/en?back={back}")).call());
        assert_eq!(r.status(), 303, "{back}");
        assert_eq!(r.header("Location"), Some(want), "{back}");
    }
}
