// attention.wgsl: the CIM unit [att(X, Y), att(Y, X)] of MODEL.md layer 3, fused
// over one matching matrix M = X Y^T (att(Y, X) uses M^T), or self-attention
// att(X, X) when pair = 0. Per video b, with len = len[len_off + b]:
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
// Letters: B, U (a problem's own u), D, R (rw); dir 0 = att(X, Y) with Q = X, V = Y;
// dir 1 = att(Y, X), Q = Y, V = X.
//
// Problems: one launch is one pair kind (x, y) (or self-attention) over `problems`
// problems, a problem being one model's instance of that pair. The problem list
// (binding 1, one AttentionProblem per problem) holds what differs between them:
// the element offsets of X and Y in the ONE feat arena (every model's T, A, V
// blocks), of the model's R block (the same offset in dR) with its row width rw
// and the two column offsets, of the saved M, N, O and the dM scratch, and of dX,
// dY in the ONE dfeat arena; and its own batch: u (its longest video, <= the
// launch's U) and len_off (its B lengths at len[len_off + b]). B, D and the pair
// flag are shared (the uniform); the launch's U is U_max, the largest u, and only
// sizes the grid. Every block of a problem is laid out with its own u, rows
// t = b * u + i, (B, u, u) score blocks, as in a launch of its own at U = u;
// rows past B * u of its blocks are never touched. So models of different seeds
// (different batches of the same B) share one launch: a 5-seed grid's step is one
// schedule, not five. Each problem's arithmetic is exactly a one-problem launch's
// at U = u (same invocation per item, same loop order over j < len, j < u), so a
// model computes the same bits alone or among K models; one launch over all K
// models' instances multiplies the invocations in flight per launch by K, which is
// what fills a discrete GPU (one model's pair is a few thousand to a few tens of
// thousands of invocations).
//
// Dispatch: 1-D over the items at U_max, workgroup 64, one invocation per item named
// above (a problem's items past its own u return at once), grid folded into y;
// grid z = problem.
// Bindings (0 p, 1 problem list in every entry point):
//   attention_forward_scores:  2 feat, 3 len, 4 m rw
//   attention_forward_softmax: 2 m, 3 len, 4 n rw
//   attention_forward:         2 feat, 3 n, 4 len, 5 o rw, 6 r rw
//   attention_backward_scores: 2 feat, 3 n, 4 dr, 5 len, 6 dm rw
//   attention_backward:        2 feat, 3 n, 4 o, 5 dr, 6 dm, 7 len, 8 dfeat rw
// The structs AttentionParams and AttentionProblem are not in this file: the module the
// driver compiles has them after the prelude, from src/gpu/attention/wgsl.rs (the one
// text both members declare; tests/shaders.rs pins it to the Rust structs).

// WG comes before this body in the module, from src/gpu/attention.rs (WGSL_CONSTS).

fn flat(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid;
}

fn dirs(p: AttentionParams) -> u32 {
    return select(1u, 2u, p.pair != 0u);
}

// ---- attention_forward_scores ----
@group(0) @binding(0) var<uniform> p0: AttentionParams;
@group(0) @binding(1) var<storage, read> q0: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f0: array<f32>;
@group(0) @binding(3) var<storage, read> len0: array<u32>;
@group(0) @binding(4) var<storage, read_write> m0: array<f32>;

@compute @workgroup_size(WG)
fn attention_forward_scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let p = p0;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q0[wg.z];
    let u = q.u;
    let e = flat(wg, nwg, lid);
    if (e >= p.b * u * u) {
        return;
    }
    let j = e % u;
    let i = (e / u) % u;
    let b = e / (u * u);
    let l = len0[q.len_off + b];
    var s = 0.0;
    if (i < l && j < l) {
        let xi = q.x_off + (b * u + i) * p.d;
        let yj = q.y_off + (b * u + j) * p.d;
        for (var c = 0u; c < p.d; c++) {
            s += f0[xi + c] * f0[yj + c];
        }
    }
    m0[q.m_off + e] = s;
}

// ---- attention_forward_softmax ----
@group(0) @binding(0) var<uniform> p1: AttentionParams;
@group(0) @binding(1) var<storage, read> q1: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> m1: array<f32>;
@group(0) @binding(3) var<storage, read> len1: array<u32>;
@group(0) @binding(4) var<storage, read_write> n1: array<f32>;

// M[i, j] for direction 0, M[j, i] for direction 1, of video b (problem q's M, its own u).
fn score(q: AttentionProblem, dir: u32, b: u32, i: u32, j: u32) -> f32 {
    if (dir == 0u) {
        return m1[q.m_off + (b * q.u + i) * q.u + j];
    }
    return m1[q.m_off + (b * q.u + j) * q.u + i];
}

@compute @workgroup_size(WG)
fn attention_forward_softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let p = p1;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q1[wg.z];
    let u = q.u;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * u) {
        return;
    }
    let i = e % u;
    let b = (e / u) % p.b;
    let dir = e / (u * p.b);
    let l = len1[q.len_off + b];
    let row = q.n_off + e * u; // n_off + ((dir * B + b) * u + i) * u
    if (i >= l) {
        for (var j = 0u; j < u; j++) {
            n1[row + j] = 0.0;
        }
        return;
    }
    var mx = score(q, dir, b, i, 0u);
    for (var j = 1u; j < l; j++) {
        mx = max(mx, score(q, dir, b, i, j));
    }
    var s = 0.0;
    for (var j = 0u; j < l; j++) {
        s += exp(score(q, dir, b, i, j) - mx);
    }
    let inv = 1.0 / s;
    for (var j = 0u; j < u; j++) {
        var w = 0.0;
        if (j < l) {
            w = exp(score(q, dir, b, i, j) - mx) * inv;
        }
        n1[row + j] = w;
    }
}

// ---- attention_forward ----
@group(0) @binding(0) var<uniform> p2: AttentionParams;
@group(0) @binding(1) var<storage, read> q2: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f2: array<f32>;
@group(0) @binding(3) var<storage, read> n2: array<f32>;
@group(0) @binding(4) var<storage, read> len2: array<u32>;
@group(0) @binding(5) var<storage, read_write> o2: array<f32>;
@group(0) @binding(6) var<storage, read_write> r2: array<f32>;

@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let p = p2;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q2[wg.z];
    let u = q.u;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * u * p.d) {
        return;
    }
    let c = e % p.d;
    let t = (e / p.d) % (p.b * u); // b * u + i
    let dir = e / (p.d * p.b * u);
    let b = t / u;
    let i = t % u;
    let l = len2[q.len_off + b];
    // Q (gate) and V (values) of the direction: dir 0 (X, Y), dir 1 (Y, X).
    let q_off = select(q.y_off, q.x_off, dir == 0u);
    let v_off = select(q.x_off, q.y_off, dir == 0u);
    var o = 0.0;
    var out = 0.0;
    if (i < l) {
        let row = q.n_off + (dir * p.b * u + t) * u;
        for (var j = 0u; j < l; j++) {
            o += n2[row + j] * f2[v_off + (b * u + j) * p.d + c];
        }
        out = o * f2[q_off + t * p.d + c];
    }
    o2[q.o_off + e] = o;
    r2[q.r_off + t * q.rw + select(q.r_yx, q.r_xy, dir == 0u) + c] = out;
}

// ---- attention_backward_scores ----
@group(0) @binding(0) var<uniform> p3: AttentionParams;
@group(0) @binding(1) var<storage, read> q3: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f3: array<f32>;
@group(0) @binding(3) var<storage, read> n3: array<f32>;
@group(0) @binding(4) var<storage, read> dr3: array<f32>;
@group(0) @binding(5) var<storage, read> len3: array<u32>;
@group(0) @binding(6) var<storage, read_write> dm3: array<f32>;

@compute @workgroup_size(WG)
fn attention_backward_scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let p = p3;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q3[wg.z];
    let u = q.u;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * u) {
        return;
    }
    let i = e % u;
    let b = (e / u) % p.b;
    let dir = e / (u * p.b);
    let l = len3[q.len_off + b];
    let row = e * u;
    let nr = q.n_off + row;
    let dr = q.dm_off + row;
    if (i >= l) {
        for (var j = 0u; j < u; j++) {
            dm3[dr + j] = 0.0;
        }
        return;
    }
    let t = b * u + i;
    let dro = q.r_off + t * q.rw + select(q.r_yx, q.r_xy, dir == 0u);
    let q_off = select(q.y_off, q.x_off, dir == 0u);
    let v_off = select(q.x_off, q.y_off, dir == 0u);
    // dN[i, j] = (dout_i * Q_i) . V_j, kept in dm3 until the softmax backward below.
    // Four j at a time: (dout_i * Q_i)[c] is loaded once per c for four dot
    // products (3 loads per (j, c) before, 1.5 now; storage loads are the cost
    // on llvmpipe). Each dN[i, j] still sums its products over c in order, and
    // s over j in order: the same bits as one j at a time. A chunk's j past l
    // reads row l - 1 and is dropped.
    var s = 0.0;
    let qo = q_off + t * p.d;
    for (var j0 = 0u; j0 < l; j0 += 4u) {
        let row = v_off + (b * u) * p.d;
        let v0 = row + min(j0, l - 1u) * p.d;
        let v1 = row + min(j0 + 1u, l - 1u) * p.d;
        let v2 = row + min(j0 + 2u, l - 1u) * p.d;
        let v3 = row + min(j0 + 3u, l - 1u) * p.d;
        var dn = vec4<f32>(0.0);
        for (var c = 0u; c < p.d; c++) {
            let a = dr3[dro + c] * f3[qo + c];
            dn += a * vec4<f32>(f3[v0 + c], f3[v1 + c], f3[v2 + c], f3[v3 + c]);
        }
        for (var k = 0u; k < 4u; k++) {
            let j = j0 + k;
            if (j < l) {
                dm3[dr + j] = dn[k];
                s += n3[nr + j] * dn[k];
            }
        }
    }
    for (var j = 0u; j < u; j++) {
        var g = 0.0;
        if (j < l) {
            g = n3[nr + j] * (dm3[dr + j] - s);
        }
        dm3[dr + j] = g;
    }
}

// ---- attention_backward ----
@group(0) @binding(0) var<uniform> p4: AttentionParams;
@group(0) @binding(1) var<storage, read> q4: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f4: array<f32>;
@group(0) @binding(3) var<storage, read> n4: array<f32>;
@group(0) @binding(4) var<storage, read> o4: array<f32>;
@group(0) @binding(5) var<storage, read> dr4: array<f32>;
@group(0) @binding(6) var<storage, read> dm4: array<f32>;
@group(0) @binding(7) var<storage, read> len4: array<u32>;
@group(0) @binding(8) var<storage, read_write> df4: array<f32>;

@compute @workgroup_size(WG)
fn attention_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let p = p4;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q4[wg.z];
    let u = q.u;
    let e = flat(wg, nwg, lid);
    if (e >= p.b * u * p.d) {
        return;
    }
    let c = e % p.d;
    let t = e / p.d;
    let b = t / u;
    let i = t % u;
    let l = len4[q.len_off + b];
    if (i >= l) {
        return;
    }
    let bu = p.b * u;
    let base = b * u;                    // first row of video b
    let nm = q.n_off;
    let dmo = q.dm_off;
    let mrow = t * u;                    // row i of video b's (u, u) block, direction 0
    let mrow1 = (bu + t) * u;            // direction 1
    let dro = q.r_off;
    // Direction 0, att(X, Y): gate, score and value paths.
    var gx = dr4[dro + t * q.rw + q.r_xy + c] * o4[q.o_off + e];
    var gy = 0.0;
    for (var j = 0u; j < l; j++) {
        let tj = base + j;
        let dmij = dm4[dmo + mrow + j];      // dM[i, j]
        let dmji = dm4[dmo + tj * u + i];    // dM[j, i]
        gx += dmij * f4[q.y_off + tj * p.d + c];
        // value path: dY_i += sum_j N[j, i] dout_j X_j; score path: dY_i += sum_j dM[j, i] X_j
        let xj = f4[q.x_off + tj * p.d + c];
        let doj = dr4[dro + tj * q.rw + q.r_xy + c] * xj;
        gy += n4[nm + tj * u + i] * doj + dmji * xj;
    }
    if (p.pair == 0u) {
        // Self-attention: Y is X, so both halves are X's gradient.
        df4[q.dx_off + e] += gx + gy;
        return;
    }
    // Direction 1, att(Y, X): the same with the roles of X and Y swapped (M' = M^T).
    gy += dr4[dro + t * q.rw + q.r_yx + c] * o4[q.o_off + bu * p.d + e];
    for (var j = 0u; j < l; j++) {
        let tj = base + j;
        let dmij = dm4[dmo + mrow1 + j];         // dM'[i, j]
        let dmji = dm4[dmo + (bu + tj) * u + i]; // dM'[j, i]
        gy += dmij * f4[q.x_off + tj * p.d + c];
        let yj = f4[q.y_off + tj * p.d + c];
        let doj = dr4[dro + tj * q.rw + q.r_yx + c] * yj;
        gx += n4[nm + (bu + tj) * u + i] * doj + dmji * yj;
    }
    df4[q.dx_off + e] += gx;
    df4[q.dy_off + e] += gy;
}
