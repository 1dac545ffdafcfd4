//! ECG for huren: four adapters (HL7 aECG, GE MUSE RestingECG, Philips SierraECG/PhilipsECG
//! with XLI, DICOM 12-lead / General ECG waveforms) that turn one file into an
//! [`EcgBody`] plus its decoded [`Waveform`]; a deterministic SVG renderer; and the
//! critical-statement catalogue.
//!
//! ```text
//! bytes ─► detect ─► adapter ─► ParsedEcg { body, waveform } ─► to_report ─► Report
//!                                         └─► waveform.to_blob() (stored next to the original)
//! ```
//!
//! No I/O, no panics on any input: every failure is an [`EcgError`] naming the reason and,
//! for XML, the element path and line.

mod aecg;
mod critical;
mod dicom;
mod leads;
mod muse;
mod philips;
mod render;
mod times;
pub mod xli;
mod xml;

use huren_model::ecg::{ConfirmationState, EcgSeries, SeriesKind};
use huren_model::{ContentHash, OrderIds, PatientRef, Report, ReportKind, ReportStatus, Source};

pub use critical::{critical, CriticalCatalogue, CriticalMatch, CriticalRule};
pub use huren_model::ecg::{EcgBody, EcgFormat, WaveLead, WaveSeries, Waveform};
pub use leads::canonical_lead;
pub use philips::philips_full_rhythm;
pub use render::{render_svg, Layout, RenderOptions, PX_PER_MM};

/// Options for [`parse`].
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// Zone of local times in the files (MUSE, Philips and aECG times without offset).
    pub time_zone: chrono_tz::Tz,
    /// Critical-statement catalogue applied to the statements.
    pub catalogue: CriticalCatalogue,
    /// Maximum XML nodes (elements, text, attributes count towards roxmltree's limit).
    pub node_limit: u32,
    /// Maximum input size in bytes.
    pub max_bytes: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            time_zone: chrono_tz::Asia::Shanghai,
            catalogue: CriticalCatalogue::default(),
            node_limit: 1_000_000,
            max_bytes: 64 << 20,
        }
    }
}

/// Why an ECG file was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EcgError {
    /// Nothing recognisable.
    #[error("not a supported ECG file (expected HL7 aECG, GE MUSE RestingECG, Philips SierraECG/PhilipsECG XML or a DICOM ECG waveform)")]
    UnknownFormat,
    /// A known family, but a type or version huren does not read.
    #[error("{0}")]
    Unsupported(String),
    /// The input exceeds [`ParseOptions::max_bytes`].
    #[error("ECG file of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The bytes cannot be decoded as text.
    #[error("cannot decode the XML text: {0}")]
    Encoding(String),
    /// XML is not well-formed (or exceeds the node limit).
    #[error("XML error at line {line}, column {column}: {message}")]
    Xml {
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// roxmltree's message.
        message: String,
    },
    /// A required element is missing or holds an impossible value.
    #[error("{path} (line {line}): {reason}")]
    Invalid {
        /// Element path, e.g. `/RestingECG/Waveform[2]/LeadData[1]/WaveFormData`.
        path: String,
        /// 1-based line (0 when not from XML).
        line: u32,
        /// What is wrong.
        reason: String,
    },
    /// The file parses but holds no waveform at all.
    #[error("empty ECG: {0}")]
    Empty(String),
    /// XLI decompression failed.
    #[error("XLI: {0}")]
    Xli(#[from] xli::XliError),
    /// The DICOM reader refused the file.
    #[error("DICOM: {0}")]
    Dicom(String),
}

/// One parsed ECG: the report body, the decoded samples and the tolerated quirks.
///
/// Identity for building a [`Report`] is in the body: `body.patient`, `body.order`,
/// `body.acquired_at`, `body.device`, `body.identity.key`.
#[derive(Clone, Debug)]
pub struct ParsedEcg {
    /// The body as it goes into the report (without `received_at` and `waveform`, which
    /// [`to_report`] sets).
    pub body: EcgBody,
    /// Decoded samples; store [`Waveform::to_blob`] and pass its hash to [`to_report`].
    pub waveform: Waveform,
}

impl ParsedEcg {
    /// Warnings, one per tolerated quirk.
    pub fn warnings(&self) -> &[String] {
        &self.body.warnings
    }
}

/// Recognises the format from the content (BOM/encoding, root element, DICOM preamble).
pub fn detect(bytes: &[u8]) -> Option<EcgFormat> {
    if dicom::looks_like_dicom(bytes) {
        return Some(EcgFormat::DicomWaveform);
    }
    let text = xml::decode_prefix(bytes, 4096)?;
    match xml::root_name(&text)?.as_str() {
        "AnnotatedECG" => Some(EcgFormat::Hl7Aecg),
        "RestingECG" => Some(EcgFormat::GeMuse),
        "restingecgdata" => Some(EcgFormat::PhilipsSierra),
        _ => None,
    }
}

/// Whether the bytes are an XML document (they start with markup and a root element can be
/// read). An XML file that
/// [`detect`] does not recognise is still an ECG file to [`parse`], which names what it is
/// (e.g. GE CardioSoft, not supported) instead of letting a caller try it as HL7 v2.
pub fn is_xml(bytes: &[u8]) -> bool {
    // The document must start with markup: a message that merely contains a `<` (an HL7
    // reference range `<5.0`) is not XML.
    xml::decode_prefix(bytes, 4096).is_some_and(|t| {
        t.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
            .starts_with('<')
            && xml::root_name(&t).is_some()
    })
}

/// Parses one ECG file of any supported format.
pub fn parse(bytes: &[u8], opts: &ParseOptions) -> Result<ParsedEcg, EcgError> {
    if bytes.len() > opts.max_bytes {
        return Err(EcgError::TooLarge(bytes.len()));
    }
    let format = match detect(bytes) {
        Some(f) => f,
        None => {
            if let Some(t) = xml::decode_prefix(bytes, 4096) {
                if xml::root_name(&t).as_deref() == Some("CardiologyXML") {
                    return Err(EcgError::Unsupported(
                        "GE CardioSoft CardiologyXML is not supported".into(),
                    ));
                }
            }
            return Err(EcgError::UnknownFormat);
        }
    };
    let mut parsed = match format {
        EcgFormat::DicomWaveform => dicom::parse(bytes, opts)?,
        _ => {
            let (text, enc_warning) = xml::decode(bytes)?;
            let doc = xml::parse_doc(&text, opts.node_limit)?;
            let mut p = match format {
                EcgFormat::Hl7Aecg => aecg::parse(&doc, opts)?,
                EcgFormat::GeMuse => muse::parse(&doc, opts)?,
                _ => philips::parse(&doc, opts)?,
            };
            if let Some(w) = enc_warning {
                p.body.warnings.insert(0, w);
            }
            p
        }
    };
    finish(&mut parsed, bytes, opts);
    Ok(parsed)
}

/// Common tail of every adapter: series descriptions, identity key, critical flag.
fn finish(p: &mut ParsedEcg, bytes: &[u8], opts: &ParseOptions) {
    let b = &mut p.body;
    b.series = p
        .waveform
        .series
        .iter()
        .map(|s| EcgSeries {
            kind: s.kind,
            sample_rate_hz: s.sample_rate_hz.round().clamp(0.0, u32::MAX as f64) as u32,
            uv_per_unit: s
                .leads
                .iter()
                .find(|l| !l.derived)
                .or(s.leads.first())
                .map(|l| decimal(l.scale_uv))
                .unwrap_or_default(),
            leads: s
                .leads
                .iter()
                .map(|l| huren_model::ecg::EcgLeadInfo {
                    name: l.name.clone(),
                    samples: l.samples.len().min(u32::MAX as usize) as u32,
                    derived: l.derived,
                })
                .collect(),
        })
        .collect();
    if let Some(r) = p.waveform.series(SeriesKind::Rhythm) {
        if b.signal.sample_rate_hz.is_none() {
            b.signal.sample_rate_hz = Some(r.sample_rate_hz.round().clamp(0.0, 1e9) as u32);
        }
        if b.signal.uv_per_unit.is_none() {
            b.signal.uv_per_unit = r
                .leads
                .iter()
                .find(|l| !l.derived)
                .map(|l| decimal(l.scale_uv));
        }
    }
    b.identity.key = if let Some(u) = b.identity.document_uid.as_deref().filter(|u| !u.is_empty()) {
        format!("uid:{u}")
    } else if let (Some(dev), Some(t)) = (
        b.device
            .serial
            .as_deref()
            .or(b.device.model.as_deref())
            .filter(|d| !d.is_empty()),
        b.acquired_at.as_deref(),
    ) {
        format!("dev:{dev}|{t}")
    } else {
        format!("sha:{}", ContentHash::of(bytes).hex())
    };
    quality_checks(b, &p.waveform);
    let texts: Vec<String> = b.statements.iter().map(statement_line).collect();
    b.critical = critical(texts.iter().map(String::as_str), &opts.catalogue).map(|m| {
        huren_model::ecg::EcgCritical {
            rule: m.rule,
            label: m.label,
            statement: m.statement,
        }
    });
}

/// Flat (lead-off) and saturated rhythm leads, whatever the format.
fn quality_checks(b: &mut EcgBody, w: &Waveform) {
    use huren_model::ecg::QualityFlag;
    let Some(r) = w.series(SeriesKind::Rhythm) else {
        return;
    };
    for l in r
        .leads
        .iter()
        .filter(|l| !l.derived && l.samples.len() >= 100)
    {
        let (mn, mx) = l
            .samples
            .iter()
            .fold((i32::MAX, i32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let already =
            |q: &QualityFlag| matches!(q, QualityFlag::LeadOff { lead } if *lead == l.name);
        // A lead that never moves by more than 10 µV over the whole strip is not connected.
        if f64::from(mx.saturating_sub(mn)) * l.scale_uv.abs() <= 10.0 {
            if !b.quality.iter().any(already) {
                b.quality.push(QualityFlag::LeadOff {
                    lead: l.name.clone(),
                });
            }
            continue;
        }
        // Repeated excursions beyond ±15 mV are the amplifier's rails, not a heart.
        if l.uv_extreme() >= 15_000.0 {
            let at_rail = l
                .samples
                .iter()
                .filter(|&&x| (l.origin_uv + l.scale_uv * f64::from(x)).abs() >= 15_000.0)
                .count();
            if at_rail >= 10 {
                b.quality.push(QualityFlag::Saturated {
                    lead: l.name.clone(),
                });
            }
        }
    }
    // Chest leads carrying identical samples share one floating reference: electrodes off.
    let chest: Vec<&WaveLead> = r
        .leads
        .iter()
        .filter(|l| !l.derived && l.name.starts_with('V') && l.samples.len() >= 100)
        .collect();
    for l in &chest {
        let twin = chest
            .iter()
            .any(|o| o.name != l.name && o.samples == l.samples && o.scale_uv == l.scale_uv);
        let already = b
            .quality
            .iter()
            .any(|q| matches!(q, QualityFlag::LeadOff { lead } if *lead == l.name));
        if twin && !already {
            b.quality.push(QualityFlag::LeadOff {
                lead: l.name.clone(),
            });
        }
    }
}

trait Extreme {
    fn uv_extreme(&self) -> f64;
}

impl Extreme for WaveLead {
    fn uv_extreme(&self) -> f64 {
        self.samples
            .iter()
            .map(|&x| (self.origin_uv + self.scale_uv * f64::from(x)).abs())
            .fold(0.0, f64::max)
    }
}

/// Statement text plus its reason, as shown and as matched by the critical catalogue.
pub fn statement_line(s: &huren_model::ecg::EcgStatement) -> String {
    match s.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("{} ({r})", s.text),
        None => s.text.clone(),
    }
}

/// Shortest decimal form of a scale (`4.88`, `2.5`, `5`).
pub(crate) fn decimal(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{:.6}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Builds the [`Report`] for a parsed ECG. `waveform_blob` is the hash of
/// `parsed.waveform.to_blob()`; `received_at` is the gateway's receive time (RFC 3339).
/// A file without a patient ID gets an empty `local_id`; the body keeps what was sent.
pub fn to_report(
    parsed: &ParsedEcg,
    institution: &str,
    original: ContentHash,
    waveform_blob: ContentHash,
    received_at: &str,
) -> Report {
    let mut body = parsed.body.clone();
    body.received_at = Some(received_at.to_string());
    body.waveform = Some(waveform_blob);
    let p = &body.patient;
    let patient = PatientRef {
        institution: institution.to_string(),
        local_id: p.id.clone().unwrap_or_default(),
        name: p.name.clone(),
        sex: p.sex.clone(),
        birth_date: p.birth_date.clone(),
        ..Default::default()
    };
    let conclusion = (!body.statements.is_empty()).then(|| {
        body.statements
            .iter()
            .map(statement_line)
            .collect::<Vec<_>>()
            .join("\n")
    });
    Report {
        kind: ReportKind::Ecg,
        source: Source {
            institution: institution.to_string(),
            system: huren_model::SystemKind::Ecg,
            application: body.device.model.clone(),
            source_key: body.identity.key.clone(),
        },
        patient,
        status: match body.confirmation.state {
            ConfirmationState::Confirmed => ReportStatus::Final,
            _ => ReportStatus::Preliminary,
        },
        order: OrderIds {
            placer: None,
            filler: body.order.accession.clone(),
        },
        specimen_collected_at: None,
        performed_at: body.acquired_at.clone(),
        reported_at: body.confirmation.confirmed_at.clone(),
        lab: None,
        ecg: Some(Box::new(body)),
        imaging: None,
        conclusion,
        original,
        attachments: vec![waveform_blob],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_xml_needs_markup_first() {
        assert!(is_xml(b"<?xml version=\"1.0\"?>\r\n<CardiologyXML/>"));
        assert!(is_xml("\u{feff}  <RestingECG></RestingECG>".as_bytes()));
        // An HL7 message with a `<` in a reference range is not XML.
        assert!(!is_xml(
            b"MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|1|P|2.5.1\rOBX|1|NM|K^K^L||4.1|mmol/L|<5.3|N\r"
        ));
        assert!(!is_xml(b""));
    }

    #[test]
    fn decimal_forms() {
        assert_eq!(decimal(4.88), "4.88");
        assert_eq!(decimal(2.5), "2.5");
        assert_eq!(decimal(5.0), "5");
        assert_eq!(decimal(-0.0), "0");
        assert_eq!(decimal(f64::NAN), "0");
    }

    #[test]
    fn detect_and_reject_garbage() {
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"MSH|^~\\&|"), None);
        assert_eq!(
            detect(b"<?xml version=\"1.0\"?><!-- c --><AnnotatedECG xmlns=\"urn:hl7-org:v3\"/>"),
            Some(EcgFormat::Hl7Aecg)
        );
        assert_eq!(
            parse(b"hello", &ParseOptions::default()).unwrap_err(),
            EcgError::UnknownFormat
        );
        let big = vec![b' '; 100];
        let o = ParseOptions {
            max_bytes: 10,
            ..Default::default()
        };
        assert_eq!(parse(&big, &o).unwrap_err(), EcgError::TooLarge(100));
    }
}
