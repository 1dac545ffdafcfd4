//! The imaging body of a report: one DICOM study as it stands after the instances received so
//! far (study-level attributes, series with instance counts, SR findings/impression).

use serde::{Deserialize, Serialize};

/// One study (检查) as huren knows it. A new version of the study report is made whenever a
/// received instance changes this body (a new instance, a replaced instance, an SR).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagingBody {
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Patient ID (0010,0020) as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    /// Issuer of Patient ID (0010,0021).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id_issuer: Option<String>,
    /// Patient's Name (0010,0010), decoded with the Specific Character Set (`^` kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_name: Option<String>,
    /// Patient's Sex (0010,0040): M, F or O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_sex: Option<String>,
    /// Patient's Birth Date (0010,0030) as `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_birth_date: Option<String>,
    /// Accession Number (0008,0050).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_number: Option<String>,
    /// Study ID (0020,0010).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_id: Option<String>,
    /// Study Date (0008,0020) as `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_date: Option<String>,
    /// Study Time (0008,0030) as `HH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_time: Option<String>,
    /// Study Description (0008,1030).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Modalities of the study's series, sorted, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modalities: Vec<String>,
    /// Body parts examined (0018,0015) of the series, sorted, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_parts: Vec<String>,
    /// Referring Physician's Name (0008,0090).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referring_physician: Option<String>,
    /// Institution Name (0008,0080) as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_name: Option<String>,
    /// Number of series.
    pub series_count: u32,
    /// Number of distinct SOP instances.
    pub instance_count: u32,
    /// The series, ordered by series number then UID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<ImagingSeries>,
    /// SOP Instance UIDs received again with different bytes (kept as new versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced_instances: Vec<String>,
    /// The radiologist's report when it came as a DICOM SR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sr: Option<SrReport>,
    /// The report signed by a reader at a diagnosis centre (huren's reading centre).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<ImagingReading>,
}

/// An imaging report written and signed in huren's reading centre (issue 17).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagingReading {
    /// Findings (检查所见): the reader's free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<String>,
    /// Impression (诊断意见): the reader's structured statements, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impression: Vec<String>,
    /// The signing reader (principal id).
    pub reader: String,
    /// The diagnosis centre.
    pub centre: String,
    /// The reading task.
    pub task: String,
    /// When it was signed, RFC 3339 with offset.
    pub signed_at: String,
    /// Why this version amends the task's earlier signed version (an amendment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amendment_reason: Option<String>,
}

/// One series of a study.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagingSeries {
    /// Series Instance UID (0020,000E).
    pub uid: String,
    /// Series Number (0020,0011).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    /// Modality (0008,0060).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    /// Series Description (0008,103E).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Body Part Examined (0018,0015).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_part: Option<String>,
    /// Distinct SOP instances received in this series.
    pub instance_count: u32,
}

/// The text of a structured report (Basic Text / Enhanced / Comprehensive SR).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrReport {
    /// SOP Instance UID of the SR document.
    pub sop_instance_uid: String,
    /// Document title (the root container's concept name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Findings: every content item outside an impression/conclusion section, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<String>,
    /// Impression / conclusion sections, one item per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impression: Option<String>,
    /// Completion Flag (0040,A491): `COMPLETE` or `PARTIAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_flag: Option<String>,
    /// Verification Flag (0040,A493): `VERIFIED` or `UNVERIFIED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_flag: Option<String>,
    /// Verifying observer's name when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_observer: Option<String>,
    /// Content date/time of the SR, RFC 3339 when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_time: Option<String>,
}

impl SrReport {
    /// Complete and verified: the report is final.
    pub fn is_final(&self) -> bool {
        self.completion_flag.as_deref() == Some("COMPLETE")
            && self.verification_flag.as_deref() == Some("VERIFIED")
    }
}

/// What the index keeps about one received SOP instance: its own keys and the study- and
/// series-level attributes C-FIND and QIDO-RS match on, so queries never open a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Transfer syntax the bytes are stored in (as received, never transcoded).
    pub transfer_syntax: String,
    /// Hash of the stored Part 10 bytes.
    pub original: crate::ContentHash,
    /// Hash of the data set bytes alone (after the file meta group): equal data sets are
    /// duplicates whatever meta group or path they came with.
    pub dataset_hash: crate::ContentHash,
    /// Size of the stored bytes.
    pub size: u64,
    /// Institution code the instance was attributed to.
    pub institution: String,
    /// Modality (0008,0060).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    /// Series Number (0020,0011).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_number: Option<i64>,
    /// Instance Number (0020,0013).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_number: Option<i64>,
    /// Series Description (0008,103E).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_description: Option<String>,
    /// Body Part Examined (0018,0015).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_part: Option<String>,
    /// Patient ID (0010,0020) as sent (empty when absent).
    #[serde(default)]
    pub patient_id: String,
    /// Issuer of Patient ID (0010,0021).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id_issuer: Option<String>,
    /// Patient's Name (0010,0010), decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_name: Option<String>,
    /// Patient's Sex (0010,0040).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_sex: Option<String>,
    /// Patient's Birth Date (0010,0030) as DICOM DA (`YYYYMMDD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_birth_date: Option<String>,
    /// Accession Number (0008,0050).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_number: Option<String>,
    /// Study ID (0020,0010).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_id: Option<String>,
    /// Study Date (0008,0020) as DICOM DA (`YYYYMMDD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_date: Option<String>,
    /// Study Time (0008,0030) as DICOM TM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_time: Option<String>,
    /// Study Description (0008,1030).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_description: Option<String>,
    /// Referring Physician's Name (0008,0090).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referring_physician: Option<String>,
    /// Rows (0028,0010) of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u32>,
    /// Columns (0028,0011) of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<u32>,
    /// Number of Frames (0028,0008).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
}
