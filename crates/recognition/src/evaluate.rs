//! `evaluate(context, candidate, rules) -> Verdict` (RECOGNITION.md §4): every check runs,
//! every failure is collected, the most severe decides. No I/O, no clock.

use std::collections::HashMap;

use chrono::{DateTime, Duration, FixedOffset};

use crate::input::{
    AuthorizationKind, Candidate, CandidateStatus, Closure, IdentityMethod, QueryContext, Sex,
};
use crate::rules::{Anchor, Bypass, CriticalOpenPolicy, Item, QcResult, Rules, Scope, ScopeLevel};
use crate::verdict::{Evidence, Level, Reason, ReasonCode, ReorderRequirements, Severity, Verdict};

struct Acc<'r> {
    rules: &'r Rules,
    reasons: Vec<Reason>,
}

impl Acc<'_> {
    fn add(&mut self, code: ReasonCode, detail: Option<String>, section: &str) {
        self.add_as(code, code.severity(), detail, section);
    }

    fn add_as(
        &mut self,
        code: ReasonCode,
        severity: Severity,
        detail: Option<String>,
        section: &str,
    ) {
        self.reasons.push(Reason {
            code,
            severity,
            zh_text: code.zh().to_string(),
            detail,
            source_ref: format!("rules@{}#{section}", self.rules.version()),
        });
    }
}

/// Resolves the candidate's regional item code: the code it was sent with if it is in the
/// catalogue, else its local code through the catalogue's equivalences.
pub fn resolve_item<'r>(candidate: &Candidate, rules: &'r Rules) -> Option<&'r Item> {
    candidate
        .regional_code
        .as_deref()
        .and_then(|c| rules.item(c))
        .or_else(|| {
            candidate
                .local_code
                .as_deref()
                .and_then(|l| rules.resolve_local(&candidate.source_org, l))
                .and_then(|c| rules.item(c))
        })
}

fn anchor_time(c: &Candidate, anchor: Anchor) -> (Anchor, Option<DateTime<FixedOffset>>) {
    let t = &c.times;
    match anchor {
        Anchor::SpecimenCollected if t.specimen_collected_at.is_some() => {
            (anchor, t.specimen_collected_at)
        }
        Anchor::Performed if t.performed_at.is_some() => (anchor, t.performed_at),
        _ => (Anchor::Reported, t.reported_at),
    }
}

/// Whether `scope` admits the requester institution.
fn scope_admits(rules: &Rules, scope: &Scope, requester: &str) -> bool {
    let region = rules.institution(requester).map(|i| &i.region);
    match scope {
        Scope::National => true,
        Scope::Province(p) => region.is_some_and(|r| &r.province == p),
        Scope::City(c) => region.is_some_and(|r| !r.city.is_empty() && &r.city == c),
        Scope::Consortium(id) => rules
            .consortia_of(requester)
            .is_some_and(|set| set.contains(id)),
    }
}

/// Whether the item's listing level admits the requester (an item listed only by the
/// province of the source is recognised only inside that province).
fn listing_admits(rules: &Rules, item: &Item, source: &str, requester: &str) -> bool {
    let (Some(s), Some(r)) = (rules.institution(source), rules.institution(requester)) else {
        return false;
    };
    match item.scope_min {
        None | Some(ScopeLevel::National) => true,
        Some(ScopeLevel::Province) => s.region.province == r.region.province,
        Some(ScopeLevel::City) => !s.region.city.is_empty() && s.region.city == r.region.city,
    }
}

fn same_consortium(rules: &Rules, a: &str, b: &str) -> Option<String> {
    let (sa, sb) = (rules.consortia_of(a)?, rules.consortia_of(b)?);
    sa.intersection(sb).next().cloned()
}

fn conflicts(ctx: &QueryContext, c: &Candidate) -> Option<String> {
    let sex = |s: Option<Sex>| s.filter(|s| *s != Sex::Other);
    if let (Some(a), Some(b)) = (sex(ctx.patient.sex), sex(c.patient.sex)) {
        if a != b {
            return Some("性别不一致".into());
        }
    }
    if let (Some(a), Some(b)) = (&ctx.patient.birth_date, &c.patient.birth_date) {
        if a != b {
            return Some("出生日期不一致".into());
        }
    }
    None
}

/// Evaluates one candidate. Pure: the same inputs always give the same verdict.
pub fn evaluate(ctx: &QueryContext, candidate: &Candidate, rules: &Rules) -> Verdict {
    let mut acc = Acc {
        rules,
        reasons: Vec::new(),
    };
    let mut ev = Evidence {
        catalogue_version: rules.version().to_string(),
        ..Default::default()
    };
    let src = candidate.source_org.as_str();
    let req = ctx.requester_org.as_str();

    // 1. Identity.
    match candidate.identity {
        IdentityMethod::ExactNationalId
        | IdentityMethod::MpiMatch
        | IdentityMethod::ExactLocalId => {}
        IdentityMethod::MpiPossibleMatch | IdentityMethod::LocalOnly => acc.add(
            ReasonCode::IdentityUncertain,
            Some(format!("{:?}", candidate.identity)),
            "identity",
        ),
    }
    if let Some(d) = conflicts(ctx, candidate) {
        acc.add(ReasonCode::IdentityConflict, Some(d), "identity");
    }

    // 2. Authorisation.
    let policy = &rules.file.patient_authorization;
    match ctx.patient_authorization.as_ref().map(|a| a.kind) {
        Some(AuthorizationKind::BreakGlass) => {
            if policy.break_glass_allowed_for.contains(&ctx.encounter) {
                ev.break_glass = true;
                acc.add(ReasonCode::BreakGlass, None, "policy:patient_authorization");
            } else if policy.required {
                acc.add(
                    ReasonCode::NoPatientAuthorization,
                    Some(format!("break-glass not allowed for {:?}", ctx.encounter)),
                    "policy:patient_authorization",
                );
            }
        }
        Some(_) => {}
        None if policy.required => acc.add(
            ReasonCode::NoPatientAuthorization,
            None,
            "policy:patient_authorization",
        ),
        None => {}
    }

    // 3. Report status.
    match candidate.status {
        CandidateStatus::Cancelled | CandidateStatus::EnteredInError => {
            acc.add(ReasonCode::ReportWithdrawn, None, "status")
        }
        CandidateStatus::Preliminary => acc.add(ReasonCode::ReportNotFinal, None, "status"),
        CandidateStatus::Amended => acc.add(ReasonCode::SupersededVersionHidden, None, "status"),
        CandidateStatus::Final => {}
    }

    // 4. Catalogue.
    let item = resolve_item(candidate, rules);
    if let Some(it) = item {
        ev.regional_code = Some(it.code.get_ref().clone());
        ev.item_name = Some(it.name.clone());
    } else {
        acc.add(
            ReasonCode::ItemNotInCatalogue,
            candidate
                .local_code
                .as_ref()
                .or(candidate.regional_code.as_ref())
                .map(|c| format!("{src}:{c}")),
            "catalogue",
        );
    }
    if let Some(order) = &ctx.intended_order {
        let code_differs = match item {
            Some(it) => it.code.get_ref() != &order.item_code,
            None => true,
        };
        let site = candidate
            .body_site
            .as_ref()
            .or(item.and_then(|i| i.body_site.as_ref()));
        let site_differs = matches!((site, &order.body_site), (Some(a), Some(b)) if a != b);
        let contrast = candidate.contrast.or(item.and_then(|i| i.contrast));
        let contrast_differs = matches!((contrast, order.contrast), (Some(a), Some(b)) if a != b);
        if code_differs || site_differs || contrast_differs {
            acc.add(
                ReasonCode::ItemNotEquivalent,
                Some(format!("intended {}", order.item_code)),
                "catalogue",
            );
        }
    }

    let consortium = same_consortium(rules, src, req);
    let bypass =
        |b: Bypass| consortium.is_some() && rules.file.consortium_internal_bypass.contains(&b);
    let (anchor_used, anchor) = anchor_time(
        candidate,
        item.map(|i| i.anchor())
            .unwrap_or(match candidate.category {
                crate::input::Category::Lab => Anchor::SpecimenCollected,
                _ => Anchor::Performed,
            }),
    );
    ev.anchor_used = anchor.map(|_| anchor_used);
    ev.anchor_time = anchor;
    let mut label_scope: Option<Scope> = None;

    if let Some(item) = item {
        let code = item.code.get_ref();
        // 5. QC.
        let evidence = rules.qc_for(src, code);
        let at = anchor.map(|t| t.with_timezone(&rules.tz).date_naive());
        let covers = |e: &&crate::rules::QcEvidence| {
            at.is_some_and(|d| e.valid_from <= d && d <= e.valid_to)
        };
        let mut valid_pass: Vec<&crate::rules::QcEvidence> = Vec::new();
        if !bypass(Bypass::Qc) {
            let failed_at_time = evidence
                .iter()
                .any(|e| e.result == QcResult::Fail && covers(e));
            valid_pass = evidence
                .iter()
                .copied()
                .filter(|e| e.result == QcResult::Pass)
                .filter(|e| covers(e))
                .collect();
            if evidence.is_empty() {
                acc.add(
                    ReasonCode::SrcQcMissing,
                    Some(format!("{src} / {code}")),
                    &format!("qc:{src}"),
                );
            } else if failed_at_time
                || (valid_pass.is_empty() && evidence.iter().all(|e| e.result == QcResult::Fail))
            {
                valid_pass.clear();
                acc.add(
                    ReasonCode::SrcQcFailed,
                    Some(format!("{src} / {code}")),
                    &format!("qc:{src}"),
                );
            } else if valid_pass.is_empty() {
                let periods: Vec<String> = evidence
                    .iter()
                    .filter(|e| e.result == QcResult::Pass)
                    .map(|e| format!("{}..{}", e.valid_from, e.valid_to))
                    .collect();
                acc.add(
                    ReasonCode::SrcQcNotValidAtPerformance,
                    Some(format!(
                        "{} at {}; valid {}",
                        match anchor_used {
                            Anchor::SpecimenCollected => "collected",
                            Anchor::Performed => "performed",
                            Anchor::Reported => "reported",
                        },
                        at.map_or("unknown".into(), |d| d.to_string()),
                        periods.join(", ")
                    )),
                    &format!("qc:{src}"),
                );
            }
        }

        // 6. Scope.
        if let Some(cid) = consortium.as_ref().filter(|_| bypass(Bypass::Scope)) {
            ev.scope_used = Some(format!("consortium:{cid}"));
            label_scope = Some(Scope::Consortium(cid.clone()));
            acc.add(
                ReasonCode::ConsortiumInternal,
                Some(cid.clone()),
                &format!("consortium:{cid}"),
            );
            if rules.label(&Scope::Consortium(cid.clone())).is_none() {
                // Fall back to the label of the QC scope the source holds.
                label_scope = valid_pass.first().map(|e| e.scope.clone());
            }
            if let Some(e) = valid_pass.first() {
                ev.qc_cert_id = e.cert_id.clone();
            }
        } else if !valid_pass.is_empty() || bypass(Bypass::Qc) {
            let listed = listing_admits(rules, item, src, req);
            let by_qc = valid_pass
                .iter()
                .find(|e| listed && scope_admits(rules, &e.scope, req));
            let by_group = || {
                let (s, r) = (rules.institution(src)?, rules.institution(req)?);
                rules.file.region_groups.iter().find(|g| {
                    g.provinces.contains(&s.region.province)
                        && g.provinces.contains(&r.region.province)
                        && g.items.iter().any(|i| i.get_ref() == code)
                })
            };
            if let Some(e) = by_qc {
                ev.scope_used = Some(e.scope.to_string());
                ev.qc_cert_id = e.cert_id.clone();
                label_scope = Some(e.scope.clone());
            } else if let Some(g) = by_group() {
                ev.scope_used = Some(format!("region_group:{}", g.name));
                ev.qc_cert_id = valid_pass.first().and_then(|e| e.cert_id.clone());
                label_scope = valid_pass.first().map(|e| e.scope.clone());
            } else {
                let scopes: Vec<String> = valid_pass.iter().map(|e| e.scope.to_string()).collect();
                acc.add(
                    ReasonCode::OutOfScope,
                    Some(if rules.institution(req).is_none() {
                        format!("requester {req} is not configured")
                    } else if !listed {
                        format!("item listed at {:?} level only", item.scope_min)
                    } else {
                        format!("QC scope {}", scopes.join(", "))
                    }),
                    "scope",
                );
            }
        }
    }

    // 7. Tier (imaging).
    if let Some(tm) = rules.file.tier_matrix.as_ref() {
        if candidate.category.is_imaging() && !bypass(Bypass::Tier) {
            let tier = |org: &str| rules.institution(org).map(|i| i.tier);
            match (tier(src), tier(req)) {
                (Some(s), Some(_)) if tm.high.contains(&s) => {
                    ev.tier_rule = Some("HIGH→any".into());
                }
                (Some(s), Some(r)) if tm.low.contains(&s) && tm.low.contains(&r) => {
                    ev.tier_rule = Some("LOW→LOW".into());
                }
                (s, r) => {
                    ev.tier_rule = Some("LOW→HIGH".into());
                    acc.add(
                        ReasonCode::TierDiscretionary,
                        Some(format!("{s:?} → {r:?}")),
                        "tier_matrix",
                    );
                }
            }
        }
    }

    // 8. Time.
    let mut expires_at = None;
    if let Some(item) = item {
        let section = format!("item:{}", item.code.get_ref());
        match (item.validity_days, anchor) {
            (None, _) => acc.add(ReasonCode::ValidityUnconfigured, None, &section),
            (Some(_), None) => acc.add(
                ReasonCode::Expired,
                Some("no result time to start the clock".into()),
                &section,
            ),
            (Some(days), Some(t)) => {
                let exp = t + Duration::hours(24 * i64::from(days));
                expires_at = Some(exp);
                if ctx.now > exp {
                    acc.add(
                        ReasonCode::Expired,
                        Some(format!("{days} 天，{} 到期", exp.format("%Y-%m-%d %H:%M"))),
                        &section,
                    );
                }
            }
        }
    }
    if let Some(t) = anchor {
        if t > ctx.now + Duration::minutes(rules.file.clock_skew_minutes) {
            acc.add(
                ReasonCode::ClockSkew,
                Some(t.to_rfc3339()),
                "policy:clock_skew",
            );
        }
    }

    // 9. Content.
    if item.is_some_and(|i| i.requires_images()) && !candidate.images.available {
        acc.add(ReasonCode::ImagesUnavailable, None, "content");
    }
    if candidate.images.quality_insufficient {
        acc.add(ReasonCode::ImageQualityInsufficient, None, "content");
    }
    if candidate.critical.flagged && candidate.critical.closure != Closure::Acknowledged {
        let sev = match rules.file.critical_open_policy {
            CriticalOpenPolicy::ReferenceOnly => Severity::Refer,
            CriticalOpenPolicy::Blocked => Severity::Block,
        };
        acc.add_as(
            ReasonCode::CriticalValueOpen,
            sev,
            Some(format!("{:?}", candidate.critical.closure)),
            "policy:critical_open",
        );
    }

    // 10. Hints.
    let f = &ctx.clinical_flags;
    for (on, code) in [
        (f.condition_changed, ReasonCode::HintE1),
        (f.pre_surgery || f.pre_transfusion, ReasonCode::HintE3),
        (f.emergency, ReasonCode::HintE4),
        (f.appraisal, ReasonCode::HintE5),
    ] {
        if on {
            acc.add(code, None, "exception_codes");
        }
    }

    let level = level_of(&acc.reasons);
    let mut reasons = acc.reasons;
    reasons.sort_by_key(|r| r.severity);
    let hr_label = (level == Level::Recognizable)
        .then(|| label_scope.as_ref().and_then(|s| rules.label(s)))
        .flatten()
        .map(str::to_string);
    Verdict {
        report_id: candidate.report_id.clone(),
        level,
        hr_label,
        expires_at,
        reasons,
        evidence: ev,
        required_on_reorder: ReorderRequirements {
            exception_code_required: level == Level::Recognizable,
            patient_informed_required: true,
        },
        duplicate_of: None,
    }
}

/// The first instant from which `verdict` (made by [`evaluate`] at `ctx.now`) may differ
/// only because time passed: its validity window ends, or a result dated in the future
/// falls inside the clock-skew allowance. For every `now'` in `[ctx.now, stable_until)` the
/// engine gives the same verdict; `None` means time alone never changes it. Callers that
/// keep verdicts (an answer cache) use this as their expiry.
pub fn stable_until(
    ctx: &QueryContext,
    verdict: &Verdict,
    rules: &Rules,
) -> Option<DateTime<FixedOffset>> {
    let expiry = verdict.expires_at.filter(|exp| ctx.now <= *exp);
    let skew = verdict
        .evidence
        .anchor_time
        .map(|t| t - Duration::minutes(rules.file.clock_skew_minutes))
        .filter(|b| *b > ctx.now);
    match (expiry, skew) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// [`stable_until`] of a whole answer: the earliest over its verdicts. Duplicate marks
/// depend only on levels and times, so they hold as long as every level does.
pub fn stable_until_all<'v>(
    ctx: &QueryContext,
    verdicts: impl IntoIterator<Item = &'v Verdict>,
    rules: &Rules,
) -> Option<DateTime<FixedOffset>> {
    verdicts
        .into_iter()
        .filter_map(|v| stable_until(ctx, v, rules))
        .min()
}

fn level_of(reasons: &[Reason]) -> Level {
    if reasons.iter().any(|r| r.severity == Severity::Block) {
        Level::Blocked
    } else if reasons.iter().any(|r| r.severity == Severity::Refer) {
        Level::ReferenceOnly
    } else {
        Level::Recognizable
    }
}

/// Evaluates all of a patient's candidates and marks duplicates (§4.11): the same content
/// hash from two channels is shown once (`DUPLICATE_SAME_CONTENT` on the others); within one
/// (regional code, body site) the newest recognisable result is primary and older ones are
/// marked `DUPLICATE_OLDER`. Verdicts come back in the candidates' order.
pub fn evaluate_all(ctx: &QueryContext, candidates: &[Candidate], rules: &Rules) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = candidates.iter().map(|c| evaluate(ctx, c, rules)).collect();
    let info = |code: ReasonCode, detail: String| Reason {
        code,
        severity: Severity::Info,
        zh_text: code.zh().to_string(),
        detail: Some(detail),
        source_ref: format!("rules@{}#duplicates", rules.version()),
    };
    let mut first_by_hash: HashMap<&str, usize> = HashMap::new();
    for (i, c) in candidates.iter().enumerate() {
        match first_by_hash.get(c.content_hash.as_str()) {
            Some(&j) => {
                let primary = candidates[j].report_id.clone();
                out[i]
                    .reasons
                    .push(info(ReasonCode::DuplicateSameContent, primary.clone()));
                out[i].duplicate_of = Some(primary);
            }
            None => {
                first_by_hash.insert(&c.content_hash, i);
            }
        }
    }
    type GroupKey = (String, Option<String>);
    let mut groups: HashMap<GroupKey, Vec<usize>> = HashMap::new();
    for (i, c) in candidates.iter().enumerate() {
        if out[i].duplicate_of.is_some() {
            continue;
        }
        if let Some(code) = out[i].evidence.regional_code.clone() {
            let site = c
                .body_site
                .clone()
                .or_else(|| rules.item(&code).and_then(|it| it.body_site.clone()));
            groups.entry((code, site)).or_default().push(i);
        }
    }
    for members in groups.values() {
        let primary = members
            .iter()
            .copied()
            .filter(|&i| out[i].level == Level::Recognizable)
            .max_by_key(|&i| out[i].evidence.anchor_time);
        let Some(p) = primary else { continue };
        let p_time = out[p].evidence.anchor_time;
        let p_id = out[p].report_id.clone();
        for &i in members {
            if i != p && out[i].evidence.anchor_time <= p_time {
                out[i]
                    .reasons
                    .push(info(ReasonCode::DuplicateOlder, p_id.clone()));
                out[i].duplicate_of = Some(p_id.clone());
            }
        }
    }
    out
}
