//! Issue 19 from the command line, against real PostgreSQL and SeaweedFS (started by
//! tests/peers/*.sh): `huren cluster check` applies the schema once and round-trips a probe
//! blob; `huren migrate` copies an embedded store into the cluster (checked, resumable) and
//! `huren verify --config` checks the cluster; two `huren serve` nodes on one cluster share
//! reports, alerts, consents and the audit trail, and one killed leaves the other answering;
//! `serve --demo` on a cluster refuses plainly (not built yet); a bad `[store]` is a
//! configuration error naming it.

use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::alerts::{alerts, until, CARDIO};
use crate::support::{huren, msa, oru, Mllp, Server};
use crate::worklist::{call, EventStream};

/// The peer servers, started and stopped as the cluster crate's own tests do.
#[path = "../../crates/cluster/tests/cluster/support.rs"]
#[allow(dead_code)]
mod peers;
use peers::Peer;

fn cluster_config(dir: &Path, pg: &Peer, s3: &Peer) -> PathBuf {
    let p = dir.join("huren.toml");
    std::fs::write(
        &p,
        format!(
            "[store]\nbackend = \"cluster\"\npostgres = \"{}\"\n\n[store.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            pg.line,
            s3.get("endpoint"),
            s3.get("bucket"),
            s3.get("region"),
            s3.get("access_key_id"),
            s3.get("secret_access_key"),
        ),
    )
    .unwrap();
    p
}

#[test]
fn cluster_check_migrates_once_and_round_trips_a_blob_and_serve_demo_refuses_plainly() {
    let (Some(pg), Some(s3)) = (peers::postgres(), peers::seaweedfs()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = cluster_config(dir.path(), &pg, &s3);
    let cfg = cfg.to_str().unwrap();

    let (code, lines, err) = huren(&["cluster", "check", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["postgres"], "ok");
    assert_eq!(lines[0]["s3"], "ok");
    assert_eq!(
        lines[0]["migrations_applied"],
        serde_json::json!([1, 2, 3, 4]),
        "{lines:?}"
    );
    // A second node (or a second check) finds the schema applied.
    let (code, lines, err) = huren(&["cluster", "check", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["migrations_applied"], serde_json::json!([]));
    assert!(
        !err.contains(&s3.get("secret_access_key")),
        "no secret in the output"
    );

    let (code, _, err) = huren(&[
        "serve",
        "--demo",
        "--config",
        cfg,
        "--http",
        "127.0.0.1:0",
        "--mllp",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not built yet"), "{err}");

    // The probe blob is named by no row: an orphan, kept through its grace period; a grace
    // period under five minutes is refused.
    let (code, lines, err) = huren(&["cluster", "sweep", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["swept"], true, "{lines:?}");
    assert_eq!(lines[0]["removed"], 0, "{lines:?}");
    let (code, _, err) = huren(&["cluster", "sweep", "--config", cfg, "--grace-secs", "10"]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 300 s"), "{err}");
}

#[test]
fn a_bad_store_section_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huren.toml");
    std::fs::write(
        &p,
        "[store]\nbackend = \"cluster\"\npostgres = \"host=127.0.0.1 user=huren\"\n\n[store.s3]\nendpoint = \"http://s3.example.org\"\nbucket = \"b\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n",
    )
    .unwrap();
    let (code, _, err) = huren(&["cluster", "check", "--config", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("[store]") && err.contains("http"), "{err}");
    std::fs::write(&p, "[store]\nbackend = \"sharded\"\n").unwrap();
    let (code, _, err) = huren(&["cluster", "check", "--config", p.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("backend"), "{err}");
}

#[test]
fn migrate_copies_an_embedded_store_into_the_cluster_and_verify_checks_it() {
    let (Some(pg), Some(s3)) = (peers::postgres(), peers::seaweedfs()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = cluster_config(dir.path(), &pg, &s3);
    let secret = dir.path().join("national-id-secret");
    std::fs::write(&secret, "migrate-test-secret-of-enough-length").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[identity]\nnational_id_secret_file = \"{}\"\n\n{}",
            secret.display(),
            std::fs::read_to_string(&cfg).unwrap()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, _, err) = huren(&[
        "demo-data",
        "--config",
        cfg,
        "--data",
        data,
        "--reports",
        "3000",
        "--patients",
        "400",
    ]);
    assert_eq!(code, 0, "{err}");

    let (code, lines, err) = huren(&["migrate", "--from", data, "--to-config", cfg]);
    assert_eq!(code, 0, "{err}");
    let rep = &lines[0];
    assert_eq!(rep["problems"], serde_json::json!([]), "{rep}");
    assert_eq!(rep["reports_copied"], 3000, "{rep}");
    assert_eq!(rep["reports_verified"], 3000, "{rep}");
    assert_eq!(rep["resumed_after"], 0, "{rep}");

    let (code, lines, err) = huren(&["verify", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["reports"], 3000, "{:?}", lines[0]);
    assert_eq!(lines[0]["problems"], serde_json::json!([]));
    assert!(lines[0]["blobs_checked"].as_u64().unwrap() >= 1);
    assert_eq!(lines[0]["audit"]["problems"], serde_json::json!([]));

    // Again: everything is already there; nothing is copied twice.
    let (code, lines, err) = huren(&["migrate", "--from", data, "--to-config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["reports_copied"], 0, "{:?}", lines[0]);
    assert!(lines[0]["resumed_after"].as_u64().unwrap() > 0);
    // The source is untouched and still whole.
    let (code, _, err) = huren(&["verify", "--data", data]);
    assert_eq!(code, 0, "{err}");

    // Not a store: a clear error naming it.
    let (code, _, err) = huren(&[
        "migrate",
        "--from",
        dir.path().join("nothing").to_str().unwrap(),
        "--to-config",
        cfg,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not a huren store"), "{err}");
}

/// `[store]` and `[store.s3]` of the peers, appended to a configuration.
fn add_cluster(cfg: &str, pg: &Peer, s3: &Peer) {
    let dir = tempfile::tempdir().unwrap();
    let store = std::fs::read_to_string(cluster_config(dir.path(), pg, s3)).unwrap();
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text.push('\n');
    text.push_str(&store);
    std::fs::write(cfg, text).unwrap();
}

fn node(name: &str, data: &Path, cfg: &str) -> Server {
    Server::start_env(data, &["--config", cfg], &[("HUREN_NODE", Some(name))])
}

#[test]
fn two_serve_nodes_share_reports_alerts_consents_and_the_audit_trail() {
    let (Some(pg), Some(s3)) = (peers::postgres(), peers::seaweedfs()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::alerts::config(dir.path(), 3600);
    add_cluster(&cfg, &pg, &s3);
    let mut a = node("node-a", &dir.path().join("a"), &cfg);
    let b = node("node-b", &dir.path().join("b"), &cfg);

    // A result sent to A is answered by B, and the same message sent to B is a duplicate.
    let msg = oru("FX-ZX", "C1", "P1", "F1", "130", "F");
    let ack = Mllp::connect(&a.mllp).send(&msg).expect("ACK from A");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let (st, body) = b.get("/api/v1/patients/FX-ZX:P1/reports");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["count"], 1, "{body}");
    let first = body["reports"][0]["meta"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = Mllp::connect(&b.mllp).send(&msg).expect("ACK from B");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(b.get("/api/v1/patients/FX-ZX:P1/reports").1["count"], 1);

    // A correction sent to B is the current version on A.
    let fix = oru("FX-ZX", "C2", "P1", "F1", "128", "C");
    let ack = Mllp::connect(&b.mllp).send(&fix).expect("ACK from B");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let (_, body) = a.get("/api/v1/patients/FX-ZX:P1/reports");
    assert_eq!(body["count"], 1, "{body}");
    assert_eq!(body["reports"][0]["meta"]["version"], 2, "{body}");
    assert_eq!(
        body["reports"][0]["report"]["status"], "corrected",
        "{body}"
    );
    assert_ne!(body["reports"][0]["meta"]["hash"], first.as_str(), "{body}");

    // A consent recorded on A opens the community patient's record on B at once.
    let sq = oru("LIS/FX-SQ01", "C3", "Q1", "F3", "120", "F");
    let ack = Mllp::connect(&a.mllp).send(&sq).expect("ACK from A");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    let consent = a.authorization("FX-SQ01:Q1");
    let (st, body) = b.get_with(
        "/api/v1/patients/FX-SQ01:Q1/reports",
        &[
            ("Authorization", &format!("Bearer {CARDIO}")),
            ("X-Patient-Authorization", &consent),
        ],
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["count"], 1, "{body}");

    // A STEMI uploaded to A reaches the duty cardiologist's screen on B; answered on B, it
    // is answered on A.
    let mut stream = EventStream::open(&b.http, CARDIO, None);
    assert_eq!(stream.next(Duration::from_secs(5)).unwrap().0, "ready");
    let up = crate::alerts::upload_stemi(&a);
    assert_eq!(up["critical"]["rule"], "stemi", "{up}");
    let got = loop {
        let (ev, _, data) = stream
            .next(Duration::from_secs(5))
            .expect("the alert on B's stream within 5 s");
        if ev == "alert" {
            break serde_json::from_str::<serde_json::Value>(&data).unwrap();
        }
    };
    assert_eq!(got["kind"], "stemi");
    let id = got["id"].as_str().unwrap().to_string();
    let (st, v) = call(
        &b.http,
        "POST",
        &format!("/api/v1/alerts/{id}/ack"),
        CARDIO,
        Some(r#"{"decision":"stemi_transfer","note":"导管室已启动"}"#),
    );
    assert_eq!(st, 200, "{v}");
    until("the acknowledgement on A", Duration::from_secs(5), || {
        alerts(&a, CARDIO, "all")
            .iter()
            .any(|x| x["id"] == id.as_str() && x["state"] == "acknowledged")
    });
    // Acknowledged once: A refuses a second answer by the alert's own rule.
    let (st, _) = call(
        &a.http,
        "POST",
        &format!("/api/v1/alerts/{id}/ack"),
        CARDIO,
        Some(r#"{"decision":"stemi_transfer","note":"again"}"#),
    );
    assert_eq!(st, 409);

    // The privacy officer on B sees the patient's records written by both nodes.
    let (st, v) = call(
        &b.http,
        "GET",
        "/api/v1/audit?patient=FX-SQ01:Q1",
        "test-privacy-token",
        None,
    );
    assert_eq!(st, 200, "{v}");
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"record_consent"), "{actions:?}");
    assert!(actions.contains(&"read_reports"), "{actions:?}");

    // A killed: B goes on answering and taking results.
    a.kill9();
    let ack = Mllp::connect(&b.mllp)
        .send(&oru("FX-ZX", "C4", "P2", "F4", "140", "F"))
        .expect("ACK from B");
    assert_eq!(msa(&ack).0, "AA", "{ack}");
    assert_eq!(b.get("/api/v1/patients/FX-ZX:P2/reports").1["count"], 1);
    drop(b);

    // The command line on the cluster: a query (audited on its own chain) and a verify of
    // reports, blobs and every node's audit chain.
    let cfg = cfg.as_str();
    let (code, lines, err) = huren(&[
        "query",
        "--config",
        cfg,
        "--data",
        dir.path().join("cli").to_str().unwrap(),
        "--patient",
        "FX-ZX:P1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["count"], 1, "{lines:?}");
    let (code, lines, err) = huren(&["verify", "--config", cfg]);
    assert_eq!(code, 0, "{err} {lines:?}");
    assert_eq!(lines[0]["problems"], serde_json::json!([]), "{lines:?}");
    let chains = lines[0]["audit"]["nodes"].as_u64().unwrap_or(0);
    assert!(chains >= 3, "node-a, node-b and the query's: {lines:?}");
}
