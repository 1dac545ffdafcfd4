//! The ECG part of a report and the binary encoding of its waveform.
//!
//! An [`EcgBody`] holds everything a reader needs except the samples: identity, patient as
//! sent, device, signal setup, the series and their leads, global measurements,
//! interpretation statements, confirmation, quality flags, the critical flag and the
//! warnings for every tolerated quirk. The samples live in a separate blob encoded by
//! [`Waveform::to_blob`] (format `HECG` version 1, described on [`Waveform`] and in
//! `docs/ecg.md`) and named by [`EcgBody::waveform`]. Decimal values (µV per unit, filter
//! frequencies) are kept as decimal strings because canonical JSON refuses floats.

use serde::{Deserialize, Serialize};

use crate::ContentHash;

/// The file format an ECG arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EcgFormat {
    /// HL7 v3 annotated ECG (`urn:hl7-org:v3` `AnnotatedECG`).
    #[serde(rename = "hl7-aecg")]
    Hl7Aecg,
    /// GE MUSE `RestingECG` XML.
    #[serde(rename = "ge-muse")]
    GeMuse,
    /// Philips SierraECG / PhilipsECG XML (`restingecgdata`), XLI-compressed waveforms.
    #[serde(rename = "philips-sierraecg")]
    PhilipsSierra,
    /// DICOM 12-lead or General ECG Waveform Storage.
    #[serde(rename = "dicom-waveform")]
    DicomWaveform,
}

impl EcgFormat {
    /// Stable lower-case name, as used in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            EcgFormat::Hl7Aecg => "hl7-aecg",
            EcgFormat::GeMuse => "ge-muse",
            EcgFormat::PhilipsSierra => "philips-sierraecg",
            EcgFormat::DicomWaveform => "dicom-waveform",
        }
    }
}

/// Which document this is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgIdentity {
    /// Source format.
    pub format: EcgFormat,
    /// Format version as sent (Philips `documentversion`, MUSE version, SOP class UID…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The document's own unique ID (aECG `id`, Philips `documentname`, DICOM SOP Instance
    /// UID) when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_uid: Option<String>,
    /// The key that names this ECG for version chains: `uid:<document uid>`, else
    /// `dev:<device>|<acquisition time>`, else `sha:<blake3 of the original bytes>`.
    pub key: String,
}

/// The patient as the ECG file names them. Every field is optional: some real files carry no
/// demographics at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgPatient {
    /// Patient ID as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name as sent (family and given joined by a space when sent apart; Chinese kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sex normalised to `M`, `F`, `O` or `U`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// Birth date `YYYY-MM-DD` (shorter when less was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Age as sent, with its unit (e.g. `11 YEARS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<String>,
}

/// Order / visit identifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgOrder {
    /// Order, requisition or accession number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession: Option<String>,
    /// Reason for the test, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Location (ward, bed, department) as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// The acquiring device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgDevice {
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Serial number, machine or cart ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Acquisition / analysis software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
}

/// Filter and sampling setup of the acquisition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgSignal {
    /// Sample rate of the rhythm series in Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate_hz: Option<u32>,
    /// µV per stored unit of the rhythm series, decimal as sent or computed (e.g. `4.88`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uv_per_unit: Option<String>,
    /// High-pass (baseline) filter in Hz, decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_pass_hz: Option<String>,
    /// Low-pass filter in Hz, decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_pass_hz: Option<String>,
    /// Mains (notch / AC) filter in Hz, decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notch_hz: Option<String>,
}

/// What a series of samples is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// The continuous recording (usually 10 s).
    Rhythm,
    /// A median / average / representative beat.
    RepresentativeBeat,
}

/// One lead of a series as described in the JSON (the samples are in the waveform blob).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgLeadInfo {
    /// Canonical lead name (`I`, `II`, `III`, `aVR`, `aVL`, `aVF`, `V1`–`V9`, `V3R`–`V6R`…),
    /// else the label as sent.
    pub name: String,
    /// Number of samples.
    pub samples: u32,
    /// True when huren computed the lead from others (e.g. MUSE III/aVR/aVL/aVF).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub derived: bool,
}

/// One series (rhythm or representative beat) and its leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgSeries {
    /// Rhythm or representative beat.
    pub kind: SeriesKind,
    /// Sample rate in Hz (rounded to an integer).
    pub sample_rate_hz: u32,
    /// µV per stored unit, decimal string.
    pub uv_per_unit: String,
    /// Leads in canonical order.
    pub leads: Vec<EcgLeadInfo>,
}

/// Global measurements in normalised units (ms, bpm, degrees). Values a device reports as
/// failed, empty or zero-where-impossible are absent; the raw value is in `raw` whatever it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgMeasurements {
    /// Ventricular heart rate, beats per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_rate_bpm: Option<i32>,
    /// Atrial rate, beats per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atrial_rate_bpm: Option<i32>,
    /// RR interval, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rr_ms: Option<i32>,
    /// PR interval, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_ms: Option<i32>,
    /// P duration, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_ms: Option<i32>,
    /// QRS duration, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qrs_ms: Option<i32>,
    /// QT interval, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qt_ms: Option<i32>,
    /// Corrected QT, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtc_ms: Option<i32>,
    /// QTc formula when known: `bazett`, `fridericia`, `hodges`, `framingham`, or as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtc_formula: Option<String>,
    /// P axis, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_axis_deg: Option<i32>,
    /// QRS axis, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qrs_axis_deg: Option<i32>,
    /// T axis, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_axis_deg: Option<i32>,
    /// Every global measurement as sent, in document order (code, value, unit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<RawMeasurement>,
}

/// A measurement exactly as the file carried it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawMeasurement {
    /// Code or element name (`MDC_ECG_TIME_PD_QT`, `QTInterval`, `meanqtint`…).
    pub code: String,
    /// Value as sent.
    pub value: String,
    /// Unit as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// One interpretation statement, in document order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgStatement {
    /// Statement text as sent (Chinese kept), fragments joined up to their line end.
    pub text: String,
    /// Reason / qualifier (Philips right-hand statement) when sent apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Statement code when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Whether a physician has confirmed (over-read) the interpretation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationState {
    /// The machine's interpretation only.
    Unconfirmed,
    /// Confirmed by a physician.
    Confirmed,
    /// The file does not say.
    #[default]
    Unknown,
}

/// Confirmation state and the confirming physician.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgConfirmation {
    /// State.
    pub state: ConfirmationState,
    /// Confirming physician as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physician: Option<String>,
    /// When it was confirmed, RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    /// The diagnosis centre whose reader signed it (a report signed in huren's reading
    /// centre; the physician is then the reader's principal id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centre: Option<String>,
    /// The reading task the signature completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Why this version amends the task's earlier signed version (an amendment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amendment_reason: Option<String>,
}

/// A signal-quality finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QualityFlag {
    /// The device marked a lead as off / disconnected.
    LeadOff {
        /// Lead name.
        lead: String,
    },
    /// A stored checksum does not match the samples.
    CrcMismatch {
        /// Series.
        series: SeriesKind,
        /// Lead name.
        lead: String,
    },
    /// Samples sit at the recorder's limits for much of the trace.
    Saturated {
        /// Lead name.
        lead: String,
    },
}

/// Why a report is marked critical (危急值).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgCritical {
    /// Catalogue rule ID that matched (e.g. `stemi`).
    pub rule: String,
    /// The rule's human label.
    pub label: String,
    /// The statement text that matched.
    pub statement: String,
}

/// The ECG part of a [`crate::Report`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcgBody {
    /// Format, version and document key.
    pub identity: EcgIdentity,
    /// Patient as sent.
    #[serde(default)]
    pub patient: EcgPatient,
    /// Order / accession.
    #[serde(default)]
    pub order: EcgOrder,
    /// Acquisition time from the device, RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquired_at: Option<String>,
    /// When the gateway received the file, RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// Acquiring device.
    #[serde(default)]
    pub device: EcgDevice,
    /// Sampling and filter setup.
    #[serde(default)]
    pub signal: EcgSignal,
    /// Series (rhythm first, then representative beat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<EcgSeries>,
    /// Global measurements.
    #[serde(default)]
    pub measurements: EcgMeasurements,
    /// Interpretation statements in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<EcgStatement>,
    /// Overall severity as sent (e.g. `- ABNORMAL ECG -`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Confirmation.
    #[serde(default)]
    pub confirmation: EcgConfirmation,
    /// Quality flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<QualityFlag>,
    /// Critical flag with the matching statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<EcgCritical>,
    /// Hash of the waveform blob ([`Waveform::to_blob`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveform: Option<ContentHash>,
    /// One line per tolerated quirk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Decoded samples of one lead.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveLead {
    /// Canonical lead name.
    pub name: String,
    /// µV per unit.
    pub scale_uv: f64,
    /// µV offset added after scaling (aECG `origin`, DICOM baseline).
    pub origin_uv: f64,
    /// Samples in stored units: µV = `origin_uv + scale_uv × sample`.
    pub samples: Vec<i32>,
    /// True when computed by huren.
    pub derived: bool,
}

impl WaveLead {
    /// The sample at `i` in µV.
    pub fn uv(&self, i: usize) -> Option<f64> {
        self.samples
            .get(i)
            .map(|&s| self.origin_uv + self.scale_uv * f64::from(s))
    }
}

/// One decoded series.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveSeries {
    /// Rhythm or representative beat.
    pub kind: SeriesKind,
    /// Samples per second.
    pub sample_rate_hz: f64,
    /// Leads in canonical order.
    pub leads: Vec<WaveLead>,
}

impl WaveSeries {
    /// The lead called `name`.
    pub fn lead(&self, name: &str) -> Option<&WaveLead> {
        self.leads.iter().find(|l| l.name == name)
    }
}

/// All decoded samples of an ECG; stored as a blob (format `HECG` v1):
///
/// ```text
/// "HECG" u8 version=1  u8 0  u16 series_count
/// per series: u8 kind (0 rhythm, 1 beat)  u8 0  u16 lead_count  u32 rate in mHz
///   per lead: u8 name_len, name (UTF-8), u8 flags (bit0 derived), u8 width (2|4),
///             f64 scale_uv, f64 origin_uv, u32 sample_count,
///             samples as int16 (width 2) or int32 (width 4)
/// ```
///
/// All integers and floats little-endian. Width 2 is used whenever every sample fits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Waveform {
    /// Series, rhythm first.
    pub series: Vec<WaveSeries>,
}

/// Why bytes are not a waveform blob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WaveformBlobError {
    /// The blob does not start with `HECG` version 1.
    #[error("not a huren waveform blob (HECG v1)")]
    Magic,
    /// The blob ends early.
    #[error("waveform blob truncated at byte {0}")]
    Truncated(usize),
    /// A field holds an impossible value.
    #[error("waveform blob invalid at byte {0}: {1}")]
    Invalid(usize, &'static str),
}

impl Waveform {
    /// The first series of `kind`.
    pub fn series(&self, kind: SeriesKind) -> Option<&WaveSeries> {
        self.series.iter().find(|s| s.kind == kind)
    }

    /// Encodes as a `HECG` v1 blob.
    pub fn to_blob(&self) -> Vec<u8> {
        let mut n = 8;
        for s in &self.series {
            n += 8;
            for l in &s.leads {
                n += 23 + l.name.len() + l.samples.len() * 4;
            }
        }
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(b"HECG");
        out.push(1);
        out.push(0);
        out.extend_from_slice(&(self.series.len().min(u16::MAX as usize) as u16).to_le_bytes());
        for s in self.series.iter().take(u16::MAX as usize) {
            out.push(match s.kind {
                SeriesKind::Rhythm => 0,
                SeriesKind::RepresentativeBeat => 1,
            });
            out.push(0);
            out.extend_from_slice(&(s.leads.len().min(u16::MAX as usize) as u16).to_le_bytes());
            let mhz = (s.sample_rate_hz * 1000.0).round();
            let mhz = if mhz.is_finite() && mhz >= 0.0 && mhz <= u32::MAX as f64 {
                mhz as u32
            } else {
                0
            };
            out.extend_from_slice(&mhz.to_le_bytes());
            for l in s.leads.iter().take(u16::MAX as usize) {
                let name = truncate_utf8(&l.name, 255);
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
                out.push(u8::from(l.derived));
                let count = l.samples.len().min(u32::MAX as usize);
                let samples = &l.samples[..count];
                // min/max without an early exit, so that the loop vectorises.
                let (lo, hi) = samples
                    .iter()
                    .fold((0i32, 0i32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let narrow = lo >= i16::MIN as i32 && hi <= i16::MAX as i32;
                let width = if narrow { 2 } else { 4 };
                out.push(width as u8);
                out.extend_from_slice(&l.scale_uv.to_le_bytes());
                out.extend_from_slice(&l.origin_uv.to_le_bytes());
                out.extend_from_slice(&(count as u32).to_le_bytes());
                let start = out.len();
                out.resize(start + count * width, 0);
                let dst = &mut out[start..];
                if narrow {
                    for (d, &v) in dst.chunks_exact_mut(2).zip(samples) {
                        d.copy_from_slice(&(v as i16).to_le_bytes());
                    }
                } else {
                    for (d, &v) in dst.chunks_exact_mut(4).zip(samples) {
                        d.copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Decodes a `HECG` v1 blob.
    pub fn from_blob(b: &[u8]) -> Result<Waveform, WaveformBlobError> {
        let mut r = Reader { b, pos: 0 };
        if r.take(4)? != b"HECG" || r.u8()? != 1 {
            return Err(WaveformBlobError::Magic);
        }
        r.u8()?;
        let ns = r.u16()?;
        let mut series = Vec::with_capacity(usize::from(ns).min(16));
        for _ in 0..ns {
            let at = r.pos;
            let kind = match r.u8()? {
                0 => SeriesKind::Rhythm,
                1 => SeriesKind::RepresentativeBeat,
                _ => return Err(WaveformBlobError::Invalid(at, "series kind")),
            };
            r.u8()?;
            let nl = r.u16()?;
            let rate = f64::from(r.u32()?) / 1000.0;
            let mut leads = Vec::with_capacity(usize::from(nl).min(64));
            for _ in 0..nl {
                let len = usize::from(r.u8()?);
                let at = r.pos;
                let name = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| WaveformBlobError::Invalid(at, "lead name is not UTF-8"))?
                    .to_string();
                let derived = r.u8()? & 1 == 1;
                let at = r.pos;
                let width = r.u8()?;
                if width != 2 && width != 4 {
                    return Err(WaveformBlobError::Invalid(at, "sample width"));
                }
                let scale_uv = f64::from_le_bytes(r.arr8()?);
                let origin_uv = f64::from_le_bytes(r.arr8()?);
                let count = r.u32()? as usize;
                let bytes = r.take(count.saturating_mul(usize::from(width)))?;
                let samples = if width == 2 {
                    bytes
                        .chunks_exact(2)
                        .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
                        .collect()
                } else {
                    bytes
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                };
                leads.push(WaveLead {
                    name,
                    scale_uv,
                    origin_uv,
                    samples,
                    derived,
                });
            }
            series.push(WaveSeries {
                kind,
                sample_rate_hz: rate,
                leads,
            });
        }
        if r.pos != b.len() {
            return Err(WaveformBlobError::Invalid(r.pos, "trailing bytes"));
        }
        Ok(Waveform { series })
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WaveformBlobError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(WaveformBlobError::Truncated(self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WaveformBlobError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WaveformBlobError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, WaveformBlobError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn arr8(&mut self) -> Result<[u8; 8], WaveformBlobError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave() -> Waveform {
        Waveform {
            series: vec![
                WaveSeries {
                    kind: SeriesKind::Rhythm,
                    sample_rate_hz: 500.0,
                    leads: vec![
                        WaveLead {
                            name: "I".into(),
                            scale_uv: 4.88,
                            origin_uv: 0.0,
                            samples: vec![1, -2, 32767, -32768],
                            derived: false,
                        },
                        WaveLead {
                            name: "aVR".into(),
                            scale_uv: 1.0,
                            origin_uv: -5.0,
                            samples: vec![70000, -1],
                            derived: true,
                        },
                    ],
                },
                WaveSeries {
                    kind: SeriesKind::RepresentativeBeat,
                    sample_rate_hz: 333.333,
                    leads: vec![],
                },
            ],
        }
    }

    #[test]
    fn blob_round_trips_and_picks_widths() {
        let w = wave();
        let b = w.to_blob();
        assert_eq!(&b[..6], b"HECG\x01\x00");
        assert_eq!(Waveform::from_blob(&b).unwrap(), w);
        // lead I is int16 (width byte 2), aVR needs int32.
        let i = 8 + 8;
        assert_eq!(&b[i..i + 2], b"\x01I");
        assert_eq!(b[i + 3], 2);
        assert_eq!(w.series[0].leads[0].uv(2), Some(4.88 * 32767.0));
    }

    #[test]
    fn blob_rejects_damage_without_panicking() {
        let b = wave().to_blob();
        for n in 0..b.len() {
            assert!(Waveform::from_blob(&b[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(Waveform::from_blob(b"XXXX"), Err(WaveformBlobError::Magic));
        let mut extra = b.clone();
        extra.push(0);
        assert!(matches!(
            Waveform::from_blob(&extra),
            Err(WaveformBlobError::Invalid(_, "trailing bytes"))
        ));
    }

    #[test]
    fn body_json_has_no_floats() {
        let body = EcgBody {
            identity: EcgIdentity {
                format: EcgFormat::GeMuse,
                version: Some("9.0.9".into()),
                document_uid: None,
                key: "dev:MAC P|2024-01-01T10:35:17+08:00".into(),
            },
            patient: EcgPatient {
                name: Some("张三".into()),
                ..Default::default()
            },
            order: EcgOrder::default(),
            acquired_at: Some("2024-01-01T10:35:17+08:00".into()),
            received_at: None,
            device: EcgDevice::default(),
            signal: EcgSignal {
                sample_rate_hz: Some(500),
                uv_per_unit: Some("4.88".into()),
                ..Default::default()
            },
            series: vec![],
            measurements: EcgMeasurements {
                qtc_ms: Some(417),
                ..Default::default()
            },
            statements: vec![EcgStatement {
                text: "窦性心律".into(),
                reason: None,
                code: None,
            }],
            severity: None,
            confirmation: EcgConfirmation::default(),
            quality: vec![QualityFlag::LeadOff { lead: "V1".into() }],
            critical: None,
            waveform: None,
            warnings: vec![],
        };
        let j = crate::canonical_json(&body).unwrap();
        let back: EcgBody = serde_json::from_slice(&j).unwrap();
        assert_eq!(back, body);
        let s = String::from_utf8(j).unwrap();
        assert!(s.contains(r#""format":"ge-muse""#), "{s}");
        assert!(s.contains(r#"{"kind":"lead_off","lead":"V1"}"#), "{s}");
    }
}
