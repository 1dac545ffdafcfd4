//! `huren`: the gateway binary (serve, ingest, check, query, verify, reindex).

mod bench;
mod bench_cfind;
mod bench_cstore;
mod certs;
mod demo;
mod dimse_client;
mod gen;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use huren_model::{PatientId, ReportKind};
use huren_server::{Config, Gateway};
use huren_store::{Store, StoreOptions};
use serde_json::json;

/// mimalloc: the ingest path allocates many small strings and maps per message; glibc malloc
/// spent ~20% of the MLLP benchmark in `_int_malloc`/`malloc_consolidate`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "huren",
    version,
    about = "Regional result-sharing and mutual-recognition gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway: HTTP API and MLLP listener.
    Serve {
        /// Configuration file (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Store directory (default ./huren-data; with --demo a fresh temporary directory).
        #[arg(long)]
        data: Option<PathBuf>,
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// MLLP listen address.
        #[arg(long, default_value = "127.0.0.1:2575")]
        mllp: String,
        /// Load the project's demo data and accept unknown HL7 senders.
        #[arg(long)]
        demo: bool,
        /// DICOM (DIMSE C-ECHO / C-STORE) listen address; no DICOM listener without it.
        #[arg(long)]
        dicom: Option<String>,
        /// Our DICOM AE title (default: `[dicom] ae_title`, else HUREN).
        #[arg(long)]
        dicom_aet: Option<String>,
        /// DICOM TLS listen address (certificates from `[dicom.tls]`); may run beside --dicom.
        #[arg(long)]
        dicom_tls: Option<String>,
    },
    /// The cluster back end (issue 19): `check` connects to the configured PostgreSQL and S3
    /// store, applies the schema migrations (under an advisory lock) and round-trips a probe
    /// blob; one JSON line.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Store files (HL7 v2 messages or FHS/BHS batches); one JSON line per message.
    Ingest {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "huren-data")]
        data: PathBuf,
        /// Attribute the messages to this institution code.
        #[arg(long)]
        institution: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate files offline and print diagnostics; nothing is stored.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        institution: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write files' reports as WS/T 500 CDA documents, offline (nothing is stored): lab
    /// results as 检验报告 (C0007), ECG as 检查报告 (C0006); one JSON line per document.
    Export {
        /// The format (only CDA so far).
        #[arg(long, required = true)]
        cda: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Attribute the files to this institution code.
        #[arg(long)]
        institution: Option<String>,
        /// The directory the documents are written to.
        #[arg(long)]
        out: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List a patient's reports (`INSTITUTION:LOCAL_ID` or `nid:NATIONAL_ID`).
    Query {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "huren-data")]
        data: PathBuf,
        #[arg(long)]
        patient: String,
        /// lab, imaging or ecg.
        #[arg(long)]
        kind: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every blob and check journal/index agreement (or, with a cluster `--config`,
    /// every report, blob and version chain in PostgreSQL and the object store).
    Verify {
        #[arg(long, default_value = "huren-data")]
        data: PathBuf,
        /// A configuration with `[store] backend = "cluster"`: verify the cluster.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copy an embedded store into the cluster back end (resumable; checked afterwards).
    Migrate {
        /// The embedded store's directory (no server may be writing to it).
        #[arg(long)]
        from: PathBuf,
        /// The configuration with `[store] backend = "cluster"` to copy into.
        #[arg(long)]
        to_config: PathBuf,
    },
    /// Certificates for tests and the demo.
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Fill a store with synthetic lab reports (for benchmarks).
    DemoData {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "huren-data")]
        data: PathBuf,
        /// Number of reports.
        #[arg(long, default_value_t = 1_000_000)]
        reports: u64,
        /// Number of patients they are spread over.
        #[arg(long, default_value_t = 5_000)]
        patients: u64,
    },
    /// Mutual-recognition rules.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Load generators that print throughput and latency (loopback targets only).
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Rebuild the sled index from the journal.
    Reindex {
        #[arg(long, default_value = "huren-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// ORU^R01 over MLLP: C connections, one message in flight each, every ACK checked
    /// (MSA-1 AA/CA, MSA-2 = MSH-10); prints one JSON object.
    Mllp {
        /// The MLLP listener (loopback only).
        #[arg(long, default_value = "127.0.0.1:2575")]
        addr: std::net::SocketAddr,
        /// Messages in total.
        #[arg(short = 'n', long, default_value_t = 20_000)]
        count: usize,
        /// Concurrent connections.
        #[arg(short = 'c', long, default_value_t = 16)]
        connections: usize,
        /// OBX segments per message (25 → a ~2.2 KB message, as `mllp_load.py`).
        #[arg(long, default_value_t = 25)]
        obx: usize,
        /// Chinese patient and test names and a Chinese comment.
        #[arg(long)]
        chinese: bool,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
    /// C-FIND latency over C associations, each sequential (Study Root, STUDY level, a random
    /// PatientID of the shared DICOM benchmark's load set); prints one JSON object.
    Cfind(bench_cfind::CfindBench),
    /// C-STORE throughput and response latency over C associations, each sequential (CT
    /// slices of a study per association, fresh UIDs); prints one JSON object.
    Cstore(bench_cstore::CstoreBench),
    /// An MLLP listener that acknowledges every frame (AA, MSA-2 = MSH-10) and stores
    /// nothing: the ceiling of an MLLP load generator on this machine, to read `bench mllp`
    /// and `mllp_load.py` figures against. Prints its address as a JSON line.
    MllpSink {
        /// Where to listen (loopback only; port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: std::net::SocketAddr,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Validate a rules file and list what it leaves unconfigured.
    Check {
        /// The rules file.
        #[arg(default_value = "config/recognition.toml")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Make a development CA, a server certificate and client certificates per institution.
    Dev {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// DNS names / IPs of the server certificate.
        #[arg(long = "host", default_values = ["localhost", "127.0.0.1"])]
        hosts: Vec<String>,
        /// Institution codes to make client certificates for.
        #[arg(long = "institution")]
        institutions: Vec<String>,
        /// Institution codes whose (additional) client certificate is made and revoked in
        /// `crl.pem`.
        #[arg(long = "revoke")]
        revoke: Vec<String>,
    },
}

fn main() -> ExitCode {
    // No transparent huge pages for this process. mimalloc marks its arenas for THP; when it
    // returns freed memory to the OS and touches it again, the kernel faults in and zeroes a
    // whole 2 MiB page, again and again: 10–15 % of the server's CPU under MLLP load went to
    // `clear_page`, and p99 ACK latency halved without it (15 → 6 ms, docs/benchmarks.md).
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    raise_fd_limit();
    // Library errors carry no backtrace unless the operator asks for them with
    // RUST_LIB_BACKTRACE. With RUST_BACKTRACE=1 alone (common on hosts, and still honoured for
    // panics), dicom-rs captured a full stack backtrace at the end of every data set it read
    // (its reader signals the end with an error). Set here, before any thread exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // sled's debug and trace lines print index keys and values as bytes: local patient IDs
    // and report metadata. Capped at info whatever HUREN_LOG asks (docs/configuration.md).
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUREN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        .add_directive("sled=info".parse().expect("a valid directive"));
    // HUREN_LOG_FORMAT=json: one JSON object per line (for a log collector of a multi-node
    // deployment); the fields are the same as in the text form, never a patient identifier.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("HUREN_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")) {
        builder.json().with_current_span(false).init();
    } else {
        builder.init();
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("huren: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether a file is a CDA document (its root `ClinicalDocument` in the HL7 v3 namespace,
/// seen in its first 4 KiB).
fn looks_like_cda(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    head.contains("<ClinicalDocument") && head.contains("urn:hl7-org:v3")
}

/// `huren export --cda`: each file's reports (HL7 v2 lab results, ECG XML) as WS/T 500
/// documents in `out`, offline; one JSON line per document or refusal. DICOM files are not
/// exported yet (a study becomes a report in the store, from all its instances).
fn export_cda(
    config: Option<&Path>,
    institution: Option<&str>,
    out: &Path,
    files: &[PathBuf],
) -> Result<ExitCode> {
    let config = load_config(config)?;
    fix_secret(&config, NoSecret::Ephemeral)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let now = chrono::Utc::now().to_rfc3339();
    let mut failed = false;
    for f in &expand_dirs(files)? {
        let bytes = read_file(f)?;
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "document".into());
        let reports: Vec<huren_model::Report> = if is_imaging_dicom(&bytes) {
            println_json(
                &json!({"file": f.display().to_string(), "outcome": "rejected",
                "error": "DICOM: a study's CDA comes from the store (GET /api/v1/reports/{hash}/cda), not from one file"}),
            );
            failed = true;
            continue;
        } else if is_ecg_file(&bytes) {
            let inst = institution.unwrap_or("EXPORT");
            match huren_server::ecg::prepare_ecg(&config, &bytes, inst) {
                Ok((ingest, _)) => ingest.reports,
                Err(o) => {
                    println_json(
                        &json!({"file": f.display().to_string(), "outcome": "rejected", "error": o.error}),
                    );
                    failed = true;
                    continue;
                }
            }
        } else {
            let mut all = Vec::new();
            for msg in split(&bytes, f, &mut failed) {
                match huren_server::pipeline::prepare_hl7(&config, true, msg, institution, None) {
                    Ok(p) => all.extend(p.ingest.reports),
                    Err(r) => {
                        println_json(
                            &json!({"file": f.display().to_string(), "outcome": "rejected",
                            "error": huren_server::pipeline::rejected(r).error}),
                        );
                        failed = true;
                    }
                }
            }
            all
        };
        for (i, r) in reports.iter().enumerate() {
            let hash = huren_model::ContentHash::of(&r.to_canonical_json()?);
            let mut ctx = huren_cda::CdaContext::new(hash, 1, &now, &r.source.institution);
            ctx.custodian.name = config
                .institution(&r.source.institution)
                .map(|i| i.name.clone());
            match huren_cda::document(r, &ctx) {
                Ok(xml) => {
                    let name = if reports.len() == 1 {
                        format!("{stem}.cda.xml")
                    } else {
                        format!("{stem}-{}.cda.xml", i + 1)
                    };
                    let path = out.join(name);
                    std::fs::write(&path, xml.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    println_json(
                        &json!({"file": f.display().to_string(), "outcome": "exported",
                        "document": path.display().to_string(),
                        "code": huren_cda::DocumentType::of(r.kind).code()}),
                    );
                }
                Err(e) => {
                    println_json(
                        &json!({"file": f.display().to_string(), "outcome": "rejected", "error": e.to_string()}),
                    );
                    failed = true;
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The servers of a cluster configuration, connected: a migrated pool of two and the bucket,
/// with the migrations this call applied. For the `huren cluster` commands.
async fn cluster_servers(
    cluster: &huren_cluster::ClusterConfig,
) -> Result<(huren_cluster::PgPool, Vec<i32>, huren_cluster::S3Blobs)> {
    let pool = cluster.pool(2).context("PostgreSQL pool")?;
    let applied = huren_cluster::migrate(&pool)
        .await
        .context("PostgreSQL: connecting and migrating")?;
    let blobs = huren_cluster::S3Blobs::connect(&cluster.s3).context("S3 client")?;
    Ok((pool, applied, blobs))
}

/// Runs a `huren cluster` command on a fresh runtime with the servers `path` names.
fn with_cluster<F>(
    path: &Path,
    run: impl FnOnce(huren_cluster::ClusterConfig) -> F,
) -> Result<ExitCode>
where
    F: std::future::Future<Output = Result<ExitCode>>,
{
    let config = Config::load(path)?;
    let cluster = cluster_settings(path, &config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cluster))
}

/// `huren cluster check`: the configured PostgreSQL (migrated) and S3 bucket (a probe blob
/// put, read back and verified), as one JSON line.
fn cluster_check(path: &Path) -> Result<ExitCode> {
    with_cluster(path, |cluster| async move {
        let started = std::time::Instant::now();
        let (_pool, applied, blobs) = cluster_servers(&cluster).await?;
        let probe = b"huren cluster check".to_vec();
        let hash = huren_model::ContentHash::of(&probe);
        use huren_cluster::BlobBackend as _;
        blobs
            .put(hash, probe.clone().into())
            .await
            .context("S3: writing the probe blob")?;
        let back = blobs
            .get(hash)
            .await
            .context("S3: reading the probe blob back")?;
        anyhow::ensure!(
            back.as_deref() == Some(probe.as_slice()),
            "S3: the probe blob did not come back"
        );
        println_json(&json!({
            "postgres": "ok",
            "migrations_applied": applied,
            "s3": "ok",
            "bucket": cluster.s3.bucket,
            "probe": hash.to_string(),
            "ms": started.elapsed().as_millis(),
        }));
        Ok(ExitCode::SUCCESS)
    })
}

/// `huren cluster sweep`: the orphan blobs older than the grace period removed, as one JSON
/// line.
fn cluster_sweep(path: &Path, grace_secs: u64) -> Result<ExitCode> {
    with_cluster(path, |cluster| async move {
        let started = std::time::Instant::now();
        let (pool, _, blobs) = cluster_servers(&cluster).await?;
        let r = huren_cluster::sweep(
            &pool,
            &blobs,
            std::time::Duration::from_secs(grace_secs),
            false,
        )
        .await
        .context("sweeping orphan blobs")?;
        println_json(&json!({
            "swept": r.swept,
            "old_blobs": r.listed,
            "removed": r.removed,
            "grace_secs": grace_secs,
            "ms": started.elapsed().as_millis(),
        }));
        Ok(ExitCode::SUCCESS)
    })
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

/// The recognition rules: the configured file; under `--demo` without one, the embedded
/// example; otherwise none (every result reference only, with a warning).
fn load_rules(config: &Config, demo: bool) -> Result<huren_recognition::Rules> {
    let text = match &config.recognition.rules {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading recognition rules {}", p.display()))?,
        None if demo => demo::RULES.to_string(),
        None => {
            tracing::warn!(
                "no [recognition] rules configured: every result will be reference only"
            );
            "version = \"none\"".to_string()
        }
    };
    huren_recognition::Rules::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("recognition rules: {e}"))
}

/// What a command does when no national-ID secret is configured.
enum NoSecret<'a> {
    /// Refuse: the command stores or looks up national-ID keys.
    Refuse,
    /// Demo or synthetic data: the data directory's own generated secret
    /// ([`demo::national_id_secret`]).
    DemoStore(&'a Path),
    /// The keys never leave the process (`check`): a random secret for this run.
    Ephemeral,
}

/// Looks the national-ID secret up (see [`Config::find_national_id_secret`]) and fixes it in
/// `config`. A configured but unusable secret (empty, short, unreadable file, file open to
/// others) is always an error; a missing one is handled as `missing` says.
fn fix_secret(config: &Config, missing: NoSecret<'_>) -> Result<()> {
    let secret = match config.find_national_id_secret()? {
        Some((s, source)) => {
            tracing::info!(%source, "national-ID secret loaded");
            s
        }
        None => match missing {
            NoSecret::Refuse => return Err(huren_server::config::SecretError::Missing.into()),
            NoSecret::DemoStore(data) => {
                let s = demo::national_id_secret(data)?;
                tracing::info!(
                    file = %data.join(demo::SECRET_FILE).display(),
                    "no national-ID secret configured; using the demo store's own"
                );
                s
            }
            NoSecret::Ephemeral => huren_server::auth::new_token()
                .map_err(|e| anyhow::anyhow!("no randomness for a national-ID secret: {e}"))?,
        },
    };
    config.set_national_id_secret(secret);
    Ok(())
}

/// Opens the store with the secret fixed in `config`; without one (`verify`, `reindex`,
/// `query` by local ID) the store computes no national-ID keys.
fn open_store(data: &Path, config: &Config) -> Result<Store> {
    Store::open(
        data,
        StoreOptions {
            national_id_secret: config.national_id_secret().unwrap_or_default().to_string(),
            ..Default::default()
        },
    )
    .with_context(|| format!("opening store {}", data.display()))
}

/// What a node serves from: its store, the gate's audit trail and consents, and (on a
/// cluster) the tasks that keep it current with the other nodes.
struct Served {
    store: Store,
    audit: Arc<dyn huren_audit::AuditTrail>,
    consents: Arc<huren_store::ConsentStore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The embedded store in `data`, with its audit log and consents.
fn open_embedded(data: &Path, config: &Config) -> Result<Served> {
    let store = open_store(data, config)?;
    let audit = Arc::new(
        huren_audit::AuditLog::open(data)
            .with_context(|| format!("opening audit log in {}", data.display()))?,
    );
    let consents = Arc::new(
        huren_store::ConsentStore::open(data)
            .with_context(|| format!("opening consents in {}", data.display()))?,
    );
    Ok(Served {
        store,
        audit,
        consents,
        tasks: vec![],
    })
}

/// A cluster node (`[store] backend = "cluster"`): the schema migrated (by the first node),
/// reports on PostgreSQL and S3, the workflow logs and consents on the event tables, the
/// audit trail on this node's chain, and the tasks that follow the other nodes' commits and
/// events, write audit checkpoints and sweep orphan blobs. `data` keeps what is the node's
/// own (spooled originals, rendered previews). `node` names this process's rows and audit
/// chain: each process of a cluster needs its own. Without `follow` (a command that runs
/// once) no task is started.
fn open_cluster_node(
    path: &Path,
    config: &Config,
    data: &Path,
    rt: &tokio::runtime::Runtime,
    node: String,
    follow: bool,
) -> Result<Served> {
    use huren_cluster::{BlockingEvents, EventTable, Table};
    let cluster = cluster_settings(path, config)?;
    let secret = config.national_id_secret().unwrap_or_default().to_string();
    let (reports, audit, pool, blobs) = rt.block_on(async {
        let pool = cluster.pool(16).context("PostgreSQL pool")?;
        huren_cluster::migrate(&pool)
            .await
            .context("PostgreSQL: connecting and migrating")?;
        let blobs = huren_cluster::S3Blobs::connect(&cluster.s3).context("S3 client")?;
        let reports = huren_cluster::ClusterStore::new(
            pool.clone(),
            blobs.clone(),
            huren_cluster::ClusterOptions {
                node: node.clone(),
                national_id_secret: secret.clone(),
                ..Default::default()
            },
        );
        let audit = huren_cluster::ClusterAudit::open(pool.clone(), &node)
            .await
            .context("opening this node's audit chain")?;
        Ok::<_, anyhow::Error>((reports, audit, pool, blobs))
    })?;
    let handle = rt.handle().clone();
    let sink = |t: Table| -> Arc<dyn huren_store::EventSink> {
        Arc::new(BlockingEvents::new(
            EventTable::new(pool.clone(), t, &node),
            handle.clone(),
        ))
    };
    let store = Store::open_shared(
        data,
        StoreOptions {
            national_id_secret: secret,
            ..Default::default()
        },
        Arc::new(huren_cluster::NodeReports::new(
            reports.clone(),
            handle.clone(),
        )),
        huren_store::SharedSinks {
            tasks: sink(Table::Tasks),
            roster: sink(Table::Roster),
            alerts: sink(Table::Alerts),
            cases: sink(Table::Cases),
            outbox: sink(Table::Outbox),
            webhooks: sink(Table::Webhooks),
            regional: sink(Table::Regional),
        },
    )
    .context("loading the cluster's workflow streams")?;
    let consents = Arc::new(
        huren_store::ConsentStore::shared(sink(Table::Consents))
            .context("loading the cluster's consents")?,
    );
    let tasks = if !follow {
        vec![]
    } else {
        let _in = rt.enter();
        vec![
            reports.follow_changes(cluster.postgres.clone(), cluster.postgres_tls.clone()),
            huren_cluster::follow_into_store(
                store.clone(),
                consents.clone(),
                cluster.postgres.clone(),
                cluster.postgres_tls.clone(),
            ),
            huren_cluster::spawn_checkpoints(pool.clone(), std::time::Duration::from_secs(60)),
            huren_cluster::spawn_sweeper(
                pool,
                blobs,
                std::time::Duration::from_secs(3600),
                huren_cluster::DEFAULT_GRACE,
            ),
        ]
    };
    tracing::info!(%node, "serving from the cluster");
    Ok(Served {
        store,
        audit: Arc::new(huren_cluster::NodeAudit::new(audit, handle)),
        consents,
        tasks,
    })
}

/// The gate over a store, its audit trail and consents.
/// Consent codes are keyed from the national-ID secret (fixed before this is called; the
/// command line's operator checks no code, so a run without one keys from an empty secret).
fn open_gate(
    served: &Served,
    tokens: Arc<huren_server::auth::Tokens>,
    rules: Arc<huren_recognition::Rules>,
    config: &Config,
) -> Result<huren_server::gate::Gate> {
    Ok(huren_server::gate::Gate::new(
        served.store.clone(),
        served.audit.clone(),
        served.consents.clone(),
        tokens,
        rules,
        config.national_id_secret().unwrap_or_default().as_bytes(),
        huren_server::gate_options(&config.access),
    )
    .with_workflow(config.workflow.clone())
    .with_alerting(config.alerting.clone())
    .with_institutions(
        config
            .institutions
            .iter()
            .map(|i| (i.code.clone(), i.name.clone(), i.phone.clone())),
    )
    .with_organisation_codes(
        config
            .institutions
            .iter()
            .filter_map(|i| i.organisation_code.clone().map(|oc| (i.code.clone(), oc))),
    ))
}

fn println_json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The checked `[store]` of a cluster configuration; an error naming the file otherwise.
fn cluster_settings(path: &Path, config: &Config) -> Result<huren_cluster::ClusterConfig> {
    match config
        .store
        .cluster()
        .map_err(|e| anyhow::anyhow!("{}: [store]: {e}", path.display()))?
    {
        Some(c) => Ok(c),
        None => bail!(
            "{}: [store] backend is \"embedded\", not \"cluster\"",
            path.display()
        ),
    }
}

/// The cluster store a configuration names, migrated, on a fresh runtime's pool.
async fn open_cluster(
    path: &Path,
    config: &Config,
    stop_after_failure: bool,
) -> Result<huren_cluster::ClusterStore<huren_cluster::S3Blobs>> {
    let cluster = cluster_settings(path, config)?;
    let pool = cluster.pool(8).context("PostgreSQL pool")?;
    huren_cluster::migrate(&pool)
        .await
        .context("PostgreSQL: connecting and migrating")?;
    let blobs = huren_cluster::S3Blobs::connect(&cluster.s3).context("S3 client")?;
    Ok(huren_cluster::ClusterStore::new(
        pool,
        blobs,
        huren_cluster::ClusterOptions {
            node: node_name(),
            national_id_secret: config.national_id_secret().unwrap_or_default().to_string(),
            stop_after_failure,
            ..Default::default()
        },
    ))
}

/// This node's name for the rows it writes: `HUREN_NODE`, else the host name.
fn node_name() -> String {
    std::env::var("HUREN_NODE")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "node".to_string())
}

/// `huren verify --config F` on a cluster: one JSON line; exit 1 on any problem.
fn cluster_verify(path: &Path) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = open_cluster(path, &config, false).await?;
        let rep = store.verify().await.context("verifying the cluster")?;
        let audit = huren_cluster::verify_audit(store.pool())
            .await
            .context("verifying the cluster's audit chains")?;
        let mut out = serde_json::to_value(&rep)?;
        out["audit"] = serde_json::to_value(&audit)?;
        println_json(&out);
        for p in rep.problems.iter().chain(&audit.problems) {
            eprintln!("{p}");
        }
        Ok(if rep.problems.is_empty() && audit.problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// `huren migrate --from DATA --to-config F`: the copy with a progress bar on stderr, then
/// its report as one JSON line; exit 1 when the check after the copy found problems.
fn migrate_store(from: &Path, path: &Path) -> Result<ExitCode> {
    let config = Config::load(path)?;
    if !from.join("journal.log").exists() {
        bail!("{} is not a huren store (no journal.log)", from.display());
    }
    // The cluster must key national IDs as the source did: the configured secret, or a demo
    // store's own.
    let missing = if from.join(demo::SECRET_FILE).is_file() {
        NoSecret::DemoStore(from)
    } else {
        NoSecret::Refuse
    };
    fix_secret(&config, missing)?;
    let source = std::fs::canonicalize(from)
        .with_context(|| format!("{}", from.display()))?
        .display()
        .to_string();
    let store = open_store(from, &config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let cluster = open_cluster(path, &config, true).await?;
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} journal records ({per_sec}, eta {eta})",
            )
            .context("progress bar template")?
            .progress_chars("=> "),
        );
        let rep = huren_cluster::copy_store(&store, &cluster, &source, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await
        .context("copying the store (run the command again to resume)")?;
        bar.finish();
        println_json(&serde_json::to_value(&rep)?);
        for p in &rep.problems {
            eprintln!("{p}");
        }
        Ok(if rep.problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// Whether a file given on the command line goes to the ECG reader: a format it recognises,
/// or any XML document (the reader then names what it is, e.g. GE CardioSoft, not supported,
/// instead of the file being tried as HL7 v2). DICOM imaging is told apart before this.
fn is_ecg_file(bytes: &[u8]) -> bool {
    huren_ecg::detect(bytes).is_some() || huren_ecg::is_xml(bytes)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `huren cluster …`.
#[derive(Subcommand)]
enum ClusterCmd {
    /// Check a `[store] backend = "cluster"` configuration against its servers.
    Check {
        /// Configuration file (TOML) with `[store]` and `[store.s3]`.
        #[arg(long)]
        config: PathBuf,
    },
    /// Remove the blobs no row names (a node died between its PUTs and its commit) that are
    /// older than the grace period; safe beside running nodes (docs/cluster.md).
    Sweep {
        /// Configuration file (TOML) with `[store]` and `[store.s3]`.
        #[arg(long)]
        config: PathBuf,
        /// Grace period in seconds (at least 300; default 3600).
        #[arg(long, default_value_t = 3600)]
        grace_secs: u64,
    },
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Cluster {
            cmd: ClusterCmd::Check { config },
        } => cluster_check(&config),
        Cmd::Cluster {
            cmd: ClusterCmd::Sweep { config, grace_secs },
        } => cluster_sweep(&config, grace_secs),
        Cmd::Serve {
            config,
            data,
            http,
            mllp,
            demo,
            dicom,
            dicom_aet,
            dicom_tls,
        } => serve(
            config,
            data,
            http,
            mllp,
            demo,
            (dicom, dicom_aet, dicom_tls),
        ),
        Cmd::Ingest {
            config,
            data,
            institution,
            files,
        } => {
            let config = load_config(config.as_deref())?;
            fix_secret(&config, NoSecret::Refuse)?;
            let store = open_store(&data, &config)?;
            let gw = Gateway::new(store.clone(), Arc::new(config), false);
            let mut failed = false;
            for f in &expand_dirs(&files)? {
                let bytes = read_file(f)?;
                if is_imaging_dicom(&bytes) {
                    let Some(inst) = institution.as_deref() else {
                        bail!("{}: a DICOM file needs --institution CODE", f.display());
                    };
                    let out = match huren_server::dicom::parse_file(&bytes) {
                        Ok(i) => gw.ingest_dicom_blocking(bytes, &i, inst, Some("cli")),
                        Err(e) => huren_server::dicom::DicomOutcome::refused(&e),
                    };
                    failed |= out.outcome == "rejected";
                    print_dicom(f, &out);
                    continue;
                }
                if is_ecg_file(&bytes) {
                    let Some(inst) = institution.as_deref() else {
                        bail!("{}: an ECG file needs --institution CODE", f.display());
                    };
                    let out = gw.ingest_ecg_blocking(&bytes, inst);
                    failed |= out.outcome == "rejected";
                    print_ecg(f, &out);
                    continue;
                }
                for (i, msg) in split(&bytes, f, &mut failed).into_iter().enumerate() {
                    let out = gw.ingest_hl7_blocking(msg, institution.as_deref());
                    failed |= out.outcome == "rejected";
                    print_outcome(f, i, &out);
                }
            }
            store.flush_index()?;
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Check {
            config,
            institution,
            files,
        } => {
            let config = load_config(config.as_deref())?;
            // `check` prints no keys and stores nothing: a configured secret is validated and
            // used, otherwise one for this run.
            fix_secret(&config, NoSecret::Ephemeral)?;
            let mut failed = false;
            for f in &expand_dirs(&files)? {
                let bytes = read_file(f)?;
                if looks_like_cda(&bytes) {
                    let violations = match std::str::from_utf8(&bytes) {
                        Ok(text) => huren_cda::rules::check(text)
                            .into_iter()
                            .map(|v| json!({"rule": v.rule, "message": v.message}))
                            .collect(),
                        Err(e) => {
                            vec![json!({"rule": "encoding", "message": format!("not UTF-8: {e}")})]
                        }
                    };
                    failed |= !violations.is_empty();
                    println_json(&json!({
                        "file": f.display().to_string(),
                        "kind": "cda",
                        "outcome": if violations.is_empty() { "ok" } else { "rejected" },
                        "violations": violations,
                    }));
                    continue;
                }
                if is_imaging_dicom(&bytes) {
                    let out = match huren_server::dicom::parse_file(&bytes) {
                        Ok(i) => {
                            let mut o = huren_server::dicom::DicomOutcome::checked(&i);
                            o.institution = institution.clone();
                            o
                        }
                        Err(e) => huren_server::dicom::DicomOutcome::refused(&e),
                    };
                    failed |= out.outcome == "rejected";
                    print_dicom(f, &out);
                    continue;
                }
                if is_ecg_file(&bytes) {
                    let inst = institution.as_deref().unwrap_or("CHECK");
                    let out = match huren_server::ecg::prepare_ecg(&config, &bytes, inst) {
                        Ok((_, out)) => out,
                        Err(out) => *out,
                    };
                    failed |= out.outcome == "rejected";
                    print_ecg(f, &out);
                    continue;
                }
                for (i, msg) in split(&bytes, f, &mut failed).into_iter().enumerate() {
                    let out = match huren_server::pipeline::prepare_hl7(
                        &config,
                        true,
                        msg,
                        institution.as_deref(),
                        None,
                    ) {
                        Ok(p) => huren_server::pipeline::checked(p),
                        Err(r) => huren_server::pipeline::rejected(r),
                    };
                    failed |= out.outcome == "rejected";
                    print_outcome(f, i, &out);
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Export {
            cda: _,
            config,
            institution,
            out,
            files,
        } => export_cda(config.as_deref(), institution.as_deref(), &out, &files),
        Cmd::Query {
            config,
            data,
            patient,
            kind,
            json: as_json,
        } => {
            let config_path = config;
            let config = load_config(config_path.as_deref())?;
            let pid: PatientId = patient.parse().context("--patient")?;
            let kind = match kind.as_deref() {
                None => None,
                Some("lab") => Some(ReportKind::Lab),
                Some("imaging") => Some(ReportKind::Imaging),
                Some("ecg") => Some(ReportKind::Ecg),
                Some(k) => bail!("--kind must be lab, imaging or ecg, not {k:?}"),
            };
            // A national ID is looked up by its key, which needs the secret; a local ID not.
            if matches!(pid, PatientId::National(_)) {
                fix_secret(&config, NoSecret::Refuse)?;
            }
            let rules = Arc::new(load_rules(&config, false)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let served = match (&config_path, config.store.backend) {
                (Some(path), huren_cluster::Backend::Cluster) => {
                    // Its own audit chain: never a serving node's.
                    let node = format!("{}.cli.{}", node_name(), std::process::id());
                    open_cluster_node(path, &config, &data, &rt, node, false)?
                }
                _ => open_embedded(&data, &config)?,
            };
            // The local operator reads through the gate like everyone else: one audit record
            // naming the OS user.
            let gate = open_gate(&served, Default::default(), rules, &config)?;
            let user = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".to_string());
            let operator = huren_server::auth::Principal::operator(&user);
            let (link, loaded) = rt.block_on(async {
                let asked = gate
                    .patient(
                        operator,
                        "cli_query",
                        None,
                        huren_server::gate::Ask {
                            channel: Some("cli"),
                            patient: &patient,
                            encounter: None,
                            intended: None,
                            demographics: Default::default(),
                            kind,
                        },
                    )
                    .await
                    .map_err(|p| anyhow::anyhow!("{}", p.detail()))?;
                let (link, loaded) = gate.patient_reports(&asked.token, kind)?;
                let mut rec = asked.audit_base();
                rec.returned = loaded.iter().map(|(m, _)| m.hash.to_string()).collect();
                gate.audit(rec)
                    .await
                    .map_err(|p| anyhow::anyhow!("{}", p.detail()))?;
                Ok::<_, anyhow::Error>((link, loaded))
            })?;
            let _ = &pid;
            if as_json {
                let reports: Vec<_> = loaded
                    .iter()
                    .map(|(m, r)| json!({"meta": m, "report": r.as_ref()}))
                    .collect();
                println_json(
                    &json!({"identity_link": link, "count": loaded.len(), "reports": reports}),
                );
            } else {
                println!(
                    "identity: {}",
                    serde_json::to_value(link)?.as_str().unwrap_or("?")
                );
                println!(
                    "{:<26} {:<6} {:<10} {:<11} {:<3} {:<20} report",
                    "time", "kind", "institution", "status", "ver", "item"
                );
                for (m, r) in &loaded {
                    let item = r
                        .lab
                        .as_ref()
                        .and_then(|l| l.service_name.clone().or(l.service_code.clone()))
                        .unwrap_or_default();
                    let time = r.clinical_time().map(str::to_string).unwrap_or_default();
                    println!(
                        "{:<26} {:<6} {:<10} {:<11} {:<3} {:<20} {}",
                        time,
                        m.kind.as_str(),
                        m.institution,
                        serde_json::to_value(m.status)?.as_str().unwrap_or("?"),
                        m.version,
                        item,
                        m.hash
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Migrate { from, to_config } => migrate_store(&from, &to_config),
        Cmd::Verify {
            config: Some(config),
            ..
        } => cluster_verify(&config),
        Cmd::Verify { data, config: None } => {
            if !data.join("journal.log").exists() {
                bail!("{} is not a huren store (no journal.log)", data.display());
            }
            let store = open_store(&data, &Config::default())?;
            let rep = store.verify()?;
            let audit = huren_audit::AuditLog::verify(&data)?;
            let mut out = serde_json::to_value(&rep)?;
            out["audit"] = serde_json::to_value(&audit)?;
            println_json(&out);
            if let Some(b) = &audit.broken {
                eprintln!(
                    "audit.log: chain broken at line {} (record {}): {}",
                    b.line, b.seq, b.reason
                );
            }
            Ok(if rep.problems.is_empty() && audit.broken.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Certs {
            cmd:
                CertsCmd::Dev {
                    out,
                    hosts,
                    institutions,
                    revoke,
                },
        } => {
            println_json(&certs::dev(&out, &hosts, &institutions, &revoke)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::DemoData {
            config,
            data,
            reports,
            patients,
        } => {
            let config = load_config(config.as_deref())?;
            // Synthetic data: the configured secret, else the store's own (as `serve --demo`).
            fix_secret(&config, NoSecret::DemoStore(&data))?;
            let store = open_store(&data, &config)?;
            let secret = config.national_id_secret().unwrap_or_default().to_string();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(gen::generate(store, &secret, reports, patients))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            cmd: BenchCmd::MllpSink { addr, max_seconds },
        } => {
            let out = bench::sink(addr, std::time::Duration::from_secs(max_seconds))?;
            println_json(&out);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            cmd: BenchCmd::Cstore(b),
        } => {
            let out = bench_cstore::run(b)?;
            println_json(&out);
            if out["failed"].as_u64() != Some(0) {
                bail!("{} C-STORE request(s) failed", out["failed"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            cmd: BenchCmd::Cfind(b),
        } => {
            let out = bench_cfind::run(b)?;
            println_json(&out);
            if out["failed"].as_u64() != Some(0) {
                bail!("{} C-FIND request(s) failed", out["failed"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            cmd:
                BenchCmd::Mllp {
                    addr,
                    count,
                    connections,
                    obx,
                    chinese,
                    timeout_secs,
                },
        } => {
            let out = bench::run(bench::MllpBench {
                addr,
                count,
                connections,
                obx,
                chinese,
                timeout: std::time::Duration::from_secs(timeout_secs),
            })?;
            println_json(&out);
            if out["bad_or_missing"].as_u64() != Some(0) {
                bail!("{} message(s) without a good ACK", out["bad_or_missing"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rules {
            cmd: RulesCmd::Check { file },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match huren_recognition::Rules::from_toml(&text) {
                Ok(r) => {
                    println_json(&json!({
                        "file": file,
                        "valid": true,
                        "version": r.version(),
                        "institutions": r.file.institutions.len(),
                        "items": r.file.items.len(),
                        "qc_evidence": r.file.qc.len(),
                        "unconfigured": r.unconfigured(),
                    }));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    for i in &e.issues {
                        eprintln!(
                            "{}:{}: {}",
                            file.display(),
                            i.line.map_or(String::new(), |l| l.to_string()),
                            i.message
                        );
                    }
                    println_json(&json!({"file": file, "valid": false, "errors": e.issues}));
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Reindex { data } => {
            if !data.join("journal.log").exists() {
                bail!("{} is not a huren store (no journal.log)", data.display());
            }
            let n = Store::reindex(&data)?;
            println_json(&json!({"reindexed_records": n}));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Splits a file into messages; a batch error is printed as a rejected file.
fn split<'a>(bytes: &'a [u8], f: &Path, failed: &mut bool) -> Vec<&'a [u8]> {
    match huren_hl7::split_batch(bytes) {
        Ok(v) => v,
        Err(r) => {
            *failed = true;
            print_outcome(f, 0, &huren_server::pipeline::rejected(r));
            Vec::new()
        }
    }
}

/// DICOM that is not an ECG waveform (those keep going to the ECG adapter on the CLI).
fn is_imaging_dicom(bytes: &[u8]) -> bool {
    huren_server::dicom::looks_like_dicom(bytes)
        && !huren_server::dicom::parse_file(bytes).is_ok_and(|i| {
            i.record
                .sop_class_uid
                .starts_with("1.2.840.10008.5.1.4.1.1.9.1.")
        })
}

/// Files as given, with directories replaced by every file under them (sorted), so a
/// DICOMDIR-less export folder can be ingested as is.
fn expand_dirs(files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(d)
            .with_context(|| format!("reading {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.file_name().is_some_and(|n| n != "DICOMDIR") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            walk(f, &mut out)?;
        } else {
            out.push(f.clone());
        }
    }
    Ok(out)
}

fn print_dicom(f: &Path, out: &huren_server::dicom::DicomOutcome) {
    let mut v = serde_json::to_value(out).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("file".into(), json!(f.display().to_string()));
    }
    println_json(&v);
    if let Some(e) = &out.error {
        eprintln!("{}: {e}", f.display());
    }
}

fn print_ecg(f: &Path, out: &huren_server::ecg::EcgOutcome) {
    let mut v = serde_json::to_value(out).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("file".into(), json!(f.display().to_string()));
    }
    println_json(&v);
    if let Some(e) = &out.error {
        eprintln!("{}: {e}", f.display());
    }
}

fn print_outcome(f: &Path, i: usize, out: &huren_server::Hl7Outcome) {
    let mut v = serde_json::to_value(out).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("file".into(), json!(f.display().to_string()));
        o.insert("message".into(), json!(i + 1));
    }
    println_json(&v);
    if out.outcome == "rejected" {
        for d in &out.diagnostics {
            eprintln!(
                "{}: message {}: {}: {} (HL7 0357 code {})",
                f.display(),
                i + 1,
                d.location,
                d.message,
                d.code
            );
        }
    }
}

/// Where `serve --demo` listens for DICOM when `--dicom` is not given.
const DEMO_DICOM: &str = "127.0.0.1:4242";

fn serve(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    http: String,
    mllp: String,
    demo: bool,
    (dicom, dicom_aet, dicom_tls): (Option<String>, Option<String>, Option<String>),
) -> Result<ExitCode> {
    let config_path = config;
    let mut config = load_config(config_path.as_deref())?;
    let cluster = config.store.backend == huren_cluster::Backend::Cluster;
    if demo {
        demo::workflow(&mut config)?;
        demo::alerting(&mut config)?;
    }
    let data = match data {
        Some(d) => d,
        None if demo => std::env::temp_dir().join(format!("huren-demo-{}", std::process::id())),
        None => PathBuf::from("huren-data"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // A demo on a cluster is one demo: the first node's secret and tokens are every node's,
    // and one node loads the data (`cluster_demo`).
    let cluster_demo = match &config_path {
        Some(path) if cluster && demo => {
            let settings = cluster_settings(path, &config)?;
            let fresh = serde_json::to_value(demo::new_tokens()?)?;
            let secret = huren_server::auth::new_token()
                .map_err(|e| anyhow::anyhow!("no randomness for the demo secret: {e}"))?;
            let (pool, state) = rt.block_on(async {
                let pool = settings.pool(2).context("PostgreSQL pool")?;
                huren_cluster::migrate(&pool)
                    .await
                    .context("PostgreSQL: connecting and migrating")?;
                let state = huren_cluster::demo_state(&pool, &secret, &fresh)
                    .await
                    .context("the cluster's demo")?;
                Ok::<_, anyhow::Error>((pool, state))
            })?;
            if config.find_national_id_secret()?.is_none() {
                config.set_national_id_secret(state.secret.clone());
            }
            let tokens: demo::DemoTokens =
                serde_json::from_value(state.tokens).context("the cluster's demo tokens")?;
            Some((pool, tokens))
        }
        _ => None,
    };
    // (A cluster's demo secret is fixed above.)
    if config.national_id_secret().is_none() {
        fix_secret(
            &config,
            if demo {
                NoSecret::DemoStore(&data)
            } else {
                NoSecret::Refuse
            },
        )?;
    }
    // Each webhook's secret, before anything listens (never printed).
    let webhooks = if config.webhooks.is_empty() {
        None
    } else {
        Some(
            huren_server::webhook::Webhooks::from_config(&config)
                .map_err(anyhow::Error::msg)
                .context("[[webhook]]")?,
        )
    };
    let served = match &config_path {
        Some(path) if cluster => open_cluster_node(path, &config, &data, &rt, node_name(), true)?,
        _ => open_embedded(&data, &config)?,
    };
    let store = served.store.clone();
    let rules = load_rules(&config, demo)?;
    let mut tokens = huren_server::auth::Tokens::new(&config.clinicians);
    let (demo_tokens, demo_pool) = match cluster_demo {
        Some((pool, t)) => {
            demo::register(&mut tokens, &t);
            (Some(t), Some(pool))
        }
        None if demo => (Some(demo::tokens(&mut tokens)?), None),
        None => (None, None),
    };
    let answers = Arc::new(huren_server::answers::AnswerCache::new(
        config.http.answer_cache_mb.saturating_mul(1 << 20),
    ));
    let rules = Arc::new(rules);
    let gate = Arc::new(open_gate(
        &served,
        Arc::new(tokens),
        rules.clone(),
        &config,
    )?);
    // The regional platform's courier: each attempt is audited through the gate's log first.
    let audit_gate = gate.clone();
    let regional = huren_server::regional::Regional::from_config(
        &config,
        Arc::new(move |rec| {
            let g = audit_gate.clone();
            Box::pin(async move { g.audit(rec).await.map_err(|p| p.detail().to_string()) })
        }),
    )
    .map_err(anyhow::Error::msg)
    .context("[regional]")?;
    let gw = Gateway::new(store.clone(), Arc::new(config), demo);
    // A signed report stored just before a crash completes its task now.
    let completed = gw
        .reconcile_reading()
        .context("reconciling reading tasks")?;
    if completed > 0 {
        tracing::warn!(
            completed,
            "reading tasks completed from their signed reports"
        );
    }
    // A signed report whose task completed but which is not in the outbox (a crash between
    // the two, or a result destination configured since) is queued now.
    let queued = gw.reconcile_outbox().context("reconciling the outbox")?;
    if queued > 0 {
        tracing::warn!(
            queued,
            "signed reports queued for their institutions at start-up"
        );
    }
    // A signature whose alert was not raised (a crash between the two, or a route
    // configured since) raises it now, if it is recent.
    let raised = gw
        .reconcile_alerts(chrono::Utc::now())
        .context("reconciling alerts")?;
    if raised > 0 {
        tracing::warn!(raised, "alerts of signed reports raised at start-up");
    }
    let state = huren_server::api::ApiState {
        gw: gw.clone(),
        rules,
        gate: gate.clone(),
        answers,
    };
    rt.block_on(async move {
        let http_l = tokio::net::TcpListener::bind(&http)
            .await
            .with_context(|| format!("binding HTTP {http}"))?;
        let mllp_l = tokio::net::TcpListener::bind(&mllp)
            .await
            .with_context(|| format!("binding MLLP {mllp}"))?;
        let http_addr = http_l.local_addr()?;
        let https = match &gw.config.http.tls {
            Some(t) => Some(Arc::new(huren_server::tls::setup(t, &gw.config, true)?)),
            None if !http_addr.ip().is_loopback() => bail!(
                "plain HTTP is only served on loopback ({http_addr} is not); configure [http.tls]"
            ),
            None => None,
        };
        let scheme = if https.is_some() { "https" } else { "http" };
        println_json(&json!({"listening": scheme, "addr": http_addr.to_string()}));
        println_json(&json!({"listening": "mllp", "addr": mllp_l.local_addr()?.to_string()}));
        let aet = dicom_aet.unwrap_or_else(|| gw.config.dicom.ae_title.clone());
        let mut dicom_tasks = Vec::new();
        // The demo listens for DICOM on 127.0.0.1:4242 unless told otherwise (and goes on
        // without it when that port is taken).
        let demo_dicom = match &dicom {
            None if demo => match tokio::net::TcpListener::bind(DEMO_DICOM).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(addr = DEMO_DICOM, error = %e, "demo DICOM listener not started");
                    None
                }
            },
            _ => None,
        };
        if let Some(l) = demo_dicom {
            println_json(&json!({"listening": "dicom", "addr": l.local_addr()?.to_string(), "aet": aet}));
            dicom_tasks.push(tokio::spawn(huren_server::dicom::scp::serve(l, gw.clone(), gate.clone(), aet.clone(), None)));
        }
        if let Some(addr) = &dicom {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding DICOM {addr}"))?;
            println_json(&json!({"listening": "dicom", "addr": l.local_addr()?.to_string(), "aet": aet}));
            dicom_tasks.push(tokio::spawn(huren_server::dicom::scp::serve(l, gw.clone(), gate.clone(), aet.clone(), None)));
        }
        if let Some(addr) = &dicom_tls {
            let Some(t) = &gw.config.dicom.tls else {
                bail!("--dicom-tls needs [dicom.tls] (cert, key, optional client_ca) in the configuration");
            };
            let setup = Arc::new(huren_server::tls::setup(t, &gw.config, false)?);
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding DICOM TLS {addr}"))?;
            println_json(&json!({"listening": "dicom-tls", "addr": l.local_addr()?.to_string(), "aet": aet, "client_certificates": setup.client_auth}));
            dicom_tasks.push(tokio::spawn(huren_server::dicom::scp::serve(l, gw.clone(), gate.clone(), aet.clone(), Some(setup))));
        }
        let tls = match &gw.config.mllp.tls {
            Some(t) => Some(Arc::new(huren_server::tls::setup(t, &gw.config, false)?)),
            None => None,
        };
        match (&demo_tokens, &demo_pool) {
            (Some(t), Some(pool)) => {
                // Loaded by one node of the cluster; the others print what it recorded.
                let mut stored = None;
                let authorization = huren_cluster::demo_once(pool, &node_name(), || async {
                    let (n, a) = demo::load_data(&gw, &gate)
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                    stored = Some(n);
                    Ok(a)
                })
                .await
                .context("loading the demo into the cluster")?;
                demo::announce(&gw, &http_addr.to_string(), t, stored, &authorization);
            }
            (Some(t), None) => demo::load(&gw, &gate, &http_addr.to_string(), t).await?,
            _ => {}
        }
        let router = huren_server::http::router(state.clone());
        let limits = huren_server::https::Limits {
            max_connections: gw.config.http.max_connections,
            header_read_timeout: std::time::Duration::from_secs(
                gw.config.http.header_read_timeout_secs.max(1),
            ),
        };
        let http_task = match https {
            Some(t) => tokio::spawn(huren_server::https::serve(http_l, router, t, state, limits)),
            None => tokio::spawn(huren_server::https::serve_plain(http_l, router, limits)),
        };
        // Failed authentication is audited per peer and window: record the windows that end.
        let flush_gate = gate.clone();
        let flush_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Err(p) = flush_gate.flush_failures(false).await {
                    tracing::error!(error = p.detail(), "failed authentication not audited");
                }
            }
        });
        let mllp_task = tokio::spawn(huren_server::mllp::serve(mllp_l, gw.clone(), tls));
        // Signed reports go back to their institutions from the durable outbox.
        let outbox_tls = match &gw.config.outbox.tls {
            Some(t) => Some(huren_server::tls::outbox_client(t).context("[outbox.tls]")?),
            None => None,
        };
        let outbox_task = tokio::spawn(huren_server::outbox::deliver(
            gw.clone(),
            huren_server::outbox::Mllp::new(outbox_tls),
        ));
        // Unanswered alerts escalate from their stored steps.
        let escalate_task = tokio::spawn(huren_server::alerts::escalate(gw.clone()));
        // Alert notices go to the groups' webhooks from their durable outbox.
        // Each alert change: its chest-pain case and stamps, its webhook notices.
        let mut webhook_tasks = vec![tokio::spawn(huren_server::alerts::follow(gw.clone()))];
        if let Some(courier) = webhooks {
            webhook_tasks.push(tokio::spawn(huren_server::outbox::deliver(
                gw.clone(),
                courier,
            )));
        }
        // Final and corrected reports go to the regional platform as WS/T 500 documents.
        if let Some(courier) = regional {
            webhook_tasks.push(tokio::spawn(huren_server::regional::follow(gw.clone())));
            webhook_tasks.push(tokio::spawn(huren_server::outbox::deliver(
                gw.clone(),
                courier,
            )));
        }
        let drop_tasks: Vec<_> = gw
            .config
            .ecg
            .drop_folders
            .iter()
            .map(|d| {
                println_json(&json!({"watching": "ecg", "path": d.path.display().to_string(), "institution": d.institution}));
                tokio::spawn(huren_server::ecg::watch_drop_folder(
                    gw.clone(),
                    d.path.clone(),
                    d.institution.clone(),
                    std::time::Duration::from_millis(d.poll_secs.max(1) * 1000),
                    std::time::Duration::from_secs(d.settle_secs),
                ))
            })
            .collect();
        shutdown_signal().await;
        http_task.abort();
        flush_task.abort();
        if let Err(p) = gate.flush_failures(true).await {
            tracing::error!(error = p.detail(), "failed authentication not audited");
        }
        mllp_task.abort();
        outbox_task.abort();
        escalate_task.abort();
        for t in webhook_tasks {
            t.abort();
        }
        for t in dicom_tasks {
            t.abort();
        }
        for t in drop_tasks {
            t.abort();
        }
        for t in served.tasks {
            t.abort();
        }
        store.flush_index()?;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// Raises the soft limit of open files to the hard one: every connection of every listener is
/// a descriptor, and a soft limit of 1024 (the usual default) is reached long before the
/// listeners' caps. Failure is not fatal: the caps still bound each listener.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let l = getrlimit(Resource::Nofile);
        // An unlimited hard limit cannot be the soft one for descriptors (Linux caps it at
        // fs.nr_open): ask for 2^20, the usual nr_open.
        let want = l.maximum.unwrap_or(1 << 20);
        if l.current.is_some_and(|c| c < want) {
            let _ = setrlimit(
                Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(want),
                    maximum: l.maximum,
                },
            );
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
