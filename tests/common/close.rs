//! The one comparison every GPU-vs-CPU test uses.

/// Largest |v| of a tensor (the scale its tolerance is relative to).
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Passes iff |got - want| <= atol + rtol * |want| for every element; otherwise
/// panics naming the tensor and its worst element (index, both values, error).
/// Returns the largest absolute error, for reports.
pub fn assert_close(name: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{name}: length {} != {}", got.len(), want.len());
    let mut worst = (0.0f64, 0usize); // (error / allowed, index)
    let mut max_err = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        let ratio = if err.is_nan() { f64::INFINITY } else { err / (atol + rtol * w.abs()) };
        max_err = max_err.max(if err.is_nan() { f64::INFINITY } else { err });
        if ratio > worst.0 || (ratio.is_infinite() && worst.0.is_finite()) {
            worst = (ratio, i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= 1.0,
        "{name}: worst element {i} of {}: got {:e}, want {:e}, |err| {:e} > atol {atol:e} + rtol {rtol:e} * |want|",
        got.len(),
        got[i],
        want[i],
        (f64::from(got[i]) - want[i]).abs()
    );
    max_err
}
