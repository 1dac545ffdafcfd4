//! The HTTP API (axum on hyper): routes, problem answers, report retrieval. Every
//! patient-data route authenticates (bearer token) and audits; see `api.rs` for the
//! recognition endpoints.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use huren_model::ReportKind;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiState, Authed};
use crate::auth::Role;
pub use huren_gate::Problem;

/// Largest body of a JSON request (the check, a decision, a consent): 64 KiB, far above any
/// valid one; a larger body is refused (413) before it is read whole.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/patients/{id}/reports", get(patient_reports))
        .route("/api/v1/patients/{id}/results", get(crate::api::results))
        .route(
            "/api/v1/recognition/check",
            post(crate::api::check).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
        )
        .route(
            "/api/v1/recognition/decisions",
            post(crate::api::decide).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
        )
        .route("/api/v1/stats/recognition", get(crate::api::stats))
        .route("/api/v1/audit", get(crate::api::audit_view))
        .route("/api/v1/identity/reviews", get(crate::identity::reviews))
        .route("/api/v1/outbox", get(crate::outbox::outbox))
        .route(
            "/api/v1/identity/reviews/{id}/resolve",
            post(crate::identity::resolve),
        )
        .route(
            "/api/v1/audit/break-glass",
            get(crate::api::break_glass_view),
        )
        .route(
            "/api/v1/consents",
            post(record_consent).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
        )
        .route(
            "/api/v1/consents/{id}",
            axum::routing::delete(revoke_consent),
        )
        .route("/api/v1/worklist", get(crate::worklist::worklist))
        .route("/api/v1/events", get(crate::worklist::events))
        .route("/api/v1/alerts", get(crate::alerts::alerts))
        .route("/api/v1/alerts/{id}/ack", post(crate::alerts::ack))
        .route("/api/v1/alerts/{id}/cancel", post(crate::alerts::cancel))
        .route(
            "/api/v1/referrals",
            get(crate::cases::list).post(crate::cases::refer),
        )
        .route("/api/v1/referrals/{id}", get(crate::cases::one))
        .route("/api/v1/referrals/{id}/stamps", post(crate::cases::stamp))
        .route("/api/v1/referrals/{id}/cancel", post(crate::cases::cancel))
        .route("/api/v1/kpi/chest-pain", get(crate::cases::kpi))
        .route("/api/v1/kpi/chest-pain/{file}", get(crate::cases::export))
        .route(
            "/api/v1/centres/{id}/roster",
            get(crate::centre::roster).put(crate::centre::edit_roster),
        )
        .route(
            "/api/v1/centres/{id}/workload",
            get(crate::centre::workload),
        )
        .route("/api/v1/worklist/{id}/claim", post(crate::worklist::claim))
        .route(
            "/api/v1/worklist/{id}/release",
            post(crate::worklist::release),
        )
        .route(
            "/api/v1/worklist/{id}/sign",
            post(crate::worklist::sign).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
        )
        .route(
            "/api/v1/worklist/{id}/amend",
            post(crate::worklist::amend).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
        )
        .route(
            "/api/v1/worklist/{id}/cancel",
            post(crate::worklist::cancel).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
        )
        .route(
            "/fhir/DiagnosticReport",
            get(crate::fhir::diagnostic_reports),
        )
        .route("/fhir/Observation", get(crate::fhir::observations))
        .route(
            "/fhir/DocumentReference",
            get(crate::fhir::document_references),
        )
        .route("/fhir/ImagingStudy", get(crate::fhir::imaging_studies))
        .route("/fhir/Task", get(crate::fhir_task::search))
        .route("/fhir/Task/{id}", get(crate::fhir_task::read))
        .route("/api/v1/reports/{hash}", get(report))
        .route("/api/v1/reports/{hash}/original", get(original))
        .route("/api/v1/reports/{hash}/ecg.svg", get(ecg_svg))
        .route("/api/v1/reports/{hash}/cda", get(report_cda))
        .route(
            "/api/v1/ecg",
            post(ecg_upload).layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .with_state(state)
}

/// Body of `POST /api/v1/consents`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    /// `INST:LOCAL` or `nid:…`.
    patient: String,
    /// The credential the patient presented.
    credential: CredentialBody,
    /// `all` (default), `lab`, `imaging` or `ecg`.
    #[serde(default)]
    scope: Option<String>,
    /// Lifetime in hours (default from the configuration, 24).
    #[serde(default)]
    ttl_hours: Option<u32>,
    /// Lifetime in seconds, for a consent of one visit (instead of `ttl_hours`).
    #[serde(default)]
    ttl_seconds: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialBody {
    /// `med_insurance_code`, `health_card` or `id_card`.
    kind: String,
    /// What the card or code says (kept only as a keyed digest).
    value: String,
}

/// `POST /api/v1/consents`: a registration clerk or an institution's system records the
/// patient's authorisation; 201 with the code (shown once) and the header value to use.
async fn record_consent(
    State(st): State<ApiState>,
    Authed(who): Authed,
    body: Result<Json<ConsentBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    st.gate
        .require_role(
            &who,
            &[Role::Registrar, Role::InstitutionSystem],
            "record_consent",
        )
        .await?;
    let Json(b) = body.map_err(crate::gate::bad_body)?;
    let kind = huren_access::CredentialKind::parse(&b.credential.kind).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad credential",
            "credential.kind must be med_insurance_code, health_card or id_card",
        )
    })?;
    if b.credential.value.trim().is_empty() || b.credential.value.len() > 256 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad credential",
            "credential.value must be 1..256 bytes",
        ));
    }
    let scope = huren_access::ConsentScope::parse(b.scope.as_deref().unwrap_or("all")).ok_or_else(
        || {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad scope",
                "scope must be all, lab, imaging or ecg",
            )
        },
    )?;
    let ttl = match (b.ttl_seconds, b.ttl_hours) {
        (Some(s), _) => Some(chrono::Duration::seconds(i64::from(s))),
        (None, Some(h)) => Some(chrono::Duration::hours(i64::from(h))),
        (None, None) => None,
    };
    let issued = st
        .gate
        .issue_consent(
            &who,
            &b.patient,
            kind,
            b.credential.value.trim(),
            scope,
            ttl,
        )
        .await?;
    let c = &issued.consent;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "consent": c.id,
            "patient": b.patient,
            "credential": kind.as_str(),
            "scope": scope.as_str(),
            "issued_at": c.issued_at,
            "expires_at": c.expires_at,
            "code": issued.code,
            "authorization": format!("{} {}", kind.as_str(), issued.code),
        })),
    )
        .into_response())
}

/// `DELETE /api/v1/consents/{id}`: the issuing institution or a privacy officer revokes.
async fn revoke_consent(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let c = st.gate.revoke_consent(&who, &id).await?;
    Ok(Json(json!({
        "consent": c.id,
        "revoked_at": c.revoked_at,
        "expires_at": c.expires_at,
    })))
}

/// Liveness (`/livez`, also `/healthz`): the process answers.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness (`/readyz`): 200 when this node can take writes (its store's writer is not
/// poisoned, its data directory has room), else 503 with the reason — a load balancer sends
/// nothing to a node that would refuse it. No patient data; no token needed.
async fn readyz(State(st): State<ApiState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match st.gate.ready() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": why})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus / OpenMetrics text — ingest counts and latencies per kind,
/// group-commit batch sizes and times, the writer's queue, outbox backlog per channel, open
/// alerts, open tasks, answer-cache hits. Counts only, no patient data; no token needed
/// (scrapers run beside the node; see docs/operations.md).
async fn metrics(State(st): State<ApiState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let gate = st.gate.clone();
    let _ = tokio::task::spawn_blocking(move || gate.fill_gauges()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            huren_metrics::CONTENT_TYPE,
        )],
        huren_metrics::encode(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ReportsQuery {
    kind: Option<String>,
    encounter: Option<String>,
}

async fn patient_reports(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<ReportsQuery>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Problem> {
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some("lab") => Some(ReportKind::Lab),
        Some("imaging") => Some(ReportKind::Imaging),
        Some("ecg") => Some(ReportKind::Ecg),
        Some(other) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad kind",
                format!("kind must be lab, imaging or ecg, not {other:?}"),
            ))
        }
    };
    let asked = crate::api::authorise(
        &st,
        who,
        "read_reports",
        &headers,
        crate::gate::Ask {
            channel: None,
            patient: &id,
            encounter: q.encounter.as_deref(),
            intended: None,
            demographics: Default::default(),
            kind,
        },
    )
    .await?;
    let gate = st.gate.clone();
    let token = asked.token.clone();
    let (link, loaded) =
        tokio::task::spawn_blocking(move || gate.patient_reports(&token, kind)).await??;
    let out: Vec<serde_json::Value> = loaded
        .iter()
        .map(|(m, r)| match m.identity_review {
            // Identity-uncertain (an open identity review item): listed, content withheld.
            Some(_) => json!({"meta": m, "report": null, "identity_uncertain": true}),
            None => json!({"meta": m, "report": r.as_ref()}),
        })
        .collect();
    let mut rec = asked.audit_base();
    rec.returned = loaded.iter().map(|(m, _)| m.hash.to_string()).collect();
    st.audit(rec).await?;
    Ok(Json(json!({
        "identity_link": link,
        "count": out.len(),
        "reports": out,
    })))
}

/// One report through the gate for `action`, with the patient's authorisation the request
/// presents (one audit record).
async fn read_report(
    st: &ApiState,
    who: &crate::auth::Principal,
    enc: huren_recognition::EncounterKind,
    headers: &HeaderMap,
    hash: &str,
    action: &'static str,
) -> Result<huren_gate::ReportRead, Problem> {
    let presented = crate::gate::presented(headers)?;
    st.gate
        .report(who, presented.as_ref(), enc, hash, action)
        .await
}

async fn report(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(hash): Path<String>,
    crate::api::Enc(enc): crate::api::Enc,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let read = read_report(&st, &who, enc, &headers, &hash, "read_report").await?;
    let bytes = read.bytes()?;
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    let hv = |s: String| axum::http::HeaderValue::from_str(&s).ok();
    if let Some(v) = hv(format!("\"{}\"", read.meta.hash.hex())) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Some(next) = read.meta.superseded_by {
        if let Some(v) = hv(next.to_string()) {
            resp.headers_mut().insert("x-huren-superseded-by", v);
        }
    }
    Ok(resp)
}

async fn original(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(hash): Path<String>,
    crate::api::Enc(enc): crate::api::Enc,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let read = read_report(&st, &who, enc, &headers, &hash, "read_original").await?;
    let bytes = read.original()?;
    let ctype = match read.meta.kind {
        ReportKind::Lab => "application/hl7-v2",
        ReportKind::Imaging => "application/dicom",
        ReportKind::Ecg => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, ctype)], bytes).into_response())
}

/// `GET /api/v1/reports/{hash}/cda`: the report as a WS/T 500 shared document (检验报告 C0007
/// for a lab report, 检查报告 C0006 for an ECG or imaging report), through the gate like the
/// report itself (one audit record, `read_report_cda`). Deterministic: the document's time is
/// when huren received the report, so the same version gives the same bytes. The national ID
/// is written only for the sending institution's own readers ([`national_id_for`]).
async fn report_cda(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(hash): Path<String>,
    crate::api::Enc(enc): crate::api::Enc,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let read = read_report(&st, &who, enc, &headers, &hash, "read_report_cda").await?;
    let Some(report) = read.report()? else {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "missing report",
            read.meta.hash.to_string(),
        ));
    };
    let mut ctx = huren_cda::CdaContext::new(
        read.meta.hash,
        read.meta.version,
        &read.meta.received_at,
        &read.meta.institution,
    );
    ctx.custodian.name = st.gate.institution_name(&read.meta.institution);
    if let Some(oc) = st.gate.organisation_code(&read.meta.institution) {
        ctx.custodian.code = oc;
    }
    ctx.replaces = read
        .replaced()?
        .map(|(hash, version)| huren_cda::Replaced { hash, version });
    ctx.national_id = national_id_for(&st, &who, &read, &report)?;
    ctx.include_national_id = ctx.national_id.is_some();
    let doc = huren_cda::document(&report, &ctx).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no CDA document",
            e.to_string(),
        )
    })?;
    let mut resp = ([(header::CONTENT_TYPE, CDA_CONTENT_TYPE)], doc).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"cda-{}\"", read.meta.hash.hex())) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// The patient's national ID, in the clear, for a WS/T 500 header, or `None`. Only for the
/// institution that sent the report (it holds the ID already; every other reader, however
/// authorised, gets the document without it), only for a lab report whose original message
/// carried it in PID-3, and only an ID whose keyed hash is the report's: the store keeps no
/// national ID, so it is read back from the original for this answer.
fn national_id_for(
    st: &ApiState,
    who: &crate::auth::Principal,
    read: &huren_gate::ReportRead,
    report: &huren_model::Report,
) -> Result<Option<String>, Problem> {
    if report.patient.national_id_key.is_none() {
        return Ok(None);
    }
    if who.institution != read.meta.institution || report.kind != ReportKind::Lab {
        return Ok(None);
    }
    let original = read.original()?;
    Ok(huren_ingest::regional::national_id_in_original(
        |id| st.gate.person_key(id).ok(),
        report,
        &original,
    ))
}

/// The media type of a CDA document: `application/xml` (RFC 7303) with its charset; HL7's
/// `application/hl7-cda+xml` is not IANA-registered and few clients know it.
const CDA_CONTENT_TYPE: &str = "application/xml; charset=utf-8";

/// `POST /api/v1/ecg`: one ECG file (aECG, MUSE, Philips XML or DICOM waveform; format from
/// the content) for the caller's institution (client certificate, or the token's
/// institution). 201 with the report when stored, 200 for a duplicate, 422 naming the fault.
async fn ecg_upload(
    State(st): State<ApiState>,
    Authed(who): Authed,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    st.gate
        .require_role(
            &who,
            &[Role::Clinician, Role::InstitutionSystem],
            "ecg_upload",
        )
        .await?;
    let out = st.gw.ingest_ecg_owned(body, who.institution.clone()).await;
    let status = match out.outcome {
        "stored" | "superseded" => StatusCode::CREATED,
        "duplicate" => StatusCode::OK,
        _ if out.store_failure => {
            return Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store failure",
                "the ECG was not stored; retry",
            ))
        }
        _ => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ECG rejected",
                out.error.unwrap_or_default(),
            )
            .code("ECG_REJECTED"))
        }
    };
    let mut resp = (status, Json(serde_json::to_value(&out).unwrap_or_default())).into_response();
    if let Some(h) = out.report {
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("/api/v1/reports/{h}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(resp)
}

/// The 12-lead SVG of an ECG body (its waveform blob read from the store).
pub fn render_ecg(
    read: &crate::gate::ReportRead,
    body: &huren_model::EcgBody,
    hash: &str,
    opts: &huren_ecg::RenderOptions,
) -> Result<String, Problem> {
    let Some(wave_hash) = body.waveform else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no waveform",
            hash.to_string(),
        ));
    };
    let Some(blob) = read.attachment(&wave_hash)? else {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "missing blob",
            wave_hash.to_string(),
        ));
    };
    let wave = huren_model::ecg::Waveform::from_blob(&blob).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad waveform blob",
            e.to_string(),
        )
    })?;
    Ok(huren_ecg::render_svg(body, &wave, opts))
}

#[derive(Deserialize)]
struct SvgQuery {
    layout: Option<String>,
    speed: Option<f64>,
    gain: Option<f64>,
}

/// `GET /api/v1/reports/{hash}/ecg.svg?layout=3x4|6x2|12x1&speed=25|50&gain=5|10|20`.
async fn ecg_svg(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(hash): Path<String>,
    Query(q): Query<SvgQuery>,
    crate::api::Enc(enc): crate::api::Enc,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut opts = huren_ecg::RenderOptions::default();
    if let Some(l) = q.layout.as_deref() {
        opts.layout = huren_ecg::Layout::parse(l).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad layout",
                "layout must be 3x4, 6x2 or 12x1",
            )
        })?;
    }
    match q.speed {
        None => {}
        Some(s) if s == 25.0 || s == 50.0 => opts.speed_mm_s = s,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad speed",
                "speed must be 25 or 50 mm/s",
            ))
        }
    }
    match q.gain {
        None => {}
        Some(g) if g == 5.0 || g == 10.0 || g == 20.0 => opts.gain_mm_mv = g,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad gain",
                "gain must be 5, 10 or 20 mm/mV",
            ))
        }
    }
    let presented = crate::gate::presented(&headers)?;
    let read = st
        .gate
        .report(&who, presented.as_ref(), enc, &hash, "read_ecg_trace")
        .await?;
    let report = read.report()?;
    let Some(body) = report.as_ref().and_then(|r| r.ecg.as_ref()) else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "not an ECG", hash));
    };
    let svg = render_ecg(&read, body, &hash, &opts)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    )
        .into_response())
}
