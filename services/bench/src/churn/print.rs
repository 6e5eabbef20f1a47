//! The churn-quality report, printed.

use super::{ChurnReport, median, quantile};
use kizuna::domain::churn_weights::worst_decile_gap;

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.1}%", a as f64 * 100.0 / b as f64)
    }
}

pub fn print(r: &ChurnReport) {
    let o = &r.options;
    println!(
        "churn quality: {} simulated customers (seed {}), {} days of history ending {}, observation at end - {} days, weekly sweeps",
        o.customers,
        o.seed,
        o.history_days,
        o.end.format("%Y-%m-%d"),
        o.holdout_days
    );
    println!(
        "{} events replayed through the engine's validation and domain ({} refused); {:.1} s",
        r.events, r.rejected, r.elapsed_secs
    );
    println!("{}", r.fit);
    println!();
    println!(
        "ranking at the observation time: ROC AUC for \"churned by the end\" (ground truth churned_at <= end)"
    );
    println!(
        "{:<56} {:>20} {:>30}",
        "score",
        format!("all ({}/{} churned)", r.positives, r.scored),
        format!(
            "active at obs ({}/{} churn later)",
            r.prospective.1, r.prospective.0
        )
    );
    println!("{}", "-".repeat(108));
    for (name, all, sub) in &r.auc {
        println!("{name:<56} {all:>20.3} {sub:>30.3}");
    }
    println!();
    println!(
        "lead time of high-risk alerts before the purchase that never comes (due = last purchase + usual interval)"
    );
    println!("{}", "-".repeat(108));
    println!(
        "churned customers with the due date >= {} days before the end: {}",
        o.late_grace_days, r.churners_eligible
    );
    println!(
        "  alerted at all (high at the due date, or later): {} ({})",
        r.churners_alerted,
        pct(r.churners_alerted, r.churners_eligible)
    );
    println!(
        "  alerted before the due date: {} ({})",
        r.alerted_before_due,
        pct(r.alerted_before_due, r.churners_eligible)
    );
    let q = |x: f64| quantile(&r.leads, x).map_or("-".into(), |v| format!("{v:.0}"));
    println!(
        "  lead (due - alert, days; negative = alert after the due date): median {}, p10 {}, p25 {}, p75 {}, p90 {}",
        median(&r.leads).map_or("-".into(), |v| format!("{v:.0}")),
        q(0.1),
        q(0.25),
        q(0.75),
        q(0.9)
    );
    let buckets = [
        ("> 60 days early", 60.0, f64::INFINITY),
        ("30..60 days early", 30.0, 60.0),
        ("7..30 days early", 7.0, 30.0),
        ("0..7 days early", 0.0, 7.0),
        ("0..14 days late", -14.0, 0.0),
        ("> 14 days late", f64::NEG_INFINITY, -14.0),
    ];
    for (name, lo, hi) in buckets {
        let n = r.leads.iter().filter(|l| **l > lo && **l <= hi).count();
        println!("    {name:<20} {n:>6}  {}", pct(n, r.churners_eligible));
    }
    let never = r.churners_eligible - r.churners_alerted;
    println!(
        "    {:<20} {never:>6}  {}",
        "never alerted",
        pct(never, r.churners_eligible)
    );
    println!(
        "false alerts: non-churners at high risk at some sweep in the last 365 days: {} of {} ({}); at high risk at the end: {} ({})",
        r.false_alerts_window,
        r.non_churners,
        pct(r.false_alerts_window, r.non_churners),
        r.high_at_end_non_churners,
        pct(r.high_at_end_non_churners, r.non_churners)
    );
    println!();
    println!(
        "{:<22} {:>9} {:>8} {:>10} {:>12} {:>9} {:>12}",
        "persona", "scored", "churned", "mean risk", "high at obs", "alerted", "median lead"
    );
    println!("{}", "-".repeat(108));
    for p in &r.personas {
        println!(
            "{:<22} {:>9} {:>8} {:>10.2} {:>12} {:>9} {:>12}",
            p.persona, p.customers, p.churned, p.mean_risk, p.high_at_obs, p.alerted, p.median_lead
        );
    }
    println!();
    println!("driver weights, learned by kizuna fit-model's own function at the observation time");
    println!("{}", "-".repeat(108));
    println!("{}", r.weights_report);
    println!();
    println!(
        "held out: scored at the observation time, outcome \"no purchase within {} days\" after it",
        r.window_days
    );
    println!("{:<56} {:>10} {:>10}", "score", "ROC AUC", "Brier");
    println!("{}", "-".repeat(108));
    for (name, auc, brier) in &r.heldout {
        println!("{name:<56} {auc:>10.3} {brier:>10.4}");
    }
    println!(
        "reliability of the deployed score (held out): decile, predicted, observed, customers; worst gap {:.3}",
        worst_decile_gap(&r.reliability)
    );
    for (i, d) in r.reliability.iter().enumerate() {
        println!(
            "  {:>2} {:>9.3} {:>9.3} {:>9}",
            i + 1,
            d.predicted,
            d.observed,
            d.customers
        );
    }
    println!(
        "slowly fading churners (simulated drift: gaps stretching up to 3x before leaving): {} of {} alerted at the 10%-false-alert threshold {:.3} (false alerts {:.1}%); at the configured high level (the lead-time rule): {} of {}",
        r.fading.0,
        r.fading.1,
        r.fading_threshold,
        r.fading_false_share * 100.0,
        r.fading_high.0,
        r.fading_high.1
    );
    println!();
    println!("issue 17 criteria");
    println!("{}", "-".repeat(108));
    for (name, passed, figures) in &r.criteria {
        println!(
            "  {} {name}: {figures}",
            if *passed { "PASS" } else { "FAIL" }
        );
    }
}
