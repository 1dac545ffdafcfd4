//! DICOM 12-lead (1.2.840.10008.5.1.4.1.1.9.1.1) and General ECG (…9.1.2) Waveform Storage:
//! multiplexed groups, channel sensitivity × correction and baseline, SCPECG / MDC channel
//! sources, annotations for measurements and statements. Read with dicom-object behind
//! huren-dicom's structural guard (`huren_dicom::read_object`).

use dicom_core::value::PrimitiveValue;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use huren_model::ecg::{
    ConfirmationState, EcgBody, EcgConfirmation, EcgDevice, EcgFormat, EcgIdentity,
    EcgMeasurements, EcgOrder, EcgPatient, EcgSignal, EcgStatement, RawMeasurement, SeriesKind,
    WaveLead, WaveSeries, Waveform,
};

use crate::{leads, times, EcgError, ParseOptions, ParsedEcg};

const TWELVE_LEAD: &str = "1.2.840.10008.5.1.4.1.1.9.1.1";
const GENERAL_ECG: &str = "1.2.840.10008.5.1.4.1.1.9.1.2";
const AMBULATORY: &str = "1.2.840.10008.5.1.4.1.1.9.1.3";

/// A Part-10 file (with or without the 128-byte preamble).
pub(crate) fn looks_like_dicom(b: &[u8]) -> bool {
    b.get(128..132) == Some(b"DICM") || b.starts_with(b"DICM")
}

fn s(o: &InMemDicomObject, t: Tag) -> Option<String> {
    let v = o.get(t)?.to_str().ok()?;
    let v = v.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!v.is_empty()).then(|| v.to_string())
}

fn f(o: &InMemDicomObject, t: Tag) -> Option<f64> {
    o.get(t)?.to_float64().ok().filter(|v| v.is_finite())
}

fn items(o: &InMemDicomObject, t: Tag) -> &[InMemDicomObject] {
    o.get(t).and_then(|e| e.items()).unwrap_or(&[])
}

fn first(o: &InMemDicomObject, t: Tag) -> Option<&InMemDicomObject> {
    items(o, t).first()
}

fn bad(reason: impl Into<String>) -> EcgError {
    EcgError::Invalid {
        path: "DICOM".into(),
        line: 0,
        reason: reason.into(),
    }
}

/// Samples of a multiplexed group as i32, channel-major.
fn samples(
    g: &InMemDicomObject,
    channels: usize,
    n: usize,
    label: &str,
) -> Result<Vec<Vec<i32>>, EcgError> {
    let bits = g
        .get(tags::WAVEFORM_BITS_ALLOCATED)
        .and_then(|e| e.to_int::<u16>().ok())
        .unwrap_or(16);
    let interp = s(g, tags::WAVEFORM_SAMPLE_INTERPRETATION).unwrap_or_else(|| "SS".into());
    let data = g
        .get(tags::WAVEFORM_DATA)
        .and_then(|e| e.value().primitive())
        .ok_or_else(|| bad(format!("group {label:?} has no Waveform Data")))?;
    let flat: Vec<i32> = match (bits, interp.as_str(), data) {
        (16, "SS", PrimitiveValue::U16(v)) => v.iter().map(|&x| i32::from(x as i16)).collect(),
        (16, "SS", PrimitiveValue::I16(v)) => v.iter().map(|&x| i32::from(x)).collect(),
        (16, "US", PrimitiveValue::U16(v)) => v.iter().map(|&x| i32::from(x)).collect(),
        (16, "SS", PrimitiveValue::U8(b)) => b
            .chunks_exact(2)
            .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        (16, "US", PrimitiveValue::U8(b)) => b
            .chunks_exact(2)
            .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        (32, "SL", PrimitiveValue::U8(b)) => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        (b, i, _) => {
            return Err(EcgError::Unsupported(format!(
                "DICOM waveform with {b} bits allocated and interpretation {i} is unsupported"
            )))
        }
    };
    let need = channels
        .checked_mul(n)
        .ok_or_else(|| bad("channel × sample count overflows"))?;
    if flat.len() < need {
        return Err(bad(format!(
            "group {label:?}: {} samples stored, {channels} × {n} declared",
            flat.len()
        )));
    }
    let mut out = vec![Vec::with_capacity(n); channels];
    for frame in flat[..need].chunks_exact(channels) {
        for (c, &v) in frame.iter().enumerate() {
            out[c].push(v);
        }
    }
    Ok(out)
}

pub(crate) fn parse(bytes: &[u8], opts: &ParseOptions) -> Result<ParsedEcg, EcgError> {
    // The imaging path's reader: the file meta group walked by hand, every declared length in
    // the data set checked against the bytes before dicom-rs sees it (dicom-rs allocates what
    // a length says: a 4 GB length in a short file asked for 4 GB, found by fuzzing), and a
    // panic barrier.
    let (obj, _ts) = huren_dicom::read_object(bytes).map_err(|e| EcgError::Dicom(e.to_string()))?;
    let tz = opts.time_zone;
    let mut warnings = Vec::new();
    let sop_class = s(&obj, tags::SOP_CLASS_UID).unwrap_or_else(|| {
        huren_dicom::split_part10(bytes)
            .ok()
            .and_then(|p| p.sop_class_uid)
            .unwrap_or_default()
            .trim_end_matches('\0')
            .to_string()
    });
    if ![TWELVE_LEAD, GENERAL_ECG, AMBULATORY].contains(&sop_class.as_str()) {
        return Err(EcgError::Unsupported(format!(
            "DICOM SOP class {sop_class} is not an ECG waveform"
        )));
    }

    let mut series: Vec<WaveSeries> = Vec::new();
    let mut total_channels = 0usize;
    let mut signal = EcgSignal::default();
    for (gi, g) in items(&obj, tags::WAVEFORM_SEQUENCE).iter().enumerate() {
        let label = s(g, tags::MULTIPLEX_GROUP_LABEL).unwrap_or_else(|| format!("#{}", gi + 1));
        let orig = s(g, tags::WAVEFORM_ORIGINALITY).unwrap_or_default();
        let kind = if orig == "ORIGINAL" {
            SeriesKind::Rhythm
        } else {
            SeriesKind::RepresentativeBeat
        };
        let channels = g
            .get(tags::NUMBER_OF_WAVEFORM_CHANNELS)
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(0) as usize;
        let n = g
            .get(tags::NUMBER_OF_WAVEFORM_SAMPLES)
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(0) as usize;
        let rate = f(g, tags::SAMPLING_FREQUENCY)
            .filter(|r| *r > 0.0)
            .ok_or_else(|| bad(format!("group {label:?} has no sampling frequency")))?;
        let defs = items(g, tags::CHANNEL_DEFINITION_SEQUENCE);
        if channels == 0 || n == 0 || defs.len() != channels {
            return Err(bad(format!(
                "group {label:?}: {channels} channels, {} definitions, {n} samples",
                defs.len()
            )));
        }
        if n > 10_000_000 || channels > 256 {
            return Err(bad(format!("group {label:?} is implausibly large")));
        }
        total_channels += channels;
        if series.iter().any(|s| s.kind == kind) {
            warnings.push(format!("further {kind:?} group {label:?} ignored"));
            continue;
        }
        let data = samples(g, channels, n, &label)?;
        let mut out = Vec::with_capacity(channels);
        for (d, samples) in defs.iter().zip(data) {
            let src = first(d, tags::CHANNEL_SOURCE_SEQUENCE);
            let code = src.and_then(|c| s(c, tags::CODE_VALUE)).unwrap_or_default();
            let meaning = src
                .and_then(|c| s(c, tags::CODE_MEANING))
                .unwrap_or_default();
            let name = leads::canonical_lead(&code)
                .or_else(|| leads::canonical_lead(&meaning))
                .map(str::to_string)
                .unwrap_or_else(|| {
                    warnings.push(format!("channel source {code:?} ({meaning}) kept as sent"));
                    if meaning.is_empty() {
                        code.clone()
                    } else {
                        meaning.clone()
                    }
                });
            let sens = f(d, tags::CHANNEL_SENSITIVITY).unwrap_or(1.0);
            let corr = f(d, tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR).unwrap_or(1.0);
            let unit = first(d, tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE)
                .and_then(|u| s(u, tags::CODE_VALUE))
                .unwrap_or_else(|| "uV".into());
            let mult = match unit.as_str() {
                "uV" => 1.0,
                "mV" => 1000.0,
                "V" => 1_000_000.0,
                u => {
                    warnings.push(format!("channel sensitivity unit {u:?} read as µV"));
                    1.0
                }
            };
            let scale = sens * corr * mult;
            let baseline = f(d, tags::CHANNEL_BASELINE).unwrap_or(0.0);
            if kind == SeriesKind::Rhythm && signal.low_pass_hz.is_none() {
                signal.low_pass_hz = s(d, tags::FILTER_HIGH_FREQUENCY);
                signal.high_pass_hz = s(d, tags::FILTER_LOW_FREQUENCY);
                signal.notch_hz = s(d, tags::NOTCH_FILTER_FREQUENCY);
            }
            out.push(WaveLead {
                name,
                scale_uv: scale,
                origin_uv: baseline * scale,
                samples,
                derived: false,
            });
        }
        leads::sort(&mut out);
        series.push(WaveSeries {
            kind,
            sample_rate_hz: rate,
            leads: out,
        });
    }
    if series.is_empty() {
        return Err(EcgError::Empty(
            "DICOM object has no Waveform Sequence".into(),
        ));
    }
    series.sort_by_key(|s| s.kind == SeriesKind::RepresentativeBeat);
    if sop_class == TWELVE_LEAD && total_channels > 13 {
        warnings.push(format!(
            "12-lead ECG object holds {total_channels} channels in all (the IOD allows 13); read anyway"
        ));
    }

    // Annotations.
    let mut measurements = EcgMeasurements::default();
    let mut statements = Vec::new();
    for a in items(&obj, tags::WAVEFORM_ANNOTATION_SEQUENCE) {
        if let Some(t) = s(a, tags::UNFORMATTED_TEXT_VALUE) {
            statements.push(EcgStatement {
                text: t,
                reason: None,
                code: None,
            });
            continue;
        }
        let Some(cn) = first(a, tags::CONCEPT_NAME_CODE_SEQUENCE) else {
            continue;
        };
        let Some(value) = s(a, tags::NUMERIC_VALUE) else {
            continue;
        };
        let code = s(cn, tags::CODE_VALUE).unwrap_or_default();
        let scheme = s(cn, tags::CODING_SCHEME_DESIGNATOR).unwrap_or_default();
        let key = format!("{scheme}:{code}");
        let unit =
            first(a, tags::MEASUREMENT_UNITS_CODE_SEQUENCE).and_then(|u| s(u, tags::CODE_VALUE));
        if measurements.raw.iter().any(|r| r.code == key) {
            continue;
        }
        let v = crate::xml::num(&value).map(|x| x.round() as i32);
        let m = &mut measurements;
        let axis = |w: &mut Vec<String>| {
            if unit.as_deref() != Some("deg") {
                w.push(format!("{key} axis unit {unit:?} read as degrees"));
            }
            v
        };
        match key.as_str() {
            "MDC:2:16016" => m.heart_rate_bpm = v,
            "MDC:2:16020" => m.atrial_rate_bpm = v,
            "SCPECG:5.10.2.1-3" => m.rr_ms = v.filter(|x| *x > 0),
            "SCPECG:5.13.5-7" | "MDC:2:15872" => m.pr_ms = v.filter(|x| *x > 0),
            "SCPECG:5.13.5-9" | "MDC:2:16156" => m.qrs_ms = v.filter(|x| *x > 0),
            "SCPECG:5.13.5-11" | "MDC:2:16160" => m.qt_ms = v.filter(|x| *x > 0),
            "SCPECG:5.10.2.5-5" | "MDC:2:15876" => m.qtc_ms = v.filter(|x| *x > 0),
            "SCPECG:5.10.3-11" | "MDC:2:16128" => m.p_axis_deg = axis(&mut warnings),
            "SCPECG:5.10.3-13" | "MDC:2:16132" => m.qrs_axis_deg = axis(&mut warnings),
            "SCPECG:5.10.3-15" | "MDC:2:16136" => m.t_axis_deg = axis(&mut warnings),
            _ => {}
        }
        measurements.raw.push(RawMeasurement {
            code: key,
            value,
            unit,
        });
    }

    let acquired_at = match s(&obj, tags::ACQUISITION_DATE_TIME) {
        Some(dt) => times::hl7(&dt, tz),
        None => ["ACQ", "CONTENT", "STUDY"].iter().find_map(|w| {
            let (d, t) = match *w {
                "ACQ" => (tags::ACQUISITION_DATE, tags::ACQUISITION_TIME),
                "CONTENT" => (tags::CONTENT_DATE, tags::CONTENT_TIME),
                _ => (tags::STUDY_DATE, tags::STUDY_TIME),
            };
            times::dicom(
                &s(&obj, d)?,
                s(&obj, t).as_deref(),
                s(&obj, tags::TIMEZONE_OFFSET_FROM_UTC).as_deref(),
                tz,
            )
        }),
    };
    let name = s(&obj, tags::PATIENT_NAME).map(|n| {
        n.split('=')
            .next()
            .unwrap_or("")
            .split('^')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
    let patient = EcgPatient {
        id: s(&obj, tags::PATIENT_ID),
        name: name.filter(|n| !n.is_empty()),
        sex: s(&obj, tags::PATIENT_SEX),
        birth_date: s(&obj, tags::PATIENT_BIRTH_DATE).and_then(|d| times::hl7(&d, tz)),
        age: s(&obj, tags::PATIENT_AGE),
    };
    let verified = s(&obj, tags::VERIFICATION_FLAG);
    let body = EcgBody {
        identity: EcgIdentity {
            format: EcgFormat::DicomWaveform,
            version: Some(sop_class),
            document_uid: s(&obj, tags::SOP_INSTANCE_UID),
            key: String::new(),
        },
        patient,
        order: EcgOrder {
            accession: s(&obj, tags::ACCESSION_NUMBER),
            reason: s(&obj, tags::REASON_FOR_THE_REQUESTED_PROCEDURE),
            location: s(&obj, tags::INSTITUTIONAL_DEPARTMENT_NAME),
        },
        acquired_at,
        received_at: None,
        device: EcgDevice {
            manufacturer: s(&obj, tags::MANUFACTURER),
            model: s(&obj, tags::MANUFACTURER_MODEL_NAME),
            serial: s(&obj, tags::DEVICE_SERIAL_NUMBER),
            software: s(&obj, tags::SOFTWARE_VERSIONS),
        },
        signal,
        series: vec![],
        measurements,
        statements,
        severity: None,
        confirmation: EcgConfirmation {
            centre: None,
            task: None,
            amendment_reason: None,
            state: match verified.as_deref() {
                Some("VERIFIED") => ConfirmationState::Confirmed,
                Some("UNVERIFIED") => ConfirmationState::Unconfirmed,
                _ => ConfirmationState::Unknown,
            },
            physician: None,
            confirmed_at: None,
        },
        quality: vec![],
        critical: None,
        waveform: None,
        warnings,
    };
    Ok(ParsedEcg {
        body,
        waveform: Waveform { series },
    })
}
