//! Tier status: immediate upgrades, a grace period before a downgrade, soft landing one tier
//! at a time, and manual overrides that expire.

use chrono::{DateTime, Duration, Utc};

use super::metrics::{Metrics, NpsCategory};
use super::programme::{Programme, TierRule};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingDowngrade {
    /// The tier the customer drops to at `at`.
    pub to: String,
    pub at: DateTime<Utc>,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TierOverride {
    pub tier: String,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
    pub set_at: DateTime<Utc>,
    pub set_by: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TierStatus {
    pub tier: String,
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub pending: Option<PendingDowngrade>,
    #[serde(default, rename = "override")]
    pub manual: Option<TierOverride>,
}

impl TierStatus {
    pub fn entry(programme: &Programme) -> Self {
        Self {
            tier: programme.entry_tier().to_owned(),
            since: None,
            pending: None,
            manual: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierChangeKind {
    Upgrade,
    Downgrade,
    Override,
    OverrideExpired,
}

/// What a tier evaluation decided.
#[derive(Debug, Clone, PartialEq)]
pub enum TierEvent {
    Changed {
        previous: String,
        new: String,
        kind: TierChangeKind,
        reason: String,
        at: DateTime<Utc>,
    },
    WillDowngrade {
        current: String,
        to: String,
        at: DateTime<Utc>,
        to_keep: Vec<String>,
        reason: String,
    },
}

/// The requirements of `tier` the metrics do not meet, phrased as what would meet them.
pub fn unmet(tier: &TierRule, m: &Metrics, programme: &Programme) -> Vec<String> {
    let currency = &programme.currency;
    let window = window_words(programme);
    let mut missing = Vec::new();
    if m.qualifying_spend_minor < tier.min_spend_minor {
        missing.push(format!(
            "spend {} {currency} more {window}",
            tier.min_spend_minor - m.qualifying_spend_minor
        ));
    }
    if m.qualifying_orders < f64::from(tier.min_orders) {
        missing.push(format!(
            "{} more orders {window}",
            (f64::from(tier.min_orders) - m.qualifying_orders).ceil()
        ));
    }
    if m.tenure_days < f64::from(tier.min_tenure_days) {
        missing.push(format!(
            "{:.0} more days of tenure",
            (f64::from(tier.min_tenure_days) - m.tenure_days).ceil()
        ));
    }
    if tier.not_detractor && m.nps_category == NpsCategory::Detractor {
        missing.push("a latest NPS answer of 7 or more (not a detractor)".to_owned());
    }
    if m.referrals < tier.min_referrals {
        missing.push(format!(
            "{} more referrals",
            tier.min_referrals - m.referrals
        ));
    }
    missing
}

fn window_words(programme: &Programme) -> String {
    use super::programme::WindowKind;
    match programme.qualification.window {
        WindowKind::Rolling => format!("within {} months", programme.qualification.months),
        WindowKind::CalendarYear => "this calendar year".to_owned(),
        WindowKind::CalendarQuarter => "this quarter".to_owned(),
    }
}

/// The highest tier whose every requirement the metrics meet.
pub fn qualifying_rank(m: &Metrics, programme: &Programme) -> usize {
    programme
        .tiers
        .iter()
        .rposition(|t| unmet(t, m, programme).is_empty())
        .unwrap_or(0)
}

/// Orders net of partial refunds, without spurious decimals.
pub fn orders_words(orders: f64) -> String {
    if (orders - orders.round()).abs() < 0.05 {
        format!("{:.0}", orders)
    } else {
        format!("{orders:.1}")
    }
}

fn describe(m: &Metrics, programme: &Programme) -> String {
    format!(
        "qualifying spend {} {} over {} orders {}",
        m.qualifying_spend_minor,
        programme.currency,
        orders_words(m.qualifying_orders),
        window_words(programme)
    )
}

fn requirements(t: &TierRule, programme: &Programme) -> String {
    let mut parts = vec![
        format!("{} {}", t.min_spend_minor, programme.currency),
        format!("{} orders", t.min_orders),
    ];
    if t.min_tenure_days > 0 {
        parts.push(format!("{} days tenure", t.min_tenure_days));
    }
    if t.not_detractor {
        parts.push("not a detractor".to_owned());
    }
    if t.min_referrals > 0 {
        parts.push(format!("{} referrals", t.min_referrals));
    }
    parts.join(", ")
}

/// Re-evaluates the tier at `m.as_of`, updating `status`, and returns what happened.
pub fn evaluate(status: &mut TierStatus, m: &Metrics, programme: &Programme) -> Vec<TierEvent> {
    let now = m.as_of;
    let mut events = Vec::new();
    let q = qualifying_rank(m, programme);
    let q_name = programme
        .tiers
        .get(q)
        .map(|t| t.name.clone())
        .unwrap_or_default();

    if let Some(manual) = &status.manual {
        if manual.expires_at > now {
            return events;
        }
        let previous = std::mem::replace(&mut status.tier, q_name.clone());
        events.push(TierEvent::Changed {
            previous,
            new: q_name.clone(),
            kind: TierChangeKind::OverrideExpired,
            reason: format!(
                "manual override ({}) expired; back to the rules: {}",
                manual.reason,
                describe(m, programme)
            ),
            at: manual.expires_at,
        });
        status.since = Some(manual.expires_at);
        status.manual = None;
        status.pending = None;
        return events;
    }

    let held = programme.rank(&status.tier);
    if q > held || programme.tier_named(&status.tier).is_none() && q != held {
        let previous = std::mem::replace(&mut status.tier, q_name.clone());
        let rule = &programme.tiers[q];
        events.push(TierEvent::Changed {
            previous,
            new: q_name,
            kind: TierChangeKind::Upgrade,
            reason: format!(
                "{} qualifies for {} ({})",
                describe(m, programme),
                rule.name,
                requirements(rule, programme)
            ),
            at: now,
        });
        status.since = Some(now);
        status.pending = None;
        return events;
    }
    if q == held {
        // Requalified (or never lost it): nothing pending any more.
        status.pending = None;
        return events;
    }

    // q < held: a downgrade is due, after the grace period.
    let grace = Duration::days(i64::from(programme.qualification.grace_days));
    for _ in 0..programme.tiers.len() {
        let held = programme.rank(&status.tier);
        if q >= held {
            status.pending = None;
            break;
        }
        match status.pending.clone() {
            None => {
                let (pending, warning) = announce(status, q, now, now + grace, m, programme, "");
                let at = pending.at;
                events.push(warning);
                status.pending = Some(pending);
                if at > now {
                    break;
                }
            }
            Some(p) if p.at <= now => {
                let previous = std::mem::replace(&mut status.tier, p.to.clone());
                events.push(TierEvent::Changed {
                    previous: previous.clone(),
                    new: p.to.clone(),
                    kind: TierChangeKind::Downgrade,
                    reason: format!(
                        "grace period since {} ended: {}; {previous} → {}",
                        p.since.format("%Y-%m-%d"),
                        describe(m, programme),
                        p.to
                    ),
                    at: p.at,
                });
                status.since = Some(p.at);
                status.pending = None;
                // Soft landing: the next step down gets a grace period of its own, counted
                // from this drop.
                if q < programme.rank(&status.tier) {
                    let (pending, warning) = announce(
                        status,
                        q,
                        p.at,
                        p.at + grace,
                        m,
                        programme,
                        "soft landing: ",
                    );
                    events.push(warning);
                    status.pending = Some(pending);
                }
            }
            Some(_) => break,
        }
    }
    events
}

/// The next downgrade step of a customer who qualifies only for tier `q`, and its warning.
fn announce(
    status: &TierStatus,
    q: usize,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
    m: &Metrics,
    programme: &Programme,
    prefix: &str,
) -> (PendingDowngrade, TierEvent) {
    let held = programme.rank(&status.tier);
    let step = if programme.qualification.soft_landing {
        held.saturating_sub(1).max(q)
    } else {
        q
    };
    let to = programme.tiers[step].name.clone();
    let current_rule = &programme.tiers[held];
    let warning = TierEvent::WillDowngrade {
        current: status.tier.clone(),
        to: to.clone(),
        at,
        to_keep: unmet(current_rule, m, programme),
        reason: format!(
            "{prefix}{} no longer meets {} ({}); drops to {to} on {} unless requalified",
            describe(m, programme),
            current_rule.name,
            requirements(current_rule, programme),
            at.format("%Y-%m-%d")
        ),
    };
    (PendingDowngrade { to, at, since }, warning)
}

/// Sets a manual tier override; it holds until `expires_at`, then the rules apply again.
pub fn set_override(status: &mut TierStatus, manual: TierOverride) -> TierEvent {
    let previous = std::mem::replace(&mut status.tier, manual.tier.clone());
    let event = TierEvent::Changed {
        previous,
        new: manual.tier.clone(),
        kind: TierChangeKind::Override,
        reason: format!(
            "manual override by {} until {}: {}",
            manual.set_by,
            manual.expires_at.format("%Y-%m-%d %H:%M UTC"),
            manual.reason
        ),
        at: manual.set_at,
    };
    status.since = Some(manual.set_at);
    status.pending = None;
    status.manual = Some(manual);
    event
}
