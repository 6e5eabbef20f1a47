//! Validation of each input message: what is accepted, and each refusal with its reason.

use super::*;
use chrono::TimeZone;

fn limits() -> Limits {
    Limits {
        max_id_len: 16,
        max_amount_minor: 1_000_000,
        max_future_skew: Duration::hours(1),
        currency: Currency::parse("JPY").expect("jpy"),
        max_text_len: 64,
        max_line_items: 3,
        max_age: Some(Duration::days(3650)),
        earliest: Utc
            .with_ymd_and_hms(1980, 1, 1, 0, 0, 0)
            .single()
            .expect("date"),
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .expect("date")
}

fn ts(dt: DateTime<Utc>) -> Option<kizuna_proto::Timestamp> {
    Some(kizuna_proto::Timestamp {
        seconds: dt.timestamp(),
        nanos: 0,
    })
}

fn good_purchase() -> v1::Purchase {
    v1::Purchase {
        event_id: "e1".into(),
        customer_id: "c1".into(),
        occurred_at: ts(now() - Duration::days(1)),
        order_id: "o1".into(),
        kind: v1::PurchaseKind::Purchase as i32,
        amount_minor: 5_000,
        currency: "JPY".into(),
        ..Default::default()
    }
}

fn refusal(event: WireEvent, key: Option<&[u8]>) -> RejectReason {
    validate(&event, key, &limits(), now())
        .expect_err("must refuse")
        .reason
}

fn reason(p: v1::Purchase, key: Option<&[u8]>) -> RejectReason {
    refusal(WireEvent::Purchase(p), key)
}

#[test]
fn a_good_purchase_passes() {
    let e = validate(
        &WireEvent::Purchase(good_purchase()),
        Some(b"c1"),
        &limits(),
        now(),
    )
    .expect("valid");
    assert_eq!(e.meta.customer_id.as_str(), "c1");
    assert!(matches!(e.body, EventBody::Purchase(ref p) if p.amount.get() == 5_000));
}

#[test]
fn hostile_purchases_are_refused_with_their_reason() {
    let base = good_purchase;
    assert_eq!(
        reason(
            v1::Purchase {
                event_id: "".into(),
                ..base()
            },
            None
        ),
        RejectReason::MissingField
    );
    assert_eq!(
        reason(
            v1::Purchase {
                customer_id: "".into(),
                ..base()
            },
            None
        ),
        RejectReason::MissingField
    );
    assert_eq!(
        reason(
            v1::Purchase {
                customer_id: "x".repeat(17),
                ..base()
            },
            None
        ),
        RejectReason::InvalidCustomerId
    );
    assert_eq!(
        reason(base(), Some(b"someone-else")),
        RejectReason::KeyMismatch
    );
    assert_eq!(
        reason(
            v1::Purchase {
                amount_minor: i64::MAX,
                ..base()
            },
            None
        ),
        RejectReason::AmountOutOfRange
    );
    assert_eq!(
        reason(
            v1::Purchase {
                amount_minor: -5,
                ..base()
            },
            None
        ),
        RejectReason::AmountOutOfRange
    );
    assert_eq!(
        reason(
            v1::Purchase {
                currency: "USD".into(),
                ..base()
            },
            None
        ),
        RejectReason::CurrencyMismatch
    );
    assert_eq!(
        reason(
            v1::Purchase {
                currency: "yen".into(),
                ..base()
            },
            None
        ),
        RejectReason::InvalidCurrency
    );
    assert_eq!(
        reason(
            v1::Purchase {
                occurred_at: ts(now() + Duration::days(2)),
                ..base()
            },
            None
        ),
        RejectReason::FutureTimestamp
    );
    assert_eq!(
        reason(
            v1::Purchase {
                occurred_at: None,
                ..base()
            },
            None
        ),
        RejectReason::MissingField
    );
    assert_eq!(
        reason(
            v1::Purchase {
                occurred_at: ts(now() - Duration::days(3651)),
                ..base()
            },
            None
        ),
        RejectReason::TooOld
    );
    assert_eq!(
        reason(
            v1::Purchase {
                occurred_at: Some(kizuna_proto::Timestamp {
                    seconds: 0,
                    nanos: 0
                }),
                ..base()
            },
            None
        ),
        RejectReason::InvalidTimestamp
    );
    assert_eq!(
        reason(v1::Purchase { kind: 0, ..base() }, None),
        RejectReason::MissingField
    );
    assert_eq!(
        reason(v1::Purchase { kind: 42, ..base() }, None),
        RejectReason::UnknownEnum
    );
    assert_eq!(
        reason(
            v1::Purchase {
                line_items: vec![v1::LineItem::default(); 4],
                ..base()
            },
            None
        ),
        RejectReason::InvalidField
    );
}

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .expect("date")
}

#[test]
fn old_history_is_accepted_down_to_the_earliest_event_time() {
    // 1997 (CDNOW) with a ledger that keeps everything: accepted by default.
    let keep_all = Limits {
        max_age: None,
        ..limits()
    };
    let cdnow = v1::Purchase {
        occurred_at: ts(day(1997, 1, 1)),
        ..good_purchase()
    };
    let e = validate(&WireEvent::Purchase(cdnow), None, &keep_all, now()).expect("1997 accepted");
    assert_eq!(e.meta.occurred_at, day(1997, 1, 1));
    // Before the setting: refused, and the message names the setting.
    let too_early = v1::Purchase {
        occurred_at: ts(day(1979, 12, 31)),
        ..good_purchase()
    };
    let refused = validate(
        &WireEvent::Purchase(too_early.clone()),
        None,
        &keep_all,
        now(),
    )
    .expect_err("1979 refused");
    assert_eq!(refused.reason, RejectReason::InvalidTimestamp);
    assert!(
        refused.detail.contains("ingest.earliest_event_time"),
        "{}",
        refused.detail
    );
    // The setting moves the bound.
    let earlier = Limits {
        earliest: day(1970, 1, 2),
        ..keep_all
    };
    assert!(validate(&WireEvent::Purchase(too_early), None, &earlier, now()).is_ok());
}

#[test]
fn age_is_judged_against_the_reference_given() {
    let retention = Some(Duration::days(1095));
    let at = day(2016, 3, 1);
    // Ten years before the wall clock: too old for a 3-year ledger…
    let refused = check_age(at, retention, now()).expect_err("too old against now");
    assert_eq!(refused.reason, RejectReason::TooOld);
    assert!(
        refused.detail.contains("ledger.retention_days")
            && refused.detail.contains("kizuna backfill"),
        "{}",
        refused.detail
    );
    // …but not against a backfill's clock two years later, nor without retention.
    assert!(check_age(at, retention, day(2018, 3, 1)).is_ok());
    assert!(check_age(at, None, now()).is_ok());
    // The bound is strict: exactly the retention is still kept.
    assert!(check_age(at, retention, at + Duration::days(1095)).is_ok());
    assert!(check_age(at, retention, at + Duration::days(1096)).is_err());
}

#[test]
fn survey_scores_are_checked_per_kind() {
    let survey = |kind: v1::SurveyKind, score: u32| v1::SurveyResponse {
        event_id: "e".into(),
        customer_id: "c".into(),
        occurred_at: ts(now()),
        survey_id: "s".into(),
        kind: kind as i32,
        score,
        comment: None,
    };
    let ok = |k, s| validate(&WireEvent::Survey(survey(k, s)), None, &limits(), now()).is_ok();
    assert!(
        ok(v1::SurveyKind::Nps, 0) && ok(v1::SurveyKind::Nps, 10) && !ok(v1::SurveyKind::Nps, 11)
    );
    assert!(
        !ok(v1::SurveyKind::Csat, 0) && ok(v1::SurveyKind::Csat, 5) && !ok(v1::SurveyKind::Csat, 6)
    );
    assert!(ok(v1::SurveyKind::Ces, 7) && !ok(v1::SurveyKind::Ces, 8));
}

#[test]
fn ticket_scores_are_bounded() {
    let t = |csat: Option<u32>, sentiment: Option<f64>| v1::SupportTicket {
        event_id: "e".into(),
        customer_id: "c".into(),
        occurred_at: ts(now()),
        ticket_id: "t".into(),
        status: v1::TicketStatus::Resolved as i32,
        csat,
        sentiment,
        ..Default::default()
    };
    let ok = |x| validate(&WireEvent::SupportTicket(x), None, &limits(), now()).is_ok();
    assert!(ok(t(Some(1), Some(-1.0))));
    assert!(!ok(t(Some(0), None)));
    assert!(!ok(t(None, Some(1.5))));
    assert!(!ok(t(None, Some(f64::NAN))));
}

fn good_redemption() -> v1::Redemption {
    v1::Redemption {
        event_id: "e1".into(),
        customer_id: "c1".into(),
        occurred_at: ts(now() - Duration::hours(1)),
        redemption_id: "r1".into(),
        kind: v1::RedemptionKind::Redeem as i32,
        points: 500,
        reward: "coffee".into(),
    }
}

/// The body `r` validates to, keyed by its customer.
fn redemption_body(r: v1::Redemption) -> EventBody {
    validate(&WireEvent::Redemption(r), Some(b"c1"), &limits(), now())
        .expect("valid")
        .body
}

#[test]
fn redemptions_and_cancels_become_their_domain_events() {
    assert_eq!(
        redemption_body(good_redemption()),
        EventBody::Redemption(Redemption {
            redemption_id: "r1".into(),
            points: 500,
            reward: Some("coffee".into()),
        })
    );
    let at_the_till = v1::Redemption {
        reward: String::new(),
        ..good_redemption()
    };
    let e = redemption_body(at_the_till);
    assert!(matches!(e, EventBody::Redemption(ref r) if r.reward.is_none()));
    // A cancel needs only the redemption id; points and reward are ignored.
    let cancel = v1::Redemption {
        kind: v1::RedemptionKind::Cancel as i32,
        points: 0,
        ..good_redemption()
    };
    assert_eq!(
        redemption_body(cancel),
        EventBody::RedemptionCancel(RedemptionCancel {
            redemption_id: "r1".into()
        })
    );
}

#[test]
fn hostile_redemptions_are_refused_with_their_reason() {
    let base = good_redemption;
    let cases = [
        (
            v1::Redemption {
                redemption_id: "".into(),
                ..base()
            },
            RejectReason::MissingField,
        ),
        (
            v1::Redemption {
                redemption_id: "r".repeat(17),
                ..base()
            },
            RejectReason::InvalidId,
        ),
        (
            v1::Redemption { kind: 0, ..base() },
            RejectReason::MissingField,
        ),
        (
            v1::Redemption { kind: 9, ..base() },
            RejectReason::UnknownEnum,
        ),
        (
            v1::Redemption {
                points: 0,
                ..base()
            },
            RejectReason::AmountOutOfRange,
        ),
        (
            v1::Redemption {
                points: -10,
                ..base()
            },
            RejectReason::AmountOutOfRange,
        ),
        (
            v1::Redemption {
                points: i64::MAX,
                ..base()
            },
            RejectReason::AmountOutOfRange,
        ),
        (
            v1::Redemption {
                reward: "x".repeat(65),
                ..base()
            },
            RejectReason::InvalidField,
        ),
        (
            v1::Redemption {
                customer_id: "someone-else".into(),
                ..base()
            },
            RejectReason::KeyMismatch,
        ),
        (
            v1::Redemption {
                occurred_at: None,
                ..base()
            },
            RejectReason::MissingField,
        ),
    ];
    for (r, reason) in cases {
        let got = refusal(WireEvent::Redemption(r.clone()), Some(b"c1"));
        assert_eq!(got, reason, "{r:?}");
    }
}
