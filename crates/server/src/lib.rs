//! huren's network side: configuration, the ingest pipeline, the MLLP listener (plain or
//! TLS) and the HTTP API. Only this crate knows about sockets, HTTP and TLS.

pub mod answers;
pub mod api;
pub mod auth;
pub mod config;
pub mod dicom;
pub mod ecg;
pub mod fhir;
pub mod gate;
pub mod http;
pub mod https;
pub mod mllp;
pub mod pipeline;
pub mod tls;
pub mod web;

pub use config::Config;
pub use pipeline::{Gateway, Hl7Outcome};
