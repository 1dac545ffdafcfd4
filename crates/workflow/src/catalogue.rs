//! The ECG statement catalogue the reader picks from: common Chinese diagnostic statements
//! (as Chinese ECG reports word them), grouped, each with an English gloss, and templates
//! (a named set of statements for a frequent reading). The signature stores the Chinese
//! text; the critical-statement rules (`huren-ecg`) read the same words.

/// One diagnostic statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement {
    /// A short stable code (`SR`, `AMI-INF`, …).
    pub code: &'static str,
    /// The statement as signed (Chinese).
    pub zh: &'static str,
    /// English gloss.
    pub en: &'static str,
    /// The group it is listed under.
    pub group: Group,
}

/// Where a statement is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Rhythm.
    Rhythm,
    /// Conduction.
    Conduction,
    /// Ischaemia and infarction.
    Ischaemia,
    /// Other findings.
    Other,
}

impl Group {
    /// The heading (Chinese, English).
    pub fn heading(self) -> (&'static str, &'static str) {
        match self {
            Group::Rhythm => ("心律", "Rhythm"),
            Group::Conduction => ("传导", "Conduction"),
            Group::Ischaemia => ("缺血与梗死", "Ischaemia and infarction"),
            Group::Other => ("其他", "Other"),
        }
    }
}

const fn s(code: &'static str, zh: &'static str, en: &'static str, group: Group) -> Statement {
    Statement {
        code,
        zh,
        en,
        group,
    }
}

/// The catalogue, in display order.
pub const ECG_STATEMENTS: &[Statement] = &[
    s("SR", "窦性心律", "Sinus rhythm", Group::Rhythm),
    s("STACH", "窦性心动过速", "Sinus tachycardia", Group::Rhythm),
    s("SBRAD", "窦性心动过缓", "Sinus bradycardia", Group::Rhythm),
    s("AF", "心房颤动", "Atrial fibrillation", Group::Rhythm),
    s("AFL", "心房扑动", "Atrial flutter", Group::Rhythm),
    s(
        "PAC",
        "房性早搏",
        "Premature atrial contractions",
        Group::Rhythm,
    ),
    s(
        "PVC",
        "室性早搏",
        "Premature ventricular contractions",
        Group::Rhythm,
    ),
    s(
        "SVT",
        "室上性心动过速",
        "Supraventricular tachycardia",
        Group::Rhythm,
    ),
    s(
        "VT",
        "室性心动过速",
        "Ventricular tachycardia",
        Group::Rhythm,
    ),
    s(
        "AVB1",
        "一度房室传导阻滞",
        "First-degree AV block",
        Group::Conduction,
    ),
    s(
        "AVB2",
        "二度房室传导阻滞",
        "Second-degree AV block",
        Group::Conduction,
    ),
    s(
        "AVB3",
        "完全性房室传导阻滞",
        "Complete AV block",
        Group::Conduction,
    ),
    s(
        "RBBB",
        "完全性右束支传导阻滞",
        "Complete right bundle branch block",
        Group::Conduction,
    ),
    s(
        "LBBB",
        "完全性左束支传导阻滞",
        "Complete left bundle branch block",
        Group::Conduction,
    ),
    s(
        "LAFB",
        "左前分支阻滞",
        "Left anterior fascicular block",
        Group::Conduction,
    ),
    s(
        "AMI-INF",
        "急性下壁心肌梗死",
        "Acute inferior myocardial infarction",
        Group::Ischaemia,
    ),
    s(
        "AMI-ANT",
        "急性前壁心肌梗死",
        "Acute anterior myocardial infarction",
        Group::Ischaemia,
    ),
    s(
        "AMI-AS",
        "急性前间壁心肌梗死",
        "Acute anteroseptal myocardial infarction",
        Group::Ischaemia,
    ),
    s(
        "AMI-LAT",
        "急性侧壁心肌梗死",
        "Acute lateral myocardial infarction",
        Group::Ischaemia,
    ),
    s(
        "AMI-POST",
        "急性后壁心肌梗死",
        "Acute posterior myocardial infarction",
        Group::Ischaemia,
    ),
    s("STE", "ST段抬高", "ST elevation", Group::Ischaemia),
    s("STD", "ST段压低", "ST depression", Group::Ischaemia),
    s("TWA", "T波改变", "T-wave changes", Group::Ischaemia),
    s(
        "OMI",
        "陈旧性心肌梗死",
        "Old myocardial infarction",
        Group::Ischaemia,
    ),
    s(
        "LVH",
        "左心室肥厚",
        "Left ventricular hypertrophy",
        Group::Other,
    ),
    s("QTL", "QT间期延长", "Prolonged QT interval", Group::Other),
    s("LAD", "电轴左偏", "Left axis deviation", Group::Other),
    s("RAD", "电轴右偏", "Right axis deviation", Group::Other),
    s("LQRS", "低电压", "Low voltage", Group::Other),
    s("NORM", "正常心电图", "Normal ECG", Group::Other),
    s(
        "BORD",
        "大致正常心电图",
        "Borderline normal ECG",
        Group::Other,
    ),
];

/// A named set of statements for a frequent reading.
#[derive(Clone, Copy, Debug)]
pub struct Template {
    /// Stable code.
    pub code: &'static str,
    /// Name (Chinese, English).
    pub name: (&'static str, &'static str),
    /// The statements' codes.
    pub statements: &'static [&'static str],
}

/// The templates, in display order.
pub const ECG_TEMPLATES: &[Template] = &[
    Template {
        code: "normal",
        name: ("正常心电图", "Normal ECG"),
        statements: &["SR", "NORM"],
    },
    Template {
        code: "inferior-stemi",
        name: ("急性下壁STEMI", "Acute inferior STEMI"),
        statements: &["SR", "AMI-INF", "STE"],
    },
    Template {
        code: "anterior-stemi",
        name: ("急性前壁STEMI", "Acute anterior STEMI"),
        statements: &["SR", "AMI-ANT", "STE"],
    },
    Template {
        code: "af",
        name: ("房颤", "Atrial fibrillation"),
        statements: &["AF"],
    },
];

/// A statement by its code.
pub fn statement(code: &str) -> Option<&'static Statement> {
    ECG_STATEMENTS.iter().find(|s| s.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_texts_are_unique_and_templates_name_known_statements() {
        let codes: HashSet<_> = ECG_STATEMENTS.iter().map(|s| s.code).collect();
        assert_eq!(codes.len(), ECG_STATEMENTS.len());
        let texts: HashSet<_> = ECG_STATEMENTS.iter().map(|s| s.zh).collect();
        assert_eq!(texts.len(), ECG_STATEMENTS.len());
        for t in ECG_TEMPLATES {
            for c in t.statements {
                assert!(statement(c).is_some(), "{} names {c}", t.code);
            }
        }
        assert_eq!(statement("AVB3").map(|s| s.zh), Some("完全性房室传导阻滞"));
        assert_eq!(statement("nope"), None);
    }
}
