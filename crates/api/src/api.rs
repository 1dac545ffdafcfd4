//! The mutual-recognition API: prior results with verdicts, the pre-order check, decisions,
//! statistics and the audit view. Every request is authenticated, authorised and audited; the
//! audit record is durable before the answer leaves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, FixedOffset, NaiveDate};
use huren_audit::AuditRecord;
use huren_model::{PatientId, Report, ReportKind, ReportStatus};
use huren_recognition::stable_until_all;
use huren_recognition::{
    evaluate_all, validate_decision, AuthorizationKind, Candidate, Decision, Demographics,
    IdentityMethod, IntendedOrder, Level, QueryContext, Rules, Verdict,
};
use huren_store::{IdentityLink, ReportMeta};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::answers::{Answer, AnswerCache};
use crate::auth::{Principal, Role};
use huren_gate::Problem;
use huren_ingest::Gateway;

/// State of the HTTP API.
#[derive(Clone)]
pub struct ApiState {
    /// The ingest gateway (store + configuration).
    pub gw: Gateway,
    /// Recognition rules.
    pub rules: Arc<Rules>,
    /// The gate: authentication, the patient's authorisation, audit — and the only read
    /// access to patient data.
    pub gate: Arc<crate::gate::Gate>,
    /// Evaluated answers of the results and check endpoints.
    pub answers: Arc<AnswerCache>,
}

impl ApiState {
    /// Writes one audit record; the request fails (500) if it cannot be made durable.
    pub async fn audit(&self, record: AuditRecord) -> Result<(), Problem> {
        self.gate.audit(record).await
    }
}

/// An authenticated caller (bearer token).
pub struct Authed(pub Principal);

impl FromRequestParts<ApiState> for Authed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, Problem> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let peer = parts
            .extensions
            .get::<crate::https::PeerInstitution>()
            .and_then(|p| p.0.clone());
        let why = match (token.map(|t| st.gate.tokens().lookup(t)), peer) {
            (Some(Some(p)), Some(inst)) if p.institution != inst => {
                let mut r = record(p, "authenticate");
                r.outcome = format!(
                    "denied: token of {} over the client certificate of {inst}",
                    p.institution
                );
                st.audit(r).await?;
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the token belongs to another institution than the client certificate",
                ));
            }
            (Some(Some(p)), _) => return Ok(Authed(p.clone())),
            (None, Some(inst)) => return Ok(Authed(Principal::system(&inst))),
            (Some(None), _) => "invalid token",
            (None, None) => "no bearer token",
        };
        // The route template, never the concrete path: it may hold a national ID.
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("?", |m| m.as_str())
            .to_string();
        let rec = AuditRecord {
            actor: "anonymous".into(),
            action: format!("{} {route}", parts.method),
            outcome: format!("denied: {why}"),
            ..Default::default()
        };
        // Aggregated per peer address and window, and rate-limited (issue 16, finding 11).
        match st
            .gate
            .failed_authentication(peer_ip(parts), false, rec)
            .await?
        {
            Some(retry) => Err(too_many_failures(retry)),
            None => Err(
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", why)
                    .header(header::WWW_AUTHENTICATE, "Bearer realm=\"huren\""),
            ),
        }
    }
}

/// The peer's address (`ConnectInfo`, set by both listeners; absent in in-process tests).
pub fn peer_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The peer's address as an extractor (never refuses: `None` when unknown).
pub struct PeerIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(peer_ip(parts)))
    }
}

/// A JSON request body as `T`, or 400 `bad body` naming what is wrong with it.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad body", format!("body: {e}")))
}

/// The `{"reason":"…"}` body of a cancellation (a task, an alert, a referral): the reason,
/// or 400. Whether a blank reason may stand is the gate's and the model's to decide.
pub fn reason_body(body: &[u8]) -> Result<String, Problem> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ReasonBody {
        reason: String,
    }
    json_body::<ReasonBody>(body).map(|b| b.reason)
}

/// 429 for a peer over its limit of failed authentication, with `Retry-After` (seconds).
pub fn too_many_failures(retry: std::time::Duration) -> Problem {
    let secs = retry.as_secs().max(1);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed authentications",
        format!("too many failed authentications from this address; retry in {secs} s"),
    )
    .code("AUTHENTICATION_RATE_LIMITED")
    .header_value(header::RETRY_AFTER, &secs.to_string())
}

pub use crate::gate::{record, Ask, Asked};

/// The encounter a direct read is made for: the `encounter` query parameter (`outpatient`
/// when absent). Break-glass depends on it.
pub struct Enc(pub huren_recognition::EncounterKind);

impl<S: Send + Sync> FromRequestParts<S> for Enc {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let q = parts.uri.query().unwrap_or("");
        let v = q.split('&').find_map(|kv| kv.strip_prefix("encounter="));
        crate::gate::encounter(v).map(Enc)
    }
}

pub async fn require_role(
    st: &ApiState,
    p: &Principal,
    roles: &[Role],
    action: &str,
) -> Result<(), Problem> {
    st.gate.require_role(p, roles, action).await
}

fn parse_kind(s: Option<&str>) -> Result<Option<ReportKind>, Problem> {
    match s {
        None | Some("") => Ok(None),
        Some("lab") => Ok(Some(ReportKind::Lab)),
        Some("imaging") => Ok(Some(ReportKind::Imaging)),
        Some("ecg") => Ok(Some(ReportKind::Ecg)),
        Some(other) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad kind",
            format!("kind must be lab, imaging or ecg, not {other:?}"),
        )),
    }
}

fn parse_patient(id: &str) -> Result<PatientId, Problem> {
    id.parse()
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad patient id", format!("{e}")))
}

/// Authorises a patient-data request through the gate (headers:
/// `X-Patient-Authorization: KIND CODE` or `X-Break-Glass: REASON`).
pub async fn authorise(
    st: &ApiState,
    p: Principal,
    action: &'static str,
    headers: &HeaderMap,
    ask: Ask<'_>,
) -> Result<Asked, Problem> {
    let presented = crate::gate::presented(headers)?;
    st.gate.patient(p, action, presented, ask).await
}

/// One evaluated result: a report and one item of it.
pub struct Evaluated {
    pub meta: ReportMeta,
    pub report: Arc<Report>,
    pub item_key: String,
    pub observations: Vec<usize>,
    pub candidate: Candidate,
    pub verdict: Verdict,
}

/// Loads the patient's reports and evaluates every candidate.
pub async fn evaluate_patient(
    st: &ApiState,
    asked: &Asked,
    kind: Option<ReportKind>,
) -> Result<(IdentityLink, Vec<Evaluated>), Problem> {
    evaluate_patient_item(st, asked, kind, None).await
}

/// [`evaluate_patient`] restricted to the candidates of one regional item (the pre-order
/// check): the others are never evaluated. Duplicates are decided among the same item, so
/// the verdicts are those of the full evaluation.
pub async fn evaluate_patient_item(
    st: &ApiState,
    asked: &Asked,
    kind: Option<ReportKind>,
    item: Option<&str>,
) -> Result<(IdentityLink, Vec<Evaluated>), Problem> {
    let gate = st.gate.clone();
    let token = asked.token.clone();
    let (link, loaded) =
        tokio::task::spawn_blocking(move || gate.patient_reports(&token, kind)).await??;
    let queried_local = match &asked.patient {
        PatientId::Local {
            institution,
            local_id,
        } => Some(format!("{institution}:{local_id}")),
        PatientId::National(_) => None,
    };
    let mut parts = Vec::new();
    for (meta, report) in &loaded {
        for (key, obs, cand) in huren_candidates::candidates_of(
            &st.rules,
            &huren_candidates::Stored {
                hash: &meta.hash,
                version: meta.version,
                received_at: &meta.received_at,
            },
            report,
            match link {
                // Its message claimed another national ID than the one its local key is
                // linked to (an open identity review item): not this patient's for sure, so
                // the engine answers IDENTITY_UNCERTAIN and shows no content.
                _ if meta.identity_review.is_some() => IdentityMethod::MpiPossibleMatch,
                IdentityLink::ExactNationalId => IdentityMethod::ExactNationalId,
                IdentityLink::LocalOnly
                    if queried_local.as_deref() == Some(meta.local.as_str()) =>
                {
                    IdentityMethod::ExactLocalId
                }
                IdentityLink::LocalOnly => IdentityMethod::LocalOnly,
            },
        ) {
            // Non-itemised reports (imaging, ECG) learn their item in the engine: keep them.
            if item.is_some_and(|i| i != key && key != "report") {
                continue;
            }
            let mut cand = cand;
            // One definition of a critical value, the alerts' (issue 18): OBX-8 HH / LL /
            // AA, or a configured [[critical_threshold]] crossed — so a value that raised an
            // alert is critical for the verdicts too.
            if let Some(lab) = &report.lab {
                cand.critical.flagged |= obs.iter().any(|&i| {
                    lab.observations
                        .get(i)
                        .is_some_and(|o| huren_ingest::alerts::is_critical(&st.gw.config, o))
                });
            }
            // A critical value is closed when its alert was acknowledged (issue 18).
            if cand.critical.flagged {
                cand.critical.closure = st.gate.critical_closure(&meta.chain);
            }
            parts.push((meta.clone(), report.clone(), key, obs, cand));
        }
    }
    let cands: Vec<Candidate> = parts.iter().map(|p| p.4.clone()).collect();
    let verdicts = evaluate_all(&asked.ctx, &cands, &st.rules);
    let mut out: Vec<Evaluated> = parts
        .into_iter()
        .zip(verdicts)
        .map(
            |((meta, report, item_key, observations, candidate), verdict)| Evaluated {
                meta,
                report,
                item_key,
                observations,
                candidate,
                verdict,
            },
        )
        .collect();
    out.sort_by(|a, b| {
        b.verdict
            .evidence
            .anchor_time
            .cmp(&a.verdict.evidence.anchor_time)
    });
    Ok((link, out))
}

pub fn institution_name(st: &ApiState, code: &str) -> Option<String> {
    st.rules
        .institution(code)
        .map(|i| i.name.clone())
        .or_else(|| st.gw.config.institution(code).map(|i| i.name.clone()))
}

/// One evaluated result as answered; content only when identity and authorisation allow.
/// Serialised straight from borrowed data (no intermediate `serde_json::Value`: building
/// and dropping those trees was most of the cost of a 200-result answer).
#[derive(serde::Serialize)]
pub struct ResultOut<'a> {
    report: &'a huren_model::ContentHash,
    kind: ReportKind,
    institution: &'a str,
    institution_name: Option<String>,
    time: Option<DateTime<FixedOffset>>,
    status: ReportStatus,
    version: u32,
    item: ItemOut<'a>,
    verdict: VerdictOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ContentOut<'a>>,
}

#[derive(serde::Serialize)]
struct ItemOut<'a> {
    key: &'a str,
    local_code: Option<&'a str>,
    regional_code: Option<&'a str>,
    name: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct VerdictOut<'a> {
    level: Level,
    label: &'static str,
    hr_label: Option<&'a str>,
    expires_at: Option<DateTime<FixedOffset>>,
    reasons: &'a [huren_recognition::Reason],
    evidence: &'a huren_recognition::Evidence,
    required_on_reorder: &'a huren_recognition::ReorderRequirements,
    duplicate_of: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct ContentOut<'a> {
    service: Option<&'a str>,
    observations: Vec<&'a huren_model::LabObservation>,
    conclusion: Option<&'a str>,
}

fn result_json<'a>(st: &ApiState, e: &'a Evaluated) -> ResultOut<'a> {
    let v = &e.verdict;
    let lab = e.report.lab.as_ref();
    let obs = || {
        e.observations
            .iter()
            .filter_map(move |i| lab.and_then(|l| l.observations.get(*i)))
    };
    let name = v
        .evidence
        .item_name
        .as_deref()
        .or_else(|| obs().next().and_then(|o| o.name.as_deref()));
    ResultOut {
        report: &e.meta.hash,
        kind: e.meta.kind,
        institution: &e.meta.institution,
        institution_name: institution_name(st, &e.meta.institution),
        time: v.evidence.anchor_time,
        status: e.report.status,
        version: e.meta.version,
        item: ItemOut {
            key: &e.item_key,
            local_code: e.candidate.local_code.as_deref(),
            regional_code: v.evidence.regional_code.as_deref(),
            name,
        },
        verdict: VerdictOut {
            level: v.level,
            label: v.level.zh(),
            hr_label: v.hr_label.as_deref(),
            expires_at: v.expires_at,
            reasons: &v.reasons,
            evidence: &v.evidence,
            required_on_reorder: &v.required_on_reorder,
            duplicate_of: v.duplicate_of.as_deref(),
        },
        content: v.content_allowed().then(|| ContentOut {
            service: lab.and_then(|l| l.service_name.as_deref()),
            observations: obs().collect(),
            conclusion: e.report.conclusion.as_deref(),
        }),
    }
}

pub fn count_levels(items: &[&Evaluated]) -> Value {
    let mut c: HashMap<Level, u64> = HashMap::new();
    for e in items {
        *c.entry(e.verdict.level).or_default() += 1;
    }
    json!({
        "recognizable": c.get(&Level::Recognizable).copied().unwrap_or(0),
        "reference_only": c.get(&Level::ReferenceOnly).copied().unwrap_or(0),
        "blocked": c.get(&Level::Blocked).copied().unwrap_or(0),
    })
}

/// Query of `GET /api/v1/patients/{id}/results`.
#[derive(Deserialize)]
pub struct ResultsQuery {
    kind: Option<String>,
    item: Option<String>,
    since: Option<String>,
    encounter: Option<String>,
    sex: Option<String>,
    birth_date: Option<String>,
}

fn demographics(sex_q: Option<&str>, birth: Option<&str>) -> Demographics {
    Demographics {
        sex: sex_q.and_then(|s| huren_candidates::sex(Some(s))),
        birth_date: birth.map(str::to_string),
    }
}

/// `GET /api/v1/patients/{id}/results`: every prior result across the consortium, newest
/// first, each with its verdict, plus the status of every source.
pub async fn results(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    Query(q): Query<ResultsQuery>,
    headers: HeaderMap,
) -> Result<axum::response::Response, Problem> {
    let kind = parse_kind(q.kind.as_deref())?;
    let since = match q.since.as_deref() {
        None | Some("") => None,
        Some(s) => Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad since",
                "since must be YYYY-MM-DD",
            )
        })?),
    };
    let asked = authorise(
        &st,
        p,
        "read_results",
        &headers,
        Ask {
            channel: None,
            patient: &id,
            encounter: q.encounter.as_deref(),
            intended: None,
            demographics: demographics(q.sex.as_deref(), q.birth_date.as_deref()),
            kind,
        },
    )
    .await?;
    let person = asked.person.clone();
    // Read before the reports are: an answer is kept only while this has not moved.
    let generation = st.gate.person_generation(&asked);
    let key = AnswerCache::key(&(
        "results",
        &id,
        &person,
        st.rules.version(),
        context_key(&asked.ctx),
        &q.kind,
        &q.item,
        &q.since,
    ));
    let answer = st
        .answers
        .get_or_make(key, generation, asked.ctx.now, async {
            results_answer(&st, &asked, &id, kind, &q, since, generation).await
        })
        .await?;
    let mut rec = asked.audit_base();
    rec.patient = Some(person);
    audited(&st, &answer, rec).await?;
    Ok(answer.response(&headers))
}

/// The request context as a cache key part: everything but the time.
fn context_key(ctx: &QueryContext) -> QueryContext {
    let mut c = ctx.clone();
    c.now = DateTime::<chrono::Utc>::UNIX_EPOCH.fixed_offset();
    c
}

/// Appends the audit record of one serving of `answer` (the returned set in full the first
/// time, by its hash after that) and waits until it is durable.
async fn audited(st: &ApiState, answer: &Answer, mut rec: AuditRecord) -> Result<(), Problem> {
    answer.audit_into(&mut rec);
    let full = !rec.returned.is_empty();
    st.audit(rec).await?;
    if full {
        answer.listed();
    }
    Ok(())
}

/// Evaluates and serialises the answer of `GET /api/v1/patients/{id}/results`.
async fn results_answer(
    st: &ApiState,
    asked: &Asked,
    id: &str,
    kind: Option<ReportKind>,
    q: &ResultsQuery,
    since: Option<NaiveDate>,
    generation: u64,
) -> Result<Answer, Problem> {
    let (link, evaluated) = evaluate_patient(st, asked, kind).await?;
    let valid_until = stable_until_all(&asked.ctx, evaluated.iter().map(|e| &e.verdict), &st.rules);
    let shown: Vec<&Evaluated> = evaluated
        .iter()
        .filter(|e| !e.verdict.is_hidden_duplicate())
        .filter(|e| {
            q.item.as_deref().is_none_or(|i| {
                e.verdict.evidence.regional_code.as_deref() == Some(i)
                    || e.candidate.local_code.as_deref() == Some(i)
            })
        })
        .filter(|e| {
            since.is_none_or(|d| {
                e.verdict
                    .evidence
                    .anchor_time
                    .is_some_and(|t| t.date_naive() >= d)
            })
        })
        .collect();
    // Per-source status: every institution of the rules, and any other that sent results.
    let mut sources: BTreeMap<String, u64> = st
        .rules
        .file
        .institutions
        .iter()
        .map(|i| (i.code.get_ref().clone(), 0))
        .collect();
    for e in &shown {
        *sources.entry(e.meta.institution.clone()).or_default() += 1;
    }
    let sources: Vec<Value> = sources
        .into_iter()
        .map(|(code, n)| {
            json!({"institution": code, "name": institution_name(st, &code),
                "status": if n > 0 { "ok" } else { "no_results" }, "results": n})
        })
        .collect();
    let body: Vec<ResultOut> = shown.iter().map(|e| result_json(st, e)).collect();
    let returned = shown
        .iter()
        .filter(|e| e.verdict.content_allowed())
        .map(|e| e.meta.hash.to_string())
        .collect();
    let advice = count_levels(&shown);
    let detail = json!({"advice": advice, "kind": q.kind, "item": q.item});
    #[derive(serde::Serialize)]
    struct Out<'a> {
        patient: &'a str,
        identity_link: IdentityLink,
        evaluated_at: DateTime<FixedOffset>,
        valid_until: Option<DateTime<FixedOffset>>,
        rules_version: &'a str,
        break_glass: bool,
        count: usize,
        advice: Value,
        sources: Vec<Value>,
        results: Vec<ResultOut<'a>>,
    }
    let bytes = json_bytes(&Out {
        patient: id,
        identity_link: link,
        evaluated_at: asked.ctx.now,
        valid_until,
        rules_version: st.rules.version(),
        break_glass: asked
            .ctx
            .patient_authorization
            .as_ref()
            .is_some_and(|a| a.kind == AuthorizationKind::BreakGlass),
        count: body.len(),
        advice,
        sources,
        results: body,
    })?;
    Ok(Answer::new(
        generation,
        valid_until,
        bytes,
        returned,
        detail,
    ))
}

/// Serialises in one pass into one buffer.
fn json_bytes<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, Problem> {
    let mut buf = Vec::with_capacity(64 * 1024);
    serde_json::to_writer(&mut buf, v).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "serialisation failed",
            e.to_string(),
        )
    })?;
    Ok(buf)
}

pub use crate::gate::merge;

/// Body of `POST /api/v1/recognition/check`.
#[derive(Deserialize)]
pub struct CheckBody {
    patient: String,
    item_code: String,
    #[serde(default)]
    body_site: Option<String>,
    #[serde(default)]
    contrast: Option<bool>,
    #[serde(default)]
    encounter: Option<String>,
}

/// `POST /api/v1/recognition/check`: for an intended order, the best recognisable prior
/// result, or why none qualifies.
pub async fn check(
    State(st): State<ApiState>,
    Authed(p): Authed,
    headers: HeaderMap,
    body: Result<Json<CheckBody>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::response::Response, Problem> {
    let Json(b) = body.map_err(crate::gate::bad_body)?;
    if st.rules.item(&b.item_code).is_none() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown item",
            format!(
                "{} is not in the catalogue ({})",
                b.item_code,
                st.rules.version()
            ),
        )
        .code("ITEM_NOT_IN_CATALOGUE"));
    }
    let order = IntendedOrder {
        item_code: b.item_code.clone(),
        body_site: b.body_site.clone(),
        contrast: b.contrast,
        modality: None,
    };
    let asked = authorise(
        &st,
        p,
        "check",
        &headers,
        Ask {
            channel: None,
            patient: &b.patient,
            encounter: b.encounter.as_deref(),
            intended: Some(order),
            demographics: Demographics::default(),
            kind: None,
        },
    )
    .await?;
    let person = asked.person.clone();
    let generation = st.gate.person_generation(&asked);
    let key = AnswerCache::key(&(
        "check",
        &b.patient,
        &person,
        st.rules.version(),
        context_key(&asked.ctx),
        &b.item_code,
    ));
    let answer = st
        .answers
        .get_or_make(key, generation, asked.ctx.now, async {
            check_answer(&st, &asked, &b.item_code, generation).await
        })
        .await?;
    let mut rec = asked.audit_base();
    rec.patient = Some(person);
    audited(&st, &answer, rec).await?;
    Ok(answer.response(&headers))
}

/// Evaluates and serialises the answer of `POST /api/v1/recognition/check`.
async fn check_answer(
    st: &ApiState,
    asked: &Asked,
    item_code: &str,
    generation: u64,
) -> Result<Answer, Problem> {
    let c = check_core(st, asked, item_code).await?;
    let valid_until = stable_until_all(
        &asked.ctx,
        c.evaluated.iter().map(|e| &e.verdict),
        &st.rules,
    );
    let (same_item, best, why) = (c.candidates(), c.best(), &c.why_not);
    let item = st.rules.item(item_code);
    let returned = best.iter().map(|e| e.meta.hash.to_string()).collect();
    let detail = json!({"item": item_code, "advice": count_levels(&same_item), "recognizable": best.is_some()});
    #[derive(serde::Serialize)]
    struct Out<'a> {
        item: Value,
        evaluated_at: DateTime<FixedOffset>,
        valid_until: Option<DateTime<FixedOffset>>,
        rules_version: &'a str,
        recognizable: bool,
        best: Option<ResultOut<'a>>,
        why_not: &'a [Value],
        candidates: Vec<ResultOut<'a>>,
    }
    let bytes = json_bytes(&Out {
        item: json!({"code": item_code, "name": item.map(|i| i.name.clone()), "validity_days": item.and_then(|i| i.validity_days)}),
        evaluated_at: asked.ctx.now,
        valid_until,
        rules_version: st.rules.version(),
        recognizable: best.is_some(),
        best: best.map(|e| result_json(st, e)),
        why_not: why,
        candidates: same_item.iter().map(|e| result_json(st, e)).collect(),
    })?;
    Ok(Answer::new(
        generation,
        valid_until,
        bytes,
        returned,
        detail,
    ))
}

/// What the pre-order check found for one catalogue item.
pub struct CheckAnswer {
    /// Every evaluated result of the patient.
    pub evaluated: Vec<Evaluated>,
    /// Indices into `evaluated` of the results of the item, newest first.
    pub same_item: Vec<usize>,
    /// Index of the best recognisable one.
    pub best: Option<usize>,
    /// Why none is recognisable: `{code, zh_text}`.
    pub why_not: Vec<Value>,
}

impl CheckAnswer {
    pub fn candidates(&self) -> Vec<&Evaluated> {
        self.same_item.iter().map(|i| &self.evaluated[*i]).collect()
    }
    pub fn best(&self) -> Option<&Evaluated> {
        self.best.map(|i| &self.evaluated[i])
    }
}

/// The pre-order check for an authorised request (not audited here).
pub async fn check_core(
    st: &ApiState,
    asked: &Asked,
    item_code: &str,
) -> Result<CheckAnswer, Problem> {
    let (_, evaluated) = evaluate_patient_item(st, asked, None, Some(item_code)).await?;
    let same_item: Vec<usize> = evaluated
        .iter()
        .enumerate()
        .filter(|(_, e)| e.verdict.evidence.regional_code.as_deref() == Some(item_code))
        .filter(|(_, e)| !e.verdict.is_hidden_duplicate())
        .map(|(i, _)| i)
        .collect();
    let best = same_item.iter().copied().find(|i| {
        let e = &evaluated[*i];
        e.verdict.level == Level::Recognizable && e.verdict.duplicate_of.is_none()
    });
    let mut why: Vec<Value> = Vec::new();
    if best.is_none() {
        if same_item.is_empty() {
            why.push(json!({"code": "NO_PRIOR_RESULT", "zh_text": "本联合体内无该项目的既往结果"}));
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in same_item.iter().map(|i| &evaluated[*i]) {
            for r in &e.verdict.reasons {
                if matches!(
                    r.severity,
                    huren_recognition::Severity::Block | huren_recognition::Severity::Refer
                ) && seen.insert(r.code.as_str())
                {
                    why.push(json!({"code": r.code, "zh_text": r.zh_text}));
                }
            }
        }
    }
    Ok(CheckAnswer {
        evaluated,
        same_item,
        best,
        why_not: why,
    })
}

/// Body of `POST /api/v1/recognition/decisions`.
#[derive(Deserialize)]
pub struct DecisionBody {
    patient: String,
    report: String,
    item: String,
    #[serde(flatten)]
    decision: Decision,
    #[serde(default)]
    encounter: Option<String>,
}

/// `POST /api/v1/recognition/decisions`: records accept / accept-discretionary / reject for
/// one result. The verdict is recomputed here; RECOGNITION.md's invariants answer 422.
pub async fn decide(
    State(st): State<ApiState>,
    Authed(p): Authed,
    headers: HeaderMap,
    body: Result<Json<DecisionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Json(b) = body.map_err(crate::gate::bad_body)?;
    let asked = authorise(
        &st,
        p,
        "decision",
        &headers,
        Ask {
            channel: None,
            patient: &b.patient,
            encounter: b.encounter.as_deref(),
            intended: None,
            demographics: Demographics::default(),
            kind: None,
        },
    )
    .await?;
    let (entry, level) = decide_core(&st, &asked, &b.report, &b.item, &b.decision).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "decision": entry.seq,
            "recorded_at": entry.at,
            "action": b.decision.action,
            "verdict": {"level": level, "label": level.zh()},
        })),
    ))
}

/// Records a decision for an authorised request: recomputes the verdict, validates the
/// decision (422 when refused; the refusal is audited) and appends it to the audit log.
pub async fn decide_core(
    st: &ApiState,
    asked: &Asked,
    report: &str,
    item: &str,
    decision: &Decision,
) -> Result<(huren_audit::AuditEntry, Level), Problem> {
    let (_, evaluated) = evaluate_patient(st, asked, None).await?;
    let Some(e) = evaluated
        .iter()
        .find(|e| e.meta.hash.to_string() == report && e.item_key == item)
    else {
        // Allowed, but nothing to decide on: still the request's one audit record.
        let mut rec = asked.audit_base();
        rec.outcome = "not found".into();
        merge(&mut rec.detail, json!({"report": report, "item": item}));
        st.audit(rec).await?;
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no such result",
            "no result of this patient has that report and item",
        ));
    };
    let mut rec = asked.audit_base();
    let price = e
        .verdict
        .evidence
        .regional_code
        .as_deref()
        .and_then(|c| st.rules.item(c))
        .and_then(|i| i.price_cny);
    merge(
        &mut rec.detail,
        json!({
            "report": report, "item": item, "regional_code": e.verdict.evidence.regional_code,
            "source_institution": e.meta.institution, "level": e.verdict.level,
            "action": decision.action, "exception_codes": decision.exception_codes,
            "other_text": decision.other_text, "patient_informed": decision.patient_informed,
            // Integer fen: canonical JSON has no floating point.
            "price_fen": price.map(|p| (p * 100.0).round() as i64),
            "reasons": e.verdict.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
        }),
    );
    if let Err(err) = validate_decision(&e.verdict, decision, &st.rules) {
        rec.outcome = format!("invalid: {}", err.code());
        st.audit(rec).await?;
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "decision refused",
            err.to_string(),
        )
        .code(err.code()));
    }
    rec.returned = vec![e.meta.hash.to_string()];
    let entry = st.gate.audit_log().append(rec).await.map_err(|err| {
        tracing::error!(error = %err, "audit log append failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit failure",
            "the decision was not recorded",
        )
    })?;
    Ok((entry, e.verdict.level))
}

/// What one current decision is about: (actor, institution, patient, encounter, report, item).
type DecisionKey = (String, String, String, String, String, String);

/// The key of a decision's audit record: a later decision with the same key replaces it.
fn decision_key(r: &AuditRecord) -> DecisionKey {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    (
        r.actor.clone(),
        r.institution.clone(),
        r.patient.clone().unwrap_or_default(),
        r.purpose.clone().unwrap_or_default(),
        s(&r.detail["report"]),
        s(&r.detail["item"]),
    )
}

/// A `from`/`to` day (`YYYY-MM-DD`); empty or absent is `None`.
fn day(s: Option<&str>) -> Result<Option<NaiveDate>, Problem> {
    s.filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad date",
                    "from/to must be YYYY-MM-DD",
                )
            })
        })
        .transpose()
}

/// Query of `GET /api/v1/stats/recognition`.
#[derive(Deserialize)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
}

/// `GET /api/v1/stats/recognition`: advice given, decisions by action and reason, estimated
/// savings (Σ price of accepted items), from the audit log.
pub async fn stats(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Value>, Problem> {
    require_role(&st, &p, &[Role::Commission, Role::PrivacyOfficer], "stats").await?;
    let (from, to) = (day(q.from.as_deref())?, day(q.to.as_deref())?);
    let group_by = q.group_by.clone().unwrap_or_else(|| "institution".into());
    if !matches!(group_by.as_str(), "institution" | "item" | "reason") {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad group_by",
            "group_by must be institution, item or reason",
        ));
    }
    let audit = st.gate.audit_log().clone();
    // From the audit index: the period's records of the three actions, never the whole log.
    let filter = huren_audit::AuditFilter {
        actions: Some(vec!["read_results".into(), "check".into()]),
        ..Default::default()
    }
    .days(from, to);
    let entries = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        audit.for_each(&filter, |e| {
            if e.record.outcome == "ok" {
                out.push(e);
            }
            true
        })?;
        // Every decision, whenever made: a later one outside the period still replaces one
        // inside it (decisions are few next to reads). The first pass read no decision.
        let decisions = huren_audit::AuditFilter {
            actions: Some(vec!["decision".into()]),
            ..Default::default()
        };
        audit.for_each(&decisions, |e| {
            if e.record.outcome == "ok" {
                out.push(e);
            }
            true
        })?;
        Ok::<_, huren_store::StoreError>(out)
    })
    .await??;
    let in_period = |e: &huren_audit::AuditEntry| {
        e.at.get(..10)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .is_some_and(|d| from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t))
    };
    // One current decision per result (report and item), clinician and encounter: a later
    // decision replaces an earlier one (the audit log keeps both acts; statistics count the
    // current one, in the period it was made).
    let current: std::collections::HashSet<u64> = {
        let mut latest: HashMap<DecisionKey, u64> = HashMap::new();
        for e in entries.iter().filter(|e| e.record.action == "decision") {
            let seq = latest.entry(decision_key(&e.record)).or_insert(e.seq);
            *seq = (*seq).max(e.seq);
        }
        latest.into_values().collect()
    };
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| e.record.action != "decision" || (current.contains(&e.seq) && in_period(e)))
        .collect();
    #[derive(Default)]
    struct G {
        advice: [u64; 3],
        accept: u64,
        discretionary: u64,
        reject: u64,
        savings: i64,
        reasons: BTreeMap<String, u64>,
    }
    let mut groups: BTreeMap<String, G> = BTreeMap::new();
    let mut total = G::default();
    for e in &entries {
        let d = &e.record.detail;
        let keys: Vec<String> = match group_by.as_str() {
            "institution" => vec![e.record.institution.clone()],
            "item" => vec![d["regional_code"]
                .as_str()
                .or(d["item"].as_str())
                .unwrap_or("-")
                .to_string()],
            _ => d["exception_codes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let keys = if keys.is_empty() {
            vec!["-".to_string()]
        } else {
            keys
        };
        let apply = |g: &mut G| {
            if e.record.action == "decision" {
                match d["action"].as_str() {
                    Some("accept") => {
                        g.accept += 1;
                        g.savings += d["price_fen"].as_i64().unwrap_or(0);
                    }
                    Some("accept_discretionary") => {
                        g.discretionary += 1;
                        g.savings += d["price_fen"].as_i64().unwrap_or(0);
                    }
                    Some("reject") => {
                        g.reject += 1;
                        for c in d["exception_codes"].as_array().into_iter().flatten() {
                            *g.reasons
                                .entry(c.as_str().unwrap_or("?").to_string())
                                .or_default() += 1;
                        }
                    }
                    _ => {}
                }
            } else {
                let a = &d["advice"];
                g.advice[0] += a["recognizable"].as_u64().unwrap_or(0);
                g.advice[1] += a["reference_only"].as_u64().unwrap_or(0);
                g.advice[2] += a["blocked"].as_u64().unwrap_or(0);
            }
        };
        apply(&mut total);
        if group_by != "reason" || e.record.action == "decision" {
            for k in keys {
                apply(groups.entry(k).or_default());
            }
        }
    }
    let js = |g: &G| {
        json!({
            "advice": {"recognizable": g.advice[0], "reference_only": g.advice[1], "blocked": g.advice[2]},
            "accept": g.accept, "accept_discretionary": g.discretionary, "reject": g.reject,
            "reject_reasons": g.reasons, "estimated_savings_cny": g.savings as f64 / 100.0,
        })
    };
    let mut rec = record(&p, "stats");
    rec.detail = json!({"from": q.from, "to": q.to, "group_by": group_by});
    st.audit(rec).await?;
    Ok(Json(json!({
        "from": from, "to": to, "group_by": group_by,
        "total": js(&total),
        "groups": groups.iter().map(|(k, g)| { let mut v = js(g); v["key"] = json!(k); v }).collect::<Vec<_>>(),
    })))
}

/// Query of `GET /api/v1/audit`.
#[derive(Deserialize)]
pub struct AuditQuery {
    patient: String,
    /// `fhir`: a Bundle of FHIR R4 AuditEvent resources.
    format: Option<String>,
}

/// `GET /api/v1/audit?patient=ID`: who looked at this patient's data (privacy officers).
pub async fn audit_view(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, Problem> {
    require_role(&st, &p, &[Role::PrivacyOfficer], "read_audit").await?;
    let pid = parse_patient(&q.patient)?;
    let key = st.gate.person_key(&pid)?;
    let audit = st.gate.audit_log().clone();
    // From the audit index: this patient's records and the searches that named them.
    let filter = huren_audit::AuditFilter::patient(key.clone());
    let entries = tokio::task::spawn_blocking(move || audit.query(&filter)).await??;
    let mut rec = record(&p, "read_audit");
    rec.patient = Some(key);
    rec.purpose = Some("privacy_review".into());
    st.audit(rec).await?;
    if q.format.as_deref() == Some("fhir") {
        let events: Vec<Value> = entries.iter().map(crate::fhir::audit_event).collect();
        return Ok(Json(json!({
            "resourceType": "Bundle",
            "type": "collection",
            "total": events.len(),
            "entry": events.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
        })));
    }
    Ok(Json(
        json!({"patient": q.patient, "count": entries.len(), "entries": entries}),
    ))
}

/// Query of `GET /api/v1/audit/break-glass`.
#[derive(Deserialize)]
pub struct BreakGlassQuery {
    /// First day (`YYYY-MM-DD`, UTC), inclusive; default: 30 days ago.
    from: Option<String>,
    /// Last day, inclusive; default: today.
    to: Option<String>,
}

/// `GET /api/v1/audit/break-glass?from=&to=`: every break-glass access (allowed or refused)
/// in a period, across patients, with its reason — the privacy officer's review list.
pub async fn break_glass_view(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Query(q): Query<BreakGlassQuery>,
) -> Result<Json<Value>, Problem> {
    require_role(&st, &p, &[Role::PrivacyOfficer], "read_audit").await?;
    let today = chrono::Utc::now().date_naive();
    let from = day(q.from.as_deref())?.unwrap_or(today - chrono::Duration::days(30));
    let to = day(q.to.as_deref())?.unwrap_or(today);
    let audit = st.gate.audit_log().clone();
    let filter = huren_audit::AuditFilter::default().days(Some(from), Some(to));
    let entries = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        audit.for_each(&filter, |e| {
            if e.record.break_glass {
                out.push(e);
            }
            true
        })?;
        Ok::<_, huren_store::StoreError>(out)
    })
    .await??;
    let mut rec = record(&p, "read_audit");
    rec.purpose = Some("privacy_review".into());
    rec.detail = json!({"break_glass": true, "from": from, "to": to, "count": entries.len()});
    st.audit(rec).await?;
    Ok(Json(
        json!({"from": from, "to": to, "count": entries.len(), "entries": entries}),
    ))
}
