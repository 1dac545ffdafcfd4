//! Issue 19's operations for a multi-node deployment: liveness and readiness apart, `GET
//! /metrics` in Prometheus / OpenMetrics text (ingest counts and latencies per kind, commit
//! batches, the writer's queue, outbox backlog, open alerts and tasks, answer-cache lookups),
//! with no patient data in it, and JSON logs on request.

use crate::support::{huren_env, msa, repo, Mllp, Server};

#[test]
fn liveness_readiness_and_metrics_without_patient_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::mllp::config_file(dir.path());
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--config", &cfg]);
    let (st, v) = srv.get("/livez");
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));
    let (st, v) = srv.get("/readyz");
    assert_eq!((st, v["status"].as_str()), (200, Some("ready")), "{v}");

    // One event stream connected while the metrics are read.
    let mut stream =
        crate::worklist::EventStream::open(&srv.http, crate::support::TEST_TOKEN, None);
    assert_eq!(
        stream.next(std::time::Duration::from_secs(5)).unwrap().0,
        "ready"
    );
    // An ORU over MLLP and a community ECG (which makes a reading task).
    let mut c = Mllp::connect(&srv.mllp);
    let oru = crate::identity::oru("FX-SQ01", "M1", "SQ-1", crate::identity::NID, "F1", "4.1");
    let ack = c.send(&oru).expect("an ACK");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let ecg = std::fs::read(repo().join("fixtures/ecg/aecg-zh-patient.xml")).unwrap();
    crate::worklist::post_ecg(&srv.http, "test-sq01-token", &ecg);
    // The same lookup twice: a miss, then a hit of the answer cache.
    let path = format!("/api/v1/patients/nid:{}/results", crate::identity::NID);
    assert_eq!(srv.get(&path).0, 200);
    assert_eq!(srv.get(&path).0, 200);

    let r = ureq::get(&format!("http://{}/metrics", srv.http))
        .call()
        .unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.into_string().unwrap();
    for want in [
        "huren_ingests_total{kind=\"hl7\",outcome=\"stored\"} 1",
        "huren_ingests_total{kind=\"ecg\",outcome=\"stored\"} 1",
        "huren_ingest_seconds_count{kind=\"hl7\"} 1",
        "huren_tasks_open 1",
        "huren_commit_queue_jobs 0",
        "huren_outbox_messages{channel=\"hl7\",state=\"pending\"} 0",
        "huren_outbox_messages{channel=\"webhook\",state=\"parked\"} 0",
        "huren_alerts_open{kind=\"stemi\"} 0",
        "huren_answer_cache_lookups_total{result=\"hit\"} 1",
        "huren_event_streams 1",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
    let batches: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("huren_commit_batch_jobs_sum "))
        .and_then(|v| v.parse().ok())
        .expect("commit batch sum");
    assert!(batches >= 2.0, "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    // Counts only: no patient, no national ID, no name.
    for secret in [crate::identity::NID, "SQ-1", "FX-SQ01:", "李"] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}

#[test]
fn logs_are_json_lines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = repo().join("fixtures/ecg/aecg-zh-patient.xml");
    let (code, _, err) = huren_env(
        &[
            "ingest",
            "--data",
            data.to_str().unwrap(),
            "--institution",
            "FX-SQ01",
            file.to_str().unwrap(),
        ],
        &[
            ("HUREN_LOG", Some("info")),
            ("HUREN_LOG_FORMAT", Some("json")),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "some log at info");
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{l}"
        );
    }
}
