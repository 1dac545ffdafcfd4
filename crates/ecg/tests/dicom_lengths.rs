//! Regression: a DICOM ECG whose declared lengths exceed the file must be refused without
//! allocating what the lengths say. Found by `cargo fuzz run ecg_parse` (2026-11-23): 57
//! bytes whose data set declared a ~4 GB element, and dicom-rs reserved it before reading.
//! This test binary counts the largest single allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// The fuzzer's input, unchanged.
const OVERLONG: &[u8] = &[
    0x44, 0x49, 0x43, 0x4d, 0x02, 0x00, 0x00, 0x00, 0x4f, 0x46, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x3c, 0xdf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc4, 0xff, 0xff, 0xf1, 0xff, 0xff, 0x98,
    0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x23,
];

#[test]
fn a_dicom_ecg_with_lengths_past_its_end_is_refused_without_a_large_allocation() {
    let opts = huren_ecg::ParseOptions::default();
    let before = LARGEST.load(Ordering::Relaxed);
    let r = huren_ecg::parse(OVERLONG, &opts);
    assert!(r.is_err(), "{r:?}");
    let largest = LARGEST.load(Ordering::Relaxed).max(before);
    assert!(
        largest < 16 * 1024 * 1024,
        "largest allocation {largest} bytes for a {}-byte file",
        OVERLONG.len()
    );
}
