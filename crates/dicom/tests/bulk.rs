//! WADO-RS frames over the third-party corpus: every image of `images/` and `compressed/`
//! is cut into exactly Number of Frames frames, and each compressed frame starts the way
//! its codec's bit stream does (JPEG SOI, JPEG-LS SOI + SOF55, JPEG 2000 SOC or a JP2 box,
//! RLE header with 1–15 segments). `-- --nocapture` prints the table.

mod common;
use common::corpus;

use huren_dicom::bulk::{frame_media_type, frames};

fn looks_like(media: &str, f: &[u8]) -> bool {
    match media {
        "image/jpeg" => f.starts_with(&[0xFF, 0xD8]),
        "image/jls" => f.starts_with(&[0xFF, 0xD8, 0xFF, 0xF7]) || f.starts_with(&[0xFF, 0xD8]),
        "image/jp2" | "image/jpx" => {
            f.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) || f.get(4..8) == Some(b"jP  ")
        }
        "image/dicom-rle" => f
            .get(0..4)
            .map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
            .is_some_and(|n| (1..=15).contains(&n)),
        _ => true,
    }
}

#[test]
fn corpus_frames_have_the_right_count_and_codec_headers() {
    let Some(root) = corpus() else { return };
    let mut checked = 0;
    let mut bad = Vec::new();
    println!("| file | frames | media type | first frame bytes |\n| --- | --- | --- | --- |");
    for sub in ["images", "compressed"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(sub))
            .expect("corpus folder")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for p in files {
            let b = std::fs::read(&p).expect("read");
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let Ok(inst) = huren_dicom::parse_file(&b) else {
                continue;
            };
            let want = inst.record.frames.unwrap_or(1).max(1) as usize;
            let all: Vec<usize> = (1..=want).collect();
            match frames(&b, &all) {
                Ok(f) => {
                    checked += 1;
                    let media = f.media_type;
                    let ts = inst.record.transfer_syntax.clone();
                    println!(
                        "| {name} | {} | {media} | {} |",
                        f.parts.len(),
                        f.parts[0].len()
                    );
                    if f.parts.len() != want {
                        bad.push(format!("{name}: {} frames, want {want}", f.parts.len()));
                    }
                    if media != "application/octet-stream" && media != frame_media_type(&ts) {
                        bad.push(format!("{name}: media {media} for {ts}"));
                    }
                    for (k, fr) in f.parts.iter().enumerate() {
                        if fr.is_empty() || !looks_like(media, fr) {
                            bad.push(format!(
                                "{name}: frame {} does not look like {media}: {:02x?}",
                                k + 1,
                                &fr[..fr.len().min(8)]
                            ));
                        }
                    }
                    if media == "application/octet-stream" {
                        let same = f
                            .parts
                            .iter()
                            .map(Vec::len)
                            .collect::<std::collections::BTreeSet<_>>();
                        if same.len() != 1 {
                            bad.push(format!("{name}: native frames of unequal size {same:?}"));
                        }
                    }
                }
                Err(e) => {
                    println!("| {name} | — | {} | {e} |", e.http_status());
                    // Only refusals with a reason (not a parse failure of a stored file).
                    if e.http_status() == 500 {
                        bad.push(format!("{name}: {e}"));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(checked >= 31, "only {checked} files cut into frames");
}
