//! Bytes wrapped as each XML adapter's root element, so the fuzzer reaches the adapters'
//! element handling instead of stopping at format detection.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let body = String::from_utf8_lossy(rest);
    let doc = match sel % 3 {
        0 => format!("<AnnotatedECG xmlns=\"urn:hl7-org:v3\">{body}</AnnotatedECG>"),
        1 => format!("<RestingECG>{body}</RestingECG>"),
        _ => format!(
            "<restingecgdata><documentinfo><documenttype>PhilipsECG</documenttype><documentversion>1.04</documentversion></documentinfo>{body}</restingecgdata>"
        ),
    };
    let _ = huren_ecg::parse(doc.as_bytes(), &huren_ecg::ParseOptions::default());
});
