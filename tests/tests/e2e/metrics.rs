//! Observability: the metrics tell what happened, by name, and never name a customer.

use kizuna_e2e::{Broker, wait_for};

use crate::helpers::{Scene, WAIT};

kizuna_e2e::on_each_broker! {
    the_metrics_tell_what_happened_by_name,
}

async fn the_metrics_tell_what_happened_by_name(broker: Broker) -> anyhow::Result<()> {
    let scene = Scene::start(broker).await?;
    let (app, topics) = (&scene.app, scene.topics());
    for (i, amount) in [20_000, 15_000].into_iter().enumerate() {
        let (id, order) = (format!("evt-m{i}"), format!("ord-m{i}"));
        scene.feed.buy("cust-m", &id, &order, amount).await?;
    }
    // The same event again, and one that cannot be read.
    scene.feed.buy("cust-m", "evt-m1", "ord-m1", 15_000).await?;
    scene
        .feed
        .producer
        .send(&topics.purchases, Some("cust-m"), b"\x00\x01garbage", &[])
        .await?;
    scene.feed.answer_nps("cust-m", "evt-m9", 10).await?;

    let p = &topics.purchases;
    let s = &topics.surveys;
    let expected = [
        format!("kizuna_events_consumed_total{{outcome=\"applied\",topic=\"{p}\"}} 2"),
        format!("kizuna_events_consumed_total{{outcome=\"duplicate\",topic=\"{p}\"}} 1"),
        format!("kizuna_events_consumed_total{{outcome=\"dead_lettered\",topic=\"{p}\"}} 1"),
        format!("kizuna_events_consumed_total{{outcome=\"applied\",topic=\"{s}\"}} 1"),
        format!("kizuna_dead_letters_total{{reason=\"unparseable\",topic=\"{p}\"}} 1"),
        "kizuna_tier_transitions_total{from=\"member\",to=\"silver\"} 1".to_owned(),
        "to=\"angel\"} 1".to_owned(),
        "kizuna_customers{tier=\"silver\"} 1".to_owned(),
        "kizuna_customers_by_segment{segment=\"angel\"} 1".to_owned(),
        "kizuna_customers_by_churn_level{level=\"low\"} 1".to_owned(),
        "kizuna_outbox_backlog_rows 0".to_owned(),
        "kizuna_model_version 0".to_owned(),
        "kizuna_db_pool_max_connections 5".to_owned(),
        "kizuna_assigned_partitions 12".to_owned(), // 4 input topics × 3 partitions
    ];
    let names = [
        "kizuna_batch_events_bucket",
        "kizuna_batch_duration_seconds_bucket",
        "kizuna_batch_stage_seconds_bucket{stage=\"ledger\"",
        "kizuna_event_processing_lag_seconds_bucket",
        "kizuna_outbox_publish_latency_seconds_bucket",
        "kizuna_outbox_published_total{topic=",
        "kizuna_outputs_total{kind=\"tier_changed\"} 1",
        "kizuna_consumer_lag_messages{partition=",
        "kizuna_db_pool_connections{state=\"idle\"}",
        "kizuna_ready",
        "kizuna_build_info{version=",
        "process_resident_memory_bytes",
    ];
    let text = wait_for("the metrics of a known event stream", WAIT, || async {
        let text = app.get_text("/metrics").await?;
        let all = expected.iter().all(|line| text.contains(line.as_str()))
            && names.iter().all(|n| text.contains(n));
        Ok(all.then_some(text))
    })
    .await;
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            let now = app.get_text("/metrics").await.unwrap_or_default();
            let missing: Vec<&str> = expected
                .iter()
                .map(String::as_str)
                .chain(names)
                .filter(|l| !now.contains(l))
                .collect();
            anyhow::bail!("{e:#}; missing {missing:?} from\n{now}");
        }
    };
    // Labels never carry a customer id.
    assert!(!text.contains("cust-m"));

    scene.finish().await
}
