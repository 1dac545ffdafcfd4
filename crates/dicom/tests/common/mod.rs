//! Shared by the corpus tests of this crate.

use std::path::PathBuf;

/// `$HUREN_THIRD_PARTY/dicom`; `None` (the test skips) without it, a failure under CI.
pub fn corpus() -> Option<PathBuf> {
    match std::env::var_os("HUREN_THIRD_PARTY") {
        Some(p) => Some(PathBuf::from(p).join("dicom")),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "HUREN_THIRD_PARTY must be set under CI"
            );
            eprintln!("skipping: HUREN_THIRD_PARTY not set");
            None
        }
    }
}
