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
// The _v4 entries (attention_forward_scores_v4, attention_forward_v4,
// attention_backward_scores_v4, attention_backward_v4) bind as their scalar twins, X, Y, O, R, dR and dX, dY
// viewed as vec4: the flat member runs them where D, every offset and R's row
// width and column offsets are multiples of 4 (src/gpu/attention.rs `aligned4`),
// the same sums in the same order, so the same bits.
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

// ---- attention_backward_v4 ----
// attention_backward with one invocation per (b, i, 4 columns c): where D, every
// offset and R's row width and column offsets are multiples of 4 (the launcher
// checks), X, Y, O, dR and dX, dY are read as vec4 and each dM, N weight serves
// four columns. Per j and direction 3 vec4 + 3 scalar loads for four columns
// where attention_backward makes 5 scalar loads for one (on llvmpipe a storage
// load is a loop over the 8 SIMD lanes, a vec4 one barely costlier). Each output
// is the same expressions summed over j in the same order, component-wise: the
// same bits as attention_backward.
@group(0) @binding(0) var<uniform> p5: AttentionParams;
@group(0) @binding(1) var<storage, read> q5: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f5: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> n5: array<f32>;
@group(0) @binding(4) var<storage, read> o5: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dr5: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> dm5: array<f32>;
@group(0) @binding(7) var<storage, read> len5: array<u32>;
@group(0) @binding(8) var<storage, read_write> df5: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn attention_backward_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let p = p5;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q5[wg.z];
    let u = q.u;
    let d4 = p.d / 4u;
    let e = flat(wg, nwg, lid);
    if (e >= p.b * u * d4) {
        return;
    }
    let c4 = e % d4;
    let t = e / d4;
    let b = t / u;
    let i = t % u;
    let l = len5[q.len_off + b];
    if (i >= l) {
        return;
    }
    let bu = p.b * u;
    let base = b * u;
    let nm = q.n_off;
    let dmo = q.dm_off;
    let mrow = t * u;
    let mrow1 = (bu + t) * u;
    let dro = q.r_off / 4u;
    let rw4 = q.rw / 4u;
    let x4 = q.x_off / 4u;
    let y4 = q.y_off / 4u;
    // Direction 0, att(X, Y): gate, score and value paths.
    var gx = dr5[dro + t * rw4 + q.r_xy / 4u + c4] * o5[q.o_off / 4u + e];
    var gy = vec4<f32>(0.0);
    for (var j = 0u; j < l; j++) {
        let tj = base + j;
        let dmij = dm5[dmo + mrow + j];
        let dmji = dm5[dmo + tj * u + i];
        gx += dmij * f5[y4 + tj * d4 + c4];
        let xj = f5[x4 + tj * d4 + c4];
        let doj = dr5[dro + tj * rw4 + q.r_xy / 4u + c4] * xj;
        gy += n5[nm + tj * u + i] * doj + dmji * xj;
    }
    if (p.pair == 0u) {
        df5[q.dx_off / 4u + e] += gx + gy;
        return;
    }
    // Direction 1, att(Y, X).
    gy += dr5[dro + t * rw4 + q.r_yx / 4u + c4] * o5[q.o_off / 4u + bu * d4 + e];
    for (var j = 0u; j < l; j++) {
        let tj = base + j;
        let dmij = dm5[dmo + mrow1 + j];
        let dmji = dm5[dmo + (bu + tj) * u + i];
        gy += dmij * f5[x4 + tj * d4 + c4];
        let yj = f5[y4 + tj * d4 + c4];
        let doj = dr5[dro + tj * rw4 + q.r_yx / 4u + c4] * yj;
        gx += n5[nm + (bu + tj) * u + i] * doj + dmji * yj;
    }
    df5[q.dx_off / 4u + e] += gx;
    df5[q.dy_off / 4u + e] += gy;
}

// ---- attention_forward_scores_v4 ----
// attention_forward_scores reading X_i and Y_j as vec4 (D and the offsets
// multiples of 4): 2 loads per 4 columns instead of 8, each score summed over c
// in the same order (the components one by one): the same bits.
@group(0) @binding(0) var<uniform> p6: AttentionParams;
@group(0) @binding(1) var<storage, read> q6: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f6: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> len6: array<u32>;
@group(0) @binding(4) var<storage, read_write> m6: array<f32>;

@compute @workgroup_size(WG)
fn attention_forward_scores_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let p = p6;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q6[wg.z];
    let u = q.u;
    let e = flat(wg, nwg, lid);
    if (e >= p.b * u * u) {
        return;
    }
    let j = e % u;
    let i = (e / u) % u;
    let b = e / (u * u);
    let l = len6[q.len_off + b];
    var s = 0.0;
    if (i < l && j < l) {
        let d4 = p.d / 4u;
        let xi = q.x_off / 4u + (b * u + i) * d4;
        let yj = q.y_off / 4u + (b * u + j) * d4;
        for (var c = 0u; c < d4; c++) {
            let a = f6[xi + c];
            let v = f6[yj + c];
            s += a.x * v.x;
            s += a.y * v.y;
            s += a.z * v.z;
            s += a.w * v.w;
        }
    }
    m6[q.m_off + e] = s;
}

// ---- attention_forward_v4 ----
// attention_forward with one invocation per (direction, b, i, 4 columns c): V, Q
// read and O, R written as vec4, each N weight serving four columns; the same
// sums over j in the same order, component-wise: the same bits.
@group(0) @binding(0) var<uniform> p7: AttentionParams;
@group(0) @binding(1) var<storage, read> q7: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f7: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> n7: array<f32>;
@group(0) @binding(4) var<storage, read> len7: array<u32>;
@group(0) @binding(5) var<storage, read_write> o7: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> r7: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn attention_forward_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let p = p7;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q7[wg.z];
    let u = q.u;
    let d4 = p.d / 4u;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * u * d4) {
        return;
    }
    let c4 = e % d4;
    let t = (e / d4) % (p.b * u);
    let dir = e / (d4 * p.b * u);
    let b = t / u;
    let i = t % u;
    let l = len7[q.len_off + b];
    let q4 = select(q.y_off, q.x_off, dir == 0u) / 4u;
    let v4 = select(q.x_off, q.y_off, dir == 0u) / 4u;
    var o = vec4<f32>(0.0);
    var out = vec4<f32>(0.0);
    if (i < l) {
        let row = q.n_off + (dir * p.b * u + t) * u;
        for (var j = 0u; j < l; j++) {
            o += n7[row + j] * f7[v4 + (b * u + j) * d4 + c4];
        }
        out = o * f7[q4 + t * d4 + c4];
    }
    o7[q.o_off / 4u + e] = o;
    r7[(q.r_off + t * q.rw + select(q.r_yx, q.r_xy, dir == 0u)) / 4u + c4] = out;
}

// ---- attention_backward_scores_v4 ----
// attention_backward_scores reading dR, Q and V as vec4: per 4 columns and 4 j,
// 6 loads instead of 24; each dN[i, j] summed over c in the same order (the
// components one by one), s over j in order: the same bits.
@group(0) @binding(0) var<uniform> p8: AttentionParams;
@group(0) @binding(1) var<storage, read> q8: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> f8: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> n8: array<f32>;
@group(0) @binding(4) var<storage, read> dr8: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> len8: array<u32>;
@group(0) @binding(6) var<storage, read_write> dm8: array<f32>;

@compute @workgroup_size(WG)
fn attention_backward_scores_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let p = p8;
    if (wg.z >= p.problems) {
        return;
    }
    let q = q8[wg.z];
    let u = q.u;
    let e = flat(wg, nwg, lid);
    if (e >= dirs(p) * p.b * u) {
        return;
    }
    let i = e % u;
    let b = (e / u) % p.b;
    let dir = e / (u * p.b);
    let l = len8[q.len_off + b];
    let row = e * u;
    let nr = q.n_off + row;
    let dr = q.dm_off + row;
    if (i >= l) {
        for (var j = 0u; j < u; j++) {
            dm8[dr + j] = 0.0;
        }
        return;
    }
    let d4 = p.d / 4u;
    let t = b * u + i;
    let dro = (q.r_off + t * q.rw + select(q.r_yx, q.r_xy, dir == 0u)) / 4u;
    let qo = select(q.y_off, q.x_off, dir == 0u) / 4u + t * d4;
    let vrow = select(q.x_off, q.y_off, dir == 0u) / 4u + (b * u) * d4;
    var s = 0.0;
    for (var j0 = 0u; j0 < l; j0 += 4u) {
        let v0 = vrow + min(j0, l - 1u) * d4;
        let v1 = vrow + min(j0 + 1u, l - 1u) * d4;
        let v2 = vrow + min(j0 + 2u, l - 1u) * d4;
        let v3 = vrow + min(j0 + 3u, l - 1u) * d4;
        var dn = vec4<f32>(0.0);
        for (var c = 0u; c < d4; c++) {
            let a = dr8[dro + c] * f8[qo + c];
            let w0 = f8[v0 + c];
            let w1 = f8[v1 + c];
            let w2 = f8[v2 + c];
            let w3 = f8[v3 + c];
            dn += a.x * vec4<f32>(w0.x, w1.x, w2.x, w3.x);
            dn += a.y * vec4<f32>(w0.y, w1.y, w2.y, w3.y);
            dn += a.z * vec4<f32>(w0.z, w1.z, w2.z, w3.z);
            dn += a.w * vec4<f32>(w0.w, w1.w, w2.w, w3.w);
        }
        for (var k = 0u; k < 4u; k++) {
            let j = j0 + k;
            if (j < l) {
                dm8[dr + j] = dn[k];
                s += n8[nr + j] * dn[k];
            }
        }
    }
    for (var j = 0u; j < u; j++) {
        var g = 0.0;
        if (j < l) {
            g = n8[nr + j] * (dm8[dr + j] - s);
        }
        dm8[dr + j] = g;
    }
}
