// attention.wgsl: the CIM unit [att(X, Y), att(Y, X)] of MODEL.md layer 3, fused
// over one matching matrix M = X Y^T (att(Y, X) uses M^T), or self-attention
// att(X, X) when pair = 0. Per video b, with len = len[b]:
//     N = softmax_j M[i, j] (j < len),  O = N Y,  out = O * X      (direction 0: X, Y)
//     N' = softmax_j M[j, i] (j < len), O' = N' X, out' = O' * Y    (direction 1: Y, X)
// out and out' are written straight into their column slices of R (row stride rw,
// column offsets r_xy, r_yx): no copy-concat. Rows i >= len are zero in every output.
// Entry points (forward then backward, each a step of the schedule):
//   attention_forward_scores   M (B, U, U) = X Y^T                       per (b, i, j)
//   attention_forward_softmax  N (2, B, U, U): row i of M / of M^T       per (dir, b, i)
//   attention_forward          O (2, B, U, D) and R slices               per (dir, b, i, c)
//   attention_backward_scores  dM (2, B, U, U) = N * (dN - sum_j N dN),  per (dir, b, i)
//                              dN[i, j] = (dout_i * Q_i) . V_j
//   attention_backward         dX, dY (B, U, D) accumulated (+=)         per (b, i, c)
//       dX_i += dout_i O_i + sum_j (dM[i,j] + dM'[j,i]) Y_j + sum_j N'[j,i] dout'_j Y_j
//       dY_i += dout'_i O'_i + sum_j (dM[j,i] + dM'[i,j]) X_j + sum_j N[j,i] dout_j X_j
//   (for self-attention only direction 0 exists, Y = X, and both halves go to dX).
// Gradients accumulate because T, A, V each feed several blocks of R (as cpu::attention).
// Every sum runs over j in increasing order: deterministic.
// Letters: B, U, D, R (rw); dir 0 = att(X, Y) with Q = X, V = Y; dir 1 = att(Y, X), Q = Y, V = X.
//
// Dispatch: 1-D, workgroup 64, one invocation per item named above, grid folded into y.
// Bindings:
//   attention_forward_scores:  0 p, 1 x, 2 y, 3 len, 4 m rw
//   attention_forward_softmax: 0 p, 1 m, 2 len, 3 n rw
//   attention_forward:         0 p, 1 x, 2 y, 3 n, 4 len, 5 o rw, 6 r rw
//   attention_backward_scores: 0 p, 1 x, 2 y, 3 n, 4 dr, 5 len, 6 dm rw
//   attention_backward:        0 p, 1 x, 2 y, 3 n, 4 o, 5 dr, 6 dm, 7 len, 8 dx rw, 9 dy rw

const WG: u32 = 64u;

struct AttentionParams {
    b: u32,
    u: u32,
    d: u32,
    pair: u32, // 1: X != Y, both directions; 0: self-attention att(X, X), direction 0 only
    rw: u32,   // row stride of R and dR
    r_xy: u32, // column offset of att(X, Y) in R
    r_yx: u32, // column offset of att(Y, X) in R (unused when pair = 0)
    _pad: u32,
}

fn flat(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid;
}

fn dirs(p: AttentionParams) -> u32 {
    return select(1u, 2u, p.pair != 0u);
}

// ---- attention_forward_scores ----
@group(0) @binding(0) var<uniform> p0: AttentionParams;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> y0: array<f32>;
@group(0) @binding(3) var<storage, read> len0: array<u32>;
@group(0) @binding(4) var<storage, read_write> m0: array<f32>;

@compute @workgroup_size(WG)
fn attention_forward_scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let p = p0;
    let e = flat(wg, nwg, lid);
    if (e >= p.b * p.u * p.u) {
        return;
    }
    let j = e % p.u;
    let i = (e / p.u) % p.u;
    let b = e / (p.u * p.u);
    let l = len0[b];
    var s = 0.0;
    if (i < l && j < l) {
        let xi = (b * p.u + i) * p.d;
        let yj = (b * p.u + j) * p.d;
        for (var c = 0u; c < p.d; c++) {
            s += x0[xi + c] * y0[yj + c];
        }
    }
    m0[e] = s;
}

// ---- attention_forward_softmax ----
@group(0) @binding(0) var<uniform> p1: AttentionParams;
@group(0) @binding(1) var<storage, read> m1: array<f32>;
@group(0) @binding(2) var<storage, read> len1: array<u32>;
@group(0) @binding(3) var<storage, read_write> n1: array<f32>;

// M[i, j] for direction 0, M[j, i] for direction 1, of video b.
fn score(p: AttentionParams, dir: u32, b: u32, i: u32, j: u32) -> f32 {
    if (dir == 0u) {
        return m1[(b * p.u + i) * p.u + j];
    }
    return m1[(b * p.u + j) * p.u + i];
}

@compute @workgroup_size(WG)
fn attention_forward_softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let p = p1;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * p.u) {
        return;
    }
    let i = e % p.u;
    let b = (e / p.u) % p.b;
    let dir = e / (p.u * p.b);
    let l = len1[b];
    let row = e * p.u; // ((dir * B + b) * U + i) * U
    if (i >= l) {
        for (var j = 0u; j < p.u; j++) {
            n1[row + j] = 0.0;
        }
        return;
    }
    var mx = score(p, dir, b, i, 0u);
    for (var j = 1u; j < l; j++) {
        mx = max(mx, score(p, dir, b, i, j));
    }
    var s = 0.0;
    for (var j = 0u; j < l; j++) {
        s += exp(score(p, dir, b, i, j) - mx);
    }
    let inv = 1.0 / s;
    for (var j = 0u; j < p.u; j++) {
        var w = 0.0;
        if (j < l) {
            w = exp(score(p, dir, b, i, j) - mx) * inv;
        }
        n1[row + j] = w;
    }
}

// ---- attention_forward ----
@group(0) @binding(0) var<uniform> p2: AttentionParams;
@group(0) @binding(1) var<storage, read> x2: array<f32>;
@group(0) @binding(2) var<storage, read> y2: array<f32>;
@group(0) @binding(3) var<storage, read> n2: array<f32>;
@group(0) @binding(4) var<storage, read> len2: array<u32>;
@group(0) @binding(5) var<storage, read_write> o2: array<f32>;
@group(0) @binding(6) var<storage, read_write> r2: array<f32>;

// Q (gate) and V (values) of a direction: dir 0 (X, Y), dir 1 (Y, X).
fn q2(dir: u32, idx: u32) -> f32 {
    return select(y2[idx], x2[idx], dir == 0u);
}

fn v2(dir: u32, idx: u32) -> f32 {
    return select(x2[idx], y2[idx], dir == 0u);
}

@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let p = p2;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * p.u * p.d) {
        return;
    }
    let c = e % p.d;
    let t = (e / p.d) % (p.b * p.u); // b * U + i
    let dir = e / (p.d * p.b * p.u);
    let b = t / p.u;
    let i = t % p.u;
    let l = len2[b];
    var o = 0.0;
    var out = 0.0;
    if (i < l) {
        let row = (dir * p.b * p.u + t) * p.u;
        for (var j = 0u; j < l; j++) {
            o += n2[row + j] * v2(dir, (b * p.u + j) * p.d + c);
        }
        out = o * q2(dir, t * p.d + c);
    }
    o2[e] = o;
    r2[t * p.rw + select(p.r_yx, p.r_xy, dir == 0u) + c] = out;
}

// ---- attention_backward_scores ----
@group(0) @binding(0) var<uniform> p3: AttentionParams;
@group(0) @binding(1) var<storage, read> x3: array<f32>;
@group(0) @binding(2) var<storage, read> y3: array<f32>;
@group(0) @binding(3) var<storage, read> n3: array<f32>;
@group(0) @binding(4) var<storage, read> dr3: array<f32>;
@group(0) @binding(5) var<storage, read> len3: array<u32>;
@group(0) @binding(6) var<storage, read_write> dm3: array<f32>;

@compute @workgroup_size(WG)
fn attention_backward_scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let p = p3;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * p.u) {
        return;
    }
    let i = e % p.u;
    let b = (e / p.u) % p.b;
    let dir = e / (p.u * p.b);
    let l = len3[b];
    let row = e * p.u;
    if (i >= l) {
        for (var j = 0u; j < p.u; j++) {
            dm3[row + j] = 0.0;
        }
        return;
    }
    let t = b * p.u + i;
    let dro = t * p.rw + select(p.r_yx, p.r_xy, dir == 0u);
    // dN[i, j] = (dout_i * Q_i) . V_j, kept in dm3 until the softmax backward below.
    var s = 0.0;
    for (var j = 0u; j < l; j++) {
        let vj = (b * p.u + j) * p.d;
        var dn = 0.0;
        for (var c = 0u; c < p.d; c++) {
            var q = y3[t * p.d + c];
            var v = x3[vj + c];
            if (dir == 0u) {
                q = x3[t * p.d + c];
                v = y3[vj + c];
            }
            dn += dr3[dro + c] * q * v;
        }
        dm3[row + j] = dn;
        s += n3[row + j] * dn;
    }
    for (var j = 0u; j < p.u; j++) {
        var g = 0.0;
        if (j < l) {
            g = n3[row + j] * (dm3[row + j] - s);
        }
        dm3[row + j] = g;
    }
}

// ---- attention_backward ----
@group(0) @binding(0) var<uniform> p4: AttentionParams;
@group(0) @binding(1) var<storage, read> x4: array<f32>;
@group(0) @binding(2) var<storage, read> y4: array<f32>;
@group(0) @binding(3) var<storage, read> n4: array<f32>;
@group(0) @binding(4) var<storage, read> o4: array<f32>;
@group(0) @binding(5) var<storage, read> dr4: array<f32>;
@group(0) @binding(6) var<storage, read> dm4: array<f32>;
@group(0) @binding(7) var<storage, read> len4: array<u32>;
@group(0) @binding(8) var<storage, read_write> dx4: array<f32>;
@group(0) @binding(9) var<storage, read_write> dy4: array<f32>;

@compute @workgroup_size(WG)
fn attention_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let p = p4;
    let e = flat(wg, nwg, lid);
    if (e >= p.b * p.u * p.d) {
        return;
    }
    let c = e % p.d;
    let t = e / p.d;
    let b = t / p.u;
    let i = t % p.u;
    let l = len4[b];
    if (i >= l) {
        return;
    }
    let bu = p.b * p.u;
    let base = b * p.u;        // first row of video b
    let mrow = t * p.u;        // row i of video b's (U, U) block, direction 0
    let mrow1 = (bu + t) * p.u; // direction 1
    // Direction 0, att(X, Y): gate, score and value paths.
    var gx = dr4[t * p.rw + p.r_xy + c] * o4[e];
    var gy = 0.0;
    for (var j = 0u; j < l; j++) {
        let tj = base + j;
        let dmij = dm4[mrow + j];            // dM[i, j]
        let dmji = dm4[tj * p.u + i];        // dM[j, i]
        gx += dmij * y4[tj * p.d + c];
        // value path: dY_i += sum_j N[j, i] dout_j X_j; score path: dY_i += sum_j dM[j, i] X_j
        let doj = dr4[tj * p.rw + p.r_xy + c] * x4[tj * p.d + c];
        gy += n4[tj * p.u + i] * doj + dmji * x4[tj * p.d + c];
    }
    if (p.pair == 0u) {
        // Self-attention: Y is X, so both halves are X's gradient.
        dx4[e] += gx + gy;
        return;
    }
    // Direction 1, att(Y, X): the same with the roles of X and Y swapped (M' = M^T).
    gy += dr4[t * p.rw + p.r_yx + c] * o4[bu * p.d + e];
    for (var j = 0u; j < l; j++) {
        let tj = base + j;
        let dmij = dm4[mrow1 + j];           // dM'[i, j]
        let dmji = dm4[(bu + tj) * p.u + i]; // dM'[j, i]
        gy += dmij * x4[tj * p.d + c];
        let doj = dr4[tj * p.rw + p.r_yx + c] * y4[tj * p.d + c];
        gx += n4[(bu + tj) * p.u + i] * doj + dmji * y4[tj * p.d + c];
    }
    dx4[e] += gx;
    dy4[e] += gy;
}
