//! The third-party corpus (`$HUREN_THIRD_PARTY/dicom`): files nobody on the team wrote.
//! Every file of images/, compressed/, waveform/, sr/, charset/ and dicomdir/ must parse into
//! an instance summary; every file of edge_cases/ parses or is refused with a precise reason,
//! never a panic. `cargo test -p huren-dicom --test corpus -- --nocapture` prints the table.

mod common;
use common::corpus;

use std::path::{Path, PathBuf};

use huren_dicom::parse_file;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p
            .file_name()
            .is_some_and(|n| n != "DICOMDIR" && n != "FileInfo.txt")
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn every_corpus_file_parses_or_is_refused_precisely() {
    let Some(root) = corpus() else { return };
    let mut n = 0;
    for sub in [
        "images",
        "compressed",
        "waveform",
        "sr",
        "charset",
        "dicomdir",
    ] {
        for f in files(&root.join(sub)) {
            let b = std::fs::read(&f).unwrap();
            let i = parse_file(&b).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(!i.record.sop_instance_uid.is_empty());
            println!(
                "| `{sub}/{}` | parsed | {:?} |",
                f.file_name().unwrap().to_string_lossy(),
                i.warnings
            );
            n += 1;
        }
    }
    assert!(n >= 40, "only {n} corpus files");
    for f in files(&root.join("edge_cases")) {
        let b = std::fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        match parse_file(&b) {
            Ok(i) => println!("| `edge_cases/{name}` | parsed | {:?} |", i.warnings),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                println!("| `edge_cases/{name}` | refused {:04X} | {e} |", e.status());
            }
        }
    }
}
