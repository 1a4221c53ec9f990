//! Masked attention att(X, Y) of MODEL.md layer 3, per video:
//!     M = X Y^T,  N = softmax_j(M) with j >= len masked,  O = N Y,  out = O * X
//! Rows i >= len are zero. att(Y, X) uses M^T; the CPU keeps the two calls
//! separate (plain), the GPU fuses them. Letters: B, U, D.

/// What the forward saves: the attention weights N and the weighted sum O.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionCache {
    pub n: Vec<f64>, // (B, U, U) softmax weights, zero outside the real block
    pub o: Vec<f64>, // (B, U, D) N Y
}

/// out (B, U, D) = att(X, Y).
pub fn attention_forward(
    x: &[f64],
    y: &[f64],
    len: &[usize],
    bsz: usize,
    u: usize,
    d: usize,
) -> (Vec<f64>, AttentionCache) {
    let mut out = vec![0.0; bsz * u * d];
    let mut n = vec![0.0; bsz * u * u];
    let mut o = vec![0.0; bsz * u * d];
    for b in 0..bsz {
        let l = len[b];
        let row = |m: &[f64], i: usize| m[(b * u + i) * d..(b * u + i + 1) * d].to_vec();
        for i in 0..l {
            let xi = row(x, i);
            let m: Vec<f64> = (0..l).map(|j| super::dot(&xi, &row(y, j))).collect();
            let mx = m.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = m.iter().map(|v| (v - mx).exp()).collect();
            let s: f64 = e.iter().sum();
            for j in 0..l {
                let w = e[j] / s;
                n[(b * u + i) * u + j] = w;
                for c in 0..d {
                    o[(b * u + i) * d + c] += w * y[(b * u + j) * d + c];
                }
            }
            for c in 0..d {
                out[(b * u + i) * d + c] = o[(b * u + i) * d + c] * xi[c];
            }
        }
    }
    (out, AttentionCache { n, o })
}

/// Accumulates dx and dy (B, U, D) from dout (B, U, D). When X and Y are the same
/// tensor (self-attention) the caller adds both into one gradient.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dx: &mut [f64],
    dy: &mut [f64],
    dout: &[f64],
    x: &[f64],
    y: &[f64],
    cache: &AttentionCache,
    len: &[usize],
    bsz: usize,
    u: usize,
    d: usize,
) {
    for b in 0..bsz {
        let l = len[b];
        let at = |i: usize, c: usize| (b * u + i) * d + c;
        for i in 0..l {
            // out = O * X: dO = dout * X, dX += dout * O
            let d_o: Vec<f64> = (0..d).map(|c| dout[at(i, c)] * x[at(i, c)]).collect();
            for c in 0..d {
                dx[at(i, c)] += dout[at(i, c)] * cache.o[at(i, c)];
            }
            // O = N Y: dN = dO Y^T, dY += N^T dO
            let nrow: Vec<f64> = (0..l).map(|j| cache.n[(b * u + i) * u + j]).collect();
            let dn: Vec<f64> = (0..l).map(|j| (0..d).map(|c| d_o[c] * y[at(j, c)]).sum()).collect();
            for j in 0..l {
                for c in 0..d {
                    dy[at(j, c)] += nrow[j] * d_o[c];
                }
            }
            // softmax: dM = N * (dN - sum_j N dN)
            let s: f64 = (0..l).map(|j| nrow[j] * dn[j]).sum();
            for j in 0..l {
                let dm = nrow[j] * (dn[j] - s);
                // M = X Y^T: dX_i += dM_ij Y_j, dY_j += dM_ij X_i
                for c in 0..d {
                    dx[at(i, c)] += dm * y[at(j, c)];
                    dy[at(j, c)] += dm * x[at(i, c)];
                }
            }
        }
    }
}
