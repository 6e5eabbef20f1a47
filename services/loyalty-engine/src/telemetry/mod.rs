//! Tracing set up in one place: logs (the sink is a parameter, so tests can silence them) and,
//! when `telemetry.otlp_endpoint` is set, OpenTelemetry traces exported over OTLP/HTTP
//! ([`otlp`]). The engine's spans ([`spans`]) use the target [`TRACE_TARGET`]: they go to the
//! exporter only, never into the log lines, and none is made while traces are off.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetrySettings};

pub mod otlp;
pub mod spans;
pub mod traceparent;

pub use traceparent::TraceParent;

/// The target of the engine's trace spans (kept out of the logs).
pub const TRACE_TARGET: &str = "kizuna_trace";

/// Set once an exporter is installed: spans are made only then.
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (a relaxed load: the hot path asks it per batch and per traced
/// message).
pub fn traces_on() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// Installs the global subscriber, logs only. `RUST_LOG` overrides `level`. Calling it twice is
/// harmless.
pub fn init<W>(format: LogFormat, level: &str, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // Without an endpoint no exporter is built, so nothing can fail.
    drop(init_with_traces(
        format,
        level,
        sink,
        &TelemetrySettings::default(),
    ));
}

/// Installs the global subscriber: logs, and traces when `telemetry.otlp_endpoint` is set (must
/// be called inside the Tokio runtime then: the exporter sends on it). Keep the returned
/// [`Traces`] and call [`Traces::shutdown`] before the runtime ends, so the last spans are sent.
pub fn init_with_traces<W>(
    format: LogFormat,
    level: &str,
    sink: W,
    telemetry: &TelemetrySettings,
) -> anyhow::Result<Traces>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The trace spans never reach the log lines, whatever RUST_LOG says.
    let filter = match format!("{TRACE_TARGET}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(sink);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    let provider = match telemetry.otlp_endpoint.as_deref() {
        Some(endpoint) => Some(otlp::provider(endpoint, telemetry)?),
        None => None,
    };
    // Only the engine's trace spans are exported: no log event (which could hold what a log
    // line may, never what a trace may not) becomes a span event.
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("kizuna"))
            .with_filter(Targets::new().with_target(TRACE_TARGET, LevelFilter::TRACE))
    });
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    // Already installed (tests start several applications in one process): traces only from
    // the first.
    if installed && provider.is_some() {
        TRACES_ON.store(true, Ordering::Relaxed);
        tracing::info!(
            endpoint = telemetry.otlp_endpoint.as_deref().unwrap_or_default(),
            service = %telemetry.service_name,
            sampling_ratio = telemetry.sampling_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(Traces {
        provider: provider.filter(|_| installed),
    })
}

/// The trace exporter, if one runs: shut it down to send the last spans.
#[derive(Debug, Default)]
#[must_use = "shut it down before the runtime ends, or the last spans are lost"]
pub struct Traces {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Traces {
    /// Sends the spans still buffered and stops the exporter (waits at most a few seconds).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        TRACES_ON.store(false, Ordering::Relaxed);
        // The SDK blocks while it flushes, and its exporter sends on this runtime.
        let done = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the trace exporter did not shut down cleanly")
            }
            Err(e) => tracing::warn!(error = %e, "the trace exporter's shutdown panicked"),
        }
    }
}
