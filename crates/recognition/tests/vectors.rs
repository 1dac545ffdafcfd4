//! RECOGNITION.md §6: test vectors T1–T15 and the decision invariants.

use chrono::{DateTime, FixedOffset};
use huren_recognition::*;

fn rules() -> Rules {
    Rules::from_toml(include_str!("hubei.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn ctx() -> QueryContext {
    QueryContext {
        now: t("2025-06-30T10:00:00+08:00"),
        requester_org: "WH-A".into(),
        encounter: EncounterKind::Outpatient,
        intended_order: None,
        patient: Demographics {
            sex: Some(Sex::Male),
            birth_date: Some("1990-01-01".into()),
        },
        patient_authorization: Some(PatientAuthorization {
            kind: AuthorizationKind::MedInsuranceCode,
            reason: None,
        }),
        clinical_flags: ClinicalFlags::default(),
    }
}

fn lab(org: &str, code: &str, collected: &str) -> Candidate {
    Candidate {
        source_org: org.into(),
        report_id: format!("r-{org}-{code}-{collected}"),
        status: CandidateStatus::Final,
        category: Category::Lab,
        local_code: Some(code.into()),
        regional_code: None,
        body_site: None,
        contrast: None,
        times: Times {
            specimen_collected_at: Some(t(collected)),
            performed_at: None,
            reported_at: Some(t(collected) + chrono::Duration::hours(3)),
        },
        identity: IdentityMethod::ExactNationalId,
        patient: Demographics {
            sex: Some(Sex::Male),
            birth_date: Some("1990-01-01".into()),
        },
        critical: Critical::default(),
        images: Images::default(),
        content_hash: format!("h-{org}-{code}-{collected}"),
    }
}

fn imaging(org: &str, code: &str, performed: &str) -> Candidate {
    let mut c = lab(org, code, performed);
    c.category = Category::Radiology;
    c.times = Times {
        specimen_collected_at: None,
        performed_at: Some(t(performed)),
        reported_at: Some(t(performed)),
    };
    c.images = Images {
        available: true,
        quality_insufficient: false,
    };
    c
}

fn codes(v: &Verdict) -> Vec<&'static str> {
    v.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn t1_potassium_within_seven_days_is_recognisable_with_label() {
    let v = evaluate(
        &ctx(),
        &lab("WH-LAB", "K", "2025-06-24T10:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::Recognizable, "{:?}", codes(&v));
    assert_eq!(v.hr_label.as_deref(), Some("鄂HR"));
    assert_eq!(v.expires_at, Some(t("2025-07-01T10:00:00+08:00")));
    assert_eq!(v.evidence.regional_code.as_deref(), Some("HB-LAB-K"));
    assert_eq!(v.evidence.qc_cert_id.as_deref(), Some("NCCL-2025-0042"));
    assert_eq!(v.evidence.anchor_used, Some(Anchor::SpecimenCollected));
    assert!(v.required_on_reorder.exception_code_required);
    // The institution-specific local code maps too.
    let v = evaluate(
        &ctx(),
        &lab("WH-LAB", "0301", "2025-06-24T10:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::Recognizable);
}

#[test]
fn t2_one_minute_past_seven_days_is_expired() {
    let v = evaluate(
        &ctx(),
        &lab("WH-LAB", "K", "2025-06-23T09:59:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::ReferenceOnly);
    assert_eq!(codes(&v), vec!["EXPIRED"]);
    assert!(v.hr_label.is_none());
    // Exactly at the expiry instant it is still recognised (inclusive, like SYSDATE <= …).
    let v = evaluate(
        &ctx(),
        &lab("WH-LAB", "K", "2025-06-23T10:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::Recognizable);
}

#[test]
fn t3_hba1c_on_day_59_of_60() {
    let v = evaluate(
        &ctx(),
        &lab("WH-LAB", "HBA1C", "2025-05-02T08:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::Recognizable, "{:?}", codes(&v));
}

#[test]
fn t4_source_qc_failed() {
    let v = evaluate(
        &ctx(),
        &lab("WH-FAIL", "HBA1C", "2025-06-20T08:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::ReferenceOnly);
    assert!(codes(&v).contains(&"SRC_QC_FAILED"), "{:?}", codes(&v));
}

#[test]
fn t5_qc_not_valid_when_the_specimen_was_taken() {
    let v = evaluate(
        &ctx(),
        &lab("WH-LATE", "HBA1C", "2025-02-20T08:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::ReferenceOnly);
    assert!(
        codes(&v).contains(&"SRC_QC_NOT_VALID_AT_PERFORMANCE"),
        "{:?}",
        codes(&v)
    );
}

#[test]
fn t6_city_scope_excludes_another_city() {
    let mut c = ctx();
    c.requester_org = "QJ-1".into();
    let v = evaluate(
        &c,
        &lab("KM-1", "HBA1C", "2025-06-20T08:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::ReferenceOnly);
    assert_eq!(codes(&v), vec!["OUT_OF_SCOPE"]);
    // Inside Kunming the same result is recognised with the city label.
    c.requester_org = "KM-1".into();
    let v = evaluate(
        &c,
        &lab("KM-1", "HBA1C", "2025-06-20T08:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.hr_label.as_deref(), Some("昆明HR"));
}

#[test]
fn t7_validity_unconfigured() {
    let v = evaluate(
        &ctx(),
        &imaging("WH-B", "CT-CHEST", "2025-06-25T09:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::ReferenceOnly);
    assert!(
        codes(&v).contains(&"VALIDITY_UNCONFIGURED"),
        "{:?}",
        codes(&v)
    );
}

#[test]
fn t8_images_unavailable() {
    let mut c = imaging("WH-B", "DR-CHEST", "2025-06-25T09:00:00+08:00");
    c.images.available = false;
    let mut q = ctx();
    q.requester_org = "WH-C".into(); // same consortium: only the image check can fail
    let v = evaluate(&q, &c, &rules());
    assert_eq!(v.level, Level::ReferenceOnly);
    assert_eq!(codes(&v), vec!["IMAGES_UNAVAILABLE", "CONSORTIUM_INTERNAL"]);
}

#[test]
fn t9_low_tier_imaging_to_high_tier_is_discretionary() {
    let v = evaluate(
        &ctx(),
        &imaging("WH-B", "DR-CHEST", "2025-06-25T09:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::ReferenceOnly);
    assert_eq!(codes(&v), vec!["TIER_DISCRETIONARY"]);
    let d = Decision {
        action: Action::AcceptDiscretionary,
        exception_codes: vec![],
        other_text: None,
        patient_informed: false,
    };
    assert_eq!(validate_decision(&v, &d, &rules()), Ok(()));
}

#[test]
fn t10_same_consortium_is_recognisable() {
    let mut q = ctx();
    q.requester_org = "WH-C".into();
    let v = evaluate(
        &q,
        &imaging("WH-B", "DR-CHEST", "2025-06-25T09:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::Recognizable, "{:?}", codes(&v));
    assert!(codes(&v).contains(&"CONSORTIUM_INTERNAL"));
    assert_eq!(v.evidence.scope_used.as_deref(), Some("consortium:WH-C1"));
    // No consortium label configured: the source's QC scope label is shown.
    assert_eq!(v.hr_label.as_deref(), Some("鄂HR"));
}

#[test]
fn t11_open_critical_value() {
    let mut c = lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00");
    c.critical = Critical {
        flagged: true,
        closure: Closure::Open,
    };
    let v = evaluate(&ctx(), &c, &rules());
    assert_eq!(v.level, Level::ReferenceOnly);
    assert_eq!(codes(&v), vec!["CRITICAL_VALUE_OPEN"]);
    c.critical.closure = Closure::Acknowledged;
    assert_eq!(evaluate(&ctx(), &c, &rules()).level, Level::Recognizable);
}

#[test]
fn t12_possible_match_is_blocked_and_hidden() {
    let mut c = lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00");
    c.identity = IdentityMethod::MpiPossibleMatch;
    let v = evaluate(&ctx(), &c, &rules());
    assert_eq!(v.level, Level::Blocked);
    assert!(codes(&v).contains(&"IDENTITY_UNCERTAIN"));
    assert!(!v.content_allowed());
    // A sex conflict blocks too.
    let mut c = lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00");
    c.patient.sex = Some(Sex::Female);
    let v = evaluate(&ctx(), &c, &rules());
    assert_eq!(v.level, Level::Blocked);
    assert!(codes(&v).contains(&"IDENTITY_CONFLICT"));
}

#[test]
fn t13_authorisation_and_break_glass() {
    let c = lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00");
    let mut q = ctx();
    q.patient_authorization = None;
    let v = evaluate(&q, &c, &rules());
    assert_eq!(v.level, Level::Blocked);
    assert!(codes(&v).contains(&"NO_PATIENT_AUTHORIZATION"));
    assert!(!v.content_allowed());
    // Break-glass in an outpatient visit is not allowed…
    q.patient_authorization = Some(PatientAuthorization {
        kind: AuthorizationKind::BreakGlass,
        reason: Some("胸痛".into()),
    });
    assert_eq!(evaluate(&q, &c, &rules()).level, Level::Blocked);
    // …in an emergency it is, and the evidence says so for the audit record.
    q.encounter = EncounterKind::Emergency;
    let v = evaluate(&q, &c, &rules());
    assert_eq!(v.level, Level::Recognizable, "{:?}", codes(&v));
    assert!(v.evidence.break_glass);
    assert!(codes(&v).contains(&"BREAK_GLASS"));
}

#[test]
fn t14_rejecting_a_recognisable_result_needs_a_code() {
    let r = rules();
    let v = evaluate(&ctx(), &lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00"), &r);
    assert_eq!(v.level, Level::Recognizable);
    let mut d = Decision {
        action: Action::Reject,
        exception_codes: vec![],
        other_text: None,
        patient_informed: true,
    };
    assert_eq!(
        validate_decision(&v, &d, &r),
        Err(DecisionError::ExceptionCodeRequired)
    );
    d.exception_codes = vec!["E6".into()];
    assert!(matches!(
        validate_decision(&v, &d, &r),
        Err(DecisionError::OtherTextRequired { .. })
    ));
    d.other_text = Some("患者".repeat(101));
    assert!(matches!(
        validate_decision(&v, &d, &r),
        Err(DecisionError::OtherTextTooLong { len: 202, max: 200 })
    ));
    d.other_text = Some("患者要求复查".into());
    assert_eq!(validate_decision(&v, &d, &r), Ok(()));
    d.patient_informed = false;
    assert_eq!(
        validate_decision(&v, &d, &r),
        Err(DecisionError::PatientNotInformed)
    );
    d.exception_codes = vec!["E9".into()];
    d.patient_informed = true;
    assert!(matches!(
        validate_decision(&v, &d, &r),
        Err(DecisionError::UnknownExceptionCode { .. })
    ));
}

#[test]
fn t15_same_content_from_two_channels_is_shown_once() {
    let a = lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00");
    let mut b = a.clone();
    b.report_id = "via-platform".into();
    let v = evaluate_all(&ctx(), &[a.clone(), b], &rules());
    assert!(!v[0].is_hidden_duplicate());
    assert!(v[1].is_hidden_duplicate());
    assert_eq!(v[1].duplicate_of.as_deref(), Some(a.report_id.as_str()));
}

#[test]
fn older_results_of_the_same_item_are_marked() {
    let new = lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00");
    let old = lab("WH-LAB", "K", "2025-06-27T10:00:00+08:00");
    let other = lab("WH-LAB", "HBA1C", "2025-06-20T10:00:00+08:00");
    let v = evaluate_all(&ctx(), &[old.clone(), new.clone(), other], &rules());
    assert!(v[0].has(ReasonCode::DuplicateOlder));
    assert_eq!(v[0].duplicate_of.as_deref(), Some(new.report_id.as_str()));
    assert!(!v[1].has(ReasonCode::DuplicateOlder));
    assert!(!v[2].has(ReasonCode::DuplicateOlder));
}

#[test]
fn status_and_catalogue_checks() {
    let r = rules();
    let mut c = lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00");
    c.status = CandidateStatus::Cancelled;
    assert_eq!(evaluate(&ctx(), &c, &r).level, Level::Blocked);
    c.status = CandidateStatus::Preliminary;
    assert!(evaluate(&ctx(), &c, &r).has(ReasonCode::ReportNotFinal));
    c.status = CandidateStatus::Amended;
    let v = evaluate(&ctx(), &c, &r);
    assert_eq!(v.level, Level::Recognizable);
    assert!(v.has(ReasonCode::SupersededVersionHidden));
    // Unknown local code: reference only, and discretionary acceptance is allowed.
    let c = lab("WH-LAB", "ZZZ", "2025-06-29T10:00:00+08:00");
    let v = evaluate(&ctx(), &c, &r);
    assert_eq!(codes(&v), vec!["ITEM_NOT_IN_CATALOGUE"]);
    let d = Decision {
        action: Action::AcceptDiscretionary,
        exception_codes: vec![],
        other_text: None,
        patient_informed: false,
    };
    assert_eq!(validate_decision(&v, &d, &r), Ok(()));
    // Accept on a reference-only verdict is refused; discretionary on EXPIRED too.
    let d2 = Decision {
        action: Action::Accept,
        ..d.clone()
    };
    assert!(validate_decision(&v, &d2, &r).is_err());
    let exp = evaluate(&ctx(), &lab("WH-LAB", "K", "2025-06-01T10:00:00+08:00"), &r);
    assert!(matches!(
        validate_decision(&exp, &d, &r),
        Err(DecisionError::DiscretionaryNotAllowed { .. })
    ));
}

#[test]
fn intended_order_must_match() {
    let r = rules();
    let mut q = ctx();
    q.requester_org = "WH-C".into();
    q.intended_order = Some(IntendedOrder {
        item_code: "HB-RAD-DR-CHEST".into(),
        body_site: Some("胸部".into()),
        contrast: None,
        modality: None,
    });
    let c = imaging("WH-B", "DR-CHEST", "2025-06-25T09:00:00+08:00");
    assert_eq!(evaluate(&q, &c, &r).level, Level::Recognizable);
    q.intended_order.as_mut().unwrap().body_site = Some("腹部".into());
    assert!(evaluate(&q, &c, &r).has(ReasonCode::ItemNotEquivalent));
    q.intended_order.as_mut().unwrap().item_code = "HB-LAB-K".into();
    assert!(evaluate(&q, &c, &r).has(ReasonCode::ItemNotEquivalent));
}

#[test]
fn hints_warn_but_never_block() {
    let mut q = ctx();
    q.clinical_flags.condition_changed = true;
    q.clinical_flags.pre_surgery = true;
    let v = evaluate(
        &q,
        &lab("WH-LAB", "K", "2025-06-29T10:00:00+08:00"),
        &rules(),
    );
    assert_eq!(v.level, Level::Recognizable);
    assert!(v.has(ReasonCode::HintE1) && v.has(ReasonCode::HintE3));
}

#[test]
fn every_reason_cites_the_rules_version() {
    let mut c = lab("WH-FAIL", "HBA1C", "2024-01-01T08:00:00+08:00");
    c.status = CandidateStatus::Preliminary;
    let v = evaluate(&ctx(), &c, &rules());
    assert!(v.reasons.len() >= 3);
    for r in &v.reasons {
        assert!(r.source_ref.starts_with("rules@test-hubei-1#"), "{r:?}");
        assert_eq!(r.zh_text, r.code.zh());
    }
    // Most severe first.
    let sev: Vec<_> = v.reasons.iter().map(|r| r.severity).collect();
    let mut sorted = sev.clone();
    sorted.sort();
    assert_eq!(sev, sorted);
}

#[test]
fn the_shipped_example_rules_are_valid() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/recognition.toml"),
    )
    .unwrap();
    let r = Rules::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    let u = r.unconfigured();
    assert!(
        u.iter().any(|l| l.starts_with("item FX-RAD-CT-CHEST")),
        "{u:#?}"
    );
    assert!(
        u.iter().any(|l| l.starts_with("institution FX-SQ02")),
        "{u:#?}"
    );
    assert!(!u.iter().any(|l| l.starts_with("item FX-LAB-K ")), "{u:#?}");
    // A community centre's HbA1c is recognised at the district hospital (same consortium)…
    let mut q = ctx();
    q.requester_org = "FX-ZX".into();
    q.now = t("2026-03-01T09:00:00+08:00");
    let c = lab("FX-SQ01", "HBA1C", "2026-02-01T08:00:00+08:00");
    let v = evaluate(&q, &c, &r);
    assert_eq!(v.level, Level::Recognizable, "{:?}", codes(&v));
    // …but not at Ruijin, outside the consortium (consortium-scoped QC).
    q.requester_org = "SH-RJ".into();
    assert!(evaluate(&q, &c, &r).has(ReasonCode::OutOfScope));
}
