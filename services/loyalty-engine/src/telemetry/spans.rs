//! The engine's trace spans. Every function returns `Span::none()` (no cost) while traces are
//! off. The chain: `kizuna.receive` (one per input message that carries a `traceparent`, a
//! child of the producer's span) → `kizuna.batch` (its transaction, child of its first traced
//! message's receive span, linked to the others) → `kizuna.commit`; then `kizuna.relay` (a
//! round of the outbox relay, the same way over the stored `traceparent`s) → `kizuna.publish`
//! (one per traced output, whose `traceparent` header it replaces with its own). An HTTP
//! request is `kizuna.http`, a child of the request's `traceparent` if it has one.

use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{TRACE_TARGET, TraceParent, traces_on};

/// Links a span keeps at most (the first traced messages of a big batch).
pub const MAX_LINKS: usize = 32;

/// `span`, a child of `tp`'s (remote) span.
fn child_of(span: Span, tp: TraceParent) -> Span {
    let parent = Context::new().with_remote_span_context(tp.span_context());
    // Fails only for a span the filters disabled; it then records nothing anyway.
    span.set_parent(parent).ok();
    span
}

/// The `traceparent` of `span` itself (its trace, its id), once it is started.
fn own(span: &Span) -> Option<TraceParent> {
    TraceParent::of(span.context().span().span_context())
}

/// A Kafka messaging span named `name` (`otel.name`), a child of `tp`'s span.
fn messaging(name: &str, kind: &str, operation: &str, topic: &str, tp: TraceParent) -> Span {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "kizuna.messaging",
        otel.name = name,
        otel.kind = kind,
        messaging.system = "kafka",
        messaging.operation.type = operation,
        messaging.destination.name = topic,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.offset = tracing::field::Empty,
    );
    child_of(span, tp)
}

/// A consumed message with a `traceparent`: records `kizuna.receive` (a consumer span, child of
/// the producer's) and returns its context, which the message carries on; the producer's as it
/// came while traces are off.
pub fn received(tp: TraceParent, topic: &str, partition: i32, offset: i64) -> TraceParent {
    if !traces_on() {
        return tp;
    }
    let span = messaging("kizuna.receive", "consumer", "receive", topic, tp);
    span.record("messaging.destination.partition.id", partition);
    span.record("messaging.kafka.offset", offset);
    own(&span).unwrap_or(tp)
}

/// `span` continues the first of `traced` (a child of it) and links to the others (up to
/// [`MAX_LINKS`]).
fn continuing(span: Span, traced: impl Iterator<Item = TraceParent>) -> Span {
    let mut traced = traced;
    let Some(first) = traced.next() else {
        return span;
    };
    let span = child_of(span, first);
    for tp in traced.take(MAX_LINKS - 1) {
        span.add_link(tp.span_context());
    }
    span
}

/// One batch of input, applied in one transaction.
pub fn batch(messages: usize, traced: impl Iterator<Item = TraceParent>) -> Span {
    if !traces_on() {
        return Span::none();
    }
    continuing(
        tracing::info_span!(target: TRACE_TARGET, "kizuna.batch", messages),
        traced,
    )
}

/// The commit of a batch's transaction (inside `kizuna.batch`).
pub fn commit() -> Span {
    if !traces_on() {
        return Span::none();
    }
    tracing::info_span!(target: TRACE_TARGET, "kizuna.commit", db.system.name = "postgresql")
}

/// A round of the outbox relay that found messages to publish.
pub fn relay(messages: usize, traced: impl Iterator<Item = TraceParent>) -> Span {
    if !traces_on() {
        return Span::none();
    }
    continuing(
        tracing::info_span!(target: TRACE_TARGET, "kizuna.relay", messages),
        traced,
    )
}

/// Publishing one output whose cause carried `tp` (a producer span, child of `tp`): the span
/// and the `traceparent` the output goes out with (the span's own, or `tp` while traces are
/// off).
pub fn publish(tp: TraceParent, topic: &str) -> (Span, TraceParent) {
    if !traces_on() {
        return (Span::none(), tp);
    }
    let span = messaging("kizuna.publish", "producer", "send", topic, tp);
    let own = own(&span).unwrap_or(tp);
    (span, own)
}

/// Routes never traced: probes and scrapes, many a minute, of no interest in a trace.
const UNTRACED_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// An HTTP request, named by its route template (never the raw path), a child of the
/// request's `traceparent` if it has a valid one. Probes and `/metrics` are not traced.
pub fn http(method: &str, route: &str, traceparent: Option<&[u8]>) -> Span {
    if !traces_on() || UNTRACED_ROUTES.contains(&route) {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "kizuna.http",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    match traceparent.and_then(TraceParent::parse) {
        Some(tp) => child_of(span, tp),
        None => span,
    }
}
