//! The tier programme: named tiers and what qualifies for each, read from a TOML file.

use std::path::Path;

use super::money::Currency;

/// One tier's requirements. All must hold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    pub name: String,
    /// Minimum qualifying spend, minor units of the programme currency.
    #[serde(default)]
    pub min_spend_minor: i64,
    /// Minimum number of (net) orders.
    #[serde(default)]
    pub min_orders: u32,
}

/// The whole programme. Tiers are listed from the entry tier upwards.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Programme {
    pub currency: Currency,
    pub tiers: Vec<TierRule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgrammeFile {
    currency: Currency,
    #[serde(rename = "tier")]
    tiers: Vec<TierRule>,
}

/// Why a programme file was refused. The message names the file, and the line where it can.
#[derive(Debug, thiserror::Error)]
pub enum ProgrammeError {
    #[error("cannot read tier programme {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid tier programme {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Programme {
    /// Reads and checks a programme file.
    pub fn load(path: &Path) -> Result<Self, ProgrammeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProgrammeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ProgrammeError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks programme TOML. Errors name the line and the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: ProgrammeFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let programme = Programme {
            currency: file.currency,
            tiers: file.tiers,
        };
        programme.check(text)?;
        Ok(programme)
    }

    fn check(&self, text: &str) -> Result<(), String> {
        let line_of = |name: &str| {
            text.lines()
                .position(|l| l.contains(&format!("\"{name}\"")))
                .map(|i| format!("line {}: ", i + 1))
                .unwrap_or_default()
        };
        let Some(entry) = self.tiers.first() else {
            return Err("at least one [[tier]] is required".into());
        };
        if entry.min_spend_minor != 0 || entry.min_orders != 0 {
            return Err(format!(
                "{}the first tier {:?} is the entry tier and must have no requirements",
                line_of(&entry.name),
                entry.name
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            if tier.name.trim().is_empty() {
                return Err(format!("tier #{} has an empty name", i + 1));
            }
            if !seen.insert(tier.name.as_str()) {
                return Err(format!(
                    "{}tier {:?} is defined twice",
                    line_of(&tier.name),
                    tier.name
                ));
            }
            if tier.min_spend_minor < 0 {
                return Err(format!(
                    "{}tier {:?}: min_spend_minor must not be negative",
                    line_of(&tier.name),
                    tier.name
                ));
            }
            if i > 0 {
                let below = &self.tiers[i - 1];
                if tier.min_spend_minor < below.min_spend_minor
                    || tier.min_orders < below.min_orders
                {
                    return Err(format!(
                        "{}tier {:?} asks for less than the tier below it ({:?}); list tiers from the entry tier upwards",
                        line_of(&tier.name),
                        tier.name,
                        below.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The entry tier's name.
    pub fn entry_tier(&self) -> &str {
        self.tiers.first().map(|t| t.name.as_str()).unwrap_or("")
    }

    /// Position of a tier by name; unknown names (a tier removed from the programme) rank as
    /// the entry tier.
    pub fn rank(&self, name: &str) -> usize {
        self.tiers.iter().position(|t| t.name == name).unwrap_or(0)
    }

    /// The highest tier whose requirements the metrics meet.
    pub fn qualifying_tier(&self, spend_minor: i64, orders: f64) -> &TierRule {
        self.tiers
            .iter()
            .rev()
            .find(|t| spend_minor >= t.min_spend_minor && orders >= f64::from(t.min_orders))
            .unwrap_or(&self.tiers[0])
    }
}

#[cfg(test)]
pub(crate) fn sample() -> Programme {
    Programme::parse(
        r#"
currency = "JPY"
[[tier]]
name = "member"
[[tier]]
name = "silver"
min_spend_minor = 30000
min_orders = 2
[[tier]]
name = "gold"
min_spend_minor = 100000
min_orders = 3
"#,
    )
    .expect("sample programme is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_tier_met_on_every_requirement() {
        let p = sample();
        assert_eq!(p.qualifying_tier(0, 0.0).name, "member");
        assert_eq!(p.qualifying_tier(30_000, 2.0).name, "silver");
        assert_eq!(p.qualifying_tier(29_999, 5.0).name, "member");
        assert_eq!(p.qualifying_tier(500_000, 2.0).name, "silver");
        assert_eq!(p.qualifying_tier(100_000, 3.0).name, "gold");
    }

    #[test]
    fn rejects_bad_files_with_the_line() {
        let err =
            Programme::parse("currency = \"JPY\"\n[[tier]]\nname = \"a\"\nmin_orders = \"x\"\n")
                .expect_err("wrong type");
        assert!(err.contains("line 4"), "{err}");

        let err = Programme::parse(
            "currency = \"JPY\"\n[[tier]]\nname = \"a\"\n[[tier]]\nname = \"b\"\nmin_spend_minor = 5\n[[tier]]\nname = \"c\"\nmin_spend_minor = 1\n",
        )
        .expect_err("not ascending");
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("\"c\""), "{err}");

        let err = Programme::parse("currency = \"JPY\"\n[[tier]]\nname = \"a\"\nmin_orders = 1\n")
            .expect_err("entry tier with requirements");
        assert!(err.contains("entry tier"), "{err}");

        let err = Programme::parse("currency = \"JPY\"\n[[tier]]\nname = \"a\"\nbogus = 1\n")
            .expect_err("unknown field");
        assert!(err.contains("bogus"), "{err}");
    }
}
