//! The document header (CDA R2 order: realmCode … relatedDocument), shared by C0006 and C0007.

use huren_model::ecg::ConfirmationState;
use huren_model::{Report, ReportKind};

use crate::xml::Doc;
use crate::{oid, ts, CdaContext, CdaError, DocumentType};

/// A person (or device) who wrote or signed the report, with the time when the model has it.
struct Person {
    name: Option<String>,
    device: Option<(String, String)>,
    time: Option<String>,
}

pub(crate) fn begin(report: &Report, ctx: &CdaContext, ty: DocumentType) -> Result<Doc, CdaError> {
    let created = ts(&ctx.created_at).ok_or_else(|| {
        CdaError::Context(format!("created_at {:?} is not a time", ctx.created_at))
    })?;
    if ctx.version == 0 {
        return Err(CdaError::Context("version must be 1 or more".into()));
    }
    let mut d = Doc::new()?;
    d.open(
        "ClinicalDocument",
        &[
            ("xmlns", "urn:hl7-org:v3"),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        ],
    )?;
    d.empty("realmCode", &[("code", "CN")])?;
    d.empty(
        "typeId",
        &[
            ("root", "2.16.840.1.113883.1.3"),
            ("extension", "POCD_MT000040"),
        ],
    )?;
    d.empty("templateId", &[("root", ty.template())])?;
    let hex = ctx.hash.hex();
    d.empty("id", &[("root", oid::DOCUMENT_ID), ("extension", &hex)])?;
    d.empty(
        "code",
        &[
            ("code", ty.code()),
            ("codeSystem", oid::DOCUMENT_CODES),
            ("codeSystemName", "卫生信息共享文档规范编码体系"),
        ],
    )?;
    d.text("title", &[], ty.title())?;
    d.empty("effectiveTime", &[("value", &created)])?;
    d.empty(
        "confidentialityCode",
        &[
            ("code", "N"),
            ("codeSystem", oid::CONFIDENTIALITY),
            ("codeSystemName", "Confidentiality"),
            ("displayName", "正常访问保密级别"),
        ],
    )?;
    d.empty("languageCode", &[("code", "zh-CN")])?;
    let set = report.source.chain_key(report.kind);
    d.empty("setId", &[("root", oid::DOCUMENT_ID), ("extension", &set)])?;
    d.empty("versionNumber", &[("value", &ctx.version.to_string())])?;
    record_target(&mut d, report, ctx, ty)?;
    let (author, signer) = people(report);
    write_author(&mut d, report, ctx, &author, &created)?;
    custodian(&mut d, ctx)?;
    if let Some(s) = signer {
        legal_authenticator(&mut d, &s)?;
    }
    if let Some(r) = &ctx.replaces {
        d.open("relatedDocument", &[("typeCode", "RPLC")])?;
        d.open("parentDocument", &[])?;
        d.empty(
            "id",
            &[("root", oid::DOCUMENT_ID), ("extension", &r.hash.hex())],
        )?;
        d.empty("setId", &[("root", oid::DOCUMENT_ID), ("extension", &set)])?;
        d.empty("versionNumber", &[("value", &r.version.to_string())])?;
        d.close()?;
        d.close()?;
    }
    Ok(d)
}

pub(crate) fn end(mut d: Doc) -> Result<String, CdaError> {
    d.close()?; // ClinicalDocument
    d.finish()
}

fn record_target(
    d: &mut Doc,
    report: &Report,
    ctx: &CdaContext,
    ty: DocumentType,
) -> Result<(), CdaError> {
    let p = &report.patient;
    d.open(
        "recordTarget",
        &[("typeCode", "RCT"), ("contextControlCode", "OP")],
    )?;
    d.open("patientRole", &[("classCode", "PAT")])?;
    if p.local_id.is_empty() {
        d.empty("id", &[("nullFlavor", "UNK")])?;
    } else {
        d.empty(
            "id",
            &[
                ("root", &ctx.patient_id_root),
                ("extension", &p.local_id),
                ("assigningAuthorityName", &p.institution),
            ],
        )?;
    }
    let report_no_root = match ty {
        DocumentType::Lab => oid::LAB_REPORT_NO,
        DocumentType::Exam => oid::EXAM_REPORT_NO,
    };
    let report_no = report
        .order
        .filler
        .as_deref()
        .unwrap_or(&report.source.source_key);
    d.empty("id", &[("root", report_no_root), ("extension", report_no)])?;
    let order = report.order.placer.as_deref().or_else(|| {
        report
            .ecg
            .as_ref()
            .and_then(|e| e.order.accession.as_deref())
            .or_else(|| {
                report
                    .imaging
                    .as_ref()
                    .and_then(|i| i.accession_number.as_deref())
            })
    });
    if let Some(o) = order.filter(|o| !o.is_empty()) {
        d.empty("id", &[("root", oid::ORDER_NO), ("extension", o)])?;
    }
    d.open(
        "patient",
        &[("classCode", "PSN"), ("determinerCode", "INSTANCE")],
    )?;
    if ctx.include_national_id && p.national_id_key.is_some() {
        if let Some(nid) = ctx.national_id.as_deref().filter(|n| !n.is_empty()) {
            d.empty("id", &[("root", oid::NATIONAL_ID), ("extension", nid)])?;
        }
    }
    if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
        d.text("name", &[], n)?;
    }
    let (code, name) = sex(p.sex.as_deref());
    d.empty(
        "administrativeGenderCode",
        &[
            ("code", code),
            ("codeSystem", oid::SEX),
            ("codeSystemName", "生理性别代码表(GB/T 2261.1)"),
            ("displayName", name),
        ],
    )?;
    if let Some(b) = p.birth_date.as_deref().and_then(ts) {
        d.empty("birthTime", &[("value", &b)])?;
    }
    d.close()?; // patient
    d.close()?; // patientRole
    d.close()?; // recordTarget
    Ok(())
}

/// GB/T 2261.1 from the HL7 administrative sex (or the GB code itself).
fn sex(s: Option<&str>) -> (&'static str, &'static str) {
    match s.map(str::trim) {
        Some("M" | "m" | "1" | "男") => ("1", "男性"),
        Some("F" | "f" | "2" | "女") => ("2", "女性"),
        Some("U" | "u" | "0") | None => ("0", "未知的性别"),
        Some(_) => ("9", "未说明的性别"),
    }
}

/// The report's author and, when it was signed by a physician, its legal authenticator.
fn people(report: &Report) -> (Person, Option<Person>) {
    let unknown = Person {
        name: None,
        device: None,
        time: report.reported_at.clone(),
    };
    match report.kind {
        ReportKind::Lab => (unknown, None),
        ReportKind::Ecg => {
            let Some(e) = report.ecg.as_ref() else {
                return (unknown, None);
            };
            let c = &e.confirmation;
            if c.state == ConfirmationState::Confirmed && c.physician.is_some() {
                let p = Person {
                    name: c.physician.clone(),
                    device: None,
                    time: c.confirmed_at.clone().or(report.reported_at.clone()),
                };
                let s = Person {
                    name: c.physician.clone(),
                    device: None,
                    time: c.confirmed_at.clone(),
                };
                return (p, Some(s));
            }
            let model = [e.device.manufacturer.as_deref(), e.device.model.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let device =
                (!model.is_empty()).then(|| (model, e.device.software.clone().unwrap_or_default()));
            (
                Person {
                    name: None,
                    device,
                    time: e.acquired_at.clone().or(report.reported_at.clone()),
                },
                None,
            )
        }
        ReportKind::Imaging => {
            let Some(i) = report.imaging.as_ref() else {
                return (unknown, None);
            };
            if let Some(r) = &i.reading {
                let p = Person {
                    name: Some(r.reader.clone()),
                    device: None,
                    time: Some(r.signed_at.clone()),
                };
                let s = Person {
                    name: Some(r.reader.clone()),
                    device: None,
                    time: Some(r.signed_at.clone()),
                };
                return (p, Some(s));
            }
            if let Some(sr) = &i.sr {
                let p = Person {
                    name: sr.verifying_observer.clone(),
                    device: None,
                    time: sr.content_time.clone().or(report.reported_at.clone()),
                };
                let signer = (sr.is_final() && sr.verifying_observer.is_some()).then(|| Person {
                    name: sr.verifying_observer.clone(),
                    device: None,
                    time: sr.content_time.clone(),
                });
                return (p, signer);
            }
            (unknown, None)
        }
    }
}

fn write_author(
    d: &mut Doc,
    report: &Report,
    ctx: &CdaContext,
    a: &Person,
    created: &str,
) -> Result<(), CdaError> {
    d.open(
        "author",
        &[("typeCode", "AUT"), ("contextControlCode", "OP")],
    )?;
    // The schema requires a time: the report's own when the model has it, else the document's.
    let t = a.time.as_deref().and_then(ts);
    d.empty("time", &[("value", t.as_deref().unwrap_or(created))])?;
    d.open("assignedAuthor", &[("classCode", "ASSIGNED")])?;
    d.empty("id", &[("nullFlavor", "UNK")])?;
    if let Some(n) = &a.name {
        d.open("assignedPerson", &[])?;
        d.text("name", &[], n)?;
        d.close()?;
    } else if let Some((model, software)) = &a.device {
        d.open("assignedAuthoringDevice", &[])?;
        d.text("manufacturerModelName", &[], model)?;
        if !software.is_empty() {
            d.text("softwareName", &[], software)?;
        }
        d.close()?;
    }
    d.open("representedOrganization", &[])?;
    let own = report.source.institution == ctx.custodian.institution;
    let code = if own {
        &ctx.custodian.code
    } else {
        &report.source.institution
    };
    d.empty("id", &[("root", oid::ORGANISATION), ("extension", code)])?;
    if let Some(n) = ctx.custodian.name.as_ref().filter(|_| own) {
        d.text("name", &[], n)?;
    }
    d.close()?;
    d.close()?; // assignedAuthor
    d.close()?; // author
    Ok(())
}

fn custodian(d: &mut Doc, ctx: &CdaContext) -> Result<(), CdaError> {
    d.open("custodian", &[("typeCode", "CST")])?;
    d.open("assignedCustodian", &[("classCode", "ASSIGNED")])?;
    d.open(
        "representedCustodianOrganization",
        &[("classCode", "ORG"), ("determinerCode", "INSTANCE")],
    )?;
    d.empty(
        "id",
        &[
            ("root", oid::ORGANISATION),
            ("extension", &ctx.custodian.code),
        ],
    )?;
    if let Some(n) = &ctx.custodian.name {
        d.text("name", &[], n)?;
    }
    d.close()?;
    d.close()?;
    d.close()?;
    Ok(())
}

fn legal_authenticator(d: &mut Doc, s: &Person) -> Result<(), CdaError> {
    let Some(t) = s.time.as_deref().and_then(ts) else {
        return Ok(()); // the schema needs the signing time; without it, no signer element
    };
    d.open("legalAuthenticator", &[("typeCode", "LA")])?;
    d.empty("time", &[("value", &t)])?;
    d.empty("signatureCode", &[("code", "S")])?;
    d.open("assignedEntity", &[])?;
    d.empty("id", &[("nullFlavor", "UNK")])?;
    d.empty("code", &[("displayName", "审核医师")])?;
    if let Some(n) = &s.name {
        d.open(
            "assignedPerson",
            &[("classCode", "PSN"), ("determinerCode", "INSTANCE")],
        )?;
        d.text("name", &[], n)?;
        d.close()?;
    }
    d.close()?;
    d.close()?;
    Ok(())
}
