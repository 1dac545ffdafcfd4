//! FHIR R4 (4.0.1) read views: `DiagnosticReport`, `Observation` and `ImagingStudy` search
//! returning `searchset` Bundles, each resource carrying the recognition verdict as an
//! extension. Same authentication, patient authorisation and audit as the results API.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use huren_model::{AbnormalFlag, ReportKind, ReportStatus};
use huren_recognition::{Demographics, Verdict};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{
    authorise, evaluate_patient, institution_name, merge, ApiState, Ask, Asked, Authed, Evaluated,
};
use huren_gate::Problem;

/// Base of huren's own extension and code-system URLs.
pub const BASE: &str = "https://huren.example/fhir";

/// Search parameters we support (`patient` required).
#[derive(Deserialize)]
pub struct FhirQuery {
    patient: Option<String>,
    category: Option<String>,
    date: Option<String>,
    code: Option<String>,
    encounter: Option<String>,
    /// Page size (default [`DEFAULT_COUNT`], at most [`MAX_COUNT`]).
    #[serde(rename = "_count")]
    count: Option<usize>,
    /// Matches to skip (the `next` link carries it).
    #[serde(rename = "_offset")]
    offset: Option<usize>,
}

/// Entries of one page when `_count` is not given.
pub const DEFAULT_COUNT: usize = 100;
/// The largest page: a 99,000-observation ORU is answered in pages, never whole.
pub const MAX_COUNT: usize = 1000;

/// One page of a search: the matches' range and the links.
pub(crate) struct Page {
    offset: usize,
    count: usize,
}

impl Page {
    fn of(q: &FhirQuery) -> Page {
        Page::new(q.offset, q.count)
    }

    /// From `_offset` and `_count` (default [`DEFAULT_COUNT`], at most [`MAX_COUNT`]).
    pub(crate) fn new(offset: Option<usize>, count: Option<usize>) -> Page {
        Page {
            offset: offset.unwrap_or(0),
            count: count.unwrap_or(DEFAULT_COUNT).clamp(1, MAX_COUNT),
        }
    }

    pub(crate) fn range(&self, total: usize) -> std::ops::Range<usize> {
        let start = self.offset.min(total);
        start..(start + self.count).min(total)
    }
}

/// The request's own URL with `_offset`/`_count` set (the Bundle's `self` and `next` links).
fn page_url(uri: &axum::http::Uri, offset: usize, count: usize) -> String {
    let mut parts: Vec<String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("_offset=") && !kv.starts_with("_count="))
        .map(str::to_string)
        .collect();
    parts.push(format!("_count={count}"));
    parts.push(format!("_offset={offset}"));
    format!("{}?{}", uri.path(), parts.join("&"))
}

/// An inclusive date range; either end may be open.
type DateRange = (Option<NaiveDate>, Option<NaiveDate>);

/// `ge2025-01-01`, `le2025-12-31`, `2025-06-24` (that day).
fn date_filter(d: Option<&str>) -> Result<Option<DateRange>, Problem> {
    let Some(d) = d.filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let (prefix, rest) = match d.get(..2) {
        Some(p @ ("ge" | "le" | "gt" | "lt" | "eq")) => (p, &d[2..]),
        _ => ("eq", d),
    };
    let day = NaiveDate::parse_from_str(rest, "%Y-%m-%d").map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad date",
            "date must be [ge|le|gt|lt|eq]YYYY-MM-DD",
        )
    })?;
    Ok(Some(match prefix {
        "ge" => (Some(day), None),
        "gt" => (day.succ_opt(), None),
        "le" => (None, Some(day)),
        "lt" => (None, day.pred_opt()),
        _ => (Some(day), Some(day)),
    }))
}

fn in_range(e: &Evaluated, r: Option<DateRange>) -> bool {
    let Some((from, to)) = r else { return true };
    let Some(t) = e.verdict.evidence.anchor_time else {
        return false;
    };
    let d = t.date_naive();
    from.is_none_or(|f| d >= f) && to.is_none_or(|x| d <= x)
}

fn fhir_id(hash: &huren_model::ContentHash) -> String {
    hash.hex()
}

/// Observation ids: 56 hex digits of the report hash and the OBX position (FHIR ids are at
/// most 64 characters).
fn observation_id(hash: &huren_model::ContentHash, i: usize) -> String {
    let hex = hash.hex();
    format!("{}-{}", hex.get(..56).unwrap_or(&hex), i + 1)
}

fn status(s: ReportStatus) -> &'static str {
    match s {
        ReportStatus::Preliminary => "preliminary",
        ReportStatus::Final => "final",
        ReportStatus::Corrected => "corrected",
        ReportStatus::Cancelled => "cancelled",
    }
}

/// The verdict as a complex extension.
fn verdict_ext(v: &Verdict, item: &str) -> Value {
    let mut ext = vec![
        json!({"url": "item", "valueString": item}),
        json!({"url": "level", "valueCode": serde_json::to_value(v.level).unwrap_or(Value::Null)}),
        json!({"url": "label", "valueString": v.level.zh()}),
    ];
    if let Some(l) = &v.hr_label {
        ext.push(json!({"url": "hrLabel", "valueString": l}));
    }
    if let Some(e) = v.expires_at {
        ext.push(json!({"url": "expiresAt", "valueDateTime": e.to_rfc3339()}));
    }
    for r in &v.reasons {
        ext.push(json!({"url": "reason", "valueCoding": {
            "system": format!("{BASE}/CodeSystem/recognition-reason"),
            "code": r.code.as_str(),
            "display": r.zh_text,
        }}));
    }
    ext.push(json!({"url": "rulesVersion", "valueString": v.evidence.catalogue_version}));
    json!({"url": format!("{BASE}/StructureDefinition/recognition-verdict"), "extension": ext})
}

fn subject(e: &Evaluated) -> Value {
    let p = &e.report.patient;
    let mut s = json!({"identifier": {
        "system": format!("urn:huren:patient:{}", p.institution),
        "value": p.local_id,
    }});
    if let Some(n) = &p.name {
        s["display"] = json!(n);
    }
    s
}

fn performer(st: &ApiState, code: &str) -> Value {
    let mut p = json!({"identifier": {"system": "urn:huren:institution", "value": code}});
    if let Some(n) = institution_name(st, code) {
        p["display"] = json!(n);
    }
    json!([p])
}

fn category(kind: ReportKind) -> Value {
    let (code, display) = match kind {
        ReportKind::Lab => ("LAB", "Laboratory"),
        ReportKind::Imaging => ("RAD", "Radiology"),
        ReportKind::Ecg => ("EC", "Electrocardiac"),
    };
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": code, "display": display}]}])
}

fn instant(s: Option<&str>) -> Option<String> {
    // FHIR instant: seconds and a zone are required; RFC 3339 from the model has both.
    s.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_rfc3339())
}

fn interpretation(f: &AbnormalFlag) -> (&'static str, &'static str) {
    match f {
        AbnormalFlag::Normal => ("N", "Normal"),
        AbnormalFlag::Low => ("L", "Low"),
        AbnormalFlag::High => ("H", "High"),
        AbnormalFlag::CriticalLow => ("LL", "Critical low"),
        AbnormalFlag::CriticalHigh => ("HH", "Critical high"),
        AbnormalFlag::Abnormal => ("A", "Abnormal"),
    }
}

fn observation(st: &ApiState, e: &Evaluated, i: usize) -> Option<Value> {
    let lab = e.report.lab.as_ref()?;
    let o = lab.observations.get(i)?;
    let inst = &e.report.source.institution;
    let mut coding = vec![json!({
        "system": format!("urn:huren:local-code:{inst}"),
        "code": o.code,
    })];
    if let Some(n) = &o.name {
        coding[0]["display"] = json!(n);
    }
    if let Some(rc) = &e.verdict.evidence.regional_code {
        coding.push(json!({"system": "urn:huren:regional-code", "code": rc}));
        if let Some(l) = st.rules.item(rc).and_then(|it| it.loinc.clone()) {
            coding.push(json!({"system": "http://loinc.org", "code": l}));
        }
    }
    let mut obs = json!({
        "resourceType": "Observation",
        "id": observation_id(&e.meta.hash, i),
        "status": match o.result_status.as_deref() {
            Some("P" | "I" | "R" | "S") => "preliminary",
            Some("C") => "corrected",
            Some("X" | "D" | "W") => "cancelled",
            _ => status(e.report.status),
        },
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": coding, "text": o.name.clone().unwrap_or_else(|| o.code.clone())},
        "subject": subject(e),
        "performer": performer(st, inst),
        "extension": [
            verdict_ext(&e.verdict, &e.item_key),
            {"url": format!("{BASE}/StructureDefinition/original-value"), "valueString": o.value},
        ],
    });
    if let Some(t) = o
        .observed_at
        .as_deref()
        .or(e.report.specimen_collected_at.as_deref())
        .and_then(|t| instant(Some(t)))
    {
        obs["effectiveDateTime"] = json!(t);
    }
    if let Some(t) = instant(e.report.reported_at.as_deref()) {
        obs["issued"] = json!(t);
    }
    match o.value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && o.value_type.as_deref().is_none_or(|t| t == "NM") => {
            let mut q = json!({"value": v});
            if let Some(u) = &o.unit {
                q["unit"] = json!(u);
            }
            obs["valueQuantity"] = q;
        }
        _ if !o.value.is_empty() => obs["valueString"] = json!(o.value),
        _ => {}
    }
    if let Some(r) = &o.reference_range {
        obs["referenceRange"] = json!([{"text": r}]);
    }
    if !o.abnormal_flags.is_empty() {
        let codings: Vec<Value> = o
            .abnormal_flags
            .iter()
            .map(|f| {
                let (c, d) = interpretation(f);
                json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": c, "display": d})
            })
            .collect();
        obs["interpretation"] = json!([{"coding": codings}]);
    }
    Some(obs)
}

fn diagnostic_report(st: &ApiState, group: &[&Evaluated]) -> Option<Value> {
    let e = group.first()?;
    let r = &e.report;
    let inst = &r.source.institution;
    let lab = r.lab.as_ref();
    let code_text = lab
        .and_then(|l| l.service_name.clone().or(l.service_code.clone()))
        .unwrap_or_else(|| r.kind.as_str().to_string());
    let mut code = json!({"text": code_text});
    if let Some(c) = lab.and_then(|l| l.service_code.clone()) {
        code["coding"] = json!([{"system": format!("urn:huren:local-code:{inst}"), "code": c}]);
    }
    let mut dr = json!({
        "resourceType": "DiagnosticReport",
        "id": fhir_id(&e.meta.hash),
        "meta": {"versionId": e.meta.version.to_string()},
        "identifier": [{"system": format!("urn:huren:filler:{inst}"), "value": r.source.source_key}],
        "status": status(r.status),
        "category": category(r.kind),
        "code": code,
        "subject": subject(e),
        "performer": performer(st, inst),
        "extension": group.iter().map(|g| verdict_ext(&g.verdict, &g.item_key)).collect::<Vec<_>>(),
    });
    if let Some(t) = instant(r.clinical_time()) {
        dr["effectiveDateTime"] = json!(t);
    }
    if let Some(t) = instant(r.reported_at.as_deref()) {
        dr["issued"] = json!(t);
    }
    let results: Vec<Value> = group
        .iter()
        .flat_map(|g| g.observations.iter())
        .map(|i| json!({"reference": format!("Observation/{}", observation_id(&e.meta.hash, *i))}))
        .collect();
    if !results.is_empty() {
        dr["result"] = json!(results);
    }
    if let Some(c) = &r.conclusion {
        dr["conclusion"] = json!(c);
    }
    Some(dr)
}

/// One audit entry as a FHIR R4 AuditEvent (BALP-style "query/read with patient").
pub fn audit_event(e: &huren_audit::AuditEntry) -> Value {
    let r = &e.record;
    let (action, code) = match r.action.as_str() {
        "decision" => ("C", "decision"),
        "check" => ("E", "check"),
        other => ("R", other),
    };
    let ok = r.outcome == "ok";
    let mut entity: Vec<Value> = Vec::new();
    if let Some(p) = &r.patient {
        entity.push(json!({
            "what": {"identifier": {"system": "urn:huren:person-key", "value": p}},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    for h in &r.returned {
        let id = h.strip_prefix("blake3:").unwrap_or(h);
        entity.push(json!({"what": {"reference": format!("DiagnosticReport/{id}")}}));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": format!("audit-{}", e.seq),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": format!("{BASE}/CodeSystem/audit-action"), "code": code}],
        "action": action,
        "recorded": e.at,
        "outcome": if ok { "0" } else { "4" },
        "outcomeDesc": r.outcome,
        "purposeOfEvent": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": if r.break_glass { "ETREAT" } else { "TREAT" }}]}],
        "agent": [{
            "who": {"identifier": {"system": "urn:huren:actor", "value": r.actor}},
            "requestor": true,
        }],
        "source": {"observer": {"display": "huren"}},
        "extension": [{"url": format!("{BASE}/StructureDefinition/audit-chain"), "valueString": e.hash}],
    });
    if !r.institution.is_empty() {
        ev["agent"][0]["location"] =
            json!({"identifier": {"system": "urn:huren:institution", "value": r.institution}});
    }
    if !entity.is_empty() {
        ev["entity"] = json!(entity);
    }
    ev
}

/// A searchset Bundle of one page: `total` is every match, `entry` the page's, and a `next`
/// link while more remain.
pub(crate) fn bundle(
    entries: Vec<Value>,
    total: usize,
    page: &Page,
    uri: &axum::http::Uri,
) -> Response {
    let mut links =
        vec![json!({"relation": "self", "url": page_url(uri, page.offset, page.count)})];
    let end = page.range(total).end;
    if end < total {
        links.push(json!({"relation": "next", "url": page_url(uri, end, page.count)}));
    }
    let body = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries.into_iter().map(|r| json!({"resource": r, "search": {"mode": "match"}})).collect::<Vec<_>>(),
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

async fn search(
    st: &ApiState,
    who: crate::auth::Principal,
    headers: &HeaderMap,
    q: &FhirQuery,
) -> Result<(Asked, Vec<Evaluated>), Problem> {
    let Some(patient) = q.patient.as_deref() else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "patient required",
            "search needs ?patient=INST:LOCAL or nid:…",
        ));
    };
    let range = date_filter(q.date.as_deref())?;
    let kind = match q.category.as_deref() {
        None | Some("") => None,
        Some("LAB" | "laboratory") => Some(ReportKind::Lab),
        Some("RAD" | "imaging") => Some(ReportKind::Imaging),
        Some("EC" | "ecg") => Some(ReportKind::Ecg),
        Some(other) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad category",
                format!("category must be LAB, RAD or EC, not {other:?}"),
            ))
        }
    };
    let asked = authorise(
        st,
        who,
        "fhir_read",
        headers,
        Ask {
            channel: None,
            patient,
            encounter: q.encounter.as_deref(),
            intended: None,
            demographics: Demographics::default(),
            kind,
        },
    )
    .await?;
    let (_, evaluated) = evaluate_patient(st, &asked, kind).await?;
    let shown: Vec<Evaluated> = evaluated
        .into_iter()
        .filter(|e| e.verdict.content_allowed() && !e.verdict.is_hidden_duplicate())
        .filter(|e| in_range(e, range))
        .filter(|e| {
            q.code.as_deref().is_none_or(|c| {
                e.verdict.evidence.regional_code.as_deref() == Some(c)
                    || e.candidate.local_code.as_deref() == Some(c)
            })
        })
        .collect();
    Ok((asked, shown))
}

/// The search's one audit record: the reports of the page answered.
async fn audited(
    st: &ApiState,
    asked: &Asked,
    resource: &str,
    page: &[&Evaluated],
    total: usize,
) -> Result<(), Problem> {
    let mut rec = asked.audit_base();
    rec.returned = page.iter().map(|e| e.meta.hash.to_string()).collect();
    rec.returned.dedup();
    merge(&mut rec.detail, json!({"fhir": resource, "total": total}));
    st.audit(rec).await
}

/// `GET /fhir/DiagnosticReport?patient=&category=&date=&code=`.
pub async fn diagnostic_reports(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<FhirQuery>,
) -> Result<Response, Problem> {
    let (asked, shown) = search(&st, who, &headers, &q).await?;
    let mut groups: BTreeMap<String, Vec<&Evaluated>> = BTreeMap::new();
    let mut order = Vec::new();
    for e in &shown {
        let k = e.meta.hash.to_string();
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(e);
    }
    let page = Page::of(&q);
    let range = page.range(order.len());
    let in_page: Vec<&Vec<&Evaluated>> =
        order[range].iter().filter_map(|k| groups.get(k)).collect();
    let firsts: Vec<&Evaluated> = in_page.iter().filter_map(|g| g.first().copied()).collect();
    audited(&st, &asked, "DiagnosticReport", &firsts, order.len()).await?;
    let entries = in_page
        .iter()
        .filter_map(|g| diagnostic_report(&st, g))
        .collect();
    Ok(bundle(entries, order.len(), &page, &uri))
}

/// `GET /fhir/DocumentReference?patient=&category=&date=`: each current report of the patient
/// as its WS/T 500 shared document (issue 20): `type` the document code (C0007 检验报告, C0006
/// 检查报告), `masterIdentifier` the document id (the report hash under the WS/T 500 document-id
/// OID), `content` the link to `GET /api/v1/reports/{hash}/cda` with the template as `format`.
/// The same authorisation and one audit record as the other searches.
pub async fn document_references(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<FhirQuery>,
) -> Result<Response, Problem> {
    let (asked, shown) = search(&st, who, &headers, &q).await?;
    let mut seen = std::collections::HashSet::new();
    let reports: Vec<&Evaluated> = shown.iter().filter(|e| seen.insert(e.meta.hash)).collect();
    let page = Page::of(&q);
    let slice = &reports[page.range(reports.len())];
    audited(&st, &asked, "DocumentReference", slice, reports.len()).await?;
    let entries = slice.iter().map(|e| document_reference(e)).collect();
    Ok(bundle(entries, reports.len(), &page, &uri))
}

fn document_reference(e: &Evaluated) -> Value {
    let doc = huren_cda::DocumentType::of(e.meta.kind);
    let hash = e.meta.hash.to_string();
    json!({
        "resourceType": "DocumentReference",
        "id": fhir_id(&e.meta.hash),
        "masterIdentifier": {
            "system": format!("urn:oid:{}", huren_cda::oid::DOCUMENT_ID),
            "value": e.meta.hash.hex(),
        },
        "status": if e.report.status == ReportStatus::Cancelled { "entered-in-error" } else { "current" },
        "docStatus": match e.report.status {
            ReportStatus::Preliminary => "preliminary",
            ReportStatus::Corrected => "amended",
            _ if e.meta.version > 1 => "amended",
            _ => "final",
        },
        "type": {"coding": [{
            "system": format!("urn:oid:{}", huren_cda::oid::DOCUMENT_CODES),
            "code": doc.code(),
            "display": doc.title(),
        }]},
        "subject": subject(e),
        "date": e.meta.received_at,
        "custodian": {"identifier": {"value": e.meta.institution}},
        "content": [{
            "attachment": {
                "contentType": "application/xml",
                "language": "zh-CN",
                "url": format!("/api/v1/reports/{hash}/cda"),
                "title": doc.title(),
            },
            "format": {
                "system": "urn:ietf:rfc:3986",
                "code": format!("urn:oid:{}", doc.template()),
                "display": format!("WS/T 500 {}", doc.title()),
            },
        }],
    })
}

/// `GET /fhir/Observation?patient=&code=&date=`.
pub async fn observations(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<FhirQuery>,
) -> Result<Response, Problem> {
    let (asked, shown) = search(&st, who, &headers, &q).await?;
    // Every match as (result, observation index): cheap; only the page becomes JSON.
    let all: Vec<(&Evaluated, usize)> = shown
        .iter()
        .filter(|e| e.meta.kind == ReportKind::Lab)
        .flat_map(|e| e.observations.iter().map(move |i| (e, *i)))
        .collect();
    let page = Page::of(&q);
    let slice = &all[page.range(all.len())];
    let mut reports: Vec<&Evaluated> = slice.iter().map(|(e, _)| *e).collect();
    reports.dedup_by_key(|e| e.meta.hash);
    audited(&st, &asked, "Observation", &reports, all.len()).await?;
    let entries = slice
        .iter()
        .filter_map(|(e, i)| observation(&st, e, *i))
        .collect();
    Ok(bundle(entries, all.len(), &page, &uri))
}

/// `GET /fhir/ImagingStudy?patient=&date=`: imaging reports (none until the imaging path
/// exists; the Bundle is then empty but valid).
pub async fn imaging_studies(
    State(st): State<ApiState>,
    Authed(who): Authed,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(mut q): Query<FhirQuery>,
) -> Result<Response, Problem> {
    q.category = Some("RAD".into());
    let (asked, shown) = search(&st, who, &headers, &q).await?;
    let page = Page::of(&q);
    let slice: Vec<&Evaluated> = shown[page.range(shown.len())].iter().collect();
    audited(&st, &asked, "ImagingStudy", &slice, shown.len()).await?;
    let entries = slice
        .iter()
        .map(|e| {
            json!({
                "resourceType": "ImagingStudy",
                "id": fhir_id(&e.meta.hash),
                "status": if e.report.status == ReportStatus::Cancelled { "cancelled" } else { "available" },
                "subject": subject(e),
                "extension": [verdict_ext(&e.verdict, &e.item_key)],
            })
        })
        .collect();
    Ok(bundle(entries, shown.len(), &page, &uri))
}
