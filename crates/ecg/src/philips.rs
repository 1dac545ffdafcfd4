//! Philips SierraECG / PhilipsECG XML (`restingecgdata`), versions 1.03, 1.04, 1.04.01 and
//! 1.04.02, with XLI-compressed rhythm data and uncompressed representative beats.

use base64::Engine;
use huren_model::ecg::{
    ConfirmationState, EcgBody, EcgConfirmation, EcgDevice, EcgFormat, EcgIdentity,
    EcgMeasurements, EcgOrder, EcgPatient, EcgSignal, EcgStatement, RawMeasurement, SeriesKind,
    WaveLead, WaveSeries, Waveform,
};
use roxmltree::{Document, Node};

use crate::xml::{at, attr, child, children, invalid, num, text, text_at};
use crate::{leads, times, xli, EcgError, ParseOptions, ParsedEcg};

const SUPPORTED: [(&str, &str); 8] = [
    ("SierraECG", "1.03"),
    ("SierraECG", "1.04"),
    ("SierraECG", "1.04.01"),
    ("SierraECG", "1.04.02"),
    ("PhilipsECG", "1.03"),
    ("PhilipsECG", "1.04"),
    ("PhilipsECG", "1.04.01"),
    ("PhilipsECG", "1.04.02"),
];

const STANDARD: [&str; 12] = [
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
];

/// Philips placeholders for "nothing entered".
fn value(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.chars().all(|c| c == '-' || c == ',' || c.is_whitespace()))
}

/// Decodes base64 that may be wrapped over lines.
pub(crate) fn base64(n: Node, s: &str) -> Result<Vec<u8>, EcgError> {
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .map_err(|e| invalid(n, format!("invalid base64: {e}")))
}

pub(crate) fn parse(doc: &Document, opts: &ParseOptions) -> Result<ParsedEcg, EcgError> {
    let root = doc.root_element();
    let info = child(root, "documentinfo").ok_or_else(|| invalid(root, "no documentinfo"))?;
    let dtype = text_at(info, "documenttype").unwrap_or_default();
    let dver = text_at(info, "documentversion").unwrap_or_default();
    if !SUPPORTED.iter().any(|(t, v)| *t == dtype && *v == dver) {
        return Err(EcgError::Unsupported(format!(
            "Files of type {dtype} {dver} are unsupported"
        )));
    }
    let tz = opts.time_zone;
    let mut warnings = Vec::new();
    let acq = child(root, "dataacquisition");
    let sc = acq.and_then(|a| child(a, "signalcharacteristics"));

    // Rhythm.
    let waves = at(root, "waveforms/parsedwaveforms")
        .ok_or_else(|| EcgError::Empty("no waveforms/parsedwaveforms".into()))?;
    let compressed = attr(waves, "compression")
        .or_else(|| attr(waves, "compressmethod"))
        .unwrap_or_default();
    let flag = attr(waves, "compressflag");
    if !compressed.eq_ignore_ascii_case("XLI") || flag.as_deref() == Some("False") {
        return Err(EcgError::Unsupported(format!(
            "Philips waveforms compressed as {:?} are unsupported (only XLI)",
            if flag.as_deref() == Some("False") {
                "none"
            } else {
                compressed.as_str()
            }
        )));
    }
    let rate = attr(waves, "samplespersecond")
        .and_then(|s| num(&s))
        .or_else(|| {
            sc.and_then(|s| text_at(s, "samplingrate"))
                .and_then(|s| num(&s))
        })
        .filter(|r| *r > 0.0 && *r <= 100_000.0)
        .ok_or_else(|| invalid(waves, "no sampling rate"))?;
    let res = attr(waves, "resolution")
        .and_then(|s| num(&s))
        .or_else(|| {
            sc.and_then(|s| text_at(s, "resolution").or_else(|| text_at(s, "signalresolution")))
                .and_then(|s| num(&s))
        })
        .filter(|r| *r > 0.0)
        .unwrap_or_else(|| {
            warnings.push("no signal resolution; assumed 5 µV per unit".into());
            5.0
        });
    let (labels, mut stored) = decode_rhythm(waves)?;
    // Philips carts append a 1 s, 1 mV calibration pulse after the 10 s of signal
    // (durationperchannel 11000). Keep the first 10 s.
    let ten_s = (rate * 10.0).round() as usize;
    let longest = stored.iter().map(Vec::len).max().unwrap_or(0);
    if longest > ten_s {
        warnings.push(format!(
            "dropped the calibration tail beyond 10 s ({} samples per lead)",
            longest - ten_s
        ));
        for l in &mut stored {
            l.truncate(ten_s);
        }
    }
    let mut rhythm: Vec<WaveLead> = labels
        .iter()
        .zip(stored)
        .map(|(label, samples)| WaveLead {
            name: leads::canonical_lead(label)
                .map(str::to_string)
                .unwrap_or_else(|| label.clone()),
            scale_uv: res,
            origin_uv: 0.0,
            samples,
            derived: false,
        })
        .collect();
    leads::sort(&mut rhythm);
    let mut series = vec![WaveSeries {
        kind: SeriesKind::Rhythm,
        sample_rate_hz: rate,
        leads: rhythm,
    }];

    // Representative beats (uncompressed int16 LE).
    if let Some(rb) = at(root, "waveforms/repbeats") {
        let rrate = attr(rb, "samplespersec")
            .and_then(|s| num(&s))
            .filter(|r| *r > 0.0)
            .unwrap_or(rate);
        let rres = attr(rb, "resolution")
            .and_then(|s| num(&s))
            .filter(|r| *r > 0.0)
            .unwrap_or(res);
        let mut beats = Vec::new();
        for r in children(rb, "repbeat") {
            let Some(name) = attr(r, "leadname") else {
                continue;
            };
            let data_node = child(r, "waveform").unwrap_or(r);
            let txt: String = data_node
                .children()
                .filter(|c| c.is_text())
                .filter_map(|c| c.text())
                .collect();
            let bytes = base64(data_node, &txt)?;
            beats.push(WaveLead {
                name: leads::canonical_lead(&name)
                    .map(str::to_string)
                    .unwrap_or(name),
                scale_uv: rres,
                origin_uv: 0.0,
                samples: bytes
                    .chunks_exact(2)
                    .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                derived: false,
            });
        }
        if !beats.is_empty() {
            leads::sort(&mut beats);
            series.push(WaveSeries {
                kind: SeriesKind::RepresentativeBeat,
                sample_rate_hz: rrate,
                leads: beats,
            });
        }
    }

    // Patient, order, device.
    let gp = at(root, "patient/generalpatientdata");
    let name = gp.and_then(|g| child(g, "name")).and_then(|n| {
        let parts: Vec<String> = ["lastname", "firstname", "middlename"]
            .iter()
            .filter_map(|p| value(text_at(n, p)))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    let patient = EcgPatient {
        id: gp.and_then(|g| value(text_at(g, "patientid").or_else(|| text_at(g, "MRN")))),
        name,
        sex: gp.and_then(|g| text_at(g, "sex")).map(|s| {
            match s.to_ascii_lowercase().as_str() {
                "male" => "M",
                "female" => "F",
                _ => "U",
            }
            .to_string()
        }),
        birth_date: gp.and_then(|g| value(text_at(g, "age/dateofbirth"))),
        age: gp
            .and_then(|g| value(text_at(g, "age/years")))
            .map(|y| format!("{y} YEARS")),
    };
    let oi = child(root, "orderinfo");
    let acquirer = acq.and_then(|a| child(a, "acquirer"));
    let order = EcgOrder {
        accession: oi.and_then(|o| {
            value(text_at(o, "ordernumber")).or_else(|| value(text_at(o, "uniqueorderid")))
        }),
        reason: oi.and_then(|o| value(text_at(o, "reasonfororder"))),
        location: acquirer.and_then(|a| {
            value(text_at(a, "departmentname")).or_else(|| value(text_at(a, "departmentid")))
        }),
    };
    let machine = acq.and_then(|a| child(a, "machine"));
    let detail = machine.and_then(|m| attr(m, "detaildescription"));
    let mut detail_parts = detail.as_deref().unwrap_or("").split(':');
    let device = EcgDevice {
        manufacturer: detail_parts
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| Some("Philips".into())),
        model: machine.and_then(text),
        serial: machine.and_then(|m| attr(m, "machineid")),
        software: detail_parts
            .nth(1)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    let acquired_at = acq.and_then(|a| {
        let d = attr(a, "date")?;
        times::iso(&d, attr(a, "time").as_deref(), tz)
    });
    let filt = |wattr: &str, sc_name: &str, rb_name: &str| {
        attr(waves, wattr)
            .or_else(|| sc.and_then(|s| text_at(s, sc_name)))
            .or_else(|| text_at(root, &format!("reportinfo/reportbandwidth/{rb_name}")))
            .filter(|v| num(v).is_some())
    };
    let signal = EcgSignal {
        sample_rate_hz: None,
        uv_per_unit: None,
        high_pass_hz: filt("hipass", "hipass", "highpassfiltersetting"),
        low_pass_hz: filt("lowpass", "lowpass", "lowpassfiltersetting"),
        notch_hz: sc
            .and_then(|s| text_at(s, "acsetting"))
            .or_else(|| text_at(root, "reportinfo/reportbandwidth/notchfiltersetting"))
            .filter(|v| num(v).is_some()),
    };

    // Interpretation.
    let interp = at(root, "interpretations/interpretation");
    let mut measurements = EcgMeasurements::default();
    let mut statements = Vec::new();
    let mut severity = None;
    let mut confirmation = EcgConfirmation::default();
    if let Some(ip) = interp {
        let m = child(ip, "globalmeasurements").or_else(|| child(ip, "interpretationmeasurements"));
        if let Some(m) = m {
            measurements = philips_measurements(m);
        }
        for s in children(ip, "statement") {
            if attr(s, "deleted").is_some_and(|d| d.eq_ignore_ascii_case("true")) {
                continue;
            }
            let Some(t) = text_at(s, "leftstatement") else {
                continue;
            };
            statements.push(EcgStatement {
                text: t,
                reason: text_at(s, "rightstatement"),
                code: text_at(s, "statementcode"),
            });
        }
        severity = text_at(ip, "severity");
        let sig = text_at(ip, "mdsignatureline");
        let clin = child(ip, "confirmingclinician");
        let confirmed = attr(root, "status").is_some_and(|s| s.eq_ignore_ascii_case("confirmed"))
            || sig.as_deref().is_some_and(|s| s.starts_with("Confirmed"));
        confirmation = EcgConfirmation {
            centre: None,
            task: None,
            amendment_reason: None,
            state: if confirmed {
                ConfirmationState::Confirmed
            } else if sig.as_deref().is_some_and(|s| s.contains("nconfirmed"))
                || attr(root, "status").is_some()
            {
                ConfirmationState::Unconfirmed
            } else {
                ConfirmationState::Unknown
            },
            physician: clin.and_then(text).or_else(|| {
                sig.as_deref()
                    .and_then(|s| s.strip_prefix("Confirmed by:"))
                    .map(|s| s.trim().to_string())
            }),
            confirmed_at: clin.and_then(|c| {
                let d = attr(c, "date")?;
                times::iso(&d, attr(c, "time").as_deref(), tz)
            }),
        };
    }

    let body = EcgBody {
        identity: EcgIdentity {
            format: EcgFormat::PhilipsSierra,
            version: Some(format!("{dtype} {dver}")),
            document_uid: text_at(info, "documentname").map(|n| {
                n.trim_end_matches(".xml")
                    .trim_end_matches(".XML")
                    .to_string()
            }),
            key: String::new(),
        },
        patient,
        order,
        acquired_at,
        received_at: None,
        device,
        signal,
        series: vec![],
        measurements,
        statements,
        severity,
        confirmation,
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

/// Labels and samples of the XLI rhythm, limb leads restored, before the calibration tail is
/// dropped.
fn decode_rhythm(waves: Node) -> Result<(Vec<String>, Vec<Vec<i32>>), EcgError> {
    let labels: Vec<String> = match attr(waves, "leadlabels") {
        Some(l) => l.split_whitespace().map(str::to_string).collect(),
        None => STANDARD.iter().map(|s| s.to_string()).collect(),
    };
    let raw = base64(waves, waves.text().unwrap_or(""))?;
    let mut stored = xli::decode(&raw)?;
    if stored.len() < labels.len() {
        return Err(invalid(
            waves,
            format!(
                "XLI holds {} leads but {} are labelled",
                stored.len(),
                labels.len()
            ),
        ));
    }
    stored.truncate(labels.len());
    if labels.len() >= 6 && labels[..6].iter().zip(STANDARD).all(|(a, b)| a == b) {
        xli::reconstruct_limb_leads(&mut stored);
    }
    Ok((labels, stored))
}

/// The whole decoded XLI rhythm of a Philips file (labels as sent, samples in stored
/// units), including the calibration tail that [`crate::parse`] drops. For checks and tools.
pub fn philips_full_rhythm(bytes: &[u8]) -> Result<Vec<(String, Vec<i32>)>, EcgError> {
    let (text, _) = crate::xml::decode(bytes)?;
    let doc = crate::xml::parse_doc(&text, crate::ParseOptions::default().node_limit)?;
    let waves = at(doc.root_element(), "waveforms/parsedwaveforms")
        .ok_or_else(|| EcgError::Empty("no waveforms/parsedwaveforms".into()))?;
    let (labels, leads) = decode_rhythm(waves)?;
    Ok(labels.into_iter().zip(leads).collect())
}

fn philips_measurements(m: Node) -> EcgMeasurements {
    let mut out = EcgMeasurements::default();
    for c in m.children().filter(|c| c.is_element()) {
        let code = c.tag_name().name().to_string();
        let v = text(c).unwrap_or_default();
        out.raw.push(RawMeasurement {
            code,
            value: v,
            unit: None,
        });
    }
    let get = |names: &[&str]| -> Option<i32> {
        names.iter().find_map(|n| {
            out.raw
                .iter()
                .find(|r| r.code == *n)
                .and_then(|r| r.value.trim().parse::<i32>().ok())
        })
    };
    let pos = |v: Option<i32>| v.filter(|x| *x > 0);
    out.heart_rate_bpm = pos(get(&["heartrate", "meanventrate"]));
    out.atrial_rate_bpm = pos(get(&["atrialrate"]));
    out.rr_ms = pos(get(&["rrint", "meanrrint"]));
    out.pr_ms = pos(get(&["print", "meanprint"]));
    out.p_ms = pos(get(&["pdur", "meanpdur"]));
    out.qrs_ms = pos(get(&["qrsdur", "meanqrsdur"]));
    out.qt_ms = pos(get(&["qtint", "meanqtint"]));
    if let Some(q) = pos(get(&["qtcb"])) {
        out.qtc_ms = Some(q);
        out.qtc_formula = Some("bazett".into());
    } else if let Some(q) = pos(get(&["meanqtc", "qtc"])) {
        out.qtc_ms = Some(q);
    }
    out.p_axis_deg = get(&["pfrontaxis"]);
    out.qrs_axis_deg = get(&["qrsfrontaxis"]);
    out.t_axis_deg = get(&["tfrontaxis"]);
    out
}
