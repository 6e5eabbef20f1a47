//! Referral refunds (issue 16): a referred customer's order refunded in full before the
//! referrer's bonus clears cancels the bonus — also when the refund arrives before the purchase
//! — while a partial refund leaves it to be released. `kizuna recompute` then finds no
//! difference.

use chrono::{SubsecRound, Utc};
use kizuna::domain::points::{MovementKind, PointsBook};
use kizuna::domain::programme::Programme;
use kizuna_e2e::{Broker, TestEnv};
use serde_json::json;

use crate::helpers::{Scene, kizuna_cli};
use crate::inputs::{purchase_at, refund_of};
use crate::points::{figures, points_changed, stored_book};
use crate::points_kit;

kizuna_e2e::on_each_broker! {
    a_referral_bonus_is_cancelled_by_a_full_refund_before_it_clears_not_by_a_partial_one,
}

/// 1 point per 100 JPY, 14 days pending, a referral bonus of 300.
const POINTS: &str = r#"
[points]
enabled = true
[points.earn]
per_currency_unit = 1.0
currency_unit_minor = 100
pending_days = 14
referral_bonus = 300
[points.expiry]
mode = "rolling"
months = 12
"#;

/// The cancellation movement of `referrer`'s bonus for `referred`, if any.
fn cancellation<'a>(
    book: &'a PointsBook,
    referred: &str,
) -> Option<&'a kizuna::domain::points::Movement> {
    let id = format!("referral-cancel:{referred}");
    book.movements.iter().find(|m| m.id == id)
}

async fn a_referral_bonus_is_cancelled_by_a_full_refund_before_it_clears_not_by_a_partial_one(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    let programme_file = points_kit::with_points_section(&mut env, POINTS)?;
    // The as-of clock: the 14 pending days pass when an event 20 days later arrives.
    env.settings.clock = kizuna::config::Clock::EventTime;
    let s = Scene::start_in(env).await?;
    let t0 = (Utc::now() - chrono::Duration::days(100)).trunc_subsecs(0);
    let day = |n: i64| t0 + chrono::Duration::days(n);
    let referred = |event: &str, customer: &str, order: &str, referrer: &str| {
        let mut p = purchase_at(event, customer, order, 5_000, day(1));
        p["referredBy"] = json!(referrer);
        p
    };

    // cust-f, referred by cust-r, buys: cust-r's bonus is pending until day 15.
    let bought = referred("evt-f1", "cust-f", "ord-f1", "cust-r");
    s.feed.purchase("cust-f", &bought).await?;
    let (bonus, _) = points_changed(&s, "cust-r", "cust-r's referral bonus", |p| {
        p.changes.as_ref().is_some_and(|c| c.earned == 300)
    })
    .await?;
    assert_eq!(figures(&bonus), (300, 0, 0, 0, 300, 0));
    // ... and returns all of it on day 3: the bonus is cancelled.
    let back = refund_of(&bought, "evt-f2", day(3));
    s.feed.purchase("cust-f", &back).await?;
    let (cancelled, _) = points_changed(&s, "cust-r", "cust-r's bonus cancelled", |p| {
        p.changes.as_ref().is_some_and(|c| c.clawed_back > 0)
    })
    .await?;
    assert_eq!(figures(&cancelled), (0, 0, 300, 0, 0, 0));
    assert_eq!(cancelled.caused_by, "evt-f2");

    // cust-g, referred by cust-k, returns half of the order: cust-k keeps the bonus.
    let bought = referred("evt-g1", "cust-g", "ord-g1", "cust-k");
    s.feed.purchase("cust-g", &bought).await?;
    let mut half = refund_of(&bought, "evt-g2", day(3));
    half["amountMinor"] = json!("2500");
    s.feed.purchase("cust-g", &half).await?;
    points_changed(&s, "cust-g", "cust-g's partial clawback", |p| {
        p.changes.as_ref().is_some_and(|c| c.clawed_back > 0)
    })
    .await?;

    // cust-h, referred by cust-q: the refund arrives before the purchase; the bonus is granted
    // and cancelled in one step.
    let bought = referred("evt-h1", "cust-h", "ord-h1", "cust-q");
    s.feed
        .purchase("cust-h", &refund_of(&bought, "evt-h2", day(3)))
        .await?;
    s.app
        .wait_for_customer("cust-h", "cust-h's early refund applied", |c| {
            c["customer_id"] == json!("cust-h")
        })
        .await?;
    s.feed.purchase("cust-h", &bought).await?;
    let (both, _) = points_changed(&s, "cust-q", "cust-q's bonus granted and cancelled", |p| {
        p.changes.as_ref().is_some_and(|c| c.earned > 0)
    })
    .await?;
    assert_eq!(figures(&both), (300, 0, 300, 0, 0, 0));

    // Day 20: cust-k's bonus is released; cust-r and cust-q have nothing to release.
    s.feed
        .buy_at("cust-clock", "evt-c1", "ord-c1", 1_000, day(20))
        .await?;
    let (release, _) = points_changed(&s, "cust-k", "cust-k's bonus released", |p| {
        p.changes.as_ref().is_some_and(|c| c.released > 0)
    })
    .await?;
    assert_eq!(figures(&release), (0, 300, 0, 300, 0, 0));

    let rules = Programme::parse(&std::fs::read_to_string(&programme_file)?)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .points
        .ok_or_else(|| anyhow::anyhow!("no [points]"))?;
    let mut before = Vec::new();
    for (referrer, referred, cancelled_by) in [
        ("cust-r", "cust-f", Some("evt-f2")),
        ("cust-k", "cust-g", None),
        ("cust-q", "cust-h", Some("evt-h2")),
    ] {
        let book = stored_book(&s.env, referrer).await?;
        let folded = book.fold(&rules, day(20));
        let cancel = cancellation(&book, referred);
        assert_eq!(
            cancel.map(|m| m.source_event.as_str()),
            cancelled_by,
            "{referrer}: {:#?}",
            book.movements
        );
        let left = if cancelled_by.is_some() { 0 } else { 300 };
        assert_eq!(
            (folded.available, folded.pending, folded.debt),
            (left, 0, 0),
            "{referrer}"
        );
        if let Some(m) = cancel {
            assert!(
                matches!(&m.kind, MovementKind::Clawback { order_id } if *order_id == format!("referral:{referred}")),
                "{m:?}"
            );
            assert_eq!((m.amount, m.at), (300, day(3)));
        }
        before.push((referrer, book));
    }
    // The API lists the cancellation with its reason.
    let (status, points) = s.app.get("/v1/customers/cust-r/points").await?;
    assert_eq!(status, 200, "{points}");
    let listed = points["movements"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["id"] == json!("referral-cancel:cust-f"))
        })
        .ok_or_else(|| anyhow::anyhow!("no cancellation in {points}"))?;
    assert_eq!(listed["signed"], json!(-300), "{listed}");
    let reason = listed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(
            "referral bonus cancelled: the referred customer's order was refunded before it cleared on "
        ),
        "{reason}"
    );

    // Recompute derives the same movements and finds nothing to change.
    let (ok, _, err) = kizuna_cli(&s.env, &["recompute", "--clock", "event-time"], None)?;
    assert!(ok, "{err}");
    assert!(
        err.contains("0 tier changes, 0 with different points, 0 output events"),
        "recompute finds no difference: {err}"
    );
    let sorted = |b: &PointsBook| {
        let mut m = b.movements.clone();
        m.sort_by(|x, y| x.id.cmp(&y.id));
        m
    };
    for (referrer, book) in &before {
        let after = stored_book(&s.env, referrer).await?;
        assert_eq!(
            sorted(&after),
            sorted(book),
            "{referrer}: the same movements"
        );
    }

    std::fs::remove_file(&programme_file).ok();
    s.finish().await
}
