//! The critical-ECG catalogue: statement patterns (English and Chinese) that mark a report
//! critical (危急值), with exclusions for known mimics.

use serde::{Deserialize, Serialize};

/// One rule: a statement matches when it contains any `patterns` entry and none of the
/// `exclude` entries (case-insensitive, white space collapsed). A `*` in a pattern stands
/// for any text: `急性*心肌梗死` matches 急性下壁心肌梗死.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalRule {
    /// Stable rule ID, stored with the flag (e.g. `stemi`).
    pub id: String,
    /// Human label (e.g. `Acute MI / STEMI`).
    pub label: String,
    /// Substrings that trigger the rule.
    pub patterns: Vec<String>,
    /// Substrings that cancel it for that statement (mimics: LVH, early repolarisation…).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// An ordered list of rules; the first rule matching the first statement wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalCatalogue {
    /// Rules in priority order.
    pub rules: Vec<CriticalRule>,
}

/// What matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriticalMatch {
    /// Rule ID.
    pub rule: String,
    /// Rule label.
    pub label: String,
    /// The statement as given.
    pub statement: String,
}

fn rule(id: &str, label: &str, patterns: &[&str], exclude: &[&str]) -> CriticalRule {
    CriticalRule {
        id: id.into(),
        label: label.into(),
        patterns: patterns.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
    }
}

impl Default for CriticalCatalogue {
    /// The built-in catalogue: acute MI / STEMI, ST elevation (not LVH, early
    /// repolarisation or pericarditis), complete AV block, VT, VF / flutter, asystole.
    fn default() -> Self {
        let mimics = [
            "lvh",
            "ventricular hypertrophy",
            "early repol",
            "pericarditis",
            "左室肥厚",
            "左心室肥厚",
            "心室肥大",
            "早期复极",
            "早复极",
            "心包炎",
        ];
        CriticalCatalogue {
            rules: vec![
                rule(
                    "stemi",
                    "Acute MI / STEMI",
                    &[
                        "acute mi",
                        "acute myocardial infarction",
                        "stemi",
                        "infarct, acute",
                        "acute infarct",
                        "acute st elevation",
                        "急性*心肌梗死",
                        "急性*心肌梗塞",
                        "急性心肌梗塞",
                        "急性心梗",
                        "st段抬高型心肌梗死",
                        "急性st段抬高",
                    ],
                    &[],
                ),
                rule(
                    "st_elevation",
                    "ST elevation",
                    &[
                        "st elevation",
                        "st-elevation",
                        "st段抬高",
                        "st抬高",
                        "st 段抬高",
                    ],
                    &mimics,
                ),
                rule(
                    "complete_av_block",
                    "Complete AV block",
                    &[
                        "complete av block",
                        "complete a-v block",
                        "complete heart block",
                        "third degree av block",
                        "third degree a-v block",
                        "3rd degree av block",
                        "3rd degree a-v block",
                        "三度房室传导阻滞",
                        "三度房室阻滞",
                        "iii度房室传导阻滞",
                        "ⅲ度房室传导阻滞",
                        "完全性房室传导阻滞",
                    ],
                    &[],
                ),
                rule(
                    "vf",
                    "Ventricular fibrillation / flutter",
                    &[
                        "ventricular fibrillation",
                        "ventricular flutter",
                        "v-fib",
                        "vfib",
                        "心室颤动",
                        "室颤",
                        "心室扑动",
                        "室扑",
                    ],
                    &[],
                ),
                rule(
                    "vt",
                    "Ventricular tachycardia",
                    &[
                        "ventricular tachycardia",
                        "v-tach",
                        "vtach",
                        "室性心动过速",
                        "室速",
                    ],
                    &[],
                ),
                rule(
                    "asystole",
                    "Asystole",
                    &["asystole", "心脏停搏", "心室停搏"],
                    &[],
                ),
            ],
        }
    }
}

fn norm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// Whether `hay` contains the `*`-separated parts of `pat` in order.
fn matches(hay: &str, pat: &str) -> bool {
    let mut rest = hay;
    let mut any = false;
    for part in pat.split('*').filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
        any = true;
    }
    any
}

/// The first statement (in order) that a rule of `catalogue` matches, else `None`.
pub fn critical<'a>(
    statements: impl IntoIterator<Item = &'a str>,
    catalogue: &CriticalCatalogue,
) -> Option<CriticalMatch> {
    let rules: Vec<(&CriticalRule, Vec<String>, Vec<String>)> = catalogue
        .rules
        .iter()
        .map(|r| {
            (
                r,
                r.patterns.iter().map(|p| norm(p)).collect(),
                r.exclude.iter().map(|p| norm(p)).collect(),
            )
        })
        .collect();
    for s in statements {
        let n = norm(s);
        for (r, pats, excl) in &rules {
            if pats.iter().any(|p| matches(&n, p)) && !excl.iter().any(|e| matches(&n, e)) {
                return Some(CriticalMatch {
                    rule: r.id.clone(),
                    label: r.label.clone(),
                    statement: s.to_string(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(s: &str) -> Option<String> {
        critical([s], &CriticalCatalogue::default()).map(|m| m.rule)
    }

    #[test]
    fn flags_critical_statements_in_both_languages() {
        assert_eq!(hit(">>> Acute MI <<<").as_deref(), Some("stemi"));
        assert_eq!(
            hit("Extensive anterior infarct, acute (LAD)").as_deref(),
            Some("stemi")
        );
        assert_eq!(hit("急性前壁心肌梗死").as_deref(), Some("stemi"));
        assert_eq!(hit("陈旧性下壁心肌梗死").as_deref(), None);
        assert_eq!(hit("急性心肌梗死（前壁）").as_deref(), Some("stemi"));
        assert_eq!(hit("下壁ST段抬高").as_deref(), Some("st_elevation"));
        assert_eq!(
            hit("Complete AV block").as_deref(),
            Some("complete_av_block")
        );
        assert_eq!(
            hit("三度房室传导阻滞").as_deref(),
            Some("complete_av_block")
        );
        assert_eq!(hit("Ventricular  tachycardia").as_deref(), Some("vt"));
        assert_eq!(hit("心室颤动").as_deref(), Some("vf"));
    }

    #[test]
    fn mimics_are_not_flagged() {
        assert_eq!(
            hit("ANTERIOR ST ELEVATION, PROBABLY DUE TO LVH (ST >0.20 mV in V1-V4 & LVH)"),
            None
        );
        assert_eq!(hit("ST段抬高（提示心室早期复极）"), None);
        assert_eq!(hit("ST elevation, consider early repolarization"), None);
        assert_eq!(hit("Sinus rhythm"), None);
        assert_eq!(hit("窦性心律"), None);
    }

    #[test]
    fn first_statement_wins_and_catalogue_is_configurable() {
        let m = critical(
            ["Sinus rhythm", "Complete heart block", "Acute MI"],
            &CriticalCatalogue::default(),
        )
        .unwrap();
        assert_eq!(m.rule, "complete_av_block");
        assert_eq!(m.statement, "Complete heart block");
        let only = CriticalCatalogue {
            rules: vec![rule("wpw", "WPW", &["预激"], &[])],
        };
        assert_eq!(critical(["心室预激"], &only).unwrap().label, "WPW");
        assert!(critical(["Acute MI"], &only).is_none());
    }
}
