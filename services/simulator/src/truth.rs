//! The ground truth for churn benchmarks: `customer_id,persona,churned_at`.

use std::io::Write;

use crate::calendar::rfc3339;
use crate::world::Truth;

/// Writes the CSV: a header, then one line per customer; `churned_at` is RFC 3339, empty for a
/// customer still active.
pub fn write_csv(rows: &[Truth], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "customer_id,persona,churned_at")?;
    for row in rows {
        let churned = row.churned_at.map(rfc3339).unwrap_or_default();
        writeln!(out, "{},{},{churned}", row.customer_id, row.persona)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persona::Persona;

    #[test]
    fn writes_a_header_and_one_line_per_customer() {
        let rows = [
            Truth {
                customer_id: "cust-00001".into(),
                persona: Persona::QuietChurner,
                churned_at: Some(1_750_000_000),
            },
            Truth {
                customer_id: "cust-00002".into(),
                persona: Persona::TrulyLoyal,
                churned_at: None,
            },
        ];
        let mut out = Vec::new();
        write_csv(&rows, &mut out).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "customer_id,persona,churned_at\n\
             cust-00001,quiet_churner,2025-06-15T15:06:40Z\n\
             cust-00002,truly_loyal,\n"
        );
    }
}
