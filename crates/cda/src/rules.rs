//! The template rules the CDA R2 schema cannot see (templateId and document code, document
//! ID, custodian, where a national ID may stand, required sections and entries with their
//! data-element codes, value types), checked on any document text, ours or a sender's.

use roxmltree::{Document, Node};

use crate::oid;

const V3: &str = "urn:hl7-org:v3";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule's name (`header.template`, `body.sections`, …; see `docs/cda.md`).
    pub rule: &'static str,
    /// What is wrong, and where.
    pub message: String,
}

/// Every rule the document breaks; empty when it passes.
pub fn check(xml: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut fail = |rule: &'static str, message: String| out.push(Violation { rule, message });
    let doc = match Document::parse(xml) {
        Ok(d) => d,
        Err(e) => {
            fail("parse", format!("not well-formed XML: {e}"));
            return out;
        }
    };
    let root = doc.root_element();
    if !(root.has_tag_name((V3, "ClinicalDocument"))) {
        fail(
            "parse",
            "the root is not urn:hl7-org:v3 ClinicalDocument".into(),
        );
        return out;
    }

    // Header.
    if child(root, "realmCode").and_then(|n| n.attribute("code")) != Some("CN") {
        fail("header.realm", "realmCode must be CN".into());
    }
    let templates: Vec<&str> = root
        .children()
        .filter(|c| c.has_tag_name((V3, "templateId")))
        .filter_map(|c| c.attribute("root"))
        .collect();
    let kind = if templates.contains(&oid::LAB_TEMPLATE) {
        Some(("C0007", true))
    } else if templates.contains(&oid::EXAM_TEMPLATE) {
        Some(("C0006", false))
    } else {
        fail(
            "header.template",
            format!(
                "no templateId {} (检验报告) or {} (检查报告)",
                oid::LAB_TEMPLATE,
                oid::EXAM_TEMPLATE
            ),
        );
        None
    };
    let code = child(root, "code");
    let code_value = code.and_then(|c| c.attribute("code"));
    match kind {
        Some((want, _)) if code_value != Some(want) => fail(
            "header.code",
            format!("document code {code_value:?} does not match the template's {want}"),
        ),
        _ => {}
    }
    if code.and_then(|c| c.attribute("codeSystem")) != Some(oid::DOCUMENT_CODES) {
        fail(
            "header.code",
            format!("document code system must be {}", oid::DOCUMENT_CODES),
        );
    }
    let id = child(root, "id");
    if id.and_then(|i| i.attribute("root")) != Some(oid::DOCUMENT_ID)
        || id
            .and_then(|i| i.attribute("extension"))
            .is_none_or(str::is_empty)
    {
        fail(
            "header.id",
            format!(
                "the document id needs root {} and an extension",
                oid::DOCUMENT_ID
            ),
        );
    }
    let custodian_org = root
        .descendants()
        .find(|n| n.has_tag_name((V3, "representedCustodianOrganization")));
    if custodian_org
        .and_then(|o| child(o, "id"))
        .and_then(|i| i.attribute("root"))
        != Some(oid::ORGANISATION)
    {
        fail(
            "header.custodian",
            format!("the custodian's id needs root {}", oid::ORGANISATION),
        );
    }
    for n in root
        .descendants()
        .filter(|n| n.has_tag_name((V3, "id")) && n.attribute("root") == Some(oid::NATIONAL_ID))
    {
        let under_patient = n.parent().is_some_and(|p| p.has_tag_name((V3, "patient")))
            && n.ancestors().any(|a| a.has_tag_name((V3, "recordTarget")));
        if !under_patient {
            fail(
                "header.national-id",
                format!(
                    "an id under {} (national ID) outside recordTarget/patientRole/patient",
                    oid::NATIONAL_ID
                ),
            );
        }
    }

    // Entries: data-element codes and value types.
    for obs in root
        .descendants()
        .filter(|n| n.has_tag_name((V3, "observation")))
    {
        let Some(c) = child(obs, "code") else {
            continue;
        };
        let Some(de) = c.attribute("code").filter(|v| v.starts_with("DE")) else {
            continue;
        };
        if !is_de_code(de) || c.attribute("codeSystem") != Some(oid::DATA_ELEMENTS) {
            fail(
                "entry.de-code",
                format!(
                    "{de}: a data-element code is DEdd.dd.ddd.dd under {}",
                    oid::DATA_ELEMENTS
                ),
            );
        }
        let value = child(obs, "value");
        let ty = value.and_then(|v| v.attribute((XSI, "type")));
        let want = match de {
            "DE04.30.015.00" => Some("PQ"),
            "DE04.30.016.00" | "DE04.30.019.00" | "DE04.50.130.00" | "DE04.50.131.00"
            | "DE04.50.132.00" | "DE04.30.018.00" | "DE02.10.027.00" => Some("ST"),
            _ => None,
        };
        if let Some(w) = want {
            if ty != Some(w) {
                fail(
                    "entry.value-type",
                    format!("{de}: value must be xsi:type=\"{w}\", is {ty:?}"),
                );
            } else if w == "PQ" {
                let ok = value
                    .and_then(|v| v.attribute("value"))
                    .is_some_and(|v| v.trim().parse::<f64>().is_ok_and(f64::is_finite));
                if !ok {
                    fail(
                        "entry.value-type",
                        format!("{de}: a PQ needs a numeric value"),
                    );
                }
            }
        }
    }

    // Sections.
    let sections: Vec<Node> = root
        .descendants()
        .filter(|n| n.has_tag_name((V3, "section")))
        .collect();
    let section = |code: &str| {
        sections.iter().copied().find(|s| {
            child(*s, "code").is_some_and(|c| {
                c.attribute("code") == Some(code) || c.attribute("displayName") == Some(code)
            })
        })
    };
    let has_entry = |s: Node<'_, '_>, de: &str| {
        s.descendants().any(|n| {
            n.has_tag_name((V3, "code"))
                && n.attribute("code") == Some(de)
                && n.parent()
                    .is_some_and(|p| p.has_tag_name((V3, "observation")))
        })
    };
    match kind {
        Some((_, true)) => {
            match section("30954-2") {
                None => fail(
                    "body.sections",
                    "检验报告 needs the 实验室检查 section (LOINC 30954-2)".into(),
                ),
                Some(s) => {
                    let organizers: Vec<Node> = s
                        .descendants()
                        .filter(|n| n.has_tag_name((V3, "organizer")))
                        .collect();
                    if organizers.is_empty() {
                        fail("body.sections", "实验室检查 has no result (organizer)".into());
                    }
                    for o in organizers {
                        if !has_entry(o, "DE04.30.019.00") {
                            fail(
                                "body.sections",
                                "a result organizer lacks its item (DE04.30.019.00)".into(),
                            );
                        }
                    }
                }
            }
            match section("检验报告") {
                Some(s) if has_entry(s, "DE04.50.130.00") => {}
                _ => fail(
                    "body.sections",
                    "检验报告 needs the 检验报告 section with 检验报告结果 (DE04.50.130.00)".into(),
                ),
            }
        }
        Some((_, false)) => match section("检查报告") {
            Some(s) if has_entry(s, "DE04.50.131.00") && has_entry(s, "DE04.50.132.00") => {}
            _ => fail(
                "body.sections",
                "检查报告 needs the 检查报告 section with 客观所见 (DE04.50.131.00) and 主观提示 (DE04.50.132.00)"
                    .into(),
            ),
        },
        None => {}
    }
    out
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name((V3, name)))
}

fn is_de_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 14
        && s.starts_with("DE")
        && [2, 3, 5, 6, 8, 9, 10, 12, 13]
            .iter()
            .all(|i| b[*i].is_ascii_digit())
        && b[4] == b'.'
        && b[7] == b'.'
        && b[11] == b'.'
}
