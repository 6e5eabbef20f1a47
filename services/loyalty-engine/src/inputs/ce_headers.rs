//! An input message's own CloudEvents headers (`ce_*`, Kafka binary mode), kept as they came so
//! that a dead letter can carry them as extensions (`engine::outputs::dead_letter`).
//!
//! Every consumed message carries them until its batch is written, so they are packed into one
//! buffer (one allocation per message, none without `ce_*` headers): per header, the name's
//! length (u16, big-endian), the name, the value's length (u32, big-endian), the value.

/// The `ce_*` headers of one input message, in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CeHeaders {
    packed: Vec<u8>,
}

/// The prefix of a CloudEvents attribute in Kafka binary mode.
pub const CE_PREFIX: &str = "ce_";

/// The buffer's size at the first header kept.
const FIRST_CAPACITY: usize = 256;

impl CeHeaders {
    /// Keeps `name: value` if `name` is a `ce_*` header with a value; ignores anything else
    /// (and a name or value too long for the packing, which no Kafka header is in practice).
    pub fn keep(&mut self, name: &str, value: Option<&[u8]>) {
        let Some(value) = value else { return };
        if !name.starts_with(CE_PREFIX) {
            return;
        }
        let (Ok(name_len), Ok(value_len)) = (u16::try_from(name.len()), u32::try_from(value.len()))
        else {
            return;
        };
        // One allocation for a message's usual few attributes (about 150 bytes).
        let needed = 6 + name.len() + value.len();
        if self.packed.capacity() == 0 {
            self.packed.reserve(needed.max(FIRST_CAPACITY));
        }
        self.packed.extend_from_slice(&name_len.to_be_bytes());
        self.packed.extend_from_slice(name.as_bytes());
        self.packed.extend_from_slice(&value_len.to_be_bytes());
        self.packed.extend_from_slice(value);
    }

    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// The kept headers, `(name, value)`, in the order they came.
    pub fn iter(&self) -> CeHeadersIter<'_> {
        CeHeadersIter { rest: &self.packed }
    }
}

/// The headers of a `CeHeaders`, in the order they came.
#[derive(Debug, Clone)]
pub struct CeHeadersIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for CeHeadersIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name_len, rest) = self.rest.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*name_len)))?;
        let (value_len, rest) = rest.split_first_chunk::<4>()?;
        let value_len = usize::try_from(u32::from_be_bytes(*value_len)).ok()?;
        let (value, rest) = rest.split_at_checked(value_len)?;
        self.rest = rest;
        // Only `keep` writes the buffer, from a `&str` name.
        Some((std::str::from_utf8(name).ok()?, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ce_headers_with_a_value_are_kept_in_order() {
        let mut h = CeHeaders::default();
        assert!(h.is_empty());
        h.keep("content-type", Some(b"application/json"));
        h.keep("ce_id", Some(b"evt-1"));
        h.keep("ce_subject", None);
        h.keep("traceparent", Some(b"00-abc"));
        h.keep("ce_type", Some(b"kizuna.v1.Purchase"));
        h.keep("ce_empty", Some(b""));
        h.keep("ce_binary", Some(&[0xff, 0x00, 0xfe]));
        let kept: Vec<(&str, &[u8])> = h.iter().collect();
        assert_eq!(
            kept,
            vec![
                ("ce_id", b"evt-1".as_slice()),
                ("ce_type", b"kizuna.v1.Purchase".as_slice()),
                ("ce_empty", b"".as_slice()),
                ("ce_binary", [0xff, 0x00, 0xfe].as_slice()),
            ]
        );
    }

    #[test]
    fn a_messages_usual_attributes_take_one_allocation() {
        let mut h = CeHeaders::default();
        h.keep("ce_specversion", Some(b"1.0"));
        h.keep("ce_id", Some(b"7d3c1f0e-6a47-4a55-9d5a-3c7f7b2f1e01"));
        h.keep("ce_type", Some(b"kizuna.v1.Purchase"));
        h.keep("ce_source", Some(b"shop/pos-7"));
        h.keep("ce_time", Some(b"2026-12-01T09:00:00.123Z"));
        assert_eq!(h.packed.capacity(), FIRST_CAPACITY);
        assert_eq!(h.iter().count(), 5);
    }

    #[test]
    fn no_ce_headers_allocate_nothing() {
        let mut h = CeHeaders::default();
        h.keep("content-type", Some(b"application/json"));
        assert!(h.is_empty());
        assert_eq!(h.packed.capacity(), 0);
        assert_eq!(h.iter().count(), 0);
    }
}
