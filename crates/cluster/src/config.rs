//! `[store]` and `[store.s3]` of `huren.toml` (issue 19's names).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;

/// Which store a node runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Journal + files + sled in the data directory (the default).
    #[default]
    Embedded,
    /// PostgreSQL for the index, an S3-compatible store for blobs.
    Cluster,
}

/// `[store]` as written in the configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `backend = "embedded" | "cluster"`; default `embedded`.
    #[serde(default)]
    pub backend: Backend,
    /// libpq key/value DSN (`host=… port=… user=… dbname=…`) or a `postgresql://` URL.
    pub postgres: Option<String>,
    /// The CA certificates (PEM) the PostgreSQL server's certificate must chain to. With it
    /// every connection is TLS (`sslmode=require`, the certificate and the host name
    /// verified); relative to the configuration file.
    #[serde(default)]
    pub postgres_ca: Option<PathBuf>,
    /// huren's client certificate chain (PEM), for a server that requires one, with
    /// `postgres_key`.
    #[serde(default)]
    pub postgres_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub postgres_key: Option<PathBuf>,
    /// Allows a connection without TLS to a host that is neither a loopback address nor a
    /// unix socket. Default false: the index holds patient data.
    #[serde(default)]
    pub postgres_allow_plain: bool,
    /// `[store.s3]`.
    pub s3: Option<S3Section>,
}

/// `[store.s3]` as written in the configuration file.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// `http://host:port` or `https://host[:port]`; no path, query or credentials.
    pub endpoint: Option<String>,
    /// The bucket; it must exist.
    pub bucket: Option<String>,
    /// Signing region; default `us-east-1` (what self-hosted stores expect).
    pub region: Option<String>,
    /// Access key; else `AWS_ACCESS_KEY_ID` from the environment.
    pub access_key_id: Option<String>,
    /// Secret key; else `AWS_SECRET_ACCESS_KEY` from the environment.
    pub secret_access_key: Option<String>,
    /// Allows plain `http://` to an endpoint that is not a loopback address. Default false:
    /// blobs are patient data and the request signature does not hide them.
    #[serde(default)]
    pub allow_http: bool,
}

impl fmt::Debug for S3Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Section")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// A checked cluster configuration.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The parsed DSN.
    pub postgres: tokio_postgres::Config,
    /// TLS to PostgreSQL (`[store] postgres_ca`), or none.
    pub postgres_tls: Option<Arc<rustls::ClientConfig>>,
    /// The object store.
    pub s3: S3Settings,
}

/// A checked `[store.s3]`, credentials resolved.
#[derive(Clone)]
pub struct S3Settings {
    /// The endpoint URL.
    pub endpoint: reqwest::Url,
    /// Whether the endpoint is `http://` (loopback, or allowed by `allow_http`).
    pub allow_http: bool,
    /// The bucket.
    pub bucket: String,
    /// The signing region.
    pub region: String,
    /// The access key.
    pub access_key_id: String,
    /// The secret key (hidden from `Debug`).
    pub secret_access_key: String,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint.as_str())
            .field("allow_http", &self.allow_http)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"…")
            .finish()
    }
}

/// Why `[store]` is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required key is missing.
    #[error("[{section}] {key} is required with backend = \"cluster\"")]
    Missing {
        /// `store` or `store.s3`.
        section: &'static str,
        /// The key.
        key: &'static str,
    },
    /// `[store] postgres` does not parse.
    #[error("[store] postgres: {0}")]
    Postgres(String),
    /// The TLS files of `[store]` are not usable.
    #[error("[store] {key}: {reason}")]
    PostgresTls {
        /// The key naming the file.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// `[store.s3] endpoint` is not acceptable.
    #[error("[store.s3] endpoint: {0}")]
    Endpoint(String),
    /// Another key of `[store.s3]` is not acceptable.
    #[error("[store.s3] {key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

impl StoreConfig {
    /// The checked cluster settings, `None` for the embedded back end. Credentials missing
    /// from the file come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn cluster(&self) -> Result<Option<ClusterConfig>, ConfigError> {
        self.cluster_with_env(|k| std::env::var(k).ok())
    }

    /// [`StoreConfig::cluster`] with the environment given as a lookup (for tests).
    pub fn cluster_with_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ClusterConfig>, ConfigError> {
        if self.backend == Backend::Embedded {
            return Ok(None);
        }
        let dsn = self.postgres.as_deref().ok_or(ConfigError::Missing {
            section: "store",
            key: "postgres",
        })?;
        let mut postgres = tokio_postgres::Config::from_str(dsn)
            .map_err(|e| ConfigError::Postgres(e.to_string()))?;
        if postgres.get_hosts().is_empty() {
            return Err(ConfigError::Postgres("no host".into()));
        }
        let postgres_tls = self.postgres_tls()?;
        match (&postgres_tls, postgres.get_ssl_mode()) {
            (Some(_), _) => {
                postgres.ssl_mode(tokio_postgres::config::SslMode::Require);
            }
            (None, tokio_postgres::config::SslMode::Require) => {
                return Err(ConfigError::Postgres(
                    "sslmode=require needs postgres_ca (the CA of the server's certificate, PEM)"
                        .into(),
                ))
            }
            (None, _) => {
                let remote = postgres.get_hosts().iter().any(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => {
                        name != "localhost"
                            && !name.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
                    }
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(_) => false,
                });
                if remote && !self.postgres_allow_plain {
                    return Err(ConfigError::Postgres(
                        "a host that is not on this machine needs TLS: set postgres_ca \
                         (or postgres_allow_plain = true for a trusted network)"
                            .into(),
                    ));
                }
                // Without a CA nothing is verified: never try TLS half-way.
                postgres.ssl_mode(tokio_postgres::config::SslMode::Disable);
            }
        }
        let s3 = self.s3.as_ref().ok_or(ConfigError::Missing {
            section: "store.s3",
            key: "endpoint",
        })?;
        Ok(Some(ClusterConfig {
            postgres,
            postgres_tls,
            s3: s3.settings_with_env(env)?,
        }))
    }
}

impl StoreConfig {
    /// The rustls client of `postgres_ca` (and `postgres_cert` / `postgres_key`), if any.
    fn postgres_tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let Some(ca) = &self.postgres_ca else {
            if self.postgres_cert.is_some() || self.postgres_key.is_some() {
                return Err(ConfigError::PostgresTls {
                    key: "postgres_cert",
                    reason: "a client certificate needs postgres_ca too".into(),
                });
            }
            return Ok(None);
        };
        let err = |key: &'static str, path: &std::path::Path, e: String| ConfigError::PostgresTls {
            key,
            reason: format!("{}: {e}", path.display()),
        };
        let certs = |key: &'static str, path: &std::path::Path| {
            let list = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(key, path, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(key, path, e.to_string()))?;
            if list.is_empty() {
                return Err(err(key, path, "no certificate in it".into()));
            }
            Ok(list)
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs("postgres_ca", ca)? {
            roots
                .add(c)
                .map_err(|e| err("postgres_ca", ca, e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err("postgres_ca", ca, e.to_string()))?
            .with_root_certificates(roots);
        let cfg = match (&self.postgres_cert, &self.postgres_key) {
            (Some(cert), Some(key)) => {
                let chain = certs("postgres_cert", cert)?;
                let k = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| err("postgres_key", key, e.to_string()))?;
                b.with_client_auth_cert(chain, k)
                    .map_err(|e| err("postgres_key", key, e.to_string()))?
            }
            (None, None) => b.with_no_client_auth(),
            _ => {
                return Err(ConfigError::PostgresTls {
                    key: "postgres_cert",
                    reason: "postgres_cert and postgres_key go together".into(),
                })
            }
        };
        Ok(Some(Arc::new(cfg)))
    }

    /// Makes the TLS file names relative to `dir` (the configuration file's directory).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        for f in [
            self.postgres_ca.as_mut(),
            self.postgres_cert.as_mut(),
            self.postgres_key.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if f.is_relative() {
                *f = dir.join(&*f);
            }
        }
    }
}

impl ClusterConfig {
    /// A pool of `max_size` connections with the configured TLS (see [`crate::pool_with`]).
    pub fn pool(
        &self,
        max_size: usize,
    ) -> Result<deadpool_postgres::Pool, deadpool_postgres::BuildError> {
        crate::pool_with(self.postgres.clone(), self.postgres_tls.clone(), max_size)
    }
}

impl S3Section {
    /// The checked settings; credentials missing from the file come from the environment.
    pub fn settings(&self) -> Result<S3Settings, ConfigError> {
        self.settings_with_env(|k| std::env::var(k).ok())
    }

    /// [`S3Section::settings`] with the environment given as a lookup (for tests).
    pub fn settings_with_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Settings, ConfigError> {
        let missing = |key| ConfigError::Missing {
            section: "store.s3",
            key,
        };
        let raw = self.endpoint.as_deref().ok_or(missing("endpoint"))?;
        let endpoint =
            reqwest::Url::parse(raw).map_err(|e| ConfigError::Endpoint(e.to_string()))?;
        let host = endpoint
            .host_str()
            .ok_or_else(|| ConfigError::Endpoint("no host".into()))?;
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err(ConfigError::Endpoint(
                "credentials belong in access_key_id / secret_access_key, not the URL".into(),
            ));
        }
        if endpoint.path() != "/" || endpoint.query().is_some() || endpoint.fragment().is_some() {
            return Err(ConfigError::Endpoint(
                "no path, query or fragment: the bucket is its own key".into(),
            ));
        }
        let http = match endpoint.scheme() {
            "https" => false,
            "http" => true,
            other => {
                return Err(ConfigError::Endpoint(format!(
                    "scheme {other}: http or https"
                )))
            }
        };
        if http && !is_loopback(host) && !self.allow_http {
            return Err(ConfigError::Endpoint(format!(
                "plain http to {host}, which is not a loopback address: use https, or set allow_http = true"
            )));
        }
        let bucket = self.bucket.clone().ok_or(missing("bucket"))?;
        if !valid_bucket(&bucket) {
            return Err(ConfigError::Invalid {
                key: "bucket",
                reason: format!("{bucket:?} is not an S3 bucket name (3-63 of a-z 0-9 . -)"),
            });
        }
        let region = self.region.clone().unwrap_or_else(|| "us-east-1".into());
        if region.is_empty() {
            return Err(ConfigError::Invalid {
                key: "region",
                reason: "empty".into(),
            });
        }
        let from = |given: &Option<String>, var: &str, key| {
            given
                .clone()
                .or_else(|| env(var))
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Invalid {
                    key,
                    reason: format!("not in the file and {var} is not set"),
                })
        };
        Ok(S3Settings {
            access_key_id: from(&self.access_key_id, "AWS_ACCESS_KEY_ID", "access_key_id")?,
            secret_access_key: from(
                &self.secret_access_key,
                "AWS_SECRET_ACCESS_KEY",
                "secret_access_key",
            )?,
            endpoint,
            allow_http: http,
            bucket,
            region,
        })
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        store: StoreConfig,
    }

    fn parse(s: &str) -> Result<StoreConfig, String> {
        toml::from_str::<File>(s)
            .map(|f| f.store)
            .map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[store]
backend = "cluster"
postgres = "host=127.0.0.1 port=5432 user=huren dbname=huren"

[store.s3]
endpoint = "http://127.0.0.1:8333"
bucket = "huren"
region = "us-east-1"
access_key_id = "AK"
secret_access_key = "SK"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn issue_example_parses_and_validates() {
        let c = parse(GOOD)
            .unwrap()
            .cluster_with_env(no_env)
            .unwrap()
            .unwrap();
        assert_eq!(c.s3.bucket, "huren");
        assert!(c.s3.allow_http);
        assert_eq!(c.postgres.get_dbname(), Some("huren"));
        assert!(
            !format!("{c:?}").contains("SK"),
            "the secret is not in Debug"
        );
    }

    #[test]
    fn embedded_is_the_default() {
        let s = parse("[store]\n").unwrap();
        assert_eq!(s.backend, Backend::Embedded);
        assert!(s.cluster_with_env(no_env).unwrap().is_none());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse(&GOOD.replace("region =", "regoin =")).is_err());
        assert!(parse(&GOOD.replace("backend =", "backnd =")).is_err());
        assert!(parse(&GOOD.replace("\"cluster\"", "\"clustered\"")).is_err());
    }

    #[test]
    fn http_only_to_loopback_unless_allowed() {
        let remote = GOOD.replace("127.0.0.1:8333", "s3.example.org:8333");
        let e = parse(&remote)
            .unwrap()
            .cluster_with_env(no_env)
            .unwrap_err();
        assert!(matches!(e, ConfigError::Endpoint(_)), "{e}");
        let allowed = remote.replace("bucket =", "allow_http = true\nbucket =");
        assert!(parse(&allowed).unwrap().cluster_with_env(no_env).is_ok());
        let tls = GOOD.replace("http://127.0.0.1:8333", "https://s3.example.org");
        let c = parse(&tls)
            .unwrap()
            .cluster_with_env(no_env)
            .unwrap()
            .unwrap();
        assert!(!c.s3.allow_http);
        for ok in [
            "http://localhost:9000",
            "http://[::1]:9000",
            "http://127.0.0.2:1",
        ] {
            let s = GOOD.replace("http://127.0.0.1:8333", ok);
            assert!(parse(&s).unwrap().cluster_with_env(no_env).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://127.0.0.1",
            "not a url",
            "http://127.0.0.1:1/bucket",
            "http://u:p@127.0.0.1:1",
        ] {
            let s = GOOD.replace("http://127.0.0.1:8333", bad);
            assert!(
                parse(&s).unwrap().cluster_with_env(no_env).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn credentials_from_the_environment() {
        let s = GOOD
            .replace("access_key_id = \"AK\"\n", "")
            .replace("secret_access_key = \"SK\"\n", "");
        let cfg = parse(&s).unwrap();
        let e = cfg.cluster_with_env(no_env).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        let env = |k: &str| Some(format!("env-{k}"));
        let c = cfg.cluster_with_env(env).unwrap().unwrap();
        assert_eq!(c.s3.access_key_id, "env-AWS_ACCESS_KEY_ID");
        assert_eq!(c.s3.secret_access_key, "env-AWS_SECRET_ACCESS_KEY");
    }

    #[test]
    fn missing_and_bad_values() {
        let no_pg = GOOD.replace("postgres = ", "# ");
        assert_eq!(
            parse(&no_pg).unwrap().cluster_with_env(no_env).unwrap_err(),
            ConfigError::Missing {
                section: "store",
                key: "postgres"
            }
        );
        let bad_pg = GOOD.replace("host=127.0.0.1 port=5432", "host=127.0.0.1 port=notaport");
        assert!(matches!(
            parse(&bad_pg)
                .unwrap()
                .cluster_with_env(no_env)
                .unwrap_err(),
            ConfigError::Postgres(_)
        ));
        let bad_bucket = GOOD.replace("bucket = \"huren\"", "bucket = \"Huren_1\"");
        assert!(parse(&bad_bucket)
            .unwrap()
            .cluster_with_env(no_env)
            .is_err());
        let no_s3 = GOOD.split("[store.s3]").next().unwrap().to_string();
        assert!(parse(&no_s3).unwrap().cluster_with_env(no_env).is_err());
    }

    #[test]
    fn postgres_tls_is_required_off_this_machine_and_never_half_way() {
        let cfg = |dsn: &str, extra: &str| {
            let text = GOOD.replace(
                "postgres = \"host=127.0.0.1 port=5432 user=huren dbname=huren\"",
                &format!("postgres = \"{dsn}\"\n{extra}"),
            );
            parse(&text).unwrap().cluster_with_env(no_env)
        };
        // Local without a CA: plain, and never TLS without verification.
        let c = cfg("host=127.0.0.1 user=huren", "").unwrap().unwrap();
        assert!(c.postgres_tls.is_none());
        assert_eq!(
            c.postgres.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert!(cfg("host=localhost user=huren", "").unwrap().is_some());
        // Another host: TLS, or an explicit choice of plain.
        let e = cfg("host=db.fx.example user=huren", "").unwrap_err();
        assert!(e.to_string().contains("needs TLS"), "{e}");
        assert!(cfg(
            "host=db.fx.example user=huren",
            "postgres_allow_plain = true"
        )
        .unwrap()
        .is_some());
        // sslmode=require without a CA to verify against.
        let e = cfg("host=127.0.0.1 user=huren sslmode=require", "").unwrap_err();
        assert!(e.to_string().contains("postgres_ca"), "{e}");
        // The files are read: a missing one is named with its key.
        let e = cfg(
            "host=db.fx.example user=huren",
            "postgres_ca = \"/nonexistent/ca.pem\"",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::PostgresTls {
                    key: "postgres_ca",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = cfg("host=127.0.0.1 user=huren", "postgres_cert = \"c.pem\"").unwrap_err();
        assert!(e.to_string().contains("postgres_ca"), "{e}");
    }
}
