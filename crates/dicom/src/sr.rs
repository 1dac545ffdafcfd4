//! Structured report text: walks the SR content tree (TEXT, CODE, NUM with units, DATE,
//! TIME, DATETIME, PNAME; CONTAINERs as headings) into findings and impression text.
//! Image/waveform/coordinate references carry no text and are skipped.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use huren_model::SrReport;

use crate::text;

/// Deepest content tree walked; deeper items are ignored (hostile input).
const MAX_DEPTH: usize = 32;
/// Most lines kept per part.
const MAX_LINES: usize = 2000;

fn items(o: &InMemDicomObject, t: Tag) -> &[InMemDicomObject] {
    o.get(t).and_then(|e| e.items()).unwrap_or(&[])
}

fn concept(o: &InMemDicomObject) -> (Option<String>, Option<String>) {
    match items(o, tags::CONCEPT_NAME_CODE_SEQUENCE).first() {
        Some(c) => (text(c, tags::CODE_MEANING), text(c, tags::CODE_VALUE)),
        None => (None, None),
    }
}

/// Impression / conclusion sections by code (DCM 121072–121077) or by name.
fn is_impression(name: Option<&str>, code: Option<&str>) -> bool {
    if matches!(
        code,
        Some("121072" | "121073" | "121076" | "121077" | "121074")
    ) {
        return true;
    }
    let Some(n) = name else { return false };
    let l = n.to_lowercase();
    ["impression", "conclusion", "诊断", "印象", "结论", "意见"]
        .iter()
        .any(|k| l.contains(k))
}

fn value(o: &InMemDicomObject, vt: &str) -> Option<String> {
    match vt {
        "TEXT" => text(o, tags::TEXT_VALUE),
        "CODE" => items(o, tags::CONCEPT_CODE_SEQUENCE)
            .first()
            .and_then(|c| text(c, tags::CODE_MEANING).or_else(|| text(c, tags::CODE_VALUE))),
        "NUM" => {
            let mv = items(o, tags::MEASURED_VALUE_SEQUENCE).first()?;
            let n = text(mv, tags::NUMERIC_VALUE)?;
            let unit = items(mv, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)
                .first()
                .and_then(|u| text(u, tags::CODE_VALUE).or_else(|| text(u, tags::CODE_MEANING)))
                .filter(|u| u != "1" && u != "{ratio}");
            Some(match unit {
                Some(u) => format!("{n} {u}"),
                None => n,
            })
        }
        "DATE" => text(o, tags::DATE),
        "TIME" => text(o, tags::TIME),
        "DATETIME" => text(o, tags::DATE_TIME),
        "PNAME" => text(o, tags::PERSON_NAME),
        _ => None,
    }
}

struct Out {
    findings: Vec<String>,
    impression: Vec<String>,
}

impl Out {
    fn push(&mut self, impression: bool, line: String) {
        let v = if impression {
            &mut self.impression
        } else {
            &mut self.findings
        };
        if v.len() < MAX_LINES {
            v.push(line);
        }
    }
}

fn walk(o: &InMemDicomObject, depth: usize, in_impression: bool, out: &mut Out) {
    if depth > MAX_DEPTH {
        return;
    }
    for item in items(o, tags::CONTENT_SEQUENCE) {
        let vt = text(item, tags::VALUE_TYPE).unwrap_or_default();
        let (name, code) = concept(item);
        let imp = in_impression || is_impression(name.as_deref(), code.as_deref());
        let indent = "  ".repeat(depth);
        if vt == "CONTAINER" {
            // Section headings only inside findings; an impression section is its own part.
            if let (Some(n), false) = (&name, imp) {
                out.push(false, format!("{indent}{n}:"));
            }
            walk(item, depth + 1, imp, out);
        } else if let Some(v) = value(item, &vt) {
            let line = match &name {
                Some(n) if !imp || vt != "TEXT" => format!("{indent}{n}: {v}"),
                _ => format!("{indent}{v}"),
            };
            out.push(imp, line);
            // Items may have children (HAS PROPERTIES, INFERRED FROM).
            walk(item, depth + 1, imp, out);
        }
    }
}

fn join(lines: Vec<String>) -> Option<String> {
    // Strip the common indentation so a flat report reads flat.
    let min = lines
        .iter()
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let s: Vec<String> = lines.iter().map(|l| l[min..].to_string()).collect();
    let s = s.join("\n");
    (!s.trim().is_empty()).then_some(s)
}

/// The SR text of a data set, when it is a structured report (root Value Type CONTAINER
/// with a Content Sequence).
pub fn read_sr(o: &InMemDicomObject, sop_instance_uid: &str) -> Option<SrReport> {
    if text(o, tags::VALUE_TYPE).as_deref() != Some("CONTAINER")
        || o.get(tags::CONTENT_SEQUENCE).is_none()
    {
        return None;
    }
    let mut out = Out {
        findings: Vec::new(),
        impression: Vec::new(),
    };
    walk(o, 0, false, &mut out);
    let content_time = match (text(o, tags::CONTENT_DATE), text(o, tags::CONTENT_TIME)) {
        (Some(d), t) if d.len() == 8 => {
            let t = t.unwrap_or_else(|| "000000".into());
            let t: String = t.chars().filter(|c| c.is_ascii_digit()).take(6).collect();
            let t = format!("{t:0<6}");
            Some(format!(
                "{}-{}-{}T{}:{}:{}",
                &d[0..4],
                &d[4..6],
                &d[6..8],
                &t[0..2],
                &t[2..4],
                &t[4..6]
            ))
        }
        _ => None,
    };
    Some(SrReport {
        sop_instance_uid: sop_instance_uid.to_string(),
        title: concept(o).0,
        findings: join(out.findings),
        impression: join(out.impression),
        completion_flag: text(o, tags::COMPLETION_FLAG),
        verification_flag: text(o, tags::VERIFICATION_FLAG),
        verifying_observer: items(o, tags::VERIFYING_OBSERVER_SEQUENCE)
            .first()
            .and_then(|v| text(v, tags::VERIFYING_OBSERVER_NAME)),
        content_time,
    })
}

#[cfg(test)]
mod tests {
    use crate::fixtures;

    #[test]
    fn chinese_sr_gives_findings_impression_and_flags() {
        let f = fixtures::part10(&fixtures::sr_object("1.2.3", "P1", "张^三", true));
        let i = crate::parse_file(&f).unwrap();
        let sr = i.sr.unwrap();
        assert_eq!(sr.title.as_deref(), Some("影像诊断报告"));
        let findings = sr.findings.clone().unwrap();
        assert!(
            findings.contains("所见: 右肺上叶见一磨玻璃结节"),
            "{findings}"
        );
        assert!(findings.contains("结节大小: 8 mm"), "{findings}");
        assert!(findings.contains("部位: 右肺上叶"), "{findings}");
        assert_eq!(
            sr.impression.as_deref(),
            Some("右肺上叶磨玻璃结节，建议3个月后复查。")
        );
        assert!(sr.is_final());
        assert_eq!(sr.verifying_observer.as_deref(), Some("王^主任"));
        assert_eq!(sr.content_time.as_deref(), Some("2025-11-03T10:15:00"));
        let p = fixtures::part10(&fixtures::sr_object("1.2.3", "P1", "张^三", false));
        assert!(!crate::parse_file(&p).unwrap().sr.unwrap().is_final());
    }
}
