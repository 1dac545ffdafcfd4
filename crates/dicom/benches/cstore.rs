//! C-STORE data-set path benchmark, one core: what `huren serve` does to a received data set
//! before the store sees it — `parse_cstore` (structural guard, dicom-rs parse, summary,
//! data-set hash) and `to_part10` (the meta group in front). Small: the project's CT fixture;
//! large: `$HUREN_THIRD_PARTY/dicom/images/RG1_UNCR.dcm` (7.2 MB CR) when the corpus is there.
//! Prints instances/s, MB/s and the latency distribution.
//!
//! `cargo bench -p huren-dicom --bench cstore -- [ITERATIONS]` (default 2000 small; large
//! runs ITERATIONS / 50)

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

fn dataset_of(file: &[u8]) -> (Vec<u8>, String) {
    let p = huren_dicom::split_part10(file).expect("Part 10");
    let ts = p.transfer_syntax.expect("transfer syntax");
    (file[p.dataset_offset..].to_vec(), ts)
}

fn run(name: &str, file: &[u8], iters: usize) {
    let (ds, ts) = dataset_of(file);
    let i = huren_dicom::parse_cstore(&ds, &ts, "", "").expect("parses");
    let (class, inst) = (
        i.record.sop_class_uid.clone(),
        i.record.sop_instance_uid.clone(),
    );
    let mut lat = Vec::with_capacity(iters);
    let start = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        let i = huren_dicom::parse_cstore(&ds, &ts, &class, &inst).expect("parses");
        let p10 = huren_dicom::to_part10(&ds, &ts, &i.record.sop_class_uid, &inst);
        std::hint::black_box((i, p10));
        lat.push(t.elapsed().as_micros() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    println!(
        "{name}: {} bytes × {iters}: {:.0} inst/s, {:.0} MB/s, p50 {} µs, p99 {} µs",
        ds.len(),
        iters as f64 / secs,
        (ds.len() * iters) as f64 / secs / 1e6,
        pct(0.5),
        pct(0.99)
    );
}

fn main() {
    let iters: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ct = std::fs::read(root.join("fixtures/dicom/ct_series_1.dcm")).expect("fixture");
    run("CT fixture", &ct, iters);
    match std::env::var_os("HUREN_THIRD_PARTY") {
        Some(tp) => {
            let dir = std::path::PathBuf::from(tp).join("dicom/images");
            for f in ["CT_small.dcm", "RG1_UNCR.dcm"] {
                let b = std::fs::read(dir.join(f)).expect("corpus file");
                let n = if b.len() > 1 << 20 {
                    (iters / 50).max(5)
                } else {
                    iters
                };
                run(f, &b, n);
            }
        }
        None => println!("(HUREN_THIRD_PARTY not set: corpus files skipped)"),
    }
}
