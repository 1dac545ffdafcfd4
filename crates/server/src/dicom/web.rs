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
        .route("/dicomweb/studies", get(qido_studies))
        .route(
            "/dicomweb/studies/{study}/series",
            get(qido_series_of_study),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances",
            get(qido_instances_of_series),
        )
        .route(
            "/dicomweb/studies/{study}/instances",
            get(qido_instances_of_study),
        )
        .route("/dicomweb/series", get(qido_series))
        .route("/dicomweb/instances", get(qido_instances))
        .merge(super::dicomweb::routes())
}

/// One QIDO-RS query parameter → a matching key (`PatientID=…` or `00100020=…`); `None`
/// for the non-key parameters.
fn qido_key(name: &str, value: &str) -> Result<Option<super::query::Key>, Problem> {
    use dicom_core::dictionary::DataDictionary;
    if matches!(
        name,
        "limit" | "offset" | "includefield" | "fuzzymatching" | "orderby" | "access_token"
    ) {
        return Ok(None);
    }
    let tag = if name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        let g = u16::from_str_radix(&name[..4], 16).unwrap_or(0);
        let e = u16::from_str_radix(&name[4..], 16).unwrap_or(0);
        dicom_core::Tag(g, e)
    } else {
        dicom_dictionary_std::StandardDataDictionary
            .by_name(name)
            .map(|d| d.tag.inner())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "unknown query key",
                    format!("{name:?} is not a DICOM keyword or tag"),
                )
            })?
    };
    Ok(Some(super::query::Key {
        tag,
        value: value.to_string(),
    }))
}

/// DICOM JSON (PS3.18 F.2) of one answer.
pub(crate) fn dicom_json(attrs: &[super::query::Attr]) -> serde_json::Value {
    use dicom_core::VR;
    let mut m = serde_json::Map::new();
    let mut sorted: Vec<&super::query::Attr> = attrs.iter().collect();
    sorted.sort_by_key(|a| a.tag);
    for a in sorted {
        let mut el = serde_json::Map::new();
        el.insert("vr".into(), a.vr.to_string().into());
        if let Some(v) = a.value.as_deref() {
            let vals: Vec<serde_json::Value> = v
                .split('\\')
                .map(|x| match a.vr {
                    VR::PN => serde_json::json!({"Alphabetic": x}),
                    VR::IS | VR::US => x
                        .trim()
                        .parse::<i64>()
                        .map(serde_json::Value::from)
                        .unwrap_or(serde_json::Value::Null),
                    _ => serde_json::Value::from(x.trim_end()),
                })
                .collect();
            el.insert("Value".into(), vals.into());
        }
        m.insert(
            format!("{:04X}{:04X}", a.tag.group(), a.tag.element()),
            el.into(),
        );
    }
    m.into()
}

async fn qido(
    st: ApiState,
    who: crate::auth::Principal,
    level: super::query::Level,
    fixed: Vec<super::query::Key>,
    params: Vec<(String, String)>,
) -> Result<Response, Problem> {
    clinician(&st, &who).await?;
    let mut keys = fixed;
    let (mut limit, mut offset) = (1000usize, 0usize);
    for (k, v) in &params {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "bad limit", v.clone()))?
            }
            "offset" => {
                offset = v
                    .parse()
                    .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "bad offset", v.clone()))?
            }
            _ => keys.extend(qido_key(k, v)?),
        }
    }
    let limit = limit.clamp(1, 10_000);
    let store = st.gw.store.clone();
    let found = tokio::task::spawn_blocking(move || {
        super::query::find(&store, level, &keys, offset, limit)
    })
    .await?
    .map_err(store_problem)?;
    // One audit record per patient whose data is answered.
    let mut by_patient: std::collections::BTreeMap<(String, String), Vec<String>> =
        Default::default();
    let get = |attrs: &[super::query::Attr], t| {
        attrs
            .iter()
            .find(|a| a.tag == t)
            .and_then(|a| a.value.clone())
            .unwrap_or_default()
    };
    for attrs in &found {
        let inst = get(attrs, dicom_dictionary_std::tags::INSTITUTION_NAME);
        let pid = get(attrs, dicom_dictionary_std::tags::PATIENT_ID);
        let study = get(attrs, dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
        let pid = if pid.is_empty() {
            format!("STUDY-{study}")
        } else {
            pid
        };
        by_patient.entry((inst, pid)).or_default().push(study);
    }
    for ((institution, local_id), mut studies) in by_patient {
        studies.dedup();
        st.audit(huren_store::AuditRecord {
            actor: who.id.clone(),
            institution: who.institution.clone(),
            role: "clinician".into(),
            action: format!("qido_{}", level.as_str().to_lowercase()),
            patient: st
                .gw
                .store
                .person_key(&PatientId::Local {
                    institution,
                    local_id,
                })
                .ok(),
            outcome: "ok".into(),
            detail: serde_json::json!({ "studies": studies }),
            ..Default::default()
        })
        .await?;
    }
    let body: Vec<serde_json::Value> = found.iter().map(|a| dicom_json(a)).collect();
    Ok((
        [(header::CONTENT_TYPE, "application/dicom+json")],
        serde_json::Value::from(body).to_string(),
    )
        .into_response())
}

type Params = Query<Vec<(String, String)>>;

fn uid_key(tag: dicom_core::Tag, v: String) -> super::query::Key {
    super::query::Key { tag, value: v }
}

async fn qido_studies(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Query(p): Params,
) -> Result<Response, Problem> {
    qido(st, who, super::query::Level::Study, vec![], p).await
}

async fn qido_series(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Query(p): Params,
) -> Result<Response, Problem> {
    qido(st, who, super::query::Level::Series, vec![], p).await
}

async fn qido_instances(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Query(p): Params,
) -> Result<Response, Problem> {
    qido(st, who, super::query::Level::Image, vec![], p).await
}

async fn qido_series_of_study(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(study): Path<String>,
    Query(p): Params,
) -> Result<Response, Problem> {
    let fixed = vec![uid_key(
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
        study,
    )];
    qido(st, who, super::query::Level::Series, fixed, p).await
}

async fn qido_instances_of_study(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(study): Path<String>,
    Query(p): Params,
) -> Result<Response, Problem> {
    let fixed = vec![uid_key(
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
        study,
    )];
    qido(st, who, super::query::Level::Image, fixed, p).await
}

async fn qido_instances_of_series(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path((study, series)): Path<(String, String)>,
    Query(p): Params,
) -> Result<Response, Problem> {
    let fixed = vec![
        uid_key(dicom_dictionary_std::tags::STUDY_INSTANCE_UID, study),
        uid_key(dicom_dictionary_std::tags::SERIES_INSTANCE_UID, series),
    ];
    qido(st, who, super::query::Level::Image, fixed, p).await
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
