//! Comparing a kernel's output with its f64 reference.
//!
//! An element passes when `|got - want| <= atol + rtol * |want|` (and neither is NaN). The
//! report carries the largest error, the element where the error is largest relative to what
//! is allowed, and the normalised mean squared error `Σ(got - want)² / Σ want²`.

use serde::Serialize;

/// Allowed error: absolute plus relative to the reference value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub passed: bool,
    pub max_abs_err: f64,
    /// The largest `error / allowed error` over the elements: under 1 passes.
    pub worst_ratio: f64,
    pub nmse: f64,
    /// Elements outside the tolerance (NaN included).
    pub bad: usize,
    /// The element with the largest error relative to its allowance: index, got, want.
    pub worst: Option<(usize, f64, f64)>,
}

pub fn compare(got: &[f32], want: &[f64], tol: Tolerance) -> Comparison {
    assert_eq!(got.len(), want.len(), "output and reference lengths differ");
    let mut max_abs_err = 0.0_f64;
    let mut worst_ratio = -1.0_f64;
    let mut worst = None;
    let mut bad = 0;
    let (mut err_sq, mut ref_sq) = (0.0, 0.0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let err = (g - w).abs();
        let allowed = tol.atol + tol.rtol * w.abs();
        // NaN makes `ratio` NaN; treat it as infinitely bad.
        let ratio = if err.is_nan() {
            f64::INFINITY
        } else if err == 0.0 {
            0.0
        } else {
            err / allowed
        };
        let within = err <= allowed; // false for NaN
        if !within {
            bad += 1;
        }
        if ratio > worst_ratio {
            worst_ratio = ratio;
            worst = Some((i, g, w));
        }
        max_abs_err = max_abs_err.max(if err.is_nan() { f64::INFINITY } else { err });
        err_sq += (g - w) * (g - w);
        ref_sq += w * w;
    }
    let nmse = if ref_sq > 0.0 {
        err_sq / ref_sq
    } else {
        err_sq
    };
    Comparison {
        passed: bad == 0,
        max_abs_err,
        worst_ratio,
        nmse,
        bad,
        worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        atol: 1e-3,
        rtol: 1e-2,
    };

    #[test]
    fn within_tolerance_passes() {
        let c = compare(&[1.005, -0.0005], &[1.0, 0.0], TOL);
        assert!(c.passed);
        assert_eq!(c.bad, 0);
        assert!((c.max_abs_err - 0.005).abs() < 1e-6);
    }

    #[test]
    fn outside_tolerance_fails_and_names_the_element() {
        let c = compare(&[1.0, 2.5, 3.0], &[1.0, 2.0, 3.0], TOL);
        assert!(!c.passed);
        assert_eq!(c.bad, 1);
        assert_eq!(c.worst.unwrap().0, 1);
    }

    #[test]
    fn nan_fails_even_where_the_reference_is_zero() {
        let c = compare(&[0.0, f32::NAN], &[0.0, 0.0], TOL);
        assert!(!c.passed);
        assert_eq!(c.worst.unwrap().0, 1);
        assert!(c.max_abs_err.is_infinite());
    }
}
