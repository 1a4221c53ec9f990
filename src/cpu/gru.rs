//! Bidirectional GRU over the utterances of each video (MODEL.md layer 1),
//! PyTorch gate order r, z, n:
//!     r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//!     z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//!     n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//!     h' = (1 - z) * n + z * h
//! The forward direction runs i = 0..len-1, the reverse one i = len-1..0 (from
//! the last real utterance). Outputs at padded positions are zero.
//! Letters: B batch, U padded utterances, K input dim, H hidden.

use super::{dot, sigmoid};

/// The four tensors of one direction (PyTorch state_dict layout).
#[derive(Clone, Copy)]
pub struct GruWeights<'a> {
    pub w_ih: &'a [f64], // (3H, K)
    pub w_hh: &'a [f64], // (3H, H)
    pub b_ih: &'a [f64], // (3H)
    pub b_hh: &'a [f64], // (3H)
}

/// Gradients of one direction, accumulated (`+=`).
pub struct GruGrads<'a> {
    pub w_ih: &'a mut [f64], // (3H, K)
    pub w_hh: &'a mut [f64], // (3H, H)
    pub b_ih: &'a mut [f64], // (3H)
    pub b_hh: &'a mut [f64], // (3H)
}

/// What one direction's forward saves for its backward.
#[derive(Debug, Clone, PartialEq)]
pub struct GruCache {
    pub xp: Vec<f64>, // (B, U, 3H) input projection W_ih x + b_ih
    pub h: Vec<f64>,  // (B, U, H) output h_i (zero at padding)
    pub r: Vec<f64>,  // (B, U, H) reset gate
    pub z: Vec<f64>,  // (B, U, H) update gate
    pub n: Vec<f64>,  // (B, U, H) candidate
    pub hn: Vec<f64>, // (B, U, H) W_hn h_prev + b_hn
}

/// Sizes of one GRU call.
#[derive(Debug, Clone, Copy)]
pub struct GruShape {
    pub b: usize,
    pub u: usize,
    pub k: usize,
    pub h: usize,
}

/// Time steps of video `b` in processing order.
pub fn steps(len: usize, reverse: bool) -> Box<dyn Iterator<Item = usize>> {
    if reverse {
        Box::new((0..len).rev())
    } else {
        Box::new(0..len)
    }
}

/// xp = W_ih x + b_ih for every real utterance (zero at padding). (B, U, 3H)
pub fn gru_input_projection(x: &[f64], w: &GruWeights, len: &[usize], s: GruShape) -> Vec<f64> {
    let (k, g) = (s.k, 3 * s.h);
    let mut xp = vec![0.0; s.b * s.u * g];
    for b in 0..s.b {
        for i in 0..len[b] {
            let xrow = &x[(b * s.u + i) * k..(b * s.u + i + 1) * k];
            for j in 0..g {
                xp[(b * s.u + i) * g + j] = dot(&w.w_ih[j * k..(j + 1) * k], xrow) + w.b_ih[j];
            }
        }
    }
    xp
}

/// One direction of the GRU over the whole batch.
pub fn gru_forward(x: &[f64], w: &GruWeights, len: &[usize], s: GruShape, reverse: bool) -> GruCache {
    let h = s.h;
    let xp = gru_input_projection(x, w, len, s);
    let zeros = || vec![0.0; s.b * s.u * h];
    let mut c = GruCache { xp, h: zeros(), r: zeros(), z: zeros(), n: zeros(), hn: zeros() };
    for b in 0..s.b {
        let mut hprev = vec![0.0; h];
        for i in steps(len[b], reverse) {
            let t = b * s.u + i;
            let xpt = &c.xp[t * 3 * h..(t + 1) * 3 * h];
            let hh: Vec<f64> = (0..3 * h).map(|j| dot(&w.w_hh[j * h..(j + 1) * h], &hprev) + w.b_hh[j]).collect();
            for j in 0..h {
                let r = sigmoid(xpt[j] + hh[j]);
                let z = sigmoid(xpt[h + j] + hh[h + j]);
                let n = (xpt[2 * h + j] + r * hh[2 * h + j]).tanh();
                let hj = (1.0 - z) * n + z * hprev[j];
                c.r[t * h + j] = r;
                c.z[t * h + j] = z;
                c.n[t * h + j] = n;
                c.hn[t * h + j] = hh[2 * h + j];
                c.h[t * h + j] = hj;
            }
            hprev.copy_from_slice(&c.h[t * h..(t + 1) * h]);
        }
    }
    c
}

/// Backward through time of one direction. `dh` (B, U, H) is the gradient of
/// the loss with respect to this direction's outputs; `dx` (B, U, K) and the
/// weight gradients are accumulated.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward(
    dx: &mut [f64],
    grads: &mut GruGrads,
    dh: &[f64],
    x: &[f64],
    w: &GruWeights,
    cache: &GruCache,
    len: &[usize],
    s: GruShape,
    reverse: bool,
) {
    let (h, k) = (s.h, s.k);
    for b in 0..s.b {
        // Gradient flowing into h_i from the later step (in processing order).
        let mut carry = vec![0.0; h];
        let order: Vec<usize> = steps(len[b], reverse).collect();
        for (pos, &i) in order.iter().enumerate().rev() {
            let t = b * s.u + i;
            let hprev: Vec<f64> =
                if pos == 0 { vec![0.0; h] } else { cache.h[(b * s.u + order[pos - 1]) * h..][..h].to_vec() };
            let mut gi = vec![0.0; 3 * h]; // d(pre-activation), input side: [r, z, n]
            let mut gh = vec![0.0; 3 * h]; // d(pre-activation), hidden side: [r, z, hn]
            let mut dhprev = vec![0.0; h];
            for j in 0..h {
                let (r, z, n, hn) = (cache.r[t * h + j], cache.z[t * h + j], cache.n[t * h + j], cache.hn[t * h + j]);
                let g = dh[t * h + j] + carry[j];
                let dn = g * (1.0 - z);
                let dz = g * (hprev[j] - n);
                dhprev[j] = g * z;
                let dan = dn * (1.0 - n * n);
                let dr = dan * hn;
                let dar = dr * r * (1.0 - r);
                let daz = dz * z * (1.0 - z);
                gi[j] = dar;
                gi[h + j] = daz;
                gi[2 * h + j] = dan;
                gh[j] = dar;
                gh[h + j] = daz;
                gh[2 * h + j] = dan * r;
            }
            let xrow = &x[t * k..(t + 1) * k];
            for row in 0..3 * h {
                grads.b_ih[row] += gi[row];
                grads.b_hh[row] += gh[row];
                for c in 0..k {
                    grads.w_ih[row * k + c] += gi[row] * xrow[c];
                    dx[t * k + c] += w.w_ih[row * k + c] * gi[row];
                }
                for c in 0..h {
                    grads.w_hh[row * h + c] += gh[row] * hprev[c];
                    dhprev[c] += w.w_hh[row * h + c] * gh[row];
                }
            }
            carry = dhprev;
        }
    }
}

/// Interleave the two directions into the bi-GRU output: out[b, i] = [fwd_i, rev_i]. (B, U, 2H)
pub fn bigru_concat(fwd: &[f64], rev: &[f64], s: GruShape) -> Vec<f64> {
    let h = s.h;
    let mut out = vec![0.0; s.b * s.u * 2 * h];
    for t in 0..s.b * s.u {
        out[t * 2 * h..t * 2 * h + h].copy_from_slice(&fwd[t * h..(t + 1) * h]);
        out[t * 2 * h + h..(t + 1) * 2 * h].copy_from_slice(&rev[t * h..(t + 1) * h]);
    }
    out
}

/// Split a (B, U, 2H) gradient into the two directions' (B, U, H) gradients.
pub fn bigru_split(d: &[f64], s: GruShape) -> (Vec<f64>, Vec<f64>) {
    let h = s.h;
    let mut f = vec![0.0; s.b * s.u * h];
    let mut r = vec![0.0; s.b * s.u * h];
    for t in 0..s.b * s.u {
        f[t * h..(t + 1) * h].copy_from_slice(&d[t * 2 * h..t * 2 * h + h]);
        r[t * h..(t + 1) * h].copy_from_slice(&d[t * 2 * h + h..(t + 1) * 2 * h]);
    }
    (f, r)
}
