//! Any bytes through ECG detection and every adapter (aECG, MUSE, Philips, DICOM), then the
//! waveform blob round trip and the renderer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = huren_ecg::ParseOptions::default();
    if let Ok(p) = huren_ecg::parse(data, &opts) {
        let blob = p.waveform.to_blob();
        let back = huren_model::ecg::Waveform::from_blob(&blob).expect("own blob decodes");
        let finite = p
            .waveform
            .series
            .iter()
            .flat_map(|s| &s.leads)
            .all(|l| l.scale_uv.is_finite() && l.origin_uv.is_finite());
        if finite {
            assert_eq!(back.series.len(), p.waveform.series.len());
        }
        let _ = huren_ecg::render_svg(&p.body, &p.waveform, &huren_ecg::RenderOptions::default());
    }
});
