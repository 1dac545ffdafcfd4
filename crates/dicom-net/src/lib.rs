//! huren's DICOM network side: the DIMSE SCP (`scp`: C-ECHO, C-STORE, C-FIND on dicom-ul
//! with its command codec) and DICOMweb over HTTP (`web`: QIDO-RS, previews and `/rendered`;
//! `dicomweb`: STOW-RS, WADO-RS retrieval, metadata, bulk data and frames). Stores through
//! `huren-ingest`; every read of patient data goes through `huren-gate`. `receive`: data sets
//! being received, in memory within a shared budget or spooled to the store.

pub mod dicomweb;
pub mod receive;
pub mod scp;
pub mod web;

pub use web::routes;
