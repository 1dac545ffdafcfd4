//! Rules as versioned data (`config/recognition.toml`): item catalogue, institutions, QC
//! evidence, scopes and labels, consortia, tier matrix, exception codes and policies.
//! [`Rules::from_toml`] parses and validates; every problem names its line.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::input::{Category, EncounterKind};

/// A rules-file problem with its position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RulesIssue {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RulesIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The rules file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}", .issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
pub struct RulesError {
    /// Every problem found (at least one).
    pub issues: Vec<RulesIssue>,
}

/// Where a QC certificate (or a region agreement) is valid.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// The whole country (全国).
    National,
    /// One province by its GB/T 2260 code, e.g. `31` (上海).
    Province(String),
    /// One city by its code, e.g. `3101`.
    City(String),
    /// Members of one consortium (医联体).
    Consortium(String),
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (kind, arg) = s.split_once(':').unwrap_or((s.as_str(), ""));
        let need = |a: &str| {
            if a.is_empty() {
                Err(format!("scope `{s}` needs a value after `:`"))
            } else {
                Ok(a.to_string())
            }
        };
        match kind {
            "national" if arg.is_empty() => Ok(Scope::National),
            "province" => need(arg).map(Scope::Province),
            "city" => need(arg).map(Scope::City),
            "consortium" => need(arg).map(Scope::Consortium),
            _ => Err(format!(
                "unknown scope `{s}` (national | province:CODE | city:CODE | consortium:ID)"
            )),
        }
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::National => f.write_str("national"),
            Scope::Province(p) => write!(f, "province:{p}"),
            Scope::City(c) => write!(f, "city:{c}"),
            Scope::Consortium(c) => write!(f, "consortium:{c}"),
        }
    }
}

/// The lowest administrative level at which an item is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeLevel {
    /// Listed nationally.
    National,
    /// Listed by the province.
    Province,
    /// Listed by the city.
    City,
}

/// Which time starts an item's validity clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Specimen collection (lab default).
    SpecimenCollected,
    /// Examination performed (imaging / ECG default).
    Performed,
    /// Report issued (fallback for all).
    Reported,
}

/// Hospital grade (医院等级).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// 三级甲等.
    #[serde(rename = "三甲")]
    ThreeA,
    /// 三级乙等.
    #[serde(rename = "三乙")]
    ThreeB,
    /// 三级 (ungraded).
    #[serde(rename = "三级")]
    Three,
    /// 二级甲等.
    #[serde(rename = "二甲")]
    TwoA,
    /// 二级乙等.
    #[serde(rename = "二乙")]
    TwoB,
    /// 二级 (ungraded).
    #[serde(rename = "二级")]
    Two,
    /// 一级.
    #[serde(rename = "一级")]
    One,
    /// 基层 (community health centre, township hospital).
    #[serde(rename = "基层")]
    Primary,
}

/// Administrative region of an institution (GB/T 2260 codes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Province code, e.g. `31`.
    pub province: String,
    /// City code, e.g. `3101`.
    #[serde(default)]
    pub city: String,
    /// District code, e.g. `310120`.
    #[serde(default)]
    pub district: String,
}

/// One institution as the rules know it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Institution {
    /// Code (the same as in `huren.toml`).
    pub code: Spanned<String>,
    /// Name.
    pub name: String,
    /// Grade.
    pub tier: Tier,
    /// Region.
    pub region: Region,
}

/// One item of the regional catalogue (互认项目).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Regional code (互认编码).
    pub code: Spanned<String>,
    /// Name, e.g. 糖化血红蛋白A1c.
    pub name: String,
    /// Category.
    pub category: Category,
    /// 互认时限 in days; absent = unconfigured (never recognised, `VALIDITY_UNCONFIGURED`).
    #[serde(default)]
    pub validity_days: Option<u32>,
    /// Clock start; default by category (lab: specimen collected; others: performed).
    #[serde(default)]
    pub anchor: Option<Anchor>,
    /// Lowest level at which the item is listed (caps the QC scope), if known.
    #[serde(default)]
    pub scope_min: Option<ScopeLevel>,
    /// Recognised on images rather than the conclusion; default true for imaging.
    #[serde(default)]
    pub requires_images: Option<bool>,
    /// Body site the item implies (imaging), e.g. 胸部.
    #[serde(default)]
    pub body_site: Option<String>,
    /// With contrast (imaging).
    #[serde(default)]
    pub contrast: Option<bool>,
    /// Local codes mapped to this item: `INSTITUTION:CODE`, or `CODE` for any institution.
    #[serde(default)]
    pub local_codes: Vec<Spanned<String>>,
    /// LOINC code, when mapped.
    #[serde(default)]
    pub loinc: Option<String>,
    /// Price of repeating the test, in yuan, for savings estimates.
    #[serde(default)]
    pub price_cny: Option<f64>,
}

impl Item {
    /// The anchor in effect.
    pub fn anchor(&self) -> Anchor {
        self.anchor.unwrap_or(if self.category == Category::Lab {
            Anchor::SpecimenCollected
        } else {
            Anchor::Performed
        })
    }

    /// Whether images are required.
    pub fn requires_images(&self) -> bool {
        self.requires_images
            .unwrap_or_else(|| self.category.is_imaging())
    }
}

/// QC outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QcResult {
    /// 质控合格.
    Pass,
    /// 质控不合格.
    Fail,
}

/// QC evidence of one institution for some items.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QcEvidence {
    /// Institution code.
    pub institution: Spanned<String>,
    /// Regional item codes covered; `"*"` covers every catalogue item (a policy choice).
    pub items: Vec<Spanned<String>>,
    /// Programme, e.g. `NCCL_EQA`, `Provincial_EQA`, `Imaging_QC`.
    pub program: String,
    /// Outcome.
    pub result: QcResult,
    /// First day of validity (a TOML date, `2025-01-01`).
    #[serde(deserialize_with = "toml_date")]
    pub valid_from: NaiveDate,
    /// Last day of validity, inclusive.
    #[serde(deserialize_with = "toml_date")]
    pub valid_to: NaiveDate,
    /// Where the certificate is recognised.
    pub scope: Scope,
    /// Certificate identifier, shown as evidence.
    #[serde(default)]
    pub cert_id: Option<String>,
}

/// A TOML local date (`2025-01-01`) or a string of the same form.
fn toml_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Toml(toml::value::Datetime),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Toml(dt) => match (dt.date, dt.time) {
            (Some(date), None) => date.to_string(),
            _ => {
                return Err(D::Error::custom(
                    "expected a date without time, e.g. 2025-01-01",
                ))
            }
        },
        Raw::Text(s) => s,
    };
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|e| D::Error::custom(format!("bad date `{text}`: {e}")))
}

/// The HR label printed for a scope, e.g. `national` → 全国HR.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeLabel {
    /// Scope.
    pub scope: Scope,
    /// Label.
    pub label: String,
}

/// A consortium (医联体 / 医共体).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consortium {
    /// Identifier.
    pub id: Spanned<String>,
    /// Name, e.g. 奉贤区医联体.
    pub name: String,
    /// Member institution codes.
    pub members: Vec<Spanned<String>>,
}

/// A cross-province agreement with an item whitelist.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionGroup {
    /// Name, e.g. 京津冀鲁.
    pub name: String,
    /// Province codes.
    pub provinces: Vec<String>,
    /// Regional item codes covered.
    pub items: Vec<Spanned<String>>,
}

/// Imaging tier rule: HIGH → any accepts; LOW → LOW accepts; LOW → HIGH is discretionary.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierMatrix {
    /// High tiers.
    pub high: Vec<Tier>,
    /// Low tiers.
    pub low: Vec<Tier>,
}

/// A reason a clinician may give for repeating a test.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionCode {
    /// `E1`…`E6`.
    pub code: String,
    /// Chinese text.
    pub text: String,
    /// Free text is mandatory with this code (E6 其他).
    #[serde(default)]
    pub requires_text: bool,
}

/// Who may look without the patient's authorisation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// Looking up prior results needs the patient's authorisation.
    #[serde(default = "yes")]
    pub required: bool,
    /// Encounter kinds in which break-glass access is allowed.
    #[serde(default = "emergency_only")]
    pub break_glass_allowed_for: Vec<EncounterKind>,
}

impl Default for AuthorizationPolicy {
    fn default() -> Self {
        AuthorizationPolicy {
            required: true,
            break_glass_allowed_for: emergency_only(),
        }
    }
}

fn yes() -> bool {
    true
}
fn emergency_only() -> Vec<EncounterKind> {
    vec![EncounterKind::Emergency]
}

/// What an unacknowledged critical value does to the verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticalOpenPolicy {
    /// Reference only (the default).
    #[default]
    ReferenceOnly,
    /// Blocked.
    Blocked,
}

/// Checks that are skipped for results produced inside the requester's own consortium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bypass {
    /// Scope check (default).
    Scope,
    /// Tier check (default).
    Tier,
    /// QC evidence check (policy choice for a shared regional centre).
    Qc,
}

fn default_bypass() -> Vec<Bypass> {
    vec![Bypass::Scope, Bypass::Tier]
}
fn default_free_text() -> usize {
    200
}
fn default_skew() -> i64 {
    10
}
fn default_tz() -> String {
    "Asia/Shanghai".into()
}

/// The rules file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Version of this rule set, cited in every reason.
    pub version: String,
    /// Time zone in which QC validity dates are read.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// Maximum length of a clinician's free-text reason.
    #[serde(default = "default_free_text")]
    pub free_text_max_chars: usize,
    /// Tolerated clock skew for result times in the future, minutes.
    #[serde(default = "default_skew")]
    pub clock_skew_minutes: i64,
    /// Checks skipped within one consortium.
    #[serde(default = "default_bypass")]
    pub consortium_internal_bypass: Vec<Bypass>,
    /// Patient-authorisation policy.
    #[serde(default)]
    pub patient_authorization: AuthorizationPolicy,
    /// Unacknowledged critical values.
    #[serde(default)]
    pub critical_open_policy: CriticalOpenPolicy,
    /// HR labels per scope.
    #[serde(default, rename = "scope_label")]
    pub scope_labels: Vec<ScopeLabel>,
    /// Consortia.
    #[serde(default, rename = "consortium")]
    pub consortia: Vec<Consortium>,
    /// Institutions.
    #[serde(default, rename = "institution")]
    pub institutions: Vec<Institution>,
    /// Catalogue.
    #[serde(default, rename = "item")]
    pub items: Vec<Item>,
    /// QC evidence.
    #[serde(default, rename = "qc")]
    pub qc: Vec<QcEvidence>,
    /// Cross-province agreements.
    #[serde(default, rename = "region_group")]
    pub region_groups: Vec<RegionGroup>,
    /// Imaging tier rule; absent = no tier check.
    #[serde(default)]
    pub tier_matrix: Option<TierMatrix>,
    /// Exception codes; absent = the national E1–E6.
    #[serde(default, rename = "exception_code")]
    pub exception_codes: Vec<ExceptionCode>,
}

/// The six national reasons for repeating a test (NHC, 2024-11-27).
pub fn default_exception_codes() -> Vec<ExceptionCode> {
    [
        ("E1", "病情变化", false),
        ("E2", "检查检验结果在疾病进展中变化快", false),
        ("E3", "手术、输血等重大医疗措施前", false),
        ("E4", "急诊、急救等抢救", false),
        ("E5", "司法鉴定、伤残鉴定等", false),
        ("E6", "其他", true),
    ]
    .into_iter()
    .map(|(c, t, r)| ExceptionCode {
        code: c.into(),
        text: t.into(),
        requires_text: r,
    })
    .collect()
}

/// Validated, indexed rules: what [`crate::evaluate`] reads.
#[derive(Clone, Debug)]
pub struct Rules {
    /// The file as written.
    pub file: RulesFile,
    /// Time zone for QC dates.
    pub tz: chrono_tz::Tz,
    items: HashMap<String, usize>,
    local: HashMap<(String, String), String>,
    generic_local: HashMap<String, String>,
    institutions: HashMap<String, usize>,
    qc: HashMap<(String, String), Vec<usize>>,
    qc_all: HashMap<String, Vec<usize>>,
    consortia_of: HashMap<String, BTreeSet<String>>,
    labels: HashMap<Scope, String>,
    exception_codes: Vec<ExceptionCode>,
}

fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()
        .get(..pos)
        .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
        + 1
}

impl Rules {
    /// Parses and validates a rules file; every problem is reported with its line.
    pub fn from_toml(text: &str) -> Result<Rules, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError {
            issues: vec![RulesIssue {
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().to_string(),
            }],
        })?;
        let mut issues = Vec::new();
        macro_rules! issue {
            ($span:expr, $message:expr $(,)?) => {
                issues.push(RulesIssue {
                    line: Some(line_of(text, $span.start)),
                    message: $message,
                })
            };
        }
        let tz = match file.time_zone.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                issues.push(RulesIssue {
                    line: text
                        .lines()
                        .position(|l| l.trim_start().starts_with("time_zone"))
                        .map(|i| i + 1),
                    message: format!("unknown time zone `{}`", file.time_zone),
                });
                chrono_tz::Asia::Shanghai
            }
        };

        let mut institutions = HashMap::new();
        for (i, inst) in file.institutions.iter().enumerate() {
            if institutions
                .insert(inst.code.get_ref().clone(), i)
                .is_some()
            {
                issue!(
                    inst.code.span(),
                    format!("institution `{}` is defined twice", inst.code.get_ref()),
                );
            }
            if inst.region.province.is_empty() {
                issue!(
                    inst.code.span(),
                    format!(
                        "institution `{}` has no region.province",
                        inst.code.get_ref()
                    ),
                );
            }
        }
        let known_inst = |c: &str| institutions.contains_key(c);

        let mut items = HashMap::new();
        let mut local = HashMap::new();
        let mut generic_local = HashMap::new();
        for (i, item) in file.items.iter().enumerate() {
            let code = item.code.get_ref();
            if items.insert(code.clone(), i).is_some() {
                issue!(item.code.span(), format!("item `{code}` is defined twice"));
            }
            if item.validity_days == Some(0) {
                issue!(
                    item.code.span(),
                    format!("item `{code}`: validity_days = 0 would never recognise anything; leave it out to mark it unconfigured"),
                );
            }
            for lc in &item.local_codes {
                let (key, previous) = match lc.get_ref().split_once(':') {
                    Some((inst, c)) => {
                        if !known_inst(inst) {
                            issue!(
                                lc.span(),
                                format!("item `{code}`: local code `{}` names unknown institution `{inst}`", lc.get_ref()),
                            );
                        }
                        (
                            lc.get_ref().clone(),
                            local.insert((inst.to_string(), c.to_string()), code.clone()),
                        )
                    }
                    None => (
                        lc.get_ref().clone(),
                        generic_local.insert(lc.get_ref().clone(), code.clone()),
                    ),
                };
                if let Some(other) = previous.filter(|o| o != code) {
                    issue!(
                        lc.span(),
                        format!("local code `{key}` maps to both `{other}` and `{code}`"),
                    );
                }
            }
        }

        let mut consortia_of: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut consortium_ids = BTreeSet::new();
        for c in &file.consortia {
            if !consortium_ids.insert(c.id.get_ref().clone()) {
                issue!(
                    c.id.span(),
                    format!("consortium `{}` is defined twice", c.id.get_ref()),
                );
            }
            for m in &c.members {
                if !known_inst(m.get_ref()) {
                    issue!(
                        m.span(),
                        format!(
                            "consortium `{}`: member `{}` is not a configured institution",
                            c.id.get_ref(),
                            m.get_ref()
                        ),
                    );
                }
                consortia_of
                    .entry(m.get_ref().clone())
                    .or_default()
                    .insert(c.id.get_ref().clone());
            }
        }

        let check_scope = |s: &Scope| match s {
            Scope::Consortium(id) if !consortium_ids.contains(id) => {
                Some(format!("scope `{s}` names an unknown consortium"))
            }
            _ => None,
        };
        let mut qc: HashMap<(String, String), Vec<usize>> = HashMap::new();
        let mut qc_all: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in file.qc.iter().enumerate() {
            let inst = e.institution.get_ref();
            if !known_inst(inst) {
                issue!(
                    e.institution.span(),
                    format!("qc: institution `{inst}` is not configured"),
                );
            }
            if e.valid_from > e.valid_to {
                issue!(
                    e.institution.span(),
                    format!(
                        "qc for `{inst}`: valid_from {} is after valid_to {}",
                        e.valid_from, e.valid_to
                    ),
                );
            }
            if let Some(m) = check_scope(&e.scope) {
                issue!(e.institution.span(), format!("qc for `{inst}`: {m}"));
            }
            if e.items.is_empty() {
                issue!(
                    e.institution.span(),
                    format!("qc for `{inst}`: items is empty"),
                );
            }
            for it in &e.items {
                if it.get_ref() == "*" {
                    qc_all.entry(inst.clone()).or_default().push(i);
                } else if !items.contains_key(it.get_ref()) {
                    issue!(
                        it.span(),
                        format!(
                            "qc for `{inst}`: item `{}` is not in the catalogue",
                            it.get_ref()
                        ),
                    );
                } else {
                    qc.entry((inst.clone(), it.get_ref().clone()))
                        .or_default()
                        .push(i);
                }
            }
        }

        let mut labels = HashMap::new();
        for l in &file.scope_labels {
            if let Some(m) = check_scope(&l.scope) {
                issues.push(RulesIssue {
                    line: None,
                    message: format!("scope_label `{}`: {m}", l.label),
                });
            }
            labels.insert(l.scope.clone(), l.label.clone());
        }
        for g in &file.region_groups {
            for it in &g.items {
                if !items.contains_key(it.get_ref()) {
                    issue!(
                        it.span(),
                        format!(
                            "region_group `{}`: item `{}` is not in the catalogue",
                            g.name,
                            it.get_ref()
                        ),
                    );
                }
            }
        }
        if let Some(t) = &file.tier_matrix {
            if let Some(both) = t.high.iter().find(|x| t.low.contains(x)) {
                issues.push(RulesIssue {
                    line: text
                        .lines()
                        .position(|l| l.trim_start().starts_with("[tier_matrix]"))
                        .map(|i| i + 1),
                    message: format!("tier_matrix: {both:?} is both high and low"),
                });
            }
        }
        if file.free_text_max_chars == 0 {
            issues.push(RulesIssue {
                line: None,
                message: "free_text_max_chars must be positive".into(),
            });
        }
        let exception_codes = if file.exception_codes.is_empty() {
            default_exception_codes()
        } else {
            file.exception_codes.clone()
        };
        if !issues.is_empty() {
            return Err(RulesError { issues });
        }
        Ok(Rules {
            tz,
            items,
            local,
            generic_local,
            institutions,
            qc,
            qc_all,
            consortia_of,
            labels,
            exception_codes,
            file,
        })
    }

    /// Catalogue version cited in reasons.
    pub fn version(&self) -> &str {
        &self.file.version
    }

    /// A catalogue item by regional code.
    pub fn item(&self, code: &str) -> Option<&Item> {
        self.items.get(code).and_then(|i| self.file.items.get(*i))
    }

    /// Resolves an institution's local code to a regional code (institution-specific mapping
    /// first, then institution-independent codes, then the code itself if it is regional).
    pub fn resolve_local(&self, institution: &str, local_code: &str) -> Option<&str> {
        self.local
            .get(&(institution.to_string(), local_code.to_string()))
            .or_else(|| self.generic_local.get(local_code))
            .map(|s| s.as_str())
            .or_else(|| {
                self.items
                    .get_key_value(local_code)
                    .map(|(k, _)| k.as_str())
            })
    }

    /// An institution by code.
    pub fn institution(&self, code: &str) -> Option<&Institution> {
        self.institutions
            .get(code)
            .and_then(|i| self.file.institutions.get(*i))
    }

    /// QC evidence of `institution` for `item`.
    pub fn qc_for(&self, institution: &str, item: &str) -> Vec<&QcEvidence> {
        let specific = self
            .qc
            .get(&(institution.to_string(), item.to_string()))
            .into_iter()
            .flatten();
        let all = self.qc_all.get(institution).into_iter().flatten();
        specific
            .chain(all)
            .filter_map(|i| self.file.qc.get(*i))
            .collect()
    }

    /// Consortia an institution belongs to.
    pub fn consortia_of(&self, institution: &str) -> Option<&BTreeSet<String>> {
        self.consortia_of.get(institution)
    }

    /// The HR label of a scope.
    pub fn label(&self, scope: &Scope) -> Option<&str> {
        self.labels.get(scope).map(|s| s.as_str())
    }

    /// Exception codes in effect.
    pub fn exception_codes(&self) -> &[ExceptionCode] {
        &self.exception_codes
    }

    /// What is not configured, for `huren rules check`: items without a validity window,
    /// items no institution has QC evidence for, institutions without any QC evidence, and
    /// QC scopes without an HR label.
    pub fn unconfigured(&self) -> Vec<String> {
        let mut out = Vec::new();
        for it in &self.file.items {
            let code = it.code.get_ref();
            if it.validity_days.is_none() {
                out.push(format!(
                    "item {code} {}: no validity_days (never recognisable: VALIDITY_UNCONFIGURED)",
                    it.name
                ));
            }
            let any_qc = self
                .file
                .institutions
                .iter()
                .any(|i| !self.qc_for(i.code.get_ref(), code).is_empty());
            if !any_qc {
                out.push(format!(
                    "item {code} {}: no institution has QC evidence for it",
                    it.name
                ));
            }
        }
        for i in &self.file.institutions {
            let code = i.code.get_ref();
            if !self.qc.keys().any(|(c, _)| c == code) && !self.qc_all.contains_key(code) {
                out.push(format!(
                    "institution {code} {}: no QC evidence (its results are reference only)",
                    i.name
                ));
            }
        }
        let unlabelled: BTreeMap<String, ()> = self
            .file
            .qc
            .iter()
            .filter(|e| !self.labels.contains_key(&e.scope))
            .map(|e| (e.scope.to_string(), ()))
            .collect();
        for s in unlabelled.keys() {
            out.push(format!(
                "scope {s}: no scope_label (recognised results show no HR mark)"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_name_lines() {
        let text = r#"version = "t"

[[institution]]
code = "A"
name = "A"
tier = "三甲"
region = { province = "31" }

[[item]]
code = "K"
name = "钾"
category = "lab"
validity_days = 7
local_codes = ["B:K1"]

[[qc]]
institution = "Z"
items = ["K", "NOPE"]
program = "NCCL_EQA"
result = "pass"
valid_from = 2025-01-01
valid_to = 2025-12-31
scope = "national"
"#;
        let e = Rules::from_toml(text).unwrap_err();
        let lines: Vec<_> = e.issues.iter().map(|i| i.line).collect();
        assert!(
            e.issues
                .iter()
                .any(|i| i.line == Some(14) && i.message.contains("unknown institution `B`")),
            "{e}"
        );
        assert!(
            e.issues
                .iter()
                .any(|i| i.line == Some(17) && i.message.contains("`Z` is not configured")),
            "{e}"
        );
        assert!(
            e.issues
                .iter()
                .any(|i| i.line == Some(18) && i.message.contains("`NOPE`")),
            "{lines:?} {e}"
        );
    }

    #[test]
    fn syntax_and_type_errors_name_lines() {
        let e = Rules::from_toml(
            "version = \"t\"\n[[item]]\ncode = \"K\"\nname = \"钾\"\ncategory = \"blood\"\n",
        )
        .unwrap_err();
        assert_eq!(e.issues[0].line, Some(5), "{e}");
        let e = Rules::from_toml("version = \"t\"\n[[qc]]\ninstitution = \"A\"\nitems = [\"*\"]\nprogram = \"x\"\nresult = \"pass\"\nvalid_from = 2025-01-01\nvalid_to = 2025-12-31\nscope = \"planet\"\n").unwrap_err();
        assert_eq!(e.issues[0].line, Some(9), "{e}");
        assert!(e.issues[0].message.contains("unknown scope"), "{e}");
    }
}
