//! huren's assembly: the one HTTP router (the API, the web page and DICOMweb, with a problem
//! answer for any other path) and the network crates under the names the binary uses.
//!
//! The crates, each with one job: `huren-ingest` (configuration, the ingest pipeline, MLLP,
//! drop folders; writes the store), `huren-gate` (the only read path to patient data:
//! authorisation, audit, searches, previews), `huren-api` (the JSON API, FHIR, HTTPS),
//! `huren-web` (the clinicians' page), `huren-dicom-net` (DIMSE SCP and DICOMweb).

pub use huren_api::{answers, api, auth, fhir, https};
pub use huren_gate as gate;
pub use huren_ingest::{
    alerts, config, ecg, mllp, outbox, pipeline, regional, tls, webhook, Config, Gateway,
    Hl7Outcome,
};
pub use huren_web as web;

/// DICOM: ingest (`huren-ingest`), the network side (`huren-dicom-net`), index matching
/// (`huren-gate`).
pub mod dicom {
    pub use huren_dicom_net::{dicomweb, scp, web};
    pub use huren_gate::query;
    pub use huren_ingest::dicom::*;
}

/// The HTTP router.
pub mod http {
    use axum::http::StatusCode;
    pub use huren_api::http::*;
    use huren_api::ApiState;

    /// The one router: the API, the web page (with its sessions) and DICOMweb, and a
    /// problem answer (404) for any other path.
    pub fn router(state: ApiState) -> axum::Router {
        let web = huren_web::WebState::new(state.clone());
        huren_api::http::router(state.clone())
            .merge(huren_web::routes().with_state(web))
            .merge(huren_dicom_net::routes().with_state(state))
            .fallback(|| async {
                Problem::new(StatusCode::NOT_FOUND, "not found", "no such route")
            })
    }
}

/// The gate's settings from the `[access]` configuration.
pub fn gate_options(a: &huren_ingest::config::AccessConfig) -> huren_gate::GateOptions {
    huren_gate::GateOptions {
        search_cap: a.search_cap.max(1),
        consent_ttl: chrono::Duration::hours(i64::from(a.consent_ttl_hours.max(1))),
        consent_max_ttl: chrono::Duration::hours(i64::from(
            a.consent_max_ttl_hours.max(a.consent_ttl_hours).max(1),
        )),
        lockout_failures: a.lockout_failures.max(1),
        lockout_window: chrono::Duration::minutes(i64::from(a.lockout_minutes.max(1))),
        auth_failure_limit: a.auth_failure_limit.max(1),
        auth_failure_window: chrono::Duration::seconds(i64::from(
            a.auth_failure_window_seconds.max(1),
        )),
    }
}
