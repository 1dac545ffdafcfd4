//! The HTTP API (axum on hyper): routes, problem answers, report retrieval. Every
//! patient-data route authenticates (bearer token) and audits; see `api.rs` for the
//! recognition endpoints.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use huren_model::{ContentHash, PatientId, ReportKind};
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiState, Authed};
use crate::auth::Role;

/// An RFC 9457 problem answer.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
    code: Option<String>,
    headers: Vec<(header::HeaderName, &'static str)>,
}

impl Problem {
    /// A problem with a status, a short title and a detail.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title,
            detail: detail.into(),
            code: None,
            headers: Vec::new(),
        }
    }

    /// Adds a machine-readable `code` member (e.g. `EXCEPTION_CODE_REQUIRED`).
    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(c) = self.code {
            body["code"] = json!(c);
        }
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut()
                .insert(k, axum::http::HeaderValue::from_static(v));
        }
        resp
    }
}

impl From<tokio::task::JoinError> for Problem {
    /// A blocking task that panicked or was cancelled: 500, never a hung request.
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "blocking task failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            e.to_string(),
        )
    }
}

impl From<huren_store::StoreError> for Problem {
    fn from(e: huren_store::StoreError) -> Self {
        tracing::error!(error = %e, "store error in HTTP request");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store error",
            "the store could not answer; see server log",
        )
    }
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/patients/{id}/reports", get(patient_reports))
        .route("/api/v1/patients/{id}/results", get(crate::api::results))
        .route("/api/v1/recognition/check", post(crate::api::check))
        .route("/api/v1/recognition/decisions", post(crate::api::decide))
        .route("/api/v1/stats/recognition", get(crate::api::stats))
        .route("/api/v1/audit", get(crate::api::audit_view))
        .route(
            "/fhir/DiagnosticReport",
            get(crate::fhir::diagnostic_reports),
        )
        .route("/fhir/Observation", get(crate::fhir::observations))
        .route("/fhir/ImagingStudy", get(crate::fhir::imaging_studies))
        .route("/api/v1/reports/{hash}", get(report))
        .route("/api/v1/reports/{hash}/original", get(original))
        .route("/api/v1/reports/{hash}/ecg.svg", get(ecg_svg))
        .route(
            "/api/v1/ecg",
            post(ecg_upload).layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .merge(crate::web::routes())
        .merge(crate::dicom::web::routes())
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not found", "no such route") })
        .with_state(state)
}

/// Audits a read of one report by hash (the hash came from an authorised results answer).
async fn audit_report_read(
    st: &ApiState,
    who: &crate::auth::Principal,
    action: &str,
    meta: &huren_store::ReportMeta,
) -> Result<(), Problem> {
    let patient = st
        .gw
        .store
        .person_key(&PatientId::Local {
            institution: meta
                .local
                .split_once(':')
                .map_or(String::new(), |(i, _)| i.to_string()),
            local_id: meta
                .local
                .split_once(':')
                .map_or(String::new(), |(_, l)| l.to_string()),
        })
        .ok();
    st.audit(huren_store::AuditRecord {
        actor: who.id.clone(),
        institution: who.institution.clone(),
        role: "clinician".into(),
        action: action.into(),
        patient,
        outcome: "ok".into(),
        returned: vec![meta.hash.to_string()],
        ..Default::default()
    })
    .await
}

pub(crate) async fn clinician(st: &ApiState, who: &crate::auth::Principal) -> Result<(), Problem> {
    if matches!(who.role, Role::Clinician | Role::InstitutionSystem) {
        return Ok(());
    }
    st.audit(huren_store::AuditRecord {
        actor: who.id.clone(),
        institution: who.institution.clone(),
        action: "read_report".into(),
        outcome: "denied: role".into(),
        ..Default::default()
    })
    .await?;
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "only clinicians read reports",
    ))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[derive(Deserialize)]
struct ReportsQuery {
    kind: Option<String>,
}

fn parse_hash(s: &str) -> Result<ContentHash, Problem> {
    s.parse()
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad report hash", format!("{e}")))
}

async fn patient_reports(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<ReportsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    clinician(&st, &who).await?;
    let gw = &st.gw;
    let pid: PatientId = id
        .parse()
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "bad patient id", format!("{e}")))?;
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
    let store = gw.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let (link, metas) = store.patient_reports(&pid, kind)?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let report = store.report(&m.hash)?;
            out.push(json!({"meta": m, "report": report}));
        }
        Ok::<_, huren_store::StoreError>((link, out))
    })
    .await??;
    st.audit(huren_store::AuditRecord {
        actor: who.id.clone(),
        institution: who.institution.clone(),
        role: "clinician".into(),
        action: "read_reports".into(),
        patient: gw
            .store
            .person_key(&id.parse::<PatientId>().map_err(|e| {
                Problem::new(StatusCode::BAD_REQUEST, "bad patient id", format!("{e}"))
            })?)
            .ok(),
        outcome: "ok".into(),
        returned: result
            .1
            .iter()
            .filter_map(|r| r["meta"]["hash"].as_str().map(str::to_string))
            .collect(),
        ..Default::default()
    })
    .await?;
    Ok(Json(json!({
        "identity_link": result.0,
        "count": result.1.len(),
        "reports": result.1,
    })))
}

async fn report(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(hash): Path<String>,
) -> Result<Response, Problem> {
    clinician(&st, &who).await?;
    let gw = &st.gw;
    let h = parse_hash(&hash)?;
    let Some(meta) = gw.store.report_meta(&h)? else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "no such report", hash));
    };
    audit_report_read(&st, &who, "read_report", &meta).await?;
    let Some(bytes) = gw.store.blob(&h)? else {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "missing blob",
            hash,
        ));
    };
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    let hv = |s: String| axum::http::HeaderValue::from_str(&s).ok();
    if let Some(v) = hv(format!("\"{}\"", h.hex())) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Some(next) = meta.superseded_by {
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
) -> Result<Response, Problem> {
    clinician(&st, &who).await?;
    let gw = &st.gw;
    let h = parse_hash(&hash)?;
    let Some(meta) = gw.store.report_meta(&h)? else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "no such report", hash));
    };
    audit_report_read(&st, &who, "read_original", &meta).await?;
    let Some(bytes) = gw.store.blob(&meta.original)? else {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "missing blob",
            meta.original.to_string(),
        ));
    };
    let ctype = match meta.kind {
        ReportKind::Lab => "application/hl7-v2",
        ReportKind::Imaging => "application/dicom",
        ReportKind::Ecg => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, ctype)], bytes).into_response())
}

/// `POST /api/v1/ecg`: one ECG file (aECG, MUSE, Philips XML or DICOM waveform; format from
/// the content) for the caller's institution (client certificate, or the token's
/// institution). 201 with the report when stored, 200 for a duplicate, 422 naming the fault.
async fn ecg_upload(
    State(st): State<ApiState>,
    Authed(who): Authed,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    if !matches!(who.role, Role::Clinician | Role::InstitutionSystem) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only institution systems and clinicians upload ECGs",
        ));
    }
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
pub(crate) fn render_ecg(
    gw: &crate::Gateway,
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
    let Some(blob) = gw.store.blob(&wave_hash)? else {
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
) -> Result<Response, Problem> {
    clinician(&st, &who).await?;
    let gw = &st.gw;
    let h = parse_hash(&hash)?;
    let Some(meta) = gw.store.report_meta(&h)? else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "no such report", hash));
    };
    let report = gw.store.report(&h)?;
    let Some(body) = report.as_ref().and_then(|r| r.ecg.as_ref()) else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "not an ECG", hash));
    };
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
    let svg = render_ecg(gw, body, &hash, &opts)?;
    audit_report_read(&st, &who, "read_ecg_trace", &meta).await?;
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
