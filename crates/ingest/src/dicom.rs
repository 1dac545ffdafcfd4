//! The imaging path: DICOM instances (C-STORE, files) → one original blob each + a new
//! version of the study's imaging report, committed together in the store's group commit.
//! [`scp`] is the DIMSE listener (C-ECHO, C-STORE). See `docs/dicom.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use huren_dicom::{study, DicomError, Instance};
use huren_model::{ContentHash, Hashed, ImagingBody, ReportStatus};
use huren_store::{Ingest, Outcome};
use serde::{Deserialize, Serialize};

use crate::pipeline::Gateway;

/// `[dicom]` in `huren.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// Our AE title (default `HUREN`); associations calling another title are refused.
    #[serde(default = "default_aet")]
    pub ae_title: String,
    /// Accept calling AE titles no institution claims (institution code = the AE title).
    #[serde(default)]
    pub accept_unknown: bool,
    /// Accept SOP classes outside the storage classes of PS3.4 Annex B (as storage).
    #[serde(default)]
    pub accept_unknown_sop_classes: bool,
    /// Most associations at once (default 64); more are refused at connect.
    #[serde(default = "default_max_assoc")]
    pub max_associations: usize,
    /// Largest PDU we accept, bytes (default 262144).
    #[serde(default = "default_max_pdu")]
    pub max_pdu: u32,
    /// Largest data set accepted in one C-STORE, bytes (default 1 GiB).
    #[serde(default = "default_max_object")]
    pub max_object_bytes: usize,
    /// A C-STORE data set larger than this, KiB, is written to a temporary file of the store
    /// as it arrives instead of being held in memory (default 4096 = 4 MiB).
    #[serde(default = "default_spool_above")]
    pub spool_above_kib: usize,
    /// Memory shared by the listener's associations for data sets being received in memory,
    /// MiB (default 256): each association's first `spool_above_kib` would be the most one
    /// holds; when this budget is used up, further data sets are spooled from their first
    /// byte (C-FIND identifiers, which cannot be, are refused).
    #[serde(default = "default_receive_budget")]
    pub receive_budget_mib: usize,
    /// Seconds within which each PDU, the association request included, must arrive whole
    /// (counted from when the previous one was handled), else the association is dropped
    /// (default 60). dicom-ul bounds the whole PDU, not each read.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Longest an association may last, seconds (default 7200); no new PDU is read after it.
    #[serde(default = "default_max_association")]
    pub max_association_secs: u64,
    /// Calling AE titles of the consortium's PACS and modalities.
    #[serde(default, rename = "ae")]
    pub aes: Vec<AeEntry>,
    /// DICOM TLS (PS3.15 B.1, the BCP 195 profile) for the `--dicom-tls` listener: server
    /// certificate, and with `client_ca` a required client certificate whose institution must
    /// be the calling AE title's.
    #[serde(default)]
    pub tls: Option<crate::config::TlsConfig>,
}

/// One known calling AE title.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeEntry {
    /// The calling AE title.
    pub aet: String,
    /// The institution code its instances are attributed to.
    pub institution: String,
}

fn default_aet() -> String {
    "HUREN".into()
}
fn default_max_assoc() -> usize {
    64
}
fn default_max_pdu() -> u32 {
    262_144
}
fn default_max_object() -> usize {
    1 << 30
}
fn default_spool_above() -> usize {
    4096
}
fn default_receive_budget() -> usize {
    256
}
fn default_max_association() -> u64 {
    7200
}

fn default_timeout() -> u64 {
    60
}

impl Default for DicomConfig {
    fn default() -> Self {
        DicomConfig {
            ae_title: default_aet(),
            accept_unknown: false,
            accept_unknown_sop_classes: false,
            max_associations: default_max_assoc(),
            max_pdu: default_max_pdu(),
            max_object_bytes: default_max_object(),
            spool_above_kib: default_spool_above(),
            receive_budget_mib: default_receive_budget(),
            timeout_secs: default_timeout(),
            max_association_secs: default_max_association(),
            aes: vec![],
            tls: None,
        }
    }
}

impl DicomConfig {
    /// The institution of a calling AE title, if configured.
    pub fn institution_of(&self, calling: &str) -> Option<&str> {
        let calling = calling.trim();
        self.aes
            .iter()
            .find(|a| a.aet.trim() == calling)
            .map(|a| a.institution.as_str())
    }
}

/// What happened to one instance, as the CLI prints it and the C-STORE status reflects it.
#[derive(Clone, Debug, Serialize)]
pub struct DicomOutcome {
    /// `stored`, `duplicate`, `replaced`, `checked` or `rejected`.
    pub outcome: &'static str,
    /// The DIMSE status: 0x0000, 0xB000 (stored with warnings), 0xA700, 0xA900, 0xC000.
    pub status: u16,
    /// SOP Instance UID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sop_instance_uid: Option<String>,
    /// Study Instance UID (possibly derived).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study_instance_uid: Option<String>,
    /// Institution the instance was attributed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub institution: Option<String>,
    /// The study report version this instance made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ContentHash>,
    /// Its version number in the study's chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Hash of the stored bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<ContentHash>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was coerced or noted (the bytes are always kept as received).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl DicomOutcome {
    /// A refusal for a data set that did not parse or match.
    pub fn refused(e: &DicomError) -> DicomOutcome {
        DicomOutcome {
            outcome: "rejected",
            status: e.status(),
            sop_instance_uid: None,
            study_instance_uid: None,
            institution: None,
            report: None,
            version: None,
            original: None,
            error: Some(e.to_string()),
            warnings: vec![],
        }
    }

    /// The outcome of a check (parsed, nothing stored).
    pub fn checked(inst: &Instance) -> DicomOutcome {
        let mut o = DicomOutcome::of(inst, "");
        o.outcome = "checked";
        o.institution = None;
        o
    }

    fn of(inst: &Instance, institution: &str) -> DicomOutcome {
        DicomOutcome {
            outcome: "stored",
            status: if inst.warnings.is_empty() { 0 } else { 0xB000 },
            sop_instance_uid: Some(inst.record.sop_instance_uid.clone()),
            study_instance_uid: Some(inst.record.study_instance_uid.clone()),
            institution: Some(institution.to_string()),
            report: None,
            version: None,
            original: None,
            error: None,
            warnings: inst.warnings.clone(),
        }
    }
}

/// Per-study locks: the instances of one study are merged into its report one at a time
/// (read head version → merge → commit), so concurrent associations never lose one.
fn study_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut m = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if m.len() > 4096 {
        // Drop locks nobody holds or waits for.
        m.retain(|_, l| Arc::strong_count(l) > 1);
    }
    m.entry(key.to_string()).or_default().clone()
}

enum Plan {
    Done(Box<DicomOutcome>),
    Commit(Box<(Ingest, huren_model::InstanceRecord, DicomOutcome)>),
}

fn now() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .fixed_offset()
        .to_rfc3339()
}

impl Gateway {
    /// The institution an association's calling AE title belongs to; `None` refuses it.
    pub fn dicom_institution(&self, calling_aet: &str) -> Option<String> {
        let c = &self.config.dicom;
        match c.institution_of(calling_aet) {
            Some(i) => Some(i.to_string()),
            None if c.accept_unknown || self.demo => Some(calling_aet.trim().to_string()),
            None => None,
        }
    }

    fn plan_dicom(
        &self,
        original: huren_store::Original,
        inst: &Instance,
        institution: &str,
        application: Option<&str>,
    ) -> Plan {
        let mut out = DicomOutcome::of(inst, institution);
        let fail = |mut out: DicomOutcome, e: huren_store::StoreError| {
            out.outcome = "rejected";
            out.status = 0xA700;
            out.error = Some(format!("store: {e}"));
            Plan::Done(Box::new(out))
        };
        let r = &inst.record;
        let prev = match self.ingest_store().instance(&r.sop_instance_uid) {
            Ok(p) => p,
            Err(e) => return fail(out, e),
        };
        let change = match &prev {
            Some(p) if p.dataset_hash == r.dataset_hash => {
                out.outcome = "duplicate";
                out.original = Some(p.original);
                // A crash after the instance's commit and before its study's reading task
                // was made (or a route configured since): the resend makes the task, before
                // the success status.
                let chain = format!("imaging|{institution}|{}", r.study_instance_uid);
                let head = match self.ingest_store().chain_head(&chain) {
                    Ok(h) => h,
                    Err(e) => return fail(out, e),
                };
                if let Some((_, report)) = head {
                    let c = crate::reading::Candidate {
                        kind: huren_workflow::Kind::Imaging,
                        institution: institution.to_string(),
                        chain,
                        critical: false,
                    };
                    if let Err(e) = self.ensure_task(c, report) {
                        return fail(out, e);
                    }
                }
                return Plan::Done(Box::new(out));
            }
            Some(_) => study::Change::Replaced,
            None => study::Change::New,
        };
        let chain = format!("imaging|{institution}|{}", r.study_instance_uid);
        let head = match self.ingest_store().chain_head(&chain) {
            Ok(h) => h.map(|(_, hash)| hash),
            Err(e) => return fail(out, e),
        };
        let (prev_body, prev_status): (Option<ImagingBody>, Option<ReportStatus>) = match head {
            None => (None, None),
            Some(h) => match self.ingest_store().report_shared(&h) {
                Ok(Some(rep)) => (rep.imaging.as_deref().cloned(), Some(rep.status)),
                Ok(None) => (None, None),
                Err(e) => return fail(out, e),
            },
        };
        let body = study::merge(prev_body.as_ref(), inst, change);
        let hash = original.hash();
        let ctx = study::Context {
            institution,
            application,
            utc_offset: "+08:00",
        };
        let report = study::report(body, &ctx, hash, prev_status, inst.sr.is_some());
        let record = inst.record_for(hash, original.len(), institution);
        let mut reports = vec![report];
        let mut attachments = vec![];
        if is_ecg_waveform(&r.sop_class_uid) {
            // A 12-lead / general / ambulatory ECG waveform is also an ECG report (measurements,
            // statements, critical flag, trace), committed with the instance.
            // A waveform spooled to a file (never seen: ECG instances are kilobytes to a few
            // megabytes) is read back for the adapter.
            let bytes = match &original {
                huren_store::Original::Bytes(h) => Ok(h.clone()),
                huren_store::Original::Stored(f) => match self.ingest_store().blob(&f.hash()) {
                    Ok(Some(b)) => Ok(Hashed::new(b)),
                    Ok(None) => Err(huren_store::StoreError::Corrupt(format!(
                        "spooled original {} is missing",
                        f.hash()
                    ))),
                    Err(e) => Err(e),
                },
            };
            let bytes = match bytes {
                Ok(b) => b,
                Err(e) => return fail(out, e),
            };
            match crate::ecg::prepare_ecg_hashed(&self.config, bytes, institution) {
                Ok((ecg, _)) => {
                    reports.extend(ecg.reports);
                    attachments.extend(ecg.attachments);
                }
                Err(o) => {
                    tracing::warn!(error = ?o.error, "ECG waveform instance stored without an ECG report");
                    out.warnings.push(format!(
                        "no ECG report: {}",
                        o.error.as_deref().unwrap_or("the ECG adapter refused it")
                    ));
                }
            }
        }
        if change == study::Change::Replaced {
            out.outcome = "replaced";
        }
        out.original = Some(hash);
        Plan::Commit(Box::new((
            Ingest {
                original,
                reports,
                identity: vec![],
                received_at: now(),
                attachments,
                message_id: None,
            },
            record,
            out,
        )))
    }

    /// A temporary file of the store for a data set too large to hold in memory; finished
    /// (made durable) it is passed to [`Gateway::ingest_dicom`] as the original.
    pub fn spool(&self) -> Result<huren_store::Spool, huren_store::StoreError> {
        self.ingest_store().spool()
    }

    /// Stores one parsed instance (`original` = the bytes kept: the Part 10 file as received
    /// or made from a C-STORE data set) and makes the next version of its study report.
    /// The outcome's status is success only once both are durable.
    pub async fn ingest_dicom(
        &self,
        original: impl Into<huren_store::Original>,
        inst: &Instance,
        institution: &str,
        application: Option<&str>,
    ) -> DicomOutcome {
        let started = std::time::Instant::now();
        let out = self
            .ingest_dicom_timed(original.into(), inst, institution, application)
            .await;
        huren_metrics::global().ingest("dicom", out.outcome, started.elapsed());
        out
    }

    async fn ingest_dicom_timed(
        &self,
        original: huren_store::Original,
        inst: &Instance,
        institution: &str,
        application: Option<&str>,
    ) -> DicomOutcome {
        let lock = study_lock(&format!("{institution}|{}", inst.record.study_instance_uid));
        let _held = lock.lock().await;
        match self.plan_dicom(original, inst, institution, application) {
            Plan::Done(o) => *o,
            Plan::Commit(b) => {
                let (ingest, record, out) = *b;
                let found = crate::reading::FollowUps::of(&self.config, &ingest);
                let res = self
                    .ingest_store()
                    .commit_instances(ingest, vec![record])
                    .await
                    .and_then(|c| self.follow_up(found, &c).map(|_| c));
                finish(out, res)
            }
        }
    }

    /// Blocking form of [`Gateway::ingest_dicom`] for the CLI.
    pub fn ingest_dicom_blocking(
        &self,
        original: impl Into<huren_store::Original>,
        inst: &Instance,
        institution: &str,
        application: Option<&str>,
    ) -> DicomOutcome {
        let lock = study_lock(&format!("{institution}|{}", inst.record.study_instance_uid));
        let _held = lock.blocking_lock();
        match self.plan_dicom(original.into(), inst, institution, application) {
            Plan::Done(o) => *o,
            Plan::Commit(b) => {
                let (ingest, record, out) = *b;
                let found = crate::reading::FollowUps::of(&self.config, &ingest);
                let res = self
                    .ingest_store()
                    .commit_instances_blocking(ingest, vec![record])
                    .and_then(|c| self.follow_up(found, &c).map(|_| c));
                finish(out, res)
            }
        }
    }
}

fn finish(
    mut out: DicomOutcome,
    res: Result<huren_store::Committed, huren_store::StoreError>,
) -> DicomOutcome {
    match res {
        Ok(c) => {
            if let Some(r) = c.reports.first() {
                out.report = Some(r.report);
                out.version = Some(r.version);
                if r.outcome == Outcome::Duplicate && out.outcome == "stored" {
                    out.outcome = "duplicate";
                }
            }
            out
        }
        Err(e) => {
            out.outcome = "rejected";
            out.status = 0xA700;
            out.error = Some(format!("store: {e}"));
            out.report = None;
            out.original = None;
            out
        }
    }
}

/// Whether a SOP class is an ECG waveform the ECG adapter reads (12-lead, general,
/// ambulatory).
fn is_ecg_waveform(sop_class: &str) -> bool {
    matches!(
        sop_class,
        "1.2.840.10008.5.1.4.1.1.9.1.1"
            | "1.2.840.10008.5.1.4.1.1.9.1.2"
            | "1.2.840.10008.5.1.4.1.1.9.1.3"
    )
}

/// Parses a DICOM file (Part 10, or a bare data set whose transfer syntax is sniffed):
/// `Ok` when it is DICOM at all, with the instance or the precise refusal.
pub fn parse_file(bytes: &[u8]) -> Result<Instance, DicomError> {
    huren_dicom::parse_file(bytes)
}

/// Whether the bytes look like DICOM (Part 10 prefix, or a plausible first data element).
pub fn looks_like_dicom(bytes: &[u8]) -> bool {
    huren_dicom::is_part10(bytes) || huren_dicom::sniff_transfer_syntax(bytes).is_ok()
}
