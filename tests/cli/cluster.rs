//! Issue 19's first slice from the command line: `huren cluster check` against real
//! PostgreSQL and SeaweedFS (started by tests/peers/*.sh) applies the schema once and
//! round-trips a probe blob; `huren serve` with a cluster configuration refuses plainly
//! (not built yet); a bad `[store]` is a configuration error naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{huren, repo};

/// A peer server of tests/peers, stopped (and its directory removed) on drop.
struct Peer {
    script: PathBuf,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    line: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .env("PG_STOP_MODE", "immediate")
            .env("SEAWEED_STOP_TIMEOUT", "0")
            .status();
    }
}

impl Peer {
    fn get(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{key} not in {}", self.line))
            .to_string()
    }
}

/// Starts a peer on a free port block (a few tries); `None` outside CI when it cannot.
fn start(script: &str) -> Option<Peer> {
    let script = repo().join("tests/peers").join(script);
    for _ in 0..5 {
        // 20000–49999: SeaweedFS takes the port block up to +10008, below 65536.
        let port = 20_000 + ((std::process::id() as u64 * 7_919 + fastrand_port()) % 30_000) as u16;
        let tmp = tempfile::Builder::new()
            .prefix("huren-peer")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().join("d");
        let out = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .output()
            .expect("run the peer script");
        if out.status.success() {
            return Some(Peer {
                script,
                dir,
                _tmp: tmp,
                line: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            });
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} could not start and CI=true: the store peers are required (tests/peers/README.md)",
        script.display()
    );
    eprintln!("skipping: {} could not start", script.display());
    None
}

/// A number from the clock (ports differ between tries and between tests).
fn fastrand_port() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
}

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
    let Some(pg) = start("postgres.sh") else {
        return;
    };
    let Some(s3) = start("seaweedfs.sh") else {
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
        serde_json::json!([1]),
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
