//! Parse benchmark: MB/s and messages/s on one core for a ~2 KB Chinese ORU^R01 (parse only,
//! and parse + interpret into the model), plus the latency distribution of parse + interpret.
//!
//! `cargo bench -p huren-hl7 --bench parse -- [ITERATIONS]` (default 200000)

/// The binary's allocator, so the figures match `huren serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use huren_hl7::{interpret, Message, SenderConfig};
use huren_model::ContentHash;

fn message() -> Vec<u8> {
    let mut s = String::from("MSH|^~\\&|LIS|FX-ZX|HUREN|FX-YLT|20250624101500||ORU^R01^ORU_R01|FXZX-1|P|2.5.1|||||CHN|UNICODE UTF-8\rPID|1||0012345^^^FX-ZX^MR~310120199001011234^^^NNCHN^NI||张^伟||19900101|M\rPV1|1|O|内科门诊^^^FX-ZX\rORC|RE|ORD1|LAB1||CM\rOBR|1|ORD1|LAB1|CBC^血常规^L|||20250624083000|||||||20250624083500|BLD^全血|||||||20250624100500||HM|F\r");
    let tests = [
        ("WBC", "白细胞计数", "10*9/L", "3.5-9.5"),
        ("RBC", "红细胞计数", "10*12/L", "4.3-5.8"),
        ("HGB", "血红蛋白", "g/L", "130-175"),
        ("PLT", "血小板计数", "10*9/L", "125-350"),
    ];
    for i in 0..20 {
        let (c, n, u, r) = tests[i % tests.len()];
        s.push_str(&format!(
            "OBX|{}|NM|{c}^{n}^L||{}.{:02}|{u}|{r}|N|||F|||20250624095000\r",
            i + 1,
            4 + i,
            i
        ));
    }
    s.push_str("NTE|1||标本轻度溶血\\T\\结果仅供参考\r");
    s.into_bytes()
}

fn main() {
    let iters: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let msg = message();
    let cfg = SenderConfig {
        institution: "FX-ZX".into(),
        charset: None,
        time_zone: chrono_tz::Asia::Shanghai,
        national_id_secret: "bench".into(),
    };
    let hash = ContentHash::of(&msg);
    // Warm up.
    for _ in 0..1000 {
        let m = Message::parse(&msg, None).expect("parse");
        std::hint::black_box(interpret(&m, &cfg, hash).expect("interpret"));
    }
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(Message::parse(std::hint::black_box(&msg), None).expect("parse"));
    }
    let parse = t.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(iters);
    let t = Instant::now();
    for _ in 0..iters {
        let t0 = Instant::now();
        let m = Message::parse(std::hint::black_box(&msg), None).expect("parse");
        std::hint::black_box(interpret(&m, &cfg, hash).expect("interpret"));
        lat.push(t0.elapsed());
    }
    let full = t.elapsed().as_secs_f64();
    lat.sort();
    let mb = (msg.len() * iters) as f64 / 1e6;
    println!(
        "message: {} bytes, {} OBX, {iters} iterations, one core",
        msg.len(),
        20
    );
    println!(
        "parse only:        {:>8.1} MB/s  {:>9.0} msg/s",
        mb / parse,
        iters as f64 / parse
    );
    println!(
        "parse + interpret: {:>8.1} MB/s  {:>9.0} msg/s  p50 {:.1} µs  p99 {:.1} µs",
        mb / full,
        iters as f64 / full,
        lat[iters / 2].as_secs_f64() * 1e6,
        lat[iters * 99 / 100].as_secs_f64() * 1e6
    );
    // The report's canonical JSON (what the store hashes), made on the same worker thread.
    let m = Message::parse(&msg, None).expect("parse");
    let reports: Vec<_> = match interpret(&m, &cfg, hash).expect("interpret").content {
        huren_hl7::Content::Lab(r) => r,
        _ => panic!("an ORU gives reports"),
    };
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..iters {
        for r in &reports {
            bytes += std::hint::black_box(r.to_canonical_json().expect("json")).len();
        }
    }
    let json = t.elapsed().as_secs_f64();
    println!(
        "canonical JSON:    {:>8.1} MB/s  {:>9.0} reports/s  ({} bytes each)",
        bytes as f64 / 1e6 / json,
        (iters * reports.len()) as f64 / json,
        bytes / (iters * reports.len())
    );
}
