//! `huren rules check`: the shipped rules validate; a broken file is refused with lines.

use crate::support::{huren, repo};

#[test]
fn rules_check_reports_unconfigured_items_and_errors_with_lines() {
    let shipped = repo().join("config/recognition.toml");
    let (code, lines, _) = huren(&["rules", "check", shipped.to_str().unwrap()]);
    assert_eq!(code, 0);
    let out = &lines[0];
    assert_eq!(out["valid"], true);
    let unconfigured = out["unconfigured"].as_array().unwrap();
    assert!(unconfigured
        .iter()
        .any(|u| u.as_str().unwrap().starts_with("item FX-ECG-12")));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&shipped).unwrap().replacen(
        "members = [\"FX-ZX\"",
        "members = [\"FX-NOPE\", \"FX-ZX\"",
        1,
    );
    let line = text.lines().position(|l| l.contains("FX-NOPE")).unwrap() + 1;
    std::fs::write(&bad, text).unwrap();
    let (code, lines, stderr) = huren(&["rules", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["valid"], false);
    assert_eq!(lines[0]["errors"][0]["line"], line);
    assert!(
        stderr.contains(&format!(
            "bad.toml:{line}: consortium `FX-YLT`: member `FX-NOPE`"
        )),
        "{stderr}"
    );
}
