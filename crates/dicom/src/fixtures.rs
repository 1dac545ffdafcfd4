//! Generators of the project's own DICOM test objects (`fixtures/dicom/`): a small CT, a CT
//! whose patient name is GB18030, a Comprehensive SR with Chinese findings, a 12-lead ECG
//! waveform. Deterministic (fixed UIDs and values), so the committed files can be checked
//! against their generator and regenerated with `UPDATE_FIXTURES=1`.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// CT Image Storage.
pub const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// Comprehensive SR Storage.
pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";
/// 12-lead ECG Waveform Storage.
pub const ECG_12_LEAD: &str = "1.2.840.10008.5.1.4.1.1.9.1.1";
/// Root of the UIDs the fixtures use.
pub const UID_ROOT: &str = "1.2.826.0.1.3680043.10.1447.9";

fn put(o: &mut InMemDicomObject, t: Tag, vr: VR, v: impl Into<PrimitiveValue>) {
    o.put(DataElement::new(t, vr, v.into()));
}

fn seq(o: &mut InMemDicomObject, t: Tag, items: Vec<InMemDicomObject>) {
    o.put(DataElement::new(t, VR::SQ, DataSetSequence::from(items)));
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut c = InMemDicomObject::new_empty();
    put(&mut c, tags::CODE_VALUE, VR::SH, value);
    put(&mut c, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put(&mut c, tags::CODE_MEANING, VR::LO, meaning);
    c
}

#[allow(clippy::too_many_arguments)]
fn common(
    o: &mut InMemDicomObject,
    charset: &str,
    sop_class: &str,
    study: &str,
    series: &str,
    sop: &str,
    pid: &str,
    name: &str,
    modality: &str,
) {
    put(o, tags::SPECIFIC_CHARACTER_SET, VR::CS, charset);
    put(o, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put(o, tags::SOP_INSTANCE_UID, VR::UI, sop);
    put(o, tags::STUDY_DATE, VR::DA, "20251103");
    put(o, tags::STUDY_TIME, VR::TM, "093000");
    put(o, tags::ACCESSION_NUMBER, VR::SH, "ACC20251103");
    put(o, tags::MODALITY, VR::CS, modality);
    put(o, tags::INSTITUTION_NAME, VR::LO, "奉贤区中心医院");
    put(o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "李^医生");
    put(o, tags::STUDY_DESCRIPTION, VR::LO, "胸部CT平扫");
    put(o, tags::PATIENT_NAME, VR::PN, name);
    put(o, tags::PATIENT_ID, VR::LO, pid);
    put(o, tags::ISSUER_OF_PATIENT_ID, VR::LO, "FX-ZX");
    put(o, tags::PATIENT_BIRTH_DATE, VR::DA, "19800101");
    put(o, tags::PATIENT_SEX, VR::CS, "F");
    put(o, tags::STUDY_INSTANCE_UID, VR::UI, study);
    put(o, tags::SERIES_INSTANCE_UID, VR::UI, series);
    put(o, tags::STUDY_ID, VR::SH, "1");
}

/// A 16×16 16-bit CT slice of study `study`, patient `pid` named `name` (UTF-8).
pub fn ct_object(study: &str, pid: &str, name: &str) -> InMemDicomObject {
    ct_slice(study, pid, name, 1, "ISO_IR 192")
}

/// CT slice number `n` (SOP Instance UID `STUDY.1.n`, series `STUDY.1`).
pub fn ct_slice(study: &str, pid: &str, name: &str, n: u32, charset: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let series = format!("{study}.1");
    let sop = format!("{series}.{n}");
    common(
        &mut o, charset, CT_IMAGE, study, &series, &sop, pid, name, "CT",
    );
    put(&mut o, tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    put(&mut o, tags::SERIES_DESCRIPTION, VR::LO, "胸部 5mm");
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "1");
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, n.to_string());
    put(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
    put(
        &mut o,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    put(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put(&mut o, tags::ROWS, VR::US, PrimitiveValue::from(16u16));
    put(&mut o, tags::COLUMNS, VR::US, PrimitiveValue::from(16u16));
    put(
        &mut o,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    );
    put(
        &mut o,
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(12u16),
    );
    put(&mut o, tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16));
    put(
        &mut o,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );
    put(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    put(&mut o, tags::RESCALE_SLOPE, VR::DS, "1");
    put(&mut o, tags::WINDOW_CENTER, VR::DS, "40");
    put(&mut o, tags::WINDOW_WIDTH, VR::DS, "400");
    let px: Vec<u16> = (0..256u32)
        .map(|i| (((i % 16) * 16 + (i / 16) * 8 + n) % 4096) as u16 + 800)
        .collect();
    put(
        &mut o,
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(px.into()),
    );
    o
}

/// A Comprehensive SR of `study` with Chinese findings and impression; complete and verified
/// when `final_`.
pub fn sr_object(study: &str, pid: &str, name: &str, final_: bool) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let series = format!("{study}.9");
    let sop = format!("{series}.1");
    common(
        &mut o,
        "ISO_IR 192",
        COMPREHENSIVE_SR,
        study,
        &series,
        &sop,
        pid,
        name,
        "SR",
    );
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "9");
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, "1");
    put(&mut o, tags::CONTENT_DATE, VR::DA, "20251103");
    put(&mut o, tags::CONTENT_TIME, VR::TM, "101500");
    put(&mut o, tags::VALUE_TYPE, VR::CS, "CONTAINER");
    put(&mut o, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    seq(
        &mut o,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code("18748-4", "LN", "影像诊断报告")],
    );
    put(
        &mut o,
        tags::COMPLETION_FLAG,
        VR::CS,
        if final_ { "COMPLETE" } else { "PARTIAL" },
    );
    put(
        &mut o,
        tags::VERIFICATION_FLAG,
        VR::CS,
        if final_ { "VERIFIED" } else { "UNVERIFIED" },
    );
    if final_ {
        let mut v = InMemDicomObject::new_empty();
        put(&mut v, tags::VERIFYING_OBSERVER_NAME, VR::PN, "王^主任");
        put(
            &mut v,
            tags::VERIFICATION_DATE_TIME,
            VR::DT,
            "20251103110000",
        );
        put(
            &mut v,
            tags::VERIFYING_ORGANIZATION,
            VR::LO,
            "奉贤区中心医院",
        );
        seq(&mut o, tags::VERIFYING_OBSERVER_SEQUENCE, vec![v]);
    }
    let item = |vt: &str, name: InMemDicomObject, f: &dyn Fn(&mut InMemDicomObject)| {
        let mut i = InMemDicomObject::new_empty();
        put(&mut i, tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS");
        put(&mut i, tags::VALUE_TYPE, VR::CS, vt);
        seq(&mut i, tags::CONCEPT_NAME_CODE_SEQUENCE, vec![name]);
        f(&mut i);
        i
    };
    let finding_text = item("TEXT", code("121071", "DCM", "所见"), &|i| {
        put(
            i,
            tags::TEXT_VALUE,
            VR::UT,
            "右肺上叶见一磨玻璃结节，边界清楚。",
        )
    });
    let size = item("NUM", code("G-D7FE", "SRT", "结节大小"), &|i| {
        let mut mv = InMemDicomObject::new_empty();
        put(&mut mv, tags::NUMERIC_VALUE, VR::DS, "8");
        seq(
            &mut mv,
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            vec![code("mm", "UCUM", "millimeter")],
        );
        seq(i, tags::MEASURED_VALUE_SEQUENCE, vec![mv]);
    });
    let site = item("CODE", code("G-C0E3", "SRT", "部位"), &|i| {
        seq(
            i,
            tags::CONCEPT_CODE_SEQUENCE,
            vec![code("T-28830", "SRT", "右肺上叶")],
        )
    });
    let findings = item("CONTAINER", code("121070", "DCM", "Findings"), &|i| {
        put(i, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
        seq(
            i,
            tags::CONTENT_SEQUENCE,
            vec![finding_text.clone(), size.clone(), site.clone()],
        );
    });
    let impression_text = item("TEXT", code("121073", "DCM", "印象"), &|i| {
        put(
            i,
            tags::TEXT_VALUE,
            VR::UT,
            "右肺上叶磨玻璃结节，建议3个月后复查。",
        )
    });
    let impression = item("CONTAINER", code("121072", "DCM", "Impressions"), &|i| {
        put(i, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
        seq(i, tags::CONTENT_SEQUENCE, vec![impression_text.clone()]);
    });
    seq(&mut o, tags::CONTENT_SEQUENCE, vec![findings, impression]);
    o
}

/// A minimal 12-lead ECG waveform object (one multiplex group, 2 channels × 100 samples).
pub fn ecg_object(study: &str, pid: &str, name: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let series = format!("{study}.5");
    let sop = format!("{series}.1");
    common(
        &mut o,
        "ISO_IR 192",
        ECG_12_LEAD,
        study,
        &series,
        &sop,
        pid,
        name,
        "ECG",
    );
    put(&mut o, tags::SERIES_NUMBER, VR::IS, "5");
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, "1");
    let mut g = InMemDicomObject::new_empty();
    put(&mut g, tags::MULTIPLEX_GROUP_TIME_OFFSET, VR::DS, "0");
    put(&mut g, tags::WAVEFORM_ORIGINALITY, VR::CS, "ORIGINAL");
    put(
        &mut g,
        tags::NUMBER_OF_WAVEFORM_CHANNELS,
        VR::US,
        PrimitiveValue::from(2u16),
    );
    put(
        &mut g,
        tags::NUMBER_OF_WAVEFORM_SAMPLES,
        VR::UL,
        PrimitiveValue::from(100u32),
    );
    put(&mut g, tags::SAMPLING_FREQUENCY, VR::DS, "500");
    put(&mut g, tags::MULTIPLEX_GROUP_LABEL, VR::SH, "RHYTHM");
    let ch = |label: &str, cv: &str| {
        let mut c = InMemDicomObject::new_empty();
        seq(
            &mut c,
            tags::CHANNEL_SOURCE_SEQUENCE,
            vec![code(cv, "SCPECG", label)],
        );
        put(&mut c, tags::CHANNEL_SENSITIVITY, VR::DS, "1");
        seq(
            &mut c,
            tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE,
            vec![code("uV", "UCUM", "microvolt")],
        );
        put(&mut c, tags::CHANNEL_BASELINE, VR::DS, "0");
        put(
            &mut c,
            tags::WAVEFORM_BITS_STORED,
            VR::US,
            PrimitiveValue::from(16u16),
        );
        c
    };
    seq(
        &mut g,
        tags::CHANNEL_DEFINITION_SEQUENCE,
        vec![ch("Lead I", "5.6.3-9-1"), ch("Lead II", "5.6.3-9-2")],
    );
    put(
        &mut g,
        tags::WAVEFORM_BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    );
    put(&mut g, tags::WAVEFORM_SAMPLE_INTERPRETATION, VR::CS, "SS");
    let samples: Vec<i16> = (0..200i32).map(|i| ((i * 37) % 400 - 200) as i16).collect();
    put(
        &mut g,
        tags::WAVEFORM_DATA,
        VR::OW,
        PrimitiveValue::I16(samples.into()),
    );
    seq(&mut o, tags::WAVEFORM_SEQUENCE, vec![g]);
    o
}

/// Encodes a data set in transfer syntax `ts` (no meta group).
pub fn encode(o: &InMemDicomObject, ts: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(ts) = TransferSyntaxRegistry.get(ts) {
        // The generators only build values every native transfer syntax can write.
        if o.write_dataset_with_ts(&mut out, ts).is_err() {
            out.clear();
        }
    }
    out
}

/// A Part 10 file of the object in Explicit VR Little Endian.
pub fn part10(o: &InMemDicomObject) -> Vec<u8> {
    let ds = encode(o, crate::EXPLICIT_VR_LE);
    let class = crate::text(o, tags::SOP_CLASS_UID).unwrap_or_default();
    let inst = crate::text(o, tags::SOP_INSTANCE_UID).unwrap_or_default();
    crate::to_part10(&ds, crate::EXPLICIT_VR_LE, &class, &inst)
}

/// The CT data set of [`ct_object`] in Explicit VR Little Endian.
pub fn ct_dataset(study: &str, pid: &str, name: &str) -> Vec<u8> {
    encode(&ct_object(study, pid, name), crate::EXPLICIT_VR_LE)
}

/// Every project fixture: `(file name, Part 10 bytes)`.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let study = format!("{UID_ROOT}.1");
    vec![
        (
            "ct_series_1.dcm",
            part10(&ct_slice(&study, "FX0001", "张^三", 1, "ISO_IR 192")),
        ),
        (
            "ct_series_2.dcm",
            part10(&ct_slice(&study, "FX0001", "张^三", 2, "ISO_IR 192")),
        ),
        (
            "ct_series_3.dcm",
            part10(&ct_slice(&study, "FX0001", "张^三", 3, "ISO_IR 192")),
        ),
        (
            "ct_gb18030.dcm",
            part10(&ct_slice(
                &format!("{UID_ROOT}.2"),
                "FX0002",
                "王^小东",
                1,
                "GB18030",
            )),
        ),
        (
            "sr_chinese.dcm",
            part10(&sr_object(&study, "FX0001", "张^三", true)),
        ),
        (
            "ecg_waveform.dcm",
            part10(&ecg_object(&format!("{UID_ROOT}.3"), "FX0003", "赵^六")),
        ),
    ]
}
