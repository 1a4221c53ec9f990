//! The CMU-MultimodalSDK's alignment rule (`mmdataset.align` with a mean
//! collapse, mmsdk 0.0.6 `dataset.py`), reimplemented for one segment at a time.
//!
//! For a reference segment [a, b] (a labelled utterance):
//! - the segment is dropped altogether when |b - a| < EPSILON;
//! - a row [s, e] of another sequence intersects it when s < b + EPSILON and
//!   e > a - EPSILON (the SDK's `__intersect_and_copy`);
//! - the intersection is trimmed to [max(s, a), min(e, b)] and kept only when
//!   |min(e, b) - max(s, a)| > EPSILON (zero-length and boundary-touching rows go);
//! - the segment's feature is the unweighted mean of the kept rows, visited in
//!   order of start time (the SDK sorts each video's rows by start, stably).
//!
//! Non-finite values are averaged as they are (a -inf row makes the mean
//! -inf); cleaning happens after, in `clean`.

/// The SDK's `epsilon = 10e-4`, in seconds.
pub const EPSILON: f64 = 10e-4;

/// Whether the SDK drops a reference segment [a, b] (zero or very small length).
pub fn too_short(a: f64, b: f64) -> bool {
    (a - b).abs() < EPSILON
}

/// Whether row [s, e] survives intersection with segment [a, b], trimming included.
pub fn keeps(a: f64, b: f64, s: f64, e: f64) -> bool {
    let intersects = (b - s) > -EPSILON && (e - a) > -EPSILON;
    intersects && (s.max(a) - e.min(b)).abs() > EPSILON
}

/// Row indices of `intervals` (m rows of [start, end]) in order of start time,
/// ties kept in file order, as the SDK's `sorted(..., key=start)`.
pub fn by_start(intervals: &[[f64; 2]]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    order.sort_by(|&i, &j| intervals[i][0].total_cmp(&intervals[j][0]));
    order
}

/// Mean of the rows of `features` (row-major, `dim` columns) that `keeps`
/// segment [a, b], visiting rows in `order`. Accumulates in f64. Returns
/// `None` when no row survives (the SDK then has no entry for the segment).
pub fn mean(a: f64, b: f64, intervals: &[[f64; 2]], order: &[usize], features: &[f64], dim: usize) -> Option<Vec<f64>> {
    let mut sum = vec![0.0f64; dim];
    let mut n = 0usize;
    for &r in order {
        let [s, e] = intervals[r];
        if keeps(a, b, s, e) {
            for (acc, &x) in sum.iter_mut().zip(&features[r * dim..(r + 1) * dim]) {
                *acc += x;
            }
            n += 1;
        }
    }
    (n > 0).then(|| sum.into_iter().map(|x| x / n as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_rows_follow_the_epsilon_rule() {
        // Row ending exactly where the segment starts: intersects, but trims to zero length.
        assert!(!keeps(2.0, 4.0, 1.0, 2.0));
        // Row overlapping by less than epsilon: dropped after trimming.
        assert!(!keeps(2.0, 4.0, 1.0, 2.0005));
        // Overlapping by more than epsilon: kept.
        assert!(keeps(2.0, 4.0, 1.0, 2.01));
        // Zero-length row inside the segment: dropped.
        assert!(!keeps(2.0, 4.0, 3.0, 3.0));
        // Straddling both ends: kept.
        assert!(keeps(2.0, 4.0, 1.0, 5.0));
        // Far away: not intersecting.
        assert!(!keeps(2.0, 4.0, 5.0, 6.0));
        assert!(too_short(7.0, 7.0004));
        assert!(!too_short(7.0, 7.002));
    }

    #[test]
    fn mean_averages_kept_rows_in_start_order() {
        let iv = [[3.0, 3.5], [0.0, 1.0], [1.0, 2.0], [2.0, 3.0]];
        let feats = [10.0, 1.0, 2.0, 3.0]; // dim 1
        let order = by_start(&iv);
        assert_eq!(order, vec![1, 2, 3, 0]);
        // [0.5, 2.5] keeps rows 1, 2, 3: (1 + 2 + 3) / 3.
        assert_eq!(mean(0.5, 2.5, &iv, &order, &feats, 1), Some(vec![2.0]));
        assert_eq!(mean(5.0, 6.0, &iv, &order, &feats, 1), None);
        let inf = [f64::NEG_INFINITY, 1.0];
        assert_eq!(mean(0.0, 2.0, &iv[1..3], &[0, 1], &inf, 1), Some(vec![f64::NEG_INFINITY]));
    }
}
