//! Cross-crate scenarios, driving the real `huren` binary on real temp stores and real
//! loopback sockets.

mod support;

mod abuse;
mod adt;
mod alerts;
mod attack;
mod budgets;
mod cda;
mod cluster;
mod crash;
mod dicom;
mod dicom_crash;
mod dicom_find;
mod dicom_tls;
mod dicom_web;
mod ecg;
mod fhir;
mod files;
mod gate;
mod https;
mod identity;
mod matrix;
mod mllp;
mod ops;
mod outbox;
mod reading_web;
mod recognition;
mod referrals;
mod regional;
mod rules;
mod secrets;
mod tls;
mod web;
mod webhooks;
mod worklist;
