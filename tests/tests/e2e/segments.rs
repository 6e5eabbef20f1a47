//! Segments and churn risk: what a customer says and lives through moves them between
//! segments, and a churn alert says why and what to do.

use kizuna_e2e::Broker;
use kizuna_proto::v1;
use serde_json::json;

use crate::helpers::Scene;
use crate::inputs::ticket_at;

kizuna_e2e::on_each_broker! {
    a_hostage_appears_when_a_big_spender_answers_nps_3,
    a_churn_alert_says_why_and_what_to_do,
}

async fn a_hostage_appears_when_a_big_spender_answers_nps_3(broker: Broker) -> anyhow::Result<()> {
    let s = Scene::start(broker).await?;
    let app = &s.app;

    s.feed.buy("cust-h", "evt-h1", "ord-h1", 150_000).await?;
    app.wait_for_customer("cust-h", "the purchase", |s| {
        s["segment"] == json!("high_value_not_loyal")
    })
    .await?;
    s.feed.answer_nps("cust-h", "evt-h2", 3).await?;
    let state = app
        .wait_for_customer("cust-h", "the detractor answer", |s| {
            s["segment"] == json!("hostage")
        })
        .await?;
    assert_eq!(state["metrics"]["nps_category"], json!("detractor"));

    let hostage = s
        .first_output(
            &s.topics().segment_changed,
            "newSegment",
            &json!("SEGMENT_HOSTAGE"),
        )
        .await?;
    assert_eq!(hostage.header("ce_type"), Some("kizuna.v1.SegmentChanged"));
    assert_eq!(
        hostage.header("ce_dataschema").map(str::to_owned),
        Some(kizuna_proto::dataschema("kizuna.v1.SegmentChanged"))
    );
    assert_eq!(hostage.key.as_deref(), Some("cust-h"));
    let event: v1::SegmentChanged = serde_json::from_slice(&hostage.payload)?;
    assert_eq!(event.previous_segment(), v1::Segment::HighValueNotLoyal);
    assert_eq!(event.caused_by, "evt-h2");
    assert!(event.reason.contains("NPS 3"), "{}", event.reason);
    assert_eq!(
        event.metrics.map(|m| m.nps_category),
        Some("detractor".to_owned())
    );

    s.finish().await
}

async fn a_churn_alert_says_why_and_what_to_do(broker: Broker) -> anyhow::Result<()> {
    let s = Scene::start(broker).await?;
    let app = &s.app;
    let now = chrono::Utc::now();

    // A big spender, buying today…
    for i in 0..3 {
        let at = now - chrono::Duration::hours(3 - i);
        let (id, order) = (format!("evt-c{i}"), format!("ord-c{i}"));
        s.feed.buy_at("cust-c", &id, &order, 60_000, at).await?;
    }
    app.wait_for_customer("cust-c", "the purchases", |s| {
        s["metrics"]["orders"] == json!(3.0)
    })
    .await?;
    // …has two bad support experiences and answers NPS 2.
    for (id, ticket, status, escalated) in [
        ("evt-c5", "T-1", "TICKET_STATUS_REOPENED", true),
        ("evt-c6", "T-2", "TICKET_STATUS_RESOLVED", false),
    ] {
        let event = ticket_at(id, "cust-c", ticket, status, escalated, now);
        s.feed.ticket("cust-c", &event).await?;
    }
    s.feed.answer_nps("cust-c", "evt-c7", 2).await?;
    let state = app
        .wait_for_customer("cust-c", "high churn risk", |s| {
            s["churn"]["level"] == json!("high")
        })
        .await?;
    assert_eq!(state["segment"], json!("hostage"));

    let alert = s
        .first_output(
            &s.topics().churn_risk,
            "newLevel",
            &json!("CHURN_LEVEL_HIGH"),
        )
        .await?;
    assert_eq!(alert.header("ce_type"), Some("kizuna.v1.ChurnRiskChanged"));
    assert_eq!(
        alert.header("ce_dataschema").map(str::to_owned),
        Some(kizuna_proto::dataschema("kizuna.v1.ChurnRiskChanged"))
    );
    let event: v1::ChurnRiskChanged = serde_json::from_slice(&alert.payload)?;
    assert_eq!(
        event.play(),
        v1::Play::VipOutreach,
        "a high-value hostage gets personal outreach"
    );
    assert!(event.score >= 0.7, "{}", event.score);
    let names: Vec<&str> = event.drivers.iter().map(|d| d.name.as_str()).collect();
    assert!(
        names.contains(&"bad_experiences") && names.contains(&"detractor_nps"),
        "{names:?}"
    );
    let sum: f64 = event.drivers.iter().map(|d| d.contribution).sum();
    assert!(
        (sum - event.score).abs() < 1e-6,
        "contributions add up to the score"
    );
    assert!(
        event
            .drivers
            .windows(2)
            .all(|w| w[0].contribution >= w[1].contribution),
        "drivers are ranked"
    );
    assert_eq!(
        event.metrics.as_ref().and_then(|m| m.churn_risk),
        Some(event.score)
    );

    let text = app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_churn_risk_changes_total{level=\"high\",play=\"vip_outreach\"}"),
        "{text}"
    );
    s.finish().await
}
