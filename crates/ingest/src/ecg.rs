//! The ECG path: bytes (aECG, MUSE, Philips XML, DICOM waveform) → `huren-ecg` → report +
//! waveform blob → group commit. Shared by `POST /api/v1/ecg`, the drop folders and the CLI.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use huren_ecg::{EcgError, ParseOptions};
use huren_model::ecg::EcgCritical;
use huren_model::{ContentHash, Hashed};
use huren_store::{Committed, Ingest, StoreError};
use serde::Serialize;

use crate::config::Config;
use crate::pipeline::Gateway;

/// The result of one ECG file, as the CLI prints it and the HTTP answer reflects it.
#[derive(Clone, Debug, Serialize)]
pub struct EcgOutcome {
    /// `stored`, `duplicate`, `superseded`, `rejected` or `checked`.
    pub outcome: &'static str,
    /// Always `ecg`.
    pub kind: &'static str,
    /// Detected format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Report hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ContentHash>,
    /// Version in its chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Institution the file was attributed to.
    pub institution: String,
    /// The critical flag and the statement that set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical: Option<EcgCritical>,
    /// Why it was rejected (with the element path and line where known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Quirks tolerated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Whether the failure was the store's (HTTP 500 / retry) rather than the file's.
    #[serde(skip)]
    pub store_failure: bool,
}

/// Parser options from the configuration.
pub fn parse_options(config: &Config) -> ParseOptions {
    let mut o = ParseOptions::default();
    if let Some(c) = &config.ecg.critical {
        o.catalogue = c.clone();
    }
    if let Some(tz) = config.ecg.time_zone.as_deref().and_then(|t| t.parse().ok()) {
        o.time_zone = tz;
    }
    o
}

fn rejected(institution: &str, e: &EcgError) -> EcgOutcome {
    EcgOutcome {
        error: Some(e.to_string()),
        ..rejected_outcome(institution)
    }
}

fn rejected_outcome(institution: &str) -> EcgOutcome {
    EcgOutcome {
        outcome: "rejected",
        kind: "ecg",
        format: None,
        report: None,
        version: None,
        institution: institution.to_string(),
        critical: None,
        error: None,
        warnings: vec![],
        store_failure: false,
    }
}

/// Parses and maps one ECG file without storing it: the ingest and the outcome to report.
pub fn prepare_ecg(
    config: &Config,
    bytes: &[u8],
    institution: &str,
) -> Result<(Ingest, EcgOutcome), Box<EcgOutcome>> {
    prepare_ecg_owned(config, bytes.to_vec(), institution)
}

/// [`prepare_ecg`] on bytes the caller gives up (no copy of the file).
pub fn prepare_ecg_owned(
    config: &Config,
    bytes: Vec<u8>,
    institution: &str,
) -> Result<(Ingest, EcgOutcome), Box<EcgOutcome>> {
    prepare_ecg_hashed(config, Hashed::new(bytes), institution)
}

/// [`prepare_ecg`] on bytes already paired with their hash (not hashed again).
pub fn prepare_ecg_hashed(
    config: &Config,
    bytes: Hashed,
    institution: &str,
) -> Result<(Ingest, EcgOutcome), Box<EcgOutcome>> {
    let parsed = huren_ecg::parse(bytes.bytes(), &parse_options(config))
        .map_err(|e| Box::new(rejected(institution, &e)))?;
    let blob = Hashed::new(parsed.waveform.to_blob());
    let blob_hash = blob.hash();
    let original = bytes.hash();
    let received_at = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .to_rfc3339();
    let mut report = huren_ecg::to_report(&parsed, institution, original, blob_hash, &received_at);
    // The gateway's received time is kept in the index (the journal records it), not in the
    // report: the same bytes must give the same report, so a resend is a duplicate.
    if let Some(b) = report.ecg.as_mut() {
        b.received_at = None;
    }
    if report.patient.local_id.is_empty() {
        // No patient ID in the file (ambulance / emergency ECGs): its own pseudo-patient, so
        // that unrelated anonymous ECGs are never shown as one person.
        report.patient.local_id = format!("unidentified-{}", &original.hex()[..16]);
    }
    if !report.attachments.contains(&blob_hash) {
        report.attachments.push(blob_hash);
    }
    let out = EcgOutcome {
        outcome: "checked",
        kind: "ecg",
        format: Some(format!("{:?}", parsed.body.identity.format)),
        report: None,
        version: None,
        institution: institution.to_string(),
        critical: report.ecg.as_ref().and_then(|b| b.critical.clone()),
        error: None,
        warnings: parsed.warnings().to_vec(),
        store_failure: false,
    };
    Ok((
        Ingest {
            original: bytes.into(),
            reports: vec![report],
            identity: vec![],
            received_at,
            attachments: vec![blob],
            message_id: None,
        },
        out,
    ))
}

fn finish(mut out: EcgOutcome, res: Result<Committed, StoreError>) -> EcgOutcome {
    match res {
        Ok(c) => {
            if let Some(r) = c.reports.first() {
                out.report = Some(r.report);
                out.version = Some(r.version);
                out.outcome = match r.outcome {
                    huren_store::Outcome::Stored => "stored",
                    huren_store::Outcome::Duplicate => "duplicate",
                    huren_store::Outcome::Superseded => "superseded",
                };
            }
            out
        }
        Err(e) => {
            tracing::error!(error = %e, "ECG commit failed");
            out.outcome = "rejected";
            out.error = Some(format!("store failure: {e}"));
            out.store_failure = true;
            out
        }
    }
}

impl Gateway {
    /// Ingests one ECG file; the outcome is `stored`/`superseded`/`duplicate` only once the
    /// report, the original and the waveform are durable.
    pub async fn ingest_ecg(&self, bytes: &[u8], institution: &str) -> EcgOutcome {
        let started = std::time::Instant::now();
        let out = match prepare_ecg(&self.config, bytes, institution) {
            Err(o) => *o,
            Ok((ingest, out)) => finish(out, self.commit_read(ingest).await),
        };
        huren_metrics::global().ingest("ecg", out.outcome, started.elapsed());
        out
    }

    /// [`Gateway::ingest_ecg`] with the parsing (milliseconds of CPU for a 12-lead file) on
    /// the blocking pool, so that the runtime's workers keep reading other uploads.
    pub async fn ingest_ecg_owned(&self, bytes: bytes::Bytes, institution: String) -> EcgOutcome {
        let started = std::time::Instant::now();
        let out = self.ingest_ecg_owned_timed(bytes, institution).await;
        huren_metrics::global().ingest("ecg", out.outcome, started.elapsed());
        out
    }

    async fn ingest_ecg_owned_timed(&self, bytes: bytes::Bytes, institution: String) -> EcgOutcome {
        let config = self.config.clone();
        let inst = institution.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            prepare_ecg_owned(&config, Vec::from(bytes), &inst)
        })
        .await;
        match prepared {
            Ok(Err(o)) => *o,
            Ok(Ok((ingest, out))) => finish(out, self.commit_read(ingest).await),
            Err(e) => {
                tracing::error!(error = %e, "ECG parse task failed");
                EcgOutcome {
                    store_failure: true,
                    error: Some("internal error while parsing".into()),
                    ..rejected_outcome(&institution)
                }
            }
        }
    }

    /// Blocking form of [`Gateway::ingest_ecg`] for the CLI.
    pub fn ingest_ecg_blocking(&self, bytes: &[u8], institution: &str) -> EcgOutcome {
        match prepare_ecg(&self.config, bytes, institution) {
            Err(o) => *o,
            Ok((ingest, out)) => finish(out, self.commit_read_blocking(ingest)),
        }
    }
}

/// Watches one drop folder: a file is taken when its size and modification time have not
/// changed for `settle` (carts write slowly), ingested (durably), then moved to `done/`, or
/// to `rejected/` with `NAME.error.txt` beside it. A crash between the commit and the move
/// re-ingests the file at the next start, which the store answers `duplicate`: nothing is
/// lost and nothing is stored twice. Runs until the task is dropped.
pub async fn watch_drop_folder(
    gw: Gateway,
    dir: PathBuf,
    institution: String,
    poll: Duration,
    settle: Duration,
) {
    let (done, rejected_dir) = (dir.join("done"), dir.join("rejected"));
    for d in [&done, &rejected_dir] {
        if let Err(e) = std::fs::create_dir_all(d) {
            tracing::error!(dir = %d.display(), error = %e, "ECG drop folder unusable");
            return;
        }
    }
    // path → (size, mtime, first seen unchanged at)
    let mut seen: std::collections::HashMap<PathBuf, (u64, SystemTime, std::time::Instant)> =
        Default::default();
    loop {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list ECG drop folder");
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let mut present = std::collections::HashSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file()
                || name.starts_with('.')
                || name.ends_with(".part")
                || name.ends_with(".tmp")
            {
                continue;
            }
            present.insert(path.clone());
            let (size, mtime) = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let now = std::time::Instant::now();
            let stable_since = match seen.get(&path) {
                Some((s, m, since)) if *s == size && *m == mtime => *since,
                _ => {
                    seen.insert(path.clone(), (size, mtime, now));
                    continue;
                }
            };
            if now.duration_since(stable_since) < settle {
                continue;
            }
            seen.remove(&path);
            take_file(&gw, &path, &name, &institution, &done, &rejected_dir).await;
        }
        seen.retain(|p, _| present.contains(p));
        tokio::time::sleep(poll).await;
    }
}

async fn take_file(
    gw: &Gateway,
    path: &Path,
    name: &str,
    institution: &str,
    done: &Path,
    rejected_dir: &Path,
) {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = name, error = %e, "cannot read ECG drop file");
            return;
        }
    };
    let out = gw.ingest_ecg(&bytes, institution).await;
    if out.store_failure {
        // Leave the file where it is; the next poll retries.
        return;
    }
    let target = if out.outcome == "rejected" {
        let note = rejected_dir.join(format!("{name}.error.txt"));
        let text = format!("{}\n", out.error.as_deref().unwrap_or("rejected"));
        if let Err(e) = std::fs::write(&note, text) {
            tracing::warn!(file = name, error = %e, "cannot write ECG rejection note");
        }
        rejected_dir.join(name)
    } else {
        done.join(name)
    };
    match std::fs::rename(path, &target) {
        Ok(()) => {
            for d in [path.parent(), target.parent()].into_iter().flatten() {
                let _ = File::open(d).and_then(|d| d.sync_all());
            }
            tracing::info!(file = name, outcome = out.outcome, "ECG drop file taken");
        }
        Err(e) => tracing::warn!(file = name, error = %e, "cannot move ECG drop file"),
    }
}

use std::fs::File;
