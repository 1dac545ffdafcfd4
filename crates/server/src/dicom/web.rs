//! Imaging over HTTP: PNG previews (`/api/v1/imaging/instances/{uid}/preview.png`) and the
//! DICOMweb services (`/dicomweb/…`). Every route authenticates (bearer token or client
//! certificate, clinicians and institution systems only) and audits each read of patient
//! data with the person key and the hashes of the originals returned.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use huren_model::{InstanceRecord, PatientId};
use serde::Deserialize;

use super::PreviewFailure;
use crate::api::{ApiState, Authed};
use crate::http::{clinician, Problem};

/// The imaging routes, merged into the API router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/imaging/instances/{uid}/preview.png", get(preview))
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/rendered",
            get(rendered),
        )
}

/// The person key of an instance's patient, as the study report files it.
fn person_of(st: &ApiState, rec: &InstanceRecord) -> Option<String> {
    let local_id = if rec.patient_id.trim().is_empty() {
        format!("STUDY-{}", rec.study_instance_uid)
    } else {
        rec.patient_id.trim().to_string()
    };
    st.gw
        .store
        .person_key(&PatientId::Local {
            institution: rec.institution.clone(),
            local_id,
        })
        .ok()
}

/// Audits a read of instances (all of one patient or not: each distinct patient gets a
/// record).
pub(crate) async fn audit_instances(
    st: &ApiState,
    who: &crate::auth::Principal,
    action: &str,
    recs: &[&InstanceRecord],
    detail: serde_json::Value,
) -> Result<(), Problem> {
    let mut by_person: std::collections::BTreeMap<Option<String>, Vec<String>> = Default::default();
    for r in recs {
        by_person
            .entry(person_of(st, r))
            .or_default()
            .push(r.original.to_string());
    }
    if by_person.is_empty() {
        by_person.insert(None, vec![]);
    }
    for (patient, returned) in by_person {
        st.audit(huren_store::AuditRecord {
            actor: who.id.clone(),
            institution: who.institution.clone(),
            role: "clinician".into(),
            action: action.into(),
            patient,
            outcome: "ok".into(),
            returned,
            detail: detail.clone(),
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

pub(crate) fn store_problem(e: huren_store::StoreError) -> Problem {
    Problem::from(e)
}

#[derive(Deserialize)]
struct PreviewQuery {
    /// Longest side in pixels (default 512, at most 4096).
    size: Option<u32>,
}

async fn preview_answer(
    st: &ApiState,
    who: &crate::auth::Principal,
    rec: &InstanceRecord,
    size: u32,
    action: &str,
) -> Result<Response, Problem> {
    if size == 0 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad size",
            "size must be 1..4096 pixels",
        ));
    }
    match st.gw.preview_png(&rec.sop_instance_uid, size).await {
        Ok(Some(png)) => {
            audit_instances(st, who, action, &[rec], serde_json::json!({"size": size})).await?;
            Ok((
                [
                    (header::CONTENT_TYPE, "image/png"),
                    (header::CACHE_CONTROL, "private, max-age=3600"),
                ],
                png,
            )
                .into_response())
        }
        Ok(None) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no such instance",
            rec.sop_instance_uid.clone(),
        )),
        Err(e @ PreviewFailure::Store(_)) => {
            tracing::error!(error = %e, "preview");
            Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store error",
                "the store could not answer; see server log",
            ))
        }
        Err(PreviewFailure::Render(e)) => {
            let (status, title, code) = if e.http_status() == 415 {
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "cannot render this instance",
                    "PREVIEW_UNSUPPORTED",
                )
            } else {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "broken pixel data",
                    "PREVIEW_BROKEN",
                )
            };
            Err(Problem::new(status, title, e.to_string()).code(code))
        }
    }
}

fn lookup(st: &ApiState, uid: &str) -> Result<InstanceRecord, Problem> {
    st.gw
        .store
        .instance(uid)
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "no such instance", uid.to_string()))
}

/// `GET /api/v1/imaging/instances/{uid}/preview.png[?size=N]`.
async fn preview(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(uid): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Result<Response, Problem> {
    clinician(&st, &who).await?;
    let rec = lookup(&st, &uid)?;
    let size = q.size.unwrap_or(huren_dicom::preview::DEFAULT_MAX_PX);
    preview_answer(&st, &who, &rec, size, "read_preview").await
}

/// Whether an `Accept` header admits `image/png` (absent, `*/*`, `image/*`, `image/png`).
fn accepts_png(h: &HeaderMap) -> bool {
    let Some(a) = h.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    a.split(',').any(|m| {
        let m = m.split(';').next().unwrap_or("").trim();
        m.is_empty() || m == "*/*" || m == "image/*" || m.eq_ignore_ascii_case("image/png")
    })
}

#[derive(Deserialize)]
struct RenderedQuery {
    /// PS3.18 `viewport=rows,columns`: the longest side is the larger of the two.
    viewport: Option<String>,
}

/// WADO-RS `GET /dicomweb/studies/{s}/series/{se}/instances/{i}/rendered`: a PNG.
async fn rendered(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path((study, series, uid)): Path<(String, String, String)>,
    Query(q): Query<RenderedQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    clinician(&st, &who).await?;
    if !accepts_png(&headers) {
        return Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "not acceptable",
            "rendered instances are available as image/png only",
        ));
    }
    let rec = lookup(&st, &uid)?;
    if rec.study_instance_uid != study || rec.series_instance_uid != series {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no such instance",
            format!("{uid} is not in study {study} series {series}"),
        ));
    }
    let size = match q.viewport.as_deref() {
        None => huren_dicom::preview::DEFAULT_MAX_PX,
        Some(v) => v
            .split(',')
            .filter_map(|n| n.trim().parse::<u32>().ok())
            .max()
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad viewport",
                    "viewport must be rows,columns",
                )
            })?,
    };
    preview_answer(&st, &who, &rec, size, "read_rendered").await
}
