//! The normalised report model shared by every huren crate.
//!
//! A [`Report`] is what an adapter (HL7, DICOM, ECG) makes of one message; it keeps the
//! hash of the original bytes so nothing is lost in normalisation. Reports are stored as
//! canonical JSON ([`canonical_json`]) and addressed by the [`ContentHash`] of that JSON.
//! This crate does no I/O.

mod canonical;
pub mod ecg;
mod hash;
pub mod imaging;
mod patient;
mod report;

pub use canonical::{canonical_json, CanonicalError};
pub use ecg::EcgBody;
pub use hash::{ContentHash, ContentHasher, HashParseError, Hashed};
pub use imaging::{ImagingBody, ImagingReading, ImagingSeries, InstanceRecord, SrReport};
pub use patient::{national_id_key, PatientId, PatientIdError, PatientRef};
pub use report::{
    AbnormalFlag, LabBody, LabObservation, OrderIds, Report, ReportKind, ReportStatus, Source,
    SystemKind,
};
