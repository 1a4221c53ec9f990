//! Dense + ReLU per utterance (MODEL.md layer 2): y = relu(W x + b), rows at
//! padded positions set to zero. Letters: B, U, K input width, D output width.

use super::dot;

/// y (B, U, D) from x (B, U, K), w (D, K), b (D).
#[allow(clippy::too_many_arguments)]
pub fn dense_forward(
    x: &[f64],
    w: &[f64],
    bias: &[f64],
    len: &[usize],
    bsz: usize,
    u: usize,
    k: usize,
    d: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; bsz * u * d];
    for b in 0..bsz {
        for i in 0..len[b] {
            let t = b * u + i;
            let xrow = &x[t * k..(t + 1) * k];
            for o in 0..d {
                y[t * d + o] = (dot(&w[o * k..(o + 1) * k], xrow) + bias[o]).max(0.0);
            }
        }
    }
    y
}

/// Writes dx (B, U, K); accumulates dw (D, K) and db (D). `y` is the forward output
/// (its sign is the ReLU mask).
#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    dx: &mut [f64],
    dw: &mut [f64],
    db: &mut [f64],
    dy: &[f64],
    x: &[f64],
    y: &[f64],
    w: &[f64],
    len: &[usize],
    bsz: usize,
    u: usize,
    k: usize,
    d: usize,
) {
    dx.iter_mut().for_each(|v| *v = 0.0);
    for b in 0..bsz {
        for i in 0..len[b] {
            let t = b * u + i;
            for o in 0..d {
                if y[t * d + o] <= 0.0 {
                    continue;
                }
                let g = dy[t * d + o];
                db[o] += g;
                for c in 0..k {
                    dw[o * k + c] += g * x[t * k + c];
                    dx[t * k + c] += g * w[o * k + c];
                }
            }
        }
    }
}
