//! One place per fact: the gateway's Prometheus metrics, behind methods named after what
//! happened. Labels are fixed sets (source, outcome, topic, reason), never an id.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::api::{Outcome, Source};
use crate::signature::SignatureError;

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    events: IntCounterVec,
    signature_rejections: IntCounterVec,
    ack_seconds: Histogram,
    ready: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    metric
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[allow(clippy::expect_used)] // constant, valid metric definitions
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "kizuna_gateway_requests_total",
                    "Webhook and event requests by source and outcome (accepted: every event acknowledged by the broker)",
                ),
                &["source", "outcome"],
            )
            .expect("valid metric"),
        );
        let request_seconds = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "kizuna_gateway_request_duration_seconds",
                    "Time from a request's arrival to its answer (for accepted requests, including the broker's acknowledgement)",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["source"],
            )
            .expect("valid metric"),
        );
        let events = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "kizuna_gateway_events_total",
                    "kizuna.v1 events produced and acknowledged, by source and topic",
                ),
                &["source", "topic"],
            )
            .expect("valid metric"),
        );
        let signature_rejections = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "kizuna_gateway_signature_rejections_total",
                    "Requests refused with 401, by source and reason (missing, malformed, mismatch, stale)",
                ),
                &["source", "reason"],
            )
            .expect("valid metric"),
        );
        let ack_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "kizuna_gateway_broker_ack_seconds",
                    "Time from handing a request's events to the producer to the broker's acknowledgement of all of them",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        );
        let ready = register(
            &registry,
            IntGauge::new(
                "kizuna_gateway_ready",
                "1 when the last readiness check reached the broker and found the input topics",
            )
            .expect("valid metric"),
        );
        // Every combination exists from the start, so rates and alerts see zeros, not gaps.
        for source in Source::ALL {
            for outcome in Outcome::ALL {
                requests.with_label_values(&[source.as_str(), outcome.as_str()]);
            }
            for reason in SignatureError::REASONS {
                signature_rejections.with_label_values(&[source.as_str(), reason]);
            }
            request_seconds.with_label_values(&[source.as_str()]);
        }
        Self {
            registry,
            requests,
            request_seconds,
            events,
            signature_rejections,
            ack_seconds,
            ready,
        }
    }

    pub fn request(&self, source: Source, outcome: Outcome, seconds: f64) {
        self.requests
            .with_label_values(&[source.as_str(), outcome.as_str()])
            .inc();
        self.request_seconds
            .with_label_values(&[source.as_str()])
            .observe(seconds);
    }

    pub fn signature_rejected(&self, source: Source, error: &SignatureError) {
        self.signature_rejections
            .with_label_values(&[source.as_str(), error.reason()])
            .inc();
    }

    pub fn produced(&self, source: Source, topic: &str, n: u64) {
        self.events
            .with_label_values(&[source.as_str(), topic])
            .inc_by(n);
    }

    pub fn acknowledged(&self, seconds: f64) {
        self.ack_seconds.observe(seconds);
    }

    pub fn readiness(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_and_outcome_is_exported_from_the_start() {
        let m = Metrics::new();
        m.request(Source::Shopify, Outcome::Accepted, 0.01);
        m.signature_rejected(Source::Zendesk, &SignatureError::Mismatch);
        let text = m.render();
        assert!(
            text.contains(
                r#"kizuna_gateway_requests_total{outcome="accepted",source="shopify"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kizuna_gateway_requests_total{outcome="unauthorized",source="typeform"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kizuna_gateway_signature_rejections_total{reason="mismatch",source="zendesk"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("kizuna_gateway_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
