//! GE MUSE `RestingECG` XML: base64 int16 LE leads with CRC32, 8 stored leads (I, II,
//! V1–V6) from which III, aVR, aVL and aVF are derived.

use huren_model::ecg::{
    ConfirmationState, EcgBody, EcgConfirmation, EcgDevice, EcgFormat, EcgIdentity,
    EcgMeasurements, EcgOrder, EcgPatient, EcgSignal, EcgStatement, QualityFlag, RawMeasurement,
    SeriesKind, WaveLead, WaveSeries, Waveform,
};
use roxmltree::{Document, Node};

use crate::philips::base64;
use crate::xml::{child, children, invalid, num, text, text_at};
use crate::{leads, times, EcgError, ParseOptions, ParsedEcg};

fn nonzero(s: Option<String>) -> Option<String> {
    s.filter(|v| num(v) != Some(0.0))
}

/// Joins MUSE statement fragments: CJK text directly, Latin text with a space.
fn join(a: &mut String, b: &str) {
    let b = b.trim();
    if b.is_empty() {
        return;
    }
    let cjk = |c: char| !c.is_ascii();
    if !a.is_empty() && !a.chars().last().is_some_and(cjk) && !b.chars().next().is_some_and(cjk) {
        a.push(' ');
    }
    a.push_str(b);
}

pub(crate) fn parse(doc: &Document, opts: &ParseOptions) -> Result<ParsedEcg, EcgError> {
    let root = doc.root_element();
    let tz = opts.time_zone;
    let mut warnings = Vec::new();
    let mut quality = Vec::new();
    let pd = child(root, "PatientDemographics");
    let td = child(root, "TestDemographics");
    if pd.is_none() {
        warnings.push("no PatientDemographics (required by the MUSE DTD)".into());
    }
    if td.is_none() {
        warnings.push("no TestDemographics (required by the MUSE DTD)".into());
    }
    let t = |path: &str| td.and_then(|n| text_at(n, path));
    let p = |path: &str| pd.and_then(|n| text_at(n, path));

    let mut series = Vec::new();
    for w in children(root, "Waveform") {
        let kind = match text_at(w, "WaveformType").as_deref() {
            Some("Rhythm") => SeriesKind::Rhythm,
            Some("Median") => SeriesKind::RepresentativeBeat,
            other => {
                warnings.push(format!("waveform of type {other:?} ignored"));
                continue;
            }
        };
        let base = text_at(w, "SampleBase")
            .and_then(|s| num(&s))
            .filter(|r| *r > 0.0)
            .ok_or_else(|| invalid(w, "no SampleBase"))?;
        let exp = text_at(w, "SampleExponent")
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(0)
            .clamp(-6, 6);
        let rate = base * 10f64.powi(exp);
        let mut leads_out = Vec::new();
        for ld in children(w, "LeadData") {
            let id = text_at(ld, "LeadID").ok_or_else(|| invalid(ld, "no LeadID"))?;
            let name = leads::canonical_lead(&id).map(str::to_string).unwrap_or(id);
            let data = child(ld, "WaveFormData").ok_or_else(|| invalid(ld, "no WaveFormData"))?;
            let bytes = base64(data, &text(data).unwrap_or_default())?;
            let mut scale = text_at(ld, "LeadAmplitudeUnitsPerBit")
                .and_then(|s| num(&s))
                .filter(|v| *v > 0.0)
                .unwrap_or_else(|| {
                    warnings.push(format!("{name}: no LeadAmplitudeUnitsPerBit; assumed 4.88"));
                    4.88
                });
            match text_at(ld, "LeadAmplitudeUnits").as_deref() {
                None | Some("MICROVOLTS") => {}
                Some("MILLIVOLTS") => scale *= 1000.0,
                Some(u) => warnings.push(format!("{name}: amplitude unit {u:?} read as µV")),
            }
            if let Some(c) = text_at(ld, "LeadDataCRC32") {
                let want = c.trim().parse::<u64>().ok();
                let got = u64::from(crc32fast::hash(&bytes));
                match want {
                    Some(0) => warnings.push(format!(
                        "{kind:?} {name}: LeadDataCRC32 is 0, treated as absent"
                    )),
                    Some(w) if w == got => {}
                    _ => {
                        warnings.push(format!(
                            "{kind:?} {name}: LeadDataCRC32 {c} does not match the data ({got})"
                        ));
                        quality.push(QualityFlag::CrcMismatch {
                            series: kind,
                            lead: name.clone(),
                        });
                    }
                }
            }
            if text_at(ld, "LeadOff").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"))
                && kind == SeriesKind::Rhythm
            {
                quality.push(QualityFlag::LeadOff { lead: name.clone() });
            }
            let mut samples: Vec<i32> = bytes
                .chunks_exact(2)
                .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
                .collect();
            if let Some(n) =
                text_at(ld, "LeadSampleCountTotal").and_then(|s| s.parse::<usize>().ok())
            {
                if n != samples.len() {
                    warnings.push(format!(
                        "{kind:?} {name}: LeadSampleCountTotal {n} but {} samples stored",
                        samples.len()
                    ));
                    samples.truncate(n);
                }
            }
            leads_out.push(WaveLead {
                name,
                scale_uv: scale,
                origin_uv: 0.0,
                samples,
                derived: false,
            });
        }
        if leads_out.is_empty() {
            continue;
        }
        leads::derive_limb_leads(&mut leads_out);
        leads::sort(&mut leads_out);
        series.push(WaveSeries {
            kind,
            sample_rate_hz: rate,
            leads: leads_out,
        });
    }
    if series.is_empty() {
        return Err(EcgError::Empty("no Waveform with LeadData".into()));
    }
    series.sort_by_key(|s| s.kind == SeriesKind::RepresentativeBeat);

    // Measurements.
    let mut measurements = EcgMeasurements::default();
    if let Some(m) = child(root, "RestingECGMeasurements") {
        for c in m.children().filter(|c| c.is_element()) {
            measurements.raw.push(RawMeasurement {
                code: c.tag_name().name().to_string(),
                value: text(c).unwrap_or_default(),
                unit: None,
            });
        }
        let get = |n: &str| text_at(m, n).and_then(|s| s.trim().parse::<i32>().ok());
        let pos = |v: Option<i32>| v.filter(|x| *x > 0);
        measurements.heart_rate_bpm = pos(get("VentricularRate"));
        measurements.atrial_rate_bpm = pos(get("AtrialRate"));
        measurements.pr_ms = pos(get("PRInterval"));
        measurements.qrs_ms = pos(get("QRSDuration"));
        measurements.qt_ms = pos(get("QTInterval"));
        measurements.qtc_ms = pos(get("QTCorrected"));
        measurements.p_axis_deg = get("PAxis");
        measurements.qrs_axis_deg = get("RAxis");
        measurements.t_axis_deg = get("TAxis");
        if let Some(hr) = measurements.heart_rate_bpm {
            measurements.rr_ms = Some((60_000 + hr / 2) / hr);
        }
    }

    // Statements: fragments up to each ENDSLINE make one statement.
    let mut statements = Vec::new();
    if let Some(d) = child(root, "Diagnosis") {
        let mut cur = String::new();
        for s in children(d, "DiagnosisStatement") {
            if let Some(tx) = text_at(s, "StmtText") {
                join(&mut cur, &tx);
            }
            let ends = children(s, "StmtFlag").any(|f| text(f).as_deref() == Some("ENDSLINE"));
            if ends && !cur.is_empty() {
                statements.push(EcgStatement {
                    text: std::mem::take(&mut cur),
                    reason: None,
                    code: None,
                });
            }
        }
        if !cur.is_empty() {
            warnings.push("last diagnosis statement has no ENDSLINE".into());
            statements.push(EcgStatement {
                text: cur,
                reason: None,
                code: None,
            });
        }
    }

    let name = {
        let parts: Vec<String> = ["PatientLastName", "PatientFirstName"]
            .iter()
            .filter_map(|n| p(n))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    };
    let patient = EcgPatient {
        id: p("PatientID"),
        name,
        sex: p("Gender").map(|g| {
            match g.as_str() {
                "MALE" => "M",
                "FEMALE" => "F",
                _ => "U",
            }
            .to_string()
        }),
        birth_date: p("DateofBirth").and_then(|d| times::muse_date(&d)),
        age: p("PatientAge").map(|a| match p("AgeUnits") {
            Some(u) => format!("{a} {u}"),
            None => a,
        }),
    };
    let order_node = child(root, "Order");
    let order = EcgOrder {
        accession: order_node.and_then(|o| {
            text_at(o, "RequisitionNumber").or_else(|| text_at(o, "AccessionNumber"))
        }),
        reason: t("TestReason").or_else(|| order_node.and_then(|o| text_at(o, "ReasonForTest"))),
        location: t("LocationName").or_else(|| t("Location")),
    };
    let confirmed = t("Status").is_some_and(|s| s.eq_ignore_ascii_case("CONFIRMED"));
    let physician = {
        let parts: Vec<String> = ["OverreaderLastName", "OverreaderFirstName"]
            .iter()
            .filter_map(|n| t(n))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    };
    let confirmation = EcgConfirmation {
        centre: None,
        task: None,
        amendment_reason: None,
        state: match t("Status") {
            None => ConfirmationState::Unknown,
            Some(_) if confirmed => ConfirmationState::Confirmed,
            Some(_) => ConfirmationState::Unconfirmed,
        },
        physician: if confirmed { physician } else { None },
        confirmed_at: if confirmed {
            t("EditDate").and_then(|d| times::muse(&d, t("EditTime").as_deref(), tz))
        } else {
            None
        },
    };
    let acquired_at =
        t("AcquisitionDate").and_then(|d| times::muse(&d, t("AcquisitionTime").as_deref(), tz));
    let rhythm_w = children(root, "Waveform")
        .find(|w| text_at(*w, "WaveformType").as_deref() == Some("Rhythm"));
    let filt = |n: &str| rhythm_w.and_then(|w| text_at(w, n));
    let signal = EcgSignal {
        sample_rate_hz: None,
        uv_per_unit: None,
        // MUSE gives the high-pass in hundredths of a hertz (56 = 0.56 Hz).
        high_pass_hz: filt("HighPassFilter")
            .and_then(|v| num(&v))
            .map(|v| crate::decimal(v / 100.0)),
        low_pass_hz: nonzero(filt("LowPassFilter")),
        notch_hz: nonzero(filt("ACFilter")),
    };
    let device = EcgDevice {
        manufacturer: Some("GE Healthcare".into()),
        model: t("AcquisitionDevice"),
        serial: t("CartNumber"),
        software: t("AcquisitionSoftwareVersion"),
    };
    let body = EcgBody {
        identity: EcgIdentity {
            format: EcgFormat::GeMuse,
            version: child(root, "MuseInfo").and_then(|m| text_at(m, "MuseVersion")),
            document_uid: None,
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
        severity: None,
        confirmation,
        quality,
        critical: None,
        waveform: None,
        warnings,
    };
    let _ = Node::is_element;
    Ok(ParsedEcg {
        body,
        waveform: Waveform { series },
    })
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn joins_fragments() {
        let mut s = String::new();
        join(&mut s, "Sinus rhythm");
        join(&mut s, "with 1st degree A-V block");
        assert_eq!(s, "Sinus rhythm with 1st degree A-V block");
        let mut z = String::new();
        join(&mut z, "窦性心律");
        join(&mut z, "伴一度房室传导阻滞");
        assert_eq!(z, "窦性心律伴一度房室传导阻滞");
    }
}
