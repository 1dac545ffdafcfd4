//! Issue 17, the reading centre's worklist (first slice): a community centre's ECG becomes a
//! reading task on the ECG centre's worklist; readers on the roster see it (others are
//! refused), claim it (of two at once exactly one wins), release it (only the holder),
//! cancel it (only with a reason); every read and act is audited once; tasks survive a
//! restart and a resent ECG does not make a second task.

use std::time::Duration;

use crate::support::{repo, Server};

const SQ01_TOKEN: &str = "test-sq01-token";
const PRIVACY_TOKEN: &str = "test-privacy-token";

pub(crate) fn call(
    http: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let url = format!("http://{http}{path}");
    let req = ureq::request(method, &url)
        .set("Authorization", &format!("Bearer {token}"))
        .timeout(Duration::from_secs(20));
    let r = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None if method == "POST" => req.send_bytes(&[]),
        None => req.call(),
    };
    let (st, r) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(s, r)) => (s, r),
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let text = r.into_string().unwrap_or_default();
    (
        st,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// `POST /api/v1/ecg` of `ecg` (XML) with `token`: the answer (panics on a transport error).
pub(crate) fn post_ecg(http: &str, token: &str, ecg: &[u8]) -> ureq::Response {
    ureq::post(&format!("http://{http}/api/v1/ecg"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/xml")
        .send_bytes(ecg)
        .unwrap()
}

pub(crate) fn audit_lines(data: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The audit records written while `f` ran.
fn audited<T>(data: &std::path::Path, f: impl FnOnce() -> T) -> (T, Vec<serde_json::Value>) {
    let before = audit_lines(data).len();
    let out = f();
    // The audit log is written before the answer; nothing to wait for.
    let after = audit_lines(data);
    (out, after[before..].to_vec())
}

#[test]
fn a_community_ecg_becomes_a_task_that_readers_claim_release_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    // A second reader on the ECG centre's roster: dr.sq01.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[[roster]]\nreader = \"dr.sq01\"\ncentre = \"fx-ecg\"\n");
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);

    // The community centre (FX-SQ01) uploads an ECG: a task on the centre's worklist.
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    let up = |srv: &Server| {
        let url = format!("http://{}/api/v1/ecg", srv.http);
        let r = ureq::post(&url)
            .set("Authorization", &format!("Bearer {SQ01_TOKEN}"))
            .set("Content-Type", "application/xml")
            .send_bytes(&ecg)
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&r.into_string().unwrap()).unwrap()
    };
    let stored = up(&srv);
    let report = stored["report"].as_str().unwrap().to_string();

    let ((st, wl), recs) = audited(&data, || {
        call(
            &srv.http,
            "GET",
            "/api/v1/worklist",
            crate::support::TEST_TOKEN,
            None,
        )
    });
    assert_eq!(st, 200, "{wl}");
    let tasks = wl["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{wl}");
    let t = &tasks[0];
    assert_eq!(t["state"], "scheduled");
    assert_eq!(t["kind"], "ecg");
    assert_eq!(t["institution"], "FX-SQ01");
    assert_eq!(t["centre"], "fx-ecg");
    assert_eq!(t["report"], report.as_str());
    assert!(
        t["patient"].as_str().unwrap().starts_with("FX-SQ01:"),
        "{t}"
    );
    assert_eq!(t["claimed_by"], serde_json::Value::Null);
    let created = chrono::DateTime::parse_from_rfc3339(t["created_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(t["due_at"].as_str().unwrap()).unwrap();
    let minutes = (due - created).num_minutes();
    assert!(
        minutes == 30 || minutes == 10,
        "routine ECG 30 min, critical 10: {minutes}"
    );
    assert_eq!(t["overdue"], false);
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(
        recs.len(),
        1,
        "one audit record per worklist read: {recs:?}"
    );
    assert_eq!(recs[0]["action"], "worklist");
    assert_eq!(recs[0]["actor"], "dr.zx");

    // Not on the roster: refused, audited.
    let ((st, _), recs) = audited(&data, || {
        call(&srv.http, "GET", "/api/v1/worklist", PRIVACY_TOKEN, None)
    });
    assert_eq!(st, 403);
    assert_eq!(recs.len(), 1);
    let (st, _) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/claim"),
        PRIVACY_TOKEN,
        None,
    );
    assert_eq!(st, 403);

    // Two readers claim at once: exactly one wins, the other learns who holds it.
    let claim = format!("/api/v1/worklist/{id}/claim");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| call(&srv.http, "POST", &claim, crate::support::TEST_TOKEN, None));
        let b = s.spawn(|| call(&srv.http, "POST", &claim, SQ01_TOKEN, None));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let (winner, loser) = if a.0 == 200 {
        (crate::support::TEST_TOKEN, SQ01_TOKEN)
    } else {
        (SQ01_TOKEN, crate::support::TEST_TOKEN)
    };
    let holder = if a.0 == 200 { "dr.zx" } else { "dr.sq01" };
    let lost = if a.0 == 200 { &b.1 } else { &a.1 };
    assert!(lost["detail"].as_str().unwrap().contains(holder), "{lost}");
    let (_, wl) = call(
        &srv.http,
        "GET",
        "/api/v1/worklist",
        crate::support::TEST_TOKEN,
        None,
    );
    assert_eq!(wl["tasks"][0]["state"], "in_progress");
    assert_eq!(wl["tasks"][0]["claimed_by"], holder);

    // Only the holder releases.
    let release = format!("/api/v1/worklist/{id}/release");
    assert_eq!(call(&srv.http, "POST", &release, loser, None).0, 409);
    let ((st, r), recs) = audited(&data, || call(&srv.http, "POST", &release, winner, None));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["task"]["state"], "scheduled");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["action"], "task_release");
    assert!(
        recs[0]["patient"].is_string(),
        "the task's patient is named: {:?}",
        recs[0]
    );

    // Cancel needs a reason.
    let cancel = format!("/api/v1/worklist/{id}/cancel");
    assert_eq!(
        call(
            &srv.http,
            "POST",
            &cancel,
            winner,
            Some(r#"{"reason":"  "}"#)
        )
        .0,
        400
    );
    assert_eq!(call(&srv.http, "POST", &cancel, winner, Some("{}")).0, 400);
    let (st, r) = call(
        &srv.http,
        "POST",
        &cancel,
        winner,
        Some(r#"{"reason":"重复上传"}"#),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["task"]["state"], "cancelled");
    assert_eq!(
        call(&srv.http, "POST", &claim, loser, None).0,
        409,
        "a cancelled task is not claimed"
    );
    let (_, wl) = call(
        &srv.http,
        "GET",
        "/api/v1/worklist",
        crate::support::TEST_TOKEN,
        None,
    );
    assert_eq!(wl["tasks"].as_array().unwrap().len(), 0, "{wl}");
    assert_eq!(
        call(
            &srv.http,
            "POST",
            "/api/v1/worklist/t-none/claim",
            winner,
            None
        )
        .0,
        404
    );

    // After a restart: the same state; the same ECG again makes no second task.
    srv.kill9();
    let srv = Server::start(&data, &["--config", &cfg]);
    assert_eq!(up(&srv)["outcome"], "duplicate");
    let (_, wl) = call(
        &srv.http,
        "GET",
        "/api/v1/worklist",
        crate::support::TEST_TOKEN,
        None,
    );
    assert_eq!(wl["tasks"].as_array().unwrap().len(), 0, "{wl}");
    let log = std::fs::read_to_string(data.join("tasks.log")).unwrap();
    assert_eq!(
        log.lines().count(),
        4,
        "created, claimed, released, cancelled: {log}"
    );
}

/// Signing: the holder signs with statements and text → a new, final report version in the
/// same chain (the cart's stays retrievable), confirmed by the reader at the centre, critical
/// by the catalogue; the task is completed and leaves the worklist. A signed report stored
/// without its task's `Signed` event (a crash between the two) completes the task at start-up.
#[test]
fn the_holder_signs_and_the_signed_report_supersedes_the_carts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    let url = format!("http://{}/api/v1/ecg", srv.http);
    let r = ureq::post(&url)
        .set("Authorization", &format!("Bearer {SQ01_TOKEN}"))
        .set("Content-Type", "application/xml")
        .send_bytes(&ecg)
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    let cart = stored["report"].as_str().unwrap().to_string();
    let reader = crate::support::TEST_TOKEN;
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    let id = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    let patient = wl["tasks"][0]["patient"].as_str().unwrap().to_string();
    let sign = format!("/api/v1/worklist/{id}/sign");
    let body = r#"{"statements":["窦性心律","急性下壁心肌梗死"],"text":"II、III、aVF 导联 ST 段抬高，建议立即转诊 PCI 医院"}"#;

    // Not claimed: refused, nothing stored.
    assert_eq!(call(&srv.http, "POST", &sign, reader, Some(body)).0, 409);
    assert_eq!(
        call(
            &srv.http,
            "POST",
            &format!("/api/v1/worklist/{id}/claim"),
            reader,
            None
        )
        .0,
        200
    );
    // Nothing to sign: refused, nothing stored.
    assert_eq!(
        call(
            &srv.http,
            "POST",
            &sign,
            reader,
            Some(r#"{"statements":[" "],"text":""}"#)
        )
        .0,
        400
    );
    let (st, r) = call(&srv.http, "POST", &sign, reader, Some(body));
    assert_eq!(st, 200, "{r}");
    let signed = r["report"].as_str().unwrap().to_string();
    assert_eq!(r["task"]["state"], "completed");
    assert_eq!(r["task"]["report"], signed.as_str());
    // Signed once: a second signature is refused.
    assert_eq!(call(&srv.http, "POST", &sign, reader, Some(body)).0, 409);
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    assert_eq!(wl["tasks"].as_array().unwrap().len(), 0, "{wl}");

    // The patient's ECG is now the signed version 2; the cart's version 1 stays.
    let (st, b) = srv.get(&format!("/api/v1/patients/{patient}/reports?kind=ecg"));
    assert_eq!(st, 200, "{b}");
    let head = &b["reports"][0];
    assert_eq!(head["meta"]["hash"], signed.as_str());
    assert_eq!(head["meta"]["version"], 2);
    let rep = &head["report"];
    assert_eq!(rep["status"], "final");
    assert_eq!(rep["ecg"]["confirmation"]["state"], "confirmed");
    assert_eq!(rep["ecg"]["confirmation"]["physician"], "dr.zx");
    assert_eq!(rep["ecg"]["confirmation"]["centre"], "fx-ecg");
    assert_eq!(rep["ecg"]["confirmation"]["task"], id.as_str());
    assert_eq!(rep["ecg"]["statements"][1]["text"], "急性下壁心肌梗死");
    assert!(
        rep["ecg"]["critical"].is_object(),
        "STEMI is critical: {rep}"
    );
    assert!(rep["conclusion"].as_str().unwrap().contains("PCI"));
    let (st, old) = srv.get(&format!("/api/v1/reports/{cart}"));
    assert_eq!(st, 200);
    assert_ne!(old["status"], "final", "{old}");

    // A crash after the report's commit and before the task's event: simulated by cutting the
    // event off the log; at start-up the task is completed from the signed report.
    srv.kill9();
    let log = std::fs::read_to_string(data.join("tasks.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.last().unwrap().contains("\"signed\""), "{log}");
    std::fs::write(
        data.join("tasks.log"),
        format!("{}\n", lines[..lines.len() - 1].join("\n")),
    )
    .unwrap();
    let srv = Server::start(&data, &["--config", &cfg]);
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    assert_eq!(
        wl["tasks"].as_array().unwrap().len(),
        0,
        "completed again: {wl}"
    );
    let log = std::fs::read_to_string(data.join("tasks.log")).unwrap();
    assert!(log.lines().last().unwrap().contains(&signed), "{log}");
}

/// An open server-sent event stream read line by line.
pub(crate) struct EventStream {
    r: std::io::BufReader<std::net::TcpStream>,
    status: u16,
}

impl EventStream {
    pub(crate) fn open(http: &str, token: &str, last_event_id: Option<&str>) -> EventStream {
        use std::io::{BufRead, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n"
        );
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        EventStream { r, status }
    }

    /// The next event (`event`, `id`, `data`), skipping comments; `None` on timeout.
    pub(crate) fn next(&mut self, within: Duration) -> Option<(String, String, String)> {
        use std::io::BufRead;
        self.r.get_ref().set_read_timeout(Some(within)).unwrap();
        let (mut ev, mut id, mut data) = (String::new(), String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            match self.r.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\r', '\n']);
            // Chunked transfer: chunk-size lines are hex numbers, skip them.
            if !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit()) && !l.contains(':') {
                continue;
            }
            if l.is_empty() {
                if !ev.is_empty() || !data.is_empty() {
                    return Some((ev, id, data));
                }
                continue;
            }
            if let Some(v) = l.strip_prefix("event:") {
                ev = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("id:") {
                id = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
    }

    /// The next `task` event within `within`.
    fn next_task(&mut self, within: Duration) -> Option<(String, serde_json::Value)> {
        let until = std::time::Instant::now() + within;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            let (ev, id, data) = self.next(left)?;
            if ev == "task" {
                return Some((id, serde_json::from_str(&data).unwrap()));
            }
        }
        None
    }
}

#[test]
fn the_event_stream_carries_task_changes_to_readers_and_senders_and_replays_after_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    // A clinician of another hospital, neither on the roster nor the sender: test-zy-token.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[[clinician]]\nid = \"dr.zy\"\ninstitution = \"FX-ZY\"\nrole = \"clinician\"\ntoken_sha256 = \"2661155b867f068dc53fa868a49d56f7d33ddad80e4c42133f67821653c26671\"\n");
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);

    // Opening a stream is audited once; a principal who is not a clinician is refused.
    let before = audit_lines(&data).len();
    let mut reader = EventStream::open(&srv.http, crate::support::TEST_TOKEN, None);
    assert_eq!(reader.status, 200);
    let (ev, ready_id, _) = reader.next(Duration::from_secs(5)).unwrap();
    assert_eq!((ev.as_str(), ready_id.as_str()), ("ready", "0.0"));
    let recs = audit_lines(&data)[before..].to_vec();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "task_events");
    assert_eq!(
        EventStream::open(&srv.http, PRIVACY_TOKEN, None).status,
        403
    );
    let mut sender = EventStream::open(&srv.http, SQ01_TOKEN, None);
    assert_eq!(sender.next(Duration::from_secs(5)).unwrap().0, "ready");
    let mut other = EventStream::open(&srv.http, "test-zy-token", None);
    assert_eq!(other.next(Duration::from_secs(5)).unwrap().0, "ready");

    // The community centre uploads an ECG: the reader's and the sender's streams carry the
    // new task within a second; the other hospital's clinician's does not.
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    let sent = std::time::Instant::now();
    let r = crate::worklist::post_ecg(&srv.http, SQ01_TOKEN, &ecg);
    assert!(r.status() < 300);
    let (id1, t) = reader
        .next_task(Duration::from_secs(1))
        .expect("task event within 1 s");
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(t["state"], "scheduled");
    assert_eq!(t["institution"], "FX-SQ01");
    assert_eq!(t["centre"], "fx-ecg");
    assert!(
        t.get("patient").is_none() && t.get("patient_name").is_none(),
        "no patient data: {t}"
    );
    let task = t["id"].as_str().unwrap().to_string();
    let (_, t2) = sender
        .next_task(Duration::from_secs(1))
        .expect("the sender's stream");
    assert_eq!(t2["id"], task.as_str());
    assert!(
        other.next_task(Duration::from_millis(500)).is_none(),
        "not another hospital's"
    );

    // The reader claims it; the stream says who holds it.
    let (st, _) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{task}/claim"),
        crate::support::TEST_TOKEN,
        None,
    );
    assert_eq!(st, 200);
    let (id2, t) = reader.next_task(Duration::from_secs(1)).unwrap();
    assert_eq!(t["state"], "in_progress");
    assert_eq!(t["claimed_by"], "dr.zx");
    let tasks_seq = |id: &str| id.split('.').next().unwrap().parse::<u64>().unwrap();
    assert!(tasks_seq(&id2) > tasks_seq(&id1));
    drop(reader);

    // Reconnecting with Last-Event-ID replays what came after it, across a restart too.
    let mut again = EventStream::open(&srv.http, crate::support::TEST_TOKEN, Some(&id1));
    assert_eq!(again.next(Duration::from_secs(5)).unwrap().0, "ready");
    let (id, t) = again.next_task(Duration::from_secs(2)).expect("replayed");
    assert_eq!(
        (id.as_str(), t["state"].as_str()),
        (id2.as_str(), Some("in_progress"))
    );
    drop(again);
    drop(sender);
    drop(other);
    let mut srv = srv;
    srv.kill9();
    let srv = Server::start(&data, &["--config", &cfg]);
    let mut after = EventStream::open(&srv.http, crate::support::TEST_TOKEN, Some(&id1));
    assert_eq!(after.next(Duration::from_secs(5)).unwrap().0, "ready");
    let (id, _) = after
        .next_task(Duration::from_secs(2))
        .expect("replayed after restart");
    assert_eq!(id, id2);
    // An id from the future (another store): start over.
    let mut future = EventStream::open(&srv.http, crate::support::TEST_TOKEN, Some("999999"));
    assert_eq!(future.next(Duration::from_secs(5)).unwrap().0, "ready");
    assert_eq!(future.next(Duration::from_secs(5)).unwrap().0, "reset");
}

#[test]
fn the_centre_head_edits_the_roster_durably_and_sees_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    let head = crate::support::TEST_TOKEN; // dr.zx heads fx-ecg and reads there all day
    let roster = "/api/v1/centres/fx-ecg/roster";

    let (st, r) = call(&srv.http, "GET", roster, head, None);
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["roster"].as_array().unwrap().len(), 1);
    assert_eq!(r["on_duty_now"], serde_json::json!(["dr.zx"]));
    assert_eq!(r["edited_by"], serde_json::Value::Null);
    // Not a head: refused, audited.
    let ((st, _), recs) = audited(&data, || call(&srv.http, "GET", roster, SQ01_TOKEN, None));
    assert_eq!(st, 403);
    assert_eq!(recs.len(), 1);
    assert_eq!(
        call(
            &srv.http,
            "PUT",
            roster,
            SQ01_TOKEN,
            Some(r#"{"roster":[]}"#)
        )
        .0,
        403
    );
    assert_eq!(
        call(&srv.http, "GET", "/api/v1/centres/nope/roster", head, None).0,
        404
    );

    // A bad entry: 400 naming it, nothing changed.
    let (st, p) = call(
        &srv.http,
        "PUT",
        roster,
        head,
        Some(r#"{"roster":[{"reader":"dr.sq01","from":"08:00"}]}"#),
    );
    assert_eq!(st, 400, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("dr.sq01"), "{p}");
    assert_eq!(
        call(&srv.http, "GET", roster, head, None).1["roster"][0]["reader"],
        "dr.zx"
    );

    // dr.sq01 reads all day instead of dr.zx: in force at once.
    let ((st, r), recs) = audited(&data, || {
        call(
            &srv.http,
            "PUT",
            roster,
            head,
            Some(r#"{"roster":[{"reader":"dr.sq01"}]}"#),
        )
    });
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["on_duty_now"], serde_json::json!(["dr.sq01"]));
    assert_eq!(r["edited_by"], "dr.zx");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["action"], "roster_edit");
    assert_eq!(recs[0]["detail"]["readers"], serde_json::json!(["dr.sq01"]));
    assert_eq!(
        call(&srv.http, "GET", "/api/v1/worklist", head, None).0,
        403
    );
    assert_eq!(
        call(&srv.http, "GET", "/api/v1/worklist", SQ01_TOKEN, None).0,
        200
    );

    // It survives a crash.
    srv.kill9();
    let mut srv = Server::start(&data, &["--config", &cfg]);
    assert_eq!(
        call(&srv.http, "GET", "/api/v1/worklist", head, None).0,
        403
    );
    assert_eq!(
        call(&srv.http, "GET", "/api/v1/worklist", SQ01_TOKEN, None).0,
        200
    );
    let (_, r) = call(&srv.http, "GET", roster, head, None);
    assert_eq!(r["roster"][0]["reader"], "dr.sq01");

    // Back to dr.zx, who reads and signs one ECG: the workload counts it.
    let (st, _) = call(
        &srv.http,
        "PUT",
        roster,
        head,
        Some(
            r#"{"roster":[{"reader":"dr.zx","days":["mon","tue","wed","thu","fri","sat","sun"],"from":"00:00","to":"24:00"}]}"#,
        ),
    );
    assert_eq!(st, 200);
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    crate::worklist::post_ecg(&srv.http, SQ01_TOKEN, &ecg);
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", head, None);
    assert_eq!(wl["open"], 1, "{wl}");
    let id = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &srv.http,
            "POST",
            &format!("/api/v1/worklist/{id}/claim"),
            head,
            None
        )
        .0,
        200
    );
    let (st, b) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/sign"),
        head,
        Some(r#"{"statements":["窦性心律"]}"#),
    );
    assert_eq!(st, 200, "{b}");
    let (st, w) = call(
        &srv.http,
        "GET",
        "/api/v1/centres/fx-ecg/workload",
        head,
        None,
    );
    assert_eq!(st, 200, "{w}");
    let all = &w["workload"]["all"];
    assert_eq!(all["count"], 1, "{w}");
    assert_eq!(all["within_due"], 1, "{w}");
    assert_eq!(w["workload"]["by_reader"]["dr.zx"]["count"], 1, "{w}");
    assert_eq!(
        w["workload"]["by_institution"]["FX-SQ01"]["count"], 1,
        "{w}"
    );
    let (st, _) = call(
        &srv.http,
        "GET",
        "/api/v1/centres/fx-ecg/workload?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        head,
        None,
    );
    assert_eq!(st, 400);
    srv.kill9();
}

#[test]
fn a_resent_instance_makes_the_missing_task_of_its_study() {
    // A crash after an instance's commit and before its study's task (or a route configured
    // since): the PACS resends (storescu retries), huren answers duplicate — and makes the
    // task first. Reproduced here with the route added after the instance was stored.
    if !crate::dicom::dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::dicom::config(dir.path(), "");
    let data = dir.path().join("data");
    let ct = repo().join("fixtures/dicom/ct_series_1.dcm");
    let (mut srv, port) = crate::dicom::start(&data, &cfg);
    let (rc, out) = crate::dicom::storescu(&port, &[&ct], &[], true);
    assert_eq!(rc, 0, "{out}");
    srv.kill9();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\n[[reading_route]]\ninstitution = \"FX-ZX\"\nkind = \"imaging\"\ncentre = \"fx-ecg\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let (srv, port) = crate::dicom::start(&data, &cfg);
    let reader = crate::support::TEST_TOKEN;
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    assert_eq!(wl["open"], 0, "{wl}");
    let (rc, out) = crate::dicom::storescu(&port, &[&ct], &[], true);
    assert_eq!(rc, 0, "{out}");
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    assert_eq!(wl["open"], 1, "{wl}");
    assert_eq!(wl["tasks"][0]["kind"], "imaging");
    assert_eq!(wl["tasks"][0]["institution"], "FX-ZX");
    // Once: a third send changes nothing.
    crate::dicom::storescu(&port, &[&ct], &[], true);
    assert_eq!(
        call(&srv.http, "GET", "/api/v1/worklist", reader, None).1["open"],
        1
    );

    // The reader's page of an imaging task shows the study and its previews.
    let id = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    let report = wl["tasks"][0]["report"].as_str().unwrap().to_string();
    let cookie = web_session(&srv.http, reader);
    let get = |path: &str| match ureq::get(&format!("http://{}{path}", srv.http))
        .set("Cookie", &cookie)
        .call()
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let page = get(&format!("/ui/task/{id}")).into_string().unwrap();
    assert!(page.contains("id=\"study\""), "{page}");
    let img = page
        .split(&format!("/ui/task/{id}/img/{report}/"))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a preview")
        .to_string();
    let before = audit_lines(&data).len();
    let r = get(&format!("/ui/task/{id}/img/{report}/{img}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("Content-Type"), Some("image/png"));
    let recs = audit_lines(&data)[before..].to_vec();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "read_preview");
    assert_eq!(recs[0]["detail"]["task"], id.as_str());
    assert_eq!(
        get(&format!("/ui/task/{id}/img/{report}/1.2.3.4")).status(),
        404
    );
    // Not a report of this task's patient: refused.
    assert_eq!(
        get(&format!(
            "/ui/task/{id}/img/blake3:{}/{img}",
            "0".repeat(64)
        ))
        .status(),
        404
    );
}

/// A web session of `token` (sign-in with the pre-session cookie and its CSRF token):
/// the `Cookie` header value.
pub(crate) fn web_session(http: &str, token: &str) -> String {
    let base = format!("http://{http}");
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let home = agent.get(&format!("{base}/")).call().unwrap();
    let pre = home
        .header("Set-Cookie")
        .unwrap()
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("huren_presession="))
        .unwrap()
        .to_string();
    let r = match agent
        .post(&format!("{base}/ui/login"))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .set("Origin", &base)
        .set("Cookie", &format!("huren_presession={pre}"))
        .send_string(&format!("token={token}&csrf={pre}"))
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.status(), 303);
    r.all("Set-Cookie")
        .iter()
        .find(|c| c.starts_with("huren_session="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string()
}

/// Amending: a signed task's report gets a new signed version (status corrected) with the
/// reason in the report and the task's history; it supersedes the signed version, which stays
/// retrievable; it is audited once and queued for the institution like the signature (ORU
/// result status C, the reason in an NTE). Without a reason: 400, nothing changes; a task not
/// signed: 409; not a reader: 403.
#[test]
fn an_amendment_supersedes_the_signed_report_and_goes_back_corrected() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::outbox::free_port();
    let cfg = crate::outbox::config(dir.path(), port, 50);
    let data = dir.path().join("data");
    let rx = crate::outbox::Receiver::start(port, "AA", "");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    let url = format!("http://{}/api/v1/ecg", srv.http);
    ureq::post(&url)
        .set("Authorization", &format!("Bearer {SQ01_TOKEN}"))
        .set("Content-Type", "application/xml")
        .send_bytes(&ecg)
        .unwrap();
    let reader = crate::support::TEST_TOKEN;
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    let id = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    let patient = wl["tasks"][0]["patient"].as_str().unwrap().to_string();
    let amend = format!("/api/v1/worklist/{id}/amend");
    let body = r#"{"statements":["窦性心律","完全性右束支传导阻滞"],"text":"更正：右束支传导阻滞，非下壁心梗","reason":"V1 导联误读，更正诊断"}"#;
    let log = || std::fs::read_to_string(data.join("tasks.log")).unwrap();

    // Not signed yet (scheduled, then claimed): 409, nothing written.
    assert_eq!(call(&srv.http, "POST", &amend, reader, Some(body)).0, 409);
    assert_eq!(
        call(
            &srv.http,
            "POST",
            &format!("/api/v1/worklist/{id}/claim"),
            reader,
            None
        )
        .0,
        200
    );
    let before = log();
    let ((st, _), recs) = audited(&data, || {
        call(&srv.http, "POST", &amend, reader, Some(body))
    });
    assert_eq!(st, 409);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(log(), before);

    let (st, r) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/sign"),
        reader,
        Some(
            r#"{"statements":["窦性心律","急性下壁心肌梗死"],"text":"II、III、aVF 导联 ST 段抬高"}"#,
        ),
    );
    assert_eq!(st, 200, "{r}");
    let signed = r["report"].as_str().unwrap().to_string();
    crate::outbox::wait_for(10, "the signed report delivered", || {
        rx.messages().len() == 1
    });

    // No reason (blank or missing): 400, audited once, nothing changes.
    let before = log();
    for b in [
        r#"{"statements":["窦性心律"],"text":"x","reason":"  "}"#,
        r#"{"statements":["窦性心律"],"text":"x"}"#,
    ] {
        let ((st, p), recs) = audited(&data, || call(&srv.http, "POST", &amend, reader, Some(b)));
        assert_eq!(st, 400, "{p}");
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["action"], "task_amend");
    }
    assert_eq!(log(), before);
    let (_, b) = srv.get(&format!("/api/v1/patients/{patient}/reports?kind=ecg"));
    assert_eq!(b["reports"][0]["meta"]["hash"], signed.as_str());
    // Not a reader: 403.
    assert_eq!(
        call(&srv.http, "POST", &amend, PRIVACY_TOKEN, Some(body)).0,
        403
    );

    // Amended: a new version, audited once with the reason.
    let ((st, r), recs) = audited(&data, || {
        call(&srv.http, "POST", &amend, reader, Some(body))
    });
    assert_eq!(st, 200, "{r}");
    let amended = r["report"].as_str().unwrap().to_string();
    assert_ne!(amended, signed);
    assert_eq!(r["task"]["state"], "completed");
    assert_eq!(r["task"]["report"], amended.as_str());
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "task_amend");
    assert_eq!(recs[0]["detail"]["reason"], "V1 导联误读，更正诊断");
    assert_eq!(recs[0]["detail"]["report"], amended.as_str());
    let last = log().lines().last().unwrap().to_string();
    assert!(
        last.contains("\"amended\"") && last.contains("V1 导联误读") && last.contains(&amended),
        "{last}"
    );

    // It supersedes the signed version (version 3), which stays retrievable.
    let (_, b) = srv.get(&format!("/api/v1/patients/{patient}/reports?kind=ecg"));
    let head = &b["reports"][0];
    assert_eq!(head["meta"]["hash"], amended.as_str());
    assert_eq!(head["meta"]["version"], 3);
    let rep = &head["report"];
    assert_eq!(rep["status"], "corrected");
    assert_eq!(
        rep["ecg"]["confirmation"]["amendment_reason"],
        "V1 导联误读，更正诊断"
    );
    assert_eq!(rep["ecg"]["confirmation"]["task"], id.as_str());
    assert_eq!(rep["ecg"]["statements"][1]["text"], "完全性右束支传导阻滞");
    let (st, old) = srv.get(&format!("/api/v1/reports/{signed}"));
    assert_eq!(st, 200);
    assert_eq!(old["status"], "final", "{old}");

    // Queued and delivered to the institution: result status C, the reason in an NTE.
    crate::outbox::wait_for(10, "the amended report delivered", || {
        rx.messages().len() == 2
    });
    let msg = &rx.messages()[1];
    let msh10 = &amended.strip_prefix("blake3:").unwrap()[..20];
    assert!(msg.contains(msh10), "{msg}");
    let obr: Vec<&str> = msg
        .split('\r')
        .find(|s| s.starts_with("OBR|"))
        .unwrap()
        .split('|')
        .collect();
    assert_eq!(obr[25], "C", "{msg}");
    assert!(msg.contains("NTE|1|L|V1 导联误读，更正诊断|RE"), "{msg}");

    // A crash after the amended report's commit and before the task's event (simulated by
    // cutting the event off the log): at the next start the amendment is recorded from the
    // report. The history is kept; nothing is delivered twice.
    srv.kill9();
    let text = log();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.last().unwrap().contains("\"amended\""), "{text}");
    std::fs::write(
        data.join("tasks.log"),
        format!("{}\n", lines[..lines.len() - 1].join("\n")),
    )
    .unwrap();
    let srv = Server::start(&data, &["--config", &cfg]);
    let last = log().lines().last().unwrap().to_string();
    assert!(
        last.contains("\"amended\"") && last.contains("V1 导联误读") && last.contains(&amended),
        "recorded again at start-up: {last}"
    );
    let amendments = log().lines().filter(|l| l.contains("\"amended\"")).count();
    assert_eq!(amendments, 1);
    let (_, b) = srv.get(&format!("/api/v1/patients/{patient}/reports?kind=ecg"));
    assert_eq!(b["reports"][0]["meta"]["hash"], amended.as_str());
    let n = rx.messages().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.messages().len(), n, "nothing delivered twice");
}

/// Imaging: a study the community centre sends (STOW-RS) becomes a task on the imaging
/// centre's worklist; the holder signs it with impression statements and findings text → a
/// new, final version of the study report with the reading (findings, impression, reader,
/// centre, task), superseding the preliminary one (still retrievable), queued for the
/// institution as an imaging ORU^R01 (OBR-24 RAD); an amendment makes it corrected.
#[test]
fn an_imaging_task_is_signed_with_findings_and_impression() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::outbox::free_port();
    let cfg = crate::outbox::config(dir.path(), port, 50);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\n[[centre]]\nid = \"fx-img\"\nname = \"影像诊断中心\"\ninstitution = \"FX-ZX\"\n\n[[reading_route]]\ninstitution = \"FX-SQ01\"\nkind = \"imaging\"\ncentre = \"fx-img\"\n\n[[roster]]\nreader = \"dr.zx\"\ncentre = \"fx-img\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let rx = crate::outbox::Receiver::start(port, "AA", "");
    let srv = Server::start(&data, &["--config", &cfg]);
    let ct = std::fs::read(crate::dicom::fixture("ct_series_1.dcm")).unwrap();
    let (ctype, body) = crate::dicom_web::multipart(&[("application/dicom", &ct)]);
    let (st, b) =
        crate::dicom_web::post(&srv, "/dicomweb/studies", Some(SQ01_TOKEN), &ctype, &body);
    assert_eq!(st, 200, "{b}");

    let reader = crate::support::TEST_TOKEN;
    let (st, wl) = call(&srv.http, "GET", "/api/v1/worklist", reader, None);
    assert_eq!(st, 200, "{wl}");
    let t = wl["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "imaging")
        .unwrap_or_else(|| panic!("an imaging task: {wl}"))
        .clone();
    assert_eq!(t["centre"], "fx-img");
    assert_eq!(t["institution"], "FX-SQ01");
    let id = t["id"].as_str().unwrap().to_string();
    let prelim = t["report"].as_str().unwrap().to_string();
    let patient = t["patient"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &srv.http,
            "POST",
            &format!("/api/v1/worklist/{id}/claim"),
            reader,
            None
        )
        .0,
        200
    );
    let sign = format!("/api/v1/worklist/{id}/sign");
    let ((st, r), recs) = audited(&data, || {
        call(
            &srv.http,
            "POST",
            &sign,
            reader,
            Some(
                r#"{"statements":["右肺上叶结节","建议3个月后复查"],"text":"右肺上叶见一实性结节，直径约 8 mm，边界清楚。"}"#,
            ),
        )
    });
    assert_eq!(st, 200, "{r}");
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["action"], "task_sign");
    let signed = r["report"].as_str().unwrap().to_string();
    assert_eq!(r["task"]["state"], "completed");
    assert_eq!(r["task"]["report"], signed.as_str());

    // The study report's head is the signed version; the preliminary one stays.
    let (st, b) = srv.get(&format!("/api/v1/patients/{patient}/reports?kind=imaging"));
    assert_eq!(st, 200, "{b}");
    let head = &b["reports"][0];
    assert_eq!(head["meta"]["hash"], signed.as_str(), "{b}");
    let rep = &head["report"];
    assert_eq!(rep["status"], "final");
    let g = &rep["imaging"]["reading"];
    assert_eq!(
        g["findings"],
        "右肺上叶见一实性结节，直径约 8 mm，边界清楚。"
    );
    assert_eq!(g["impression"][0], "右肺上叶结节");
    assert_eq!(g["impression"][1], "建议3个月后复查");
    assert_eq!(g["reader"], "dr.zx");
    assert_eq!(g["centre"], "fx-img");
    assert_eq!(g["task"], id.as_str());
    assert_eq!(rep["conclusion"], "右肺上叶结节；建议3个月后复查");
    let (st, old) = srv.get(&format!("/api/v1/reports/{prelim}"));
    assert_eq!(st, 200);
    assert!(old["imaging"]["reading"].is_null(), "{old}");

    // Back to the institution as an imaging ORU.
    crate::outbox::wait_for(10, "the signed study report delivered", || {
        rx.messages().len() == 1
    });
    let msg = rx.messages()[0].clone();
    let obr: Vec<&str> = msg
        .split('\r')
        .find(|s| s.starts_with("OBR|"))
        .unwrap()
        .split('|')
        .collect();
    assert_eq!(obr[24], "RAD", "{msg}");
    assert_eq!(obr[25], "F", "{msg}");
    assert!(msg.contains("右肺上叶结节"), "{msg}");

    // Amended: corrected, with the reason.
    let (st, r) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/amend"),
        reader,
        Some(r#"{"statements":["右肺上叶结节"],"text":"直径约 6 mm","reason":"测量更正"}"#),
    );
    assert_eq!(st, 200, "{r}");
    let amended = r["report"].as_str().unwrap().to_string();
    let (st, a) = srv.get(&format!("/api/v1/reports/{amended}"));
    assert_eq!(st, 200);
    assert_eq!(a["status"], "corrected");
    assert_eq!(a["imaging"]["reading"]["amendment_reason"], "测量更正");
    crate::outbox::wait_for(10, "the amended study report delivered", || {
        rx.messages().len() == 2
    });
    assert!(rx.messages()[1].contains("NTE|1|L|测量更正|RE"));
}

#[test]
fn an_abandoned_claim_returns_to_the_list_and_another_reader_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[[roster]]\nreader = \"dr.sq01\"\ncentre = \"fx-ecg\"\n");
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &["--config", &cfg]);
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    crate::worklist::post_ecg(&srv.http, SQ01_TOKEN, &ecg);
    let zx = crate::support::TEST_TOKEN;
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", zx, None);
    let id = wl["tasks"][0]["id"].as_str().unwrap().to_string();
    let claim = format!("/api/v1/worklist/{id}/claim");
    assert_eq!(call(&srv.http, "POST", &claim, zx, None).0, 200);
    let (st, p) = call(&srv.http, "POST", &claim, SQ01_TOKEN, None);
    assert_eq!(st, 409, "a fresh claim is not taken over: {p}");
    assert!(p["detail"].as_str().unwrap().contains("dr.zx"), "{p}");

    // dr.zx walked away 20 minutes ago (the centre's claim timeout is 15): the claim's
    // stamp in tasks.log is moved back while the server is down.
    srv.kill9();
    let path = data.join("tasks.log");
    let log = std::fs::read_to_string(&path).unwrap();
    let old = (chrono::Utc::now() - chrono::Duration::minutes(20)).to_rfc3339();
    let moved: Vec<String> = log
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["event"] == "claimed" {
                v["at"] = old.clone().into();
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&path, moved.join("\n") + "\n").unwrap();
    let srv = Server::start(&data, &["--config", &cfg]);
    let (_, wl) = call(&srv.http, "GET", "/api/v1/worklist", SQ01_TOKEN, None);
    assert_eq!(
        wl["tasks"][0]["claimed_by"],
        serde_json::Value::Null,
        "back on the list: {wl}"
    );
    let (st, t) = call(&srv.http, "POST", &claim, SQ01_TOKEN, None);
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["task"]["claimed_by"], "dr.sq01");
    // The one who walked away cannot sign any more.
    let (st, _) = call(
        &srv.http,
        "POST",
        &format!("/api/v1/worklist/{id}/sign"),
        zx,
        Some(r#"{"statements":["窦性心律"]}"#),
    );
    assert_eq!(st, 409);
}
