//! The consume loop driven by a fake consumer and a fake database: batching, transient and
//! poison failures, and the revocation drain, without Kafka or PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::consumer::{Decoder, IngestLoop, Sink};
use super::gate::Gate;
use super::rebalance::{Coordinator, RebalanceEvent};
use super::source::{RawMessage, Source};
use crate::config::Settings;
use crate::domain::money::Currency;
use crate::domain::rejection::RejectReason;
use crate::engine::batch::{BatchReport, Content, Incoming};
use crate::engine::ownership::Ownership;
use crate::health::Health;
use crate::inputs::validate::Limits;
use crate::metrics::Metrics;

const TOPIC: &str = "purchases";

/// Messages pushed by the test; mirrored offsets recorded.
#[derive(Clone)]
struct FakeConsumer {
    messages: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<RawMessage>>>,
    mirrored: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

impl Source for FakeConsumer {
    async fn recv(&self) -> Result<RawMessage, String> {
        match self.messages.lock().await.recv().await {
            Some(m) => Ok(m),
            None => std::future::pending().await,
        }
    }

    fn mirror(&self, positions: &HashMap<(String, i32), i64>) {
        if let Ok(mut m) = self.mirrored.lock() {
            m.extend(positions.clone());
        }
    }
}

/// What the fake database applied, and how it fails.
#[derive(Default)]
struct Db {
    /// (offset, dead-letter reason) of every message applied, in commit order.
    applied: Vec<(i64, Option<RejectReason>)>,
    /// Batches attempted.
    attempts: usize,
    /// Fail this many attempts with a lost connection first.
    transient_failures: usize,
    /// A batch holding an event with this order id fails with a data error, every time.
    poison_order: Option<String>,
    /// Each attempt waits for a permit (to hold a batch in flight).
    hold: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Clone, Default)]
struct FakeDb(Arc<Mutex<Db>>);

impl FakeDb {
    fn with(&self, f: impl FnOnce(&mut Db)) {
        if let Ok(mut db) = self.0.lock() {
            f(&mut db);
        }
    }

    fn applied(&self) -> Vec<(i64, Option<RejectReason>)> {
        self.0.lock().map(|d| d.applied.clone()).unwrap_or_default()
    }

    fn attempts(&self) -> usize {
        self.0.lock().map(|d| d.attempts).unwrap_or_default()
    }
}

impl Sink for FakeDb {
    async fn process(&self, batch: &[Incoming]) -> anyhow::Result<BatchReport> {
        let hold = self.0.lock().ok().and_then(|d| d.hold.clone());
        if let Some(hold) = hold {
            hold.acquire().await?.forget();
        }
        let mut db = self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        db.attempts += 1;
        if db.transient_failures > 0 {
            db.transient_failures -= 1;
            let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
            return Err(anyhow::Error::new(sqlx::Error::Io(io)).context("beginning a batch"));
        }
        let poisoned = batch.iter().any(|m| match (&m.content, &db.poison_order) {
            (Content::Event(e), Some(order)) => {
                serde_json::to_string(&e.body).is_ok_and(|b| b.contains(order.as_str()))
            }
            _ => false,
        });
        if poisoned {
            return Err(
                anyhow::Error::new(rmp_serde::decode::Error::LengthMismatch(1))
                    .context("decoding a stored customer state"),
            );
        }
        for m in batch {
            let reason = match &m.content {
                Content::Event(_) => None,
                Content::Rejected(r) => Some(r.reason),
                Content::Unresolved(_) => anyhow::bail!("an unresolved message reached the sink"),
            };
            db.applied.push((m.offset, reason));
        }
        let mut report = BatchReport::default();
        for m in batch {
            let slot = report
                .positions
                .entry((m.topic.clone(), m.partition))
                .or_insert(0);
            *slot = (*slot).max(m.offset + 1);
        }
        Ok(report)
    }
}

fn purchase(offset: i64) -> RawMessage {
    let at = Utc::now() - chrono::Duration::hours(1);
    let body = serde_json::json!({
        "eventId": format!("evt-{offset}"),
        "customerId": format!("cust-{}", offset % 7),
        "occurredAt": at.to_rfc3339(),
        "orderId": format!("ord-{offset}"),
        "kind": "PURCHASE_KIND_PURCHASE",
        "amountMinor": "1000",
        "currency": "JPY",
    });
    RawMessage {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        key: Some(format!("cust-{}", offset % 7).into_bytes()),
        payload: Some(body.to_string().into_bytes()),
        content_type: Some(b"application/json".to_vec()),
        ..RawMessage::default()
    }
}

impl Harness {
    fn gate_busy(&self) -> bool {
        self.gate.in_flight(&(TOPIC.to_owned(), 0))
    }
}

struct Harness {
    send: mpsc::UnboundedSender<RawMessage>,
    db: FakeDb,
    ownership: Ownership,
    gate: Gate,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    mirrored: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

fn start(db: FakeDb, writers: usize) -> anyhow::Result<Harness> {
    let mut settings = Settings::load(None)?;
    settings.kafka.topics.purchases = TOPIC.into();
    settings.ingest.writers = writers;
    settings.ingest.batch_linger_ms = 5;
    let limits = Limits {
        max_id_len: 128,
        max_amount_minor: 1_000_000_000,
        max_future_skew: chrono::Duration::minutes(5),
        currency: Currency::parse("JPY").map_err(|e| anyhow::anyhow!("{e:?}"))?,
        max_text_len: 256,
        max_line_items: 100,
        max_age: None,
        earliest: settings.ingest.earliest_event_time,
    };
    let (send, messages) = mpsc::unbounded_channel();
    let mirrored = Arc::new(Mutex::new(HashMap::new()));
    let source = FakeConsumer {
        messages: Arc::new(tokio::sync::Mutex::new(messages)),
        mirrored: mirrored.clone(),
    };
    let ownership = Ownership::default();
    ownership.assign([(TOPIC.to_owned(), 0)]);
    let gate = Gate::default();
    let decoder = Decoder::new(&settings.kafka.topics, limits, 1 << 20);
    let ingest = IngestLoop::new(
        source,
        db.clone(),
        decoder,
        settings.ingest.clone(),
        ownership.clone(),
        gate.clone(),
        Health::default(),
        Metrics::new(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(ingest.run(stop.clone()));
    Ok(Harness {
        send,
        db,
        ownership,
        gate,
        stop,
        task,
        mirrored,
    })
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_found_by_splitting_and_dead_lettered_and_the_rest_applied()
-> anyhow::Result<()> {
    let db = FakeDb::default();
    db.with(|d| d.poison_order = Some("ord-37".into()));
    let h = start(db, 1)?;
    for offset in 0..64 {
        h.send.send(purchase(offset))?;
    }
    wait_until("64 messages applied", || h.db.applied().len() >= 64).await?;
    let applied = h.db.applied();
    let offsets: Vec<i64> = applied.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..64).collect::<Vec<_>>(),
        "every message applied once, in offset order"
    );
    for (offset, reason) in &applied {
        let want = (*offset == 37).then_some(RejectReason::ProcessingFailed);
        assert_eq!(*reason, want, "offset {offset}");
    }
    // The whole batch failed, then halves down to the one message: a handful of attempts,
    // not one per message.
    assert!(h.db.attempts() < 30, "{} attempts", h.db.attempts());
    wait_until("offsets mirrored", || {
        h.mirrored
            .lock()
            .is_ok_and(|m| m.get(&(TOPIC.to_owned(), 0)) == Some(&64))
    })
    .await?;
    h.stop.cancel();
    h.task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_until_the_batch_commits_once() -> anyhow::Result<()> {
    let db = FakeDb::default();
    db.with(|d| d.transient_failures = 3);
    let h = start(db, 2)?;
    for offset in 0..10 {
        h.send.send(purchase(offset))?;
    }
    wait_until("10 messages applied", || h.db.applied().len() >= 10).await?;
    let applied = h.db.applied();
    assert_eq!(applied.len(), 10, "applied once: {applied:?}");
    assert!(
        applied.iter().all(|(_, reason)| reason.is_none()),
        "a transient failure dead-letters nothing: {applied:?}"
    );
    assert!(h.db.attempts() >= 4, "{} attempts", h.db.attempts());
    h.stop.cancel();
    h.task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_waits_for_the_batch_in_flight_and_drops_what_was_not_started()
-> anyhow::Result<()> {
    let db = FakeDb::default();
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    db.with(|d| d.hold = Some(hold.clone()));
    let h = start(db, 1)?;
    let (events, receive) = mpsc::unbounded_channel();
    let coordinator = Coordinator {
        pool: sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1:1/none")?,
        group_id: "g".into(),
        topics: vec![TOPIC.into()],
        ownership: h.ownership.clone(),
        gate: h.gate.clone(),
        metrics: Metrics::new(),
        drain: Duration::from_secs(5),
    };
    let coordinator_stop = CancellationToken::new();
    let coordinating = tokio::spawn(coordinator.run(receive, coordinator_stop.clone()));

    // A first batch goes in flight and is held there.
    h.send.send(purchase(0))?;
    wait_until("a batch in flight", || h.gate_busy()).await?;
    // More arrives while it is held: it waits in the next batch.
    h.send.send(purchase(1))?;
    let (answer, answered) = std::sync::mpsc::sync_channel(1);
    events.send(RebalanceEvent::Revoked(vec![(TOPIC.to_owned(), 0)], answer))?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        answered.try_recv().is_err(),
        "the revocation was answered while a batch of the partition was being committed"
    );
    assert!(
        h.ownership.owns(TOPIC, 0),
        "revoked before the batch finished"
    );
    hold.add_permits(100);
    let answered =
        tokio::task::spawn_blocking(move || answered.recv_timeout(Duration::from_secs(5))).await?;
    assert!(answered.is_ok(), "the revocation was never answered");
    assert!(!h.ownership.owns(TOPIC, 0));
    // The message that was waiting is not applied by this instance: the new owner reads it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let applied: Vec<i64> = h.db.applied().iter().map(|(o, _)| *o).collect();
    assert_eq!(applied, vec![0]);

    drop(events);
    coordinator_stop.cancel();
    coordinating.await??;
    h.stop.cancel();
    h.task.await??;
    Ok(())
}
