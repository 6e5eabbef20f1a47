//! The second-order check: a strict local maximum has a negative definite Hessian.

use super::*;

/// Check that `mean_ll` has a strict local maximum at `theta`: Gaussian elimination of
/// the negated finite-difference Hessian must give pivots above [`HESSIAN_FLOOR`].
/// Returns the smallest pivot.
pub(super) fn hessian_check(mean_ll: &dyn Fn(&[f64]) -> f64, theta: &[f64]) -> Result<f64, String> {
    let h = negated_hessian(mean_ll, theta);
    if h.iter().flatten().any(|v| !v.is_finite()) {
        return Err("the Hessian at the optimum is not finite".to_owned());
    }
    min_elimination_pivot(h).ok_or_else(|| {
        "the Hessian at the optimum is not negative definite: the likelihood is flat or a \
         ridge in some direction, so the parameters are not identified"
            .to_owned()
    })
}

pub(super) fn negated_hessian(f: &dyn Fn(&[f64]) -> f64, theta: &[f64]) -> Vec<Vec<f64>> {
    let at = |moves: &[(usize, f64)]| {
        let mut p = theta.to_vec();
        for &(i, sign) in moves {
            p[i] += sign * HESSIAN_STEP;
        }
        f(&p)
    };
    let centre = f(theta);
    let h2 = HESSIAN_STEP * HESSIAN_STEP;
    let entry = |i: usize, j: usize| {
        if i == j {
            -(at(&[(i, 1.0)]) - 2.0 * centre + at(&[(i, -1.0)])) / h2
        } else {
            -(at(&[(i, 1.0), (j, 1.0)]) - at(&[(i, 1.0), (j, -1.0)]) - at(&[(i, -1.0), (j, 1.0)])
                + at(&[(i, -1.0), (j, -1.0)]))
                / (4.0 * h2)
        }
    };
    let n = theta.len();
    (0..n)
        .map(|i| (0..n).map(|j| entry(i, j)).collect())
        .collect()
}

/// Smallest pivot of Gaussian elimination without pivoting (the diagonal of `LDLᵀ`) of a
/// symmetric matrix, or `None` if one is below [`HESSIAN_FLOOR`] (not positive definite, or
/// too close to singular).
pub(super) fn min_elimination_pivot(mut m: Vec<Vec<f64>>) -> Option<f64> {
    let mut smallest = f64::INFINITY;
    for k in 0..m.len() {
        let (done, rest) = m.split_at_mut(k + 1);
        let row_k = &done[k];
        let pivot = row_k[k];
        if pivot.is_nan() || pivot <= HESSIAN_FLOOR {
            return None;
        }
        smallest = smallest.min(pivot);
        for row in rest.iter_mut() {
            let factor = row[k] / pivot;
            for (value, &above) in row.iter_mut().zip(row_k).skip(k + 1) {
                *value -= factor * above;
            }
        }
    }
    Some(smallest)
}
