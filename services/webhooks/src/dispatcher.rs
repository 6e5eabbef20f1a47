//! The dispatcher: claims due stream heads (the oldest waiting event of each
//! (subscription, customer)), posts each as a signed Standard Webhook, and records what
//! happened: delivered (the next event of the stream is promoted), retried later with
//! exponential backoff and jitter, or dead-lettered at the end of the retry period. A
//! subscription whose every attempt fails for too long, or whose receiver answers 410 Gone, is
//! disabled and announced.
//!
//! Requests run concurrently, at most `delivery.max_in_flight` at once and
//! `delivery.max_in_flight_per_subscription` per subscription, so a hanging receiver holds only
//! its own share of the slots and a failing customer only their own stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::announce::{Announcer, Disabled, DisabledReason};
use crate::config::DeliverySettings;
use crate::metrics::{FailureClass, Metrics};
use crate::signing::signature_header;
use crate::store::subscriptions::{self, Subscription};
use crate::store::{attempts, queue};
use crate::subscription::{is_public, parse_url};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx: the event left the queue and the customer's next event is due.
    Delivered,
    /// Failed; tried again at this time.
    WillRetry { at: DateTime<Utc> },
    /// Failed at the end of the retry period: moved to the subscription's dead letters.
    DeadLettered,
    /// The subscription was paused, disabled or deleted meanwhile: nothing was sent.
    NotSent,
}

/// What one dispatcher step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Claimed and started this many deliveries.
    Dispatched(usize),
    /// Nothing due (or every due subscription is at its share of the slots).
    Idle,
    /// Every request slot is taken.
    Saturated,
}

/// The answer to one request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Success(u16),
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Timeout,
    Connect(String),
}

#[derive(Debug)]
pub struct Dispatcher {
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub settings: DeliverySettings,
    pub metrics: Metrics,
    pub announcer: Announcer,
    /// Woken when deliveries are queued or a subscription is resumed.
    pub wake: Arc<Notify>,
    slots: Arc<Semaphore>,
}

/// The HTTP client: the request time limit, no redirects (a 3xx is a failure: the subscriber
/// should update the URL), and unless private networks are allowed, a resolver that refuses
/// host names resolving to internal addresses.
pub fn http_client(settings: &DeliverySettings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.request_timeout())
        .connect_timeout(settings.request_timeout().min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kizuna-webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.allow_private_networks {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    Ok(builder.build()?)
}

/// Resolves host names to their public addresses only (SSRF protection).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the host resolves to no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Delay before attempt `failures + 1`: exponential (initial × 2^(failures−1), capped),
/// with "equal jitter" (half fixed, half random) so retries of many events spread out.
pub fn backoff(settings: &DeliverySettings, failures: i32) -> Duration {
    let exp = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let cap = settings
        .backoff_initial_ms
        .saturating_mul(1u64 << exp)
        .min(settings.backoff_max_ms);
    let half = cap / 2;
    Duration::from_millis(half + rand::rng().random_range(0..=cap - half))
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

impl Dispatcher {
    pub fn new(
        pool: PgPool,
        client: reqwest::Client,
        settings: DeliverySettings,
        metrics: Metrics,
        announcer: Announcer,
        wake: Arc<Notify>,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_in_flight));
        Self {
            pool,
            client,
            settings,
            metrics,
            announcer,
            wake,
            slots,
        }
    }

    /// Runs until `stop`; then waits for the requests in flight (each bounded by the request
    /// time limit).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tasks = JoinSet::new();
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut backoff_on_error = Duration::from_millis(100);
        loop {
            while tasks.try_join_next().is_some() {}
            let step = match self.step(&mut tasks).await {
                Ok(step) => {
                    backoff_on_error = Duration::from_millis(100);
                    step
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "claiming deliveries failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff_on_error) => {}
                    }
                    backoff_on_error = (backoff_on_error * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if matches!(step, Step::Dispatched(_)) && self.slots.available_permits() > 0 {
                // There may be more due: claim again at once.
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!(
            in_flight = tasks.len(),
            "dispatcher stopping; waiting for requests in flight"
        );
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// Claims what is due, up to the free slots, and starts a task per delivery.
    pub async fn step(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> anyhow::Result<Step> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(Step::Saturated);
        }
        let claimed = queue::claim(
            &self.pool,
            i64::try_from(free).unwrap_or(i64::MAX),
            i64::try_from(self.settings.max_in_flight_per_subscription).unwrap_or(i64::MAX),
            self.settings.lease(),
        )
        .await?;
        if claimed.is_empty() {
            return Ok(Step::Idle);
        }
        let mut ids: Vec<uuid::Uuid> = claimed.iter().map(|c| c.subscription_id).collect();
        ids.sort();
        ids.dedup();
        let subs: HashMap<uuid::Uuid, Arc<Subscription>> = subscriptions::active(&self.pool, &ids)
            .await?
            .into_iter()
            .map(|s| (s.id, Arc::new(s)))
            .collect();
        let n = claimed.len();
        for delivery in claimed {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                // Cannot happen (claimed at most the free slots); the lease expires and the
                // delivery is claimed again.
                break;
            };
            let sub = subs.get(&delivery.subscription_id).cloned();
            let this = self.clone();
            self.metrics
                .set_in_flight(self.settings.max_in_flight - self.slots.available_permits());
            tasks.spawn(async move {
                let id = delivery.id;
                if let Err(e) = this.attempt(delivery, sub).await {
                    // The lease expires and the event is tried again.
                    tracing::warn!(
                        delivery = id,
                        error = format!("{e:#}"),
                        "recording a delivery attempt failed"
                    );
                }
                drop(permit);
                this.metrics
                    .set_in_flight(this.settings.max_in_flight - this.slots.available_permits());
                this.wake.notify_one();
            });
        }
        Ok(Step::Dispatched(n))
    }

    /// Sends one claimed delivery and records the outcome.
    pub async fn attempt(
        &self,
        delivery: queue::Claimed,
        sub: Option<Arc<Subscription>>,
    ) -> anyhow::Result<AttemptOutcome> {
        let Some(sub) = sub else {
            queue::release(&self.pool, delivery.id).await?;
            return Ok(AttemptOutcome::NotSent);
        };
        let started = Instant::now();
        let answer = self.send(&sub, &delivery).await;
        let seconds = started.elapsed().as_secs_f64();
        let now = Utc::now();
        let (status, error) = match &answer {
            Answer::Success(s) => (Some(*s), None),
            Answer::Status { status, .. } => (Some(*status), Some(format!("HTTP {status}"))),
            Answer::Timeout => (
                None,
                Some(format!(
                    "no answer within {} ms",
                    self.settings.request_timeout_ms
                )),
            ),
            Answer::Connect(e) => (None, Some(e.clone())),
        };
        let mut tx = self.pool.begin().await?;
        attempts::record(
            &mut tx,
            &attempts::NewAttempt {
                subscription_id: sub.id,
                customer_id: &delivery.customer_id,
                ce_id: delivery.ce_id,
                ce_type: &delivery.ce_type,
                attempt: delivery.attempt,
                status_code: status,
                error: error.as_deref(),
                latency_ms: seconds * 1000.0,
            },
        )
        .await?;
        if let Answer::Success(_) = answer {
            queue::finish(&mut tx, delivery.id).await?;
            subscriptions::record_success(&mut tx, sub.id).await?;
            tx.commit().await?;
            self.metrics.attempt_succeeded(seconds);
            tracing::debug!(subscription = %sub.id, webhook_id = %delivery.ce_id, attempt = delivery.attempt, "delivered");
            return Ok(AttemptOutcome::Delivered);
        }
        let error = error.unwrap_or_default();
        let class = match &answer {
            Answer::Status { status, .. } => FailureClass::of_status(*status),
            Answer::Timeout => FailureClass::Timeout,
            _ => FailureClass::Connect,
        };
        let run = subscriptions::record_failure(&mut tx, sub.id, now).await?;
        let gone = status == Some(410);
        let failing_too_long = run.is_some_and(|r| {
            now - r.since >= self.settings.disable_after()
                && u32::try_from(r.failures).unwrap_or(0) >= self.settings.disable_min_failures
        });
        let mut disabled = None;
        if let Some(run) = run
            && (gone || failing_too_long)
        {
            let reason = if gone {
                DisabledReason::Gone
            } else {
                DisabledReason::Failing
            };
            let detail = if gone {
                "the receiver answered 410 Gone".to_owned()
            } else {
                format!(
                    "every attempt failed since {} ({} attempts, last: {error})",
                    run.since.to_rfc3339(),
                    run.failures
                )
            };
            if subscriptions::disable(&mut tx, sub.id, &detail).await? {
                disabled = Some(Disabled {
                    subscription_id: sub.id,
                    url: sub.url.clone(),
                    reason,
                    detail,
                    failing_since: run.since,
                    consecutive_failures: u32::try_from(run.failures).unwrap_or(0),
                    last_status: status,
                    disabled_at: now,
                });
            }
        }
        let retry_period_end = delivery.first_attempt_at + self.settings.retry_period();
        let outcome = if now >= retry_period_end {
            queue::dead_letter(&mut tx, delivery.id, status, &error).await?;
            AttemptOutcome::DeadLettered
        } else {
            let mut delay = backoff(&self.settings, delivery.attempt);
            if let Answer::Status {
                retry_after: Some(wait),
                ..
            } = &answer
            {
                delay = delay
                    .max(*wait)
                    .min(Duration::from_millis(self.settings.backoff_max_ms));
            }
            let at = (now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
                .min(retry_period_end);
            queue::retry_later(&mut tx, delivery.id, at, status, &error).await?;
            AttemptOutcome::WillRetry { at }
        };
        tx.commit().await?;
        self.metrics.attempt_failed(class, seconds);
        match &outcome {
            AttemptOutcome::DeadLettered => {
                self.metrics.dead_lettered();
                tracing::warn!(subscription = %sub.id, webhook_id = %delivery.ce_id, attempts = delivery.attempt, error = %error, "delivery dead-lettered at the end of the retry period");
            }
            AttemptOutcome::WillRetry { at } => {
                tracing::info!(subscription = %sub.id, webhook_id = %delivery.ce_id, attempt = delivery.attempt, error = %error, retry_at = %at.to_rfc3339(), "delivery failed; retrying");
            }
            _ => {}
        }
        if let Some(d) = disabled {
            self.metrics.subscription_disabled(d.reason.as_str());
            // No customer data here: the subscription, its endpoint (no path or query), why.
            tracing::warn!(subscription = %d.subscription_id, endpoint = %crate::subscription::endpoint(&d.url), reason = d.reason.as_str(), detail = %d.detail, "webhook subscription disabled");
            if let Err(e) = self.announcer.disabled(&d).await {
                self.metrics.announce_failed();
                tracing::warn!(subscription = %d.subscription_id, error = format!("{e:#}"), "announcing the disabled subscription failed");
            }
        }
        Ok(outcome)
    }

    /// Posts the CloudEvent with the Standard Webhooks headers.
    async fn send(&self, sub: &Subscription, delivery: &queue::Claimed) -> Answer {
        let url = match parse_url(&sub.url, self.settings.allow_private_networks) {
            Ok(url) => url,
            Err(e) => return Answer::Connect(format!("refused: {}", e.message)),
        };
        let now = Utc::now();
        let timestamp = now.timestamp();
        let id = delivery.ce_id.to_string();
        let signature = signature_header(&sub.signing_secrets(now), &id, timestamp, &delivery.body);
        let sent = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if resp.status().is_success() {
                    Answer::Success(status)
                } else {
                    Answer::Status {
                        status,
                        retry_after: retry_after(resp.headers(), now),
                    }
                }
            }
            Err(e) if e.is_timeout() => Answer::Timeout,
            Err(e) => {
                // Without the URL: its path or query may hold a credential.
                let e = e.without_url();
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text = format!("{text}: {s}");
                    source = s.source();
                }
                Answer::Connect(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DeliverySettings {
        crate::config::Settings::load(None)
            .expect("defaults")
            .delivery
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let s = settings();
        for _ in 0..100 {
            let first = backoff(&s, 1).as_millis() as u64;
            assert!((2_500..=5_000).contains(&first), "{first}");
            let third = backoff(&s, 3).as_millis() as u64;
            assert!((10_000..=20_000).contains(&third), "{third}");
            let late = backoff(&s, 40).as_millis() as u64;
            assert!((1_800_000..=3_600_000).contains(&late), "{late}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "120".parse().expect("header"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        let later = (now + chrono::Duration::seconds(60))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        h.insert(RETRY_AFTER, later.parse().expect("header"));
        let got = retry_after(&h, now).expect("a date").as_secs();
        assert!((58..=60).contains(&got), "{got}");
    }
}
