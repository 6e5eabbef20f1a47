//! The platforms' documented sample payloads (tests/fixtures/, sources in its README) through the
//! signature schemes and the built-in mapping, and the results through the engine's own rules.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use kizuna::domain::money::Currency;
use kizuna::inputs::decode::WireEvent;
use kizuna::inputs::validate::{Limits, validate};
use kizuna_proto::v1;
use serde_json::Value;

use crate::mapping::{Mapped, Mapping, shopify, typeform, zendesk};
use crate::signature;

const ORDERS_CREATE: &str = include_str!("../../../tests/fixtures/shopify/orders-create.json");
const ORDERS_UPDATED_REFUND: &str =
    include_str!("../../../tests/fixtures/shopify/orders-updated-partial-refund.json");
const TICKET_CREATED: &str = include_str!("../../../tests/fixtures/zendesk/ticket-created.json");
const SATISFACTION: &str = include_str!("../../../tests/fixtures/zendesk/satisfaction-rated.json");
const TYPEFORM: &str = include_str!("../../../tests/fixtures/typeform/example-payload.json");
const SIGNATURES: &str = include_str!("../../../tests/fixtures/signatures.txt");

fn signatures() -> HashMap<&'static str, &'static str> {
    SIGNATURES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn usd_limits() -> Limits {
    Limits {
        max_id_len: 128,
        max_amount_minor: 1_000_000_000_000,
        max_future_skew: Duration::days(1),
        currency: Currency::parse("USD").expect("usd"),
        max_text_len: 256,
        max_line_items: 1000,
        // The samples are dated 2018–2025: no ledger retention, as in the end-to-end test.
        max_age: None,
        earliest: chrono::DateTime::UNIX_EPOCH,
    }
}

fn events(m: Mapped) -> Vec<WireEvent> {
    match m {
        Mapped::Events(d) => d.into_iter().map(|d| d.event).collect(),
        Mapped::Ignored(why) => panic!("ignored: {why}"),
    }
}

fn at(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).expect("time").timestamp()
}

#[test]
fn openssl_signatures_of_the_samples_match_and_verify() {
    let sigs = signatures();
    let shopify_secret = sigs["shopify.secret"].as_bytes();
    for (file, body) in [
        ("shopify/orders-create.json", ORDERS_CREATE),
        (
            "shopify/orders-updated-partial-refund.json",
            ORDERS_UPDATED_REFUND,
        ),
    ] {
        assert_eq!(
            signature::sign_shopify(shopify_secret, body.as_bytes()),
            sigs[file],
            "{file}"
        );
        assert_eq!(
            signature::verify_shopify(shopify_secret, body.as_bytes(), Some(sigs[file])),
            Ok(())
        );
        // One byte more and the signature no longer holds.
        let tampered = format!("{body} ");
        assert_eq!(
            signature::verify_shopify(shopify_secret, tampered.as_bytes(), Some(sigs[file])),
            Err(signature::SignatureError::Mismatch)
        );
    }
    // Zendesk's documented static secret of test webhooks, used verbatim as the key.
    let zendesk_secret = sigs["zendesk.secret"].as_bytes();
    let ts = sigs["zendesk.timestamp"];
    let sig = sigs["zendesk/ticket-created.json"];
    assert_eq!(
        signature::sign_zendesk(zendesk_secret, ts, TICKET_CREATED.as_bytes()),
        sig
    );
    let now = DateTime::parse_from_rfc3339(ts)
        .expect("ts")
        .with_timezone(&Utc)
        + Duration::seconds(3);
    assert_eq!(
        signature::verify_zendesk(
            zendesk_secret,
            TICKET_CREATED.as_bytes(),
            Some(sig),
            Some(ts),
            now,
            300
        ),
        Ok(())
    );
    let typeform_secret = sigs["typeform.secret"].as_bytes();
    let sig = sigs["typeform/example-payload.json"];
    assert_eq!(
        signature::sign_typeform(typeform_secret, TYPEFORM.as_bytes()),
        sig
    );
    assert_eq!(
        signature::verify_typeform(typeform_secret, TYPEFORM.as_bytes(), Some(sig)),
        Ok(())
    );
}

#[test]
fn shopify_orders_create_sample_becomes_a_purchase() {
    let m = Mapping::built_in().expect("mapping");
    let mut e = events(
        shopify::map(Some("orders/create"), &json(ORDERS_CREATE), &m.shopify).expect("maps"),
    );
    let WireEvent::Purchase(p) = e.remove(0) else {
        panic!("purchase expected")
    };
    assert_eq!(p.customer_id, "115310627314723954");
    assert_eq!(p.order_id, "820982911946154508");
    assert_eq!(p.kind(), v1::PurchaseKind::Purchase);
    assert_eq!((p.amount_minor, p.currency.as_str()), (40495, "USD"));
    assert_eq!(p.discount_minor, 2000);
    assert_eq!(p.channel, "web");
    assert_eq!(
        p.occurred_at.map(|t| t.seconds),
        Some(at("2022-01-01T00:00:00Z"))
    );
    let lines: Vec<(&str, u32, i64)> = p
        .line_items
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity, l.unit_price_minor))
        .collect();
    assert_eq!(
        lines,
        [
            ("SKU2006-001", 1, 8999),
            ("LENS-PROTECT-2YR", 1, 1999),
            ("CASE-LEATHER-PREM", 1, 2499),
            ("SKU2006-020", 1, 15999),
            ("SKU2006-035", 1, 11999)
        ]
    );
    let mut wire = WireEvent::Purchase(p);
    if let WireEvent::Purchase(p) = &mut wire {
        p.event_id = "shopify-x".into();
    }
    assert!(validate(&wire, None, &usd_limits(), Utc::now()).is_ok());
}

#[test]
fn shopify_partial_refund_reverses_part_of_the_sample_order() {
    let m = Mapping::built_in().expect("mapping");
    let Mapped::Events(drafts) = shopify::map(
        Some("orders/updated"),
        &json(ORDERS_UPDATED_REFUND),
        &m.shopify,
    )
    .expect("maps") else {
        panic!("events expected");
    };
    assert_eq!(drafts.len(), 1);
    assert_eq!(
        drafts[0].id_key.as_deref(),
        Some("refund:890088186047892319")
    );
    let WireEvent::Purchase(p) = &drafts[0].event else {
        panic!("purchase expected")
    };
    assert_eq!(p.kind(), v1::PurchaseKind::Refund);
    assert_eq!(
        (p.order_id.as_str(), p.amount_minor),
        ("820982911946154508", 8999)
    );
    // The order sample itself (refunds: []) carries nothing to reverse.
    assert!(matches!(
        shopify::map(Some("orders/updated"), &json(ORDERS_CREATE), &m.shopify),
        Ok(Mapped::Ignored(_))
    ));
}

#[test]
fn zendesk_ticket_created_sample_opens_a_ticket_and_a_bad_rating_is_csat_1() {
    let m = Mapping::built_in().expect("mapping");
    let mut e = events(zendesk::map(&json(TICKET_CREATED), &m.zendesk, None).expect("maps"));
    let WireEvent::SupportTicket(t) = e.remove(0) else {
        panic!("ticket expected")
    };
    assert_eq!(
        (t.customer_id.as_str(), t.ticket_id.as_str()),
        ("8447388090494", "5158")
    );
    assert_eq!(t.status(), v1::TicketStatus::Opened);
    assert_eq!(t.priority(), v1::TicketPriority::Low);
    assert_eq!(
        (t.channel.as_str(), t.category.as_str()),
        ("web_service", "task")
    );
    assert_eq!(
        t.occurred_at.map(|x| x.seconds),
        Some(at("2025-01-08T10:12:07Z"))
    );
    // The template carries no time: the signed timestamp dates the rating.
    let signed = DateTime::parse_from_rfc3339("2026-11-25T09:30:00Z")
        .map(|t| t.with_timezone(&Utc))
        .ok();
    let mut e = events(zendesk::map(&json(SATISFACTION), &m.zendesk, signed).expect("maps"));
    let WireEvent::SupportTicket(t) = e.remove(0) else {
        panic!("ticket expected")
    };
    assert_eq!((t.status(), t.csat), (v1::TicketStatus::Resolved, Some(1)));
    assert_eq!(
        t.occurred_at.map(|x| x.seconds),
        Some(at("2026-11-25T09:30:00Z"))
    );
}

#[test]
fn typeform_example_payload_maps_its_scale_answers_when_the_mapping_names_them() {
    // The documented example has no NPS question: with the built-in mapping it is ignored.
    let built_in = Mapping::built_in().expect("mapping");
    assert!(matches!(
        typeform::map(&json(TYPEFORM), &built_in.typeform),
        Ok(Mapped::Ignored(_))
    ));
    let m = Mapping::parse_over_built_in(
        "[[typeform.scores]]\nref = \"readable_ref_opinion_scale\"\nkind = \"nps\"\n[[typeform.scores]]\nref = \"readable_ref_rating\"\nkind = \"csat\"\n",
    )
    .expect("mapping");
    let got: Vec<(String, v1::SurveyKind, u32, String)> =
        events(typeform::map(&json(TYPEFORM), &m.typeform).expect("maps"))
            .into_iter()
            .map(|e| match e {
                WireEvent::Survey(s) => (
                    s.customer_id.clone(),
                    s.kind(),
                    s.score,
                    s.survey_id.clone(),
                ),
                other => panic!("survey expected: {other:?}"),
            })
            .collect();
    assert_eq!(
        got,
        [
            (
                "abc123456".to_owned(),
                v1::SurveyKind::Nps,
                2,
                "lT4Z3j".to_owned()
            ),
            (
                "abc123456".to_owned(),
                v1::SurveyKind::Csat,
                3,
                "lT4Z3j".to_owned()
            ),
        ]
    );
}
