//! The export for the China Chest Pain Center data platform (中国胸痛中心认证云平台 /
//! 数据填报平台): one row per case, one column per milestone, headed by the platform's
//! Chinese field names.
//!
//! The platform's field names could not be checked against an official specification; they
//! are the terms its quality indicators and third-party integrations use (see
//! `docs/chest-pain.md` for where each was found). Columns that are huren's own (the alert
//! milestones, the responder) say so in their note.
//!
//! The export is de-identified: no patient name, identifier or person key. The case id links
//! a row back to the patient inside huren only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::case::{Case, Milestone};

/// One export column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// English key (the JSON key of [`export_rows`]).
    pub key: &'static str,
    /// The platform's Chinese field name (the CSV header).
    pub ccpc: &'static str,
    /// The milestone whose time fills it; `None` for the identity columns.
    pub milestone: Option<Milestone>,
    /// What it holds and how sure the name is.
    pub note: &'static str,
}

const fn id(key: &'static str, ccpc: &'static str, note: &'static str) -> Column {
    Column {
        key,
        ccpc,
        milestone: None,
        note,
    }
}

const fn time(m: Milestone, key: &'static str, ccpc: &'static str, note: &'static str) -> Column {
    Column {
        key,
        ccpc,
        milestone: Some(m),
        note,
    }
}

const COLUMNS: [Column; 18] = [
    id(
        "case_id",
        "病例编号",
        "huren's case id; links back to the patient inside huren only (the platform assigns \
         its own registration number). Header not confirmed.",
    ),
    id(
        "sending_institution",
        "转出医院",
        "huren institution code of the sending (network) hospital; the platform records the \
         transferring hospital's name (医院名称).",
    ),
    id(
        "pci_institution",
        "PCI医院",
        "huren institution code of the PCI hospital. Header not confirmed.",
    ),
    id(
        "responder",
        "确认医师",
        "huren only: principal id of the cardiologist who acknowledged the alert.",
    ),
    time(
        Milestone::SymptomOnset,
        "symptom_onset",
        "发病时间",
        "Entered. Upload key seen: ATTACK_TIME.",
    ),
    time(
        Milestone::FirstMedicalContact,
        "first_medical_contact",
        "首次医疗接触时间",
        "Entered. Upload key seen: FIRST_MC_TIME.",
    ),
    time(
        Milestone::EcgAcquired,
        "ecg_acquired",
        "首份心电图时间",
        "The cart's acquisition time (device clock). The platform splits it into \
         院前首份心电图时间 / 院内首份心电图时间 (PHEP_ECG_TIME / INHOSPITAL_ECG_TIME).",
    ),
    time(
        Milestone::EcgReceived,
        "ecg_received",
        "远程心电传输时间",
        "huren's receipt of the transmitted ECG (system clock). Header seen in third-party \
         systems; the platform field not confirmed.",
    ),
    time(
        Milestone::AlertRaised,
        "alert_raised",
        "预警发出时间",
        "huren only: STEMI alert raised.",
    ),
    time(
        Milestone::AlertDelivered,
        "alert_delivered",
        "预警送达时间",
        "huren only: first delivery to a responder's screen.",
    ),
    time(
        Milestone::AlertEscalated,
        "alert_escalated",
        "预警升级时间",
        "huren only: first escalation step.",
    ),
    time(
        Milestone::AlertAcknowledged,
        "alert_acknowledged",
        "预警确认时间",
        "huren only: the alert acknowledged.",
    ),
    time(
        Milestone::Diagnosis,
        "diagnosis",
        "心电图诊断时间",
        "First of a reader's signature and a cardiologist's STEMI decision. Upload key seen: \
         ECG_DIAGNOSE_TIME.",
    ),
    time(
        Milestone::CathlabActivation,
        "cathlab_activation",
        "激活导管室时间",
        "Entered. Upload key seen: ACTIVATE_CONDUIT_TIME.",
    ),
    time(
        Milestone::DoorIn,
        "door_in",
        "转出医院入门时间",
        "Entered or ADT A01 at the sending hospital (its own form: 到达本院大门时间). \
         Upload key seen: OUTHOSPITAL_VISIT_TIME.",
    ),
    time(
        Milestone::TransferDecision,
        "transfer_decision",
        "决定转院时间",
        "Entered. Upload key seen: TRANSFER_TIME.",
    ),
    time(
        Milestone::DoorOut,
        "door_out",
        "转出医院出门时间",
        "Entered or ADT A03 at the sending hospital (its own form: 离开本院大门时间). \
         Upload key seen: LEAVE_OUTHOSPITAL_TIME.",
    ),
    time(
        Milestone::Arrival,
        "arrival",
        "到达本院大门时间",
        "Entered or ADT A01 at the PCI hospital (本院 = the PCI hospital, whose record this \
         is). Upload key seen: ARRIVED_HOSPITAL_TIME.",
    ),
];

/// The export's columns, identity first, then one per milestone in pathway order.
pub fn export_columns() -> &'static [Column] {
    &COLUMNS
}

/// Why the CSV could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The CSV writer failed.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// Flushing the writer failed.
    #[error("csv flush: {0}")]
    Flush(String),
    /// The output is not UTF-8 (cannot happen with UTF-8 input).
    #[error("csv output is not UTF-8")]
    Utf8,
}

/// A time as the platform writes it: `YYYY-MM-DD HH:MM:SS` in `tz`.
fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn cell(c: &Case, col: &Column, tz: Tz) -> String {
    match col.milestone {
        Some(m) => c.at(m).map(|at| local(at, tz)).unwrap_or_default(),
        None => match col.key {
            "case_id" => c.id.clone(),
            "sending_institution" => c.institution.clone(),
            "pci_institution" => c.pci_institution.clone(),
            "responder" => c.responder().unwrap_or_default().to_string(),
            _ => String::new(),
        },
    }
}

/// One map per case, keyed by [`Column::key`]; an empty string for a missing stamp.
pub fn export_rows(cases: &[Case], tz: Tz) -> Vec<BTreeMap<&'static str, String>> {
    cases
        .iter()
        .map(|c| {
            COLUMNS
                .iter()
                .map(|col| (col.key, cell(c, col, tz)))
                .collect()
        })
        .collect()
}

/// The CSV (UTF-8, no BOM): the header row of [`Column::ccpc`] names, then one row per
/// case, times as `YYYY-MM-DD HH:MM:SS` in `tz`, an empty cell for a missing stamp.
pub fn export_csv(cases: &[Case], tz: Tz) -> Result<String, ExportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS.iter().map(|c| c.ccpc))?;
    for c in cases {
        w.write_record(COLUMNS.iter().map(|col| cell(c, col, tz)))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ExportError::Flush(e.error().to_string()))?;
    String::from_utf8(bytes).map_err(|_| ExportError::Utf8)
}
