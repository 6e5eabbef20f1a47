//! Confluent Schema Registry framing ("wire format"), pure: no I/O here. A framed message is
//!
//! ```text
//! 0x00 | schema id (4 bytes, big-endian) | message indexes | protobuf payload
//! ```
//!
//! The message indexes say which message of the registered `.proto` file the payload is: a
//! zig-zag varint count, then that many zig-zag varint indexes (the path through nested
//! messages); the single byte `0` stands for `[0]`, the file's first message. A message whose
//! first byte is not `0` is not framed: JSON starts with `{` or whitespace, and a binary
//! protobuf message never starts with `0` (field number 0 does not exist).
//!
//! Fetching a schema by id is I/O and lives in `crate::registry`; what is checked here is what
//! the fetched schema says: package `kizuna.v1` and, at the frame's indexes, the message the
//! topic carries.

use kizuna_proto::SCHEMA_VERSION;

use crate::domain::rejection::{RejectReason, Rejection};
use crate::inputs::decode::InputKind;

/// The first byte of a framed message.
pub const MAGIC: u8 = 0;

/// More nesting than any real schema has; a larger count is refused before allocating.
pub const MAX_INDEXES: usize = 32;

/// A framed message, borrowed from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub schema_id: u32,
    /// Path of the message in the schema: top-level index, then nested indexes.
    pub indexes: Vec<i32>,
    /// The protobuf payload after the frame.
    pub body: &'a [u8],
}

/// Whether `payload` is registry-framed (starts with the magic byte). Decides between this
/// module and the unframed decoding.
pub fn is_framed(payload: &[u8]) -> bool {
    payload.first() == Some(&MAGIC)
}

fn truncated(what: &str, len: usize) -> Rejection {
    Rejection::new(
        RejectReason::Unparseable,
        format!("registry frame: truncated in the {what} ({len} bytes in all)"),
    )
}

/// Reads one zig-zag varint (at most 5 bytes: the values are 32-bit) from `bytes` at `*at`.
fn read_zigzag(bytes: &[u8], at: &mut usize, what: &str) -> Result<i32, Rejection> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some(&b) = bytes.get(*at) else {
            return Err(truncated(what, bytes.len()));
        };
        *at += 1;
        if i == 4 && b > 0x0f {
            return Err(Rejection::new(
                RejectReason::Unparseable,
                format!("registry frame: the {what} is a varint over 32 bits"),
            ));
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // zig-zag: 0 → 0, 1 → -1, 2 → 1, 3 → -2 …
            return Ok(((value >> 1) as i32) ^ -((value & 1) as i32));
        }
    }
    Err(Rejection::new(
        RejectReason::Unparseable,
        format!("registry frame: the {what} is a varint over 32 bits"),
    ))
}

/// Parses the frame of a message that `is_framed`. Never panics, whatever the bytes.
pub fn parse(payload: &[u8]) -> Result<Frame<'_>, Rejection> {
    if !is_framed(payload) {
        return Err(Rejection::new(
            RejectReason::Unparseable,
            "registry frame: the first byte is not the magic byte 0",
        ));
    }
    let id: [u8; 4] = payload
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| truncated("schema id", payload.len()))?;
    let schema_id = u32::from_be_bytes(id);
    let mut at = 5;
    let count = read_zigzag(payload, &mut at, "message index count")?;
    let indexes = if count == 0 {
        vec![0]
    } else {
        let n = usize::try_from(count)
            .ok()
            .filter(|n| *n <= MAX_INDEXES)
            .ok_or_else(|| {
                Rejection::new(
                    RejectReason::Unparseable,
                    format!(
                        "registry frame: message index count {count} is not between 0 and {MAX_INDEXES}"
                    ),
                )
            })?;
        let mut indexes = Vec::with_capacity(n);
        for _ in 0..n {
            let index = read_zigzag(payload, &mut at, "message indexes")?;
            if index < 0 {
                return Err(Rejection::new(
                    RejectReason::Unparseable,
                    format!("registry frame: negative message index {index}"),
                ));
            }
            indexes.push(index);
        }
        indexes
    };
    Ok(Frame {
        schema_id,
        indexes,
        body: payload.get(at..).unwrap_or_default(),
    })
}

fn write_zigzag(value: i32, out: &mut Vec<u8>) {
    let mut v = ((value << 1) ^ (value >> 31)) as u32;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Frames `body` with `schema_id` and `indexes` (`[0]` as the single byte 0, as Confluent's
/// serializers write it).
pub fn write(schema_id: u32, indexes: &[i32], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 6 + indexes.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    if indexes == [0] {
        out.push(0);
    } else {
        write_zigzag(i32::try_from(indexes.len()).unwrap_or(i32::MAX), &mut out);
        for i in indexes {
            write_zigzag(*i, &mut out);
        }
    }
    out.extend_from_slice(body);
    out
}

/// A message of a schema, with its nested messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDef {
    pub name: String,
    pub nested: Vec<MessageDef>,
}

/// What Kizuna needs of a registered `.proto` schema: its package and its messages, in
/// declaration order (the order message indexes count in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoSchema {
    pub package: String,
    pub messages: Vec<MessageDef>,
}

fn message_def(m: &prost_types::DescriptorProto) -> MessageDef {
    MessageDef {
        name: m.name().to_owned(),
        nested: m.nested_type.iter().map(message_def).collect(),
    }
}

impl ProtoSchema {
    /// Parses `.proto` source text as the registry returns it (imports are not resolved:
    /// only this file's package and messages matter).
    pub fn parse(text: &str) -> Result<Self, String> {
        let file = protox_parse::parse("registered.proto", text).map_err(|e| e.to_string())?;
        Ok(Self {
            package: file.package().to_owned(),
            messages: file.message_type.iter().map(message_def).collect(),
        })
    }

    /// The full name (`package.Outer.Inner`) of the message at `indexes`, if there is one.
    pub fn message_at(&self, indexes: &[i32]) -> Option<String> {
        let mut level = &self.messages;
        let mut names = Vec::with_capacity(indexes.len());
        for i in indexes {
            let m = level.get(usize::try_from(*i).ok()?)?;
            names.push(m.name.as_str());
            level = &m.nested;
        }
        if names.is_empty() {
            return None;
        }
        let name = names.join(".");
        Some(if self.package.is_empty() {
            name
        } else {
            format!("{}.{name}", self.package)
        })
    }

    /// The indexes of the top-level message `name` (e.g. `TierChanged`).
    pub fn index_of(&self, name: &str) -> Option<Vec<i32>> {
        let i = self.messages.iter().position(|m| m.name == name)?;
        Some(vec![i32::try_from(i).ok()?])
    }
}

/// The `kizuna.v1` message a topic carries, fully qualified.
pub fn expected_message(kind: InputKind) -> String {
    let name = match kind {
        InputKind::Purchase => "Purchase",
        InputKind::SupportTicket => "SupportTicket",
        InputKind::Survey => "SurveyResponse",
        InputKind::Redemption => "Redemption",
    };
    format!("{SCHEMA_VERSION}.{name}")
}

/// Checks that the message at `frame.indexes` of `schema` (registered as `schema_id`) is the
/// `kizuna.v1` message the topic carries.
pub fn check(
    schema: &ProtoSchema,
    schema_id: u32,
    indexes: &[i32],
    kind: InputKind,
) -> Result<(), Rejection> {
    let expected = expected_message(kind);
    let found = schema.message_at(indexes).ok_or_else(|| {
        Rejection::new(
            RejectReason::WrongSchema,
            format!(
                "schema id {schema_id} (package {:?}) has no message at indexes {indexes:?}; expected {expected}",
                schema.package
            ),
        )
    })?;
    if schema.package != SCHEMA_VERSION || found != expected {
        return Err(Rejection::new(
            RejectReason::WrongSchema,
            format!("schema id {schema_id} at indexes {indexes:?} is {found}, expected {expected}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUTS: &str = include_str!("../../../../proto/kizuna/v1/inputs.proto");

    #[test]
    fn single_zero_byte_means_the_first_message() {
        let bytes = [0, 0, 0, 0, 42, 0, 0x0a, 0x01, b'x'];
        let f = parse(&bytes).expect("framed");
        assert_eq!(f.schema_id, 42);
        assert_eq!(f.indexes, vec![0]);
        assert_eq!(f.body, &[0x0a, 0x01, b'x']);
    }

    #[test]
    fn indexes_are_zigzag_varints() {
        // count 2 (zig-zag 4), indexes 1 (2) and 70 (140 = 0x8c 0x01).
        let bytes = [0, 0x00, 0x01, 0x00, 0x02, 4, 2, 0x8c, 0x01, 0xff];
        let f = parse(&bytes).expect("framed");
        assert_eq!(f.schema_id, 65_538);
        assert_eq!(f.indexes, vec![1, 70]);
        assert_eq!(f.body, &[0xff]);
        // Round trip through `write`, also for [0] and deeper paths.
        for indexes in [vec![0], vec![1], vec![3, 0, 200], vec![1_000_000]] {
            let framed = write(7, &indexes, b"body");
            let f = parse(&framed).expect("round trip");
            assert_eq!((f.schema_id, f.indexes, f.body), (7, indexes, &b"body"[..]));
        }
        assert_eq!(write(1, &[0], b""), vec![0, 0, 0, 0, 1, 0]);
        assert_eq!(write(1, &[1], b""), vec![0, 0, 0, 0, 1, 2, 2]);
    }

    #[test]
    fn truncated_frames_are_refused_with_a_clear_detail() {
        let cases: [(&[u8], &str); 5] = [
            (&[0], "schema id"),
            (&[0, 0, 0, 1], "schema id"),
            (&[0, 0, 0, 0, 1], "message index count"),
            (&[0, 0, 0, 0, 1, 4, 2], "message indexes"),
            (&[0, 0, 0, 0, 1, 0x80], "message index count"),
        ];
        for (bytes, what) in cases {
            let err = parse(bytes).expect_err("truncated");
            assert_eq!(err.reason, RejectReason::Unparseable);
            assert!(
                err.detail.contains("truncated") && err.detail.contains(what),
                "{bytes:?}: {}",
                err.detail
            );
        }
        let negative = parse(&[0, 0, 0, 0, 1, 1]).expect_err("count -1");
        assert!(
            negative.detail.contains("not between"),
            "{}",
            negative.detail
        );
        let huge = parse(&[0, 0, 0, 0, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f]).expect_err("huge count");
        assert!(huge.detail.contains("not between"), "{}", huge.detail);
        let long = parse(&[0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).expect_err("long");
        assert!(long.detail.contains("over 32 bits"), "{}", long.detail);
        assert!(parse(b"{\"a\":1}").is_err());
        assert!(!is_framed(b"{\"a\":1}") && !is_framed(b"") && is_framed(&[0]));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic xorshift stream of byte strings, all starting with the magic byte.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = bytes.first_mut() {
                *b = MAGIC;
            }
            if let Ok(f) = parse(&bytes) {
                assert!(f.indexes.len() <= MAX_INDEXES);
                assert!(f.body.len() < bytes.len());
            }
        }
    }

    #[test]
    fn the_kizuna_inputs_schema_names_its_messages_by_index() {
        let schema = ProtoSchema::parse(INPUTS).expect("inputs.proto parses");
        assert_eq!(schema.package, "kizuna.v1");
        assert_eq!(
            schema.message_at(&[1]).as_deref(),
            Some("kizuna.v1.Purchase")
        );
        assert_eq!(schema.index_of("SupportTicket"), Some(vec![2]));
        assert_eq!(schema.message_at(&[9]), None);
        assert_eq!(schema.message_at(&[1, 0]), None);
        assert!(check(&schema, 5, &[1], InputKind::Purchase).is_ok());
        assert!(check(&schema, 5, &[2], InputKind::SupportTicket).is_ok());
        assert!(check(&schema, 5, &[3], InputKind::Survey).is_ok());
        // Appended after InputEvent (index 4): the earlier indexes stay.
        assert_eq!(schema.index_of("Redemption"), Some(vec![5]));
        assert!(check(&schema, 5, &[5], InputKind::Redemption).is_ok());
        let wrong = check(&schema, 5, &[3], InputKind::Purchase).expect_err("a survey");
        assert_eq!(wrong.reason, RejectReason::WrongSchema);
        assert!(
            wrong.detail.contains("kizuna.v1.SurveyResponse")
                && wrong.detail.contains("expected kizuna.v1.Purchase"),
            "{}",
            wrong.detail
        );
        let missing = check(&schema, 5, &[0, 4], InputKind::Purchase).expect_err("no such");
        assert_eq!(missing.reason, RejectReason::WrongSchema);
    }

    #[test]
    fn another_package_is_the_wrong_schema_even_with_the_same_name() {
        let schema = ProtoSchema::parse(
            "syntax = \"proto3\";\npackage shop.v1;\nmessage Purchase { string id = 1; message Line { int32 q = 1; } }\n",
        )
        .expect("parses");
        assert_eq!(
            schema.message_at(&[0, 0]).as_deref(),
            Some("shop.v1.Purchase.Line")
        );
        let err = check(&schema, 9, &[0], InputKind::Purchase).expect_err("other package");
        assert_eq!(err.reason, RejectReason::WrongSchema);
        assert!(err.detail.contains("shop.v1.Purchase"), "{}", err.detail);
        assert!(ProtoSchema::parse("{\"type\": \"record\"}").is_err());
    }
}
