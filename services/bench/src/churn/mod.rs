//! `kizuna-bench churn`: the quality of churn risk against simulated ground truth (issue 4,
//! item 4). No Kafka, no PostgreSQL: the simulator's customers are replayed through the pure
//! domain in-process, exactly as the engine would apply them.
//!
//! 1. The simulator (`kizuna_simulator`) produces every customer's purchases, tickets and
//!    survey answers over the history, and the ground truth: each customer's persona and the
//!    time they churned (stopped for good), if they did.
//! 2. Every event goes through the engine's own validation (`ingest::validate`) into a
//!    `DomainEvent`.
//! 3. Calibration: at the observation time (end − holdout) each customer's state holds the
//!    events up to then; BG/NBD is fitted over their (x, t_x, T) as `kizuna fit-model` does
//!    (identical summaries rounded to days and pooled with a weight).
//! 4. Replay: each customer's events are applied in time order with `domain::apply::apply`,
//!    and the customer is re-evaluated weekly with `domain::apply::sweep` (as the sweeper
//!    would), with the fitted model; the churn level after every step is recorded.
//! 5. Ranking: at the observation time every customer with a purchase is scored; ROC AUC of
//!    churn_risk for "churned by the end" against days since the last purchase, an RFM score,
//!    1 − P(alive) alone and the rhythm fallback alone.
//! 6. Lead time: for each churned customer, the purchase that never comes is due at the last
//!    purchase + their usual interval; the alert is the onset of the high-risk episode that
//!    covers that moment (or the first one after it). Lead = due − alert.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use kizuna::domain::apply::{Changes, apply, sweep};
use kizuna::domain::churn::{self, Level, Model, summary};
use kizuna::domain::churn_weights::{Decile, auc, brier, reliability, worst_decile_gap};
use kizuna::domain::event::{DomainEvent, EventBody};
use kizuna::domain::facts::Facts;
use kizuna::domain::ids::CustomerId;
use kizuna::domain::metrics::Metrics;
use kizuna::domain::model::{CustomerSummary, FitOptions, Weighted, fit_bgnbd_weighted};
use kizuna::domain::programme;
use kizuna::domain::state::CustomerState;
use kizuna::inputs::decode::WireEvent;
use kizuna::inputs::validate::validate;
use kizuna_proto::v1::input_event::Event;
use kizuna_simulator::calendar::DAY;
use kizuna_simulator::persona::{Mix, Persona};
use kizuna_simulator::world::{World, WorldConfig};

mod print;
pub use print::print;

/// What to simulate and when to look.
#[derive(Debug, Clone)]
pub struct ChurnOptions {
    pub customers: u32,
    pub seed: u64,
    pub history_days: i64,
    pub holdout_days: i64,
    pub end: DateTime<Utc>,
    /// Days between sweeps in the replay.
    pub sweep_days: i64,
    /// A churned customer counts for the lead-time analysis when their expected next purchase
    /// is at least this many days before the end (so a late alert can still be seen).
    pub late_grace_days: i64,
}

/// One customer's figures.
#[derive(Debug, Clone)]
struct Scored {
    persona: Persona,
    churned: bool,
    /// Churned at or before the observation time.
    churned_before_obs: bool,
    risk: f64,
    /// churn_risk with the fitted BG/NBD used even if the fit did not converge.
    risk_forced: f64,
    level: Level,
    days_since: f64,
    orders: f64,
    spend: f64,
    one_minus_p_alive: f64,
    rhythm: f64,
    /// No own purchase within H days after the observation time (H = [churn] window_days).
    lapsed_h: bool,
    /// The score with the hand-set weights (uncalibrated), the hand-set weights calibrated,
    /// and the learned weights calibrated.
    handset: f64,
    handset_calibrated: f64,
    learned: f64,
}

/// A churned customer's alert.
#[derive(Debug, Clone)]
struct Alert {
    persona: Persona,
    /// Days from the alert to the expected purchase that never came; None: never alerted.
    lead_days: Option<f64>,
}

/// Everything the benchmark found.
#[derive(Debug)]
pub struct ChurnReport {
    pub options: ChurnOptions,
    pub events: usize,
    pub rejected: usize,
    pub fit: String,
    pub auc: Vec<(String, f64, f64)>,
    pub scored: usize,
    pub positives: usize,
    pub prospective: (usize, usize),
    pub leads: Vec<f64>,
    pub churners_eligible: usize,
    pub churners_alerted: usize,
    pub alerted_before_due: usize,
    pub non_churners: usize,
    pub false_alerts_window: usize,
    pub high_at_end_non_churners: usize,
    pub personas: Vec<PersonaLine>,
    /// What the weights step of `kizuna fit-model` reported (the same function).
    pub weights_report: String,
    /// Held out at the observation time, "no purchase within H days": (name, AUC, Brier).
    pub heldout: Vec<(String, f64, f64)>,
    pub window_days: u32,
    /// Reliability of the deployed (calibrated) score on the held-out split.
    pub reliability: Vec<Decile>,
    /// Slowly fading churners: (alerted, eligible) at the threshold giving at most 10% false
    /// alerts, the threshold and the false-alert share it gives.
    pub fading: (usize, usize),
    pub fading_threshold: f64,
    pub fading_false_share: f64,
    /// Fading churners alerted at the configured high level (the lead-time rule), of eligible.
    pub fading_high: (usize, usize),
    /// The pass/fail criteria of issue 17: (criterion, passed, figures).
    pub criteria: Vec<(String, bool, String)>,
    pub elapsed_secs: f64,
}

#[derive(Debug)]
pub struct PersonaLine {
    pub persona: String,
    pub customers: usize,
    pub churned: usize,
    pub mean_risk: f64,
    pub high_at_obs: usize,
    pub alerted: String,
    pub median_lead: String,
}

fn secs_to_time(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn wire(event: Event) -> WireEvent {
    match event {
        Event::Purchase(p) => WireEvent::Purchase(p),
        Event::SupportTicket(t) => WireEvent::SupportTicket(t),
        Event::SurveyResponse(s) => WireEvent::Survey(s),
    }
}

/// One item of a customer's timeline: their own event, or a purchase of someone they referred.
#[derive(Debug, Clone)]
enum Item {
    Own(DomainEvent),
    Referral(CustomerId, DomainEvent),
}

impl Item {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Item::Own(e) | Item::Referral(_, e) => e.meta.occurred_at,
        }
    }
}

fn changes(items: &[Item]) -> Changes<'_> {
    let mut c = Changes::default();
    for item in items {
        match item {
            Item::Own(e) => c.events.push(e),
            Item::Referral(who, e) => c.referred.push((who.clone(), e)),
        }
    }
    c
}

/// The AUC among the customers active at observation of the first score set whose name
/// starts with `prefix` (NaN if none).
fn auc_rows_ref(
    sets: &[(String, Vec<f64>)],
    prospective: &[usize],
    labels: &[bool],
    prefix: &str,
) -> f64 {
    sets.iter()
        .find(|(n, _)| n.starts_with(prefix))
        .map_or(f64::NAN, |(_, scores)| {
            let sub: Vec<f64> = prospective.iter().map(|i| scores[*i]).collect();
            auc(&sub, labels)
        })
}

/// Quintile (1–5) of each value by rank, ties sharing the quintile of their first rank.
fn quintiles(values: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let n = values.len().max(1) as f64;
    let mut out = vec![0.0; values.len()];
    let mut first_rank = 0;
    for (rank, i) in idx.iter().enumerate() {
        if rank == 0 || values[*i] != values[idx[rank - 1]] {
            first_rank = rank;
        }
        out[*i] = (first_rank as f64 / n * 5.0).floor().min(4.0) + 1.0;
    }
    out
}

/// RFM risk: 15 minus the sum of the recency (recent is 5), frequency and monetary quintiles.
fn rfm_risk(s: &[Scored]) -> Vec<f64> {
    let r = quintiles(&s.iter().map(|c| -c.days_since).collect::<Vec<_>>());
    let f = quintiles(&s.iter().map(|c| c.orders).collect::<Vec<_>>());
    let m = quintiles(&s.iter().map(|c| c.spend).collect::<Vec<_>>());
    (0..s.len()).map(|i| 15.0 - (r[i] + f[i] + m[i])).collect()
}

fn median(sorted: &[f64]) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    })
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// The customer's usual interval between purchase days: their own mean gap with two or more
/// purchase days, else the category cadence the engine derived at the last purchase.
fn usual_interval_days(purchase_days: &[i64], m: &Metrics) -> f64 {
    if purchase_days.len() >= 2 {
        let span = purchase_days[purchase_days.len() - 1] - purchase_days[0];
        span as f64 / (purchase_days.len() - 1) as f64
    } else {
        m.category_cadence_days
    }
}

pub fn run(opts: &ChurnOptions) -> anyhow::Result<ChurnReport> {
    let started = std::time::Instant::now();
    let programme = programme::builtin();
    let settings = kizuna::config::Settings::load(None)?;
    let limits = kizuna::inputs::validate::Limits::new(&settings, &programme);
    let end_secs = opts.end.timestamp();
    let start_secs = end_secs - opts.history_days * DAY;
    let config = WorldConfig {
        seed: opts.seed,
        customers: opts.customers,
        customer_prefix: "cust-".into(),
        run: format!("churn{}", opts.seed),
        start: start_secs,
        end: end_secs,
        mix: Mix::default(),
    };
    let mut world = World::new(&config);
    let ids: Vec<String> = world
        .customers()
        .iter()
        .map(|c| c.id().to_owned())
        .collect();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut timelines: Vec<Vec<Item>> = vec![Vec::new(); ids.len()];
    let validate_now = opts.end + Duration::days(2);
    let (mut events, mut rejected) = (0, 0);
    for ev in world.by_ref() {
        events += 1;
        let customer = ev.customer as usize;
        let key = ev.customer_id().to_owned();
        match validate(&wire(ev.event), Some(key.as_bytes()), &limits, validate_now) {
            Ok(e) => {
                if let EventBody::Purchase(p) = &e.body
                    && let Some(referrer) = &p.referred_by
                    && let Some(r) = index.get(referrer.as_str())
                {
                    timelines[*r].push(Item::Referral(e.meta.customer_id.clone(), e.clone()));
                }
                timelines[customer].push(Item::Own(e));
            }
            Err(_) => rejected += 1,
        }
    }
    let truth: HashMap<String, (Persona, Option<i64>)> = world
        .truth(end_secs)
        .into_iter()
        .map(|t| (t.customer_id, (t.persona, t.churned_at)))
        .collect();
    let fading: HashMap<String, DateTime<Utc>> = world
        .customers()
        .iter()
        .filter_map(|c| c.fade_from().map(|f| (c.id().to_owned(), secs_to_time(f))))
        .collect();
    for t in &mut timelines {
        t.sort_by_key(Item::at);
    }
    let obs = opts.end - Duration::days(opts.holdout_days);
    let end = opts.end;

    // Calibration: everyone's (x, t_x, T) at the observation time, pooled as fit-model does.
    let mut pooled: BTreeMap<(u32, i64, i64), f64> = BTreeMap::new();
    let mut obs_facts: Vec<Facts> = Vec::new();
    for (i, items) in timelines.iter().enumerate() {
        let upto: Vec<Item> = items.iter().filter(|e| e.at() <= obs).cloned().collect();
        if upto.is_empty() {
            continue;
        }
        let id = CustomerId::parse(&ids[i], 128).context("customer id")?;
        let (state, _, _) = apply(&id, None, &changes(&upto), &programme, None, obs);
        let m = Metrics::derive(&state.facts, &programme, obs);
        obs_facts.push(state.facts);
        if let Some(s) = summary(&m) {
            let key = (
                s.x(),
                (s.t_x() * 7.0).round() as i64,
                (s.age() * 7.0).round() as i64,
            );
            *pooled.entry(key).or_default() += 1.0;
        }
    }
    let data: Vec<Weighted<CustomerSummary>> = pooled
        .into_iter()
        .filter_map(|((x, t_x, age), weight)| {
            CustomerSummary::new(x, t_x as f64 / 7.0, age as f64 / 7.0)
                .ok()
                .map(|value| Weighted { value, weight })
        })
        .collect();
    let fit = fit_bgnbd_weighted(&data, &FitOptions::default())
        .map_err(|e| anyhow::anyhow!("BG/NBD fit failed: {e}"))?;
    let p = &fit.params;
    let fit_text = format!(
        "BG/NBD at {} over {:.0} customers: r = {:.4}, alpha = {:.4} weeks, a = {:.4}, b = {:.4}; LL {:.1}; {}{}",
        obs.format("%Y-%m-%d"),
        fit.customers,
        p.r(),
        p.alpha(),
        p.a(),
        p.b(),
        fit.log_likelihood,
        if fit.converged {
            "converged: "
        } else {
            "NOT CONVERGED: "
        },
        fit.reason
    );
    // As the engine: `kizuna fit-model` refuses to store a fit that did not converge, and the
    // engine then runs without a model (the rhythm fallback). The best parameters found are
    // still used for the "forced" rows, to show what the model would have said.
    let mut forced = Model {
        version: 1,
        purchases: fit.params.into(),
        spend: None,
        weights: None,
    };
    // The driver weights, learned by the very function `kizuna fit-model` calls, over the
    // customers' facts at the observation time.
    let refs: Vec<&Facts> = obs_facts.iter().collect();
    let learning = std::time::Instant::now();
    let (learned, mut weights_report) =
        kizuna::commands::fit_weights::learn(&refs, &programme, Some(&forced), obs);
    weights_report.push_str(&format!(
        "\n  ({} customers, learned in {:.1} s)",
        refs.len(),
        learning.elapsed().as_secs_f64()
    ));
    drop(refs);
    drop(obs_facts);
    let handset_model = forced.clone();
    let with_weights = |w: Option<&churn::DriverWeights>| Model {
        weights: w.cloned(),
        ..forced.clone()
    };
    let handset_calibrated = with_weights(learned.as_ref().map(|l| &l.default));
    let learned_model = with_weights(learned.as_ref().map(|l| &l.learned));
    forced.weights = learned.as_ref().map(|l| l.chosen().clone());
    let window = Duration::days(i64::from(programme.churn.window_days));
    let deployed: Option<&Model> = fit.converged.then_some(&forced);

    // Replay with weekly sweeps.
    let step = Duration::days(opts.sweep_days.max(1));
    let window_start = end - Duration::days(365);
    let mut scored: Vec<Scored> = Vec::new();
    let mut alerts: Vec<Alert> = Vec::new();
    let (mut non_churners, mut false_alerts, mut high_at_end) = (0, 0, 0);
    let mut fading_max: Vec<f64> = Vec::new();
    let mut non_churner_max: Vec<f64> = Vec::new();
    let mut fading_high = (0, 0);
    for (i, items) in timelines.iter().enumerate() {
        if items.is_empty() {
            continue;
        }
        let Some((persona, churned_at)) = truth.get(&ids[i]).copied() else {
            continue;
        };
        let churned_at = churned_at.map(secs_to_time);
        let id = CustomerId::parse(&ids[i], 128).context("customer id")?;
        // Evaluation times: weekly from the history start, plus the observation time.
        let mut grid: Vec<DateTime<Utc>> = Vec::new();
        let mut t = secs_to_time(start_secs) + step;
        while t <= end {
            grid.push(t);
            t += step;
        }
        grid.push(obs);
        grid.sort();
        grid.dedup();
        let mut state: Option<CustomerState> = None;
        let mut next = 0;
        let mut levels: Vec<(DateTime<Utc>, Level)> = Vec::with_capacity(grid.len());
        let mut scores: Vec<(DateTime<Utc>, f64)> = Vec::with_capacity(grid.len());
        let mut at_obs: Option<Scored> = None;
        for t in grid {
            let from = next;
            while next < items.len() && items[next].at() <= t {
                next += 1;
            }
            let fresh = &items[from..next];
            let updated = if !fresh.is_empty() {
                let (s, _, _) = apply(&id, state.take(), &changes(fresh), &programme, deployed, t);
                s
            } else if let Some(s) = state.take() {
                sweep(s, &programme, deployed, t).0
            } else {
                continue;
            };
            let level = updated
                .status
                .churn
                .as_ref()
                .map_or(Level::Low, |c| c.level);
            levels.push((t, level));
            scores.push((t, updated.status.churn.as_ref().map_or(0.0, |c| c.score)));
            if t == obs {
                let m = Metrics::derive(&updated.facts, &programme, obs);
                if m.first_purchase_at.is_some() {
                    let a = churn::assess(&m, &programme.churn, deployed);
                    let with_model = churn::assess(&m, &programme.churn, Some(&forced));
                    let p_alive =
                        summary(&m).map_or(1.0, |s| forced.purchases.p_alive(&s).unwrap_or(1.0));
                    let bought = items.iter().any(|it| match it {
                        Item::Own(e) => {
                            matches!(e.body, EventBody::Purchase(_))
                                && e.meta.occurred_at > obs
                                && e.meta.occurred_at <= obs + window
                        }
                        Item::Referral(..) => false,
                    });
                    let score_with =
                        |model: &Model| churn::assess(&m, &programme.churn, Some(model)).score;
                    at_obs = Some(Scored {
                        persona,
                        churned: churned_at.is_some_and(|c| c <= end),
                        churned_before_obs: churned_at.is_some_and(|c| c <= obs),
                        risk: a.score,
                        risk_forced: with_model.score,
                        level,
                        days_since: m.days_since_last_purchase.unwrap_or(0.0),
                        orders: m.orders,
                        spend: m.lifetime_spend_minor as f64,
                        one_minus_p_alive: 1.0 - p_alive,
                        rhythm: churn::rhythm_lapse(&m, programme.churn.lapse_prior),
                        lapsed_h: !bought,
                        handset: score_with(&handset_model),
                        handset_calibrated: score_with(&handset_calibrated),
                        learned: score_with(&learned_model),
                    });
                }
            }
            state = Some(updated);
        }
        if let Some(s) = at_obs {
            scored.push(s);
        }
        // High-risk episodes: (onset, end exclusive or None when still high at the end).
        let mut episodes: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
        for (t, level) in &levels {
            let open = episodes.last().is_some_and(|e| e.1.is_none());
            match (*level == Level::High, open) {
                (true, false) => episodes.push((*t, None)),
                (false, true) => {
                    if let Some(e) = episodes.last_mut() {
                        e.1 = Some(*t);
                    }
                }
                _ => {}
            }
        }
        let max_score = |from: DateTime<Utc>, to: DateTime<Utc>| {
            scores
                .iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .map(|(_, s)| *s)
                .fold(0.0, f64::max)
        };
        if let Some(c) = churned_at.filter(|c| *c <= end - Duration::days(opts.late_grace_days))
            && let Some(from) = fading.get(&ids[i])
        {
            fading_max.push(max_score(*from, c + Duration::days(60)));
        }
        if churned_at.is_none_or(|c| c > end) {
            non_churner_max.push(max_score(window_start, end));
        }
        match churned_at.filter(|c| *c <= end) {
            Some(_) => {
                let purchases: Vec<DateTime<Utc>> = items
                    .iter()
                    .filter_map(|it| match it {
                        Item::Own(e) if matches!(e.body, EventBody::Purchase(_)) => {
                            Some(e.meta.occurred_at)
                        }
                        _ => None,
                    })
                    .collect();
                let Some(last) = purchases.last().copied() else {
                    continue;
                };
                let mut days: Vec<i64> = purchases.iter().map(|t| t.timestamp() / DAY).collect();
                days.dedup();
                let facts = state.as_ref().map(|s| &s.facts);
                let Some(facts) = facts else { continue };
                let m = Metrics::derive(facts, &programme, last);
                let interval = usual_interval_days(&days, &m);
                let due = last + Duration::seconds((interval * 86_400.0) as i64);
                if due > end - Duration::days(opts.late_grace_days) {
                    continue;
                }
                let covering = episodes
                    .iter()
                    .find(|(on, off)| *on <= due && off.is_none_or(|o| o > due))
                    .or_else(|| episodes.iter().find(|(on, _)| *on > due));
                if fading.contains_key(&ids[i]) {
                    fading_high.1 += 1;
                    fading_high.0 += usize::from(covering.is_some());
                }
                alerts.push(Alert {
                    persona,
                    lead_days: covering.map(|(on, _)| (due - *on).num_seconds() as f64 / 86_400.0),
                });
            }
            None => {
                non_churners += 1;
                if episodes
                    .iter()
                    .any(|(on, off)| off.is_none_or(|o| o > window_start) && *on <= end)
                {
                    false_alerts += 1;
                }
                if levels.last().is_some_and(|(_, l)| *l == Level::High) {
                    high_at_end += 1;
                }
            }
        }
    }

    // Ranking quality at the observation time.
    let labels: Vec<bool> = scored.iter().map(|s| s.churned).collect();
    let rfm = rfm_risk(&scored);
    let prospective: Vec<usize> = (0..scored.len())
        .filter(|i| !scored[*i].churned_before_obs)
        .collect();
    let tag = if fit.converged {
        ""
    } else {
        " [unconverged fit]"
    };
    let mut score_sets: Vec<(String, Vec<f64>)> = vec![(
        if fit.converged {
            "churn_risk (Kizuna, BG/NBD base)".to_owned()
        } else {
            "churn_risk (Kizuna as deployed: no model, rhythm base)".to_owned()
        },
        scored.iter().map(|s| s.risk).collect(),
    )];
    if !fit.converged {
        score_sets.push((
            format!("churn_risk with BG/NBD forced{tag}"),
            scored.iter().map(|s| s.risk_forced).collect(),
        ));
    }
    score_sets.extend([
        (
            "days since last purchase".to_owned(),
            scored.iter().map(|s| s.days_since).collect(),
        ),
        ("RFM score (R+F+M quintiles)".to_owned(), rfm),
        (
            format!("1 - P(alive) alone (no drivers){tag}"),
            scored.iter().map(|s| s.one_minus_p_alive).collect(),
        ),
        (
            "rhythm lapse alone (fallback base)".to_owned(),
            scored.iter().map(|s| s.rhythm).collect(),
        ),
        (
            "F alone (fewer orders = riskier)".to_owned(),
            scored.iter().map(|s| -s.orders).collect(),
        ),
        (
            "churn_risk, hand-set weights".to_owned(),
            scored.iter().map(|s| s.handset).collect(),
        ),
    ]);
    let sub_labels: Vec<bool> = prospective.iter().map(|i| labels[*i]).collect();
    let auc_rows = score_sets
        .iter()
        .map(|(name, scores)| {
            let sub: Vec<f64> = prospective.iter().map(|i| scores[*i]).collect();
            (name.clone(), auc(scores, &labels), auc(&sub, &sub_labels))
        })
        .collect();

    // Held out at the observation time: "no purchase within H days".
    let lapsed: Vec<bool> = scored.iter().map(|s| s.lapsed_h).collect();
    let column = |f: fn(&Scored) -> f64| scored.iter().map(f).collect::<Vec<f64>>();
    let heldout: Vec<(String, f64, f64)> = [
        ("hand-set weights, raw score", column(|s| s.handset)),
        (
            "hand-set weights, calibrated",
            column(|s| s.handset_calibrated),
        ),
        ("learned weights, calibrated", column(|s| s.learned)),
        (
            "as deployed (the weights fit-model stores)",
            column(|s| s.risk_forced),
        ),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_owned(), auc(&p, &lapsed), brier(&p, &lapsed)))
    .collect();
    let table = reliability(&column(|s| s.risk_forced), &lapsed);

    // The operating point with at most 10% false alerts: a non-churner is falsely alerted when
    // their score reached the threshold at some sweep in the last 365 days; a fading churner
    // is alerted when theirs did between the start of the fade and 60 days after they left.
    let mut desc = non_churner_max.clone();
    desc.sort_by(|a, b| b.total_cmp(a));
    let allowed = desc.len() / 10;
    let threshold = desc.get(allowed).map_or(0.0, |v| v.next_up());
    let false_share = non_churner_max.iter().filter(|v| **v >= threshold).count() as f64
        / non_churner_max.len().max(1) as f64;
    let fading_alerted = fading_max.iter().filter(|v| **v >= threshold).count();

    let mut criteria = Vec::new();
    match &learned {
        Some(l) => criteria.push((
            "learned weights beat the hand-set ones on the later split".to_owned(),
            l.learned_wins,
            format!(
                "validation AUC {:.3} vs {:.3}, calibrated Brier {:.4} vs {:.4}",
                l.learned_eval.auc, l.default_eval.auc, l.learned_eval.brier, l.default_eval.brier
            ),
        )),
        None => criteria.push((
            "learned weights beat the hand-set ones on the later split".to_owned(),
            false,
            "no weights learned".to_owned(),
        )),
    }
    let active = |name: &str| auc_rows_ref(&score_sets, &prospective, &sub_labels, name);
    let (risk_active, rfm_active) = (active("churn_risk"), active("RFM score"));
    criteria.push((
        "among customers active at observation, the score beats RFM by >= 0.05 AUC".to_owned(),
        risk_active - rfm_active >= 0.05,
        format!(
            "churn_risk {risk_active:.3} vs RFM {rfm_active:.3} (+{:.3})",
            risk_active - rfm_active
        ),
    ));
    criteria.push((
        ">= half of the slowly fading churners alerted at <= 10% false alerts".to_owned(),
        !fading_max.is_empty() && fading_alerted * 2 >= fading_max.len(),
        format!(
            "{fading_alerted}/{} alerted at score >= {threshold:.3}, false alerts {:.1}%",
            fading_max.len(),
            false_share * 100.0
        ),
    ));
    let gap = worst_decile_gap(&table);
    criteria.push((
        "calibration: every decile's observed rate within 0.05 of its prediction (held out)"
            .to_owned(),
        !table.is_empty() && gap <= 0.05,
        format!("worst decile gap {gap:.3}"),
    ));

    let mut leads: Vec<f64> = alerts.iter().filter_map(|a| a.lead_days).collect();
    leads.sort_by(f64::total_cmp);
    let personas = Persona::ALL
        .iter()
        .map(|p| {
            let s: Vec<&Scored> = scored.iter().filter(|s| s.persona == *p).collect();
            let a: Vec<&Alert> = alerts.iter().filter(|a| a.persona == *p).collect();
            let mut l: Vec<f64> = a.iter().filter_map(|a| a.lead_days).collect();
            l.sort_by(f64::total_cmp);
            PersonaLine {
                persona: p.as_str().to_owned(),
                customers: s.len(),
                churned: s.iter().filter(|c| c.churned).count(),
                mean_risk: s.iter().map(|c| c.risk).sum::<f64>() / s.len().max(1) as f64,
                high_at_obs: s.iter().filter(|c| c.level == Level::High).count(),
                alerted: if a.is_empty() {
                    "-".into()
                } else {
                    format!("{}/{}", l.len(), a.len())
                },
                median_lead: median(&l).map_or("-".into(), |m| format!("{m:.0}")),
            }
        })
        .collect();
    Ok(ChurnReport {
        options: opts.clone(),
        events,
        rejected,
        fit: fit_text,
        auc: auc_rows,
        scored: scored.len(),
        positives: labels.iter().filter(|l| **l).count(),
        prospective: (prospective.len(), sub_labels.iter().filter(|l| **l).count()),
        churners_eligible: alerts.len(),
        churners_alerted: leads.len(),
        alerted_before_due: leads.iter().filter(|l| **l > 0.0).count(),
        leads,
        non_churners,
        false_alerts_window: false_alerts,
        high_at_end_non_churners: high_at_end,
        personas,
        weights_report,
        heldout,
        window_days: programme.churn.window_days,
        reliability: table,
        fading: (fading_alerted, fading_max.len()),
        fading_threshold: threshold,
        fading_false_share: false_share,
        fading_high,
        criteria,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_by_rank_with_shared_ties() {
        let q = quintiles(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(q, vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0]);
        let t = quintiles(&[1.0, 1.0, 1.0, 1.0, 5.0]);
        assert_eq!(t, vec![1.0, 1.0, 1.0, 1.0, 5.0]);
    }

    #[test]
    fn a_small_run_is_deterministic() {
        let opts = ChurnOptions {
            customers: 150,
            seed: 7,
            history_days: 400,
            holdout_days: 60,
            end: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("date"),
            sweep_days: 7,
            late_grace_days: 28,
        };
        let a = run(&opts).expect("run");
        let b = run(&opts).expect("run");
        assert_eq!(a.events, b.events);
        assert_eq!(a.rejected, 0);
        assert_eq!(a.fit, b.fit);
        assert_eq!(a.leads, b.leads);
        for (x, y) in a.auc.iter().zip(&b.auc) {
            assert_eq!(x.1.to_bits(), y.1.to_bits());
        }
    }
}
