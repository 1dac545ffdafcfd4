//! FHIR R4 (4.0.1) `Task`: the reading centre's tasks (issue 17) as FHIR, read-only —
//! `GET /fhir/Task/{id}` and `GET /fhir/Task?owner=&status=&_count=&_offset=` (a paged `searchset` Bundle). The same
//! gate authorisation as the worklist (a reader on duty at the task's centre), one audit record
//! per request ([`huren_gate::Gate::fhir_tasks`]).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use huren_gate::worklist::TaskRead;
use huren_gate::Problem;
use huren_workflow::{Kind, Priority, State as TaskState};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{institution_name, ApiState, Authed};
use crate::fhir::BASE;

/// Search parameters of `GET /fhir/Task`.
#[derive(Deserialize)]
pub struct TaskQuery {
    /// The reader the task is with: `Practitioner/<id>` or `<id>`.
    owner: Option<String>,
    /// `requested`, `in-progress`, `completed` or `cancelled`.
    status: Option<String>,
    /// One task by id.
    #[serde(rename = "_id")]
    id: Option<String>,
    /// Page size (default 100, at most 1,000).
    #[serde(rename = "_count")]
    count: Option<usize>,
    /// Matches to skip (the `next` link carries it).
    #[serde(rename = "_offset")]
    offset: Option<usize>,
}

const STATUSES: [&str; 4] = ["requested", "in-progress", "completed", "cancelled"];

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `DiagnosticReport/<hex>` of a `blake3:<hex>` report version (the DiagnosticReport view's id).
fn report_ref(report: &str) -> Value {
    let hex = report.strip_prefix("blake3:").unwrap_or(report);
    json!({ "reference": format!("DiagnosticReport/{hex}"), "type": "DiagnosticReport" })
}

fn practitioner(id: &str) -> Value {
    json!({
        "type": "Practitioner",
        "identifier": { "system": format!("{BASE}/principal"), "value": id },
        "display": id,
    })
}

/// The FHIR `Task` of a reading task.
pub fn task_resource(st: &ApiState, r: &TaskRead) -> Value {
    let t = &r.task;
    let (code_text, what) = match t.kind {
        Kind::Ecg => ("ECG reading", "心电诊断"),
        Kind::Imaging => ("Imaging reading", "影像诊断"),
    };
    let mut v = json!({
        "resourceType": "Task",
        "id": t.id.0,
        "identifier": [{ "system": format!("{BASE}/reading-task"), "value": t.id.0 }],
        "status": t.state.fhir_status(),
        "intent": "order",
        "priority": match t.priority {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Critical => "stat",
        },
        "code": {
            "coding": [{
                "system": "http://hl7.org/fhir/CodeSystem/task-code",
                "code": "fulfill",
                "display": "Fulfill the focal request",
            }],
            "text": code_text,
        },
        "description": format!("{what} · {}", t.centre.0),
        "focus": report_ref(&t.report),
        "authoredOn": time(t.created_at),
        "restriction": { "period": { "end": time(t.due_at) } },
    });
    let mut requester = json!({
        "type": "Organization",
        "identifier": { "system": "urn:huren:institution", "value": t.institution },
    });
    if let Some(n) = institution_name(st, &t.institution) {
        requester["display"] = json!(n);
    }
    v["requester"] = requester;
    if let Some((inst, local)) = r.patient.as_deref().and_then(|p| p.split_once(':')) {
        let mut s = json!({
            "type": "Patient",
            "identifier": { "system": format!("urn:huren:patient:{inst}"), "value": local },
        });
        if let Some(n) = &r.patient_name {
            s["display"] = json!(n);
        }
        v["for"] = s;
    }
    if let Some(o) = t.owner() {
        v["owner"] = practitioner(o);
    }
    let (start, end) = t.execution_period();
    if start.is_some() || end.is_some() {
        let mut p = json!({});
        if let Some(s) = start {
            p["start"] = json!(time(s));
        }
        if let Some(e) = end {
            p["end"] = json!(time(e));
        }
        v["executionPeriod"] = p;
    }
    let mut last = t.created_at;
    match &t.state {
        TaskState::InProgress { last_touch, .. } => last = last.max(*last_touch),
        TaskState::Completed { at, report, .. } => {
            last = last.max(*at);
            let mut output = vec![json!({
                "type": { "text": "signed report" },
                "valueReference": report_ref(report),
            })];
            let mut notes = Vec::new();
            for a in &t.amendments {
                last = last.max(a.at);
                output.push(json!({
                    "type": { "text": "amended report" },
                    "valueReference": report_ref(&a.report),
                }));
                notes.push(json!({
                    "authorReference": practitioner(&a.by),
                    "time": time(a.at),
                    "text": format!("amended: {}", a.reason),
                }));
            }
            v["output"] = json!(output);
            if !notes.is_empty() {
                v["note"] = json!(notes);
            }
        }
        TaskState::Cancelled { at, reason, .. } => {
            last = last.max(*at);
            v["statusReason"] = json!({ "text": reason });
        }
        TaskState::Scheduled => {}
    }
    v["lastModified"] = json!(time(last));
    v
}

fn fhir_json(body: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /fhir/Task/{id}`.
pub async fn read(
    State(st): State<ApiState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let tasks = st.gate.fhir_tasks(&p, Some(&id), None, None).await?;
    match tasks.first() {
        Some(t) => Ok(fhir_json(task_resource(&st, t))),
        None => Err(Problem::new(StatusCode::NOT_FOUND, "no such task", id)),
    }
}

/// `GET /fhir/Task?owner=&status=&_id=`: a `searchset` Bundle of the caller's centres' tasks.
pub async fn search(
    State(st): State<ApiState>,
    Authed(p): Authed,
    uri: axum::http::Uri,
    Query(q): Query<TaskQuery>,
) -> Result<Response, Problem> {
    if let Some(s) = q.status.as_deref() {
        if !STATUSES.contains(&s) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad search",
                format!("status must be one of {}", STATUSES.join(", ")),
            ));
        }
    }
    let owner = q
        .owner
        .as_deref()
        .map(|o| o.strip_prefix("Practitioner/").unwrap_or(o));
    let tasks = match q.id.as_deref() {
        // One task: the same answer as a read, as a Bundle (none when it is not the caller's).
        Some(id) => match st.gate.fhir_tasks(&p, Some(id), None, None).await {
            Ok(v) => v
                .into_iter()
                .filter(|r| {
                    owner.is_none_or(|o| r.task.owner() == Some(o))
                        && q.status
                            .as_deref()
                            .is_none_or(|s| r.task.state.fhir_status() == s)
                })
                .collect(),
            Err(e) if e.status() == StatusCode::NOT_FOUND => vec![],
            Err(e) => return Err(e),
        },
        None => {
            st.gate
                .fhir_tasks(&p, None, owner, q.status.as_deref())
                .await?
        }
    };
    let page = crate::fhir::Page::new(q.offset, q.count);
    let total = tasks.len();
    let entries: Vec<Value> = tasks[page.range(total)]
        .iter()
        .map(|r| task_resource(&st, r))
        .collect();
    Ok(crate::fhir::bundle(entries, total, &page, &uri))
}
