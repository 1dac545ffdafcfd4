//! The ingest pipeline shared by every inbound path (MLLP, HTTP, CLI): bytes → adapter →
//! report model → group commit → acknowledgement.

use std::sync::Arc;

use huren_hl7::{
    AckCode, Content, Diagnostic, Message, RejectKind, Rejection, SenderConfig, Severity,
};
use huren_model::{ContentHash, Hashed, ReportKind};
use huren_store::{Committed, IdentityOp, Ingest, Outcome, Store};
use serde::Serialize;

use crate::adt::{CaseStamp, Target};
use crate::config::Config;

/// Shared state of a running gateway.
#[derive(Clone)]
pub struct Gateway {
    /// The store: written by the ingest paths; read only through `huren_gate::Gate`.
    store: Store,
    /// The configuration.
    pub config: Arc<Config>,
    /// Demo mode: unknown HL7 senders are accepted with MSH-4 as institution code.
    pub demo: bool,
}

/// The result of one HL7 message, as the CLI prints it and the ACK reflects it.
#[derive(Clone, Debug, Serialize)]
pub struct Hl7Outcome {
    /// `stored`, `duplicate`, `superseded` or `rejected`; `not_stored` for an ADT visit that
    /// links no identity and belongs to no current chest-pain case.
    pub outcome: &'static str,
    /// Report kind when reports were made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ReportKind>,
    /// The first report's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ContentHash>,
    /// Every report's hash, outcome and version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<huren_store::ReportOutcome>,
    /// Hash of the original bytes when stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<ContentHash>,
    /// MSH-9 as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// MSH-10 as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_id: Option<String>,
    /// Institution the message was attributed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub institution: Option<String>,
    /// First error, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every diagnostic (errors and warnings) with its location.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// What an ADT visit did to a chest-pain case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_stamp: Option<CaseStamp>,
    /// The ACK message (not framed).
    #[serde(skip)]
    pub ack: Vec<u8>,
}

/// A message that passed the adapter and is ready to commit.
pub struct Prepared {
    /// Parsed message header.
    pub header: huren_hl7::MessageHeader,
    /// What to commit.
    pub ingest: Ingest,
    /// Warnings from the adapter.
    pub warnings: Vec<Diagnostic>,
    /// Institution code.
    pub institution: String,
    /// Kind of the reports, if any.
    pub kind: Option<ReportKind>,
    /// ADT A01 / A03 / A04: the visit event, for a chest-pain case.
    pub visit: Option<huren_hl7::Visit>,
}

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .fixed_offset()
}

fn diag(code: u16, location: &str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        location: location.to_string(),
        segment: location.split('-').next().map(|s| s.to_string()),
        line: None,
        field: None,
        code,
        message,
    }
}

impl Gateway {
    /// A gateway over a store.
    pub fn new(store: Store, config: Arc<Config>, demo: bool) -> Gateway {
        Gateway {
            store,
            config,
            demo,
        }
    }

    /// The store for the ingest paths (this module, `dicom/mod.rs`, `ecg.rs`) only: handlers
    /// read patient data through the gate (a test checks who calls this).
    pub(crate) fn ingest_store(&self) -> &Store {
        &self.store
    }

    /// The store's directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.store.dir()
    }

    /// See [`prepare_hl7`].
    pub fn prepare_hl7(
        &self,
        bytes: &[u8],
        institution: Option<&str>,
        peer_institution: Option<&str>,
    ) -> Result<Prepared, Rejection> {
        prepare_hl7(
            &self.config,
            self.demo,
            bytes,
            institution,
            peer_institution,
        )
    }

    /// Handles one HL7 message end to end; the returned ACK is positive only when the data is
    /// durable.
    pub async fn ingest_hl7(
        &self,
        bytes: &[u8],
        institution: Option<&str>,
        peer_institution: Option<&str>,
    ) -> Hl7Outcome {
        let started = std::time::Instant::now();
        let out = self
            .ingest_hl7_timed(bytes, institution, peer_institution)
            .await;
        huren_metrics::global().ingest("hl7", out.outcome, started.elapsed());
        out
    }

    async fn ingest_hl7_timed(
        &self,
        bytes: &[u8],
        institution: Option<&str>,
        peer_institution: Option<&str>,
    ) -> Hl7Outcome {
        match self.prepare_hl7(bytes, institution, peer_institution) {
            Err(r) => rejected(r),
            Ok(mut p) => {
                if let Some(v) = p.visit.take() {
                    let early = match self.visit_plan(&p, &v) {
                        Err(e) => return finish(p, Err(e), None),
                        Ok(None) => return unmatched(p),
                        Ok(Some(t)) => t,
                    };
                    let res = self.store.commit(std::mem::take(&mut p.ingest)).await;
                    return self.visit_done(p, &v, early, res);
                }
                let alerts = crate::alerts::alert_candidates(&self.config, &p.ingest);
                let res = self
                    .store
                    .commit(std::mem::take(&mut p.ingest))
                    .await
                    .and_then(|c| self.raise_alerts(alerts, &c).map(|_| c));
                finish(p, res, None)
            }
        }
    }

    /// Blocking form of [`Gateway::ingest_hl7`] for the CLI.
    pub fn ingest_hl7_blocking(&self, bytes: &[u8], institution: Option<&str>) -> Hl7Outcome {
        match self.prepare_hl7(bytes, institution, None) {
            Err(r) => rejected(r),
            Ok(mut p) => {
                if let Some(v) = p.visit.take() {
                    let early = match self.visit_plan(&p, &v) {
                        Err(e) => return finish(p, Err(e), None),
                        Ok(None) => return unmatched(p),
                        Ok(Some(t)) => t,
                    };
                    let res = self.store.commit_blocking(std::mem::take(&mut p.ingest));
                    return self.visit_done(p, &v, early, res);
                }
                let alerts = crate::alerts::alert_candidates(&self.config, &p.ingest);
                let res = self
                    .store
                    .commit_blocking(std::mem::take(&mut p.ingest))
                    .and_then(|c| self.raise_alerts(alerts, &c).map(|_| c));
                finish(p, res, None)
            }
        }
    }
}

impl Gateway {
    /// Whether an ADT visit is committed: `None` when it links no identity and stamps no
    /// case (nothing is stored, AA), else the case found before the commit (only looked for
    /// when the message links none, since a link may make the person).
    fn visit_plan(
        &self,
        p: &Prepared,
        v: &huren_hl7::Visit,
    ) -> Result<Option<Option<Target>>, huren_store::StoreError> {
        if !p.ingest.identity.is_empty() {
            return Ok(Some(None));
        }
        Ok(self.visit_target(&p.institution, v)?.map(Some))
    }

    /// After an ADT visit's commit: the stamp (durable), then the ACK — AA with an MSA-3
    /// text when the case model refused the stamp, AE 207 when the store failed.
    fn visit_done(
        &self,
        p: Prepared,
        v: &huren_hl7::Visit,
        early: Option<Target>,
        res: Result<Committed, huren_store::StoreError>,
    ) -> Hl7Outcome {
        let c = match res {
            Ok(c) => c,
            Err(e) => return finish(p, Err(e), None),
        };
        let target =
            match early.map_or_else(|| self.visit_target(&p.institution, v), |t| Ok(Some(t))) {
                Ok(t) => t,
                Err(e) => return finish(p, Err(e), None),
            };
        let Some(target) = target else {
            tracing::debug!(institution = %p.institution, "ADT visit for no current chest-pain case");
            return finish(p, Ok(c), None);
        };
        match self.stamp_visit(&p.institution, v, &target) {
            Ok(s) => finish(p, Ok(c), Some(s)),
            Err(e) => finish(p, Err(e), None),
        }
    }
}

/// An ADT visit that links no identity and belongs to no current chest-pain case: ordinary
/// traffic, acknowledged AA and not stored.
fn unmatched(p: Prepared) -> Hl7Outcome {
    tracing::debug!(institution = %p.institution, "ADT visit for no current chest-pain case; not stored");
    let mut out = checked(p);
    out.outcome = "not_stored";
    out.original = None;
    out
}

/// Parses and maps one HL7 message without storing it. `institution` forces the sender's
/// institution (CLI); otherwise the configuration's `hl7_senders` decide, and in `demo` mode an
/// unknown sender's MSH-4 becomes its institution code. `peer_institution` is the institution
/// proven by a TLS client certificate, which the message's sender must belong to.
pub fn prepare_hl7(
    config: &Config,
    demo: bool,
    bytes: &[u8],
    institution: Option<&str>,
    peer_institution: Option<&str>,
) -> Result<Prepared, Rejection> {
    // Look the sender up first: its configured charset decides how to decode.
    let (app, facility) = huren_hl7::peek_sender(bytes).unwrap_or_default();
    let inst = match institution {
        // The operator named the institution (CLI): trust it even when not configured.
        Some(code) => Some(
            config
                .institution(code)
                .cloned()
                .unwrap_or_else(|| demo_institution(code)),
        ),
        None => config
            .institution_for_hl7(&app, &facility)
            .cloned()
            .or_else(|| (demo && !facility.is_empty()).then(|| demo_institution(&facility))),
    };
    let charset = inst
        .as_ref()
        .and_then(|i| i.charset.as_deref())
        .and_then(huren_hl7::Charset::from_label);
    let msg = Message::parse(bytes, charset)?;
    let header = msg.header().clone();
    let reject = |code: u16, loc: &str, msg: String| Rejection {
        header: Some(Box::new(header.clone())),
        diagnostics: vec![diag(code, loc, msg)],
        kind: RejectKind::Reject,
    };
    let Some(inst) = inst else {
        return Err(reject(
            204,
            "MSH-4",
            format!(
                "unknown sender {}/{}: no configured institution claims it",
                header.sending_application, header.sending_facility
            ),
        ));
    };
    if let Some(peer) = peer_institution {
        if peer != inst.code {
            return Err(reject(
                204,
                "MSH-4",
                format!(
                    "sender {} belongs to {}, but the TLS client is {peer}",
                    header.sending_facility, inst.code
                ),
            ));
        }
    }
    // No default secret: a key under a guessable one could be recomputed by anyone. The
    // binary fixes it before serving; a library caller that did not gets AE (retry later).
    let Some(secret) = config.national_id_secret() else {
        return Err(Rejection {
            header: Some(Box::new(header.clone())),
            diagnostics: vec![diag(
                207,
                "MSH-10",
                "the gateway has no national-ID secret configured; message not accepted".into(),
            )],
            kind: RejectKind::Error,
        });
    };
    let cfg = SenderConfig {
        institution: inst.code.clone(),
        charset,
        time_zone: inst
            .time_zone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(chrono_tz::Asia::Shanghai),
        national_id_secret: secret.to_string(),
    };
    let original_bytes = Hashed::from(bytes);
    let original = original_bytes.hash();
    let it = huren_hl7::interpret(&msg, &cfg, original)?;
    let received_at = now().to_rfc3339();
    let mut visit = None;
    let (reports, identity, kind) = match it.content {
        Content::Lab(reports) => (reports, vec![], Some(ReportKind::Lab)),
        Content::Visit(v) => {
            let ops = v
                .patient
                .national_id_key
                .iter()
                .map(|k| {
                    claim(
                        v.patient.local_key(),
                        k,
                        &inst.code,
                        &header,
                        original,
                        &received_at,
                    )
                })
                .collect();
            visit = Some(v);
            (vec![], ops, None)
        }
        Content::PatientUpdate(p) => {
            let ops = p
                .national_id_key
                .iter()
                .map(|k| {
                    claim(
                        p.local_key(),
                        k,
                        &inst.code,
                        &header,
                        original,
                        &received_at,
                    )
                })
                .collect();
            (vec![], ops, None)
        }
        Content::PatientMerge { surviving, merged } => {
            // An institution merges only its own IDs: both sides in its namespace. (The
            // adapter files every identifier under the sender's institution; this refuses
            // anything that would reach into another institution's IDs.)
            let foreign = std::iter::once(&surviving)
                .chain(merged.iter())
                .find(|p| p.institution != inst.code);
            if let Some(p) = foreign {
                return Err(reject(
                    204,
                    if p.institution == surviving.institution {
                        "PID-3"
                    } else {
                        "MRG-1"
                    },
                    format!(
                        "ADT^A40 from {} names an ID of institution {}: an institution may merge only its own IDs",
                        inst.code, p.institution
                    ),
                ));
            }
            let mut ops: Vec<IdentityOp> = surviving
                .national_id_key
                .iter()
                .map(|k| {
                    claim(
                        surviving.local_key(),
                        k,
                        &inst.code,
                        &header,
                        original,
                        &received_at,
                    )
                })
                .collect();
            ops.extend(merged.iter().map(|m| IdentityOp::Merge {
                from: m.local_key(),
                into: surviving.local_key(),
            }));
            (vec![], ops, None)
        }
    };
    Ok(Prepared {
        header: it.header,
        ingest: Ingest {
            original: original_bytes.into(),
            reports,
            identity,
            received_at,
            attachments: vec![],
            message_id: Some(header.control_id.clone()),
        },
        warnings: it.warnings,
        institution: inst.code,
        kind,
        visit,
    })
}

/// An ADT's claim that `local` is the person of national-ID key `person`.
fn claim(
    local: String,
    person: &str,
    institution: &str,
    header: &huren_hl7::MessageHeader,
    original: ContentHash,
    received_at: &str,
) -> IdentityOp {
    IdentityOp::Claim {
        local,
        person: person.to_string(),
        institution: institution.to_string(),
        message_id: Some(header.control_id.clone()),
        original,
        reports: vec![],
        at: received_at.to_string(),
    }
}

fn demo_institution(code: &str) -> crate::config::Institution {
    crate::config::Institution {
        code: code.to_string(),
        name: code.to_string(),
        hl7_senders: vec![code.to_string()],
        charset: None,
        time_zone: None,
        client_cert_uri: None,
        result_destination: None,
        phone: None,
        organisation_code: None,
    }
}

/// The outcome for a message the adapter refused (nothing was stored).
pub fn rejected(r: Rejection) -> Hl7Outcome {
    let code = match r.kind {
        RejectKind::Error => AckCode::Error,
        RejectKind::Reject => AckCode::Reject,
    };
    let ack = huren_hl7::build_ack(r.header.as_deref(), code, &r.diagnostics, now());
    Hl7Outcome {
        outcome: "rejected",
        kind: None,
        report: None,
        reports: vec![],
        original: None,
        message_type: r
            .header
            .as_ref()
            .map(|h| format!("{}^{}", h.message_type, h.trigger_event)),
        control_id: r.header.as_deref().map(|h| h.control_id.clone()),
        institution: None,
        error: r
            .diagnostics
            .iter()
            .find(|d| matches!(d.severity, Severity::Error))
            .map(|d| format!("{}: {}", d.location, d.message)),
        diagnostics: r.diagnostics,
        case_stamp: None,
        ack,
    }
}

/// The outcome and ACK of a commit; `stamp` is what an ADT visit did to a case (its refusal
/// reason becomes MSA-3).
fn finish(
    p: Prepared,
    res: Result<Committed, huren_store::StoreError>,
    stamp: Option<CaseStamp>,
) -> Hl7Outcome {
    let message_type = Some(format!(
        "{}^{}",
        p.header.message_type, p.header.trigger_event
    ));
    let control_id = Some(p.header.control_id.clone());
    match res {
        Ok(c) => {
            let outcome = if c.reports.iter().any(|r| r.outcome == Outcome::Superseded) {
                "superseded"
            } else if c.reports.iter().any(|r| r.outcome == Outcome::Stored)
                || (c.reports.is_empty() && c.seq > 0)
            {
                "stored"
            } else {
                "duplicate"
            };
            let text = stamp.as_ref().and_then(|s| s.reason.as_deref());
            let ack = huren_hl7::build_ack_text(
                Some(&p.header),
                AckCode::Accept,
                &p.warnings,
                text,
                now(),
            );
            Hl7Outcome {
                outcome,
                kind: p.kind,
                report: c.reports.first().map(|r| r.report),
                reports: c.reports,
                original: Some(c.original),
                message_type,
                control_id,
                institution: Some(p.institution),
                error: None,
                diagnostics: p.warnings,
                case_stamp: stamp,
                ack,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store failed; answering AE 207");
            let d = diag(
                207,
                "MSH-10",
                format!("store failure, message not accepted: {e}"),
            );
            let ack = huren_hl7::build_ack(
                Some(&p.header),
                AckCode::Error,
                std::slice::from_ref(&d),
                now(),
            );
            Hl7Outcome {
                outcome: "rejected",
                kind: p.kind,
                report: None,
                reports: vec![],
                original: None,
                message_type,
                control_id,
                institution: Some(p.institution),
                error: Some(d.message.clone()),
                diagnostics: vec![d],
                case_stamp: None,
                ack,
            }
        }
    }
}

/// The outcome `huren check` prints for a message the adapter accepted (nothing is stored).
pub fn checked(p: Prepared) -> Hl7Outcome {
    let ack = huren_hl7::build_ack(Some(&p.header), AckCode::Accept, &p.warnings, now());
    Hl7Outcome {
        outcome: "valid",
        kind: p.kind,
        report: None,
        reports: vec![],
        original: Some(p.ingest.original.hash()),
        message_type: Some(format!(
            "{}^{}",
            p.header.message_type, p.header.trigger_event
        )),
        control_id: Some(p.header.control_id.clone()),
        institution: Some(p.institution),
        error: None,
        diagnostics: p.warnings,
        case_stamp: None,
        ack,
    }
}
