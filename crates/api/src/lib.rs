//! huren's HTTP API (axum on hyper): prior results with verdicts, the pre-order check,
//! decisions, statistics, the privacy officer's audit view, consents, reports and originals
//! by hash, ECG upload and SVG, FHIR R4 views and HTTPS with client certificates. Every
//! patient-data handler reads through `huren-gate`; this crate holds no store.

pub mod alerts;
pub mod answers;
pub mod api;
pub mod auth;
pub mod cases;
pub mod centre;
pub mod fhir;
pub mod fhir_task;
pub mod http;
pub mod https;
pub mod identity;
pub mod outbox;
pub mod worklist;

pub use api::{ApiState, Authed};
pub use huren_gate as gate;
pub use huren_gate::Problem;
