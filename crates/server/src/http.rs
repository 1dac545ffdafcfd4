//! The HTTP API (axum on hyper). Authentication arrives with the recognition service; until
//! then the server binds to loopback by default.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use huren_model::{ContentHash, PatientId, ReportKind};
use serde::Deserialize;
use serde_json::json;

use crate::pipeline::Gateway;

/// An RFC 9457 problem answer.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
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
pub fn router(gw: Gateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/patients/{id}/reports", get(patient_reports))
        .route("/api/v1/reports/{hash}", get(report))
        .route("/api/v1/reports/{hash}/original", get(original))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not found", "no such route") })
        .with_state(gw)
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
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    Query(q): Query<ReportsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
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
    .await
    .map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            e.to_string(),
        )
    })??;
    Ok(Json(json!({
        "identity_link": result.0,
        "count": result.1.len(),
        "reports": result.1,
    })))
}

async fn report(State(gw): State<Gateway>, Path(hash): Path<String>) -> Result<Response, Problem> {
    let h = parse_hash(&hash)?;
    let Some(meta) = gw.store.report_meta(&h)? else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "no such report", hash));
    };
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
    State(gw): State<Gateway>,
    Path(hash): Path<String>,
) -> Result<Response, Problem> {
    let h = parse_hash(&hash)?;
    let Some(meta) = gw.store.report_meta(&h)? else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "no such report", hash));
    };
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
