//! The W3C Trace Context `traceparent` header (`00-<trace id>-<parent id>-<flags>`), parsed into
//! a small `Copy` value: an input message carries it through the batch to the outputs it causes
//! without an allocation. `tracestate` is not carried.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The header's name, on inputs and outputs (Kafka headers), and on HTTP requests.
pub const HEADER: &str = "traceparent";

/// A parsed `traceparent`: a valid (non-zero) trace id and parent span id, and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// The length of a version-00 header.
const LEN: usize = 55;

impl TraceParent {
    /// Parses a header value. Version `00` must be exactly 55 characters; a later version may
    /// carry more fields after the fourth (they are ignored, as the spec asks); version `ff`,
    /// upper-case hex, all-zero ids and anything malformed give None.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let value = value.trim_ascii();
        if value.len() < LEN || (value.len() > LEN && value[LEN] != b'-') {
            return None;
        }
        let version = hex::<1>(&value[0..2])?[0];
        if version == 0xff || (version == 0 && value.len() != LEN) {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = hex::<16>(&value[3..35])?;
        let span_id = hex::<8>(&value[36..52])?;
        let flags = hex::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The header value, version `00`.
    pub fn to_header(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(LEN);
        s.push_str("00-");
        for b in self.trace_id {
            write!(s, "{b:02x}").ok();
        }
        s.push('-');
        for b in self.span_id {
            write!(s, "{b:02x}").ok();
        }
        write!(s, "-{:02x}", self.flags).ok();
        s
    }

    /// The trace id in lower-case hex (32 characters), as tracing back ends show it.
    pub fn trace_id_hex(&self) -> String {
        self.to_header()[3..35].to_owned()
    }

    /// Whether the producer sampled it (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// As the remote parent of a span.
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        )
    }

    /// A valid span context's `traceparent`.
    pub fn of(cx: &SpanContext) -> Option<Self> {
        cx.is_valid().then(|| Self {
            trace_id: cx.trace_id().to_bytes(),
            span_id: cx.span_id().to_bytes(),
            flags: cx.trace_flags().to_u8(),
        })
    }
}

/// `2 * N` lower-case hex digits as bytes.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_round_trips() {
        let tp = TraceParent::parse(EXAMPLE.as_bytes()).expect("valid");
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(tp.sampled());
        assert_eq!(tp.to_header(), EXAMPLE);
        assert_eq!(TraceParent::of(&tp.span_context()), Some(tp));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let tp = TraceParent::parse(v.as_bytes()).expect("valid");
        assert!(!tp.sampled());
        assert_eq!(
            tp.to_header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }
}
