//! The printed table, percentiles and the targets of issue 6.

/// One line of the results table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub events: u64,
    pub seconds: f64,
    pub rate: f64,
    pub latency: Option<Latency>,
    pub note: String,
}

/// End-to-end latency percentiles in milliseconds; `None` when the percentile falls among
/// markers whose output never arrived within the wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub matched: usize,
    pub markers: usize,
}

impl Latency {
    /// Percentiles over `samples` (ms) of `markers` markers; the missing ones count as
    /// slower than every sample.
    pub fn of(mut samples: Vec<f64>, markers: usize) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = markers.max(samples.len());
        let pick = |q: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            // Nearest rank.
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            samples.get(rank - 1).copied()
        };
        Self {
            p50: pick(0.50),
            p99: pick(0.99),
            p999: pick(0.999),
            max: if samples.len() == n {
                samples.last().copied()
            } else {
                None
            },
            matched: samples.len(),
            markers: n,
        }
    }
}

fn ms(v: Option<f64>, present: bool) -> String {
    match (v, present) {
        (_, false) => String::new(),
        (Some(v), _) if v >= 100.0 => format!("{v:.0}"),
        (Some(v), _) => format!("{v:.1}"),
        // Some markers' outputs had not arrived when the wait ended.
        (None, _) => "late".into(),
    }
}

/// Prints the results table.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<34} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9}  notes",
        "scenario", "events", "seconds", "events/s", "p50 ms", "p99 ms", "p99.9 ms"
    );
    println!("{}", "-".repeat(110));
    for r in rows {
        let l = r.latency.unwrap_or_default();
        let has = r.latency.is_some();
        println!(
            "{:<34} {:>9} {:>9.1} {:>10.0} {:>9} {:>9} {:>9}  {}",
            r.scenario,
            r.events,
            r.seconds,
            r.rate,
            ms(l.p50, has),
            ms(l.p99, has),
            ms(l.p999, has),
            r.note
        );
    }
}

/// One target of the issue and whether it was met.
#[derive(Debug, Clone)]
pub struct Target {
    pub what: String,
    pub measured: String,
    pub pass: Option<bool>,
}

pub fn print_targets(targets: &[Target]) {
    println!("{:<44} {:>16}  result", "target (issue 6)", "measured");
    println!("{}", "-".repeat(72));
    for t in targets {
        let verdict = match t.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "not measured",
        };
        println!("{:<44} {:>16}  {verdict}", t.what, t.measured);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latency::of((1..=1000).map(f64::from).collect(), 1000);
        assert_eq!(l.p50, Some(500.0));
        assert_eq!(l.p99, Some(990.0));
        assert_eq!(l.p999, Some(999.0));
        assert_eq!(l.max, Some(1000.0));
    }

    #[test]
    fn missing_markers_count_as_slowest() {
        // 98 of 100 arrived: p99 falls among the missing.
        let l = Latency::of((1..=98).map(f64::from).collect(), 100);
        assert_eq!(l.p50, Some(50.0));
        assert_eq!(l.p99, None);
        assert_eq!(l.max, None);
        assert_eq!(l.matched, 98);
    }
}
