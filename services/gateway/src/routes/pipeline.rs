//! The pipeline every request goes through: enabled → rate limit → body (size limit) →
//! signature on the raw body → map → event ids → the engine's validation → produce and wait for
//! every acknowledgement → 200.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kizuna::domain::rejection::RejectReason;
use kizuna::inputs::decode::WireEvent;
use kizuna::inputs::validate::validate;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::api::{Accepted, Problem, ProblemKind, Source};
use crate::idempotency::{self, IDEMPOTENCY_KEY_HEADER, MAX_KEY_LEN};
use crate::mapping::{self, Draft, MapError, Mapped};
use crate::produce::Outgoing;
use crate::signature::{self, SignatureError};

use super::AppState;
use super::fields::rejected_field;

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The scheme's challenge in a 401's `WWW-Authenticate`.
fn challenge(source: Source) -> &'static str {
    match source {
        Source::Shopify => "HMAC-SHA256 realm=\"kizuna-gateway\", header=\"X-Shopify-Hmac-Sha256\"",
        Source::Zendesk => {
            "HMAC-SHA256 realm=\"kizuna-gateway\", header=\"X-Zendesk-Webhook-Signature\""
        }
        Source::Typeform => "HMAC-SHA256 realm=\"kizuna-gateway\", header=\"Typeform-Signature\"",
        Source::Kizuna => "Bearer realm=\"kizuna-gateway\"",
    }
}

/// The header or payload field that holds the platform's delivery id.
fn delivery_id_field(source: Source) -> &'static str {
    match source {
        Source::Shopify => "X-Shopify-Webhook-Id",
        Source::Zendesk => "id",
        Source::Typeform => "event_id",
        Source::Kizuna => "eventId",
    }
}

impl AppState {
    fn secret(&self, source: Source) -> Option<&SecretString> {
        let s = &self.inner.settings.sources;
        match source {
            Source::Shopify => s.shopify.secret.as_ref(),
            Source::Zendesk => s.zendesk.secret.as_ref(),
            Source::Typeform => s.typeform.secret.as_ref(),
            Source::Kizuna => s.kizuna.token.as_ref(),
        }
    }

    pub(super) async fn handle(&self, source: Source, headers: HeaderMap, body: Body) -> Response {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.inner.settings.http.request_timeout_ms);
        let result =
            match tokio::time::timeout(timeout, self.pipeline(source, &headers, body)).await {
                Ok(r) => r,
                Err(_) => Err(Problem::new(
                    ProblemKind::BrokerUnavailable,
                    "the request could not be answered within http.request_timeout_ms",
                )
                .retry_after(1)),
            };
        let (outcome, events, response) = match result {
            Ok(accepted) => {
                let outcome = if accepted.accepted == 0 {
                    crate::api::Outcome::Ignored
                } else {
                    crate::api::Outcome::Accepted
                };
                (outcome, accepted.accepted, accepted.into_response())
            }
            Err(problem) => {
                // Field names and reasons only: details may quote the payload.
                tracing::debug!(
                    source = source.as_str(),
                    status = problem.status().as_u16(),
                    field = problem.field.as_deref().unwrap_or(""),
                    reason = problem.reason.unwrap_or(""),
                    "request refused"
                );
                (problem.outcome(), 0, problem.into_response())
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        self.inner.metrics.request(source, outcome, seconds);
        tracing::debug!(
            source = source.as_str(),
            outcome = outcome.as_str(),
            events,
            ms = seconds * 1000.0,
            "request answered"
        );
        response
    }

    async fn pipeline(
        &self,
        source: Source,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Accepted, Problem> {
        let secret = self.secret(source).ok_or_else(|| {
            Problem::new(
                ProblemKind::SourceNotEnabled,
                format!(
                    "the {} source has no secret configured, so its endpoint is off",
                    source.as_str()
                ),
            )
        })?;
        if let Err(wait) = self.inner.rate.check(source) {
            return Err(Problem::new(
                ProblemKind::RateLimited,
                format!(
                    "over the {} source's rate of {} requests per second",
                    source.as_str(),
                    self.inner.settings.rate_limit.per_second
                ),
            )
            .retry_after(wait.as_secs_f64().ceil() as u64));
        }
        let body = self.read_body(headers, body).await?;
        let now = Utc::now();
        self.verify(source, secret, headers, &body, now)?;
        let (mapped, platform_key) = self.map(source, headers, &body, now)?;
        let drafts = match mapped {
            Mapped::Ignored(why) => {
                return Ok(Accepted {
                    accepted: 0,
                    events: Vec::new(),
                    ignored: Some(why),
                });
            }
            Mapped::Events(drafts) => drafts,
        };
        let key = match header_str(headers, IDEMPOTENCY_KEY_HEADER).map(str::trim) {
            Some(k) if k.is_empty() || k.len() > MAX_KEY_LEN => {
                return Err(Problem::new(
                    ProblemKind::MalformedRequest,
                    format!("{IDEMPOTENCY_KEY_HEADER} must be 1 to {MAX_KEY_LEN} characters"),
                )
                .field(IDEMPOTENCY_KEY_HEADER));
            }
            Some(k) => Some(k.to_owned()),
            None => platform_key,
        };
        let outgoing = self.prepare(source, drafts, key.as_deref(), now)?;
        let ack_started = Instant::now();
        let produced = self
            .inner
            .producer
            .send_all(source, &outgoing)
            .await
            .map_err(|e| {
                tracing::warn!(source = source.as_str(), error = %e, "events not acknowledged");
                Problem::new(
                    ProblemKind::BrokerUnavailable,
                    format!(
                        "{} of {} events were acknowledged before the delivery timeout; nothing is promised, retry the same delivery (event ids are deterministic, so what did land counts once)",
                        e.acknowledged, e.total
                    ),
                )
                .retry_after(1)
            })?;
        self.inner
            .metrics
            .acknowledged(ack_started.elapsed().as_secs_f64());
        for p in &produced {
            self.inner.metrics.produced(source, &p.topic, 1);
        }
        Ok(Accepted {
            accepted: produced.len(),
            events: produced,
            ignored: None,
        })
    }

    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Problem> {
        let max = self.inner.settings.http.max_body_bytes;
        let too_large = || {
            Problem::new(
                ProblemKind::PayloadTooLarge,
                format!("the body is larger than {max} bytes"),
            )
        };
        let declared = header_str(headers, header::CONTENT_LENGTH.as_str())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        match Limited::new(body, max).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Err(_) => Err(Problem::new(
                ProblemKind::MalformedRequest,
                "the body could not be read",
            )),
        }
    }

    fn verify(
        &self,
        source: Source,
        secret: &SecretString,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Problem> {
        let key = secret.expose_secret().as_bytes();
        let result = match source {
            Source::Shopify => {
                signature::verify_shopify(key, body, header_str(headers, signature::SHOPIFY_HEADER))
            }
            Source::Zendesk => signature::verify_zendesk(
                key,
                body,
                header_str(headers, signature::ZENDESK_SIGNATURE_HEADER),
                header_str(headers, signature::ZENDESK_TIMESTAMP_HEADER),
                now,
                self.inner.settings.sources.zendesk.timestamp_tolerance_secs,
            ),
            Source::Typeform => signature::verify_typeform(
                key,
                body,
                header_str(headers, signature::TYPEFORM_HEADER),
            ),
            Source::Kizuna => {
                signature::verify_bearer(key, header_str(headers, header::AUTHORIZATION.as_str()))
            }
        };
        result.map_err(|e: SignatureError| {
            self.inner.metrics.signature_rejected(source, &e);
            tracing::info!(
                source = source.as_str(),
                reason = e.reason(),
                "signature refused"
            );
            let field = match &e {
                SignatureError::Missing(h) | SignatureError::Malformed(h) => (*h).to_owned(),
                SignatureError::Mismatch | SignatureError::Stale { .. } => match source {
                    Source::Shopify => signature::SHOPIFY_HEADER.to_owned(),
                    Source::Zendesk => signature::ZENDESK_SIGNATURE_HEADER.to_owned(),
                    Source::Typeform => signature::TYPEFORM_HEADER.to_owned(),
                    Source::Kizuna => "Authorization".to_owned(),
                },
            };
            Problem::unauthorized(challenge(source), e.to_string())
                .field(field)
                .reason(e.reason())
        })
    }

    /// The mapped events and the platform's delivery id, if it has one.
    fn map(
        &self,
        source: Source,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Mapped, Option<String>), Problem> {
        let m = &self.inner.mapping;
        let unmappable = |e: MapError| {
            Problem::new(ProblemKind::UnmappablePayload, e.detail)
                .field(e.field)
                .reason(e.reason)
        };
        if source == Source::Kizuna {
            let drafts = mapping::kizuna_json::map(body).map_err(|e| {
                Problem::new(ProblemKind::UnmappablePayload, e.error.detail)
                    .field(e.error.field)
                    .reason(e.error.reason)
                    .line(e.line)
            })?;
            return Ok((Mapped::Events(drafts), None));
        }
        let json: Value = serde_json::from_slice(body).map_err(|e| {
            Problem::new(
                ProblemKind::MalformedRequest,
                format!(
                    "the body is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
            .field("body")
        })?;
        match source {
            Source::Shopify => {
                let topic = header_str(headers, mapping::shopify::TOPIC_HEADER);
                let mapped = mapping::shopify::map(topic, &json, &m.shopify).map_err(unmappable)?;
                let key = header_str(headers, "X-Shopify-Webhook-Id")
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned);
                Ok((mapped, key))
            }
            Source::Zendesk => {
                let signed_at = header_str(headers, signature::ZENDESK_TIMESTAMP_HEADER)
                    .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .or(Some(now));
                let mapped =
                    mapping::zendesk::map(&json, &m.zendesk, signed_at).map_err(unmappable)?;
                let key = mapping::lookup(&json, "id")
                    .and_then(mapping::text)
                    .or_else(|| {
                        header_str(headers, "X-Zendesk-Webhook-Invocation-Id")
                            .map(str::trim)
                            .filter(|k| !k.is_empty())
                            .map(str::to_owned)
                    });
                Ok((mapped, key))
            }
            Source::Typeform => {
                let mapped = mapping::typeform::map(&json, &m.typeform).map_err(unmappable)?;
                let key = mapping::lookup(&json, "event_id").and_then(mapping::text);
                Ok((mapped, key))
            }
            // Handled above: its body is JSON lines, not one JSON document.
            Source::Kizuna => Ok((Mapped::Events(Vec::new()), None)),
        }
    }

    /// Assigns event ids, applies the engine's validation and encodes each event.
    fn prepare(
        &self,
        source: Source,
        drafts: Vec<Draft>,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outgoing>, Problem> {
        let mut out = Vec::with_capacity(drafts.len());
        let lines = source == Source::Kizuna && drafts.len() > 1;
        for (i, mut draft) in drafts.into_iter().enumerate() {
            if draft.event_id().is_empty() {
                let derived_from = draft.id_key.clone().or_else(|| key.map(str::to_owned));
                match derived_from {
                    Some(k) => {
                        draft.assign_event_id(idempotency::event_id(source, &k, &draft.part))
                    }
                    // The generic endpoint's events must carry their own id: validation names it.
                    None if source == Source::Kizuna => {}
                    None => {
                        return Err(Problem::new(
                            ProblemKind::MalformedRequest,
                            format!(
                                "no delivery id: {} or an {IDEMPOTENCY_KEY_HEADER} header is needed to make retries harmless",
                                delivery_id_field(source)
                            ),
                        )
                        .field(delivery_id_field(source)));
                    }
                }
            }
            let refusal = |field: String, reason: &'static str, detail: String| {
                let p = Problem::new(ProblemKind::UnmappablePayload, detail)
                    .field(field)
                    .reason(reason);
                if lines { p.line(i + 1) } else { p }
            };
            if let Err(r) = validate(&draft.event, None, &self.inner.limits, now) {
                return Err(refusal(
                    rejected_field(source, &draft, &r),
                    r.reason.as_str(),
                    format!("the engine would refuse this event: {}", r.detail),
                ));
            }
            let payload = encode(&draft.event).map_err(|e| {
                refusal(
                    "body".into(),
                    "unparseable",
                    format!("encoding failed: {e}"),
                )
            })?;
            if payload.len() > self.inner.max_message_bytes {
                return Err(refusal(
                    "body".into(),
                    RejectReason::Oversized.as_str(),
                    format!(
                        "the mapped event is {} bytes; the engine accepts at most {}",
                        payload.len(),
                        self.inner.max_message_bytes
                    ),
                ));
            }
            out.push(Outgoing {
                kind: draft.kind(),
                event_id: draft.event_id().to_owned(),
                key: draft.customer_id().to_owned(),
                payload,
            });
        }
        Ok(out)
    }
}

fn encode(event: &WireEvent) -> serde_json::Result<Vec<u8>> {
    match event {
        WireEvent::Purchase(p) => serde_json::to_vec(p),
        WireEvent::SupportTicket(t) => serde_json::to_vec(t),
        WireEvent::Survey(s) => serde_json::to_vec(s),
        WireEvent::Redemption(r) => serde_json::to_vec(r),
    }
}
