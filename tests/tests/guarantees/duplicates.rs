//! Duplicates: resent events are rejected as duplicates and never counted twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use anyhow::ensure;

use kizuna_e2e::Broker;
use kizuna_e2e::guarantees::*;
use kizuna_e2e::process::{EngineProcess, metric_sum};

kizuna_e2e::on_each_broker! {
    resent_events_are_rejected_as_duplicates_and_never_double_counted,
}

// ---------------------------------------------------------------------------------------------
// 2. Duplicates

/// The same event again: byte for byte, or (a producer that rebuilt the message on retry)
/// with the same event id but other content, which would change the state if applied.
fn resend(event: &Event, altered: bool) -> Msg {
    if !altered {
        return event.message(false);
    }
    let mut e = event.clone();
    e.body = match &event.body {
        Body::Purchase {
            order_id,
            amount,
            category,
            channel,
        } => Body::Purchase {
            order_id: format!("{order_id}-again"),
            amount: amount * 2,
            category,
            channel,
        },
        Body::Refund { order_id, .. } => Body::Refund {
            order_id: order_id.clone(),
            amount: 1,
        },
        Body::Ticket { ticket_id, .. } => Body::Ticket {
            ticket_id: ticket_id.clone(),
            status: "TICKET_STATUS_REOPENED",
            escalated: true,
            sla_breached: true,
            csat: Some(1),
            sentiment: Some(-1.0),
        },
        Body::Survey { kind, score } => Body::Survey {
            kind,
            score: match *kind {
                "SURVEY_KIND_NPS" => (score + 5) % 11,
                "SURVEY_KIND_CSAT" => score % 5 + 1,
                _ => score % 7 + 1,
            },
        },
    };
    e.message(false)
}

async fn resent_events_are_rejected_as_duplicates_and_never_double_counted(
    broker: Broker,
) -> anyhow::Result<()> {
    let Begun { seed, env, logs } = begin(broker, "duplicates", 0x6b69_7a75_6e61_0002).await?;
    let plan = Plan::recent(seed, 10_000);
    let work = generate(&plan);
    eprintln!("[duplicates] {}", work.summary());

    // 10 % of the events again, each somewhere after its original; half of them altered.
    let mut rng = Rng::new(seed ^ 0xd0d0);
    let originals = work.messages(&plan);
    let n = work.events.len();
    let mut chosen: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        chosen.swap(i, rng.below(i as u64 + 1) as usize);
    }
    chosen.truncate(n / 10);
    let mut after: BTreeMap<usize, Vec<Msg>> = BTreeMap::new();
    let mut altered = 0;
    for &i in &chosen {
        let change = rng.chance(0.5);
        altered += usize::from(change);
        let at = i + rng.range(0, (n - i) as i64 - 1) as usize;
        after
            .entry(at)
            .or_default()
            .push(resend(&work.events[i], change));
    }
    let mut msgs = Vec::with_capacity(n + chosen.len());
    for (i, m) in originals.into_iter().enumerate() {
        msgs.push(m);
        msgs.extend(after.remove(&i).unwrap_or_default());
    }
    let resent = chosen.len();

    let mut engine = EngineProcess::spawn("engine", &env.settings, &logs)?;
    engine.wait_ready(READY).await?;
    let feeder = Arc::new(Feeder::new(&env.settings)?);
    let sent = Arc::new(AtomicUsize::new(0));
    let msgs = Arc::new(msgs);
    stream(feeder, msgs.clone(), 500, Duration::from_millis(100), sent).await??;
    let Settled {
        rows,
        ledger,
        metrics,
        ..
    } = settle(&env, &mut [&mut engine]).await?;
    let text = metrics.concat();
    let consumed = "kizuna_events_consumed_total";
    let duplicates = metric_sum(&text, consumed, &[("outcome", "duplicate")]);
    let applied = metric_sum(&text, consumed, &[("outcome", "applied")]);
    let dead = metric_sum(&text, consumed, &[("outcome", "dead_lettered")]);
    let replayed = metric_sum(&text, consumed, &[("outcome", "replayed")]);

    // One engine, never restarted: each message is consumed once, and every resend comes after
    // its original on the same partition, so each one is counted as a duplicate.
    ensure!(
        duplicates as usize == resent,
        "{duplicates} duplicates counted, {resent} resent"
    );
    ensure!(
        applied as usize == n,
        "{applied} events applied, {n} distinct"
    );
    ensure!(
        dead == 0.0 && replayed == 0.0,
        "dead letters {dead}, replayed {replayed}"
    );
    let (reference, published) = ensure_complete(&env, &logs, &rows, ledger, &work).await?;
    eprintln!(
        "[duplicates] figures: events streamed {} ({n} distinct + {resent} resent, {altered} of them \
         with altered content), duplicates rejected {duplicates}, applied {applied}, outputs published {}, \
         double-counted 0, lost 0",
        msgs.len(),
        published.total
    );
    cleanup(reference).await?;
    cleanup(env).await
}
