//! HL7 v3 annotated ECG (`AnnotatedECG`): series → sequenceSet → sequences, samples are
//! `origin + scale × digits`, the time sequence's increment gives the rate; MDC annotations
//! give measurements and statements.

use std::collections::HashSet;

use huren_model::ecg::{
    EcgBody, EcgDevice, EcgFormat, EcgIdentity, EcgMeasurements, EcgOrder, EcgPatient, EcgSignal,
    EcgStatement, RawMeasurement, SeriesKind, WaveLead, WaveSeries, Waveform,
};
use roxmltree::{Document, Node};

use crate::xml::{at, attr, child, children, invalid, num, text, text_at};
use crate::{leads, times, EcgError, ParseOptions, ParsedEcg};

fn code(n: Node) -> Option<String> {
    child(n, "code").and_then(|c| attr(c, "code"))
}

/// µV multiplier of a voltage unit.
fn volts(unit: Option<&str>) -> Option<f64> {
    match unit.map(str::trim) {
        None | Some("") => None,
        Some("uV") | Some("µV") | Some("microvolt") => Some(1.0),
        Some("mV") => Some(1000.0),
        Some("V") => Some(1_000_000.0),
        Some("nV") => Some(0.001),
        Some(_) => None,
    }
}

struct Ctx {
    warnings: Vec<String>,
}

impl Ctx {
    fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }
}

fn read_series(ctx: &mut Ctx, s: Node, kind: SeriesKind) -> Result<Option<WaveSeries>, EcgError> {
    let Some(set) = at(s, "component/sequenceSet") else {
        return Ok(None);
    };
    let mut rate = None;
    let mut leads_out = Vec::new();
    for seq in children(set, "component").filter_map(|c| child(c, "sequence")) {
        let c = code(seq).unwrap_or_default();
        let Some(v) = child(seq, "value") else {
            continue;
        };
        if c.starts_with("TIME_") {
            let inc = child(v, "increment").ok_or_else(|| invalid(v, "no increment"))?;
            let val = attr(inc, "value")
                .and_then(|x| num(&x))
                .filter(|x| *x > 0.0)
                .ok_or_else(|| invalid(inc, "increment must be a positive number"))?;
            let secs = match attr(inc, "unit").as_deref() {
                Some("s") => val,
                Some("ms") => val / 1000.0,
                Some("us") => val / 1_000_000.0,
                u => {
                    ctx.warn(format!("time increment unit {u:?} read as seconds"));
                    val
                }
            };
            rate = Some(1.0 / secs);
            continue;
        }
        let Some(digits) = child(v, "digits") else {
            continue;
        };
        let name = match leads::canonical_lead(&c) {
            Some(n) => n.to_string(),
            None if c.is_empty() => {
                ctx.warn("sequence without a lead code ignored".into());
                continue;
            }
            None => {
                ctx.warn(format!("lead code {c:?} kept as sent"));
                c.clone()
            }
        };
        let pq = |name: &str, ctx: &mut Ctx| -> Result<f64, EcgError> {
            let Some(n) = child(v, name) else {
                return Ok(if name == "scale" { 1.0 } else { 0.0 });
            };
            let x = attr(n, "value")
                .and_then(|x| num(&x))
                .ok_or_else(|| invalid(n, format!("{name} has no numeric value")))?;
            let unit = attr(n, "unit");
            Ok(x * match volts(unit.as_deref()) {
                Some(m) => m,
                None => {
                    ctx.warn(format!("{name} unit {unit:?} read as µV"));
                    1.0
                }
            })
        };
        let origin = pq("origin", ctx)?;
        let scale = pq("scale", ctx)?;
        // Borrowed from the document (no copy of the largest text in the file); std's
        // integer parsing measured faster here than atoi's checked one (35 vs 49 µs for
        // 5,000 samples).
        let txt = crate::xml::text_ref(digits);
        let mut samples = Vec::with_capacity(txt.len() / 3);
        for tok in txt.split_ascii_whitespace() {
            match tok.parse::<i32>() {
                Ok(x) => samples.push(x),
                Err(_) => {
                    return Err(invalid(digits, format!("digit {tok:?} is not an integer")));
                }
            }
        }
        leads_out.push(WaveLead {
            name,
            scale_uv: scale,
            origin_uv: origin,
            samples,
            derived: false,
        });
    }
    if leads_out.is_empty() {
        return Ok(None);
    }
    let rate = rate.ok_or_else(|| invalid(set, "no TIME_ABSOLUTE / TIME_RELATIVE sequence"))?;
    leads::sort(&mut leads_out);
    Ok(Some(WaveSeries {
        kind,
        sample_rate_hz: rate,
        leads: leads_out,
    }))
}

/// An annotation's value: PQ (value, unit), CE (code) or ST (text).
fn ann_value(a: Node) -> Option<(String, Option<String>)> {
    let v = child(a, "value")?;
    if let Some(x) = v.attribute("value") {
        return Some((x.trim().to_string(), attr(v, "unit")));
    }
    if let Some(c) = attr(v, "code") {
        return Some((c, None));
    }
    text(v).map(|t| (t, None))
}

fn ms(ctx: &mut Ctx, code: &str, value: &str, unit: Option<&str>) -> Option<i32> {
    let x = num(value)?;
    let f = match unit {
        Some("ms") => 1.0,
        Some("s") => 1000.0,
        None => {
            ctx.warn(format!("{code} has no unit; read as ms"));
            1.0
        }
        Some(u) => {
            ctx.warn(format!("{code} unit {u:?} not a time; ignored"));
            return None;
        }
    };
    Some((x * f).round() as i32)
}

fn bpm(ctx: &mut Ctx, code: &str, value: &str, unit: Option<&str>) -> Option<i32> {
    let x = num(value)?;
    match unit {
        Some("bpm") | Some("/min") | Some("{beats}/min") | Some("1/min") => {}
        Some("bmp") => ctx.warn(format!("{code} unit \"bmp\" read as bpm")),
        None => ctx.warn(format!("{code} has no unit; read as bpm")),
        Some(u) => ctx.warn(format!("{code} unit {u:?} read as bpm")),
    }
    Some(x.round() as i32)
}

fn deg(ctx: &mut Ctx, code: &str, value: &str, unit: Option<&str>) -> Option<i32> {
    let x = num(value)?;
    if unit != Some("deg") {
        ctx.warn(format!("{code} unit {unit:?} read as degrees"));
    }
    Some(x.round() as i32)
}

pub(crate) fn parse(doc: &Document, opts: &ParseOptions) -> Result<ParsedEcg, EcgError> {
    let root = doc.root_element();
    let tz = opts.time_zone;
    let mut ctx = Ctx { warnings: vec![] };

    // Series: the first rhythm series and its first derived representative beat.
    let mut series = Vec::new();
    let mut first_series = None;
    for s in children(root, "component").filter_map(|c| child(c, "series")) {
        let kind = match code(s).as_deref() {
            Some("REPRESENTATIVE_BEAT") | Some("MEDIAN_BEAT") => SeriesKind::RepresentativeBeat,
            _ => SeriesKind::Rhythm,
        };
        if series.iter().any(|x: &WaveSeries| x.kind == kind) {
            ctx.warn(format!("further {kind:?} series ignored"));
            continue;
        }
        if let Some(w) = read_series(&mut ctx, s, kind)? {
            first_series.get_or_insert(s);
            series.push(w);
        }
        for d in children(s, "derivation").filter_map(|d| child(d, "derivedSeries")) {
            if series
                .iter()
                .any(|x| x.kind == SeriesKind::RepresentativeBeat)
            {
                continue;
            }
            if let Some(w) = read_series(&mut ctx, d, SeriesKind::RepresentativeBeat)? {
                series.push(w);
            }
        }
    }
    if !series.iter().any(|s| s.kind == SeriesKind::Rhythm) && series.is_empty() {
        return Err(EcgError::Empty(
            "AnnotatedECG holds no series with lead data".into(),
        ));
    }
    series.sort_by_key(|s| s.kind == SeriesKind::RepresentativeBeat);

    // Identity and time.
    let id = child(root, "id");
    let uid = id.and_then(|i| match (attr(i, "root"), attr(i, "extension")) {
        (Some(r), Some(e)) => Some(format!("{r}^{e}")),
        (Some(r), None) => Some(r),
        (None, Some(e)) => Some(e),
        (None, None) => None,
    });
    if uid.is_none() {
        ctx.warn("AnnotatedECG has no document id".into());
    }
    let et = child(root, "effectiveTime");
    let acquired_at = et
        .and_then(|e| {
            ["center", "low", "high"]
                .iter()
                .find_map(|p| child(e, p).and_then(|n| attr(n, "value")))
        })
        .or_else(|| {
            first_series
                .and_then(|s| at(s, "effectiveTime/low"))
                .and_then(|n| attr(n, "value"))
        })
        .and_then(|v| {
            let t = times::hl7(&v, tz);
            if t.is_none() {
                ctx.warn(format!("effectiveTime {v:?} not understood"));
            }
            t
        });

    // Patient.
    let subj = root
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "trialSubject");
    let demo = subj.and_then(|s| child(s, "subjectDemographicPerson"));
    if let Some(d) = demo {
        let known = [
            "name",
            "administrativeGenderCode",
            "birthTime",
            "raceCode",
            "ethnicGroupCode",
        ];
        let extra: Vec<&str> = d
            .children()
            .filter(|c| c.is_element() && !known.contains(&c.tag_name().name()))
            .map(|c| c.tag_name().name())
            .collect();
        if !extra.is_empty() {
            ctx.warn(format!(
                "non-HL7 elements in subjectDemographicPerson: {}",
                extra.join(", ")
            ));
        }
    }
    let patient = EcgPatient {
        id: subj
            .and_then(|s| child(s, "id"))
            .and_then(|i| attr(i, "extension").or_else(|| attr(i, "root")))
            .or_else(|| demo.and_then(|d| text_at(d, "PatientID"))),
        name: demo.and_then(|d| text_at(d, "name")),
        sex: demo
            .and_then(|d| child(d, "administrativeGenderCode"))
            .and_then(|g| attr(g, "code"))
            .map(|c| match c.as_str() {
                "M" | "F" => c,
                _ => "U".into(),
            }),
        birth_date: demo
            .and_then(|d| child(d, "birthTime"))
            .and_then(|b| attr(b, "value"))
            .and_then(|v| times::hl7(&v, tz)),
        age: None,
    };

    // Device and filters from the first series.
    let mut device = EcgDevice::default();
    let mut signal = EcgSignal::default();
    if let Some(s) = first_series {
        if let Some(a) = at(s, "author/seriesAuthor") {
            let d = child(a, "manufacturedSeriesDevice");
            device.model = d.and_then(|d| text_at(d, "manufacturerModelName"));
            device.software = d.and_then(|d| text_at(d, "softwareName"));
            device.serial = d.and_then(|d| {
                text_at(d, "SerialNumber").or_else(|| {
                    child(d, "id")
                        .and_then(|i| attr(i, "extension"))
                        .filter(|e| e != "0")
                })
            });
            device.manufacturer = text_at(a, "manufacturerOrganization/name");
        }
        for cv in children(s, "controlVariable").filter_map(|c| child(c, "controlVariable")) {
            let kind = code(cv).unwrap_or_default();
            let freq = children(cv, "component")
                .filter_map(|c| child(c, "controlVariable"))
                .find(|c| code(*c).is_some_and(|k| k.ends_with("_FREQ")))
                .and_then(|c| child(c, "value"))
                .and_then(|v| attr(v, "value"))
                .filter(|v| num(v).is_some());
            match kind.as_str() {
                "MDC_ECG_CTL_VBL_ATTR_FILTER_LOW_PASS" => signal.low_pass_hz = freq,
                "MDC_ECG_CTL_VBL_ATTR_FILTER_HIGH_PASS" => signal.high_pass_hz = freq,
                "MDC_ECG_CTL_VBL_ATTR_FILTER_NOTCH" => signal.notch_hz = freq,
                _ => {}
            }
        }
    }

    // Annotations: first value per code is the global one; statements in order.
    let mut measurements = EcgMeasurements::default();
    let mut statements = Vec::new();
    let mut severity = None;
    let mut seen = HashSet::new();
    let mut qtc_zero = false;
    for a in root
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "annotation")
    {
        let Some(c) = code(a) else { continue };
        let Some((value, unit)) = ann_value(a) else {
            continue;
        };
        match c.as_str() {
            "MDC_ECG_INTERPRETATION_STATEMENT" | "MDC_ECG_INTERPRETATION_COMMENT" => {
                statements.push(EcgStatement {
                    text: value,
                    reason: None,
                    code: (c == "MDC_ECG_INTERPRETATION_COMMENT").then(|| "comment".to_string()),
                });
                continue;
            }
            "MDC_ECG_INTERPRETATION_SUMMARY" => {
                severity.get_or_insert(value);
                continue;
            }
            _ => {}
        }
        if !seen.insert(c.clone()) {
            continue;
        }
        let u = unit.as_deref();
        let m = &mut measurements;
        match c.as_str() {
            "MDC_ECG_HEART_RATE" => m.heart_rate_bpm = bpm(&mut ctx, &c, &value, u),
            "MDC_ECG_ATRIAL_RATE" => m.atrial_rate_bpm = bpm(&mut ctx, &c, &value, u),
            "MDC_ECG_TIME_PD_RR" => m.rr_ms = ms(&mut ctx, &c, &value, u),
            "MDC_ECG_TIME_PD_PR" => m.pr_ms = ms(&mut ctx, &c, &value, u),
            "MDC_ECG_TIME_PD_P" => m.p_ms = ms(&mut ctx, &c, &value, u),
            "MDC_ECG_TIME_PD_QRS" => m.qrs_ms = ms(&mut ctx, &c, &value, u),
            "MDC_ECG_TIME_PD_QT" => m.qt_ms = ms(&mut ctx, &c, &value, u),
            "MDC_ECG_TIME_PD_QTc"
            | "MDC_ECG_TIME_PD_QTcB"
            | "MDC_ECG_TIME_PD_QTcF"
            | "MDC_ECG_TIME_PD_QTcH"
            | "MINDRAY_ECG_TIME_PD_QTcH" => {
                let v = ms(&mut ctx, &c, &value, u);
                if v == Some(0) {
                    qtc_zero = true;
                    ctx.warn(format!("{c} = 0 treated as absent"));
                } else if m.qtc_ms.is_none() && v.is_some() {
                    m.qtc_ms = v;
                    m.qtc_formula = match c.rsplit('_').next() {
                        Some("QTcB") => Some("bazett".into()),
                        Some("QTcF") => Some("fridericia".into()),
                        Some("QTcH") => Some("hodges".into()),
                        _ => None,
                    };
                }
            }
            "MDC_ECG_ANGLE_P_FRONT" | "MINDRAY_ECG_P_AXIS" => {
                m.p_axis_deg = m.p_axis_deg.or(deg(&mut ctx, &c, &value, u))
            }
            "MDC_ECG_ANGLE_QRS_FRONT" | "MINDRAY_ECG_QRS_AXIS" => {
                m.qrs_axis_deg = m.qrs_axis_deg.or(deg(&mut ctx, &c, &value, u))
            }
            "MDC_ECG_ANGLE_T_FRONT" | "MINDRAY_ECG_T_AXIS" => {
                m.t_axis_deg = m.t_axis_deg.or(deg(&mut ctx, &c, &value, u))
            }
            _ => {}
        }
        measurements.raw.push(RawMeasurement {
            code: c,
            value,
            unit,
        });
    }
    if qtc_zero && measurements.qtc_ms.is_some() {
        ctx.warn("QTc taken from a vendor code because the MDC value is 0".into());
    }
    if series.is_empty() {
        return Err(EcgError::Empty(
            "AnnotatedECG holds no series with lead data".into(),
        ));
    }

    let body = EcgBody {
        identity: EcgIdentity {
            format: EcgFormat::Hl7Aecg,
            version: None,
            document_uid: uid,
            key: String::new(),
        },
        patient,
        order: EcgOrder {
            accession: None,
            reason: child(root, "reasonCode").and_then(|r| attr(r, "displayName")),
            location: None,
        },
        acquired_at,
        received_at: None,
        device,
        signal,
        series: vec![],
        measurements,
        statements,
        severity,
        confirmation: Default::default(),
        quality: vec![],
        critical: None,
        waveform: None,
        warnings: ctx.warnings,
    };
    Ok(ParsedEcg {
        body,
        waveform: Waveform { series },
    })
}
