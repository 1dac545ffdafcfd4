//! Parse + normalise throughput per ECG format on one core (files/s, MB/s), plus the
//! waveform blob encoding and SVG rendering time.
//!
//! `cargo bench -p huren-ecg --bench parse -- [SECONDS_PER_CASE]` (default 3). Uses the
//! project fixtures; with `HUREN_THIRD_PARTY` set it also times the third-party corpus.

/// The binary's allocator, so the figures match `huren serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use huren_ecg::{parse, render_svg, ParseOptions, RenderOptions};

fn time<F: FnMut()>(budget: Duration, mut f: F) -> (u64, f64) {
    for _ in 0..3 {
        f();
    }
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget {
        f();
        n += 1;
    }
    (n, t.elapsed().as_secs_f64())
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(secs);
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/ecg");
    let mut cases: Vec<(String, PathBuf)> = vec![
        (
            "aECG 12-lead 250 Hz (project)".into(),
            fx.join("aecg-zh-patient.xml"),
        ),
        (
            "aECG 18-lead 250 Hz (project)".into(),
            fx.join("aecg-18-lead.xml"),
        ),
        (
            "MUSE 8+8 leads (project)".into(),
            fx.join("muse-zh-crc.xml"),
        ),
        (
            "Philips XLI 1.04 UTF-16 (project)".into(),
            fx.join("philips-xli-1.04.xml"),
        ),
    ];
    if let Some(tp) = std::env::var_os("HUREN_THIRD_PARTY") {
        let e = Path::new(&tp).join("ecg");
        for (label, p) in [
            ("aECG HL7 example 500 Hz", "aecg/hl7-example-aecg-2005.xml"),
            (
                "MUSE guangxi 500 Hz",
                "muse/guangxi-teaching-sinus-rhythm-zh.xml",
            ),
            (
                "Philips 1.04 UTF-16LE",
                "philips/v1.04-ad4d3d80-utf16le.xml",
            ),
            (
                "Philips 1.03 repbeats",
                "philips/v1.03-repbeats-example.xml",
            ),
            ("DICOM 12-lead 1000 Hz", "dicom/pydicom-waveform_ecg.dcm"),
            (
                "DICOM General ECG",
                "dicom/ecg2dcm-guangxi-teaching-sinus-rhythm.dcm",
            ),
        ] {
            if e.join(p).is_file() {
                cases.push((format!("{label} (third-party)"), e.join(p)));
            }
        }
    }
    let opts = ParseOptions::default();
    println!(
        "{:<44} {:>9} {:>10} {:>9} {:>10}",
        "case", "KB", "files/s", "MB/s", "µs/file"
    );
    for (label, path) in &cases {
        let bytes = std::fs::read(path).expect("fixture");
        let (n, s) = time(budget, || {
            std::hint::black_box(parse(std::hint::black_box(&bytes), &opts).expect("parse"));
        });
        let fps = n as f64 / s;
        println!(
            "{:<44} {:>9.1} {:>10.0} {:>9.1} {:>10.0}",
            label,
            bytes.len() as f64 / 1024.0,
            fps,
            fps * bytes.len() as f64 / 1e6,
            1e6 / fps
        );
    }
    let bytes = std::fs::read(fx.join("aecg-zh-patient.xml")).expect("fixture");
    let p = parse(&bytes, &opts).expect("parse");
    let (n, s) = time(budget, || {
        std::hint::black_box(p.waveform.to_blob());
    });
    println!(
        "waveform blob encode (12 × 2500): {:.1} µs",
        s / n as f64 * 1e6
    );
    let (n, s) = time(budget, || {
        std::hint::black_box(render_svg(&p.body, &p.waveform, &RenderOptions::default()));
    });
    let svg = render_svg(&p.body, &p.waveform, &RenderOptions::default());
    println!(
        "render_svg 3x4 + rhythm (250 Hz): {:.2} ms, {} KB",
        s / n as f64 * 1e3,
        svg.len() / 1024
    );
}
