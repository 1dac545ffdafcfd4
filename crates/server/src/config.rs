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
    pub clinicians: Vec<crate::auth::TokenConfig>,
    /// The resolved national-ID secret (looked up once; see [`Config::national_id_secret`]).
    #[serde(skip)]
    secret: std::sync::OnceLock<String>,
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
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            search_cap: 200,
            consent_ttl_hours: 24,
            consent_max_ttl_hours: 720,
        }
    }
}

impl AccessConfig {
    /// The gate's options.
    pub fn gate_options(&self) -> crate::gate::GateOptions {
        crate::gate::GateOptions {
            search_cap: self.search_cap.max(1),
            consent_ttl: chrono::Duration::hours(i64::from(self.consent_ttl_hours.max(1))),
            consent_max_ttl: chrono::Duration::hours(i64::from(
                self.consent_max_ttl_hours
                    .max(self.consent_ttl_hours)
                    .max(1),
            )),
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
}

fn default_answer_cache_mb() -> u64 {
    256
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            tls: None,
            answer_cache_mb: default_answer_cache_mb(),
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
    /// Secret for national-ID keys. Prefer the `HUREN_NATIONAL_ID_SECRET` environment variable.
    #[serde(default)]
    pub national_id_secret: Option<String>,
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
    /// Most connections at once (default 1024).
    #[serde(default = "default_max_conn")]
    pub max_connections: usize,
    /// TLS for the MLLP listener; absent means plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for MllpConfig {
    fn default() -> Self {
        MllpConfig {
            max_frame: default_max_frame(),
            idle_timeout_secs: default_idle(),
            max_connections: default_max_conn(),
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
        Ok(cfg)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
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
            if let Some(tz) = &i.time_zone {
                if tz.parse::<chrono_tz::Tz>().is_err() {
                    return Err(invalid(format!(
                        "institution {}: unknown time zone {tz:?}",
                        i.code
                    )));
                }
            }
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
        Ok(cfg)
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

    /// The institution with this code.
    pub fn institution(&self, code: &str) -> Option<&Institution> {
        self.institutions.iter().find(|i| i.code == code)
    }

    /// The national-ID secret: environment first, then file, then a fixed development value
    /// (with one warning), so that keys are stable across restarts. Resolved once.
    pub fn national_id_secret(&self) -> &str {
        self.secret.get_or_init(|| {
            if let Ok(s) = std::env::var("HUREN_NATIONAL_ID_SECRET") {
                if !s.is_empty() {
                    return s;
                }
            }
            match &self.identity.national_id_secret {
                Some(s) if !s.is_empty() => s.clone(),
                _ => {
                    tracing::warn!(
                        "no national_id_secret configured; using the development secret"
                    );
                    "huren-development-secret".to_string()
                }
            }
        })
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
}
