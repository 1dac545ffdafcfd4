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
