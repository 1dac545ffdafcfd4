//! The gate: the only way from a request to a patient's data. It holds the store's read side
//! privately; a handler gets patient data only from a value the gate hands out — [`Asked`]
//! (a person's results), [`ReportRead`] (one report by hash), [`InstancesRead`] (DICOM
//! instances of a study, series or instance), [`SearchScope`] (a QIDO / C-FIND search) — and
//! the gate makes each of them only after it authenticated the principal, decided the
//! authorisation for that patient (`huren_access::decide`, consent codes verified against the
//! consent store, wrong codes counted towards a lockout) and wrote the request's one audit
//! record (a refusal is audited too). A handler that forgets cannot read: the store is not in
//! its reach.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use huren_access::{
    decide, Basis, Consent, ConsentScope, CredentialKind, Decision, Lockout, Policy, Presented,
    Principal, Request, Role, Subject, Tokens,
};
use huren_audit::{AuditRecord, AuditTrail};
use huren_model::{ContentHash, InstanceRecord, PatientId, Report, ReportKind};
pub use huren_recognition::EncounterKind;
use huren_recognition::{
    AuthorizationKind, Demographics, IntendedOrder, PatientAuthorization, QueryContext, Rules,
};
use huren_store::{ConsentStore, IdentityLink, ReportMeta, Store, StoreError, StudyRow};
use serde_json::{json, Value};

pub mod alerts;
pub mod cases;
pub mod centre;
mod preview;
mod problem;
pub mod query;
pub mod worklist;

pub use preview::{preview_cache_key, preview_size, PreviewFailure, PREVIEW_SIZES};

pub use problem::{bad_body, Problem};

/// A person's current reports as the gate hands them out: the identity link and each
/// report with its index entry.
pub type Loaded = (IdentityLink, Vec<(ReportMeta, Arc<Report>)>);

/// A check of a request against the instances it names, run after the decision (e.g. the
/// `Accept` header against the stored transfer syntaxes).
pub type Precheck<'a> = &'a (dyn Fn(&[InstanceRecord]) -> Result<(), Problem> + Sync);

/// Roles that read patients' clinical data.
pub const READERS: &[Role] = &[Role::Clinician, Role::InstitutionSystem, Role::Operator];

/// Settings of the gate.
#[derive(Clone, Debug)]
pub struct GateOptions {
    /// Most matches one search answers (QIDO-RS, C-FIND).
    pub search_cap: usize,
    /// Default lifetime of a recorded consent.
    pub consent_ttl: chrono::Duration,
    /// Longest lifetime a consent may be given.
    pub consent_max_ttl: chrono::Duration,
    /// Wrong codes for one person within `lockout_window` that lock further tries.
    pub lockout_failures: usize,
    /// The window of `lockout_failures`, and how long the lock then lasts.
    pub lockout_window: chrono::Duration,
    /// Failed authentications of one peer address within `auth_failure_window` after which
    /// it is refused (429) until the window ends.
    pub auth_failure_limit: u64,
    /// The window of failed authentication: one audit record per peer and window.
    pub auth_failure_window: chrono::Duration,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            search_cap: 200,
            consent_ttl: chrono::Duration::hours(24),
            consent_max_ttl: chrono::Duration::days(30),
            lockout_failures: 5,
            lockout_window: chrono::Duration::minutes(15),
            auth_failure_limit: 20,
            auth_failure_window: chrono::Duration::minutes(1),
        }
    }
}

/// The gate of one server (or one command-line run).
pub struct Gate {
    store: Store,
    audit: Arc<dyn AuditTrail>,
    consents: Arc<ConsentStore>,
    tokens: Arc<Tokens>,
    lockout: Mutex<Lockout>,
    /// Failed authentication (bearer tokens, sign-in) per peer address.
    auth_failures: Mutex<huren_access::AuthFailures>,
    /// Refused TLS handshakes per peer address.
    tls_failures: Mutex<huren_access::AuthFailures>,
    code_key: [u8; 32],
    rules: Arc<Rules>,
    options: GateOptions,
    /// A region's own verifier of codes; `None`: the consortium's consent store.
    verifier: Option<Arc<dyn huren_access::Verifier>>,
    /// The reading centres and their roster (who may see which worklist).
    /// The reading centres and roster: the configured ones with the roster edits applied,
    /// swapped whole when a head edits a roster.
    workflow: worklist::SharedWorkflow,
    /// Alert groups, duty rosters, routes.
    alerting: Arc<huren_alerting::Alerting>,
    /// The institutions' names and phones, by code (shown with alerts).
    institutions: Arc<std::collections::HashMap<String, (String, Option<String>)>>,
    /// The institutions' organisation codes, by code (CDA custodians).
    org_codes: Arc<std::collections::HashMap<String, String>>,
}

/// Proof that the gate made a value: it has no public constructor.
#[derive(Clone, Debug)]
pub struct Sealed(());

fn now_utc() -> DateTime<Utc> {
    Utc::now()
}

fn shanghai_now() -> chrono::DateTime<chrono::FixedOffset> {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .fixed_offset()
}

/// The base of an audit record for a principal: actor, institution, role (its real role:
/// `institution_system` for a certificate, never "clinician").
pub fn record(p: &Principal, action: &str) -> AuditRecord {
    AuditRecord {
        actor: p.id.clone(),
        institution: p.institution.clone(),
        role: p.role.as_str().to_string(),
        action: action.into(),
        outcome: "ok".into(),
        ..Default::default()
    }
}

/// Reads the patient-authorisation headers (`X-Patient-Authorization`, `X-Break-Glass`).
pub fn presented(h: &HeaderMap) -> Result<Option<Presented>, Problem> {
    huren_access::parse_presented(
        h.get("x-patient-authorization").map(|v| v.as_bytes()),
        h.get("x-break-glass").map(|v| v.as_bytes()),
    )
    .map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad patient authorization",
            e.to_string(),
        )
    })
}

fn store_problem(e: StoreError) -> Problem {
    Problem::from(e)
}

/// What a person-wide request asks about (before the gate decides).
pub struct Ask<'a> {
    /// `Some("web")` for the web page: recorded in every audit record of the request.
    pub channel: Option<&'static str>,
    /// The patient as written (`INST:LOCAL` or `nid:…`).
    pub patient: &'a str,
    /// Encounter kind (`outpatient` by default).
    pub encounter: Option<&'a str>,
    /// The order the clinician intends (pre-order check).
    pub intended: Option<IntendedOrder>,
    /// The patient's demographics as the clinician knows them.
    pub demographics: Demographics,
    /// The kind of data asked for, if one.
    pub kind: Option<ReportKind>,
}

/// A person-wide request the gate allowed: the patient, the request context for the
/// recognition engine, who asked and on what basis. Only the gate makes one.
pub struct Asked {
    /// `Some("web")` for the web page.
    pub channel: Option<&'static str>,
    /// The patient as asked.
    pub patient: PatientId,
    /// The person's key.
    pub person: String,
    /// The recognition engine's request context.
    pub ctx: QueryContext,
    /// Who asked.
    pub principal: Principal,
    /// The audited action.
    pub action: &'static str,
    /// Why it was allowed.
    pub basis: Basis,
    /// What the blocking reads of this request need (cloneable into a blocking task).
    pub token: PersonToken,
}

/// The part of an [`Asked`] that blocking reads need; only the gate makes one.
#[derive(Clone, Debug)]
pub struct PersonToken {
    /// The patient as asked.
    pub patient: PatientId,
    /// The kind the consent covers, if it narrows.
    pub kind_scope: Option<ReportKind>,
    _sealed: Sealed,
}

impl Asked {
    /// The audit record of this request, with its authorisation basis; the caller adds what
    /// was returned and hands it to [`Gate::audit`].
    pub fn audit_base(&self) -> AuditRecord {
        let mut r = record(&self.principal, self.action);
        r.patient = Some(self.person.clone());
        r.purpose = Some(format!("{:?}", self.ctx.encounter).to_lowercase());
        r.break_glass = matches!(self.basis, Basis::BreakGlass { .. });
        r.detail = basis_detail(&self.basis);
        if let Some(c) = self.channel {
            merge(&mut r.detail, json!({ "channel": c }));
        }
        r
    }

    /// The kinds this request may see (`None`: all).
    pub fn kind_scope(&self) -> Option<ReportKind> {
        self.basis.kind_scope()
    }
}

fn basis_detail(b: &Basis) -> Value {
    match b {
        Basis::Consent { id, scope } => {
            json!({"authorization": "consent", "consent": id, "scope": scope.as_str()})
        }
        Basis::BreakGlass { reason } => {
            json!({"authorization": "break_glass", "break_glass_reason": reason})
        }
        b => json!({ "authorization": b.as_str() }),
    }
}

/// The encounter a request is made for (`outpatient` when not said); break-glass depends on it.
pub fn encounter(s: Option<&str>) -> Result<EncounterKind, Problem> {
    match s.unwrap_or("outpatient") {
        "outpatient" | "" => Ok(EncounterKind::Outpatient),
        "emergency" => Ok(EncounterKind::Emergency),
        "inpatient" => Ok(EncounterKind::Inpatient),
        "physical_exam" => Ok(EncounterKind::PhysicalExam),
        other => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad encounter",
            format!("encounter must be outpatient, emergency, inpatient or physical_exam, not {other:?}"),
        )),
    }
}

/// One report by hash, allowed and audited.
pub struct ReportRead {
    /// Its index entry.
    pub meta: ReportMeta,
    store: Store,
}

impl ReportRead {
    /// The report's canonical JSON bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, Problem> {
        self.store.blob(&self.meta.hash)?.ok_or_else(|| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "missing blob",
                self.meta.hash.to_string(),
            )
        })
    }

    /// The report.
    pub fn report(&self) -> Result<Option<Arc<Report>>, Problem> {
        Ok(self.store.report_shared(&self.meta.hash)?)
    }

    /// The original message's bytes.
    pub fn original(&self) -> Result<Vec<u8>, Problem> {
        self.store.blob(&self.meta.original)?.ok_or_else(|| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "missing blob",
                self.meta.original.to_string(),
            )
        })
    }

    /// The version this one replaces in its chain (hash and 1-based version); `None` for a
    /// first version. Chain data of the report already read, not another patient read.
    pub fn replaced(&self) -> Result<Option<(ContentHash, u32)>, Problem> {
        if self.meta.version < 2 {
            return Ok(None);
        }
        let prev = self.meta.version - 1;
        let chain = self.store.versions(&self.meta.chain)?;
        Ok(chain.get(prev as usize - 1).map(|h| (*h, prev)))
    }

    /// An attachment the report names (an ECG's waveform); `None` for any other hash.
    pub fn attachment(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, Problem> {
        let named = self
            .report()?
            .is_some_and(|r| r.ecg.as_ref().and_then(|e| e.waveform) == Some(*hash));
        if !named {
            return Ok(None);
        }
        Ok(self.store.blob(hash)?)
    }
}

/// DICOM instances (of a study, a series or one instance), allowed and audited.
pub struct InstancesRead {
    /// The instances, in series and instance order.
    pub records: Vec<InstanceRecord>,
    store: Store,
}

impl InstancesRead {
    /// One instance's stored original.
    pub fn original(&self, rec: &InstanceRecord) -> Result<Vec<u8>, Problem> {
        if !self.records.iter().any(|r| r.original == rec.original) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "not an instance of this request",
            ));
        }
        self.store.blob(&rec.original)?.ok_or_else(|| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "missing blob",
                rec.original.to_string(),
            )
        })
    }

    /// A reader of the originals for a streamed answer (each hash one of these instances).
    pub fn originals(&self) -> OriginalReader {
        OriginalReader {
            store: self.store.clone(),
            allowed: self.records.iter().map(|r| r.original).collect(),
        }
    }

    /// The first instance's PNG preview, longest side `size` pixels rounded down to
    /// [`PREVIEW_SIZES`] (kept in the blob cache).
    pub async fn preview(&self, size: u32) -> Result<Option<Vec<u8>>, crate::PreviewFailure> {
        let Some(rec) = self.records.first() else {
            return Ok(None);
        };
        crate::preview::preview_png(&self.store, &rec.sop_instance_uid, size).await
    }
}

/// Reads originals of the instances one request was allowed.
#[derive(Clone)]
pub struct OriginalReader {
    store: Store,
    allowed: Vec<ContentHash>,
}

impl OriginalReader {
    /// One original (blocking); an error for a hash the request was not allowed.
    pub fn read(&self, h: &ContentHash) -> Result<Vec<u8>, std::io::Error> {
        if !self.allowed.contains(h) {
            return Err(std::io::Error::other("not an instance of this request"));
        }
        self.store
            .blob(h)
            .map_err(std::io::Error::other)?
            .ok_or_else(|| std::io::Error::other(format!("missing blob {h}")))
    }
}

/// A search's scope: which study rows the caller may see. Its matches are released only
/// through [`SearchScope::release`], which writes the search's one audit record (naming every
/// person in the answer).
pub struct SearchScope {
    store: Store,
    audit: Arc<dyn AuditTrail>,
    record: AuditRecord,
    /// Most matches answered.
    pub cap: usize,
    institution: String,
    operator: bool,
    /// Foreign rows allowed: (institution, patient id) pairs verified for this request.
    foreign: Vec<(String, String)>,
}

/// The matches of a search, not yet released.
pub struct Found {
    rows: Vec<Vec<crate::query::Attr>>,
}

impl Found {
    /// How many matches.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl SearchScope {
    /// Whether a study row is in scope.
    pub fn allows(&self, row: &StudyRow) -> bool {
        self.operator
            || row.institution == self.institution
            || self
                .foreign
                .iter()
                .any(|(i, p)| *i == row.institution && *p == row.patient_id)
    }

    /// Runs a C-FIND / QIDO match inside the scope: at most `limit` rows from `offset`
    /// (blocking).
    pub fn find(
        &self,
        level: crate::query::Level,
        keys: &[crate::query::Key],
        offset: usize,
        limit: usize,
    ) -> Result<Found, StoreError> {
        let rows =
            crate::query::find(&self.store, level, keys, offset, limit, &|r| self.allows(r))?;
        Ok(Found { rows })
    }

    /// Writes the search's audit record — the persons whose studies the answer holds (the
    /// first as `patient`, all of them in `detail.persons` when more than one) and how many
    /// matches — and hands the matches out. `shown` is how many of them the answer carries.
    pub async fn release(
        mut self,
        found: Found,
        shown: usize,
    ) -> Result<Vec<Vec<crate::query::Attr>>, Problem> {
        let mut rows = found.rows;
        rows.truncate(shown);
        let get = |attrs: &[crate::query::Attr], t| {
            attrs
                .iter()
                .find(|a| a.tag == t)
                .and_then(|a| a.value.clone())
                .unwrap_or_default()
        };
        let mut persons: Vec<String> = Vec::new();
        for attrs in &rows {
            let inst = get(attrs, dicom_dictionary_std::tags::INSTITUTION_NAME);
            let pid = get(attrs, dicom_dictionary_std::tags::PATIENT_ID);
            let study = get(attrs, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
            let local = if pid.trim().is_empty() {
                format!("STUDY-{study}")
            } else {
                pid.trim().to_string()
            };
            let person = self
                .store
                .person_key(&PatientId::Local {
                    institution: inst.clone(),
                    local_id: local.clone(),
                })
                .unwrap_or_else(|_| format!("local:{inst}:{local}"));
            if !persons.contains(&person) {
                persons.push(person);
            }
        }
        self.record.patient = self.record.patient.take().or(persons.first().cloned());
        let mut extra = json!({ "matches": rows.len() });
        if persons.len() > 1 {
            extra["persons"] = json!(persons);
        }
        merge(&mut self.record.detail, extra);
        let audit = self.audit.clone();
        audit.append(self.record).await.map_err(|e| {
            tracing::error!(error = %e, "audit log append failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit failure",
                "the request could not be audited and was not answered",
            )
        })?;
        Ok(rows)
    }
}

/// Merges the members of `add` into the object `into` (made an object if it is not).
pub fn merge(into: &mut Value, add: Value) {
    if !into.is_object() {
        *into = json!({});
    }
    if let (Some(m), Value::Object(a)) = (into.as_object_mut(), add) {
        m.extend(a);
    }
}

/// A newly recorded consent and its code (shown once, never stored).
pub struct IssuedConsent {
    /// The consent as stored.
    pub consent: Consent,
    /// The code to hand to the patient.
    pub code: String,
}

impl Gate {
    /// A gate over a store, its audit log and consents.
    pub fn new(
        store: Store,
        audit: Arc<dyn AuditTrail>,
        consents: Arc<ConsentStore>,
        tokens: Arc<Tokens>,
        rules: Arc<Rules>,
        secret: &[u8],
        options: GateOptions,
    ) -> Gate {
        Gate {
            store,
            audit,
            consents,
            tokens,
            lockout: Mutex::new(Lockout::new(
                options.lockout_failures,
                options.lockout_window,
                options.lockout_window,
                100_000,
            )),
            auth_failures: Mutex::new(huren_access::AuthFailures::new(
                options.auth_failure_limit,
                options.auth_failure_window,
                100_000,
            )),
            tls_failures: Mutex::new(huren_access::AuthFailures::new(
                options.auth_failure_limit,
                options.auth_failure_window,
                100_000,
            )),
            code_key: huren_access::code_key(secret),
            rules,
            options,
            verifier: None,
            workflow: Arc::default(),
            alerting: Arc::default(),
            institutions: Arc::default(),
            org_codes: Arc::default(),
        }
    }

    /// Whether the store can take writes (readiness; see `huren_store::Store::ready`).
    pub fn ready(&self) -> Result<(), String> {
        self.store.ready()
    }

    /// Sets the scrape-time gauges of `/metrics` from the stores: counts only, no patient
    /// data (so no audit record).
    pub fn fill_gauges(&self) {
        use huren_metrics::{KindLabels, OutboxLabels};
        let g = &huren_metrics::global().gauges;
        g.commit_queue.set(self.store.commit_queue() as i64);
        for channel in huren_store::OUTBOX_CHANNELS {
            let Some(outbox) = self.store.outbox_channel(channel) else {
                continue;
            };
            for state in [
                huren_store::OutboxState::Pending,
                huren_store::OutboxState::Parked,
            ] {
                g.outbox
                    .get_or_create(&OutboxLabels {
                        channel: channel.into(),
                        state: state.as_str().into(),
                    })
                    .set(outbox.count(state) as i64);
            }
        }
        let alerts = self.store.alerts();
        for kind in [
            huren_alerting::AlertKind::Stemi,
            huren_alerting::AlertKind::LabCritical,
        ] {
            let open = alerts.count(|a| a.is_open() && a.raised.kind == kind);
            g.alerts_open
                .get_or_create(&KindLabels {
                    kind: kind.as_str().into(),
                })
                .set(open as i64);
        }
        g.tasks_open
            .set(self.store.tasks().count(|t| !t.state.is_terminal()) as i64);
    }

    /// The same gate knowing the institutions' names and phones: `(code, name, phone)`.
    pub fn with_institutions(
        mut self,
        list: impl IntoIterator<Item = (String, String, Option<String>)>,
    ) -> Gate {
        self.institutions = Arc::new(list.into_iter().map(|(c, n, p)| (c, (n, p))).collect());
        self
    }

    /// The configured name of an institution, by code.
    pub fn institution_name(&self, code: &str) -> Option<String> {
        self.institutions.get(code).map(|(n, _)| n.clone())
    }

    /// The configured organisation code (统一社会信用代码) of an institution.
    pub fn organisation_code(&self, code: &str) -> Option<String> {
        self.org_codes.get(code).cloned()
    }

    /// The same gate knowing the institutions' organisation codes: `(code, organisation code)`.
    pub fn with_organisation_codes(
        mut self,
        list: impl IntoIterator<Item = (String, String)>,
    ) -> Gate {
        self.org_codes = Arc::new(list.into_iter().collect());
        self
    }

    /// The same gate deciding alerts by these groups and duty rosters.
    pub fn with_alerting(mut self, alerting: huren_alerting::Alerting) -> Gate {
        self.alerting = Arc::new(alerting);
        self
    }

    /// The same gate deciding worklists by these reading centres and roster, with the roster
    /// edits recorded in the store (`roster.log`) applied: the latest edit of a centre
    /// replaces its configured roster. An edit that no longer fits the configuration (its
    /// centre was removed) is skipped with a warning.
    pub fn with_workflow(self, mut workflow: huren_workflow::Workflow) -> Gate {
        for edit in self.store.roster().latest() {
            let centre = huren_workflow::CentreId(edit.centre.clone());
            match workflow.with_roster(&centre, &edit.entries) {
                Ok(w) => workflow = w,
                Err(e) => {
                    tracing::warn!(centre = %edit.centre, error = %e, "a recorded roster edit no longer applies; the configured roster stays")
                }
            }
        }
        if let Ok(mut w) = self.workflow.write() {
            *w = Arc::new(workflow);
        }
        self
    }

    /// The reading centres and roster as they are now.
    pub(crate) fn wf(&self) -> Arc<huren_workflow::Workflow> {
        self.workflow
            .read()
            .map(|w| w.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Verifies codes with a region's own service instead of the built-in consent store.
    pub fn with_verifier(mut self, verifier: Arc<dyn huren_access::Verifier>) -> Gate {
        self.verifier = Some(verifier);
        self
    }

    /// The bearer tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The gate's settings.
    pub fn options(&self) -> &GateOptions {
        &self.options
    }

    /// Writes one audit record; the request fails (500) if it cannot be made durable.
    pub async fn audit(&self, record: AuditRecord) -> Result<(), Problem> {
        self.audit.append(record).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit log append failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit failure",
                "the request could not be audited and was not answered",
            )
        })
    }

    /// Notes a failed authentication (a missing or unknown token, a refused sign-in, with
    /// `tls`: a refused TLS handshake) of the peer at `peer` and audits it aggregated: the
    /// first failure of the peer in its window writes `rec`, with `detail.peer` and
    /// `detail.failures` (this one and any not recorded yet); later ones of the window write
    /// nothing and are recorded by [`Gate::flush_failures`] when the window ends. Returns
    /// `Some(retry after)` when the peer is over its limit: refuse with 429.
    pub async fn failed_authentication(
        &self,
        peer: Option<std::net::IpAddr>,
        tls: bool,
        mut rec: AuditRecord,
    ) -> Result<Option<std::time::Duration>, Problem> {
        let key = peer.map_or_else(|| "unknown".to_string(), huren_access::peer_key);
        let table = if tls {
            &self.tls_failures
        } else {
            &self.auth_failures
        };
        let (f, window) = {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            (t.fail(&key, now_utc()), t.window())
        };
        if let Some(n) = f.record {
            merge(
                &mut rec.detail,
                json!({"peer": key, "failures": n, "window_seconds": window.num_seconds()}),
            );
            self.audit(rec).await?;
        }
        Ok(f.retry_after.map(|d| d.to_std().unwrap_or_default()))
    }

    /// Whether `peer` is refused for failed authentication now (retry after).
    pub fn auth_limited(&self, peer: Option<std::net::IpAddr>) -> Option<std::time::Duration> {
        let key = peer.map_or_else(|| "unknown".to_string(), huren_access::peer_key);
        let t = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        t.limited(&key, now_utc())
            .map(|d| d.to_std().unwrap_or_default())
    }

    /// Records the failed authentications counted in windows that have ended (one record
    /// per peer and window: `detail.failures`). Call it periodically (the server does, every
    /// few seconds) and, with `all` (every window ends now), at shutdown.
    pub async fn flush_failures(&self, all: bool) -> Result<(), Problem> {
        for (tls, table) in [(false, &self.auth_failures), (true, &self.tls_failures)] {
            let (due, window) = {
                let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                let w = t.window();
                (t.due(if all { now_utc() + w } else { now_utc() }), w)
            };
            for (peer, n) in due {
                self.audit(AuditRecord {
                    actor: "anonymous".into(),
                    action: if tls { "tls_handshake" } else { "authenticate" }.into(),
                    outcome: "denied: failed authentication".into(),
                    detail: json!({"peer": peer, "failures": n,
                        "window_seconds": window.num_seconds(), "window_ended": true}),
                    ..Default::default()
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Blocking form of [`Gate::audit`] (the command line).
    pub fn audit_blocking(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.audit.append_blocking(record).map(|_| ())
    }

    /// The audit log (the privacy officer's view and statistics read it).
    pub fn audit_log(&self) -> &Arc<dyn AuditTrail> {
        &self.audit
    }

    /// The identity review queue: the open items (local keys, keyed person keys, the
    /// claiming message; no national ID in clear), for the privacy officer only — the role
    /// is checked here (a refusal is audited); the caller audits the answer.
    pub async fn identity_reviews(
        &self,
        p: &Principal,
    ) -> Result<Vec<huren_store::ReviewItem>, Problem> {
        self.require_role(p, &[Role::PrivacyOfficer], "identity_review")
            .await?;
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.identity_reviews(true)).await??)
    }

    /// An outbox (`channel`, one of [`huren_store::OUTBOX_CHANNELS`]), for the operator
    /// view: the entries in `state` (all when `None`), without their message content; an
    /// unknown channel has none. Privacy officer or operator only — the role is checked here
    /// (a refusal is audited); the caller audits the answer.
    pub async fn outbox(
        &self,
        p: &Principal,
        state: Option<huren_store::OutboxState>,
        channel: &str,
    ) -> Result<Vec<huren_store::OutboxEntry>, Problem> {
        self.require_role(p, &[Role::PrivacyOfficer, Role::Operator], "outbox_view")
            .await?;
        Ok(self
            .store
            .outbox_channel(channel)
            .map(|o| o.list(state))
            .unwrap_or_default())
    }

    /// Decides an identity review item (the privacy officer only; the role is checked here,
    /// a refusal audited; the caller audits the outcome). `Ok(Err(_))` is the store's
    /// refusal (no such item, already resolved) for the caller to answer and audit.
    pub async fn resolve_identity_review(
        &self,
        p: &Principal,
        id: &str,
        decision: huren_store::ReviewDecision,
        reason: &str,
    ) -> Result<Result<huren_store::ReviewResolution, StoreError>, Problem> {
        self.require_role(p, &[Role::PrivacyOfficer], "identity_review")
            .await?;
        match self
            .store
            .resolve_identity_review(id, decision, &p.id, reason)
            .await
        {
            Ok(r) => Ok(Ok(r)),
            Err(e @ (StoreError::ReviewNotFound(_) | StoreError::ReviewClosed(_))) => Ok(Err(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// The person key of a patient identifier (no patient data).
    pub fn person_key(&self, id: &PatientId) -> Result<String, StoreError> {
        self.store.person_key(id)
    }

    fn person_of_local(&self, institution: &str, local_id: &str) -> Option<String> {
        self.store
            .person_key(&PatientId::Local {
                institution: institution.to_string(),
                local_id: local_id.to_string(),
            })
            .ok()
    }

    fn policy(&self, enc: EncounterKind) -> Policy {
        let p = &self.rules.file.patient_authorization;
        Policy {
            required: p.required,
            break_glass_allowed: p.break_glass_allowed_for.contains(&enc),
        }
    }

    /// Decides one request; counts a wrong code towards the person's lockout.
    fn decide(
        &self,
        p: &Principal,
        roles: &[Role],
        subject: Subject<'_>,
        presented: Option<&Presented>,
        enc: EncounterKind,
    ) -> Decision {
        let now = now_utc();
        let person = match &subject {
            Subject::Person { person, .. } | Subject::Data { person, .. } => Some(*person),
            _ => None,
        };
        let mut d = self.decide_on(p, roles, subject.clone(), presented, enc, person, now);
        // On a cluster another node may have recorded or revoked a consent this node has not
        // seen yet: a decision that rests on the person's consents is taken again on their
        // stream as it is now (a no-op on one machine).
        let on_consents = matches!(&d, Decision::Deny(x) if x.wrong_code)
            || matches!(&d, Decision::Allow(Basis::Consent { .. }));
        if let Some(who) = person.filter(|_| on_consents) {
            match self.consents.refresh(who) {
                Ok(true) => d = self.decide_on(p, roles, subject, presented, enc, person, now),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "reading the cluster's consents failed");
                    d = Decision::Deny(huren_access::Denial {
                        status: 503,
                        code: "CONSENTS_UNAVAILABLE",
                        reason: "the patient's authorisations cannot be read now; try again".into(),
                        wrong_code: false,
                    });
                }
            }
        }
        if let (Some(who), Ok(mut l)) = (person, self.lockout.lock()) {
            match &d {
                Decision::Deny(x) if x.wrong_code => {
                    l.fail(who, now);
                }
                Decision::Allow(Basis::Consent { .. }) => l.succeed(who),
                _ => {}
            }
        }
        d
    }

    /// One decision on the consents this node holds.
    #[allow(clippy::too_many_arguments)]
    fn decide_on(
        &self,
        p: &Principal,
        roles: &[Role],
        subject: Subject<'_>,
        presented: Option<&Presented>,
        enc: EncounterKind,
        person: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Decision {
        let consents = person
            .map(|p| self.consents.of_person(p))
            .unwrap_or_default();
        let locked_until = person.and_then(|who| {
            self.lockout
                .lock()
                .ok()
                .and_then(|l| l.locked_until(who, now))
        });
        let built_in = huren_access::ConsentList {
            consents: &consents,
            key: &self.code_key,
        };
        let verifier: &dyn huren_access::Verifier = match &self.verifier {
            Some(v) => v.as_ref(),
            None => &built_in,
        };
        decide(&Request {
            principal: p,
            roles,
            subject,
            presented,
            verifier,
            locked_until,
            policy: self.policy(enc),
            now,
        })
    }

    /// Audits a refusal and turns it into the problem answer.
    async fn refuse(&self, mut rec: AuditRecord, d: &huren_access::Denial) -> Problem {
        rec.outcome = format!("denied: {}", d.reason);
        if let Err(p) = self.audit(rec).await {
            return p;
        }
        let status = StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN);
        let title = if d.code == "ROLE" {
            "forbidden"
        } else {
            "patient authorisation"
        };
        Problem::new(status, title, d.reason.clone()).code(d.code)
    }

    /// Checks a role for an action about no patient (statistics, the audit view, recording a
    /// consent); a refusal is audited.
    pub async fn require_role(
        &self,
        p: &Principal,
        roles: &[Role],
        action: &str,
    ) -> Result<(), Problem> {
        match decide(&Request {
            principal: p,
            roles,
            subject: Subject::NoPatient,
            presented: None,
            verifier: &huren_access::ConsentList {
                consents: &[],
                key: &self.code_key,
            },
            locked_until: None,
            policy: Policy {
                required: true,
                break_glass_allowed: false,
            },
            now: now_utc(),
        }) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(d) => Err(self.refuse(record(p, action), &d).await),
        }
    }

    /// Authorises a person-wide request (results, check, decisions, FHIR, the web page).
    /// A refusal is audited and answered 403 (429 while the person is locked).
    pub async fn patient(
        &self,
        p: Principal,
        action: &'static str,
        presented: Option<Presented>,
        ask: Ask<'_>,
    ) -> Result<Asked, Problem> {
        let roles: &[Role] = if action == "decision" {
            &[Role::Clinician]
        } else {
            READERS
        };
        let patient: PatientId = ask
            .patient
            .parse()
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad patient id", format!("{e}")))?;
        let enc = encounter(ask.encounter)?;
        let person = self.store.person_key(&patient)?;
        let d = self.decide(
            &p,
            roles,
            Subject::Person {
                person: &person,
                kind: ask.kind,
            },
            presented.as_ref(),
            enc,
        );
        let auth = match &d {
            Decision::Allow(Basis::BreakGlass { reason }) => Some(PatientAuthorization {
                kind: AuthorizationKind::BreakGlass,
                reason: Some(reason.clone()),
            }),
            Decision::Allow(Basis::Consent { id, .. }) => Some(PatientAuthorization {
                kind: match presented {
                    Some(Presented::Code {
                        kind: CredentialKind::MedInsuranceCode,
                        ..
                    }) => AuthorizationKind::MedInsuranceCode,
                    Some(Presented::Code {
                        kind: CredentialKind::IdCard,
                        ..
                    }) => AuthorizationKind::IdCard,
                    _ => AuthorizationKind::HealthCard,
                },
                reason: Some(format!("consent:{id}")),
            }),
            // Own institution, no requirement, the operator: the engine sees an authorised
            // request (the gate decided).
            Decision::Allow(_) => Some(PatientAuthorization {
                kind: AuthorizationKind::HealthCard,
                reason: None,
            }),
            Decision::Deny(_) => None,
        };
        let basis = match d {
            Decision::Allow(b) => b,
            Decision::Deny(denial) => {
                let mut r = record(&p, action);
                r.patient = Some(person);
                r.purpose = Some(format!("{enc:?}").to_lowercase());
                r.break_glass = matches!(presented, Some(Presented::BreakGlass { .. }));
                if let Some(c) = ask.channel {
                    r.detail = json!({ "channel": c });
                }
                return Err(self.refuse(r, &denial).await);
            }
        };
        Ok(Asked {
            token: PersonToken {
                patient: patient.clone(),
                kind_scope: basis.kind_scope(),
                _sealed: Sealed(()),
            },
            channel: ask.channel,
            patient,
            person,
            ctx: QueryContext {
                now: shanghai_now(),
                requester_org: p.institution.clone(),
                encounter: enc,
                intended_order: ask.intended,
                patient: ask.demographics,
                patient_authorization: auth,
                clinical_flags: Default::default(),
            },
            principal: p,
            action,
            basis,
        })
    }

    /// The generation counter of an allowed person (read it before the reports).
    pub fn person_generation(&self, asked: &Asked) -> u64 {
        self.store.person_generation(&asked.person)
    }

    /// An imaging study report's instances, for an allowed person whose reports include it.
    pub fn study_instances(
        &self,
        asked: &PersonToken,
        study_report: &Report,
        uid: &str,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let _ = asked;
        let Some(im) = study_report.imaging.as_ref() else {
            return Ok(Vec::new());
        };
        if im.study_instance_uid != uid {
            return Ok(Vec::new());
        }
        self.store.instances_of_study(uid)
    }

    /// The allowed person's current reports (narrowed to the consent's kind), blocking.
    pub fn patient_reports(
        &self,
        asked: &PersonToken,
        kind: Option<ReportKind>,
    ) -> Result<Loaded, StoreError> {
        let kind = match (kind, asked.kind_scope) {
            (Some(k), Some(s)) if k != s => return Ok((IdentityLink::LocalOnly, Vec::new())),
            (k, s) => k.or(s),
        };
        let (link, metas) = self.store.patient_reports(&asked.patient, kind)?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            if let Some(r) = self.store.report_shared(&m.hash)? {
                out.push((m, r));
            }
        }
        Ok((link, out))
    }

    /// One report by hash: allowed when it is the caller's institution's, or with the
    /// patient's verified authorisation; one audit record either way.
    pub async fn report(
        &self,
        p: &Principal,
        presented: Option<&Presented>,
        enc: EncounterKind,
        hash: &str,
        action: &'static str,
    ) -> Result<ReportRead, Problem> {
        let h: ContentHash = hash.parse().map_err(|e| {
            Problem::new(StatusCode::BAD_REQUEST, "bad report hash", format!("{e}"))
        })?;
        let mut rec = record(p, action);
        if !READERS.contains(&p.role) {
            let d = huren_access::Denial::role(p.role, "read reports");
            return Err(self.refuse(rec, &d).await);
        }
        let Some(meta) = self.store.report_meta(&h)? else {
            rec.outcome = "not found".into();
            self.audit(rec).await?;
            return Err(Problem::new(StatusCode::NOT_FOUND, "no such report", hash));
        };
        let (inst, local) = meta.local.split_once(':').unwrap_or(("", &meta.local));
        let person = self
            .person_of_local(inst, local)
            .unwrap_or_else(|| format!("local:{}", meta.local));
        rec.patient = Some(person.clone());
        let d = self.decide(
            p,
            READERS,
            Subject::Data {
                person: &person,
                institution: &meta.institution,
                kind: meta.kind,
            },
            presented,
            enc,
        );
        match d {
            Decision::Deny(d) => Err(self.refuse(rec, &d).await),
            // Its message claimed another national ID than its local ID's link (an open
            // identity review item): not shown as the person's, except to its own sender.
            Decision::Allow(_)
                if meta.identity_review.is_some() && p.institution != meta.institution =>
            {
                let d = huren_access::Denial {
                    status: 409,
                    code: "IDENTITY_UNCERTAIN",
                    reason: "the report's patient identity is under review".into(),
                    wrong_code: false,
                };
                Err(self.refuse(rec, &d).await)
            }
            Decision::Allow(b) => {
                rec.break_glass = matches!(b, Basis::BreakGlass { .. });
                rec.detail = basis_detail(&b);
                rec.returned = vec![meta.hash.to_string()];
                self.audit(rec).await?;
                Ok(ReportRead {
                    meta,
                    store: self.store.clone(),
                })
            }
        }
    }

    /// DICOM instances of a study (and series, and instance): allowed when they are the
    /// caller's institution's, or with the patient's verified authorisation; one audit record.
    /// `precheck` (e.g. the `Accept` header against the stored transfer syntaxes) runs after
    /// the decision; its refusal is the request's audit record, with nothing returned.
    #[allow(clippy::too_many_arguments)]
    pub async fn instances(
        &self,
        p: &Principal,
        presented: Option<&Presented>,
        enc: EncounterKind,
        sel: Selection<'_>,
        action: &str,
        detail: Value,
        precheck: Option<Precheck<'_>>,
    ) -> Result<InstancesRead, Problem> {
        let mut rec = record(p, action);
        rec.detail = detail;
        if !READERS.contains(&p.role) {
            let d = huren_access::Denial::role(p.role, "read images");
            return Err(self.refuse(rec, &d).await);
        }
        let store = self.store.clone();
        let (study, series, uid) = (
            sel.study.map(str::to_string),
            sel.series.map(str::to_string),
            sel.instance.map(str::to_string),
        );
        let recs = tokio::task::spawn_blocking(move || select(&store, study, series, uid))
            .await?
            .map_err(store_problem)?;
        if recs.is_empty() {
            rec.outcome = "not found".into();
            self.audit(rec).await?;
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "not found",
                "no such study, series or instance",
            ));
        }
        // Every distinct (institution, patient) of the answer must be allowed.
        let mut owners: Vec<(String, String)> = recs
            .iter()
            .map(|r| (r.institution.clone(), local_of(r)))
            .collect();
        owners.sort();
        owners.dedup();
        let mut persons = Vec::new();
        let mut basis = Basis::OwnInstitution;
        for (inst, local) in &owners {
            let person = self
                .person_of_local(inst, local)
                .unwrap_or_else(|| format!("local:{inst}:{local}"));
            let d = self.decide(
                p,
                READERS,
                Subject::Data {
                    person: &person,
                    institution: inst,
                    kind: ReportKind::Imaging,
                },
                presented,
                enc,
            );
            persons.push(person);
            match d {
                Decision::Deny(d) => {
                    rec.patient = persons.last().cloned();
                    return Err(self.refuse(rec, &d).await);
                }
                Decision::Allow(b) => {
                    if !matches!(b, Basis::OwnInstitution) {
                        basis = b;
                    }
                }
            }
        }
        persons.dedup();
        rec.patient = persons.first().cloned();
        if persons.len() > 1 {
            merge(&mut rec.detail, json!({ "persons": persons }));
        }
        rec.break_glass = matches!(basis, Basis::BreakGlass { .. });
        merge(&mut rec.detail, basis_detail(&basis));
        if let Some(Err(problem)) = precheck.map(|f| f(&recs)) {
            rec.outcome = format!("refused: {}", problem.detail());
            self.audit(rec).await?;
            return Err(problem);
        }
        rec.returned = recs.iter().map(|r| r.original.to_string()).collect();
        self.audit(rec).await?;
        Ok(InstancesRead {
            records: recs,
            store: self.store.clone(),
        })
    }

    /// One instance of the imaging study a [`ReportRead`] allowed (the web page's previews): it
    /// must belong to that study and the report's institution. Covered by the report read's
    /// audit record.
    pub async fn instance_of_report(
        &self,
        read: &ReportRead,
        uid: &str,
    ) -> Result<InstancesRead, Problem> {
        let report = read
            .report()?
            .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no such report", "study"))?;
        let Some(im) = report.imaging.as_ref() else {
            return Err(Problem::new(StatusCode::NOT_FOUND, "not a study", "report"));
        };
        let rec = self.store.instance(uid)?.filter(|r| {
            r.study_instance_uid == im.study_instance_uid
                && r.institution == report.source.institution
        });
        match rec {
            Some(r) => Ok(InstancesRead {
                records: vec![r],
                store: self.store.clone(),
            }),
            None => Err(Problem::new(StatusCode::NOT_FOUND, "no such instance", uid)),
        }
    }

    /// The scope of a search (QIDO-RS, C-FIND): without an exact patient key only the
    /// caller's own institution's studies; with one, other institutions' studies of that
    /// patient ID where the presented authorisation verifies for their person. A refusal is
    /// audited here; an allowed search by [`SearchScope::release`].
    pub async fn search(
        &self,
        p: &Principal,
        presented: Option<&Presented>,
        patient_key: Option<&str>,
        action: &str,
        detail: Value,
    ) -> Result<SearchScope, Problem> {
        let mut rec = record(p, action);
        rec.detail = detail;
        if !READERS.contains(&p.role) {
            let d = huren_access::Denial::role(p.role, "search");
            return Err(self.refuse(rec, &d).await);
        }
        let mut scope = SearchScope {
            store: self.store.clone(),
            audit: self.audit.clone(),
            record: AuditRecord::default(),
            cap: self.options.search_cap,
            institution: p.institution.clone(),
            operator: p.role == Role::Operator,
            foreign: Vec::new(),
        };
        let exact = patient_key
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.contains(['*', '?', '\\']));
        if let (Some(pid), Some(pr)) = (exact, presented) {
            let store = self.store.clone();
            let pid2 = pid.to_string();
            let rows = tokio::task::spawn_blocking(move || store.studies(Some(&pid2)))
                .await?
                .map_err(store_problem)?;
            let mut owners: Vec<String> = rows
                .iter()
                .filter(|r| r.institution != p.institution)
                .map(|r| r.institution.clone())
                .collect();
            owners.sort();
            owners.dedup();
            let mut denied = None;
            let mut basis = None;
            for inst in owners {
                let person = self
                    .person_of_local(&inst, pid)
                    .unwrap_or_else(|| format!("local:{inst}:{pid}"));
                match self.decide(
                    p,
                    READERS,
                    Subject::Data {
                        person: &person,
                        institution: &inst,
                        kind: ReportKind::Imaging,
                    },
                    Some(pr),
                    EncounterKind::Outpatient,
                ) {
                    Decision::Allow(b) => {
                        rec.patient.get_or_insert(person);
                        basis = Some(b);
                        scope.foreign.push((inst, pid.to_string()));
                    }
                    Decision::Deny(d) => {
                        rec.patient.get_or_insert(person);
                        denied = Some(d);
                    }
                }
            }
            if let (Some(d), true) = (denied, scope.foreign.is_empty()) {
                return Err(self.refuse(rec, &d).await);
            }
            if let Some(b) = basis {
                rec.break_glass = matches!(b, Basis::BreakGlass { .. });
                merge(&mut rec.detail, basis_detail(&b));
            }
        }
        if scope.foreign.is_empty() {
            merge(
                &mut rec.detail,
                json!({"authorization": if scope.operator { "local_operator" } else { "own_institution" }}),
            );
        }
        scope.record = rec;
        Ok(scope)
    }

    /// Records a patient's authorisation (a registration clerk or an institution's system)
    /// and returns its code; durable before it returns; audited.
    pub async fn issue_consent(
        &self,
        p: &Principal,
        patient: &str,
        kind: CredentialKind,
        credential: &str,
        scope: ConsentScope,
        ttl: Option<chrono::Duration>,
    ) -> Result<IssuedConsent, Problem> {
        let pid: PatientId = patient
            .parse()
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad patient id", format!("{e}")))?;
        let person = self.store.person_key(&pid)?;
        let ttl = ttl.unwrap_or(self.options.consent_ttl);
        if ttl < chrono::Duration::seconds(1) || ttl > self.options.consent_max_ttl {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad ttl",
                format!(
                    "the lifetime must be between 1 second and {} hours",
                    self.options.consent_max_ttl.num_hours()
                ),
            ));
        }
        let mut random = [0u8; 7 + 16];
        getrandom::getrandom(&mut random).map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no randomness",
                e.to_string(),
            )
        })?;
        let mut code_bytes = [0u8; 7];
        code_bytes.copy_from_slice(&random[..7]);
        let code = huren_access::new_code(code_bytes);
        let id: String = random[7..].iter().map(|b| format!("{b:02x}")).collect();
        let now = now_utc();
        let norm = huren_access::normalise_code(&code).unwrap_or_default();
        let consent = Consent {
            id,
            person: person.clone(),
            kind,
            scope,
            code_digest: huren_access::code_digest(&self.code_key, &person, &norm),
            credential_digest: huren_access::code_digest(&self.code_key, "credential", credential),
            issued_at: now,
            expires_at: now + ttl,
            issued_by: p.id.clone(),
            institution: p.institution.clone(),
            revoked_at: None,
        };
        let consents = self.consents.clone();
        let c2 = consent.clone();
        tokio::task::spawn_blocking(move || consents.record(c2))
            .await?
            .map_err(store_problem)?;
        let mut rec = record(p, "record_consent");
        rec.patient = Some(person);
        rec.detail = json!({"consent": consent.id, "credential": kind.as_str(),
            "scope": scope.as_str(), "expires_at": consent.expires_at});
        self.audit(rec).await?;
        Ok(IssuedConsent { consent, code })
    }

    /// Revokes a consent (its issuer's institution, or a privacy officer); audited.
    pub async fn revoke_consent(&self, p: &Principal, id: &str) -> Result<Consent, Problem> {
        let mut rec = record(p, "revoke_consent");
        rec.detail = json!({ "consent": id });
        let Some(c) = self.consents.get(id) else {
            rec.outcome = "not found".into();
            self.audit(rec).await?;
            return Err(Problem::new(StatusCode::NOT_FOUND, "no such consent", id));
        };
        rec.patient = Some(c.person.clone());
        let may = p.role == Role::PrivacyOfficer
            || (p.role.issues_consents() && p.institution == c.institution);
        if !may {
            let d = huren_access::Denial {
                status: 403,
                code: "ROLE",
                reason: "only the issuing institution or a privacy officer revokes a consent"
                    .into(),
                wrong_code: false,
            };
            return Err(self.refuse(rec, &d).await);
        }
        let consents = self.consents.clone();
        let (id2, by) = (id.to_string(), p.id.clone());
        let c = tokio::task::spawn_blocking(move || consents.revoke(&id2, now_utc(), &by))
            .await?
            .map_err(store_problem)?
            .unwrap_or(c);
        self.audit(rec).await?;
        Ok(c)
    }
}

/// What a WADO-RS path names.
#[derive(Clone, Copy, Debug)]
pub struct Selection<'a> {
    /// Study Instance UID.
    pub study: Option<&'a str>,
    /// Series Instance UID.
    pub series: Option<&'a str>,
    /// SOP Instance UID.
    pub instance: Option<&'a str>,
}

/// The local patient ID an instance is filed under (as the study report files it).
fn local_of(rec: &InstanceRecord) -> String {
    if rec.patient_id.trim().is_empty() {
        format!("STUDY-{}", rec.study_instance_uid)
    } else {
        rec.patient_id.trim().to_string()
    }
}

/// The instances a path names, each checked to belong to the path's study (and series).
fn select(
    store: &Store,
    study: Option<String>,
    series: Option<String>,
    uid: Option<String>,
) -> Result<Vec<InstanceRecord>, StoreError> {
    let mut recs: Vec<InstanceRecord> = match (&uid, &study) {
        (Some(u), _) => store.instance(u)?.into_iter().collect(),
        (None, Some(s)) => store.instances_of_study(s)?,
        (None, None) => Vec::new(),
    };
    recs.retain(|r| {
        study.as_ref().is_none_or(|s| &r.study_instance_uid == s)
            && series.as_ref().is_none_or(|s| &r.series_instance_uid == s)
    });
    recs.sort_by(|a, b| {
        (
            &a.series_number,
            &a.series_instance_uid,
            &a.instance_number,
            &a.sop_instance_uid,
        )
            .cmp(&(
                &b.series_number,
                &b.series_instance_uid,
                &b.instance_number,
                &b.sop_instance_uid,
            ))
    });
    Ok(recs)
}
