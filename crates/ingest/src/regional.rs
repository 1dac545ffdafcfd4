//! Shared documents to the regional platform (issue 20, docs/cda.md "The regional platform"):
//! every final and corrected report committed to the store becomes a WS/T 500 document
//! (检验报告 C0007 for lab, 检查报告 C0006 for imaging and ECG) posted to `[regional] url`
//! from the durable outbox `regional.log`.
//!
//! The follower ([`follow`]) reads the store's journal after a durable cursor
//! (`regional.cursor`), enqueues each report that goes under its hash (idempotent: a
//! report is queued once, whatever replays), and moves the cursor only once the batch is
//! durable; so a crash between a commit's acknowledgement and its enqueue loses nothing, and
//! ingest pays nothing for the push (no fsync on its path). The outbox's delivery loop posts
//! them one at a time in commit order: retried with backoff, parked after `[outbox]
//! max_attempts`, recorded delivered once. The document is made when it is sent (the same
//! version always gives the same bytes), so the outbox keeps no patient data; each attempt
//! is audited before it is sent (`regional_push`, the patient's person key and the report).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use huren_audit::AuditRecord;
use huren_model::{ContentHash, PatientId, Report, ReportKind, ReportStatus};
use huren_store::{Enqueue, Entry, JournalCursor, Outbox, OutboxEntry, Store, StoreError};

use crate::config::{Config, RegionalConfig, RegionalFrom};
use crate::outbox::{Courier, Failure};
use crate::Gateway;

/// The outbox destination of every document.
pub const DESTINATION: &str = "regional";
/// The follower's cursor in the store (`regional.cursor`).
pub const CURSOR: &str = "regional";
/// How often the follower looks for new commits.
const POLL: Duration = Duration::from_millis(500);
/// About how much of the journal one step reads.
const READ_BYTES: usize = 8 << 20;
/// The media type of a document (as `GET /api/v1/reports/{hash}/cda` answers).
pub const CONTENT_TYPE: &str = "application/xml; charset=utf-8";

/// Whether a committed report goes to the platform: a new report or version (not a
/// duplicate), final or corrected (a preliminary one is not a shared document; a cancelled
/// one has no WS/T 500 form), of a listed institution (all when none is listed).
pub fn goes(cfg: &RegionalConfig, status: ReportStatus, institution: &str) -> bool {
    matches!(status, ReportStatus::Final | ReportStatus::Corrected)
        && (cfg.institutions.is_empty() || cfg.institutions.iter().any(|i| i == institution))
}

/// The patient's national ID in the clear, read back from a lab report's original message
/// (the store keeps only its keyed hash): only an ID of PID-3 whose person key
/// (`person_key`, the store's) is the report's. `None` for any other report.
pub fn national_id_in_original(
    person_key: impl Fn(&PatientId) -> Option<String>,
    report: &Report,
    original: &[u8],
) -> Option<String> {
    let key = report.patient.national_id_key.as_deref()?;
    if report.kind != ReportKind::Lab {
        return None;
    }
    let msg = huren_hl7::Message::parse(original, None).ok()?;
    huren_hl7::national_ids(&msg)
        .into_iter()
        .find(|id| person_key(&PatientId::National(id.clone())).is_some_and(|k| k == key))
}

/// A report's document as the platform gets it, with what the audit record names.
pub struct SharedDocument {
    /// The WS/T 500 document.
    pub xml: String,
    /// The patient's person key.
    pub person: Option<String>,
    /// The sending institution.
    pub institution: String,
}

impl Gateway {
    /// The WS/T 500 document of a stored report as the regional platform gets it; `Ok(Err(why))`
    /// when none can be made.
    pub fn regional_document(
        &self,
        hash: &ContentHash,
    ) -> Result<Result<SharedDocument, String>, StoreError> {
        let store = self.ingest_store();
        let (Some(meta), Some(report)) = (store.report_meta(hash)?, store.report_shared(hash)?)
        else {
            return Ok(Err(format!("report {hash} is not stored")));
        };
        let mut ctx =
            huren_cda::CdaContext::new(*hash, meta.version, &meta.received_at, &meta.institution);
        if let Some(i) = self.config.institution(&meta.institution) {
            ctx.custodian.name = Some(i.name.clone());
            if let Some(oc) = &i.organisation_code {
                ctx.custodian.code = oc.clone();
            }
        }
        if meta.version >= 2 {
            let prev = meta.version - 1;
            ctx.replaces = store
                .versions(&meta.chain)?
                .get(prev as usize - 1)
                .map(|h| huren_cda::Replaced {
                    hash: *h,
                    version: prev,
                });
        }
        if self.config.regional.as_ref().is_some_and(|r| r.national_id) {
            if let Some(original) = store.blob(&report.original)? {
                ctx.national_id =
                    national_id_in_original(|id| store.person_key(id).ok(), &report, &original);
                ctx.include_national_id = ctx.national_id.is_some();
            }
        }
        let person = store
            .person_key(&PatientId::Local {
                institution: report.patient.institution.clone(),
                local_id: report.patient.local_id.clone(),
            })
            .ok();
        Ok(huren_cda::document(&report, &ctx)
            .map(|xml| SharedDocument {
                xml,
                person,
                institution: meta.institution,
            })
            .map_err(|e| e.to_string()))
    }

    /// One step of the follower: reads the journal after `cursor`, enqueues the reports that
    /// go (one `fdatasync` for the batch), and returns the cursor after them with how many
    /// it enqueued; the caller saves the cursor. A report of which no document can be made
    /// (it lacks its kind's body) is logged and skipped.
    pub fn regional_step(
        &self,
        cursor: JournalCursor,
    ) -> Result<(JournalCursor, usize), StoreError> {
        let Some(cfg) = &self.config.regional else {
            return Ok((cursor, 0));
        };
        let store = self.ingest_store();
        let (records, next) = store.records_after(cursor, READ_BYTES)?;
        let mut items = Vec::new();
        for rec in &records {
            for e in &rec.entries {
                let Entry::Report {
                    hash,
                    status,
                    institution,
                    outcome,
                    ..
                } = e
                else {
                    continue;
                };
                if matches!(outcome, huren_store::Outcome::Duplicate)
                    || !goes(cfg, *status, institution)
                    || store.regional().contains(&hash.to_string())
                {
                    continue;
                }
                // Only what a document can be made of: one that never can would hold every
                // later document back until it is parked.
                let Some(report) = store.report_shared(hash)? else {
                    return Err(StoreError::Corrupt(format!("report {hash} is not stored")));
                };
                match huren_cda::documentable(&report) {
                    Ok(()) => items.push(Enqueue {
                        id: hash.to_string(),
                        destination: DESTINATION.into(),
                        msh10: hash.hex(),
                        message: String::new(),
                    }),
                    Err(why) => {
                        tracing::warn!(report = %hash, reason = %why, "no shared document for the regional platform")
                    }
                }
            }
        }
        let n = store.regional().enqueue_all(items, Utc::now())?;
        if n > 0 {
            tracing::info!(
                documents = n,
                "shared documents queued for the regional platform"
            );
        }
        Ok((next, n))
    }
}

/// The saved cursor, or where a first start begins (`[regional] from`), saved at once so a
/// later start begins at the same place.
pub fn load_cursor(store: &Store, from: RegionalFrom) -> Result<JournalCursor, StoreError> {
    if let Some(c) = store.follower_cursor(CURSOR)? {
        return Ok(c);
    }
    let c = match from {
        RegionalFrom::Now => store.journal_end()?,
        RegionalFrom::Start => JournalCursor::default(),
    };
    store.save_follower_cursor(CURSOR, c)?;
    Ok(c)
}

/// The follower (spawned by `huren serve` with `[regional]`): from the saved cursor —
/// replaying what a crash left unqueued — then every [`POLL`], enqueues what was committed
/// since.
///
/// On a cluster one node follows at a time: the one holding the follower's lease (a session
/// lock that ends with its node); the others try again every [`POLL`]. The cursor is the
/// cluster's, so whichever node holds the lease goes on from where the last one stopped.
pub async fn follow(gw: Gateway) {
    let Some(from) = gw.config.regional.as_ref().map(|r| r.from) else {
        return;
    };
    let mut lease = None;
    loop {
        if lease.is_none() {
            let g = gw.clone();
            lease = match tokio::task::spawn_blocking(move || {
                g.ingest_store().regional().lease(LEASE)
            })
            .await
            {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "regional follower's lease not taken; retrying");
                    None
                }
                Err(_) => None,
            };
        }
        if lease.is_some() {
            follow_while_held(&gw, from).await;
            lease = None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The follower's lease (on the regional outbox's table).
const LEASE: &str = "regional-follower";

/// Follows until a step fails (then the lease is taken again: another node may hold it by
/// then, and the cursor is read afresh).
async fn follow_while_held(gw: &Gateway, from: RegionalFrom) {
    let mut cursor = None;
    loop {
        let g = gw.clone();
        let done =
            tokio::task::spawn_blocking(move || -> Result<(JournalCursor, usize), StoreError> {
                let store = g.ingest_store();
                let mut c = match cursor {
                    Some(c) => c,
                    None => load_cursor(store, from)?,
                };
                let mut total = 0;
                loop {
                    let (next, n) = g.regional_step(c)?;
                    if next == c {
                        return Ok((c, total));
                    }
                    store.save_follower_cursor(CURSOR, next)?;
                    c = next;
                    total += n;
                }
            })
            .await;
        match done {
            Ok(Ok((c, _))) => cursor = Some(c),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "regional documents not queued; retrying");
                return;
            }
            Err(_) => {
                tracing::error!("regional follower step failed; retrying");
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Audits one attempt before it is sent (`Err` stops the attempt: nothing leaves unaudited).
pub type AuditHook = Arc<
    dyn Fn(AuditRecord) -> Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// The courier of shared documents: the HTTP client, the platform's URL and token, and the
/// audit of each attempt.
#[derive(Clone)]
pub struct Regional {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<Arc<String>>,
    audit: AuditHook,
}

impl Regional {
    /// The courier of `[regional]` (`None` without it): token and TLS files read, client
    /// built; the first problem, never the token.
    pub fn from_config(cfg: &Config, audit: AuditHook) -> Result<Option<Regional>, String> {
        let Some(r) = &cfg.regional else {
            return Ok(None);
        };
        let url = crate::webhook::check_url(&r.url).map_err(|e| format!("url {e}"))?;
        let token = match (&r.token_file, &r.token_env) {
            (Some(f), _) => Some(
                crate::webhook::read_private(f)
                    .map_err(|e| format!("token_file {}: {e}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, Some(v)) => {
                Some(std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))?)
            }
            (None, None) => None,
        };
        if token
            .as_deref()
            .is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("the token must be printable ASCII without spaces".into());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_secs(cfg.outbox.ack_timeout_secs.max(1));
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("huren/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &r.tls {
            let tls = crate::tls::outbox_client(t).map_err(|e| format!("tls: {e}"))?;
            let mut tls = (*tls).clone();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            b = b.tls_backend_preconfigured(tls);
        }
        let client = b.build().map_err(|e| format!("client: {e}"))?;
        Ok(Some(Regional {
            client,
            url,
            token: token.map(Arc::new),
            audit,
        }))
    }
}

impl Courier for Regional {
    const WHAT: &'static str = "shared document";

    fn outbox(gw: &Gateway) -> &Outbox {
        gw.ingest_store().regional()
    }

    async fn attempt(&self, gw: &Gateway, e: &OutboxEntry) -> Result<(String, String), Failure> {
        let hash: ContentHash =
            e.id.parse()
                .map_err(|_| format!("entry {} is not a report hash", e.id))?;
        let g = gw.clone();
        let made = tokio::task::spawn_blocking(move || g.regional_document(&hash))
            .await
            .map_err(|_| "document: the task failed".to_string())?;
        let doc = match made {
            Ok(Ok(d)) => d,
            Ok(Err(why)) => return Err(format!("document: {why}")),
            Err(err) => return Err(format!("document: {err}")),
        };
        (self.audit)(AuditRecord {
            actor: "system:regional".into(),
            institution: doc.institution,
            role: "system".into(),
            action: "regional_push".into(),
            patient: doc.person,
            purpose: Some("regional_sharing".into()),
            outcome: "ok".into(),
            returned: vec![e.id.clone()],
            detail: serde_json::json!({
                "destination": self.url.host_str(),
                "document": e.msh10,
                "attempt": e.attempts + 1,
            }),
            ..Default::default()
        })
        .await
        .map_err(|err| format!("audit: {err}"))?;
        let mut req = self
            .client
            .post(self.url.clone())
            .header("content-type", CONTENT_TYPE)
            .header("idempotency-key", &e.msh10)
            .body(doc.xml);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.as_str());
        }
        crate::webhook::answer(req.send().await, &e.msh10).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(institutions: &[&str]) -> RegionalConfig {
        RegionalConfig {
            url: "https://platform.example/wst500".into(),
            institutions: institutions.iter().map(|s| s.to_string()).collect(),
            national_id: false,
            token_file: None,
            token_env: None,
            tls: None,
            from: RegionalFrom::Now,
        }
    }

    #[test]
    fn final_and_corrected_reports_of_listed_institutions_go() {
        let all = cfg(&[]);
        assert!(goes(&all, ReportStatus::Final, "FX-ZX"));
        assert!(goes(&all, ReportStatus::Corrected, "FX-SQ01"));
        assert!(!goes(&all, ReportStatus::Preliminary, "FX-ZX"));
        assert!(!goes(&all, ReportStatus::Cancelled, "FX-ZX"));
        let some = cfg(&["FX-ZX"]);
        assert!(goes(&some, ReportStatus::Final, "FX-ZX"));
        assert!(!goes(&some, ReportStatus::Final, "FX-SQ01"));
    }
}
