//! Money in minor units of one ISO-4217 currency.

use std::fmt;

/// An ISO-4217 alphabetic currency code such as `JPY` or `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency {0:?} is not an ISO-4217 code (three capital letters)")]
    BadCurrency(String),
    #[error("amount {amount} is outside the accepted range 0..={max}")]
    OutOfRange { amount: i64, max: i64 },
}

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        let bytes = raw.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(MoneyError::BadCurrency(raw.chars().take(16).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount in minor units (yen, cents), bounded so that sums over a customer's
/// lifetime cannot overflow an `i64`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Minor(i64);

impl Minor {
    /// Largest single amount accepted by default: 10^12 minor units (ten billion yen, or ten
    /// billion dollars' worth of cents / 100). Anything larger is a producer bug.
    pub const DEFAULT_MAX: i64 = 1_000_000_000_000;

    pub const ZERO: Minor = Minor(0);

    pub fn parse(amount: i64, max: i64) -> Result<Self, MoneyError> {
        if (0..=max).contains(&amount) {
            Ok(Self(amount))
        } else {
            Err(MoneyError::OutOfRange { amount, max })
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::parse("JPY").expect("valid").as_str(), "JPY");
        assert!(Currency::parse("jpy").is_err());
        assert!(Currency::parse("YEN!").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn amounts_are_bounded() {
        assert_eq!(Minor::parse(0, 10).expect("zero ok").get(), 0);
        assert_eq!(Minor::parse(10, 10).expect("max ok").get(), 10);
        assert!(Minor::parse(11, 10).is_err());
        assert!(Minor::parse(-1, 10).is_err());
        assert!(Minor::parse(i64::MAX, Minor::DEFAULT_MAX).is_err());
    }
}
