//! Expected customer value over a finite horizon: purchases (BG/NBD, Pareto/NBD or MBG/NBD) ×
//! Gamma-Gamma spend.
//!
//! `CLV = E[M | x, m_x] · Σₖ (E[Y(k·Δ)] − E[Y((k−1)·Δ)]) / (1 + d)ᵏ`, `k = 1..n`, `Δ = H/n`:
//! the horizon `H` is cut into `n` equal periods, the purchases expected in period `k` (eq. 10
//! of the BG/NBD paper, conditional on the customer's history) are discounted at the rate `d`
//! per period as if they all happened at the period's end, and multiplied by the customer's
//! expected transaction value. The product is valid because the Gamma-Gamma model assumes that
//! spend is independent of the purchase process.
//!
//! With `d = 0` the sum telescopes to `E[Y(H)]`, so the result is the plain undiscounted value
//! `E[Y(H)] · E[M]` whatever `n`. The value is revenue: apply a margin outside.

use super::gamma_gamma::GammaGammaParams;
use super::purchase::PurchaseForecast;
use super::{CustomerSummary, ModelError, duration};

/// The forecast horizon and its discounting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClvHorizon {
    /// Horizon length `H`, in the time unit of the BG/NBD parameters.
    pub length: f64,
    /// Number `n ≥ 1` of equal discounting periods.
    pub periods: u32,
    /// Discount rate `d > −1` per period (`0` for no discounting).
    pub discount_rate: f64,
}

impl ClvHorizon {
    /// No discounting over `length`.
    pub fn undiscounted(length: f64) -> Self {
        Self {
            length,
            periods: 1,
            discount_rate: 0.0,
        }
    }

    fn validate(&self) -> Result<(), ModelError> {
        duration("horizon length", self.length)?;
        if self.periods == 0 {
            return Err(ModelError::InvalidInput(
                "a horizon needs at least one period".to_owned(),
            ));
        }
        if !(self.discount_rate.is_finite() && self.discount_rate > -1.0) {
            return Err(ModelError::InvalidInput(format!(
                "discount rate {} must be finite and above -1",
                self.discount_rate
            )));
        }
        Ok(())
    }
}

/// Expected (discounted) revenue from `customer` over `horizon` (see the module docs).
/// `mean_spend` is `m_x`, the mean value of the customer's `x` repeat purchases; it is ignored
/// when `x = 0`, and the population mean spend is used instead.
///
/// # Errors
/// [`ModelError::InvalidInput`] for an invalid horizon or `m_x`; any error of
/// [`PurchaseForecast::expected_purchases_conditional`] or [`GammaGammaParams::expected_spend`]
/// (e.g. `x = 0` with `q ≤ 1`).
pub fn clv(
    purchases: &(impl PurchaseForecast + ?Sized),
    spend: &GammaGammaParams,
    customer: &CustomerSummary,
    mean_spend: f64,
    horizon: &ClvHorizon,
) -> Result<f64, ModelError> {
    horizon.validate()?;
    let value = spend.expected_spend(customer.x(), mean_spend)?;
    Ok(value * discounted_purchases(purchases, customer, horizon)?)
}

/// `Σₖ (E[Y(kΔ)] − E[Y((k−1)Δ)]) / (1 + d)ᵏ`.
fn discounted_purchases(
    purchases: &(impl PurchaseForecast + ?Sized),
    customer: &CustomerSummary,
    horizon: &ClvHorizon,
) -> Result<f64, ModelError> {
    if horizon.discount_rate == 0.0 {
        return purchases.expected_purchases_conditional(horizon.length, customer);
    }
    let step = horizon.length / f64::from(horizon.periods);
    let factor = 1.0 / (1.0 + horizon.discount_rate);
    let mut previous = 0.0;
    let mut discount = 1.0;
    let mut total = 0.0;
    for k in 1..=horizon.periods {
        let cumulative = purchases.expected_purchases_conditional(step * f64::from(k), customer)?;
        discount *= factor;
        total += (cumulative - previous) * discount;
        previous = cumulative;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::bgnbd::BgNbdParams;
    use super::super::testkit::assert_rel;
    use super::*;

    fn cdnow() -> (BgNbdParams, GammaGammaParams) {
        (
            BgNbdParams::new(0.243, 4.414, 0.793, 2.426).expect("valid"),
            GammaGammaParams::new(6.25, 3.74, 15.44).expect("valid"),
        )
    }

    fn example() -> CustomerSummary {
        CustomerSummary::new(2, 30.43, 38.86).expect("valid")
    }

    #[test]
    fn undiscounted_clv_is_purchases_times_spend() {
        // E[Y(39) | 2, 30.43, 38.86] = 1.2260282 (published 1.226; mpmath 1.22602817477).
        // E[M | x = 2, m_x = 30] = 6.25 × (15.44 + 60) / (12.5 + 2.74) = 471.5 / 15.24
        //                        = 30.938320.
        // CLV = 1.2260282 × 30.938320 = 37.931252.
        let (bg, gg) = cdnow();
        let value = clv(&bg, &gg, &example(), 30.0, &ClvHorizon::undiscounted(39.0)).expect("ok");
        assert!((value - 37.931_252).abs() < 1e-5, "{value}");
    }

    #[test]
    fn zero_rate_with_many_periods_telescopes() {
        let (bg, gg) = cdnow();
        let plain = clv(&bg, &gg, &example(), 30.0, &ClvHorizon::undiscounted(39.0)).expect("ok");
        let split = ClvHorizon {
            length: 39.0,
            periods: 13,
            discount_rate: 0.0,
        };
        assert_rel(
            clv(&bg, &gg, &example(), 30.0, &split).expect("ok"),
            plain,
            1e-14,
        );
    }

    #[test]
    fn discounting_lowers_value_within_bounds() {
        // Every period's purchases are discounted by between (1+d)^−1 and (1+d)^−n.
        let (bg, gg) = cdnow();
        let plain = clv(&bg, &gg, &example(), 30.0, &ClvHorizon::undiscounted(39.0)).expect("ok");
        let weekly = ClvHorizon {
            length: 39.0,
            periods: 39,
            discount_rate: 0.002,
        };
        let discounted = clv(&bg, &gg, &example(), 30.0, &weekly).expect("ok");
        assert!(discounted < plain / 1.002 && discounted > plain / 1.002_f64.powi(39));
    }

    #[test]
    fn customer_without_repeat_purchases_uses_population_spend() {
        let (bg, gg) = cdnow();
        let fresh = CustomerSummary::new_customer();
        let value = clv(&bg, &gg, &fresh, f64::NAN, &ClvHorizon::undiscounted(39.0)).expect("ok");
        // E[X(39)] = 1.1967232 (mpmath) × population mean pγ/(q−1) 35.218978 = 42.147368.
        assert!((value - 1.196_723_19 * 35.218_978).abs() < 1e-4, "{value}");
    }

    #[test]
    fn rejects_bad_horizons() {
        let (bg, gg) = cdnow();
        let bad = [
            ClvHorizon {
                length: -1.0,
                periods: 1,
                discount_rate: 0.0,
            },
            ClvHorizon {
                length: 1.0,
                periods: 0,
                discount_rate: 0.0,
            },
            ClvHorizon {
                length: 1.0,
                periods: 1,
                discount_rate: -1.0,
            },
        ];
        for horizon in bad {
            assert!(clv(&bg, &gg, &example(), 30.0, &horizon).is_err());
        }
    }
}
