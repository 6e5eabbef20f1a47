//! The generated serde impls follow the protobuf JSON mapping: camelCase names, enum names,
//! RFC 3339 timestamps, int64 as strings. These are the shapes producers in any language send.

use kizuna_proto::v1::{
    InputEvent, Purchase, PurchaseKind, Redemption, RedemptionKind, input_event,
};

#[test]
fn purchase_json_uses_the_protobuf_mapping() {
    let json = r#"{
        "eventId": "e-1",
        "customerId": "c-1",
        "occurredAt": "2026-01-02T03:04:05Z",
        "orderId": "o-1",
        "kind": "PURCHASE_KIND_PURCHASE",
        "amountMinor": "12345",
        "currency": "JPY",
        "lineItems": [{"sku": "s", "category": "daily_goods", "quantity": 2, "unitPriceMinor": 500}]
    }"#;
    let p: Purchase = serde_json::from_str(json).expect("valid purchase json");
    assert_eq!(p.amount_minor, 12345);
    assert_eq!(p.kind(), PurchaseKind::Purchase);
    assert_eq!(p.occurred_at.expect("timestamp").seconds, 1_767_323_045);
    assert_eq!(p.line_items[0].unit_price_minor, 500);

    let back = serde_json::to_value(&p).expect("serialize");
    assert_eq!(back["amountMinor"], "12345");
    assert_eq!(back["kind"], "PURCHASE_KIND_PURCHASE");
    // pbjson writes UTC as "+00:00" rather than "Z"; both are RFC 3339 and every protobuf
    // runtime (Java's JsonFormat included) parses either.
    assert_eq!(back["occurredAt"], "2026-01-02T03:04:05+00:00");
    let again: Purchase = serde_json::from_value(back).expect("round trip");
    assert_eq!(again, p);
}

#[test]
fn unknown_enum_names_are_rejected() {
    let json = r#"{"eventId":"e","customerId":"c","kind":"PURCHASE_KIND_GIFT"}"#;
    assert!(serde_json::from_str::<Purchase>(json).is_err());
}

#[test]
fn input_event_is_a_oneof() {
    let json =
        r#"{"surveyResponse":{"eventId":"e","customerId":"c","kind":"SURVEY_KIND_NPS","score":9}}"#;
    let e: InputEvent = serde_json::from_str(json).expect("valid input event");
    match e.event {
        Some(input_event::Event::SurveyResponse(s)) => assert_eq!(s.score, 9),
        other => panic!("expected a survey response, got {other:?}"),
    }
}

#[test]
fn redemption_json_uses_the_protobuf_mapping() {
    let json = r#"{
        "eventId": "e-9",
        "customerId": "c-1",
        "occurredAt": "2026-01-02T03:04:05Z",
        "redemptionId": "till-7/0042",
        "kind": "REDEMPTION_KIND_REDEEM",
        "points": "300",
        "reward": "coffee"
    }"#;
    let r: Redemption = serde_json::from_str(json).expect("valid redemption json");
    assert_eq!((r.points, r.kind()), (300, RedemptionKind::Redeem));
    let back = serde_json::to_value(&r).expect("serialize");
    assert_eq!(back["points"], "300");
    assert_eq!(back["redemptionId"], "till-7/0042");
    let cancel = r#"{"eventId":"e-10","customerId":"c-1","redemptionId":"till-7/0042","kind":"REDEMPTION_KIND_CANCEL"}"#;
    let c: Redemption = serde_json::from_str(cancel).expect("valid cancel json");
    assert_eq!((c.kind(), c.points), (RedemptionKind::Cancel, 0));
}
