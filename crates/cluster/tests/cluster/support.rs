//! Starting and stopping the peer servers: each test its own temp dir and random ports, stopped
//! by a Drop guard (so also when the test panics). Every wait is bounded by the scripts'
//! own time limits, lowered here.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use huren_cluster::{S3Section, S3Settings, StoreConfig};

/// The repository's root: the nearest directory above the crate with `tests/peers` (this
/// file is also compiled into the root crate's command-line tests).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("tests/peers").is_dir())
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .to_path_buf()
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips (outside CI) or fails (under CI=true) for a missing peer.
fn missing(what: &str) -> Option<Peer> {
    assert!(
        !ci(),
        "{what} and CI=true: the store peers are required (see tests/peers/README.md)"
    );
    eprintln!("skipping: {what} (install it as tests/peers/README.md says)");
    None
}

fn random_port(lo: u16, hi: u16) -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    lo + (h.finish() % u64::from(hi - lo)) as u16
}

/// A running peer server; stopped and its directory removed on drop.
pub struct Peer {
    script: PathBuf,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    /// The script's one line of output.
    pub line: String,
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

fn start(script: &str, name: &str, lo: u16, hi: u16) -> Peer {
    start_env(script, name, lo, hi, &[])
}

fn start_env(script: &str, name: &str, lo: u16, hi: u16, env: &[(&str, &Path)]) -> Peer {
    let script = repo().join("tests/peers").join(script);
    let mut last = String::new();
    for _ in 0..5 {
        // /tmp keeps the unix socket path short; the directory must be searchable by the
        // `postgres` user when the tests run as root.
        let tmp = tempfile::Builder::new()
            .prefix("huren-cluster-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let dir = tmp.path().join(name);
        let port = random_port(lo, hi);
        let out = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .env("PG_START_TIMEOUT", "30")
            .env("SEAWEED_START_TIMEOUT", "40")
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .output()
            .expect("run the peer script");
        if out.status.success() {
            return Peer {
                script,
                dir,
                _tmp: tmp,
                line: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            };
        }
        // A busy port fails fast; try another.
        last = String::from_utf8_lossy(&out.stderr).to_string();
        let _ = Command::new(&script).arg("stop").arg(&dir).status();
    }
    panic!("{name} did not start after 5 tries:\n{last}");
}

/// Whether PostgreSQL's `initdb` is installed (`PG_BIN`, else Debian's layout).
fn pg_installed() -> bool {
    std::env::var_os("PG_BIN")
        .map(|b| Path::new(&b).join("initdb").is_file())
        .unwrap_or_else(|| {
            std::fs::read_dir("/usr/lib/postgresql")
                .map(|rd| rd.flatten().any(|d| d.path().join("bin/initdb").is_file()))
                .unwrap_or(false)
        })
}

/// A fresh PostgreSQL database, or `None` (outside CI) when PostgreSQL is not installed.
pub fn postgres() -> Option<Peer> {
    if !pg_installed() {
        return missing("no PostgreSQL (initdb)");
    }
    Some(start("postgres.sh", "pg", 20000, 45000))
}

/// A fresh PostgreSQL that takes TLS connections only, with `ssl_dir`'s `server.pem`,
/// `server.key` and `ca.pem`; with `client` (a path prefix of `.pem` and `.key`), it also
/// requires a client certificate naming the role (tests/peers/postgres.sh).
pub fn postgres_tls(ssl_dir: &Path, client: Option<&Path>) -> Option<Peer> {
    if !pg_installed() {
        return missing("no PostgreSQL (initdb)");
    }
    let mut env = vec![("PG_SSL_DIR", ssl_dir)];
    if let Some(c) = client {
        env.push(("PG_SSL_CLIENT", c));
    }
    Some(start_env("postgres.sh", "pg", 20000, 45000, &env))
}

/// A fresh SeaweedFS S3 server with the bucket `huren`, or `None` (outside CI) when `weed` is
/// not installed. `WEED` names the binary, else the checkout's target/peers-venv, else PATH.
pub fn seaweedfs() -> Option<Peer> {
    let installed = std::env::var_os("WEED").is_some_and(|w| !w.is_empty())
        || repo().join("target/peers-venv/bin/weed").is_file()
        || Command::new("sh")
            .args(["-c", "command -v weed"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !installed {
        return missing("no SeaweedFS (weed)");
    }
    Some(start("seaweedfs.sh", "s3", 20000, 45000))
}

impl Peer {
    /// A `key=value` of the line.
    pub fn get(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{key} not in {}", self.line))
            .to_string()
    }

    /// The S3 section for this SeaweedFS peer.
    pub fn s3_section(&self) -> S3Section {
        S3Section {
            endpoint: Some(self.get("endpoint")),
            bucket: Some(self.get("bucket")),
            region: Some(self.get("region")),
            access_key_id: Some(self.get("access_key_id")),
            secret_access_key: Some(self.get("secret_access_key")),
            allow_http: false,
        }
    }

    /// The checked S3 settings for this SeaweedFS peer.
    pub fn s3_settings(&self) -> S3Settings {
        self.s3_section().settings().expect("valid [store.s3]")
    }

    /// The checked PostgreSQL config for this PostgreSQL peer, through `[store]`.
    pub fn postgres_config(&self) -> huren_cluster::PgConfig {
        let store = StoreConfig {
            backend: huren_cluster::Backend::Cluster,
            postgres: Some(self.line.clone()),
            s3: Some(S3Section {
                endpoint: Some("http://127.0.0.1:1".into()),
                bucket: Some("unused".into()),
                access_key_id: Some("unused".into()),
                secret_access_key: Some("unused".into()),
                ..S3Section::default()
            }),
            ..StoreConfig::default()
        };
        store
            .cluster()
            .expect("valid [store]")
            .expect("cluster")
            .postgres
    }
}
