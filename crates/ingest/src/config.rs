//! `huren.toml`: institutions, listeners, identity secret.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// TOML syntax or schema error (the message names line and column).
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{path}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Institutions of the consortium.
    #[serde(default, rename = "institution")]
    pub institutions: Vec<Institution>,
    /// Identity settings.
    #[serde(default)]
    pub identity: Identity,
    /// MLLP listener settings.
    #[serde(default)]
    pub mllp: MllpConfig,
    /// HTTP listener settings.
    #[serde(default)]
    pub http: HttpConfig,
    /// ECG path settings.
    #[serde(default)]
    pub ecg: EcgConfig,
    /// DICOM listener settings (AE titles, limits).
    #[serde(default)]
    pub dicom: crate::dicom::DicomConfig,
    /// Recognition rules.
    #[serde(default)]
    pub recognition: RecognitionConfig,
    /// Access settings: search cap, consent lifetimes.
    #[serde(default)]
    pub access: AccessConfig,
    /// Clinician (and officer) bearer tokens, stored hashed.
    #[serde(default, rename = "clinician")]
    pub clinicians: Vec<huren_access::TokenConfig>,
    /// The reading centres (`[[centre]]`), see docs/workflow.md.
    #[serde(default, rename = "centre")]
    pub centres: Vec<huren_workflow::CentreConfig>,
    /// Which centre reads which institution's ECGs and studies (`[[reading_route]]`).
    #[serde(default, rename = "reading_route")]
    pub reading_routes: Vec<huren_workflow::RouteRule>,
    /// Due times per centre, kind and priority (`[[due_time]]`).
    #[serde(default, rename = "due_time")]
    pub due_times: Vec<huren_workflow::DueRule>,
    /// Who reads for which centre, when (`[[roster]]`).
    #[serde(default)]
    pub roster: Vec<huren_workflow::RosterEntry>,
    /// The four above, validated.
    #[serde(skip)]
    pub workflow: huren_workflow::Workflow,
    /// Alert recipient groups (`[[alert_group]]`), see docs/alerts.md.
    #[serde(default, rename = "alert_group")]
    pub alert_groups: Vec<huren_alerting::AlertGroup>,
    /// Their duty rosters (`[[alert_duty]]`).
    #[serde(default)]
    pub alert_duty: Vec<huren_alerting::AlertDuty>,
    /// Which group a sending institution's alerts go to (`[[alert_route]]`).
    #[serde(default, rename = "alert_route")]
    pub alert_routes: Vec<huren_alerting::AlertRoute>,
    /// Lab items critical beyond a bound (`[[critical_threshold]]`).
    #[serde(default, rename = "critical_threshold")]
    pub critical_thresholds: Vec<huren_alerting::Threshold>,
    /// The four above, validated.
    #[serde(skip)]
    pub alerting: huren_alerting::Alerting,
    /// Delivery of outbound messages (`[outbox]`).
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Where the store lives (`[store]`, `[store.s3]`): the embedded default, or PostgreSQL
    /// and an S3-compatible object store (issue 19, docs/cluster.md).
    #[serde(default)]
    pub store: huren_cluster::StoreConfig,
    /// The chest-pain KPIs' thresholds, minutes (`[chest_pain]`), see docs/chest-pain.md.
    #[serde(default)]
    pub chest_pain: huren_chestpain::Thresholds,
    /// Alert notices posted to a recipient group's outside channel (`[[webhook]]`), see
    /// docs/alerts.md.
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    /// The regional health information platform that receives every final and corrected
    /// report as a WS/T 500 shared document (`[regional]`), see docs/cda.md.
    #[serde(default)]
    pub regional: Option<RegionalConfig>,
    /// The resolved national-ID secret (looked up once; see [`Config::national_id_secret`]).
    #[serde(skip)]
    secret: std::sync::OnceLock<String>,
}

/// `line N: issue` for an issue that names an array-of-tables entry (`alert_group ID`,
/// `alert_duty #N`, `alert_route #N`, `critical_threshold #N`, `webhook #N`): the line of that
/// entry's `[[…]]` header in `text`. Other issues are returned as they are.
fn locate(text: &str, cfg: &Config, issue: &str) -> String {
    let numbered = |table: &str| -> Option<usize> {
        let rest = issue.strip_prefix(table)?.strip_prefix(" #")?;
        let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
        n.parse::<usize>().ok()?.checked_sub(1)
    };
    let found = ["alert_duty", "alert_route", "critical_threshold", "webhook"]
        .into_iter()
        .find_map(|t| numbered(t).map(|i| (t, i)))
        .or_else(|| {
            let id = issue.strip_prefix("alert_group ")?;
            let i = cfg.alert_groups.iter().position(|g| {
                id.starts_with(&format!("{}:", g.id)) || id.starts_with(&format!("{:?}:", g.id))
            })?;
            Some(("alert_group", i))
        });
    let Some((table, index)) = found else {
        return issue.to_string();
    };
    let header = format!("[[{table}]]");
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            l.starts_with(&header) || l.replace(' ', "").starts_with(&header)
        })
        .nth(index)
        .map(|(n, _)| n + 1);
    match line {
        Some(n) => format!("line {n}: {issue}"),
        None => issue.to_string(),
    }
}

/// A webhook of an alert recipient group (`[[webhook]]`): every notice of the group's alerts
/// (raised, each escalation step, acknowledged, cancelled) is posted to `url` as JSON, signed
/// after Standard Webhooks (HMAC-SHA256 with the secret), from the durable outbox
/// `webhooks.log`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Identifier (the outbox destination), e.g. `fx-pci-wecom`.
    pub id: String,
    /// The `[[alert_group]]` whose alerts it carries.
    pub group: String,
    /// Where to post (`https://…`; `http://` only to a loopback address).
    pub url: String,
    /// A file holding the secret, `whsec_` + base64 of at least 24 random bytes (relative
    /// paths are relative to the configuration file; mode 600 or 640).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Or an environment variable holding it.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The address huren's web pages are reached at, for the link in each message (e.g.
    /// `https://huren.fx.example`); absent: the link is the path alone.
    #[serde(default)]
    pub link_base: Option<String>,
}

/// `[regional]`: the district's regional health information platform (区域全民健康信息平台).
/// Every final and corrected report committed to the store (lab as 检验报告 C0007, imaging and
/// ECG as 检查报告 C0006) is posted to `url` as a WS/T 500 document from the durable outbox
/// `regional.log`: retried with backoff, parked after `[outbox] max_attempts`, each delivered
/// once (`Idempotency-Key` is the document id), in commit order.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionalConfig {
    /// Where each document is posted (`https://…`; `http://` only to a loopback address).
    pub url: String,
    /// The institutions whose reports go; empty (the default): every institution's.
    #[serde(default)]
    pub institutions: Vec<String>,
    /// Whether the header carries the patient's national ID (身份证号, OID
    /// 2.16.156.10011.1.3) where the original message carried it: the platform's master
    /// patient index keys on it. Default false: the operator decides the platform may see it.
    #[serde(default)]
    pub national_id: bool,
    /// A file holding the bearer token the platform requires (mode 600 or 640; relative to
    /// the configuration file), if it requires one.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Or an environment variable holding it.
    #[serde(default)]
    pub token_env: Option<String>,
    /// TLS: the CA the platform's certificate chains to and huren's client certificate (PEM),
    /// as in `[outbox.tls]`; absent: the system's trusted roots and no client certificate.
    #[serde(default)]
    pub tls: Option<OutboxTls>,
    /// Which reports: `"now"` (default) the ones committed after the first start with this
    /// section; `"start"` every report in the store, oldest first.
    #[serde(default)]
    pub from: RegionalFrom,
}

/// Where the regional push starts the first time (`[regional] from`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionalFrom {
    /// The reports committed after the first start with `[regional]`.
    #[default]
    Now,
    /// Every report in the store.
    Start,
}

/// `[access]`: the gate's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Most matches one search answers (QIDO-RS, C-FIND); default 200.
    pub search_cap: usize,
    /// Default lifetime of a recorded consent, hours; default 24.
    pub consent_ttl_hours: u32,
    /// Longest lifetime a consent may be given, hours; default 720 (30 days).
    pub consent_max_ttl_hours: u32,
    /// Wrong codes for one person within `lockout_minutes` that lock further tries for
    /// `lockout_minutes`; default 5.
    pub lockout_failures: usize,
    /// Default 15.
    pub lockout_minutes: u32,
    /// Failed authentications (wrong or missing token, refused sign-in, refused TLS
    /// handshake) of one peer address within `auth_failure_window_seconds` after which it is
    /// refused (429, `Retry-After`) until the window ends; default 20.
    pub auth_failure_limit: u64,
    /// The window: one audit record per peer address and window; default 60.
    pub auth_failure_window_seconds: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            search_cap: 200,
            consent_ttl_hours: 24,
            consent_max_ttl_hours: 720,
            lockout_failures: 5,
            lockout_minutes: 15,
            auth_failure_limit: 20,
            auth_failure_window_seconds: 60,
        }
    }
}

/// One institution (医疗机构) of the consortium.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Institution {
    /// Short code used in patient IDs (`CODE:LOCAL_ID`) and reports.
    pub code: String,
    /// Display name, e.g. 上海市奉贤区中心医院.
    pub name: String,
    /// HL7 senders this institution owns: `FACILITY` (MSH-4) or `APPLICATION/FACILITY`
    /// (MSH-3/MSH-4).
    #[serde(default)]
    pub hl7_senders: Vec<String>,
    /// Charset used when MSH-18 is empty (`UTF-8`, `GB18030`, …). Default UTF-8.
    #[serde(default)]
    pub charset: Option<String>,
    /// IANA time zone of timestamps without offset. Default `Asia/Shanghai`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Subject (URI SAN) of this institution's TLS client certificate, e.g.
    /// `urn:huren:institution:FX-ZX`.
    #[serde(default)]
    pub client_cert_uri: Option<String>,
    /// Where this institution's signed reports go back as HL7 ORU^R01 (its HIS or EMR):
    /// `mllp://host:port`. Absent: nothing is pushed (see docs/outbox.md).
    #[serde(default)]
    pub result_destination: Option<String>,
    /// Its phone (e.g. the community centre's duty phone), shown with the alerts its reports
    /// raise so the cardiologist can call back.
    #[serde(default)]
    pub phone: Option<String>,
    /// Its organisation code (统一社会信用代码, 18 characters, or the older 组织机构代码, 9):
    /// the custodian and author organisation id of its WS/T 500 documents (docs/cda.md);
    /// absent: huren's institution code stands there.
    #[serde(default)]
    pub organisation_code: Option<String>,
}

/// `[outbox]`: delivery of outbound messages (docs/outbox.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// First retry delay, milliseconds (doubled per attempt); default 1000.
    pub retry_initial_ms: u64,
    /// Longest retry delay, seconds; default 300.
    pub retry_max_secs: u64,
    /// Failed attempts after which a message is parked; default 10.
    pub max_attempts: u32,
    /// Seconds to connect, and again to wait for the ACK; default 30.
    pub ack_timeout_secs: u64,
    /// TLS for `mllps://` destinations: the CA that signs the receivers' certificates, and
    /// the client certificate huren presents (optional).
    pub tls: Option<OutboxTls>,
}

/// `[outbox.tls]` (PEM files).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxTls {
    /// CA certificates the receivers' server certificates must chain to.
    pub ca: PathBuf,
    /// huren's client certificate chain, for receivers that require one (with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            retry_initial_ms: 1000,
            retry_max_secs: 300,
            max_attempts: 10,
            ack_timeout_secs: 30,
            tls: None,
        }
    }
}

impl OutboxConfig {
    /// The delay after the `attempts`-th failed attempt (1-based): initial × 2^(n-1), capped.
    pub fn backoff(&self, attempts: u32) -> std::time::Duration {
        let cap = self.retry_max_secs.saturating_mul(1000);
        let ms = self
            .retry_initial_ms
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(40))
            .min(cap);
        std::time::Duration::from_millis(ms)
    }
}

/// A parsed result destination: `mllp://host:port` or `mllps://host:port` (TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// `host:port`, as given.
    pub addr: String,
    /// The host (the TLS server name).
    pub host: String,
    /// MLLP over TLS.
    pub tls: bool,
}

impl Destination {
    /// Parses `mllp://host:port` or `mllps://host:port`.
    pub fn parse(s: &str) -> Result<Destination, String> {
        let (rest, tls) = if let Some(r) = s.strip_prefix("mllps://") {
            (r, true)
        } else if let Some(r) = s.strip_prefix("mllp://") {
            (r, false)
        } else {
            return Err(format!(
                "{s:?} must be mllp://host:port or mllps://host:port"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let host = match rest.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains('/')
                    && port.parse::<u16>().is_ok_and(|p| p > 0) =>
            {
                host.trim_start_matches('[').trim_end_matches(']')
            }
            _ => return Err(format!("{s:?} must be mllp://host:port (port 1–65535)")),
        };
        Ok(Destination {
            addr: rest.to_string(),
            host: host.to_string(),
            tls,
        })
    }
}

/// ECG path settings.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EcgConfig {
    /// Watched folders, one per cart or ECG system export.
    #[serde(default, rename = "drop_folder")]
    pub drop_folders: Vec<DropFolder>,
    /// Critical-statement catalogue replacing the built-in one.
    #[serde(default)]
    pub critical: Option<huren_ecg::CriticalCatalogue>,
    /// Zone of local times in ECG files (default Asia/Shanghai).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// One watched ECG drop folder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropFolder {
    /// The folder; `done/` and `rejected/` are made inside it.
    pub path: PathBuf,
    /// Institution the files belong to.
    pub institution: String,
    /// Seconds between scans (default 1).
    #[serde(default = "one")]
    pub poll_secs: u64,
    /// Seconds a file must stay unchanged before it is taken (default 2).
    #[serde(default = "two")]
    pub settle_secs: u64,
}

fn one() -> u64 {
    1
}
fn two() -> u64 {
    2
}

/// HTTP listener settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// HTTPS (rustls). Without it the HTTP listener must be on a loopback address.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Memory for evaluated answers of the results and check endpoints, in MiB (default
    /// 256; 0 turns the cache off). See `docs/api.md`, "Answer cache".
    #[serde(default = "default_answer_cache_mb")]
    pub answer_cache_mb: u64,
    /// Most HTTP(S) connections at once (default 1024); a new one over the cap is closed at
    /// once.
    #[serde(default = "default_http_max_conn")]
    pub max_connections: usize,
    /// Seconds a request's headers may take to arrive (default 15; the first request's from
    /// the accept, later ones from the previous response); then the connection is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
}

fn default_http_max_conn() -> usize {
    1024
}

fn default_header_read_timeout() -> u64 {
    15
}

fn default_answer_cache_mb() -> u64 {
    256
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            tls: None,
            answer_cache_mb: default_answer_cache_mb(),
            max_connections: default_http_max_conn(),
            header_read_timeout_secs: default_header_read_timeout(),
        }
    }
}

/// Where the recognition rules are.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RecognitionConfig {
    /// The rules file (`config/recognition.toml`); relative paths are relative to the
    /// configuration file. Without rules every result is reference only (fail closed).
    #[serde(default)]
    pub rules: Option<PathBuf>,
}

/// Identity settings.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Secret for national-ID keys, inline. Prefer the `HUREN_NATIONAL_ID_SECRET` environment
    /// variable or a secret file; see [`Config::find_national_id_secret`] for the order.
    #[serde(default)]
    pub national_id_secret: Option<String>,
    /// A file holding the secret (relative paths are relative to the configuration file).
    #[serde(default)]
    pub national_id_secret_file: Option<PathBuf>,
}

/// The environment variable holding the national-ID secret.
pub const SECRET_ENV: &str = "HUREN_NATIONAL_ID_SECRET";
/// The environment variable naming a file that holds the national-ID secret.
pub const SECRET_FILE_ENV: &str = "HUREN_NATIONAL_ID_SECRET_FILE";
/// The shortest national-ID secret accepted, in bytes.
pub const SECRET_MIN_LEN: usize = 16;

/// Where the national-ID secret was found (never the value itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `HUREN_NATIONAL_ID_SECRET`.
    Env,
    /// The file named by `HUREN_NATIONAL_ID_SECRET_FILE`.
    EnvFile(PathBuf),
    /// The file named by `[identity] national_id_secret_file`.
    ConfigFile(PathBuf),
    /// `[identity] national_id_secret`.
    Config,
    /// The secret `serve --demo` generated for its data directory.
    DemoFile(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env => write!(f, "{SECRET_ENV}"),
            SecretSource::EnvFile(p) => write!(f, "{} (from {SECRET_FILE_ENV})", p.display()),
            SecretSource::ConfigFile(p) => write!(
                f,
                "{} (from [identity] national_id_secret_file)",
                p.display()
            ),
            SecretSource::Config => write!(f, "[identity] national_id_secret"),
            SecretSource::DemoFile(p) => write!(f, "{} (the demo store's own secret)", p.display()),
        }
    }
}

/// Why the national-ID secret was refused. Messages never contain the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No source holds a secret.
    #[error(
        "no national-ID secret: set {SECRET_ENV}, or name a file holding it with \
         {SECRET_FILE_ENV} or [identity] national_id_secret_file (at least {SECRET_MIN_LEN} \
         bytes; see docs/configuration.md)"
    )]
    Missing,
    /// The secret is empty.
    #[error("{0}: the national-ID secret is empty")]
    Empty(SecretSource),
    /// The secret is too short to resist guessing.
    #[error(
        "{origin}: the national-ID secret is {len} bytes; at least {SECRET_MIN_LEN} are required"
    )]
    TooShort {
        /// Where it came from.
        origin: SecretSource,
        /// Its length in bytes.
        len: usize,
    },
    /// The secret file could not be read (or is not UTF-8).
    #[error("{origin}: cannot read the national-ID secret file: {error}")]
    Read {
        /// The file.
        origin: SecretSource,
        /// Why.
        error: std::io::Error,
    },
    /// The secret file is open to other users.
    #[error(
        "{origin}: the national-ID secret file has mode {mode:03o}; it must not be readable by \
         others nor writable by group or others (chmod 600 or 640)"
    )]
    Permissions {
        /// The file.
        origin: SecretSource,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads a secret file: refuses one that others may read or that group or others may write,
/// and trims trailing line ends (`\n`, `\r\n`).
pub fn read_secret_file(path: &Path, source: SecretSource) -> Result<String, SecretError> {
    let read_err = |error| SecretError::Read {
        origin: source.clone(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o026 != 0 {
            return Err(SecretError::Permissions {
                origin: source,
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn checked_secret(s: String, source: SecretSource) -> Result<(String, SecretSource), SecretError> {
    if s.is_empty() {
        Err(SecretError::Empty(source))
    } else if s.len() < SECRET_MIN_LEN {
        Err(SecretError::TooShort {
            origin: source,
            len: s.len(),
        })
    } else {
        Ok((s, source))
    }
}

/// MLLP listener settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpConfig {
    /// Largest frame accepted, bytes (default 16 MiB).
    #[serde(default = "default_max_frame")]
    pub max_frame: usize,
    /// Seconds of silence before a connection is closed (default 300).
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Most connections at once (default 1024). Over TLS, counted after the handshake.
    #[serde(default = "default_max_conn")]
    pub max_connections: usize,
    /// Seconds a TLS handshake may take before the socket is closed (default 10).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Most TLS handshakes in progress at once (default 256); more sockets are closed at once.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
    /// Memory, MiB, that frames being received may hold beyond `frame_own_kib` per
    /// connection, shared by every connection of the listener (default 256). A frame that
    /// would pass it closes its connection.
    #[serde(default = "default_frame_budget")]
    pub frame_budget_mib: usize,
    /// What each connection may buffer without drawing on the shared budget, KiB (default 64):
    /// a small message always gets through.
    #[serde(default = "default_frame_own")]
    pub frame_own_kib: usize,
    /// TLS for the MLLP listener; absent means plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_frame_budget() -> usize {
    256
}

fn default_frame_own() -> usize {
    64
}

fn default_handshake_timeout() -> u64 {
    10
}

fn default_max_handshakes() -> usize {
    256
}

impl Default for MllpConfig {
    fn default() -> Self {
        MllpConfig {
            max_frame: default_max_frame(),
            idle_timeout_secs: default_idle(),
            max_connections: default_max_conn(),
            handshake_timeout_secs: default_handshake_timeout(),
            max_handshakes: default_max_handshakes(),
            frame_budget_mib: default_frame_budget(),
            frame_own_kib: default_frame_own(),
            tls: None,
        }
    }
}

/// TLS files (PEM).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CA that signs client certificates; when set, clients must present one (MLLP) or may
    /// (HTTPS, where clinicians use tokens).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM) of the client CA.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

fn default_max_frame() -> usize {
    16 * 1024 * 1024
}
fn default_idle() -> u64 {
    300
}
fn default_max_conn() -> usize {
    1024
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut cfg = Self::parse(&text, &path.display().to_string())?;
        if let (Some(rules), Some(dir)) = (&cfg.recognition.rules, path.parent()) {
            if rules.is_relative() {
                cfg.recognition.rules = Some(dir.join(rules));
            }
        }
        if let (Some(t), Some(dir)) = (&mut cfg.outbox.tls, path.parent()) {
            for f in [Some(&mut t.ca), t.cert.as_mut(), t.key.as_mut()]
                .into_iter()
                .flatten()
            {
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
            }
        }
        if let Some(dir) = path.parent() {
            for w in &mut cfg.webhooks {
                if let Some(f) = &w.secret_file {
                    if f.is_relative() {
                        w.secret_file = Some(dir.join(f));
                    }
                }
            }
        }
        if let Some(dir) = path.parent() {
            cfg.store.resolve_paths(dir);
        }
        if let (Some(r), Some(dir)) = (&mut cfg.regional, path.parent()) {
            let tls = r.tls.as_mut();
            let files = [r.token_file.as_mut()].into_iter().chain(
                tls.into_iter()
                    .flat_map(|t| [Some(&mut t.ca), t.cert.as_mut(), t.key.as_mut()]),
            );
            for f in files.flatten() {
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
            }
        }
        if let (Some(f), Some(dir)) = (&cfg.identity.national_id_secret_file, path.parent()) {
            if f.is_relative() {
                cfg.identity.national_id_secret_file = Some(dir.join(f));
            }
        }
        Ok(cfg)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for i in &cfg.institutions {
            if i.code.is_empty() || i.code.contains(':') || i.code.contains('|') {
                return Err(invalid(format!(
                    "institution code {:?} must be non-empty without ':' or '|'",
                    i.code
                )));
            }
            if !seen.insert(i.code.clone()) {
                return Err(invalid(format!(
                    "institution code {} appears twice",
                    i.code
                )));
            }
            if let Some(cs) = &i.charset {
                if huren_hl7::Charset::from_label(cs).is_none() {
                    return Err(invalid(format!(
                        "institution {}: unknown charset {cs:?}",
                        i.code
                    )));
                }
            }
            if let Some(d) = &i.result_destination {
                let d = Destination::parse(d).map_err(|e| {
                    invalid(format!("institution {}: result_destination {e}", i.code))
                })?;
                if d.tls && cfg.outbox.tls.is_none() {
                    return Err(invalid(format!(
                        "institution {}: result_destination mllps://{} needs [outbox.tls] with ca = the receiver's CA (PEM)",
                        i.code, d.addr
                    )));
                }
            }
            if let Some(oc) = &i.organisation_code {
                let n = oc.chars().count();
                if !(n == 18 || n == 9 || n == 10)
                    || !oc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(invalid(format!(
                        "institution {}: organisation_code {oc:?} must be an 18-character 统一社会信用代码 or a 9-character 组织机构代码",
                        i.code
                    )));
                }
            }
            if let Some(tz) = &i.time_zone {
                if tz.parse::<chrono_tz::Tz>().is_err() {
                    return Err(invalid(format!(
                        "institution {}: unknown time zone {tz:?}",
                        i.code
                    )));
                }
            }
        }
        if let Some(t) = &cfg.outbox.tls {
            if t.cert.is_some() != t.key.is_some() {
                return Err(invalid(
                    "[outbox.tls] cert and key go together (both or neither)".into(),
                ));
            }
        }
        if cfg.outbox.max_attempts == 0 || cfg.outbox.ack_timeout_secs == 0 {
            return Err(invalid(
                "[outbox] max_attempts and ack_timeout_secs must be at least 1".into(),
            ));
        }
        for c in &cfg.clinicians {
            let h = &c.token_sha256;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "clinician {}: token_sha256 must be 64 hex digits",
                    c.id
                )));
            }
        }
        let workflow = huren_workflow::WorkflowConfig {
            centres: cfg.centres.clone(),
            routes: cfg.reading_routes.clone(),
            due: cfg.due_times.clone(),
            roster: cfg.roster.clone(),
        };
        cfg.workflow = workflow
            .validate(|code| cfg.institution(code).is_some())
            .map_err(|e| invalid(format!("reading centres: {e}")))?;
        cfg.alerting = cfg
            .alert_config()
            .validate(|code| cfg.institution(code).is_some())
            .map_err(|e| {
                let located: Vec<String> = e.issues.iter().map(|i| locate(text, &cfg, i)).collect();
                invalid(format!("alerts: {}", located.join("; ")))
            })?;
        cfg.store
            .cluster()
            .map_err(|e| invalid(format!("[store]: {e}")))?;
        cfg.chest_pain
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        let mut ids = std::collections::HashSet::new();
        for (i, w) in cfg.webhooks.iter().enumerate() {
            let name = format!("webhook #{} ({})", i + 1, w.id);
            if w.id.trim().is_empty() || !ids.insert(w.id.as_str()) {
                return Err(invalid(format!("{name}: id must be non-empty and unique")));
            }
            if cfg.alerting.group(&w.group).is_none() {
                return Err(invalid(format!(
                    "{name}: group {:?} is not an [[alert_group]]",
                    w.group
                )));
            }
            let name = locate(text, &cfg, &name);
            crate::webhook::check_url(&w.url).map_err(|e| invalid(format!("{name}: url {e}")))?;
            if w.secret_file.is_some() == w.secret_env.is_some() {
                return Err(invalid(format!(
                    "{name}: name its secret with exactly one of secret_file and secret_env"
                )));
            }
        }
        if let Some(r) = &cfg.regional {
            crate::webhook::check_url(&r.url)
                .map_err(|e| invalid(format!("[regional] url {e}")))?;
            if r.token_file.is_some() && r.token_env.is_some() {
                return Err(invalid(
                    "[regional] name the token with at most one of token_file and token_env".into(),
                ));
            }
            if let Some(t) = &r.tls {
                if t.cert.is_some() != t.key.is_some() {
                    return Err(invalid(
                        "[regional.tls] cert and key go together (both or neither)".into(),
                    ));
                }
            }
            if let Some(i) = r.institutions.iter().find(|i| cfg.institution(i).is_none()) {
                return Err(invalid(format!(
                    "[regional] institutions: {i:?} is not an [[institution]]"
                )));
            }
        }
        Ok(cfg)
    }

    /// The alerting arrays as one [`huren_alerting::AlertConfig`].
    pub fn alert_config(&self) -> huren_alerting::AlertConfig {
        huren_alerting::AlertConfig {
            groups: self.alert_groups.clone(),
            duty: self.alert_duty.clone(),
            routes: self.alert_routes.clone(),
            thresholds: self.critical_thresholds.clone(),
        }
    }

    /// The institution that owns an HL7 sender (MSH-3 application, MSH-4 facility).
    pub fn institution_for_hl7(&self, application: &str, facility: &str) -> Option<&Institution> {
        let full = format!("{application}/{facility}");
        self.institutions
            .iter()
            .find(|i| i.hl7_senders.iter().any(|s| s == &full))
            .or_else(|| {
                self.institutions
                    .iter()
                    .find(|i| i.hl7_senders.iter().any(|s| s == facility))
            })
    }

    /// Where an institution's signed reports go back, if it has a destination.
    pub fn result_destination(&self, code: &str) -> Option<Destination> {
        self.institution(code)?
            .result_destination
            .as_deref()
            .and_then(|d| Destination::parse(d).ok())
    }

    /// The institution with this code.
    pub fn institution(&self, code: &str) -> Option<&Institution> {
        self.institutions.iter().find(|i| i.code == code)
    }

    /// Looks the national-ID secret up, first found wins: the environment variable
    /// `HUREN_NATIONAL_ID_SECRET`; the file named by `HUREN_NATIONAL_ID_SECRET_FILE`; the file
    /// named by `[identity] national_id_secret_file`; `[identity] national_id_secret`.
    /// `Ok(None)` when none is set. A source that is set but empty, shorter than
    /// [`SECRET_MIN_LEN`] bytes, unreadable or (a file) open to other users is an error, not a
    /// reason to try the next one. Does not fix the secret; see
    /// [`Config::set_national_id_secret`].
    pub fn find_national_id_secret(&self) -> Result<Option<(String, SecretSource)>, SecretError> {
        if let Some(v) = std::env::var_os(SECRET_ENV) {
            let s = v.into_string().map_err(|_| SecretError::Read {
                origin: SecretSource::Env,
                error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
            })?;
            return checked_secret(s, SecretSource::Env).map(Some);
        }
        let file = match std::env::var_os(SECRET_FILE_ENV) {
            Some(p) if !p.is_empty() => {
                let p = PathBuf::from(p);
                Some((p.clone(), SecretSource::EnvFile(p)))
            }
            _ => self
                .identity
                .national_id_secret_file
                .clone()
                .map(|p| (p.clone(), SecretSource::ConfigFile(p))),
        };
        if let Some((path, source)) = file {
            let s = read_secret_file(&path, source.clone())?;
            return checked_secret(s, source).map(Some);
        }
        match &self.identity.national_id_secret {
            Some(s) => checked_secret(s.clone(), SecretSource::Config).map(Some),
            None => Ok(None),
        }
    }

    /// Fixes the secret every national-ID key is computed with; the first call wins (returns
    /// false for later ones). Call before the configuration is shared.
    pub fn set_national_id_secret(&self, secret: String) -> bool {
        self.secret.set(secret).is_ok()
    }

    /// The secret fixed by [`Config::set_national_id_secret`]; `None` before. There is no
    /// default: a key under a guessable secret could be recomputed by anyone.
    pub fn national_id_secret(&self) -> Option<&str> {
        self.secret.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_finds_senders() {
        let c = Config::parse(
            r#"
[[institution]]
code = "FX-ZX"
name = "奉贤区中心医院"
hl7_senders = ["FX-ZX", "LIS2/FXZX"]
charset = "GB18030"
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.institution_for_hl7("LIS", "FX-ZX").unwrap().code, "FX-ZX");
        assert_eq!(c.institution_for_hl7("LIS2", "FXZX").unwrap().code, "FX-ZX");
        assert!(c.institution_for_hl7("LIS", "FXZX").is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let e = Config::parse("[[institution]]\ncode = 1\n", "bad.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("bad.toml") && s.contains("line 2"), "{s}");
        let e = Config::parse(
            "[[institution]]\ncode=\"A\"\nname=\"x\"\ncharset=\"EBCDIC\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("EBCDIC"));
    }

    #[test]
    fn result_destinations_are_checked_and_backoff_doubles_to_its_cap() {
        let inst = |d: &str| {
            format!("[[institution]]\ncode=\"A\"\nname=\"x\"\nresult_destination={d:?}\n")
        };
        let c = Config::parse(&inst("mllp://127.0.0.1:2575"), "c.toml").unwrap();
        assert_eq!(c.result_destination("A").unwrap().addr, "127.0.0.1:2575");
        assert!(c.result_destination("B").is_none());
        for bad in [
            "http://x:1",
            "mllp://x",
            "mllp://:1",
            "mllp://x:0",
            "mllps://x:1",
        ] {
            let e = Config::parse(&inst(bad), "c.toml").unwrap_err().to_string();
            assert!(
                e.contains("result_destination") && e.contains("institution A"),
                "{e}"
            );
        }
        let o = OutboxConfig::default();
        let secs: Vec<u64> = (1..=11).map(|n| o.backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(o.backoff(1000).as_secs(), 300);
        assert!(Config::parse("[outbox]\nmax_attempts = 0\n", "c.toml").is_err());
        // mllps:// needs [outbox.tls]; cert and key go together.
        let tls = format!(
            "{}[outbox.tls]\nca = \"ca.pem\"\n",
            inst("mllps://his.example:2576")
        );
        let d = Config::parse(&tls, "c.toml")
            .unwrap()
            .result_destination("A")
            .unwrap();
        assert_eq!((d.host.as_str(), d.tls), ("his.example", true));
        let half = format!("{tls}cert = \"c.pem\"\n");
        assert!(Config::parse(&half, "c.toml").is_err());
    }
}

#[cfg(test)]
mod secret {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn secret_files_are_trimmed_and_must_be_private() {
        let d = tempfile::tempdir().unwrap();
        let src = |p: &Path| SecretSource::ConfigFile(p.to_path_buf());
        let p = write(d.path(), "a", "0123456789abcdef\r\n", 0o600);
        assert_eq!(read_secret_file(&p, src(&p)).unwrap(), "0123456789abcdef");
        let p = write(d.path(), "b", " spaced secret value \n", 0o640);
        assert_eq!(
            read_secret_file(&p, src(&p)).unwrap(),
            " spaced secret value "
        );
        for mode in [0o644, 0o604, 0o620, 0o602, 0o666] {
            let p = write(d.path(), "c", "0123456789abcdef", mode);
            let e = read_secret_file(&p, src(&p)).unwrap_err();
            assert!(
                matches!(e, SecretError::Permissions { .. }),
                "{mode:o}: {e}"
            );
            assert!(!e.to_string().contains("0123456789abcdef"));
        }
        let p = d.path().join("missing");
        assert!(matches!(
            read_secret_file(&p, src(&p)),
            Err(SecretError::Read { .. })
        ));
    }

    #[test]
    fn secrets_must_be_long_enough() {
        assert!(matches!(
            checked_secret(String::new(), SecretSource::Config),
            Err(SecretError::Empty(_))
        ));
        let e = checked_secret("fifteen-bytes!!".into(), SecretSource::Config).unwrap_err();
        assert!(matches!(e, SecretError::TooShort { len: 15, .. }), "{e}");
        assert!(!e.to_string().contains("fifteen"));
        assert!(checked_secret("sixteen-bytes!!!".into(), SecretSource::Config).is_ok());
    }

    #[test]
    fn no_secret_until_one_is_fixed() {
        let c = Config::default();
        assert_eq!(c.national_id_secret(), None);
        assert!(c.set_national_id_secret("s1-0123456789abcdef".into()));
        assert!(!c.set_national_id_secret("s2-0123456789abcdef".into()));
        assert_eq!(c.national_id_secret(), Some("s1-0123456789abcdef"));
    }

    /// The configuration's sources, when the environment sets none (the environment's are
    /// covered by the CLI tests, which control the server's environment).
    #[test]
    fn configuration_sources() {
        if std::env::var_os(SECRET_ENV).is_some() || std::env::var_os(SECRET_FILE_ENV).is_some() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        assert!(Config::default()
            .find_national_id_secret()
            .unwrap()
            .is_none());
        let short = Config::parse("[identity]\nnational_id_secret = \"short\"\n", "t").unwrap();
        assert!(short.find_national_id_secret().is_err());
        write(d.path(), "s", "file-secret-0123456789\n", 0o600);
        let cfg = d.path().join("huren.toml");
        std::fs::write(
            &cfg,
            "[identity]\nnational_id_secret_file = \"s\"\nnational_id_secret = \"inline-0123456789abcdef\"\n",
        )
        .unwrap();
        let c = Config::load(&cfg).unwrap();
        let (s, src) = c.find_national_id_secret().unwrap().unwrap();
        assert_eq!(s, "file-secret-0123456789");
        assert_eq!(src, SecretSource::ConfigFile(d.path().join("s")));
        let inline = Config::parse(
            "[identity]\nnational_id_secret = \"inline-0123456789abcdef\"\n",
            "t",
        )
        .unwrap();
        let (s, src) = inline.find_national_id_secret().unwrap().unwrap();
        assert_eq!(
            (s.as_str(), src),
            ("inline-0123456789abcdef", SecretSource::Config)
        );
    }
}

#[cfg(test)]
mod shipped {
    #[test]
    fn the_shipped_example_config_is_valid() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/huren.toml");
        let c = super::Config::load(&p).unwrap();
        assert_eq!(c.institutions.len(), 4);
        assert_eq!(
            c.institution_for_hl7("LIS", "FX-SQ01").unwrap().code,
            "FX-SQ01"
        );
        assert!(c.institution_for_hl7("PACS", "FX-SQ01").is_none());
    }

    #[test]
    fn alerting_errors_name_the_line_of_their_entry() {
        let text = r#"
[[institution]]
code = "FX-ZX"
name = "中心医院"

[[alert_group]]
id = "fx-pci"
institution = "FX-ZX"

[[alert_route]]
institution = "FX-ZX"
kind = "stemi"
group = "fx-pci"

[[alert_route]]
institution = "FX-ZX"
kind = "lab_critical"
group = "nope"

[[alert_group]]
id = "other"
institution = "FX-ZZ"
"#;
        let e = super::Config::parse(text, "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 15: alert_route #2"), "{e}");
        assert!(e.contains("line 20: alert_group other"), "{e}");
        let hook = r#"
[[institution]]
code = "FX-ZX"
name = "中心医院"

[[alert_group]]
id = "fx-pci"
institution = "FX-ZX"

[[webhook]]
id = "w"
group = "fx-pci"
url = "http://relay.example/x"
secret_env = "X"
"#;
        let e = super::Config::parse(hook, "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 10: webhook #1 (w): url"), "{e}");
    }

    #[test]
    fn organisation_codes_are_checked() {
        let ok = "[[institution]]\ncode = \"A\"\nname = \"a\"\norganisation_code = \"12310120425123456X\"\n";
        assert!(super::Config::parse(ok, "c.toml").is_ok());
        let bad = ok.replace("12310120425123456X", "123");
        let e = super::Config::parse(&bad, "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("organisation_code"), "{e}");
    }
}
