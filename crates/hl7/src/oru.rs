//! Outbound ORU^R01: a signed ECG report going back to the institution that recorded it
//! (issue 17). The inverse of [`crate::interpret`] for ECG reports, kept here because this
//! crate owns HL7 text (delimiters, escapes, timestamps) and already builds ACKs; it does no
//! I/O. The message is HL7 v2.5.1 in UTF-8 (MSH-18 `UNICODE UTF-8`), segments ended by CR.

use chrono::{DateTime, FixedOffset};
use huren_model::Report;

/// What the sender side of an outbound ORU needs beyond the report.
pub struct OruContext<'a> {
    /// MSH-10: stable across retries (derived from the report hash by the caller).
    pub control_id: &'a str,
    /// MSH-7 when the report has no `reported_at`.
    pub now: DateTime<FixedOffset>,
}

/// Escapes one value for a field, component or subcomponent: `| ^ ~ \ &` become `\F\ \S\ \R\
/// \E\ \T\`, a line break `\.br\`; other control characters a space.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '&' => out.push_str("\\T\\"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\.br\\");
            }
            '\n' => out.push_str("\\.br\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An RFC 3339 time (or `YYYY-MM-DD`) as HL7 DTM (`YYYYMMDDHHMMSS+ZZZZ`, or `YYYYMMDD`).
fn dtm(s: &str) -> String {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t.format("%Y%m%d%H%M%S%z").to_string();
    }
    s.chars().filter(char::is_ascii_digit).take(8).collect()
}

/// HL7 result status of a report: F, C (corrected), X, P.
fn result_status(report: &Report) -> &'static str {
    match report.status {
        huren_model::ReportStatus::Final => "F",
        huren_model::ReportStatus::Corrected => "C",
        huren_model::ReportStatus::Cancelled => "X",
        huren_model::ReportStatus::Preliminary => "P",
    }
}

/// The result status and the MSH and PID segments of an outbound ORU from `centre`.
fn header(report: &Report, ctx: &OruContext<'_>, centre: &str) -> (&'static str, Vec<String>) {
    let e = escape;
    let msg_time = report
        .reported_at
        .as_deref()
        .map(dtm)
        .unwrap_or_else(|| ctx.now.format("%Y%m%d%H%M%S%z").to_string());
    let mut segs = Vec::new();
    segs.push(format!(
        "MSH|^~\\&|HUREN|{}||{}|{}||ORU^R01^ORU_R01|{}|P|2.5.1||||||UNICODE UTF-8",
        e(centre),
        e(&report.source.institution),
        msg_time,
        e(ctx.control_id),
    ));
    let p = &report.patient;
    segs.push(format!(
        "PID|1||{}^^^{}^PI||{}||{}|{}",
        e(&p.local_id),
        e(&p.institution),
        p.name.as_deref().map(e).unwrap_or_default(),
        p.birth_date.as_deref().map(dtm).unwrap_or_default(),
        p.sex.as_deref().map(e).unwrap_or_default(),
    ));
    (result_status(report), segs)
}

/// The ORU^R01 of a report signed in the reading centre: ECG ([`build_ecg_oru`]) or imaging
/// ([`build_imaging_oru`]).
pub fn build_oru(report: &Report, ctx: &OruContext<'_>) -> Result<String, String> {
    match report.kind {
        huren_model::ReportKind::Imaging => build_imaging_oru(report, ctx),
        _ => build_ecg_oru(report, ctx),
    }
}

/// The ORU^R01 of an imaging report signed in the reading centre: MSH and PID as for an ECG,
/// OBR (`18748-4` diagnostic imaging study, the study description as its text; OBR-3 the
/// accession, else the Study Instance UID; OBR-24 `RAD`; result status F or C; the reader at
/// the centre in OBR-32), the amendment's reason in an NTE, then OBX: the Study Instance UID
/// (ST, DCM `110180`), the findings (TX, `59776-5`) and each impression statement (ST,
/// `19005-8` impression).
pub fn build_imaging_oru(report: &Report, ctx: &OruContext<'_>) -> Result<String, String> {
    let Some(img) = report.imaging.as_deref() else {
        return Err("not an imaging report".into());
    };
    let Some(reading) = img.reading.as_ref() else {
        return Err("the study has no report signed in the reading centre".into());
    };
    let e = escape;
    let (status, mut segs) = header(report, ctx, &reading.centre);
    let mut obr = vec![String::new(); 33];
    obr[0] = "OBR".into();
    obr[1] = "1".into();
    obr[2] = report.order.placer.as_deref().map(e).unwrap_or_default();
    obr[3] = e(img
        .accession_number
        .as_deref()
        .unwrap_or(&img.study_instance_uid));
    obr[4] = format!(
        "18748-4^{}^LN",
        e(img
            .description
            .as_deref()
            .unwrap_or("Diagnostic imaging study"))
    );
    let observed = report.performed_at.as_deref().map(dtm).unwrap_or_default();
    obr[7] = observed.clone();
    obr[22] = report.reported_at.as_deref().map(dtm).unwrap_or_default();
    obr[24] = "RAD".into();
    obr[25] = status.into();
    obr[32] = format!("{}&&&&&&&&{}", e(&reading.reader), e(&reading.centre));
    segs.push(obr.join("|"));
    if let Some(reason) = reading
        .amendment_reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
    {
        segs.push(format!("NTE|1|L|{}|RE", e(reason)));
    }
    let mut n = 0;
    let mut obx = |vt: &str, code: &str, sub: &str, value: String| {
        n += 1;
        segs.push(format!(
            "OBX|{n}|{vt}|{code}|{sub}|{value}||||||{status}|||{observed}"
        ));
    };
    obx(
        "ST",
        "110180^Study Instance UID^DCM",
        "",
        e(&img.study_instance_uid),
    );
    if let Some(f) = reading.findings.as_deref().filter(|f| !f.trim().is_empty()) {
        obx("TX", "59776-5^Procedure findings^LN", "", e(f));
    }
    for (i, s) in reading.impression.iter().enumerate() {
        obx(
            "ST",
            "19005-8^Radiology Imaging study [Impression] (narrative)^LN",
            &(i + 1).to_string(),
            e(s),
        );
    }
    let mut out = segs.join("\r");
    out.push('\r');
    Ok(out)
}

/// The ORU^R01 of a signed ECG report: MSH (HUREN, receiving facility = the acquiring
/// institution), PID (local id with the institution as assigning authority, name, sex,
/// birth date), OBR (EKG study; placer/filler order or accession; result status F, or C for
/// an amended (corrected) report, whose reason follows in an NTE; the reader at the centre as
/// principal result interpreter, OBR-32), then OBX: each statement (ST,
/// `18844-1` EKG impression), the conclusion (TX, `59776-5` procedure findings) and the key
/// measurements present (NM: heart rate, PR, QRS, QT, QTc).
pub fn build_ecg_oru(report: &Report, ctx: &OruContext<'_>) -> Result<String, String> {
    let Some(ecg) = report.ecg.as_deref() else {
        return Err("not an ECG report".into());
    };
    let e = escape;
    let conf = &ecg.confirmation;
    let centre = conf.centre.as_deref().unwrap_or("HUREN");
    let (status, mut segs) = header(report, ctx, centre);
    let placer = report.order.placer.as_deref().map(e).unwrap_or_default();
    let filler = ecg
        .order
        .accession
        .as_deref()
        .or(report.order.filler.as_deref())
        .unwrap_or(&report.source.source_key);
    let observed = report
        .performed_at
        .as_deref()
        .or(ecg.acquired_at.as_deref())
        .map(dtm)
        .unwrap_or_default();
    let reported = report.reported_at.as_deref().map(dtm).unwrap_or_default();
    // OBR-32 (NDL): name as CNN subcomponents — ID & … & assigning authority (the centre).
    let interpreter = match &conf.physician {
        Some(r) => format!("{}&&&&&&&&{}", e(r), e(centre)),
        None => String::new(),
    };
    let mut obr = vec![String::new(); 33];
    obr[0] = "OBR".into();
    obr[1] = "1".into();
    obr[2] = placer;
    obr[3] = e(filler);
    obr[4] = "11524-6^EKG study^LN".into();
    obr[7] = observed.clone();
    obr[22] = reported;
    obr[24] = "EC".into();
    obr[25] = status.into();
    obr[32] = interpreter;
    segs.push(obr.join("|"));
    // An amendment (result status C) says why, in a note on the order (NTE-4 RE, remark).
    if let Some(reason) = conf
        .amendment_reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
    {
        segs.push(format!("NTE|1|L|{}|RE", e(reason)));
    }
    let mut n = 0;
    let mut obx = |vt: &str, code: &str, sub: &str, value: String, unit: &str| {
        n += 1;
        segs.push(format!(
            "OBX|{n}|{vt}|{code}|{sub}|{value}|{unit}|||||{status}|||{observed}"
        ));
    };
    for (i, s) in ecg.statements.iter().enumerate() {
        obx(
            "ST",
            "18844-1^EKG impression^LN",
            &(i + 1).to_string(),
            e(&s.text),
            "",
        );
    }
    if let Some(c) = report
        .conclusion
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        obx("TX", "59776-5^Procedure findings^LN", "", e(c), "");
    }
    let m = &ecg.measurements;
    let key = [
        (m.heart_rate_bpm, "8867-4^Heart rate^LN", "/min^/min^UCUM"),
        (m.pr_ms, "8625-6^P-R Interval^LN", "ms^ms^UCUM"),
        (m.qrs_ms, "8633-0^QRS duration^LN", "ms^ms^UCUM"),
        (m.qt_ms, "8634-8^Q-T interval^LN", "ms^ms^UCUM"),
        (m.qtc_ms, "8636-3^Q-T interval corrected^LN", "ms^ms^UCUM"),
    ];
    for (v, code, unit) in key {
        if let Some(v) = v {
            obx("NM", code, "", v.to_string(), unit);
        }
    }
    let mut out = segs.join("\r");
    out.push('\r');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Charset, Message};
    use huren_model::ecg::*;
    use huren_model::*;

    fn report() -> Report {
        let mut body: EcgBody = serde_json::from_value(serde_json::json!({
            "identity": {"format": "hl7-aecg", "key": "k1"},
            "measurements": {"heart_rate_bpm": 72, "pr_ms": 160, "qrs_ms": 90, "qtc_ms": 420},
        }))
        .unwrap();
        body.order.accession = Some("ACC|1".into());
        body.statements = vec![
            EcgStatement {
                text: "窦性心律".into(),
                reason: None,
                code: None,
            },
            EcgStatement {
                text: "ST^T 改变 & 其他~\\".into(),
                reason: None,
                code: None,
            },
        ];
        body.confirmation.physician = Some("dr.zx".into());
        body.confirmation.centre = Some("fx-ecg".into());
        Report {
            kind: ReportKind::Ecg,
            source: Source {
                institution: "FX-SQ01".into(),
                system: SystemKind::Ecg,
                application: None,
                source_key: "k1".into(),
            },
            patient: PatientRef {
                institution: "FX-SQ01".into(),
                local_id: "P|001".into(),
                assigning_authority: None,
                national_id_key: None,
                name: Some("张三".into()),
                sex: Some("M".into()),
                birth_date: Some("1950-03-01".into()),
            },
            status: ReportStatus::Final,
            order: OrderIds::default(),
            specimen_collected_at: None,
            performed_at: Some("2026-12-06T08:00:00+08:00".into()),
            reported_at: Some("2026-12-06T08:10:00+08:00".into()),
            lab: None,
            ecg: Some(Box::new(body)),
            imaging: None,
            conclusion: Some("下壁 ST 段抬高\n建议转诊".into()),
            original: ContentHash::of(b"x"),
            attachments: vec![],
        }
    }

    #[test]
    fn the_oru_round_trips_through_our_parser() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T09:00:00+08:00").unwrap();
        let text = build_ecg_oru(
            &report(),
            &OruContext {
                control_id: "0123456789abcdef0123",
                now,
            },
        )
        .unwrap();
        let m = Message::parse(text.as_bytes(), Some(Charset::Utf8)).unwrap();
        let h = m.header();
        assert_eq!(h.control_id, "0123456789abcdef0123");
        let segs: Vec<_> = m.segments().collect();
        let msh = &segs[0];
        assert_eq!(msh.field(3), "HUREN");
        assert_eq!(msh.field(6), "FX-SQ01");
        assert_eq!(msh.field(7), "20261206081000+0800");
        assert_eq!(msh.component(9, 1), "ORU");
        assert_eq!(msh.component(9, 2), "R01");
        assert_eq!(msh.field(12), "2.5.1");
        assert_eq!(msh.field(18), "UNICODE UTF-8");
        let pid = segs.iter().find(|s| s.id() == "PID").unwrap();
        assert_eq!(pid.component(3, 1), "P|001");
        assert_eq!(pid.component(3, 4), "FX-SQ01");
        assert_eq!(pid.field(5), "张三");
        assert_eq!(pid.field(7), "19500301");
        let obr = segs.iter().find(|s| s.id() == "OBR").unwrap();
        assert_eq!(obr.field(3), "ACC|1");
        assert_eq!(obr.field(25), "F");
        assert_eq!(obr.subcomponent(32, 1, 1), "dr.zx");
        assert_eq!(obr.subcomponent(32, 1, 9), "fx-ecg");
        let obx: Vec<_> = segs.iter().filter(|s| s.id() == "OBX").collect();
        assert_eq!(obx.len(), 2 + 1 + 4, "{text}");
        assert_eq!(obx[0].field(5), "窦性心律");
        assert_eq!(obx[1].field(5), "ST^T 改变 & 其他~\\");
        assert_eq!(obx[2].field(2), "TX");
        assert_eq!(obx[2].field(5), "下壁 ST 段抬高\n建议转诊");
        assert_eq!(obx[3].component(3, 1), "8867-4");
        assert_eq!(obx[3].field(5), "72");
        assert_eq!(obx[6].component(3, 1), "8636-3");
        assert_eq!(obx[6].field(5), "420");
        assert!(obx.iter().all(|o| o.field(11) == "F"));
        assert_eq!(obx[0].field(14), "20261206080000+0800");
        assert!(segs.iter().all(|s| s.id() != "NTE"));
        // And it reads back as an ECG-free ORU through the inbound mapping without panicking.
        let _ = crate::check(text.as_bytes(), None);
    }

    #[test]
    fn an_imaging_report_signed_at_the_centre() {
        let mut r = report();
        r.kind = ReportKind::Imaging;
        r.ecg = None;
        let mut body = ImagingBody {
            study_instance_uid: "1.2.3".into(),
            accession_number: Some("A1".into()),
            description: Some("胸部CT平扫".into()),
            ..Default::default()
        };
        assert!(build_oru(
            &r,
            &OruContext {
                control_id: "c",
                now: DateTime::parse_from_rfc3339("2026-12-06T09:00:00+08:00").unwrap()
            }
        )
        .is_err());
        body.reading = Some(ImagingReading {
            findings: Some("右肺上叶结节 8mm".into()),
            impression: vec!["右肺上叶结节".into(), "建议随访".into()],
            reader: "dr.zx".into(),
            centre: "fx-img".into(),
            task: "t-1".into(),
            signed_at: "2026-12-06T08:10:00+08:00".into(),
            amendment_reason: None,
        });
        r.imaging = Some(Box::new(body));
        let text = build_oru(
            &r,
            &OruContext {
                control_id: "c2",
                now: DateTime::parse_from_rfc3339("2026-12-06T09:00:00+08:00").unwrap(),
            },
        )
        .unwrap();
        let m = Message::parse(text.as_bytes(), Some(Charset::Utf8)).unwrap();
        let segs: Vec<_> = m.segments().collect();
        assert_eq!(segs[0].field(3), "HUREN");
        assert_eq!(segs[0].field(4), "fx-img");
        let obr = segs.iter().find(|s| s.id() == "OBR").unwrap();
        assert_eq!(obr.field(3), "A1");
        assert_eq!(obr.component(4, 1), "18748-4");
        assert_eq!(obr.component(4, 2), "胸部CT平扫");
        assert_eq!(obr.field(24), "RAD");
        assert_eq!(obr.field(25), "F");
        assert_eq!(obr.subcomponent(32, 1, 1), "dr.zx");
        let obx: Vec<_> = segs.iter().filter(|s| s.id() == "OBX").collect();
        assert_eq!(obx.len(), 4, "{text}");
        assert_eq!(obx[0].field(5), "1.2.3");
        assert_eq!(obx[1].field(5), "右肺上叶结节 8mm");
        assert_eq!(obx[3].field(5), "建议随访");
        assert!(segs.iter().all(|s| s.id() != "NTE"));
    }

    #[test]
    fn an_amended_report_is_corrected_with_its_reason() {
        let mut r = report();
        r.status = ReportStatus::Corrected;
        if let Some(e) = r.ecg.as_mut() {
            e.confirmation.amendment_reason = Some("导联接反|已更正".into());
        }
        let now = DateTime::parse_from_rfc3339("2026-12-06T09:00:00+08:00").unwrap();
        let text = build_ecg_oru(
            &r,
            &OruContext {
                control_id: "c1",
                now,
            },
        )
        .unwrap();
        let m = Message::parse(text.as_bytes(), Some(Charset::Utf8)).unwrap();
        let segs: Vec<_> = m.segments().collect();
        let obr = segs.iter().position(|s| s.id() == "OBR").unwrap();
        assert_eq!(segs[obr].field(25), "C");
        assert_eq!(segs[obr + 1].id(), "NTE", "{text}");
        assert_eq!(segs[obr + 1].field(3), "导联接反|已更正");
        let obx: Vec<_> = segs.iter().filter(|s| s.id() == "OBX").collect();
        assert!(obx.iter().all(|o| o.field(11) == "C"));
    }
}
