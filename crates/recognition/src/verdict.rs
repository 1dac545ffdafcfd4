//! The engine's output (RECOGNITION.md §5): a level, the reasons, and the evidence used.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::rules::Anchor;

/// The verdict level, ordered from least to most permissive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// 不可用: must not be used (and, for identity reasons, not shown).
    Blocked,
    /// 仅供参考.
    ReferenceOnly,
    /// 可互认.
    Recognizable,
}

impl Level {
    /// Chinese label as shown to clinicians.
    pub fn zh(self) -> &'static str {
        match self {
            Level::Blocked => "不可用",
            Level::ReferenceOnly => "仅供参考",
            Level::Recognizable => "可互认",
        }
    }
}

/// How much a reason weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Makes the result blocked.
    Block,
    /// Makes the result reference only.
    Refer,
    /// Shown; changes nothing.
    Warn,
    /// Shown; changes nothing.
    Info,
}

macro_rules! reason_codes {
    ($($variant:ident => ($code:literal, $sev:ident, $zh:literal),)*) => {
        /// Reason codes (stable identifiers; clients switch on them).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ReasonCode {
            $(
                #[doc = $zh]
                #[serde(rename = $code)]
                $variant,
            )*
        }

        impl ReasonCode {
            /// Stable code string, e.g. `EXPIRED`.
            pub fn as_str(self) -> &'static str {
                match self { $(ReasonCode::$variant => $code,)* }
            }
            /// Chinese text for clinicians.
            pub fn zh(self) -> &'static str {
                match self { $(ReasonCode::$variant => $zh,)* }
            }
            /// Default severity.
            pub fn severity(self) -> Severity {
                match self { $(ReasonCode::$variant => Severity::$sev,)* }
            }
            /// Every code.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant,)*];
        }
    };
}

reason_codes! {
    IdentityUncertain => ("IDENTITY_UNCERTAIN", Block, "患者身份匹配不确定，结果内容不予显示"),
    IdentityConflict => ("IDENTITY_CONFLICT", Block, "患者性别或出生日期与本院记录不一致"),
    NoPatientAuthorization => ("NO_PATIENT_AUTHORIZATION", Block, "未获患者授权调阅"),
    BreakGlass => ("BREAK_GLASS", Info, "紧急情况破窗调阅，已记录审计"),
    ReportWithdrawn => ("REPORT_WITHDRAWN", Block, "报告已撤销或作废"),
    ReportNotFinal => ("REPORT_NOT_FINAL", Refer, "报告尚未终审"),
    SupersededVersionHidden => ("SUPERSEDED_VERSION_HIDDEN", Info, "报告已更正，仅按最新版本评估"),
    ItemNotInCatalogue => ("ITEM_NOT_IN_CATALOGUE", Refer, "项目不在互认目录内"),
    ItemNotEquivalent => ("ITEM_NOT_EQUIVALENT", Refer, "与拟开项目不等同（项目、部位或增强方式不同）"),
    SrcQcMissing => ("SRC_QC_MISSING", Refer, "出具机构无该项目的质控合格证明"),
    SrcQcFailed => ("SRC_QC_FAILED", Refer, "出具机构该项目质控不合格"),
    SrcQcNotValidAtPerformance => ("SRC_QC_NOT_VALID_AT_PERFORMANCE", Refer, "检查检验时出具机构的质控证明不在有效期内"),
    OutOfScope => ("OUT_OF_SCOPE", Refer, "本院不在该结果的互认范围内"),
    ConsortiumInternal => ("CONSORTIUM_INTERNAL", Info, "医联体内互认"),
    TierDiscretionary => ("TIER_DISCRETIONARY", Refer, "低等级医院影像用于高等级医院，由接诊医师酌情决定"),
    ValidityUnconfigured => ("VALIDITY_UNCONFIGURED", Refer, "该项目未配置互认时限"),
    Expired => ("EXPIRED", Refer, "已超过互认时限"),
    ClockSkew => ("CLOCK_SKEW", Refer, "结果时间晚于当前时间，时间不可信"),
    ImagesUnavailable => ("IMAGES_UNAVAILABLE", Refer, "影像资料不可调阅，仅有报告结论"),
    ImageQualityInsufficient => ("IMAGE_QUALITY_INSUFFICIENT", Refer, "影像质量不满足诊断要求"),
    CriticalValueOpen => ("CRITICAL_VALUE_OPEN", Refer, "危急值尚未闭环处置"),
    HintE1 => ("HINT_E1", Warn, "建议复查：病情变化"),
    HintE3 => ("HINT_E3", Warn, "建议复查：手术、输血等重大医疗措施前"),
    HintE4 => ("HINT_E4", Warn, "建议复查：急诊、急救"),
    HintE5 => ("HINT_E5", Warn, "建议复查：司法鉴定、伤残鉴定"),
    DuplicateOlder => ("DUPLICATE_OLDER", Info, "同一项目有更新的可互认结果"),
    DuplicateSameContent => ("DUPLICATE_SAME_CONTENT", Info, "与另一渠道收到的报告内容相同"),
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code.
    pub code: ReasonCode,
    /// Severity (may be raised by policy, e.g. critical values blocked).
    pub severity: Severity,
    /// Chinese text.
    pub zh_text: String,
    /// Specifics (dates, certificate, scope), when useful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The rule behind it: `rules@VERSION#…`.
    pub source_ref: String,
}

/// What was used to decide.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Rules version.
    pub catalogue_version: String,
    /// Regional item code the candidate resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regional_code: Option<String>,
    /// Item name from the catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_name: Option<String>,
    /// QC certificate used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qc_cert_id: Option<String>,
    /// Scope that admitted the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_used: Option<String>,
    /// Tier rule applied (imaging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_rule: Option<String>,
    /// Which time started the clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_used: Option<Anchor>,
    /// That time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_time: Option<DateTime<FixedOffset>>,
    /// Access was break-glass (the audit record must say so).
    #[serde(default)]
    pub break_glass: bool,
}

/// What a clinician must give when ordering the test again anyway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReorderRequirements {
    /// At least one exception code (E1–E6) is required.
    pub exception_code_required: bool,
    /// The patient must have been informed.
    pub patient_informed_required: bool,
}

/// The engine's answer for one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The candidate's report id.
    pub report_id: String,
    /// Level (the most severe reason decides).
    pub level: Level,
    /// HR label, only when recognisable and the scope has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hr_label: Option<String>,
    /// When recognition ends, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<FixedOffset>>,
    /// Every reason found, most severe first.
    pub reasons: Vec<Reason>,
    /// Evidence.
    pub evidence: Evidence,
    /// Requirements on a repeat order.
    pub required_on_reorder: ReorderRequirements,
    /// Report id of the result shown instead of this one (duplicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

impl Verdict {
    /// Whether the result's content may be returned (identity and authorisation checks
    /// passed). Results that fail them are listed without content, if at all.
    pub fn content_allowed(&self) -> bool {
        !self.reasons.iter().any(|r| {
            matches!(
                r.code,
                ReasonCode::IdentityUncertain
                    | ReasonCode::IdentityConflict
                    | ReasonCode::NoPatientAuthorization
            )
        })
    }

    /// Whether the reason `code` is present.
    pub fn has(&self, code: ReasonCode) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }

    /// Whether this result is hidden as a duplicate of another one with the same content.
    pub fn is_hidden_duplicate(&self) -> bool {
        self.has(ReasonCode::DuplicateSameContent)
    }
}
