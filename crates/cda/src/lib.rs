//! WS/T 500 电子病历共享文档 (CDA R2 with the Chinese templates) from huren reports: lab
//! reports as 检验报告 (WS/T 500.7, C0007), imaging and ECG reports as 检查报告 (WS/T 500.6,
//! C0006), and [`rules::check`], the template rules the CDA schema cannot see.
//!
//! Pure: no I/O, no clock. The document's time, its version and the report it replaces come in
//! a [`CdaContext`]; the same report and context give the same bytes. See `docs/cda.md` for
//! the mapping and its sources.

mod body;
mod header;
pub mod rules;
mod xml;

use huren_model::{ContentHash, Report, ReportKind};

/// OIDs and codes of the WS/T 500 templates (see `docs/cda.md` for where each was read).
pub mod oid {
    /// Document IDs (文档流水号).
    pub const DOCUMENT_ID: &str = "2.16.156.10011.1.1";
    /// Resident ID card number (身份证件号码).
    pub const NATIONAL_ID: &str = "2.16.156.10011.1.3";
    /// Organisation code of a medical institution (医疗机构组织机构代码).
    pub const ORGANISATION: &str = "2.16.156.10011.1.5";
    /// Outpatient number (门(急)诊号), huren's default root of the local patient ID.
    pub const OUTPATIENT_NO: &str = "2.16.156.10011.1.11";
    /// Electronic order number (电子申请单编号).
    pub const ORDER_NO: &str = "2.16.156.10011.1.24";
    /// Exam report number (检查报告单号).
    pub const EXAM_REPORT_NO: &str = "2.16.156.10011.1.32";
    /// Lab report number (检验报告单号).
    pub const LAB_REPORT_NO: &str = "2.16.156.10011.1.33";
    /// The shared-document code system (卫生信息共享文档规范编码体系).
    pub const DOCUMENT_CODES: &str = "2.16.156.10011.2.4";
    /// The data-element catalogue (卫生信息数据元目录, WS 363).
    pub const DATA_ELEMENTS: &str = "2.16.156.10011.2.2.1";
    /// Sex (生理性别代码表, GB/T 2261.1).
    pub const SEX: &str = "2.16.156.10011.2.3.3.4";
    /// 检验报告 template.
    pub const LAB_TEMPLATE: &str = "2.16.156.10011.2.1.1.27";
    /// 检查报告 template.
    pub const EXAM_TEMPLATE: &str = "2.16.156.10011.2.1.1.26";
    /// LOINC.
    pub const LOINC: &str = "2.16.840.1.113883.6.1";
    /// HL7 ObservationInterpretation.
    pub const INTERPRETATION: &str = "2.16.840.1.113883.5.83";
    /// HL7 Confidentiality.
    pub const CONFIDENTIALITY: &str = "2.16.840.1.113883.5.25";
}

/// Which shared document a report becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentType {
    /// 检验报告, C0007.
    Lab,
    /// 检查报告, C0006.
    Exam,
}

impl DocumentType {
    /// The document code (C0007 / C0006).
    pub fn code(self) -> &'static str {
        match self {
            DocumentType::Lab => "C0007",
            DocumentType::Exam => "C0006",
        }
    }
    /// The template's root OID.
    pub fn template(self) -> &'static str {
        match self {
            DocumentType::Lab => oid::LAB_TEMPLATE,
            DocumentType::Exam => oid::EXAM_TEMPLATE,
        }
    }
    /// The document's title.
    pub fn title(self) -> &'static str {
        match self {
            DocumentType::Lab => "检验报告",
            DocumentType::Exam => "检查报告",
        }
    }
    /// The document a report of this kind becomes.
    pub fn of(kind: ReportKind) -> DocumentType {
        match kind {
            ReportKind::Lab => DocumentType::Lab,
            ReportKind::Imaging | ReportKind::Ecg => DocumentType::Exam,
        }
    }
}

/// The version a corrected report replaces (`relatedDocument typeCode="RPLC"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// The replaced report's hash (its document ID's extension).
    pub hash: ContentHash,
    /// Its version in the chain.
    pub version: u32,
}

/// The custodian: the institution that holds the report, with its organisation code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Custodian {
    /// Organisation code (统一社会信用代码 / 组织机构代码), or huren's institution code.
    pub code: String,
    /// Name, when known.
    pub name: Option<String>,
    /// huren's code of the same institution (the reports' `source.institution`): where a
    /// report's author organisation is this institution, it gets `code` and `name` too.
    pub institution: String,
}

/// What a document needs besides the report: everything that is not in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdaContext {
    /// The report's hash: the document ID's extension.
    pub hash: ContentHash,
    /// The report's 1-based version in its chain (`versionNumber`).
    pub version: u32,
    /// The version this one replaces, if any.
    pub replaces: Option<Replaced>,
    /// When the document is made (RFC 3339): `effectiveTime`.
    pub created_at: String,
    /// The custodian.
    pub custodian: Custodian,
    /// Root OID of the patient's local ID; [`oid::OUTPATIENT_NO`] when not configured.
    pub patient_id_root: String,
    /// Whether the caller may see the national ID.
    pub include_national_id: bool,
    /// The national ID in clear, taken from the original message by the caller (the report
    /// holds only a keyed hash of it). Written only with `include_national_id` and when the
    /// report carried one.
    pub national_id: Option<String>,
}

impl CdaContext {
    /// A context with the defaults: no replaced version, no national ID, the custodian
    /// named by the institution code.
    pub fn new(hash: ContentHash, version: u32, created_at: &str, institution: &str) -> Self {
        CdaContext {
            hash,
            version,
            replaces: None,
            created_at: created_at.to_string(),
            custodian: Custodian {
                code: institution.to_string(),
                name: None,
                institution: institution.to_string(),
            },
            patient_id_root: oid::OUTPATIENT_NO.to_string(),
            include_national_id: false,
            national_id: None,
        }
    }
}

/// Why no document was made.
#[derive(Debug, thiserror::Error)]
pub enum CdaError {
    /// The report is of another kind than the document asked for.
    #[error("a {got} report is not a {want} document")]
    WrongKind {
        /// The document asked for.
        want: &'static str,
        /// The report's kind.
        got: &'static str,
    },
    /// The report lacks the body its kind needs.
    #[error("the report has no {0} body")]
    NoBody(&'static str),
    /// A context value is unusable.
    #[error("bad context: {0}")]
    Context(String),
    /// The XML writer failed.
    #[error("XML writer: {0}")]
    Write(#[from] std::io::Error),
    /// A bug in this crate.
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl From<quick_xml::Error> for CdaError {
    fn from(e: quick_xml::Error) -> Self {
        CdaError::Write(std::io::Error::other(e.to_string()))
    }
}

/// The 检验报告 (WS/T 500.7, C0007) of a lab report.
pub fn lab_document(report: &Report, ctx: &CdaContext) -> Result<String, CdaError> {
    if report.kind != ReportKind::Lab {
        return Err(CdaError::WrongKind {
            want: "C0007",
            got: report.kind.as_str(),
        });
    }
    let lab = report.lab.as_ref().ok_or(CdaError::NoBody("lab"))?;
    let mut d = header::begin(report, ctx, DocumentType::Lab)?;
    body::lab(&mut d, report, lab, ctx)?;
    header::end(d)
}

/// The 检查报告 (WS/T 500.6, C0006) of an imaging or ECG report.
pub fn exam_document(report: &Report, ctx: &CdaContext) -> Result<String, CdaError> {
    match report.kind {
        ReportKind::Ecg => {
            let ecg = report.ecg.as_deref().ok_or(CdaError::NoBody("ECG"))?;
            let mut d = header::begin(report, ctx, DocumentType::Exam)?;
            body::ecg(&mut d, report, ecg, ctx)?;
            header::end(d)
        }
        ReportKind::Imaging => {
            let img = report
                .imaging
                .as_deref()
                .ok_or(CdaError::NoBody("imaging"))?;
            let mut d = header::begin(report, ctx, DocumentType::Exam)?;
            body::imaging(&mut d, report, img, ctx)?;
            header::end(d)
        }
        ReportKind::Lab => Err(CdaError::WrongKind {
            want: "C0006",
            got: "lab",
        }),
    }
}

/// Whether a document can be made of the report (the body its kind needs is there), without
/// making it: `Err` names what is missing.
pub fn documentable(report: &Report) -> Result<(), CdaError> {
    let present = match report.kind {
        ReportKind::Lab => report.lab.is_some(),
        ReportKind::Ecg => report.ecg.is_some(),
        ReportKind::Imaging => report.imaging.is_some(),
    };
    if present {
        Ok(())
    } else {
        Err(CdaError::NoBody(match report.kind {
            ReportKind::Lab => "lab",
            ReportKind::Ecg => "ECG",
            ReportKind::Imaging => "imaging",
        }))
    }
}

/// The document of any report: [`lab_document`] or [`exam_document`] by its kind.
pub fn document(report: &Report, ctx: &CdaContext) -> Result<String, CdaError> {
    match DocumentType::of(report.kind) {
        DocumentType::Lab => lab_document(report, ctx),
        DocumentType::Exam => exam_document(report, ctx),
    }
}

/// An RFC 3339 time (or a date, `YYYY-MM-DD` or `YYYYMMDD`) as an HL7 v3 `TS`
/// (`YYYYMMDDHHMMSS[.f][+ZZzz]`); `None` when it is not one.
pub fn ts(s: &str) -> Option<String> {
    let s = s.trim();
    let (date, rest) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let date: String = date.chars().filter(|c| *c != '-').collect();
    if !matches!(date.len(), 4 | 6 | 8) || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let Some(rest) = rest else { return Some(date) };
    let (time, zone) = match rest.find(['+', '-', 'Z']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let hms: String = hms.chars().filter(|c| *c != ':').collect();
    if !matches!(hms.len(), 2 | 4 | 6) || !hms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = date + &hms;
    if let Some(f) = frac {
        if hms.len() != 6 || f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out.push('.');
        out.push_str(f);
    }
    match zone {
        None => {}
        Some("Z") => out.push_str("+0000"),
        Some(z) => {
            let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            out.push_str(&z[..1]);
            out.push_str(&digits);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::ts;

    #[test]
    fn times_become_ts() {
        assert_eq!(
            ts("2025-06-24T09:50:00+08:00").as_deref(),
            Some("20250624095000+0800")
        );
        assert_eq!(
            ts("2025-06-24T09:50:00.25Z").as_deref(),
            Some("20250624095000.25+0000")
        );
        assert_eq!(ts("1990-01-01").as_deref(), Some("19900101"));
        assert_eq!(ts("19900101").as_deref(), Some("19900101"));
        assert_eq!(
            ts("2025-06-24T09:50-05:00").as_deref(),
            Some("202506240950-0500")
        );
        assert_eq!(ts("yesterday"), None);
        assert_eq!(ts("2025-06-24T9"), None);
        assert_eq!(ts("2025-06-24T09:50:00+8"), None);
    }
}
