//! Property tests: a failing check never makes a verdict more permissive; the engine is
//! deterministic and never panics; verdicts are internally consistent.

use chrono::{DateTime, Duration, FixedOffset};
use huren_recognition::*;
use proptest::prelude::*;

fn rules() -> Rules {
    Rules::from_toml(include_str!("hubei.toml")).unwrap_or_else(|e| panic!("{e}"))
}

const ORGS: &[&str] = &[
    "WH-A", "WH-LAB", "WH-FAIL", "WH-LATE", "WH-B", "WH-C", "KM-1", "QJ-1", "NOWHERE",
];
const CODES: &[&str] = &["K", "0301", "HBA1C", "CT-CHEST", "DR-CHEST", "ZZZ"];

fn base() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2025-06-30T10:00:00+08:00").unwrap()
}

prop_compose! {
    fn candidate()(
        org in 0..ORGS.len(),
        code in 0..CODES.len(),
        cat in 0..3usize,
        minutes_ago in -2_000i64..400_000,
        status in 0..5usize,
        identity in 0..4usize,
        flagged in any::<bool>(),
        closure in 0..3usize,
        images in any::<bool>(),
        poor in any::<bool>(),
        sex in 0..3usize,
    ) -> Candidate {
        let at = base() - Duration::minutes(minutes_ago);
        Candidate {
            source_org: ORGS[org].into(),
            report_id: format!("r{org}-{code}-{minutes_ago}"),
            status: [CandidateStatus::Final, CandidateStatus::Amended, CandidateStatus::Preliminary,
                CandidateStatus::Cancelled, CandidateStatus::EnteredInError][status],
            category: [Category::Lab, Category::Radiology, Category::Electrophysiology][cat],
            local_code: Some(CODES[code].into()),
            regional_code: None,
            body_site: None,
            contrast: None,
            times: Times { specimen_collected_at: Some(at), performed_at: Some(at), reported_at: Some(at) },
            identity: [IdentityMethod::ExactNationalId, IdentityMethod::MpiMatch,
                IdentityMethod::MpiPossibleMatch, IdentityMethod::LocalOnly][identity],
            patient: Demographics {
                sex: [None, Some(Sex::Male), Some(Sex::Female)][sex],
                birth_date: None,
            },
            critical: Critical { flagged, closure: [Closure::Acknowledged, Closure::Open, Closure::Unknown][closure] },
            images: Images { available: images, quality_insufficient: poor },
            content_hash: format!("h{org}{code}{minutes_ago}"),
        }
    }
}

prop_compose! {
    fn context()(
        org in 0..ORGS.len(),
        auth in 0..3usize,
        emergency in any::<bool>(),
        changed in any::<bool>(),
    ) -> QueryContext {
        QueryContext {
            now: base(),
            requester_org: ORGS[org].into(),
            encounter: if emergency { EncounterKind::Emergency } else { EncounterKind::Outpatient },
            intended_order: None,
            patient: Demographics { sex: Some(Sex::Male), birth_date: None },
            patient_authorization: [
                None,
                Some(PatientAuthorization { kind: AuthorizationKind::HealthCard, reason: None }),
                Some(PatientAuthorization { kind: AuthorizationKind::BreakGlass, reason: Some("x".into()) }),
            ][auth].clone(),
            clinical_flags: ClinicalFlags { condition_changed: changed, ..Default::default() },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_failing_check_never_makes_a_verdict_more_permissive(c in candidate(), q in context()) {
        let r = rules();
        let before = evaluate(&q, &c, &r).level;
        let mut worse: Vec<(&str, QueryContext, Candidate)> = Vec::new();
        let mut x = c.clone(); x.identity = IdentityMethod::MpiPossibleMatch; worse.push(("identity", q.clone(), x));
        let mut x = c.clone(); x.patient.sex = Some(Sex::Female); worse.push(("sex", q.clone(), x));
        let mut y = q.clone(); y.patient_authorization = None; worse.push(("auth", y, c.clone()));
        if matches!(c.status, CandidateStatus::Final | CandidateStatus::Amended) {
            let mut x = c.clone(); x.status = CandidateStatus::Preliminary; worse.push(("prelim", q.clone(), x));
        }
        let mut x = c.clone(); x.status = CandidateStatus::Cancelled; worse.push(("cancel", q.clone(), x));
        let mut x = c.clone(); x.critical = Critical { flagged: true, closure: Closure::Open }; worse.push(("critical", q.clone(), x));
        let mut x = c.clone(); x.images.available = false; worse.push(("images", q.clone(), x));
        let mut x = c.clone(); x.images.quality_insufficient = true; worse.push(("quality", q.clone(), x));
        let mut x = c.clone(); x.local_code = Some("ZZZ".into()); worse.push(("catalogue", q.clone(), x));
        let mut y = q.clone(); y.now += Duration::days(400); worse.push(("later", y, c.clone()));
        let mut y = q.clone();
        y.intended_order = Some(IntendedOrder { item_code: "NOT-AN-ITEM".into(), ..Default::default() });
        worse.push(("order", y, c.clone()));
        for (what, q2, c2) in worse {
            let after = evaluate(&q2, &c2, &r).level;
            prop_assert!(after <= before, "{what}: {before:?} -> {after:?}");
        }
    }

    #[test]
    fn verdicts_are_deterministic_and_consistent(c in candidate(), q in context()) {
        let r = rules();
        let v = evaluate(&q, &c, &r);
        prop_assert_eq!(&v, &evaluate(&q, &c, &r));
        let blocking = v.reasons.iter().any(|x| x.severity == Severity::Block);
        let referring = v.reasons.iter().any(|x| x.severity == Severity::Refer);
        match v.level {
            Level::Recognizable => prop_assert!(!blocking && !referring),
            Level::ReferenceOnly => prop_assert!(!blocking && referring),
            Level::Blocked => prop_assert!(blocking),
        }
        if v.hr_label.is_some() {
            prop_assert_eq!(v.level, Level::Recognizable);
        }
        if v.level == Level::Recognizable {
            // Fail closed: recognisable needs a catalogue item, a validity window and a
            // certain identity.
            prop_assert!(v.evidence.regional_code.is_some());
            prop_assert!(v.expires_at.is_some_and(|e| e >= q.now));
            prop_assert!(matches!(c.identity, IdentityMethod::ExactNationalId | IdentityMethod::MpiMatch | IdentityMethod::ExactLocalId));
            prop_assert!(!matches!(c.status, CandidateStatus::Cancelled | CandidateStatus::EnteredInError | CandidateStatus::Preliminary));
        }
    }

    /// `stable_until` is a safe expiry for a kept verdict.
    #[test]
    fn a_verdict_holds_until_its_stable_until(c in candidate(), q in context(), step in 0u32..=1000) {
        let r = rules();
        let v = evaluate(&q, &c, &r);
        let later = match stable_until(&q, &v, &r) {
            Some(b) => {
                prop_assert!(b > q.now);
                let span = (b - q.now).num_nanoseconds().unwrap_or(i64::MAX);
                // Up to (not including) the bound.
                q.now + Duration::nanoseconds((span - 1).max(0) / 1000 * i64::from(step))
            }
            // Time alone never changes it: try far ahead.
            None => q.now + Duration::days(i64::from(step) * 20),
        };
        let mut q2 = q.clone();
        q2.now = later;
        prop_assert_eq!(&v, &evaluate(&q2, &c, &r), "changed at {} (stable until {:?})", later, stable_until(&q, &v, &r));
        if v.level == Level::Recognizable {
            // A recognisable result stops being so when its window closes: the bound is
            // never later than the expiry.
            prop_assert!(stable_until(&q, &v, &r).is_some_and(|b| Some(b) <= v.expires_at));
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(org in ".{0,12}", code in ".{0,12}", req in ".{0,12}") {
        let r = rules();
        let mut c = proptest::strategy::ValueTree::current(
            &candidate().new_tree(&mut proptest::test_runner::TestRunner::deterministic()).unwrap());
        c.source_org = org;
        c.local_code = Some(code.clone());
        c.regional_code = Some(code);
        let mut q = proptest::strategy::ValueTree::current(
            &context().new_tree(&mut proptest::test_runner::TestRunner::deterministic()).unwrap());
        q.requester_org = req;
        let v = evaluate_all(&q, &[c.clone(), c], &r);
        prop_assert_eq!(v.len(), 2);
    }
}
