//! The one parser of the Prometheus text format `/metrics` serves: samples by name and labels,
//! sums, sums by one label, and histogram quantiles as Prometheus' `histogram_quantile`
//! computes them.

use std::collections::BTreeMap;

/// One sample line: `name{k="v",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the sample has every `(label, value)` of `filter`.
    pub fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// `k="v",k2="v2"` → pairs, with `\"`, `\\` and `\n` unescaped. None if malformed.
fn parse_labels(mut text: &str) -> Option<Vec<(&str, String)>> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if text.is_empty() {
            return Some(labels);
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key.trim(), value));
        text = &rest[end + 1..];
    }
}

/// One line of the text format, or None for comments, blank and malformed lines.
pub fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            let name = &line[..open];
            let labels = parse_labels(line.get(open + 1..close)?)?;
            let value = line.get(close + 1..)?.split_whitespace().next()?;
            ((name, labels), value)
        }
        None => {
            let mut parts = line.split_whitespace();
            ((parts.next()?, Vec::new()), parts.next()?)
        }
    };
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: series.0,
        labels: series.1,
        value,
    })
}

/// Every sample of `text`.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(parse_line)
}

/// Sums the samples of `name` whose labels include every `(label, value)` of `filter`.
pub fn metric_sum(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    samples(text)
        .filter(|s| s.name == name && s.matches(filter))
        .map(|s| s.value)
        .sum()
}

/// The values of label `label` of `name`, with the sum of their samples, in label order.
pub fn metric_by_label(text: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in samples(text).filter(|s| s.name == name) {
        if let Some(v) = s.label(label) {
            *out.entry(v.to_owned()).or_default() += s.value;
        }
    }
    out.into_iter().collect()
}

/// The `q` quantile of histogram `name` (its `_bucket` series with every pair of `filter`,
/// summed per bound), interpolated within its bucket as `histogram_quantile` does; None when it
/// has no observations. Past the last finite bucket, that bucket's bound.
pub fn metric_quantile(text: &str, name: &str, filter: &[(&str, &str)], q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for s in samples(text).filter(|s| s.name == bucket && s.matches(filter)) {
        let Some(le) = s.label("le").and_then(|le| match le {
            "+Inf" => Some(f64::INFINITY),
            v => v.parse::<f64>().ok(),
        }) else {
            continue;
        };
        match buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += s.value,
            None => buckets.push((le, s.value)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let width = count - below;
            let share = if width > 0.0 {
                (rank - below) / width
            } else {
                1.0
            };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, count);
    }
    None
}

/// One scrape of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    /// See [`metric_sum`].
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        metric_sum(&self.text, name, filter)
    }

    /// See [`metric_by_label`].
    pub fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        metric_by_label(&self.text, name, label)
    }

    /// See [`metric_quantile`].
    pub fn quantile(&self, name: &str, filter: &[(&str, &str)], q: f64) -> Option<f64> {
        metric_quantile(&self.text, name, filter, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP kizuna_events_consumed_total x\n\
        # TYPE kizuna_events_consumed_total counter\n\
        kizuna_events_consumed_total{outcome=\"applied\",topic=\"a\"} 3\n\
        kizuna_events_consumed_total{outcome=\"duplicate\",topic=\"a\"} 1\n\
        kizuna_events_consumed_total{outcome=\"applied\",topic=\"b\"} 4\n\
        kizuna_events_consumed_total_extra{outcome=\"applied\"} 100\n\
        kizuna_batch_events_count 7\n\
        kizuna_batch_events_sum 12\n\
        odd{reason=\"a \\\"quoted\\\", with comma\"} 2\n";

    #[test]
    fn sums_samples_by_exact_name_and_labels() {
        let m = Metrics { text: TEXT.into() };
        assert_eq!(
            m.sum("kizuna_events_consumed_total", &[("outcome", "applied")]),
            7.0
        );
        assert_eq!(
            m.sum(
                "kizuna_events_consumed_total",
                &[("outcome", "applied"), ("topic", "b")]
            ),
            4.0
        );
        assert_eq!(m.sum("kizuna_events_consumed_total", &[]), 8.0);
        assert_eq!(m.sum("kizuna_batch_events_count", &[]), 7.0);
        assert_eq!(m.sum("kizuna_batch_events", &[]), 0.0);
        // A value that only contains the wanted one does not match.
        assert_eq!(
            m.sum("kizuna_events_consumed_total", &[("outcome", "appl")]),
            0.0
        );
        assert_eq!(m.sum("odd", &[("reason", "a \"quoted\", with comma")]), 2.0);
    }

    #[test]
    fn sums_by_label() {
        assert_eq!(
            metric_by_label(TEXT, "kizuna_events_consumed_total", "outcome"),
            vec![("applied".to_owned(), 7.0), ("duplicate".to_owned(), 1.0)]
        );
        assert!(metric_by_label(TEXT, "kizuna_batch_events_count", "outcome").is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let m = Metrics {
            text: "h_bucket{stage=\"a\",le=\"0.1\"} 50\nh_bucket{stage=\"a\",le=\"0.2\"} 90\n\
                   h_bucket{stage=\"a\",le=\"+Inf\"} 100\nh_bucket{stage=\"b\",le=\"0.1\"} 0\n\
                   h_bucket{stage=\"b\",le=\"+Inf\"} 0\n"
                .into(),
        };
        let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(near(m.quantile("h", &[("stage", "a")], 0.25), 0.05));
        assert!(near(m.quantile("h", &[("stage", "a")], 0.7), 0.15));
        assert!(near(m.quantile("h", &[("stage", "a")], 0.99), 0.2));
        assert_eq!(m.quantile("h", &[("stage", "b")], 0.5), None);
        assert_eq!(m.quantile("missing", &[], 0.5), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(parse_line("x{a=\"1\" 3"), None);
        assert_eq!(parse_line("x notanumber"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("x 1").map(|s| s.value), Some(1.0));
    }
}
