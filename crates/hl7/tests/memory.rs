//! Memory stays O(n) with a small constant: hl7-parser 0.3.0 needed ~660 MB for 1 MiB of `|`.
//! (Its own test binary: the counting allocator sees only this test.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use huren_hl7::{interpret, Message, SenderConfig};
use huren_model::ContentHash;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Ordering::SeqCst) + l.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Ordering::SeqCst);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn one_mebibyte_of_field_separators_needs_little_memory() {
    let mut s = String::from(
        "MSH|^~\\&|LIS|FX-ZX|||20250624||ORU^R01|C1|P|2.5.1\rPID|1||P1\rOBR|1||F1|X\rOBX|1|ST|X||v",
    );
    s.push_str(&"|".repeat(1 << 20));
    let input = s.into_bytes();
    let cfg = SenderConfig::default();
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let m = Message::parse(&input, None).unwrap();
    let it = interpret(&m, &cfg, ContentHash::of(&input)).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - base;
    eprintln!("peak {peak} bytes for {} input bytes", input.len());
    drop(it);
    drop(m);
    assert!(
        peak < 3 * input.len(),
        "peak {peak} bytes for {} input bytes",
        input.len()
    );
}
