//! The OTLP/HTTP (protobuf) trace exporter: the OpenTelemetry SDK's batch processor, sending with
//! the reqwest client the engine already has (rustls), on the engine's Tokio runtime.

use std::time::Duration;

use anyhow::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::config::TelemetrySettings;

/// Path of the traces under an OTLP/HTTP endpoint.
pub const TRACES_PATH: &str = "/v1/traces";

/// The URL traces are posted to: `endpoint` + `/v1/traces` (unless it already ends so).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// A tracer provider exporting to `endpoint` in batches, sampling root spans at
/// `telemetry.sampling_ratio` and following the parent's decision otherwise (a producer's
/// sampled `traceparent` is always continued).
pub fn provider(
    endpoint: &str,
    telemetry: &TelemetrySettings,
) -> anyhow::Result<SdkTracerProvider> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("traces are exported on the Tokio runtime: start them inside it")?;
    let timeout = Duration::from_millis(telemetry.export_timeout_ms);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the OTLP HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { client, runtime })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(timeout)
        .build()
        .with_context(|| format!("building the OTLP trace exporter for {endpoint}"))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        telemetry.sampling_ratio,
    )));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(telemetry.service_name.clone())
                .build(),
        )
        .build())
}

/// The SDK exports from a thread of its own, blocking on the export: each request is spawned
/// on the engine's runtime (where reqwest runs) and awaited from there.
#[derive(Debug, Clone)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut out = Response::builder().status(response.status());
            if let Some(headers) = out.headers_mut() {
                headers.extend(
                    response
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(out.body(body)?)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        for endpoint in [
            "http://127.0.0.1:4318",
            "http://127.0.0.1:4318/",
            "http://127.0.0.1:4318/v1/traces",
        ] {
            assert_eq!(traces_url(endpoint), "http://127.0.0.1:4318/v1/traces");
        }
    }
}
