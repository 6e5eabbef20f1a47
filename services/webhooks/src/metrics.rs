//! One place per fact: the Prometheus metrics of webhook delivery, behind methods named after
//! what happened. Labels have low cardinality only: never a customer id, never a subscription
//! id or URL (the admin API's delivery log answers per-subscription questions).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    consumed: IntCounterVec,
    enqueued: IntCounter,
    attempts: IntCounterVec,
    failures: IntCounterVec,
    latency: Histogram,
    dead_letters: IntCounter,
    disabled: IntCounterVec,
    replayed: IntCounter,
    queue_depth: IntGauge,
    queue_oldest: prometheus::Gauge,
    in_flight: IntGauge,
    subscriptions: IntGaugeVec,
    announce_failures: IntCounter,
}

/// How an attempt failed, as `kizuna_webhook_failures_total{class}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// A 3xx (redirects are not followed).
    Redirect,
    /// A 4xx.
    Client,
    /// A 5xx.
    Server,
    /// No answer within `delivery.request_timeout_ms`.
    Timeout,
    /// No connection (refused, reset, DNS, a private address refused).
    Connect,
}

impl FailureClass {
    pub fn of_status(status: u16) -> Self {
        match status {
            300..=399 => FailureClass::Redirect,
            500..=599 => FailureClass::Server,
            _ => FailureClass::Client,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Redirect => "3xx",
            FailureClass::Client => "4xx",
            FailureClass::Server => "5xx",
            FailureClass::Timeout => "timeout",
            FailureClass::Connect => "connect",
        }
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Registration only fails for duplicate names, a programming error the tests catch.
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        Self {
            consumed: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_webhook_events_consumed_total",
                        "Output-topic messages read, by outcome: queued (for at least one subscription), unmatched, or malformed reasons.",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            enqueued: register(
                r,
                IntCounter::new(
                    "kizuna_webhook_deliveries_queued_total",
                    "Deliveries queued (one per event and subscription), replays included.",
                )
                .expect("valid metric"),
            ),
            attempts: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_webhook_attempts_total",
                        "Delivery attempts, by outcome (success, failure).",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            ),
            failures: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_webhook_failures_total",
                        "Failed delivery attempts, by class: 3xx, 4xx, 5xx, timeout, connect.",
                    ),
                    &["class"],
                )
                .expect("valid metric"),
            ),
            latency: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "kizuna_webhook_attempt_duration_seconds",
                        "Time from sending a delivery to its answer (or the time-out).",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            dead_letters: register(
                r,
                IntCounter::new(
                    "kizuna_webhook_dead_letters_total",
                    "Events moved to a subscription's dead letters at the end of the retry period.",
                )
                .expect("valid metric"),
            ),
            disabled: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "kizuna_webhook_subscriptions_disabled_total",
                        "Subscriptions disabled, by reason (failing, gone).",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            replayed: register(
                r,
                IntCounter::new(
                    "kizuna_webhook_replayed_total",
                    "Deliveries queued again by an operator's replay.",
                )
                .expect("valid metric"),
            ),
            queue_depth: register(
                r,
                IntGauge::new(
                    "kizuna_webhook_queue_depth",
                    "Deliveries waiting, over all subscriptions.",
                )
                .expect("valid metric"),
            ),
            queue_oldest: register(
                r,
                prometheus::Gauge::new(
                    "kizuna_webhook_queue_oldest_seconds",
                    "Age of the oldest waiting delivery.",
                )
                .expect("valid metric"),
            ),
            in_flight: register(
                r,
                IntGauge::new(
                    "kizuna_webhook_requests_in_flight",
                    "Delivery requests waiting for an answer in this instance.",
                )
                .expect("valid metric"),
            ),
            subscriptions: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "kizuna_webhook_subscriptions",
                        "Subscriptions by status (active, paused, disabled).",
                    ),
                    &["status"],
                )
                .expect("valid metric"),
            ),
            announce_failures: register(
                r,
                IntCounter::new(
                    "kizuna_webhook_announce_failures_total",
                    "WebhookSubscriptionDisabled events that could not be produced to Kafka.",
                )
                .expect("valid metric"),
            ),
            registry,
        }
    }

    pub fn message_queued(&self, deliveries: u64) {
        self.consumed.with_label_values(&["queued"]).inc();
        self.enqueued.inc_by(deliveries);
    }

    pub fn message_unmatched(&self) {
        self.consumed.with_label_values(&["unmatched"]).inc();
    }

    pub fn message_malformed(&self, reason: &str) {
        self.consumed.with_label_values(&[reason]).inc();
    }

    pub fn attempt_succeeded(&self, seconds: f64) {
        self.attempts.with_label_values(&["success"]).inc();
        self.latency.observe(seconds);
    }

    pub fn attempt_failed(&self, class: FailureClass, seconds: f64) {
        self.attempts.with_label_values(&["failure"]).inc();
        self.failures.with_label_values(&[class.as_str()]).inc();
        self.latency.observe(seconds);
    }

    pub fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    pub fn subscription_disabled(&self, reason: &str) {
        self.disabled.with_label_values(&[reason]).inc();
    }

    pub fn announce_failed(&self) {
        self.announce_failures.inc();
    }

    pub fn replayed(&self, deliveries: u64) {
        self.replayed.inc_by(deliveries);
        self.enqueued.inc_by(deliveries);
    }

    pub fn queue(&self, depth: i64, oldest_seconds: f64) {
        self.queue_depth.set(depth);
        self.queue_oldest.set(oldest_seconds);
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn subscriptions(&self, by_status: &[(String, i64)]) {
        for status in ["active", "paused", "disabled"] {
            let n = by_status
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            self.subscriptions.with_label_values(&[status]).set(n);
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        m.attempt_failed(FailureClass::of_status(503), 0.2);
        m.attempt_succeeded(0.01);
        m.queue(3, 1.5);
        let text = m.render();
        assert!(
            text.contains("kizuna_webhook_failures_total{class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("kizuna_webhook_attempts_total{outcome=\"success\"} 1"));
        assert!(text.contains("kizuna_webhook_queue_depth 3"));
        assert!(text.contains("kizuna_webhook_attempt_duration_seconds_count 2"));
    }
}
