//! Imaging over HTTP: PNG previews (`/api/v1/imaging/instances/{uid}/preview.png`) and the
//! DICOMweb services (`/dicomweb/…`). Every route authenticates (bearer token or client
//! certificate, clinicians and institution systems only) and audits each read of patient
//! data with the person key and the hashes of the originals returned.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use huren_api::api::{ApiState, Authed};
use huren_gate::PreviewFailure;
use huren_gate::Problem;

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
        .merge(crate::dicomweb::routes())
}

/// One QIDO-RS query parameter → a matching key (`PatientID=…` or `00100020=…`); `None`
/// for the non-key parameters.
fn qido_key(name: &str, value: &str) -> Result<Option<huren_gate::query::Key>, Problem> {
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
    Ok(Some(huren_gate::query::Key {
        tag,
        value: value.to_string(),
    }))
}

/// DICOM JSON (PS3.18 F.2) of one answer.
pub(crate) fn dicom_json(attrs: &[huren_gate::query::Attr]) -> serde_json::Value {
    use dicom_core::VR;
    let mut m = serde_json::Map::new();
    let mut sorted: Vec<&huren_gate::query::Attr> = attrs.iter().collect();
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
    who: huren_api::auth::Principal,
    headers: HeaderMap,
    level: huren_gate::query::Level,
    fixed: Vec<huren_gate::query::Key>,
    params: Vec<(String, String)>,
) -> Result<Response, Problem> {
    let mut keys = fixed;
    let cap = st.gate.options().search_cap;
    let (mut limit, mut offset) = (cap, 0usize);
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
    let limit = limit.clamp(1, cap);
    let patient_key = keys
        .iter()
        .find(|k| k.tag == dicom_dictionary_std::tags::PATIENT_ID)
        .map(|k| k.value.clone());
    let presented = huren_gate::presented(&headers)?;
    // The audit record names the query's keys, not their values (names, IDs).
    let asked: Vec<String> = params.iter().map(|(k, _)| k.clone()).collect();
    let scope = st
        .gate
        .search(
            &who,
            presented.as_ref(),
            patient_key.as_deref(),
            &format!("qido_{}", level.as_str().to_lowercase()),
            serde_json::json!({ "keys": asked, "offset": offset, "limit": limit }),
        )
        .await?;
    let (scope, found) = tokio::task::spawn_blocking(move || {
        let found = scope.find(level, &keys, offset, limit + 1);
        (scope, found)
    })
    .await?;
    let found = found.map_err(store_problem)?;
    let more = found.len() > limit;
    let found = scope.release(found, limit).await?;
    let body: Vec<serde_json::Value> = found.iter().map(|a| dicom_json(a)).collect();
    let mut resp = (
        [(header::CONTENT_TYPE, "application/dicom+json")],
        serde_json::Value::from(body).to_string(),
    )
        .into_response();
    if more {
        // PS3.18 8.3.4.4: more matches than answered; page on with offset.
        resp.headers_mut().insert(
            header::WARNING,
            axum::http::HeaderValue::from_static(
                "299 huren \"The number of results exceeded the maximum supported by the server. Additional results can be requested.\"",
            ),
        );
    }
    Ok(resp)
}

type Params = Query<Vec<(String, String)>>;

fn uid_key(tag: dicom_core::Tag, v: String) -> huren_gate::query::Key {
    huren_gate::query::Key { tag, value: v }
}

async fn qido_studies(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Response, Problem> {
    qido(st, who, headers, huren_gate::query::Level::Study, vec![], p).await
}

async fn qido_series(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Response, Problem> {
    qido(
        st,
        who,
        headers,
        huren_gate::query::Level::Series,
        vec![],
        p,
    )
    .await
}

async fn qido_instances(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    Query(p): Params,
) -> Result<Response, Problem> {
    qido(st, who, headers, huren_gate::query::Level::Image, vec![], p).await
}

async fn qido_series_of_study(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    Path(study): Path<String>,
    Query(p): Params,
) -> Result<Response, Problem> {
    let fixed = vec![uid_key(
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
        study,
    )];
    qido(st, who, headers, huren_gate::query::Level::Series, fixed, p).await
}

async fn qido_instances_of_study(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    Path(study): Path<String>,
    Query(p): Params,
) -> Result<Response, Problem> {
    let fixed = vec![uid_key(
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
        study,
    )];
    qido(st, who, headers, huren_gate::query::Level::Image, fixed, p).await
}

async fn qido_instances_of_series(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
    Query(p): Params,
) -> Result<Response, Problem> {
    let fixed = vec![
        uid_key(dicom_dictionary_std::tags::STUDY_INSTANCE_UID, study),
        uid_key(dicom_dictionary_std::tags::SERIES_INSTANCE_UID, series),
    ];
    qido(st, who, headers, huren_gate::query::Level::Image, fixed, p).await
}

pub(crate) fn store_problem(e: huren_store::StoreError) -> Problem {
    Problem::from(e)
}

#[derive(Deserialize)]
struct PreviewQuery {
    /// Longest side in pixels (default 512), rounded down to `huren_gate::PREVIEW_SIZES`
    /// (64 … 4096; below 64: 64).
    size: Option<u32>,
}

#[allow(clippy::too_many_arguments)]
async fn preview_answer(
    st: &ApiState,
    who: &huren_api::auth::Principal,
    enc: huren_gate::EncounterKind,
    headers: &HeaderMap,
    sel: huren_gate::Selection<'_>,
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
    let presented = huren_gate::presented(headers)?;
    let read = st
        .gate
        .instances(
            who,
            presented.as_ref(),
            enc,
            sel,
            action,
            serde_json::json!({ "size": size }),
            None,
        )
        .await?;
    let uid = read
        .records
        .first()
        .map(|r| r.sop_instance_uid.clone())
        .unwrap_or_default();
    match read.preview(size).await {
        Ok(Some(png)) => Ok((
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            png,
        )
            .into_response()),
        Ok(None) => Err(Problem::new(StatusCode::NOT_FOUND, "no such instance", uid)),
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

/// `GET /api/v1/imaging/instances/{uid}/preview.png[?size=N]`.
async fn preview(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    Path(uid): Path<String>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let size = q.size.unwrap_or(huren_dicom::preview::DEFAULT_MAX_PX);
    let sel = huren_gate::Selection {
        study: None,
        series: None,
        instance: Some(&uid),
    };
    preview_answer(&st, &who, enc, &headers, sel, size, "read_preview").await
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
    /// PS3.18 `viewport=rows,columns`: the longest side is the larger of the two, rounded
    /// down to `huren_gate::PREVIEW_SIZES` like `preview.png`'s `size`.
    viewport: Option<String>,
}

/// WADO-RS `GET /dicomweb/studies/{s}/series/{se}/instances/{i}/rendered`: a PNG.
async fn rendered(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    Path((study, series, uid)): Path<(String, String, String)>,
    Query(q): Query<RenderedQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if !accepts_png(&headers) {
        return Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "not acceptable",
            "rendered instances are available as image/png only",
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
    let sel = huren_gate::Selection {
        study: Some(&study),
        series: Some(&series),
        instance: Some(&uid),
    };
    preview_answer(&st, &who, enc, &headers, sel, size, "read_rendered").await
}
