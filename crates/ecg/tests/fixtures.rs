//! Project-made fixtures in `fixtures/ecg/`: generated here (run with
//! `HUREN_UPDATE_FIXTURES=1` to rewrite them), checked byte for byte, parsed, and rendered.
//!
//! - `aecg-zh-patient.xml`: HL7 aECG, patient 张伟, Chinese statements incl. an acute MI.
//! - `aecg-18-lead.xml`: 18-lead aECG (12 + V7–V9 + V3R–V5R), leads in shuffled order.
//! - `muse-zh-crc.xml`: MUSE RestingECG with CRC32s computed here, statement fragments.
//! - `philips-xli-1.04.xml`: PhilipsECG 1.04 in UTF-16LE whose waveform is XLI made by
//!   `huren_ecg::xli::encode`, with residual limb leads and a 1 s calibration tail.
//! - `aecg-zh-patient.3x4.svg`: the rendering snapshot.

use std::f64::consts::PI;
use std::path::PathBuf;

use base64::Engine;
use huren_ecg::{parse, render_svg, to_report, xli, Layout, ParseOptions, RenderOptions, Waveform};
use huren_model::ecg::{ConfirmationState, QualityFlag, SeriesKind};
use huren_model::{ContentHash, ReportKind, ReportStatus};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/ecg")
}

/// Writes (when asked) or compares a fixture; returns its bytes.
fn fixture(name: &str, bytes: Vec<u8>) -> Vec<u8> {
    let p = dir().join(name);
    if std::env::var_os("HUREN_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&p, &bytes).unwrap();
    }
    let on_disk = std::fs::read(&p)
        .unwrap_or_else(|_| panic!("{name} missing: run with HUREN_UPDATE_FIXTURES=1"));
    assert!(
        on_disk == bytes,
        "{name} differs from its generator: run with HUREN_UPDATE_FIXTURES=1 and review"
    );
    on_disk
}

/// A synthetic heart beat (µV) at time t (s) for a lead with the given wave amplitudes.
fn beat(t: f64, hr: f64, amp: (f64, f64, f64)) -> f64 {
    let rr = 60.0 / hr;
    let x = t % rr;
    let g = |c: f64, w: f64| (-((x - c) / w).powi(2) / 2.0).exp();
    amp.0 * g(0.2, 0.025) + amp.1 * g(0.4, 0.012) - amp.1 * 0.2 * g(0.43, 0.01)
        + amp.2 * g(0.7, 0.05)
}

/// Per-lead (P, R, T) amplitudes in µV.
fn amps(lead: &str) -> (f64, f64, f64) {
    let i = lead.bytes().map(u32::from).sum::<u32>() as f64;
    let sign = if lead == "aVR" { -1.0 } else { 1.0 };
    (
        sign * (80.0 + i % 40.0),
        sign * (600.0 + (i * 7.0) % 900.0),
        sign * (150.0 + (i * 3.0) % 200.0),
    )
}

fn digits(lead: &str, n: usize, rate: f64, scale: f64) -> Vec<i32> {
    (0..n)
        .map(|k| {
            let t = k as f64 / rate;
            (beat(t, 60.0, amps(lead)) / scale + 3.0 * (2.0 * PI * 0.3 * t).sin()).round() as i32
        })
        .collect()
}

const MDC: &[(&str, &str)] = &[
    ("I", "MDC_ECG_LEAD_I"),
    ("II", "MDC_ECG_LEAD_II"),
    ("III", "MDC_ECG_LEAD_III"),
    ("aVR", "MDC_ECG_LEAD_AVR"),
    ("aVL", "MDC_ECG_LEAD_AVL"),
    ("aVF", "MDC_ECG_LEAD_AVF"),
    ("V1", "MDC_ECG_LEAD_V1"),
    ("V2", "MDC_ECG_LEAD_V2"),
    ("V3", "MDC_ECG_LEAD_V3"),
    ("V4", "MDC_ECG_LEAD_V4"),
    ("V5", "MDC_ECG_LEAD_V5"),
    ("V6", "MDC_ECG_LEAD_V6"),
    ("V7", "MDC_ECG_LEAD_V7"),
    ("V8", "MDC_ECG_LEAD_V8"),
    ("V9", "MDC_ECG_LEAD_V9"),
    ("V3R", "MDC_ECG_LEAD_V3R"),
    ("V4R", "MDC_ECG_LEAD_V4R"),
    ("V5R", "MDC_ECG_LEAD_V5R"),
];

fn aecg(leads: &[&str], patient: &str, statements: &[&str], id: &str) -> String {
    let rate = 250.0;
    let n = 2500;
    let mut s = String::from(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<AnnotatedECG xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" type=\"Observation\">\n",
    ));
    s += &format!(
        "  <id root=\"{id}\"/>\n  <code code=\"93000\" codeSystem=\"2.16.840.1.113883.6.12\"/>\n"
    );
    s += "  <effectiveTime><low value=\"20250624083015\"/><high value=\"20250624083025\"/></effectiveTime>\n";
    s += &format!(concat!(
        "  <componentOf><timepointEvent><componentOf><subjectAssignment><subject><trialSubject>\n",
        "    <id root=\"2.16.840.1.113883.3.999\" extension=\"0012345\"/>\n",
        "    <subjectDemographicPerson><name>{}</name><administrativeGenderCode code=\"M\" codeSystem=\"2.16.840.1.113883.5.1\"/><birthTime value=\"19650307\"/></subjectDemographicPerson>\n",
        "  </trialSubject></subject></subjectAssignment></componentOf></timepointEvent></componentOf>\n"),
        patient
    );
    s +=
        "  <component><series>\n    <code code=\"RHYTHM\" codeSystem=\"2.16.840.1.113883.5.4\"/>\n";
    s += "    <author><seriesAuthor><manufacturedSeriesDevice><id extension=\"SN-0042\"/><manufacturerModelName>HUREN-TEST-12</manufacturerModelName><softwareName>1.0</softwareName></manufacturedSeriesDevice><manufacturerOrganization><name>huren test cart</name></manufacturerOrganization></seriesAuthor></author>\n";
    s += "    <component><sequenceSet>\n      <component><sequence><code code=\"TIME_ABSOLUTE\" codeSystem=\"2.16.840.1.113883.5.4\"/><value xsi:type=\"GLIST_TS\"><head value=\"20250624083015\"/><increment value=\"0.004\" unit=\"s\"/></value></sequence></component>\n";
    for l in leads {
        let code = MDC.iter().find(|m| m.0 == *l).unwrap().1;
        let d: Vec<String> = digits(l, n, rate, 5.0)
            .iter()
            .map(|x| x.to_string())
            .collect();
        s += &format!(
            "      <component><sequence><code code=\"{code}\" codeSystem=\"2.16.840.1.113883.6.24\"/><value xsi:type=\"SLIST_PQ\"><origin value=\"0\" unit=\"uV\"/><scale value=\"5\" unit=\"uV\"/><digits>{}</digits></value></sequence></component>\n",
            d.join(" ")
        );
    }
    s += "    </sequenceSet></component>\n";
    s += "    <subjectOf><annotationSet>\n";
    for (c, v, u) in [
        ("MDC_ECG_HEART_RATE", "60", "bpm"),
        ("MDC_ECG_TIME_PD_PR", "160", "ms"),
        ("MDC_ECG_TIME_PD_QRS", "88", "ms"),
        ("MDC_ECG_TIME_PD_QT", "400", "ms"),
        ("MDC_ECG_TIME_PD_QTcB", "400", "ms"),
        ("MDC_ECG_ANGLE_QRS_FRONT", "45", "deg"),
    ] {
        s += &format!("      <component><annotation><code code=\"{c}\" codeSystem=\"2.16.840.1.113883.6.24\"/><value xsi:type=\"PQ\" value=\"{v}\" unit=\"{u}\"/></annotation></component>\n");
    }
    s += "      <component><annotation><code code=\"MDC_ECG_INTERPRETATION\" codeSystem=\"2.16.840.1.113883.6.24\"/>\n";
    for st in statements {
        s += &format!("        <component><annotation><code code=\"MDC_ECG_INTERPRETATION_STATEMENT\" codeSystem=\"2.16.840.1.113883.6.24\"/><value xsi:type=\"ST\">{st}</value></annotation></component>\n");
    }
    s += "      </annotation></component>\n    </annotationSet></subjectOf>\n  </series></component>\n</AnnotatedECG>\n";
    s
}

fn muse() -> String {
    let rate = 500.0;
    let mut leads = String::new();
    for (kind, n) in [("Median", 600usize), ("Rhythm", 5000usize)] {
        leads += &format!("  <Waveform>\n    <WaveformType>{kind}</WaveformType>\n    <NumberofLeads>8</NumberofLeads>\n    <SampleBase>500</SampleBase>\n    <SampleExponent>0</SampleExponent>\n    <HighPassFilter>5</HighPassFilter>\n    <LowPassFilter>150</LowPassFilter>\n    <ACFilter>50</ACFilter>\n");
        for l in ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"] {
            let d = digits(l, n, rate, 4.88);
            let bytes: Vec<u8> = d.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let wrapped: Vec<&str> = b64
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            leads += &format!(
                "    <LeadData>\n      <LeadByteCountTotal>{}</LeadByteCountTotal>\n      <LeadSampleCountTotal>{n}</LeadSampleCountTotal>\n      <LeadAmplitudeUnitsPerBit>4.88</LeadAmplitudeUnitsPerBit>\n      <LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>\n      <LeadID>{l}</LeadID>\n      <LeadOff>FALSE</LeadOff>\n      <LeadDataCRC32>{}</LeadDataCRC32>\n      <WaveFormData>{}\n</WaveFormData>\n    </LeadData>\n",
                bytes.len(),
                crc32fast::hash(&bytes),
                wrapped.join("\n")
            );
        }
        leads += "  </Waveform>\n";
    }
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE RestingECG SYSTEM \"restecg.dtd\">\n<RestingECG>\n",
            "  <MuseInfo><MuseVersion>9.0.9.18167</MuseVersion></MuseInfo>\n",
            "  <PatientDemographics><PatientID>A0099</PatientID><PatientLastName>李</PatientLastName><PatientFirstName>娜</PatientFirstName><Gender>FEMALE</Gender><DateofBirth>03-07-1972</DateofBirth><PatientAge>53</PatientAge><AgeUnits>YEARS</AgeUnits></PatientDemographics>\n",
            "  <TestDemographics><AcquisitionDevice>MAC 2000</AcquisitionDevice><Status>UNCONFIRMED</Status><AcquisitionTime>08:30:15</AcquisitionTime><AcquisitionDate>06-24-2025</AcquisitionDate><CartNumber>7</CartNumber><LocationName>急诊科</LocationName><TestReason>胸痛</TestReason></TestDemographics>\n",
            "  <Order><RequisitionNumber>ACC-778</RequisitionNumber></Order>\n",
            "  <RestingECGMeasurements><VentricularRate>60</VentricularRate><AtrialRate>60</AtrialRate><PRInterval>160</PRInterval><QRSDuration>88</QRSDuration><QTInterval>400</QTInterval><QTCorrected>400</QTCorrected><PAxis>50</PAxis><RAxis>45</RAxis><TAxis>40</TAxis></RestingECGMeasurements>\n",
            "  <Diagnosis><Modality>RESTING</Modality>\n",
            "    <DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>窦性心律</StmtText></DiagnosisStatement>\n",
            "    <DiagnosisStatement><StmtText>三度房室</StmtText></DiagnosisStatement>\n",
            "    <DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>传导阻滞</StmtText></DiagnosisStatement>\n",
            "  </Diagnosis>\n{}</RestingECG>\n"
        ),
        leads
    )
}

#[allow(clippy::needless_range_loop)] // leads indexed in step
fn philips() -> Vec<u8> {
    let names = [
        "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
    ];
    let (rate, n) = (500.0, 5500usize);
    let mut truth: Vec<Vec<i32>> = names.iter().map(|l| digits(l, 5000, rate, 5.0)).collect();
    // Einthoven: III = II − I; augmented leads from I and III as the cart computes them.
    for k in 0..5000 {
        let (i, ii) = (truth[0][k], truth[1][k]);
        let iii = ii - i;
        truth[2][k] = iii;
        truth[3][k] = -(i + ii).div_euclid(2);
        truth[4][k] = (i - iii).div_euclid(2);
        truth[5][k] = (ii + iii).div_euclid(2);
    }
    // The 1 s, 1 mV (200 × 5 µV) calibration tail.
    for l in &mut truth {
        l.extend((0..n - 5000).map(|k| if k < 100 { 200 } else { 0 }));
    }
    let mut stored = truth;
    xli::residual_limb_leads(&mut stored);
    let b64 = base64::engine::general_purpose::STANDARD.encode(xli::encode(&stored));
    let s = format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"utf-16\"?>\r\n",
            "<restingecgdata xmlns=\"http://www3.medical.philips.com\" status=\"Confirmed\">\r\n",
            "  <documentinfo><documentname>huren-0001.xml</documentname><documenttype>PhilipsECG</documenttype><documentversion>1.04</documentversion></documentinfo>\r\n",
            "  <orderinfo><ordernumber>ORD-5</ordernumber><reasonfororder>胸痛 2 小时</reasonfororder></orderinfo>\r\n",
            "  <dataacquisition date=\"2025-06-24\" time=\"08:30:15\"><machine machineid=\"PW-77\" detaildescription=\"Philips Medical Products:860306:A.07\">PageWriter TC50</machine>\r\n",
            "    <signalcharacteristics><samplingrate>500</samplingrate><resolution>5</resolution><hipass>0.05</hipass><lowpass>150</lowpass><acsetting>50</acsetting></signalcharacteristics></dataacquisition>\r\n",
            "  <patient><generalpatientdata><patientid>P-31</patientid><name><lastname>王</lastname><firstname>芳</firstname></name><age><dateofbirth>1980-02-02</dateofbirth></age><sex>Female</sex></generalpatientdata></patient>\r\n",
            "  <interpretations><interpretation>\r\n",
            "    <globalmeasurements><heartrate>60</heartrate><rrint>1000</rrint><print>160</print><qrsdur>88</qrsdur><qtint>400</qtint><qtcb>400</qtcb><pfrontaxis>50</pfrontaxis><qrsfrontaxis>45</qrsfrontaxis><tfrontaxis>Failed</tfrontaxis></globalmeasurements>\r\n",
            "    <mdsignatureline>Confirmed by: 赵医生 25-Jun-2025 09:00:00</mdsignatureline>\r\n",
            "    <confirmingclinician date=\"2025-06-24\" time=\"09:00:00\">赵医生</confirmingclinician>\r\n",
            "    <severity code=\"AB\">- ABNORMAL ECG -</severity>\r\n",
            "    <statement><statementcode>SR</statementcode><leftstatement>SINUS RHYTHM</leftstatement><rightstatement/></statement>\r\n",
            "    <statement deleted=\"True\"><statementcode>VT</statementcode><leftstatement>VENTRICULAR TACHYCARDIA</leftstatement><rightstatement/></statement>\r\n",
            "  </interpretation></interpretations>\r\n",
            "  <waveforms><parsedwaveforms dataencoding=\"Base64\" compression=\"XLI\" numberofleads=\"12\" leadlabels=\"I II III aVR aVL aVF V1 V2 V3 V4 V5 V6\" durationperchannel=\"11000\" samplespersecond=\"500\" resolution=\"5\">{}</parsedwaveforms></waveforms>\r\n",
            "</restingecgdata>\r\n"
        ),
        b64
    );
    [0xFF, 0xFE]
        .into_iter()
        .chain(s.encode_utf16().flat_map(|u| u.to_le_bytes()))
        .collect()
}

fn opts() -> ParseOptions {
    ParseOptions::default()
}

#[test]
fn aecg_with_chinese_patient() {
    let b = fixture(
        "aecg-zh-patient.xml",
        aecg(
            &MDC[..12].iter().map(|m| m.0).collect::<Vec<_>>(),
            "张伟",
            &["窦性心律", "急性下壁心肌梗死", "建议复查"],
            "7d1c2a10-5a9b-4f3e-9a51-000000000001",
        )
        .into_bytes(),
    );
    let p = parse(&b, &opts()).unwrap();
    let body = &p.body;
    assert_eq!(body.patient.name.as_deref(), Some("张伟"));
    assert_eq!(body.patient.id.as_deref(), Some("0012345"));
    assert_eq!(body.patient.birth_date.as_deref(), Some("1965-03-07"));
    assert_eq!(
        body.acquired_at.as_deref(),
        Some("2025-06-24T08:30:15+08:00")
    );
    assert_eq!(
        body.identity.key,
        "uid:7d1c2a10-5a9b-4f3e-9a51-000000000001"
    );
    assert_eq!(body.device.serial.as_deref(), Some("SN-0042"));
    assert_eq!(body.signal.sample_rate_hz, Some(250));
    assert_eq!(body.measurements.qtc_formula.as_deref(), Some("bazett"));
    let c = body.critical.as_ref().unwrap();
    assert_eq!(
        (c.rule.as_str(), c.statement.as_str()),
        ("stemi", "急性下壁心肌梗死")
    );
    assert_eq!(body.series[0].leads.len(), 12);
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());

    // The report and its waveform blob.
    let blob = p.waveform.to_blob();
    assert_eq!(Waveform::from_blob(&blob).unwrap(), p.waveform);
    let r = to_report(
        &p,
        "CHC01",
        ContentHash::of(&b),
        ContentHash::of(&blob),
        "2025-06-24T08:31:00+08:00",
    );
    assert_eq!(r.kind, ReportKind::Ecg);
    assert_eq!(r.status, ReportStatus::Preliminary);
    assert_eq!(r.patient.local_key(), "CHC01:0012345");
    assert_eq!(r.performed_at.as_deref(), Some("2025-06-24T08:30:15+08:00"));
    assert_eq!(r.attachments, vec![ContentHash::of(&blob)]);
    let ecg = r.ecg.as_ref().unwrap();
    assert_eq!(
        ecg.received_at.as_deref(),
        Some("2025-06-24T08:31:00+08:00")
    );
    let json = String::from_utf8(r.to_canonical_json().unwrap()).unwrap();
    assert!(json.contains("急性下壁心肌梗死") && json.contains(r#""rule":"stemi""#));
    assert!(
        !json.contains("digits") && json.len() < 8000,
        "samples stay out of the JSON"
    );

    // Rendering snapshot (deterministic).
    let svg = render_svg(&p.body, &p.waveform, &RenderOptions::default());
    assert_eq!(
        svg,
        render_svg(&p.body, &p.waveform, &RenderOptions::default())
    );
    let snap = fixture("aecg-zh-patient.3x4.svg", svg.clone().into_bytes());
    assert_eq!(snap, svg.as_bytes());
    assert!(svg.contains("张伟") && svg.contains("急性下壁心肌梗死"));
}

#[test]
fn eighteen_lead_aecg() {
    let mut order: Vec<&str> = MDC.iter().map(|m| m.0).collect();
    order.reverse(); // any order in the file
    let b = fixture(
        "aecg-18-lead.xml",
        aecg(
            &order,
            "Test Eighteen",
            &["Sinus rhythm"],
            "7d1c2a10-5a9b-4f3e-9a51-000000000018",
        )
        .into_bytes(),
    );
    let p = parse(&b, &opts()).unwrap();
    let names: Vec<&str> = p.body.series[0]
        .leads
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        names,
        MDC.iter().map(|m| m.0).collect::<Vec<_>>(),
        "canonical order"
    );
    assert!(p.body.critical.is_none());
    let svg = render_svg(&p.body, &p.waveform, &RenderOptions::default());
    assert!(svg.contains("Extra leads"));
    for l in ["V7", "V8", "V9", "V3R", "V4R", "V5R"] {
        assert!(svg.contains(&format!(">{l}</text>")), "{l}");
    }
}

#[test]
fn muse_with_computed_crcs() {
    let b = fixture("muse-zh-crc.xml", muse().into_bytes());
    let p = parse(&b, &opts()).unwrap();
    let body = &p.body;
    assert!(body.quality.is_empty(), "{:?}", body.quality);
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    assert_eq!(body.patient.name.as_deref(), Some("李 娜"));
    assert_eq!(body.patient.sex.as_deref(), Some("F"));
    assert_eq!(body.patient.birth_date.as_deref(), Some("1972-03-07"));
    assert_eq!(body.order.accession.as_deref(), Some("ACC-778"));
    assert_eq!(body.order.location.as_deref(), Some("急诊科"));
    assert_eq!(body.identity.key, "dev:7|2025-06-24T08:30:15+08:00");
    assert_eq!(body.confirmation.state, ConfirmationState::Unconfirmed);
    let st: Vec<&str> = body.statements.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(st, ["窦性心律", "三度房室传导阻滞"]);
    assert_eq!(body.critical.as_ref().unwrap().rule, "complete_av_block");
    assert_eq!(body.series.len(), 2);
    assert_eq!(body.series[0].leads.len(), 12);
    assert_eq!(body.series[1].kind, SeriesKind::RepresentativeBeat);
    // A damaged CRC is reported, not fatal.
    let bad =
        String::from_utf8(b.clone())
            .unwrap()
            .replacen("<LeadDataCRC32>", "<LeadDataCRC32>1", 1);
    let q = parse(bad.as_bytes(), &opts()).unwrap().body.quality;
    assert!(
        matches!(&q[..], [QualityFlag::CrcMismatch { lead, .. }] if lead == "I"),
        "{q:?}"
    );
}

#[test]
fn philips_xli_made_by_our_encoder() {
    let b = fixture("philips-xli-1.04.xml", philips());
    let p = parse(&b, &opts()).unwrap();
    let body = &p.body;
    let r = p.waveform.series(SeriesKind::Rhythm).unwrap();
    assert_eq!(r.leads.len(), 12);
    assert!(r.leads.iter().all(|l| l.samples.len() == 5000));
    let i = r.lead("I").unwrap();
    assert_eq!(i.samples, digits("I", 5000, 500.0, 5.0));
    let (l1, l2, l3) = (
        r.lead("I").unwrap(),
        r.lead("II").unwrap(),
        r.lead("III").unwrap(),
    );
    assert!((0..5000).all(|k| l3.samples[k] == l2.samples[k] - l1.samples[k]));
    assert!(body.warnings.iter().any(|w| w.contains("calibration tail")));
    assert_eq!(body.patient.name.as_deref(), Some("王 芳"));
    assert_eq!(body.order.reason.as_deref(), Some("胸痛 2 小时"));
    assert_eq!(body.device.software.as_deref(), Some("A.07"));
    assert_eq!(body.confirmation.state, ConfirmationState::Confirmed);
    assert_eq!(body.confirmation.physician.as_deref(), Some("赵医生"));
    assert_eq!(body.statements.len(), 1, "deleted statement dropped");
    assert!(
        body.critical.is_none(),
        "a deleted VT statement must not flag"
    );
    assert_eq!(body.measurements.t_axis_deg, None, "Failed is absent");
    assert_eq!(body.identity.key, "uid:huren-0001");
}

fn calibration(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.attribute("class") == Some("cal"))
        .map(|n| n.attribute("d").unwrap().to_string())
        .collect()
}

#[test]
fn svg_geometry_is_true_to_scale() {
    let b = std::fs::read(dir().join("aecg-zh-patient.xml")).unwrap();
    let mut p = parse(&b, &opts()).unwrap();
    // A 1 mV square step on lead II from t = 1 s, to measure the trace scale.
    let r = p
        .waveform
        .series
        .iter_mut()
        .find(|s| s.kind == SeriesKind::Rhythm)
        .unwrap();
    let ii = r.leads.iter_mut().find(|l| l.name == "II").unwrap();
    for (k, v) in ii.samples.iter_mut().enumerate() {
        *v = if k >= 250 { 200 } else { 0 }; // 200 × 5 µV = 1 mV
    }
    for (speed, gain) in [(25.0, 10.0), (50.0, 10.0), (25.0, 5.0), (25.0, 20.0)] {
        let o = RenderOptions {
            speed_mm_s: speed,
            gain_mm_mv: gain,
            ..Default::default()
        };
        let svg = render_svg(&p.body, &p.waveform, &o);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let root = doc.root_element();
        // 1 user unit = 1 mm.
        let w: f64 = root
            .attribute("width")
            .unwrap()
            .trim_end_matches("mm")
            .parse()
            .unwrap();
        let vb: Vec<f64> = root
            .attribute("viewBox")
            .unwrap()
            .split(' ')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(vb[2], w);
        assert!(
            (w - (10.0 + 10.0 * speed + 5.0)).abs() < 1e-9,
            "10 s across"
        );
        // Grid: 1 mm minor, 5 mm major.
        let pat = |id: &str| {
            doc.descendants()
                .find(|n| n.attribute("id") == Some(id))
                .unwrap()
                .attribute("width")
                .unwrap()
                .to_string()
        };
        assert_eq!((pat("g1").as_str(), pat("g5").as_str()), ("1", "5"));
        // Calibration: 1 mV high (gain mm), 0.2 s wide.
        for d in calibration(&svg) {
            assert!(
                d.contains(&format!("v{:.2} h{:.2}", -gain, 0.2 * speed)),
                "{d}"
            );
        }
        // The rhythm strip (last II trace) rises by `gain` mm at x = 10 + 1 s × speed.
        let strip = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("trace"))
            .nth(12)
            .unwrap();
        let pts: Vec<(f64, f64)> = strip
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(pts.len(), 2500);
        let (x0, y0) = pts[249];
        let (x1, y1) = pts[250];
        assert!((x1 - (10.0 + speed)).abs() < 1e-6, "x at 1 s: {x1}");
        assert!((x1 - x0 - speed / 250.0).abs() < 0.011, "sample spacing");
        assert!(
            (y0 - y1 - gain).abs() < 1e-6,
            "1 mV = {gain} mm: {y0} → {y1}"
        );
    }
    // Layouts change the arrangement, not the scale.
    for (l, traces) in [(Layout::SixByTwo, 13), (Layout::TwelveByOne, 13)] {
        let o = RenderOptions {
            layout: l,
            ..Default::default()
        };
        let svg = render_svg(&p.body, &p.waveform, &o);
        assert_eq!(svg.matches("class=\"trace\"").count(), traces);
        assert_eq!(calibration(&svg).len(), l_rows(l) + 1);
    }
}

fn l_rows(l: Layout) -> usize {
    match l {
        Layout::ThreeByFour => 3,
        Layout::SixByTwo => 6,
        Layout::TwelveByOne => 12,
    }
}
