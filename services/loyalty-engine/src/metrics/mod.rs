//! One place per fact: the Prometheus metrics, behind methods named after what happened.
//! Labels have low cardinality only: never a customer id.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::output::{Output, OutputKind};
use crate::domain::rejection::RejectReason;

mod stages;
pub use stages::Stages;

/// The stages of a batch, in order, as `kizuna_batch_stage_seconds{stage}` names them.
pub const BATCH_STAGES: [&str; 7] = [
    "offsets", "encode", "ledger", "load", "apply", "write", "commit",
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    dead_letters: IntCounterVec,
    off_home: IntCounterVec,
    stale_rows: IntCounter,
    batch_size: Histogram,
    batch_seconds: Histogram,
    batch_failures: IntCounter,
    registry_lookups: IntCounterVec,
    batch_stages: HistogramVec,
    event_lag_seconds: Histogram,
    receive_lag_seconds: Histogram,
    tier_transitions: IntCounterVec,
    segment_changes: IntCounterVec,
    churn_changes: IntCounterVec,
    outputs: IntCounterVec,
    outbox_published: IntCounterVec,
    swept: IntCounter,
    ledger_pruned: IntCounter,
    customers_by_tier: IntGaugeVec,
    customers_by_segment: IntGaugeVec,
    customers_by_churn: IntGaugeVec,
    consumer_lag: IntGaugeVec,
    db_pool: IntGaugeVec,
    db_pool_max: IntGauge,
    model_version: IntGauge,
    model_fitted_at: prometheus::Gauge,
    outbox_publish_seconds: Histogram,
    outbox_backlog: IntGauge,
    outbox_oldest_seconds: prometheus::Gauge,
    assigned_partitions: IntGauge,
    ready: IntGauge,
    http_requests: HistogramVec,
    build_info: IntGaugeVec,
    points_requests: IntCounterVec,
    points_outstanding: IntGaugeVec,
    points_liability: prometheus::GaugeVec,
    points_expiring: IntGaugeVec,
}

/// What became of one consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
    /// At or below the stored offset: already applied by an earlier transaction.
    Replayed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Replayed => "replayed",
        }
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Registration only fails for duplicate names, which is a programming error caught by tests.
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let latency_buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            3600.0,
        ];
        let m = Self {
            events: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_events_consumed_total",
                        "Input messages consumed, by topic and outcome.",
                    ),
                    &["topic", "outcome"],
                )
                .expect("valid metric"),
            ),
            dead_letters: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_dead_letters_total",
                        "Input messages sent to the dead-letter topic, by reason.",
                    ),
                    &["topic", "reason"],
                )
                .expect("valid metric"),
            ),
            off_home: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_events_off_home_partition_total",
                        "Applied events that arrived on a partition other than the one Kafka's \
                         default partitioner (murmur2 of the customer id) picks: key-less \
                         messages, producers on another partitioner (librdkafka's default is \
                         CRC32), or a partition count that changed.",
                    ),
                    &["topic"],
                )
                .expect("valid metric"),
            ),
            stale_rows: register(
                r,
                IntCounter::new(
                    "kizuna_customer_write_conflicts_total",
                    "Customer rows another writer created between this writer's read and its \
                     write; the events were re-applied on the stored row.",
                )
                .expect("valid metric"),
            ),
            batch_size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("kizuna_batch_events", "Messages per ingest batch.")
                        .buckets(vec![
                            1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                        ]),
                )
                .expect("valid metric"),
            ),
            batch_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kizuna_batch_duration_seconds",
                        "Time to apply and commit one batch.",
                    )
                    .buckets(latency_buckets.clone()),
                )
                .expect("valid metric"),
            ),
            batch_stages: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new("kizuna_batch_stage_seconds", "Time spent in each stage of a batch.")
                        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                    &["stage"],
                )
                .expect("valid metric"),
            ),
            batch_failures: register(
                r,
                IntCounter::new(
                    "kizuna_batch_failures_total",
                    "Batches whose transaction failed and was retried.",
                )
                .expect("valid metric"),
            ),
            registry_lookups: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_schema_registry_lookups_total",
                        "Schema Registry requests by outcome (found, not_found, unavailable: no answer after every attempt); cached schemas are not counted.",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            event_lag_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kizuna_event_processing_lag_seconds",
                        "From an event's occurred_at to its commit.",
                    )
                    .buckets(latency_buckets.clone()),
                )
                .expect("valid metric"),
            ),
            receive_lag_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kizuna_event_receive_lag_seconds",
                        "From an input message's timestamp (its creation by the producer, or its append to the log) to its receipt by the engine.",
                    )
                    .buckets(latency_buckets.clone()),
                )
                .expect("valid metric"),
            ),
            tier_transitions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_tier_transitions_total",
                        "Tier changes, by previous and new tier.",
                    ),
                    &["from", "to"],
                )
                .expect("valid metric"),
            ),
            segment_changes: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_segment_changes_total",
                        "Customer-grid segment changes, by previous and new segment.",
                    ),
                    &["from", "to"],
                )
                .expect("valid metric"),
            ),
            churn_changes: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_churn_risk_changes_total",
                        "Churn-risk level changes, by new level and play.",
                    ),
                    &["level", "play"],
                )
                .expect("valid metric"),
            ),
            outputs: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_outputs_total",
                        "Output events written to the outbox, by kind.",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            model_version: register(
                r,
                IntGauge::new(
                    "kizuna_model_version",
                    "Version of the churn model in use (0: none fitted).",
                )
                .expect("valid metric"),
            ),
            model_fitted_at: register(
                r,
                prometheus::Gauge::new(
                    "kizuna_model_fitted_timestamp_seconds",
                    "When the churn model in use was fitted (Unix time); fit age = time() - this.",
                )
                .expect("valid metric"),
            ),
            customers_by_tier: register(
                r,
                IntGaugeVec::new(Opts::new("kizuna_customers", "Customers by tier (whole population)."), &["tier"])
                    .expect("valid metric"),
            ),
            customers_by_segment: register(
                r,
                IntGaugeVec::new(
                    Opts::new("kizuna_customers_by_segment", "Customers by customer-grid segment (whole population)."),
                    &["segment"],
                )
                .expect("valid metric"),
            ),
            customers_by_churn: register(
                r,
                IntGaugeVec::new(
                    Opts::new("kizuna_customers_by_churn_level", "Customers by churn-risk level (whole population)."),
                    &["level"],
                )
                .expect("valid metric"),
            ),
            consumer_lag: register(
                r,
                IntGaugeVec::new(
                    Opts::new("kizuna_consumer_lag_messages", "Messages between the stored position and the end of each owned input partition."),
                    &["topic", "partition"],
                )
                .expect("valid metric"),
            ),
            db_pool: register(
                r,
                IntGaugeVec::new(Opts::new("kizuna_db_pool_connections", "Database pool connections by state."), &["state"])
                    .expect("valid metric"),
            ),
            db_pool_max: register(
                r,
                IntGauge::new("kizuna_db_pool_max_connections", "Database pool size limit.").expect("valid metric"),
            ),
            ledger_pruned: register(
                r,
                IntCounter::new("kizuna_ledger_pruned_events_total", "Events pruned from the event ledger (past the retention).")
                    .expect("valid metric"),
            ),
            swept: register(
                r,
                IntCounter::new(
                    "kizuna_swept_customers_total",
                    "Customers re-evaluated by the sweeper.",
                )
                .expect("valid metric"),
            ),
            outbox_published: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_outbox_published_total",
                        "Outbox messages published to Kafka, by topic.",
                    ),
                    &["topic"],
                )
                .expect("valid metric"),
            ),
            outbox_publish_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kizuna_outbox_publish_latency_seconds",
                        "From an outbox row's creation to its delivery acknowledgement.",
                    )
                    .buckets(latency_buckets),
                )
                .expect("valid metric"),
            ),
            outbox_backlog: register(
                r,
                IntGauge::new(
                    "kizuna_outbox_backlog_rows",
                    "Outbox messages waiting to be published (the name is kept from when each had a row of its own).",
                )
                .expect("valid metric"),
            ),
            outbox_oldest_seconds: register(
                r,
                prometheus::Gauge::new(
                    "kizuna_outbox_oldest_age_seconds",
                    "Age of the oldest unpublished outbox row.",
                )
                .expect("valid metric"),
            ),
            assigned_partitions: register(
                r,
                IntGauge::new(
                    "kizuna_assigned_partitions",
                    "Input partitions assigned to this instance.",
                )
                .expect("valid metric"),
            ),
            ready: register(
                r,
                IntGauge::new(
                    "kizuna_ready",
                    "1 when the instance is ready (database reachable, ingest healthy).",
                )
                .expect("valid metric"),
            ),
            http_requests: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "kizuna_http_request_duration_seconds",
                        "HTTP API requests, by route.",
                    ),
                    &["route", "status"],
                )
                .expect("valid metric"),
            ),
            build_info: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "kizuna_build_info",
                        "Build information; the value is always 1.",
                    ),
                    &["version"],
                )
                .expect("valid metric"),
            ),
            points_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_points_requests_total",
                        "Redemption and cancel requests applied through the API, by operation and outcome (accepted, already_done, or the refusal's reason).",
                    ),
                    &["operation", "outcome"],
                )
                .expect("valid metric"),
            ),
            points_outstanding: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "kizuna_points_outstanding",
                        "Points outstanding over all customers (whole population), by state: available, pending, debt.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            points_liability: register(
                r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "kizuna_points_liability_minor",
                        "Outstanding points as money (× points.cost_per_point_minor, minor units of the programme currency), by state: available, pending.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            points_expiring: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "kizuna_points_expiring",
                        "Points of open lots due to expire within the next 30, 90 or 365 days (whole population).",
                    ),
                    &["within_days"],
                )
                .expect("valid metric"),
            ),
            registry,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        if let Err(e) = m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::error!(error = %e, "process metrics registration failed");
        }
        m
    }

    pub fn consumed(&self, topic: &str, outcome: Outcome, n: u64) {
        if n > 0 {
            self.events
                .with_label_values(&[topic, outcome.as_str()])
                .inc_by(n);
        }
    }

    pub fn dead_lettered(&self, topic: &str, reason: RejectReason) {
        self.dead_letters
            .with_label_values(&[topic, reason.as_str()])
            .inc();
    }

    /// An applied event arrived off its customer's murmur2 partition.
    pub fn event_off_home(&self, topic: &str) {
        self.off_home.with_label_values(&[topic]).inc();
    }

    /// Customers re-applied because another writer created their row first.
    pub fn write_conflicts(&self, customers: usize) {
        self.stale_rows.inc_by(customers as u64);
    }

    pub fn batch_committed(&self, events: usize, seconds: f64) {
        self.batch_size.observe(events as f64);
        self.batch_seconds.observe(seconds);
    }

    pub fn batch_stage(&self, stage: &str, seconds: f64) {
        self.batch_stages
            .with_label_values(&[stage])
            .observe(seconds);
    }

    /// Total seconds spent per batch stage so far.
    pub fn stage_totals(&self) -> Vec<(&'static str, f64)> {
        BATCH_STAGES
            .into_iter()
            .map(|s| {
                (
                    s,
                    self.batch_stages.with_label_values(&[s]).get_sample_sum(),
                )
            })
            .collect()
    }

    pub fn batch_failed(&self) {
        self.batch_failures.inc();
    }

    /// A Schema Registry lookup ended: `found`, `not_found` or `unavailable`.
    pub fn registry_lookup(&self, outcome: &str) {
        self.registry_lookups.with_label_values(&[outcome]).inc();
    }

    pub fn receive_lag(&self, seconds: f64) {
        self.receive_lag_seconds.observe(seconds.max(0.0));
    }

    pub fn event_lag(&self, seconds: f64) {
        self.event_lag_seconds.observe(seconds.max(0.0));
    }

    /// An output event was committed to the outbox.
    pub fn output(&self, output: &Output) {
        self.outputs.with_label_values(&[output.kind.name()]).inc();
        match &output.kind {
            OutputKind::TierChanged { previous, new, .. } => {
                self.tier_transitions
                    .with_label_values(&[previous, new])
                    .inc();
            }
            OutputKind::SegmentChanged { previous, new, .. } => {
                let from = previous.map_or("none", |s| s.as_str());
                self.segment_changes
                    .with_label_values(&[from, new.as_str()])
                    .inc();
            }
            OutputKind::ChurnRiskChanged { new, play, .. } => {
                self.churn_changes
                    .with_label_values(&[new.as_str(), play.as_str()])
                    .inc();
            }
            OutputKind::TierWillDowngrade { .. }
            | OutputKind::PointsChanged { .. }
            | OutputKind::PointsWillExpire { .. } => {}
        }
    }

    pub fn published(&self, topic: &str, age_seconds: f64) {
        self.outbox_published.with_label_values(&[topic]).inc();
        self.outbox_publish_seconds.observe(age_seconds.max(0.0));
    }

    /// The churn model in use.
    pub fn model(&self, version: i64, fitted_at: chrono::DateTime<chrono::Utc>) {
        self.model_version.set(version);
        self.model_fitted_at.set(fitted_at.timestamp() as f64);
    }

    /// A redemption or cancel request applied through the API.
    pub fn points_request(&self, operation: &str, outcome: &str) {
        self.points_requests
            .with_label_values(&[operation, outcome])
            .inc();
    }

    /// The points liability (whole population): points by state, their value at
    /// `cost_per_point_minor`, and expiries by window (days, points).
    pub fn points_liability(
        &self,
        available: i64,
        pending: i64,
        debt: i64,
        cost_per_point_minor: f64,
        expiring: &[(i64, i64)],
    ) {
        for (state, n) in [
            ("available", available),
            ("pending", pending),
            ("debt", debt),
        ] {
            self.points_outstanding.with_label_values(&[state]).set(n);
        }
        for (state, n) in [("available", available), ("pending", pending)] {
            self.points_liability
                .with_label_values(&[state])
                .set(n as f64 * cost_per_point_minor);
        }
        for (days, n) in expiring {
            self.points_expiring
                .with_label_values(&[&days.to_string()])
                .set(*n);
        }
    }

    /// Customers by tier (the previous values are replaced).
    pub fn customers_by_tier(&self, counts: &[(String, i64)]) {
        Self::population(&self.customers_by_tier, counts);
    }

    /// Customers by segment of the customer grid (the previous values are replaced).
    pub fn customers_by_segment(&self, counts: &[(String, i64)]) {
        Self::population(&self.customers_by_segment, counts);
    }

    /// Customers by churn level (the previous values are replaced).
    pub fn customers_by_churn_level(&self, counts: &[(String, i64)]) {
        Self::population(&self.customers_by_churn, counts);
    }

    fn population(gauge: &IntGaugeVec, counts: &[(String, i64)]) {
        gauge.reset();
        for (value, n) in counts {
            gauge.with_label_values(&[value]).set(*n);
        }
    }

    /// Messages behind the end of each owned partition (replaces the previous set).
    pub fn consumer_lag(&self, lags: &[((String, i32), i64)]) {
        self.consumer_lag.reset();
        for ((topic, partition), lag) in lags {
            self.consumer_lag
                .with_label_values(&[topic, &partition.to_string()])
                .set(*lag);
        }
    }

    pub fn db_pool(&self, size: u32, idle: usize, max: u32) {
        let idle = i64::try_from(idle).unwrap_or(0);
        self.db_pool.with_label_values(&["idle"]).set(idle);
        self.db_pool
            .with_label_values(&["in_use"])
            .set(i64::from(size) - idle);
        self.db_pool_max.set(i64::from(max));
    }

    pub fn ledger_pruned(&self, events: u64) {
        self.ledger_pruned.inc_by(events);
    }

    pub fn swept(&self, customers: usize) {
        self.swept.inc_by(customers as u64);
    }

    pub fn outbox_backlog(&self, rows: i64, oldest_seconds: f64) {
        self.outbox_backlog.set(rows);
        self.outbox_oldest_seconds.set(oldest_seconds);
    }

    pub fn assigned_partitions(&self, n: usize) {
        self.assigned_partitions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn readiness(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn http_request(&self, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
