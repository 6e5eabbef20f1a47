//! Request rate limits, one per source, so a flood from one platform does not starve the others.
//! GCRA from `governor`; over the limit, the caller is told when to come back.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::api::Source;
use crate::config::RateLimitSettings;

type Direct = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

#[derive(Debug, Clone)]
pub struct RateLimits {
    clock: DefaultClock,
    /// Indexed like `Source::ALL`; None when unlimited.
    limiters: Arc<[Option<Direct>; 4]>,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let clock = DefaultClock::default();
        let quota = NonZeroU32::new(settings.per_second).map(|rate| {
            Quota::per_second(rate).allow_burst(NonZeroU32::new(settings.burst).unwrap_or(rate))
        });
        let make = || quota.map(|q| RateLimiter::direct_with_clock(q, clock.clone()));
        Self {
            limiters: Arc::new([make(), make(), make(), make()]),
            clock,
        }
    }

    /// Ok, or how long to wait before the next request of `source` would be allowed.
    pub fn check(&self, source: Source) -> Result<(), Duration> {
        let index = Source::ALL.iter().position(|s| *s == source).unwrap_or(0);
        match self.limiters.get(index).and_then(Option::as_ref) {
            None => Ok(()),
            Some(limiter) => limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_source() {
        let limits = RateLimits::new(&RateLimitSettings {
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(limits.check(Source::Shopify).is_ok());
        }
        let wait = limits.check(Source::Shopify).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limits.check(Source::Zendesk).is_ok(),
            "sources are limited apart"
        );
        let unlimited = RateLimits::new(&RateLimitSettings {
            per_second: 0,
            burst: 0,
        });
        for _ in 0..10_000 {
            assert!(unlimited.check(Source::Kizuna).is_ok());
        }
    }
}
