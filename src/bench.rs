//! `huren bench mllp`: a native MLLP load generator, so the gateway's ORU capacity can be
//! measured beyond the shared Python tool's own ceiling (~5,900 msg/s on this machine).
//!
//! Same contract as `../shared/tools/mllp_load.py`: C connections, one message in flight per
//! connection (as MLLP requires), N ORU^R01 messages in total, each ACK checked (MSA-1 AA or
//! CA, MSA-2 = the MSH-10 sent); the messages have the Python tool's shape (PID, PV1, ORC,
//! OBR, `--obx` OBX, Chinese text with `--chinese`) and are all built before the clock
//! starts. Loopback targets only; every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BytesMut};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one run measures.
pub struct MllpBench {
    /// Target address (loopback only).
    pub addr: SocketAddr,
    /// Messages in total.
    pub count: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// OBX segments per message.
    pub obx: usize,
    /// Chinese names, test names and a Chinese comment.
    pub chinese: bool,
    /// Per-ACK timeout.
    pub timeout: Duration,
}

const TESTS: &[(&str, &str, &str, &str)] = &[
    ("WBC", "白细胞计数", "10*9/L", "3.5-9.5"),
    ("RBC", "红细胞计数", "10*12/L", "4.3-5.8"),
    ("HGB", "血红蛋白", "g/L", "130-175"),
    ("HCT", "红细胞压积", "%", "40-50"),
    ("PLT", "血小板计数", "10*9/L", "125-350"),
    ("NEUT%", "中性粒细胞百分比", "%", "40-75"),
    ("LYMPH%", "淋巴细胞百分比", "%", "20-50"),
    ("MCV", "平均红细胞体积", "fL", "82-100"),
    ("GLU", "葡萄糖", "mmol/L", "3.9-6.1"),
    ("ALT", "丙氨酸氨基转移酶", "U/L", "9-50"),
    ("AST", "天门冬氨酸氨基转移酶", "U/L", "15-40"),
    ("CREA", "肌酐", "umol/L", "57-111"),
    ("UREA", "尿素", "mmol/L", "3.1-8.0"),
    ("K", "钾", "mmol/L", "3.5-5.3"),
    ("NA", "钠", "mmol/L", "137-147"),
    ("CL", "氯", "mmol/L", "99-110"),
];

/// Message `i` of run `run`, MLLP-framed, and its control ID.
fn message(b: &MllpBench, run: &str, i: usize, now: &str) -> (Vec<u8>, String) {
    let control = format!("{run}-{i:07}");
    let inst = i % 7 + 1;
    let pid = format!("P{:08}", (i * 7919) % 5000 + 1);
    let (name, dept, panel) = if b.chinese {
        ("王^秀英", "内科门诊", "血常规")
    } else {
        ("WANG^XIUYING", "MED-OPD", "COMPLETE BLOOD COUNT")
    };
    let mut m = format!(
        "MSH|^~\\&|LOADGEN|HOSP{inst:02}|RSGW|REGION|{now}||ORU^R01^ORU_R01|{control}|P|2.5.1|||||CHN|UNICODE UTF-8\r\
         PID|1||{pid}^^^HOSP{inst:02}^MR||{name}||19650412|F\r\
         PV1|1|O|{dept}^^^HOSP|||||||||||||||V{i:09}\r\
         ORC|RE|ORD{i:09}|LAB{i:09}||CM\r\
         OBR|1|ORD{i:09}|LAB{i:09}|CBC^{panel}^L|||{now}|||||||{now}||||||||{now}||HM|F\r"
    );
    for k in 0..b.obx {
        let (code, cname, unit, range) = TESTS[k % TESTS.len()];
        if b.chinese && k + 1 == b.obx {
            m.push_str(&format!(
                "OBX|{}|ST|COMMENT^备注^L||标本轻度溶血，结果仅供参考||||||F|||{now}\r",
                k + 1
            ));
        } else {
            let value = format!("{}.{:02}", (i * 31 + k * 17) % 100, (i + k) % 100);
            let name = if b.chinese {
                cname.to_string()
            } else {
                format!("{code} TEST")
            };
            m.push_str(&format!(
                "OBX|{}|NM|{code}^{name}^L||{value}|{unit}|{range}|N|||F|||{now}\r",
                k + 1
            ));
        }
    }
    let mut framed = Vec::with_capacity(m.len() + 3);
    framed.push(0x0b);
    framed.extend_from_slice(m.as_bytes());
    framed.extend_from_slice(&[0x1c, 0x0d]);
    (framed, control)
}

/// `(MSA-1, MSA-2)` of an ACK payload.
fn msa(ack: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(ack);
    let seg = text.split(['\r', '\n']).find(|s| s.starts_with("MSA|"))?;
    let mut f = seg.split('|').skip(1);
    let code = f.next().unwrap_or("").to_string();
    let control = f
        .next()
        .unwrap_or("")
        .split('^')
        .next()
        .unwrap_or("")
        .to_string();
    Some((code, control))
}

#[derive(Default)]
struct Tally {
    ok: usize,
    bad: Vec<String>,
    latencies_us: Vec<u64>,
}

async fn connection(addr: SocketAddr, msgs: Vec<(Vec<u8>, String)>, timeout: Duration) -> Tally {
    let mut t = Tally::default();
    let mut s = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        other => {
            t.bad.push(format!("connect: {other:?}"));
            return t;
        }
    };
    let _ = s.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    for (frame, control) in msgs {
        let start = Instant::now();
        if let Err(e) = s.write_all(&frame).await {
            t.bad.push(format!("{control}: write: {e}"));
            return t;
        }
        // One ACK frame: 0x0b … 0x1c 0x0d.
        let ack = loop {
            if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let start_at = buf.iter().position(|&c| c == 0x0b).unwrap_or(0);
                let ack = buf[(start_at + 1).min(end)..end].to_vec();
                buf.advance(end + 2);
                break Ok(ack);
            }
            match tokio::time::timeout(timeout, s.read_buf(&mut buf)).await {
                Ok(Ok(0)) => break Err("connection closed".to_string()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Err(e.to_string()),
                Err(_) => break Err(format!("no ACK within {timeout:?}")),
            }
        };
        let lat = start.elapsed();
        match ack {
            Ok(a) => match msa(&a) {
                Some((code, c)) if (code == "AA" || code == "CA") && c == control => {
                    t.ok += 1;
                    t.latencies_us.push(lat.as_micros() as u64);
                }
                other => t.bad.push(format!("{control}: ACK {other:?}")),
            },
            Err(e) => {
                t.bad.push(format!("{control}: {e}"));
                return t;
            }
        }
    }
    t
}

/// The `p` quantile of sorted microsecond latencies, in milliseconds.
pub(crate) fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Runs the benchmark and answers its figures as JSON.
pub fn run(b: MllpBench) -> Result<serde_json::Value> {
    if !b.addr.ip().is_loopback() {
        bail!(
            "refusing {}: the load generator talks to loopback only",
            b.addr
        );
    }
    if b.connections == 0 || b.count == 0 {
        bail!("--count and --connections must be at least 1");
    }
    let run = format!("NB{}", std::process::id());
    let now = chrono::Local::now().format("%Y%m%d%H%M%S+0800").to_string();
    let mut per_conn: Vec<Vec<(Vec<u8>, String)>> = vec![Vec::new(); b.connections];
    let mut bytes = 0usize;
    for i in 0..b.count {
        let m = message(&b, &run, i, &now);
        bytes += m.0.len();
        per_conn[i % b.connections].push(m);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let (tallies, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = per_conn
            .into_iter()
            .map(|msgs| tokio::spawn(connection(b.addr, msgs, b.timeout)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_default());
        }
        (out, start.elapsed())
    });
    let mut lat: Vec<u64> = Vec::with_capacity(b.count);
    let mut ok = 0;
    let mut bad: Vec<String> = Vec::new();
    for t in tallies {
        ok += t.ok;
        lat.extend(t.latencies_us);
        bad.extend(t.bad);
    }
    lat.sort_unstable();
    let secs = elapsed.as_secs_f64();
    Ok(json!({
        "messages": b.count,
        "connections": b.connections,
        "avg_message_bytes": bytes / b.count,
        "ok": ok,
        "bad_or_missing": b.count - ok,
        "first_errors": bad.iter().take(5).collect::<Vec<_>>(),
        "seconds": (secs * 1000.0).round() / 1000.0,
        "per_sec": (ok as f64 / secs).round(),
        "p50_ms": pct(&lat, 0.50),
        "p90_ms": pct(&lat, 0.90),
        "p99_ms": pct(&lat, 0.99),
        "max_ms": lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
    }))
}

/// `huren bench mllp-sink`: an MLLP listener that answers every frame at once with an AA
/// whose MSA-2 is the frame's MSH-10, storing nothing. It measures a load generator's own
/// ceiling on this machine (what no server can be measured above), not huren. Serves for at
/// most `max` and answers how many frames it acknowledged.
pub fn sink(addr: SocketAddr, max: Duration) -> Result<serde_json::Value> {
    use futures::{SinkExt, StreamExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    if !addr.ip().is_loopback() {
        bail!("refusing {addr}: the sink listens on loopback only");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let acked = Arc::new(AtomicU64::new(0));
    let n = acked.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        println!(
            "{}",
            json!({"listening": "mllp-sink", "addr": listener.local_addr()?.to_string()})
        );
        let serve = async {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let n = n.clone();
                tokio::spawn(async move {
                    let codec = huren_hl7::mllp::MllpCodec::new(16 * 1024 * 1024);
                    let mut framed = tokio_util::codec::Framed::new(sock, codec);
                    while let Some(Ok(frame)) = framed.next().await {
                        let header = huren_hl7::Message::parse(&frame, None)
                            .ok()
                            .map(|m| m.header().clone());
                        let ack = huren_hl7::build_ack(
                            header.as_ref(),
                            huren_hl7::AckCode::Accept,
                            &[],
                            chrono::Utc::now().fixed_offset(),
                        );
                        if framed.send(bytes::Bytes::from(ack)).await.is_err() {
                            break;
                        }
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        };
        let _ = tokio::time::timeout(max, serve).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(json!({"sink": "mllp", "acknowledged": acked.load(Ordering::Relaxed)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_acks_are_read() {
        let b = MllpBench {
            addr: "127.0.0.1:1".parse().unwrap(),
            count: 1,
            connections: 1,
            obx: 25,
            chinese: true,
            timeout: Duration::from_secs(1),
        };
        let (framed, control) = message(&b, "T", 3, "20261123120000+0800");
        let body = &framed[1..framed.len() - 2];
        let m = huren_hl7::Message::parse(body, None).expect("parses");
        assert_eq!(m.segments().filter(|s| s.id() == "OBX").count(), 25);
        assert_eq!(control, "T-0000003");
        assert_eq!(
            msa(b"MSH|^~\\&|A\rMSA|AA|T-0000003\r"),
            Some(("AA".into(), "T-0000003".into()))
        );
        assert!(run(MllpBench {
            addr: "10.0.0.1:2575".parse().unwrap(),
            ..b
        })
        .is_err());
    }
}
