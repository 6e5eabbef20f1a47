//! What a run published on its output topics, checked against its own output log.

use std::collections::{BTreeMap, HashMap};

use anyhow::ensure;
use serde_json::Value;

use super::observe::{Row, ensure_no_diff};
use super::oracle::TIERS;
use super::run::READ;
use crate::{Received, TestEnv};

/// What a run published, checked against its output log.
#[derive(Debug, Default)]
pub struct Published {
    /// Per customer, the tier topic's (ce_id, ce_type, previous, new) in topic order.
    pub tier: BTreeMap<String, Vec<(String, String, String, String)>>,
    pub total: usize,
    pub tier_changes: usize,
    pub downgrade_warnings: usize,
    pub segment_changes: usize,
    pub churn_changes: usize,
}

/// Reads the output topics to their end and checks them against the `output_log` of the
/// same database: every logged output is on its topic exactly once (no loss, no duplicate,
/// nothing that was never committed), per customer in a consistent order (each change starts
/// where the previous one ended), and the last change agrees with the stored state.
pub async fn check_outputs(
    env: &TestEnv,
    rows: &BTreeMap<String, Row>,
) -> anyhow::Result<Published> {
    let pool = env.pool().await?;
    let logged: Vec<(String, String, String)> =
        sqlx::query_as("SELECT customer_id, ce_id::text, ce_type FROM output_log")
            .fetch_all(&pool)
            .await?;
    pool.close().await;
    let logged: HashMap<String, (String, String)> = logged
        .into_iter()
        .map(|(c, id, ty)| (id, (c, ty)))
        .collect();

    let topics = &env.settings.kafka.topics;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Published::default();
    let mut problems = Vec::new();
    let mut by_topic: Vec<(String, Vec<Received>)> = Vec::new();
    for topic in [
        &topics.tier_changed,
        &topics.segment_changed,
        &topics.churn_risk,
    ] {
        // To each partition's end (not to the high watermark, which tansu can report short).
        let msgs = env.reader(topic)?.read_to_end(READ).await?;
        by_topic.push((topic.clone(), msgs));
    }
    let mut segments: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut churn: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (topic, msgs) in &by_topic {
        for m in msgs {
            out.total += 1;
            let ce_id = m.header("ce_id").unwrap_or_default().to_owned();
            let ce_type = m.header("ce_type").unwrap_or_default().to_owned();
            let customer = m.key.clone().unwrap_or_default();
            *seen.entry(ce_id.clone()).or_default() += 1;
            match logged.get(&ce_id) {
                None => problems.push(format!(
                    "{topic}: {ce_type} {ce_id} for {customer} is not in the output log"
                )),
                Some((c, ty)) if *c != customer || *ty != ce_type => problems.push(format!(
                    "{topic}: {ce_id} is {ce_type} for {customer} on the topic but {ty} for {c} in the log"
                )),
                Some(_) => {}
            }
            let v = m.json()?;
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            match ce_type.as_str() {
                "kizuna.v1.TierChanged" | "kizuna.v1.TierWillDowngrade" => {
                    if ce_type.ends_with("TierChanged") {
                        out.tier_changes += 1;
                    } else {
                        out.downgrade_warnings += 1;
                    }
                    out.tier.entry(customer).or_default().push((
                        ce_id,
                        ce_type,
                        s("previousTier"),
                        s("newTier"),
                    ));
                }
                "kizuna.v1.SegmentChanged" => {
                    out.segment_changes += 1;
                    let previous = v["previousSegment"]
                        .as_str()
                        .unwrap_or("SEGMENT_UNSPECIFIED")
                        .to_owned();
                    segments
                        .entry(customer)
                        .or_default()
                        .push((previous, s("newSegment")));
                }
                "kizuna.v1.ChurnRiskChanged" => {
                    out.churn_changes += 1;
                    let previous = v["previousLevel"]
                        .as_str()
                        .unwrap_or("CHURN_LEVEL_UNSPECIFIED")
                        .to_owned();
                    churn
                        .entry(customer)
                        .or_default()
                        .push((previous, s("newLevel")));
                }
                _ => {}
            }
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    for (id, n) in &duplicates {
        problems.push(format!("ce_id {id} published {n} times"));
    }
    let lost: Vec<_> = logged
        .iter()
        .filter(|(id, _)| !seen.contains_key(*id))
        .collect();
    for (id, (c, ty)) in &lost {
        problems.push(format!(
            "{ty} {id} for {c} is in the output log but was never published"
        ));
    }
    // Tier changes chain up from the entry tier to the stored tier.
    for (customer, changes) in &out.tier {
        let mut tier = TIERS[0].0.to_owned();
        for (id, ty, previous, new) in changes {
            if ty.ends_with("TierChanged") {
                if *previous != tier {
                    problems.push(format!(
                        "{customer}: TierChanged {id} from {previous} to {new}, but the tier was {tier}"
                    ));
                }
                tier = new.clone();
            } else if *previous != tier {
                problems.push(format!(
                    "{customer}: TierWillDowngrade {id} of {previous}, but the tier was {tier}"
                ));
            }
        }
        let stored = rows.get(customer).map(|r| r.tier.as_str());
        if stored != Some(tier.as_str()) {
            problems.push(format!(
                "{customer}: the last tier published is {tier}, the stored tier {stored:?}"
            ));
        }
    }
    for (customer, r) in rows {
        if !out.tier.contains_key(customer) && r.tier != TIERS[0].0 {
            problems.push(format!(
                "{customer}: tier {} stored but no TierChanged published",
                r.tier
            ));
        }
    }
    // Segment and churn-level changes chain up to the stored segment and level.
    let stored = |customer: &str, pointer: &str, prefix: &str| {
        rows.get(customer)
            .and_then(|r| r.state.pointer(pointer))
            .and_then(Value::as_str)
            .map(|v| format!("{prefix}{}", v.to_uppercase()))
    };
    for (what, changes, pointer, prefix) in [
        ("SegmentChanged", &segments, "/status/segment", "SEGMENT_"),
        (
            "ChurnRiskChanged",
            &churn,
            "/status/churn/level",
            "CHURN_LEVEL_",
        ),
    ] {
        let initial = [
            format!("{prefix}UNSPECIFIED"),
            format!(
                "{prefix}{}",
                if what == "SegmentChanged" {
                    "NEUTRAL"
                } else {
                    "LOW"
                }
            ),
        ];
        for (customer, changes) in changes {
            let mut current: Option<String> = None;
            for (previous, new) in changes {
                let ok = match &current {
                    None => initial.contains(previous),
                    Some(c) => previous == c,
                };
                if !ok {
                    problems.push(format!(
                        "{customer}: {what} from {previous} to {new}, but it was {current:?}"
                    ));
                }
                current = Some(new.clone());
            }
            let stored = stored(customer, pointer, prefix);
            if stored != current {
                problems.push(format!(
                    "{customer}: the last {what} published says {current:?}, the stored state {stored:?}"
                ));
            }
        }
        for customer in rows.keys() {
            let stored = stored(customer, pointer, prefix);
            if !changes.contains_key(customer)
                && stored.as_ref().is_some_and(|v| !initial.contains(v))
            {
                problems.push(format!(
                    "{customer}: {stored:?} stored but no {what} published"
                ));
            }
        }
    }
    ensure_no_diff("outputs against the output log", &problems)?;
    ensure!(
        out.total == logged.len(),
        "{} outputs published, {} logged",
        out.total,
        logged.len()
    );
    Ok(out)
}
