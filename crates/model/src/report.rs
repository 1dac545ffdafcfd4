use serde::{Deserialize, Serialize};

use crate::{ContentHash, PatientRef};

/// What kind of result a report carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// Laboratory (检验).
    Lab,
    /// Imaging (检查: CT, MR, DR, US…).
    Imaging,
    /// Electrocardiogram (心电).
    Ecg,
}

impl ReportKind {
    /// Lower-case name as used in URLs and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReportKind::Lab => "lab",
            ReportKind::Imaging => "imaging",
            ReportKind::Ecg => "ecg",
        }
    }
}

/// Result status of a report (HL7 OBR-25 / OBX-11 and their equivalents).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    /// Not yet final (HL7 P, I, R, S).
    Preliminary,
    /// Final (HL7 F).
    Final,
    /// A correction of an earlier final report (HL7 C, also A amended).
    Corrected,
    /// Withdrawn (HL7 X, D).
    Cancelled,
}

/// The kind of system that sent a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// Laboratory information system.
    Lis,
    /// Picture archiving system / modality.
    Pacs,
    /// ECG cart or ECG management system.
    Ecg,
}

/// Where a report came from and the key that identifies the same logical report when it is
/// sent again or corrected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Configured institution code.
    pub institution: String,
    /// Sending system kind.
    pub system: SystemKind,
    /// Sending application as identified by the protocol (HL7 MSH-3, DICOM calling AE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Logical report key within the institution (HL7: filler order number OBR-3).
    pub source_key: String,
}

impl Source {
    /// Index key of the version chain: `kind|institution|source_key`.
    pub fn chain_key(&self, kind: ReportKind) -> String {
        format!("{}|{}|{}", kind.as_str(), self.institution, self.source_key)
    }
}

/// Placer / filler order identifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderIds {
    /// Placer order number (OBR-2 / ORC-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placer: Option<String>,
    /// Filler order number (OBR-3 / ORC-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filler: Option<String>,
}

/// Abnormal flag of an observation (HL7 table 0078, simplified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbnormalFlag {
    /// N.
    Normal,
    /// L.
    Low,
    /// H.
    High,
    /// LL (critical low).
    CriticalLow,
    /// HH (critical high).
    CriticalHigh,
    /// A / AA and anything else abnormal.
    Abnormal,
}

impl AbnormalFlag {
    /// Whether this flag marks a critical value (危急值).
    pub fn is_critical(&self) -> bool {
        matches!(self, AbnormalFlag::CriticalLow | AbnormalFlag::CriticalHigh)
    }
}

/// One laboratory observation (HL7 OBX).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabObservation {
    /// Observation code as sent (OBX-3.1).
    pub code: String,
    /// Code system as sent (OBX-3.3), e.g. `L` for local or `LN` for LOINC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_system: Option<String>,
    /// Display name exactly as sent (OBX-3.2), Chinese kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HL7 value type (OBX-2: NM, ST, CE, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// The value as the original string (so `5.60` stays `5.60`); repetitions joined by `~`.
    pub value: String,
    /// Unit as sent (OBX-6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Reference range as sent (OBX-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<String>,
    /// Abnormal flags, normalised (OBX-8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abnormal_flags: Vec<AbnormalFlag>,
    /// Abnormal flags exactly as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abnormal_flags_raw: Option<String>,
    /// Observation result status (OBX-11) as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_status: Option<String>,
    /// Observation time (OBX-14), RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
}

/// The lab part of a report: one order (OBR) and its observations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabBody {
    /// Universal service identifier code (OBR-4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_code: Option<String>,
    /// Universal service name as sent (OBR-4.2), e.g. 血常规.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Specimen source / type when sent (OBR-15 or SPM-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specimen: Option<String>,
    /// Observations in message order.
    pub observations: Vec<LabObservation>,
}

/// One normalised report. Its canonical JSON is content-addressed by the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Lab, imaging or ECG.
    pub kind: ReportKind,
    /// Sender and logical report key.
    pub source: Source,
    /// The patient as the sender identifies them.
    pub patient: PatientRef,
    /// Report status.
    pub status: ReportStatus,
    /// Order identifiers.
    #[serde(default)]
    pub order: OrderIds,
    /// Specimen collection time (lab; OBR-7), RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specimen_collected_at: Option<String>,
    /// When the examination was performed (imaging/ECG), RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performed_at: Option<String>,
    /// When the report was issued (OBR-22, else MSH-7), RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<String>,
    /// Lab body, for `kind = lab`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabBody>,
    /// ECG body, for `kind = ecg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecg: Option<Box<crate::EcgBody>>,
    /// Imaging body (one study), for `kind = imaging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imaging: Option<Box<crate::ImagingBody>>,
    /// Free-text conclusion or comments (NTE), kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// Hash of the original message bytes this report was made from.
    pub original: ContentHash,
    /// Further blobs belonging to the report (waveforms, previews).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ContentHash>,
}

impl Report {
    /// The time used to order a patient's reports: collection, else performed, else reported.
    pub fn clinical_time(&self) -> Option<&str> {
        self.specimen_collected_at
            .as_deref()
            .or(self.performed_at.as_deref())
            .or(self.reported_at.as_deref())
    }

    /// Canonical JSON bytes of this report.
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, crate::CanonicalError> {
        crate::canonical_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            kind: ReportKind::Lab,
            source: Source {
                institution: "FX01".into(),
                system: SystemKind::Lis,
                application: Some("LIS".into()),
                source_key: "LAB1".into(),
            },
            patient: PatientRef {
                institution: "FX01".into(),
                local_id: "P1".into(),
                name: Some("张三".into()),
                ..Default::default()
            },
            status: ReportStatus::Final,
            order: OrderIds::default(),
            specimen_collected_at: Some("2025-06-24T10:00:00+08:00".into()),
            performed_at: None,
            reported_at: None,
            lab: Some(LabBody {
                observations: vec![LabObservation {
                    code: "K".into(),
                    code_system: None,
                    name: Some("钾".into()),
                    value_type: Some("NM".into()),
                    value: "5.60".into(),
                    unit: Some("mmol/L".into()),
                    reference_range: None,
                    abnormal_flags: vec![AbnormalFlag::High],
                    abnormal_flags_raw: Some("H".into()),
                    result_status: Some("F".into()),
                    observed_at: None,
                }],
                ..Default::default()
            }),
            ecg: None,
            imaging: None,
            conclusion: None,
            original: crate::ContentHash::of(b"x"),
            attachments: vec![],
        }
    }

    #[test]
    fn canonical_json_is_stable_and_round_trips() {
        let r = sample();
        let a = r.to_canonical_json().unwrap();
        let back: Report = serde_json::from_slice(&a).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_canonical_json().unwrap(), a);
        let s = String::from_utf8(a).unwrap();
        assert!(s.contains(r#""value":"5.60""#));
        assert!(s.starts_with(r#"{"kind":"lab","lab":"#), "{s}");
    }
}
