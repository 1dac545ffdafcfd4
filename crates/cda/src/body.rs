//! The structured bodies: 检验报告 (lab) and 检查报告 (ECG, imaging) sections, each with its
//! narrative `<text>` in Chinese and its coded entries carrying the WS 363 data-element codes.

use huren_model::ecg::{ConfirmationState, EcgMeasurements};
use huren_model::{
    AbnormalFlag, EcgBody, ImagingBody, LabBody, LabObservation, Report, ReportStatus,
};

use crate::xml::Doc;
use crate::{oid, ts, CdaContext, CdaError};

/// Data elements (WS 363 codes) the two templates use.
pub mod de {
    /// 检查/检验方法名称.
    pub const METHOD: (&str, &str) = ("DE02.10.027.00", "检查(检验)方法名称");
    /// 检查/检验类别.
    pub const CATEGORY: (&str, &str) = ("DE04.30.018.00", "检查(检验)类别");
    /// 检查/检验项目代码.
    pub const ITEM: (&str, &str) = ("DE04.30.019.00", "检查(检验)项目代码");
    /// 检查/检验定量结果.
    pub const QUANTITY: (&str, &str) = ("DE04.30.015.00", "检查(检验)定量结果");
    /// 检查/检验定量结果计量单位.
    pub const UNIT: (&str, &str) = ("DE04.30.016.00", "检查(检验)定量结果计量单位");
    /// 检查/检验结果.
    pub const RESULT: (&str, &str) = ("DE04.30.017.00", "检查(检验)结果");
    /// 标本类别.
    pub const SPECIMEN: (&str, &str) = ("DE04.50.134.00", "标本类别");
    /// 检验报告结果.
    pub const LAB_CONCLUSION: (&str, &str) = ("DE04.50.130.00", "检验报告结果");
    /// 检查报告结果-客观所见.
    pub const FINDINGS: (&str, &str) = ("DE04.50.131.00", "检查报告结果-客观所见");
    /// 检查报告结果-主观提示.
    pub const IMPRESSION: (&str, &str) = ("DE04.50.132.00", "检查报告结果-主观提示");
    /// 检查/检验报告机构名称.
    pub const REPORT_ORG: (&str, &str) = ("DE08.10.013.00", "报告机构名称");
}

/// An entry's value.
enum Val<'a> {
    St(&'a str),
    Pq {
        value: &'a str,
        unit: Option<&'a str>,
    },
    Null,
}

fn status(s: ReportStatus) -> &'static str {
    match s {
        ReportStatus::Preliminary => "active",
        ReportStatus::Final | ReportStatus::Corrected => "completed",
        ReportStatus::Cancelled => "cancelled",
    }
}

fn open_body(d: &mut Doc) -> Result<(), CdaError> {
    d.open("component", &[])?;
    d.open("structuredBody", &[])
}

fn close_body(d: &mut Doc) -> Result<(), CdaError> {
    d.close()?;
    d.close()
}

/// `<component><section>` with a LOINC code, or a name-only code where the template has no code.
fn open_section(d: &mut Doc, loinc: Option<(&str, &str)>, title: &str) -> Result<(), CdaError> {
    d.open("component", &[])?;
    d.open("section", &[])?;
    match loinc {
        Some((code, name)) => d.empty(
            "code",
            &[
                ("code", code),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
                ("displayName", name),
            ],
        )?,
        None => d.empty("code", &[("displayName", title)])?,
    }
    d.text("title", &[], title)
}

fn close_section(d: &mut Doc) -> Result<(), CdaError> {
    d.close()?;
    d.close()
}

fn de_code(d: &mut Doc, (code, name): (&str, &str)) -> Result<(), CdaError> {
    d.empty(
        "code",
        &[
            ("code", code),
            ("codeSystem", oid::DATA_ELEMENTS),
            ("codeSystemName", "卫生信息数据元目录"),
            ("displayName", name),
        ],
    )
}

fn value(d: &mut Doc, v: &Val) -> Result<(), CdaError> {
    match v {
        Val::St(s) => d.text("value", &[("xsi:type", "ST")], s),
        Val::Pq { value, unit } => match unit {
            Some(u) => d.empty(
                "value",
                &[("xsi:type", "PQ"), ("value", value), ("unit", u)],
            ),
            None => d.empty("value", &[("xsi:type", "PQ"), ("value", value)]),
        },
        Val::Null => d.empty("value", &[("xsi:type", "ST"), ("nullFlavor", "NI")]),
    }
}

/// `<observation>` with a data-element code, an optional time and a value; left open.
fn open_obs(d: &mut Doc, el: (&str, &str), time: Option<&str>, v: &Val) -> Result<(), CdaError> {
    open_obs_named(d, el, None, time, v)
}

/// [`open_obs`] with the item's name as the observation's `text`.
fn open_obs_named(
    d: &mut Doc,
    el: (&str, &str),
    name: Option<&str>,
    time: Option<&str>,
    v: &Val,
) -> Result<(), CdaError> {
    d.open("observation", &[("classCode", "OBS"), ("moodCode", "EVN")])?;
    de_code(d, el)?;
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        d.text("text", &[], n)?;
    }
    if let Some(t) = time.and_then(ts) {
        d.empty("effectiveTime", &[("value", &t)])?;
    }
    value(d, v)
}

/// `<entry><observation …/></entry>`.
fn entry(d: &mut Doc, el: (&str, &str), time: Option<&str>, v: &Val) -> Result<(), CdaError> {
    d.open("entry", &[])?;
    open_obs(d, el, time, v)?;
    d.close()?;
    d.close()
}

/// A UCUM-shaped unit the schema's `cs` type accepts (no white space); others stay in the
/// unit entry only.
fn pq_unit(u: Option<&str>) -> Option<&str> {
    u.map(str::trim)
        .filter(|u| !u.is_empty() && !u.chars().any(char::is_whitespace))
}

/// A decimal number as sent (kept as text, so `5.60` stays `5.60`).
fn is_number(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (a, b) = t.split_once('.').unwrap_or((t, "0"));
    !a.is_empty()
        && !b.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.bytes().all(|c| c.is_ascii_digit())
}

fn numeric(o: &LabObservation) -> bool {
    matches!(o.value_type.as_deref(), Some("NM") | None) && is_number(&o.value)
}

/// HL7 ObservationInterpretation code and its Chinese name.
fn interpretation(f: AbnormalFlag) -> (&'static str, &'static str) {
    match f {
        AbnormalFlag::Normal => ("N", "正常"),
        AbnormalFlag::Low => ("L", "偏低"),
        AbnormalFlag::High => ("H", "偏高"),
        AbnormalFlag::CriticalLow => ("LL", "危急偏低"),
        AbnormalFlag::CriticalHigh => ("HH", "危急偏高"),
        AbnormalFlag::Abnormal => ("A", "异常"),
    }
}

fn flags_text(o: &LabObservation) -> String {
    o.abnormal_flags
        .iter()
        .map(|f| interpretation(*f).1)
        .collect::<Vec<_>>()
        .join("、")
}

/// `low-high` with both numbers, for an `IVL_PQ` range.
fn range_bounds(r: &str) -> Option<(&str, &str)> {
    let (lo, hi) = r.trim().split_once('-')?;
    let (lo, hi) = (lo.trim(), hi.trim());
    (is_number(lo) && is_number(hi)).then_some((lo, hi))
}

fn table(d: &mut Doc, head: &[&str], rows: &[Vec<String>]) -> Result<(), CdaError> {
    d.open("table", &[])?;
    d.open("thead", &[])?;
    d.open("tr", &[])?;
    for h in head {
        d.text("th", &[], h)?;
    }
    d.close()?;
    d.close()?;
    d.open("tbody", &[])?;
    for r in rows {
        d.open("tr", &[])?;
        for c in r {
            d.text("td", &[], c)?;
        }
        d.close()?;
    }
    d.close()?;
    d.close()
}

pub(crate) fn lab(
    d: &mut Doc,
    report: &Report,
    lab: &LabBody,
    ctx: &CdaContext,
) -> Result<(), CdaError> {
    open_body(d)?;
    open_section(d, Some(("30954-2", "STUDIES SUMMARY")), "实验室检查")?;
    let rows: Vec<Vec<String>> = lab
        .observations
        .iter()
        .map(|o| {
            vec![
                o.name.clone().unwrap_or_else(|| o.code.clone()),
                o.code.clone(),
                o.value.clone(),
                o.unit.clone().unwrap_or_default(),
                o.reference_range.clone().unwrap_or_default(),
                flags_text(o),
            ]
        })
        .collect();
    d.open("text", &[])?;
    if let Some(s) = lab.service_name.as_deref().or(lab.service_code.as_deref()) {
        d.text("paragraph", &[], &format!("检验类别：{s}"))?;
    }
    if let Some(s) = &lab.specimen {
        d.text("paragraph", &[], &format!("标本类别：{s}"))?;
    }
    table(
        d,
        &["检验项目", "代码", "结果", "单位", "参考范围", "提示"],
        &rows,
    )?;
    d.close()?;
    if let Some(s) = lab.service_name.as_deref().or(lab.service_code.as_deref()) {
        entry(d, de::CATEGORY, None, &Val::St(s))?;
    }
    for o in &lab.observations {
        d.open("entry", &[])?;
        d.open(
            "organizer",
            &[("classCode", "CLUSTER"), ("moodCode", "EVN")],
        )?;
        d.empty("statusCode", &[("code", status(report.status))])?;
        // The item.
        d.open("component", &[])?;
        let when = o.observed_at.as_deref().or(report.clinical_time());
        open_obs_named(d, de::ITEM, o.name.as_deref(), when, &Val::St(&o.code))?;
        if let Some(s) = &lab.specimen {
            d.open("entryRelationship", &[("typeCode", "COMP")])?;
            d.open("observation", &[("classCode", "OBS"), ("moodCode", "EVN")])?;
            de_code(d, de::SPECIMEN)?;
            if let Some(t) = report.specimen_collected_at.as_deref().and_then(ts) {
                d.open("effectiveTime", &[])?;
                d.empty("low", &[("value", &t)])?;
                d.close()?;
            }
            value(d, &Val::St(s))?;
            d.close()?;
            d.close()?;
        }
        d.close()?; // observation
        d.close()?; // component
                    // The result.
        d.open("component", &[])?;
        let unit = o.unit.as_deref().filter(|u| !u.trim().is_empty());
        if numeric(o) {
            open_obs(
                d,
                de::QUANTITY,
                None,
                &Val::Pq {
                    value: o.value.trim(),
                    unit: pq_unit(unit),
                },
            )?;
        } else {
            open_obs(d, de::RESULT, None, &Val::St(&o.value))?;
        }
        for f in &o.abnormal_flags {
            let (code, name) = interpretation(*f);
            d.empty(
                "interpretationCode",
                &[
                    ("code", code),
                    ("codeSystem", oid::INTERPRETATION),
                    ("codeSystemName", "ObservationInterpretation"),
                    ("displayName", name),
                ],
            )?;
        }
        if let (true, Some(u)) = (numeric(o), unit) {
            d.open("entryRelationship", &[("typeCode", "COMP")])?;
            open_obs(d, de::UNIT, None, &Val::St(u))?;
            d.close()?;
            d.close()?;
        }
        if let Some(r) = o
            .reference_range
            .as_deref()
            .filter(|r| !r.trim().is_empty())
        {
            d.open("referenceRange", &[])?;
            d.open("observationRange", &[])?;
            d.text("text", &[], r)?;
            if let (true, Some((lo, hi))) = (numeric(o), range_bounds(r)) {
                d.open("value", &[("xsi:type", "IVL_PQ")])?;
                let u = pq_unit(unit);
                for (el, v) in [("low", lo), ("high", hi)] {
                    match u {
                        Some(u) => d.empty(el, &[("value", v), ("unit", u)])?,
                        None => d.empty(el, &[("value", v)])?,
                    }
                }
                d.close()?;
            }
            d.empty(
                "interpretationCode",
                &[("code", "N"), ("codeSystem", oid::INTERPRETATION)],
            )?;
            d.close()?;
            d.close()?;
        }
        d.close()?; // observation
        d.close()?; // component
        d.close()?; // organizer
        d.close()?; // entry
    }
    close_section(d)?;

    open_section(d, None, "检验报告")?;
    d.open("text", &[])?;
    if let Some(c) = &report.conclusion {
        d.text("paragraph", &[], &format!("检验报告结果：{c}"))?;
    }
    if let Some(n) = &ctx.custodian.name {
        d.text("paragraph", &[], &format!("报告机构：{n}"))?;
    }
    if let Some(t) = &report.reported_at {
        d.text("paragraph", &[], &format!("报告时间：{t}"))?;
    }
    d.close()?;
    let conclusion = report.conclusion.as_deref().map_or(Val::Null, Val::St);
    entry(
        d,
        de::LAB_CONCLUSION,
        report.reported_at.as_deref(),
        &conclusion,
    )?;
    if let Some(n) = &ctx.custodian.name {
        entry(d, de::REPORT_ORG, None, &Val::St(n))?;
    }
    close_section(d)?;
    close_body(d)
}

/// An ECG's global measurements: Chinese label, item code, value, UCUM unit, unit as shown.
fn measurements(
    m: &EcgMeasurements,
) -> Vec<(&'static str, &'static str, i32, &'static str, &'static str)> {
    let rows = [
        ("心率", "HR", m.heart_rate_bpm, "/min", "次/分"),
        ("心房率", "AR", m.atrial_rate_bpm, "/min", "次/分"),
        ("RR间期", "RR", m.rr_ms, "ms", "ms"),
        ("PR间期", "PR", m.pr_ms, "ms", "ms"),
        ("P波时限", "P", m.p_ms, "ms", "ms"),
        ("QRS时限", "QRS", m.qrs_ms, "ms", "ms"),
        ("QT间期", "QT", m.qt_ms, "ms", "ms"),
        ("QTc间期", "QTc", m.qtc_ms, "ms", "ms"),
        ("P电轴", "PAXIS", m.p_axis_deg, "deg", "°"),
        ("QRS电轴", "QRSAXIS", m.qrs_axis_deg, "deg", "°"),
        ("T电轴", "TAXIS", m.t_axis_deg, "deg", "°"),
    ];
    rows.into_iter()
        .filter_map(|(l, c, v, u, s)| v.map(|v| (l, c, v, u, s)))
        .collect()
}

/// One exam item: label (narrative), code (entry), and its measured quantity if any.
struct Item {
    label: String,
    code: String,
    /// Number, UCUM unit, unit as shown.
    quantity: Option<(String, &'static str, &'static str)>,
}

/// The exam-items section (体格检查, LOINC 29545-1): method, category, and one cluster per
/// measured item.
fn exam_items(
    d: &mut Doc,
    report: &Report,
    method: Option<&str>,
    category: &str,
    when: Option<&str>,
    items: &[Item],
    narrative: &[String],
) -> Result<(), CdaError> {
    open_section(d, Some(("29545-1", "PHYSICAL EXAMINATION")), "检查项目")?;
    d.open("text", &[])?;
    for p in narrative {
        d.text("paragraph", &[], p)?;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .filter_map(|i| {
            i.quantity
                .as_ref()
                .map(|(v, _, shown)| vec![i.label.clone(), format!("{v} {shown}")])
        })
        .collect();
    if !rows.is_empty() {
        table(d, &["检查项目", "结果"], &rows)?;
    }
    d.close()?;
    if let Some(m) = method {
        entry(d, de::METHOD, None, &Val::St(m))?;
    }
    entry(d, de::CATEGORY, None, &Val::St(category))?;
    for Item {
        label,
        code,
        quantity,
    } in items
    {
        d.open("entry", &[])?;
        d.open(
            "organizer",
            &[("classCode", "CLUSTER"), ("moodCode", "EVN")],
        )?;
        d.empty("statusCode", &[("code", status(report.status))])?;
        d.open("component", &[])?;
        open_obs_named(d, de::ITEM, Some(label), when, &Val::St(code))?;
        d.close()?;
        d.close()?;
        if let Some((num, unit, _)) = quantity {
            d.open("component", &[])?;
            open_obs(
                d,
                de::QUANTITY,
                None,
                &Val::Pq {
                    value: num,
                    unit: Some(unit),
                },
            )?;
            d.open("entryRelationship", &[("typeCode", "COMP")])?;
            open_obs(d, de::UNIT, None, &Val::St(unit))?;
            d.close()?;
            d.close()?;
            d.close()?;
            d.close()?;
        }
        d.close()?;
        d.close()?;
    }
    close_section(d)
}

/// The 检查报告 section: 客观所见 and 主观提示 (one entry per statement), report organisation.
fn exam_report(
    d: &mut Doc,
    report: &Report,
    ctx: &CdaContext,
    findings: Option<&str>,
    impressions: &[String],
    notes: &[String],
) -> Result<(), CdaError> {
    open_section(d, None, "检查报告")?;
    d.open("text", &[])?;
    d.text(
        "paragraph",
        &[],
        &format!("客观所见：{}", findings.unwrap_or("无")),
    )?;
    if impressions.is_empty() {
        d.text("paragraph", &[], "主观提示：无")?;
    } else {
        d.text("paragraph", &[], "主观提示：")?;
        d.open("list", &[("listType", "ordered")])?;
        for s in impressions {
            d.text("item", &[], s)?;
        }
        d.close()?;
    }
    for n in notes {
        d.text("paragraph", &[], n)?;
    }
    d.close()?;
    let when = report.reported_at.as_deref();
    entry(d, de::FINDINGS, when, &findings.map_or(Val::Null, Val::St))?;
    if impressions.is_empty() {
        entry(d, de::IMPRESSION, when, &Val::Null)?;
    }
    for s in impressions {
        entry(d, de::IMPRESSION, when, &Val::St(s))?;
    }
    if let Some(n) = &ctx.custodian.name {
        entry(d, de::REPORT_ORG, None, &Val::St(n))?;
    }
    close_section(d)
}

pub(crate) fn ecg(
    d: &mut Doc,
    report: &Report,
    ecg: &EcgBody,
    ctx: &CdaContext,
) -> Result<(), CdaError> {
    let ms = measurements(&ecg.measurements);
    let items: Vec<Item> = ms
        .iter()
        .map(|(l, c, v, u, shown)| Item {
            label: l.to_string(),
            code: c.to_string(),
            quantity: Some((v.to_string(), *u, *shown)),
        })
        .collect();
    let when = ecg
        .acquired_at
        .as_deref()
        .or(report.performed_at.as_deref());
    let mut narrative = Vec::new();
    if let Some(t) = &ecg.acquired_at {
        narrative.push(format!("检查时间：{t}"));
    }
    let device = [
        ecg.device.manufacturer.as_deref(),
        ecg.device.model.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    if !device.is_empty() {
        narrative.push(format!("设备：{device}"));
    }
    open_body(d)?;
    exam_items(
        d,
        report,
        Some("静息心电图"),
        "心电图",
        when,
        &items,
        &narrative,
    )?;
    let findings = ms
        .iter()
        .map(|(l, _, v, _, shown)| format!("{l} {v} {shown}"))
        .collect::<Vec<_>>()
        .join("；");
    let statements: Vec<String> = ecg.statements.iter().map(|s| s.text.clone()).collect();
    let mut notes = Vec::new();
    if let Some(s) = &ecg.severity {
        notes.push(format!("总体判断：{s}"));
    }
    if let Some(c) = &ecg.critical {
        notes.push(format!("危急值：{}（{}）", c.label, c.statement));
    }
    let c = &ecg.confirmation;
    notes.push(match (c.state, &c.physician) {
        (ConfirmationState::Confirmed, Some(p)) => format!(
            "医师确认：{p}{}",
            c.confirmed_at
                .as_deref()
                .map(|t| format!("，{t}"))
                .unwrap_or_default()
        ),
        (ConfirmationState::Confirmed, None) => "医师确认：是".into(),
        (ConfirmationState::Unconfirmed, _) => "未经医师确认（仪器自动分析）".into(),
        (ConfirmationState::Unknown, _) => "医师确认：文件未说明".into(),
    });
    exam_report(
        d,
        report,
        ctx,
        (!findings.is_empty()).then_some(findings.as_str()),
        &statements,
        &notes,
    )?;
    close_body(d)
}

pub(crate) fn imaging(
    d: &mut Doc,
    report: &Report,
    img: &ImagingBody,
    ctx: &CdaContext,
) -> Result<(), CdaError> {
    let category = if img.modalities.is_empty() {
        "影像检查".to_string()
    } else {
        img.modalities.join("/")
    };
    let item = img.description.clone().unwrap_or_else(|| category.clone());
    let mut narrative = vec![format!("检查项目：{item}")];
    if !img.body_parts.is_empty() {
        narrative.push(format!("检查部位：{}", img.body_parts.join("、")));
    }
    narrative.push(format!(
        "序列数 {}，图像数 {}",
        img.series_count, img.instance_count
    ));
    let items = vec![Item {
        label: item.clone(),
        code: item.clone(),
        quantity: None,
    }];
    open_body(d)?;
    exam_items(
        d,
        report,
        img.description.as_deref(),
        &category,
        report.performed_at.as_deref(),
        &items,
        &narrative,
    )?;
    let (findings, impressions) = match (&img.reading, &img.sr) {
        (Some(r), _) => (r.findings.clone(), r.impression.clone()),
        (None, Some(sr)) => (sr.findings.clone(), sr.impression.iter().cloned().collect()),
        (None, None) => (None, report.conclusion.iter().cloned().collect()),
    };
    exam_report(d, report, ctx, findings.as_deref(), &impressions, &[])?;
    close_body(d)
}
