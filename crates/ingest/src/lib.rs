//! huren's write side: configuration (`huren.toml`), the ingest pipeline shared by every
//! inbound path (bytes → adapter → report model → group commit → acknowledgement) for HL7 v2,
//! DICOM and ECG, and the listeners that only ingest: MLLP (plain or TLS) and ECG drop
//! folders. It writes the store and never reads patient data for anyone: reads go through
//! `huren-gate`.

pub mod adt;
pub mod alerts;
pub mod cases;
pub mod config;
pub mod dicom;
pub mod ecg;
pub mod mllp;
pub mod outbox;
pub mod pipeline;
pub mod reading;
pub mod regional;
pub mod tls;
pub mod webhook;

pub use config::Config;
pub use pipeline::{Gateway, Hl7Outcome};
