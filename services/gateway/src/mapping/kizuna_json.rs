//! Kizuna's own JSON (`POST /v1/events`): one `InputEvent` in the protobuf JSON mapping, or JSON
//! lines of them, read exactly as `kizuna backfill` reads its files
//! ([`kizuna::inputs::decode::decode_input_line`]).

use kizuna::inputs::decode::decode_input_line;

use super::{Draft, MapError};

/// A refusal of one line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub error: MapError,
}

/// The events of a body: the whole body as one `InputEvent`, or else one per non-empty line.
pub fn map(body: &[u8]) -> Result<Vec<Draft>, LineError> {
    let text = std::str::from_utf8(body).map_err(|_| LineError {
        line: 1,
        error: MapError::new("body", "unparseable", "the body is not UTF-8"),
    })?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(LineError {
            line: 1,
            error: MapError::new("body", "empty_payload", "the body holds no event"),
        });
    }
    // A single event may be pretty-printed over several lines.
    if lines.len() > 1
        && let Ok(event) = decode_input_line(text.trim())
    {
        return Ok(vec![Draft::new(event, "line:1")]);
    }
    lines
        .into_iter()
        .map(|(n, line)| {
            decode_input_line(line)
                .map(|event| Draft::new(event, format!("line:{n}")))
                .map_err(|r| {
                    let field = missing_field(&r.detail).unwrap_or_else(|| "body".to_owned());
                    LineError {
                        line: n,
                        error: MapError::new(field, r.reason.as_str(), r.detail),
                    }
                })
        })
        .collect()
}

/// The field serde names when one is missing ("missing field `x`"); its other errors name a
/// position, not a field.
fn missing_field(detail: &str) -> Option<String> {
    detail
        .split_once("missing field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(f, _)| f.to_owned())
}

#[cfg(test)]
mod tests {
    use kizuna::inputs::decode::WireEvent;

    use super::*;

    const PURCHASE: &str = r#"{"purchase": {"eventId": "evt-1", "customerId": "cust-42", "occurredAt": "2026-11-25T09:30:00Z", "orderId": "ord-1", "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "20000", "currency": "JPY"}}"#;
    const SURVEY: &str = r#"{"surveyResponse": {"eventId": "evt-2", "customerId": "cust-42", "occurredAt": "2026-11-25T09:31:00Z", "surveyId": "s", "kind": "SURVEY_KIND_NPS", "score": 9}}"#;

    #[test]
    fn one_event_pretty_printed_or_json_lines() {
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(PURCHASE).expect("json"),
        )
        .expect("pretty");
        let one = map(pretty.as_bytes()).expect("one event");
        assert_eq!(one.len(), 1);
        assert!(matches!(&one[0].event, WireEvent::Purchase(p) if p.amount_minor == 20000));
        let both = map(format!("{PURCHASE}\n\n{SURVEY}\n").as_bytes()).expect("two lines");
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].part, "line:3");
        assert!(matches!(&both[1].event, WireEvent::Survey(s) if s.score == 9));
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = map(format!(
            "{PURCHASE}\n{{\"purchase\": {{\"kind\": \"PURCHASE_KIND_GIFT\"}}}}\n"
        )
        .as_bytes())
        .expect_err("bad second line");
        assert_eq!((err.line, err.error.reason), (2, "unknown_enum"));
        let err = map(b"{}").expect_err("no event");
        assert_eq!(err.error.reason, "missing_field");
        assert!(map(b"  \n").is_err());
    }
}
