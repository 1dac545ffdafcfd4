//! Issue 19 from the command line, against real PostgreSQL and SeaweedFS (started by
//! tests/peers/*.sh): `huren cluster check` applies the schema once and round-trips a probe
//! blob; `huren migrate` copies an embedded store into the cluster (checked, resumable) and
//! `huren verify --config` checks the cluster; `huren serve` with a cluster configuration
//! refuses plainly (not built yet); a bad `[store]` is a configuration error naming it.

use std::path::{Path, PathBuf};

use crate::support::huren;

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
fn cluster_check_migrates_once_and_round_trips_a_blob_and_serve_refuses_plainly() {
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
        serde_json::json!([1, 2, 3]),
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
