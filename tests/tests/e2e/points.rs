//! Points (issue 16): an engine whose programme file has `[points]` earns on purchases (first-order
//! bonus included), claws back on a partial refund, pays a survey bonus and a referral bonus,
//! releases pending points when its event-time clock passes the return window, and publishes
//! each change as a `PointsChanged` CloudEvent on `loyalty.points`. `kizuna recompute` then
//! rebuilds the same points and finds no difference.

use std::path::PathBuf;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use kizuna::domain::points::PointsBook;
use kizuna::domain::programme::Programme;
use kizuna_e2e::{Broker, Received, TestEnv};
use kizuna_proto::v1;
use serde_json::{Value, json};

use crate::helpers::{Scene, WAIT, kizuna_cli};
use crate::inputs::purchase_at;
use crate::points_kit;

kizuna_e2e::on_each_broker! {
    points_are_earned_clawed_back_released_and_recomputed_unchanged,
    rolling_expiry_warns_then_expires,
    inactivity_expiry_warns_then_expires,
    calendar_expiry_warns_then_expires,
}

/// The `[points]` section the test appends to the shipped programme: 1 point per 100 JPY, 14
/// days pending, a first-order, a survey and a referral bonus, rolling 12-month expiry.
const POINTS: &str = r#"
[points]
enabled = true
cost_per_point_minor = 1
[points.earn]
per_currency_unit = 1.0
currency_unit_minor = 100
rounding = "down"
pending_days = 14
first_order_bonus = 50
survey_bonus = 20
referral_bonus = 300
negative_balance = "debt"
[points.expiry]
mode = "rolling"
months = 12
warn_days = 30
"#;

/// Writes the shipped programme plus [`POINTS`] to a file of this test and points the engine
/// (and the `kizuna` command line) at it; returns the file, to remove at the end.
fn with_points_programme(env: &mut TestEnv) -> anyhow::Result<PathBuf> {
    points_kit::with_points_section(env, POINTS)
}

/// A survey answer at `at`, in the protobuf JSON mapping.
fn survey_at(event_id: &str, customer: &str, at: DateTime<Utc>) -> Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": at.to_rfc3339(),
        "surveyId": "nps-points",
        "kind": "SURVEY_KIND_NPS",
        "score": 9
    })
}

/// Waits for a `PointsChanged` of `customer` on the points topic that satisfies `check`.
pub(crate) async fn points_changed(
    s: &Scene,
    customer: &str,
    what: &str,
    check: impl Fn(&v1::PointsChanged) -> bool,
) -> anyhow::Result<(v1::PointsChanged, Received)> {
    let parse = |m: &Received| -> Option<v1::PointsChanged> {
        if m.key.as_deref() != Some(customer)
            || m.header("ce_type") != Some("kizuna.v1.PointsChanged")
        {
            return None;
        }
        serde_json::from_slice::<v1::PointsChanged>(&m.payload).ok()
    };
    let found = |m: &Received| parse(m).is_some_and(|p| check(&p));
    let got = s
        .env
        .reader(&s.topics().points)?
        .collect_until(WAIT, |got| got.iter().any(found))
        .await
        .map_err(|e| anyhow::anyhow!("{what}: {e:#}"))?;
    let msg = got
        .into_iter()
        .find(found)
        .ok_or_else(|| anyhow::anyhow!("{what}: not found"))?;
    let parsed = parse(&msg).ok_or_else(|| anyhow::anyhow!("{what}: unreadable"))?;
    Ok((parsed, msg))
}

/// (earned, released, clawed_back, available, pending, debt) of a `PointsChanged`.
pub(crate) fn figures(p: &v1::PointsChanged) -> (i64, i64, i64, i64, i64, i64) {
    let c = p.changes.unwrap_or_default();
    (
        c.earned,
        c.released,
        c.clawed_back,
        p.available,
        p.pending,
        p.debt,
    )
}

/// The points book stored in the customer's state row.
pub(crate) async fn stored_book(env: &TestEnv, customer: &str) -> anyhow::Result<PointsBook> {
    let pool = env.pool().await?;
    let (bytes,): (Vec<u8>,) = sqlx::query_as("SELECT state FROM customers WHERE customer_id = $1")
        .bind(customer)
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(kizuna::store::customers::decode(&bytes)?.points)
}

async fn points_are_earned_clawed_back_released_and_recomputed_unchanged(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    let programme_file = with_points_programme(&mut env)?;
    // The as-of clock: "now" is the latest event time seen, so the 14 pending days pass as soon
    // as an event 20 days later arrives, without a real wait.
    env.settings.clock = kizuna::config::Clock::EventTime;
    let s = Scene::start_in(env).await?;
    // Whole seconds: the event-time clock keeps microseconds, and an event a few nanoseconds
    // after "now" would count only once the clock passes it.
    let t0 = (Utc::now() - chrono::Duration::days(100)).trunc_subsecs(0);
    let day = |n: i64| t0 + chrono::Duration::days(n);

    // 10,000 JPY: 100 points, plus 50 for the first order; pending for 14 days.
    let bought = purchase_at("evt-p1", "cust-p", "ord-p1", 10_000, day(0));
    s.feed.purchase("cust-p", &bought).await?;
    s.app
        .wait_for_customer("cust-p", "the purchase applied", |c| {
            c["metrics"]["orders"] == json!(1.0)
        })
        .await?;
    let (earn, msg) = points_changed(&s, "cust-p", "the earn", |p| {
        p.changes.as_ref().is_some_and(|c| c.earned > 0)
    })
    .await?;
    assert_eq!(figures(&earn), (150, 0, 0, 0, 150, 0));
    assert_eq!(earn.caused_by, "evt-p1");
    assert_eq!(msg.header("ce_specversion"), Some("1.0"));
    assert_eq!(msg.header("content-type"), Some("application/json"));

    // Half of the order comes back: half of what it earned goes, bonus included.
    let mut half = crate::inputs::refund_of(&bought, "evt-p2", day(1));
    half["amountMinor"] = json!("5000");
    s.feed.purchase("cust-p", &half).await?;
    let (claw, _) = points_changed(&s, "cust-p", "the clawback", |p| {
        p.changes.as_ref().is_some_and(|c| c.clawed_back > 0)
    })
    .await?;
    assert_eq!(figures(&claw), (0, 0, 75, 0, 75, 0));
    assert_eq!(claw.caused_by, "evt-p2");

    // A survey answer: 20 points, spendable at once.
    s.feed
        .producer
        .send_json(
            &s.topics().surveys,
            "cust-p",
            &survey_at("evt-p3", "cust-p", day(2)),
        )
        .await?;
    let (bonus, _) = points_changed(&s, "cust-p", "the survey bonus", |p| {
        p.changes.as_ref().is_some_and(|c| c.earned == 20)
    })
    .await?;
    assert_eq!(figures(&bonus), (20, 0, 0, 20, 75, 0));

    // A customer cust-p referred buys: cust-p's referral bonus is pending until that order
    // clears (day 3 + 14).
    let mut referred = purchase_at("evt-n1", "cust-n", "ord-n1", 5_000, day(3));
    referred["referredBy"] = json!("cust-p");
    s.feed.purchase("cust-n", &referred).await?;
    let (referral, _) = points_changed(&s, "cust-p", "the referral bonus", |p| {
        p.changes.as_ref().is_some_and(|c| c.earned == 300)
    })
    .await?;
    assert_eq!(figures(&referral), (300, 0, 0, 20, 375, 0));
    assert_eq!(referral.caused_by, "evt-n1");
    let (newcomer, _) =
        points_changed(&s, "cust-n", "the referred customer's earn", |_| true).await?;
    assert_eq!(figures(&newcomer), (100, 0, 0, 0, 100, 0));

    // Another customer's order comes back in full inside the return window: nothing is left
    // of what it earned, first-order bonus included.
    let whole = purchase_at("evt-f1", "cust-f", "ord-f1", 4_000, day(3));
    s.feed.purchase("cust-f", &whole).await?;
    points_changed(&s, "cust-f", "cust-f's earn", |p| p.pending == 90).await?;
    let back = crate::inputs::refund_of(&whole, "evt-f2", day(4));
    s.feed.purchase("cust-f", &back).await?;
    let (gone, _) = points_changed(&s, "cust-f", "the full clawback", |p| {
        p.changes.as_ref().is_some_and(|c| c.clawed_back > 0)
    })
    .await?;
    assert_eq!(figures(&gone), (0, 0, 90, 0, 0, 0));

    // Another customer's purchase 20 days on moves the clock past both pending periods: the
    // sweeper releases them.
    s.feed
        .buy_at("cust-clock", "evt-c1", "ord-c1", 1_000, day(20))
        .await?;
    let (release, _) = points_changed(&s, "cust-p", "the release", |p| {
        p.changes.as_ref().is_some_and(|c| c.released > 0)
    })
    .await?;
    assert_eq!(figures(&release), (0, 375, 0, 395, 0, 0));
    assert_eq!(release.caused_by, "sweep");

    // The ledger behind it: every movement with its reason, adding up to the balance.
    let rules = {
        let text = std::fs::read_to_string(&programme_file)?;
        Programme::parse(&text)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .points
            .ok_or_else(|| anyhow::anyhow!("no [points]"))?
    };
    let before = stored_book(&s.env, "cust-p").await?;
    let folded = before.fold(&rules, day(20));
    assert_eq!((folded.available, folded.pending, folded.debt), (395, 0, 0));
    let mut ids: Vec<&str> = before.movements.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "evt-p1:earn",
            "evt-p1:first_order",
            "evt-p2:clawback",
            "evt-p3:survey",
            "referral:cust-n"
        ]
    );
    assert!(
        before.movements.iter().all(|m| !m.reason.is_empty()),
        "{:?}",
        before.movements
    );

    // Recompute rebuilds the points from the event ledger and finds nothing to change.
    let env = &s.env;
    let (ok, _, err) = kizuna_cli(env, &["recompute", "--clock", "event-time"], None)?;
    assert!(ok, "{err}");
    assert!(
        err.contains("0 tier changes, 0 with different points, 0 output events"),
        "recompute finds no difference: {err}"
    );
    let after = stored_book(env, "cust-p").await?;
    let sorted = |b: &PointsBook| {
        let mut m = b.movements.clone();
        m.sort_by(|x, y| x.id.cmp(&y.id));
        m
    };
    assert_eq!(sorted(&after), sorted(&before), "the same movements");
    assert_eq!(after.fold(&rules, day(20)), folded);

    std::fs::remove_file(&programme_file).ok();
    s.finish().await
}

/// One expiry mode, end to end: `purchases` (offset in days from a start 400 days back, amount)
/// by one customer earn spendable points (no pending period); when the event-time clock comes
/// within 10 days of `due_of(start)`, the sweeper publishes one
/// `PointsWillExpire` per lot (`lots`: lot, amount); once it passes `due`, a `PointsChanged`
/// with everything expired.
async fn expiry_scenario(
    broker: Broker,
    expiry: &str,
    purchases: &[(i64, i64)],
    due_of: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
    lots: &[(&str, i64)],
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    let file = points_kit::with_points_section(
        &mut env,
        &format!(
            "[points]\nenabled = true\n[points.earn]\npending_days = 0\n[points.expiry]\n{expiry}\nwarn_days = 10\n"
        ),
    )?;
    env.settings.clock = kizuna::config::Clock::EventTime;
    let s = Scene::start_in(env).await?;
    // Midnight, whole seconds: calendar periods start at midnight.
    let start = (Utc::now() - chrono::Duration::days(400))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .ok_or_else(|| anyhow::anyhow!("midnight"))?;
    let mut total = 0;
    for (i, (offset, amount)) in purchases.iter().enumerate() {
        let at = start + chrono::Duration::days(*offset) + chrono::Duration::hours(12);
        s.feed
            .buy_at(
                "cust-e",
                &format!("evt-e{i}"),
                &format!("ord-e{i}"),
                *amount,
                at,
            )
            .await?;
        total += amount / 100;
        points_changed(&s, "cust-e", "the earn", |p| p.available == total).await?;
    }
    let due = due_of(start);

    // Inside the warning period: one PointsWillExpire per lot, with its amount and date.
    s.feed
        .buy_at(
            "cust-clock",
            "evt-k1",
            "ord-k1",
            100,
            due - chrono::Duration::days(5),
        )
        .await?;
    let is_warning = |m: &Received| {
        m.key.as_deref() == Some("cust-e")
            && m.header("ce_type") == Some("kizuna.v1.PointsWillExpire")
    };
    let got = s
        .env
        .reader(&s.topics().points)?
        .collect_until(WAIT, |got| {
            got.iter().filter(|m| is_warning(m)).count() >= lots.len()
        })
        .await?;
    let mut warned = Vec::new();
    for m in got.iter().filter(|m| is_warning(m)) {
        let w: v1::PointsWillExpire = serde_json::from_slice(&m.payload)?;
        assert_eq!(
            w.expires_at.map(|t| t.seconds),
            Some(due.timestamp()),
            "{w:?}"
        );
        warned.push((w.lot, w.amount));
    }
    warned.sort();
    let mut expected: Vec<(String, i64)> =
        lots.iter().map(|(l, a)| ((*l).to_owned(), *a)).collect();
    expected.sort();
    assert_eq!(warned, expected);

    // Past the date: everything expires, and the warning was not raised again.
    s.feed
        .buy_at(
            "cust-clock",
            "evt-k2",
            "ord-k2",
            100,
            due + chrono::Duration::days(1),
        )
        .await?;
    let (expired, _) = points_changed(&s, "cust-e", "the expiry", |p| {
        p.changes.as_ref().is_some_and(|c| c.expired > 0)
    })
    .await?;
    let c = expired.changes.unwrap_or_default();
    assert_eq!(
        (c.expired, expired.available, expired.pending),
        (total, 0, 0)
    );
    let all = s.env.reader(&s.topics().points)?.read_to_end(WAIT).await?;
    assert_eq!(
        all.iter().filter(|m| is_warning(m)).count(),
        lots.len(),
        "each lot warned once"
    );

    std::fs::remove_file(&file).ok();
    s.finish().await
}

async fn rolling_expiry_warns_then_expires(broker: Broker) -> anyhow::Result<()> {
    // A lot lives a month after it was earned.
    expiry_scenario(
        broker,
        "mode = \"rolling\"\nmonths = 1",
        &[(0, 10_000)],
        |start| start + chrono::Months::new(1) + chrono::Duration::hours(12),
        &[("evt-e0:earn", 100)],
    )
    .await
}

async fn inactivity_expiry_warns_then_expires(broker: Broker) -> anyhow::Result<()> {
    // Idle for a month after the second purchase: both lots go together.
    expiry_scenario(
        broker,
        "mode = \"inactivity\"\nmonths = 1",
        &[(0, 10_000), (10, 5_000)],
        |start| {
            start
                + chrono::Duration::days(10)
                + chrono::Months::new(1)
                + chrono::Duration::hours(12)
        },
        &[("evt-e0:earn", 100), ("evt-e1:earn", 50)],
    )
    .await
}

async fn calendar_expiry_warns_then_expires(broker: Broker) -> anyhow::Result<()> {
    // Earned in a month: due when the next month begins.
    expiry_scenario(
        broker,
        "mode = \"calendar\"\nperiod = \"month\"",
        &[(0, 10_000)],
        |start| {
            let first = start.with_day(1).unwrap_or(start);
            first + chrono::Months::new(1)
        },
        &[("evt-e0:earn", 100)],
    )
    .await
}
