//! Identifiers parsed once at the edge. Past the edge, an id is known to be non-empty, bounded
//! and free of control characters.

use std::fmt;

/// Longest customer id accepted unless the configuration says otherwise.
pub const DEFAULT_MAX_ID_LEN: usize = 128;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{what} is {len} bytes long, the limit is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0} contains control characters")]
    ControlCharacters(&'static str),
}

fn check(what: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.trim().is_empty() {
        return Err(IdError::Empty(what));
    }
    if raw.len() > max {
        return Err(IdError::TooLong {
            what,
            len: raw.len(),
            max,
        });
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::ControlCharacters(what));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an id of at most `max_len` bytes.
            pub fn parse(raw: &str, max_len: usize) -> Result<Self, IdError> {
                check($what, raw, max_len)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A customer, as the e-commerce platform identifies them. Also the Kafka key.
    CustomerId,
    "customer_id"
);
id_type!(
    /// An input event's id. Producers resend; Kizuna deduplicates on it.
    EventId,
    "event_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        let id = CustomerId::parse("cust-00042", 128).expect("valid id");
        assert_eq!(id.as_str(), "cust-00042");
    }

    #[test]
    fn rejects_empty_blank_long_and_control() {
        assert_eq!(
            CustomerId::parse("", 128),
            Err(IdError::Empty("customer_id"))
        );
        assert_eq!(
            CustomerId::parse("   ", 128),
            Err(IdError::Empty("customer_id"))
        );
        assert!(matches!(
            CustomerId::parse(&"x".repeat(129), 128),
            Err(IdError::TooLong { len: 129, .. })
        ));
        assert!(CustomerId::parse(&"x".repeat(128), 128).is_ok());
        assert_eq!(
            EventId::parse("a\u{0}b", 128),
            Err(IdError::ControlCharacters("event_id"))
        );
    }
}
