//! DICOMweb STOW-RS (`POST /dicomweb/studies[/{study}]`) and WADO-RS retrieval
//! (`GET /dicomweb/studies/{s}[/series/{se}[/instances/{i}]]`, their `/metadata`, and an
//! instance's `/bulkdata/{path}` and `/frames/{list}`).
//!
//! STOW-RS takes `multipart/related; type="application/dicom"` (parsed by `multer`); every
//! part goes through the same `huren_ingest::Gateway::ingest_dicom` path as a C-STORE, so an
//! instance is listed in `ReferencedSOPSequence` only once durable. WADO-RS answers the
//! stored originals byte for byte, and `/metadata` as DICOM JSON with a `BulkDataURI` in
//! place of binary values, which `/bulkdata` then answers (`huren_dicom::bulk`). Clinicians and institution systems only; every answer that
//! carries patient data is audited.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use huren_model::InstanceRecord;
use serde_json::{json, Value};

use huren_api::api::{ApiState, Authed};
use huren_api::auth::Role;
use huren_gate::Problem;

/// The most one STOW-RS request body may carry (all parts together).
pub const STOW_MAX_REQUEST_BYTES: u64 = 1 << 30;
/// The most instances one STOW-RS request may carry.
pub const STOW_MAX_PARTS: usize = 10_000;

/// The STOW-RS and WADO-RS routes, merged into the API router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/dicomweb/studies",
            post(stow_any).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/dicomweb/studies/{study}",
            post(stow_study)
                .get(wado_study)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/dicomweb/studies/{study}/metadata", get(meta_study))
        .route(
            "/dicomweb/studies/{study}/series/{series}",
            get(wado_series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/metadata",
            get(meta_series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}",
            get(wado_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/metadata",
            get(meta_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/bulkdata/{*path}",
            get(bulk_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{uid}/frames/{list}",
            get(frames_instance),
        )
}

// ---------------------------------------------------------------- STOW-RS

/// `(media type lower-cased, parameters lower-cased name → value unquoted)`.
fn media_type(v: &str) -> (String, Vec<(String, String)>) {
    let mut it = v.split(';');
    let ty = it.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ))
        })
        .collect();
    (ty, params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn stow_any(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    stow(st, who, None, headers, body).await
}

async fn stow_study(
    State(st): State<ApiState>,
    Authed(who): Authed,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    stow(st, who, Some(study), headers, body).await
}

/// PS3.18 Table I.2-3 failure reasons used here.
mod reason {
    /// Processing failure (the store failed).
    pub const PROCESSING: u16 = 0x0110;
    /// Out of resources (too large).
    pub const RESOURCES: u16 = 0xA700;
    /// Data set does not match SOP class / contradicts the request (e.g. another study).
    pub const MISMATCH: u16 = 0xA900;
    /// Cannot understand (not DICOM, cannot be parsed).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

struct Stored {
    class: String,
    instance: String,
    study: String,
    series: String,
    warning: Option<String>,
}

struct Failed {
    class: Option<String>,
    instance: Option<String>,
    reason: u16,
    why: String,
}

async fn stow(
    st: ApiState,
    who: huren_api::auth::Principal,
    study: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    st.gate
        .require_role(&who, &[Role::Clinician, Role::InstitutionSystem], "stow_rs")
        .await?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (ty, params) = media_type(ctype);
    let unsupported = |why: String| {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            why,
        )
    };
    if ty != "multipart/related" {
        return Err(unsupported(format!(
            "STOW-RS takes multipart/related; type=\"application/dicom\", not {ctype:?}"
        )));
    }
    match param(&params, "type").map(str::to_ascii_lowercase).as_deref() {
        Some("application/dicom") | None => {}
        Some(other) => {
            return Err(unsupported(format!(
                "only type=\"application/dicom\" parts are accepted (not {other}: huren does not take DICOM JSON/XML metadata with bulk data)"
            )))
        }
    }
    let Some(boundary) = param(&params, "boundary").filter(|b| !b.is_empty()) else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad request",
            "multipart/related without a boundary",
        ));
    };
    let max_part = st.gw.config.dicom.max_object_bytes as u64;
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(STOW_MAX_REQUEST_BYTES)
            .per_field(max_part),
    );
    let mut mp = multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);

    let mut stored: Vec<Stored> = Vec::new();
    let mut failed: Vec<Failed> = Vec::new();
    let mut parts = 0usize;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(multipart_problem(e, parts, &stored));
            }
        };
        parts += 1;
        if parts > STOW_MAX_PARTS {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too many parts",
                format!("at most {STOW_MAX_PARTS} instances per request"),
            ));
        }
        let part_type = field
            .content_type()
            .map(|m| m.essence_str().to_ascii_lowercase());
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e @ multer::Error::FieldSizeExceeded { .. }) => {
                failed.push(Failed {
                    class: None,
                    instance: None,
                    reason: reason::RESOURCES,
                    why: e.to_string(),
                });
                // The rest of the stream is unusable after a refused part.
                break;
            }
            Err(e) => return Err(multipart_problem(e, parts, &stored)),
        };
        if let Some(t) = part_type.filter(|t| t != "application/dicom") {
            failed.push(Failed {
                class: None,
                instance: None,
                reason: reason::CANNOT_UNDERSTAND,
                why: format!("part {parts} is {t}, not application/dicom"),
            });
            continue;
        }
        let inst = match huren_ingest::dicom::parse_file(&bytes) {
            Ok(i) => i,
            Err(e) => {
                let status = e.status();
                failed.push(Failed {
                    class: None,
                    instance: None,
                    reason: if status == 0xA900 {
                        reason::MISMATCH
                    } else {
                        reason::CANNOT_UNDERSTAND
                    },
                    why: format!("part {parts}: {e}"),
                });
                continue;
            }
        };
        let class = inst.record.sop_class_uid.clone();
        let uid = inst.record.sop_instance_uid.clone();
        if let Some(s) = study.as_deref() {
            if inst.record.study_instance_uid != s {
                failed.push(Failed {
                    class: Some(class),
                    instance: Some(uid),
                    reason: reason::MISMATCH,
                    why: format!(
                        "the instance belongs to study {}, not {s}",
                        inst.record.study_instance_uid
                    ),
                });
                continue;
            }
        }
        let out = st
            .gw
            .ingest_dicom(bytes.to_vec(), &inst, &who.institution, Some("stow-rs"))
            .await;
        match out.status {
            0x0000 | 0xB000 => stored.push(Stored {
                class,
                instance: uid,
                study: inst.record.study_instance_uid.clone(),
                series: inst.record.series_instance_uid.clone(),
                warning: (out.status == 0xB000).then(|| out.warnings.join("; ")),
            }),
            s => failed.push(Failed {
                class: Some(class),
                instance: Some(uid),
                reason: match s {
                    0xA700 if out.error.as_deref().is_some_and(|e| e.starts_with("store")) => {
                        reason::PROCESSING
                    }
                    0xA700 => reason::RESOURCES,
                    0xA900 => reason::MISMATCH,
                    _ => reason::CANNOT_UNDERSTAND,
                },
                why: out.error.unwrap_or_default(),
            }),
        }
    }
    if parts == 0 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad request",
            "the multipart body has no parts",
        ));
    }
    // One audit record per request: what was stored for which caller.
    let mut rec = huren_gate::record(&who, "stow_rs");
    rec.outcome = if failed.is_empty() { "ok" } else { "partial" }.into();
    rec.detail = json!({
        "stored": stored.iter().map(|s| &s.instance).collect::<Vec<_>>(),
        "failed": failed.len(),
    });
    st.audit(rec).await?;

    let status = if failed.is_empty() {
        StatusCode::OK
    } else if stored.is_empty() {
        StatusCode::CONFLICT
    } else {
        StatusCode::ACCEPTED
    };
    let mut m = serde_json::Map::new();
    let one_study = stored
        .first()
        .map(|s| s.study.clone())
        .filter(|s0| stored.iter().all(|s| &s.study == s0));
    if let Some(s) = one_study {
        m.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("/dicomweb/studies/{s}")]}),
        );
    }
    if !stored.is_empty() {
        let items: Vec<Value> = stored
            .iter()
            .map(|s| {
                let mut i = json!({
                    "00081150": {"vr": "UI", "Value": [s.class]},
                    "00081155": {"vr": "UI", "Value": [s.instance]},
                    "00081190": {"vr": "UR", "Value": [format!(
                        "/dicomweb/studies/{}/series/{}/instances/{}", s.study, s.series, s.instance
                    )]},
                });
                if let Some(w) = &s.warning {
                    // Coercion of data elements (PS3.18 Table I.2-4: B000).
                    i["00081196"] = json!({"vr": "US", "Value": [0xB000]});
                    i["00400275"] =
                        json!({"vr": "LO", "Value": [w.chars().take(64).collect::<String>()]});
                }
                i
            })
            .collect();
        m.insert("00081199".into(), json!({"vr": "SQ", "Value": items}));
    }
    if !failed.is_empty() {
        let items: Vec<Value> = failed
            .iter()
            .map(|f| {
                let mut i = json!({
                    "00081150": {"vr": "UI"},
                    "00081155": {"vr": "UI"},
                    "00081197": {"vr": "US", "Value": [f.reason]},
                    // Error Comment, so the sender sees why.
                    "00000902": {"vr": "LO", "Value": [f.why.chars().take(64).collect::<String>()]},
                });
                if let Some(c) = &f.class {
                    i["00081150"] = json!({"vr": "UI", "Value": [c]});
                }
                if let Some(u) = &f.instance {
                    i["00081155"] = json!({"vr": "UI", "Value": [u]});
                }
                i
            })
            .collect();
        m.insert("00081198".into(), json!({"vr": "SQ", "Value": items}));
    }
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        Value::Object(m).to_string(),
    )
        .into_response())
}

/// A body that is not well-formed multipart, or exceeds the request limit. Parts stored
/// before the fault stay stored (each was durable on its own), and the problem says so.
fn multipart_problem(e: multer::Error, parts: usize, stored: &[Stored]) -> Problem {
    let (status, title) = match e {
        multer::Error::StreamSizeExceeded { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request too large")
        }
        _ => (StatusCode::BAD_REQUEST, "bad multipart body"),
    };
    Problem::new(
        status,
        title,
        format!(
            "{e} (after part {parts}; {} instance(s) before it were stored)",
            stored.len()
        ),
    )
}

// ---------------------------------------------------------------- WADO-RS

/// The instances a WADO-RS path names, through the gate (allowed for the caller's own
/// institution or with the patient's verified authorisation; one audit record).
#[allow(clippy::too_many_arguments)]
async fn select(
    st: &ApiState,
    who: &huren_api::auth::Principal,
    enc: huren_gate::EncounterKind,
    headers: &HeaderMap,
    (study, series, uid): (&str, Option<&str>, Option<&str>),
    action: &str,
    detail: Value,
    precheck: Option<huren_gate::Precheck<'_>>,
) -> Result<huren_gate::InstancesRead, Problem> {
    let presented = huren_gate::presented(headers)?;
    st.gate
        .instances(
            who,
            presented.as_ref(),
            enc,
            huren_gate::Selection {
                study: Some(study),
                series,
                instance: uid,
            },
            action,
            detail,
            precheck,
        )
        .await
}

/// Whether `Accept` admits `multipart/related; type="application/dicom"` with the stored
/// transfer syntaxes (huren answers the originals as stored, never transcoded).
fn accepts_dicom(headers: &HeaderMap, recs: &[InstanceRecord]) -> Result<(), Problem> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    for alt in accept.split(',') {
        let (ty, params) = media_type(alt);
        let ok_type = match ty.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => matches!(
                param(&params, "type")
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                None | Some("application/dicom")
            ),
            _ => false,
        };
        let ok_ts = match param(&params, "transfer-syntax") {
            None | Some("*") => true,
            Some(ts) => recs.iter().all(|r| r.transfer_syntax == ts),
        };
        if ok_type && ok_ts {
            return Ok(());
        }
    }
    Err(Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        "not acceptable",
        "huren answers multipart/related; type=\"application/dicom\" with each instance in the transfer syntax it was stored in (transfer-syntax=* or the stored one)",
    ))
}

async fn wado(
    st: ApiState,
    who: huren_api::auth::Principal,
    enc: huren_gate::EncounterKind,
    headers: HeaderMap,
    study: String,
    series: Option<String>,
    uid: Option<String>,
) -> Result<Response, Problem> {
    let read = select(
        &st,
        &who,
        enc,
        &headers,
        (&study, series.as_deref(), uid.as_deref()),
        "wado_retrieve",
        json!({ "study": study, "series": series, "instance": uid }),
        Some(&|recs: &[InstanceRecord]| accepts_dicom(&headers, recs)),
    )
    .await?;
    let recs = &read.records;
    let boundary = boundary_for(&recs[0].original);
    let store = read.originals();
    let b = boundary.clone();
    // Streamed one original at a time (a study can be gigabytes).
    let hashes: Vec<huren_model::ContentHash> = recs.iter().map(|r| r.original).collect();
    use futures::StreamExt as _;
    let stream = futures::stream::iter(hashes.into_iter().map(Some).chain([None])).then(move |h| {
        let store = store.clone();
        let b = b.clone();
        async move {
            let Some(h) = h else {
                return Ok::<_, std::io::Error>(bytes::Bytes::from(format!("--{b}--\r\n")));
            };
            let blob = tokio::task::spawn_blocking(move || store.read(&h))
                .await
                .map_err(std::io::Error::other)??;
            let mut part = format!("--{b}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
            part.extend_from_slice(&blob);
            part.extend_from_slice(b"\r\n");
            Ok(bytes::Bytes::from(part))
        }
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn wado_study(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, Problem> {
    wado(st, who, enc, headers, study, None, None).await
}

async fn wado_series(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, Problem> {
    wado(st, who, enc, headers, study, Some(series), None).await
}

async fn wado_instance(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path((study, series, uid)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    wado(st, who, enc, headers, study, Some(series), Some(uid)).await
}

/// A multipart boundary from a content hash: only token characters (no ":" from the
/// hash's "blake3:" prefix), so it needs no quoting in the Content-Type parameter.
fn boundary_for(h: &huren_model::ContentHash) -> String {
    let hex: String = h
        .to_string()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(32)
        .collect();
    format!("huren-{hex}")
}

// ---------------------------------------------------------------- WADO-RS bulk data, frames

/// What a bulk data request asks for.
enum Want {
    /// The value at a `BulkDataURI` path (`TAG` or `TAG/item/TAG…`).
    Bulk(String),
    /// Frames by one-based number.
    Frames(Vec<usize>),
}

async fn bulk_instance(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path((study, series, uid, path)): Path<(String, String, String, String)>,
) -> Result<Response, Problem> {
    bulk(
        st,
        who,
        enc,
        headers,
        (study, series, uid),
        Want::Bulk(path),
    )
    .await
}

async fn frames_instance(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path((study, series, uid, list)): Path<(String, String, String, String)>,
) -> Result<Response, Problem> {
    let numbers = huren_dicom::bulk::parse_frame_list(&list).map_err(bulk_problem)?;
    bulk(
        st,
        who,
        enc,
        headers,
        (study, series, uid),
        Want::Frames(numbers),
    )
    .await
}

fn bulk_problem(e: huren_dicom::bulk::BulkError) -> Problem {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = match e.http_status() {
        400 => "bad request",
        404 => "not found",
        406 => "not acceptable",
        _ => "stored instance does not parse",
    };
    Problem::new(status, title, e.to_string())
}

/// Whether `Accept` admits a `multipart/related` answer. Bulk data and frames go out as
/// stored (native values little endian, compressed frames in their stored syntax).
fn accepts_multipart(headers: &HeaderMap) -> Result<(), Problem> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|alt| {
        matches!(
            media_type(alt).0.as_str(),
            "*/*" | "multipart/*" | "multipart/related"
        )
    });
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "not acceptable",
            "bulk data and frames are answered as multipart/related (native values as application/octet-stream, compressed frames in the stored transfer syntax)",
        ))
    }
}

async fn bulk(
    st: ApiState,
    who: huren_api::auth::Principal,
    enc: huren_gate::EncounterKind,
    headers: HeaderMap,
    (study, series, uid): (String, String, String),
    want: Want,
) -> Result<Response, Problem> {
    accepts_multipart(&headers)?;
    let (action, what) = match &want {
        Want::Bulk(p) => ("wado_bulkdata", json!({ "path": p })),
        Want::Frames(n) => ("wado_frames", json!({ "frames": n })),
    };
    let read = select(
        &st,
        &who,
        enc,
        &headers,
        (&study, Some(&series), Some(&uid)),
        action,
        json!({ "study": study, "series": series, "instance": uid, "what": what }),
        None,
    )
    .await?;
    let original = read.records[0].original;
    let out = tokio::task::spawn_blocking(move || -> Result<huren_dicom::bulk::Bulk, Problem> {
        let bytes = read.original(&read.records[0])?;
        match want {
            Want::Bulk(p) => huren_dicom::bulk::bulk_data(&bytes, &p),
            Want::Frames(n) => huren_dicom::bulk::frames(&bytes, &n),
        }
        .map_err(bulk_problem)
    })
    .await??;
    let boundary = boundary_for(&original);
    let part_type = match &out.transfer_syntax {
        Some(ts) => format!("{}; transfer-syntax={ts}", out.media_type),
        None => out.media_type.to_string(),
    };
    let mut body = Vec::with_capacity(out.parts.iter().map(|p| p.len() + 128).sum::<usize>() + 64);
    for p in &out.parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: {part_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((
        [(
            header::CONTENT_TYPE,
            format!(
                "multipart/related; type=\"{}\"; boundary={boundary}",
                out.media_type
            ),
        )],
        body,
    )
        .into_response())
}

/// DICOM JSON of one stored original with every binary value (OB, OW, OF, OD, OL, OV, UN,
/// at any depth) as a `BulkDataURI` under the instance's URL.
pub fn metadata_json(bytes: &[u8], instance_url: &str) -> Result<Value, huren_dicom::DicomError> {
    use dicom_core::header::Header;
    use dicom_core::VR;
    let (mut obj, _) = huren_dicom::read_object(bytes)?;
    // Top-level binary values (Pixel Data above all) are dropped before serialising, so
    // they are never base64-encoded only to be thrown away.
    let binary: Vec<(dicom_core::Tag, VR)> = obj
        .iter()
        .filter(|e| {
            matches!(
                e.vr(),
                VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
            )
        })
        .map(|e| (e.tag(), e.vr()))
        .collect();
    for (t, _) in &binary {
        obj.remove_element(*t);
    }
    let mut v =
        dicom_json::to_value(&obj).map_err(|e| huren_dicom::DicomError::Parse(e.to_string()))?;
    fn nested(v: &mut Value, url: &str, path: &str) {
        if let Value::Object(m) = v {
            for (k, el) in m.iter_mut() {
                let here = format!("{path}{k}");
                if let Some(o) = el.as_object_mut() {
                    if o.remove("InlineBinary").is_some() {
                        o.insert(
                            "BulkDataURI".into(),
                            json!(format!("{url}/bulkdata/{here}")),
                        );
                    }
                    if let Some(Value::Array(items)) = o.get_mut("Value") {
                        for (n, it) in items.iter_mut().enumerate() {
                            nested(it, url, &format!("{here}/{n}/"));
                        }
                    }
                }
            }
        }
    }
    nested(&mut v, instance_url, "");
    if let Value::Object(m) = &mut v {
        for (t, vr) in binary {
            let k = format!("{:04X}{:04X}", t.group(), t.element());
            m.insert(
                k.clone(),
                json!({"vr": vr.to_string(), "BulkDataURI": format!("{instance_url}/bulkdata/{k}")}),
            );
        }
        // Keep the keys in tag order, as DICOM JSON writers do.
        let sorted: std::collections::BTreeMap<String, Value> =
            std::mem::take(m).into_iter().collect();
        *m = sorted.into_iter().collect();
    }
    Ok(v)
}

async fn metadata(
    st: ApiState,
    who: huren_api::auth::Principal,
    enc: huren_gate::EncounterKind,
    headers: HeaderMap,
    study: String,
    series: Option<String>,
    uid: Option<String>,
) -> Result<Response, Problem> {
    let read = select(
        &st,
        &who,
        enc,
        &headers,
        (&study, series.as_deref(), uid.as_deref()),
        "wado_metadata",
        json!({ "study": study, "series": series, "instance": uid }),
        None,
    )
    .await?;
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, Problem> {
        let mut out = Vec::with_capacity(read.records.len());
        for r in &read.records {
            let bytes = read.original(r)?;
            let url = format!(
                "/dicomweb/studies/{}/series/{}/instances/{}",
                r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid
            );
            out.push(metadata_json(&bytes, &url).map_err(|e| {
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "stored instance does not parse",
                    e.to_string(),
                )
            })?);
        }
        Ok(out)
    })
    .await??;
    Ok((
        [(header::CONTENT_TYPE, "application/dicom+json")],
        Value::from(out).to_string(),
    )
        .into_response())
}

async fn meta_study(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, Problem> {
    metadata(st, who, enc, headers, study, None, None).await
}

async fn meta_series(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, Problem> {
    metadata(st, who, enc, headers, study, Some(series), None).await
}

async fn meta_instance(
    State(st): State<ApiState>,
    Authed(who): Authed,
    huren_api::api::Enc(enc): huren_api::api::Enc,
    headers: HeaderMap,
    Path((study, series, uid)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    metadata(st, who, enc, headers, study, Some(series), Some(uid)).await
}
