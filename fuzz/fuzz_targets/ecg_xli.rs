//! Any bytes through the XLI decoder and the Philips limb-lead reconstruction.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut leads) = huren_ecg::xli::decode(data) {
        huren_ecg::xli::reconstruct_limb_leads(&mut leads);
    }
});
