//! The engine's inputs (RECOGNITION.md §2): who asks, for whom and why, and one candidate
//! result. Everything the engine needs is here; it reads no clock and no store.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// Result category of a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Laboratory (检验).
    Lab,
    /// Radiology: CT, MR, DR, mammography (放射).
    Radiology,
    /// Ultrasound (超声).
    Ultrasound,
    /// Nuclear medicine (核医学).
    NuclearMedicine,
    /// Electrophysiology: ECG (心电).
    Electrophysiology,
}

impl Category {
    /// Imaging categories (the tier rule and `requires_images` apply to them).
    pub fn is_imaging(self) -> bool {
        matches!(
            self,
            Category::Radiology | Category::Ultrasound | Category::NuclearMedicine
        )
    }
}

/// Kind of encounter the question is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncounterKind {
    /// 门诊.
    Outpatient,
    /// 急诊.
    Emergency,
    /// 住院.
    Inpatient,
    /// 体检.
    PhysicalExam,
}

/// How the patient authorised the look-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationKind {
    /// Scanned medical-insurance code (医保码).
    MedInsuranceCode,
    /// Health card (健康卡).
    HealthCard,
    /// ID card read (身份证).
    IdCard,
    /// Emergency access without the patient's authorisation (破窗).
    BreakGlass,
}

/// The patient's authorisation for this look-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientAuthorization {
    /// Kind of authorisation.
    pub kind: AuthorizationKind,
    /// Break-glass reason or token reference (never the raw token).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Hints from the clinician that usually justify repeating a test (they never block).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClinicalFlags {
    /// 病情变化 (E1).
    #[serde(default)]
    pub condition_changed: bool,
    /// 术前 / 输血前 (E3).
    #[serde(default)]
    pub pre_surgery: bool,
    /// 输血前 (E3).
    #[serde(default)]
    pub pre_transfusion: bool,
    /// 急诊急救 (E4).
    #[serde(default)]
    pub emergency: bool,
    /// 司法鉴定 / 伤残鉴定 (E5).
    #[serde(default)]
    pub appraisal: bool,
}

/// The test the clinician intends to order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntendedOrder {
    /// Regional item code.
    pub item_code: String,
    /// Body site (imaging).
    #[serde(default)]
    pub body_site: Option<String>,
    /// With contrast (imaging).
    #[serde(default)]
    pub contrast: Option<bool>,
    /// Modality (imaging).
    #[serde(default)]
    pub modality: Option<String>,
}

/// Administrative sex as compared for identity conflicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Male.
    Male,
    /// Female.
    Female,
    /// Other / unknown: never conflicts.
    Other,
}

/// Demographics to compare (any may be unknown; unknown never conflicts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demographics {
    /// Sex.
    #[serde(default)]
    pub sex: Option<Sex>,
    /// Birth date `YYYY-MM-DD`.
    #[serde(default)]
    pub birth_date: Option<String>,
}

/// Who asks, for whom, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryContext {
    /// The evaluation instant (injected; the engine reads no clock).
    pub now: DateTime<FixedOffset>,
    /// Institution code of the requester (must be configured in the rules).
    pub requester_org: String,
    /// Encounter kind.
    pub encounter: EncounterKind,
    /// The test about to be ordered, if any.
    #[serde(default)]
    pub intended_order: Option<IntendedOrder>,
    /// The patient's demographics as the requester knows them.
    #[serde(default)]
    pub patient: Demographics,
    /// The patient's authorisation, if given.
    #[serde(default)]
    pub patient_authorization: Option<PatientAuthorization>,
    /// Clinical hints.
    #[serde(default)]
    pub clinical_flags: ClinicalFlags,
}

/// Report status of a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateStatus {
    /// Final.
    Final,
    /// A correction of an earlier version (the candidate is the latest version).
    Amended,
    /// Not final yet.
    Preliminary,
    /// Withdrawn.
    Cancelled,
    /// Entered in error.
    EnteredInError,
}

/// How the candidate was linked to the patient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMethod {
    /// Same national ID (keyed hash).
    ExactNationalId,
    /// Master patient index: certain match.
    MpiMatch,
    /// The result carries exactly the identifier queried (same institution, same local ID):
    /// certain, but links nothing across institutions.
    ExactLocalId,
    /// Master patient index: possible match only.
    MpiPossibleMatch,
    /// Only an institution-local identifier.
    LocalOnly,
}

/// Critical-value state of a candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    /// The result carries a critical value (危急值).
    pub flagged: bool,
    /// Closure state of the critical value.
    pub closure: Closure,
}

/// Whether a critical value was acknowledged by the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closure {
    /// Acknowledged (closed loop).
    Acknowledged,
    /// Still open.
    Open,
    /// Not known.
    #[default]
    Unknown,
}

/// Image availability of an imaging candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    /// Images can be viewed (not only the conclusion).
    pub available: bool,
    /// Image quality flagged insufficient by the source or a reader.
    #[serde(default)]
    pub quality_insufficient: bool,
}

/// The times of a candidate, RFC 3339 with offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Times {
    /// Specimen collection (lab).
    #[serde(default)]
    pub specimen_collected_at: Option<DateTime<FixedOffset>>,
    /// Examination performed (imaging, ECG).
    #[serde(default)]
    pub performed_at: Option<DateTime<FixedOffset>>,
    /// Report issued.
    #[serde(default)]
    pub reported_at: Option<DateTime<FixedOffset>>,
}

/// One prior result to evaluate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Institution that produced the result.
    pub source_org: String,
    /// Report identifier (e.g. the content hash of the report version).
    pub report_id: String,
    /// Report status (of the latest version).
    pub status: CandidateStatus,
    /// Category.
    pub category: Category,
    /// The institution's own item code (resolved through the catalogue's equivalences).
    #[serde(default)]
    pub local_code: Option<String>,
    /// Regional code if the source sent one.
    #[serde(default)]
    pub regional_code: Option<String>,
    /// Body site (imaging).
    #[serde(default)]
    pub body_site: Option<String>,
    /// Contrast (imaging).
    #[serde(default)]
    pub contrast: Option<bool>,
    /// Times.
    pub times: Times,
    /// Identity link.
    pub identity: IdentityMethod,
    /// Demographics on the source report.
    #[serde(default)]
    pub patient: Demographics,
    /// Critical-value state.
    #[serde(default)]
    pub critical: Critical,
    /// Image availability (imaging).
    #[serde(default)]
    pub images: Images,
    /// Content hash of the report (duplicate detection across channels).
    pub content_hash: String,
}
