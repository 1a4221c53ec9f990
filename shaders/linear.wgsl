// linear.wgsl: the batched per-utterance matmul family (MODEL.md layers 1-2).
//   linear_forward           y = act(x W^T + b)        rows of padded utterances written 0
//   linear_backward          dx = g W                  g = dy * relu'(y) (relu) or dy; padded rows 0 (written)
//   linear_backward_weights  dW += g^T x, db += sum g  over real rows only, in fixed row order
// Used for the GRU input projection xp = x W_ih^T + b_ih (act none) and the dense
// layer relu(W x + b). Letters: N = B*u rows, K input width, O output width.
//
// Problems: one launch runs a list of GEMMs of the same widths (B, K, O, relu and
// the dropout probability, in the uniform LinearParams), problem z = grid z reading
// the z-th LinearProblem of the launch's problem list (a storage array of any
// length): its W / b / x / y element offsets, dropout stream and R block, and its
// own batch: its U (q.u), its B lengths at len[q.len_off ..] and its dropout step
// seed. Its rows are t = b * q.u + i (N = B * q.u of them), real iff
// i < len[q.len_off + b]: the layout of a launch of its own at U = q.u. The
// uniform's u is U_max, the largest q.u: it only sizes the grid (invocations past
// a problem's N rows return). In a training step the problems are both GRU
// directions of a modality of every model of a group (the input projection), or
// one modality's dense layer of every model (the dense site): the K models'
// parameters, inputs and outputs sit at their own offsets of shared arenas. Each
// problem computes exactly (bit for bit) what a one-problem launch at U = q.u with
// its lengths at offset 0 computes: its loops and reductions depend only on its
// (B, q.u) and lengths. Why one launch over all models' problems: a model's GEMM
// alone (e.g. 1666 x 100 outputs) fills a fraction of a discrete GPU's cores; K
// models multiply the workgroups in flight per launch by the problem count, at one
// dispatch per site whatever K. Why per-problem batches: models of different seeds
// train on different batches (same B; their own U, lengths and dropout seed), so
// they share the launch too and a 5-seed grid's step is one schedule, not five.
// The weight gradient accumulates into grads at each problem's w_off / b_off: no
// two problems of one launch may share W or b.
//
// Fused around the matmul, so that a training step needs few dispatches:
//  - drop = 1: an inverted-dropout mask (the hash of dropout.wgsl, the problem's
//    seed and stream) on the OUTPUT: forward y (the dense site: y = dropout(relu(.))),
//    backward dx (the GRU site: dx = mask * (g W), written straight into d(gru out));
//  - relu with dropout: the forward saves y AFTER its mask, so the backward gates
//    g = dy * scale where y > 0 (y > 0 iff relu > 0 and kept): no mask recomputed;
//  - a problem with rw > 0: the forward also writes y[t, c] into
//    R[r_off + t * rw + c], its plain representation block (problems of one launch
//    may have different R layouts, or none).
//
// Dispatch: 2-D, workgroup (WG_X, WG_Y) = (8, 8); one invocation owns a TILE x TILE
// (4 x 4) register tile of its output (columns along x, rows along y) and keeps it in
// registers for the whole K (or O, or row) loop: no shared memory, which on llvmpipe
// is 10x faster than shared-memory tiles. The tile is unrolled into named registers
// (llvmpipe spills dynamically indexed local arrays to memory: 1.8x slower). The
// weight gradient is deterministic because each invocation owns its dW elements and
// sums the rows in a fixed order.
//   linear_forward:          x = O/4 tiles, y = B*U_max/4 tiles, z = problems
//   linear_backward:         x = K/4 tiles, y = B*U_max/4 tiles, z = problems
//   linear_backward_weights: x = K/4 tiles, y = O/4 tiles, z = problems; tiles with x == 0 also own db
//                            (linear_forward_v4: O/8 and N/8; linear_backward_v4: K/8 and N/8;
//                            linear_backward_weights_v4 / _v4g: K/8 and O/8: WTILE)
//
// Bindings (6: the problem list, array<LinearProblem>, at least `problems` entries):
//   linear_forward:          0 p, 1 x, 2 w (flat params; W at w_off, b at b_off), 3 len (B per problem), 4 y rw,
//                            5 r rw (bind any buffer when no problem has rw > 0), 6 problems
//   linear_backward:         0 p, 1 dy, 2 y, 3 w (flat params), 4 len, 5 dx rw, 6 problems
//   linear_backward_weights: 0 p, 1 dy, 2 y, 3 x, 4 len, 5 grads (flat; dW at w_off, db at b_off) rw, 6 problems
// (x, dx: (N, K) blocks; y, dy: (N, O) blocks, at the problem's offsets.)

// TILE, WTILE, WG_X and WG_Y come before this body in the module, written from
// src/gpu/linear.rs (WGSL_CONSTS) by src/gpu/wgsl.rs.

struct LinearParams {
    b: u32,         // videos B
    u: u32,         // U_max: the largest problem's u (sizes the grid)
    k: u32,         // input width K
    o: u32,         // output width O
    relu: u32,      // 1: y = relu(.) and gradients are masked by y > 0 (times scale)
    problems: u32,  // grid z: problems in this launch (entries of the problem list used)
    drop: u32,      // 1: dropout mask on the output (forward y, backward dx)
    threshold: u32, // round(p * 2^24): drop iff random24 < threshold
    scale: f32,     // 1 / (1 - p) (1 without dropout)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// One problem of the launch (grid z), element offsets into the bound buffers.
struct LinearProblem {
    w_off: u32,   // W (O, K) in the weight / gradient buffer
    b_off: u32,   // the bias (O)
    x_off: u32,   // x (forward, weights) / dx (backward) in their buffers
    y_off: u32,   // y / dy in their buffers (e.g. one problem's block of the GRU's xp / gi)
    stream: u32,  // dropout stream of the mask
    r_off: u32,   // forward: y[t, c] also to R[r_off + t * rw + c] when rw > 0
    rw: u32,      // row width of the problem's R block, 0 = no R write
    u: u32,       // the problem's U (1..=p.u): rows t = b * u + i
    len_off: u32, // its B lengths at len[len_off ..]
    seed: u32,    // step seed of its mask
    _pad0: u32,
    _pad1: u32,
}

// The mask value of element i (flat in the problem's (B, u, width) tensor), as dropout.wgsl.
fn mask(p: LinearParams, q: LinearProblem, i: u32) -> f32 {
    if (p.drop == 0u) {
        return 1.0;
    }
    if (random24(q.seed, q.stream, i) >= p.threshold) {
        return p.scale;
    }
    return 0.0;
}

fn real_row(p: LinearParams, q: LinearProblem, t: u32) -> bool {
    return t < p.b * q.u && (t % q.u) < lenf[q.len_off + t / q.u];
}

// Forward epilogue of a tile row (acc includes the bias): act, padding, mask; y and (rw > 0) R.
fn store_y(p: LinearParams, q: LinearProblem, t: u32, c0: u32, acc: vec4<f32>) {
    var v = acc;
    if (p.relu != 0u) {
        v = max(v, vec4<f32>(0.0));
    }
    if (!real_row(p, q, t)) {
        v = vec4<f32>(0.0);
    }
    for (var j = 0u; j < TILE; j++) {
        let c = c0 + j;
        if (c < p.o) {
            let y = v[j] * mask(p, q, t * p.o + c);
            yf[q.y_off + t * p.o + c] = y;
            if (q.rw != 0u) {
                rf[q.r_off + t * q.rw + c] = y;
            }
        }
    }
}

// Forward epilogue of a TILE x TILE tile (rows t0 .., columns c0 ..): the bias
// added, the rows inside the problem stored (linear_forward, linear_sg_forward).
fn store_y_tile(p: LinearParams, q: LinearProblem, t0: u32, c0: u32,
                a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>) {
    var bias: vec4<f32>;
    for (var j = 0u; j < TILE; j++) {
        bias[j] = wf[q.b_off + min(c0 + j, p.o - 1u)];
    }
    let acc = array<vec4<f32>, 4>(a0 + bias, a1 + bias, a2 + bias, a3 + bias);
    let n = p.b * q.u;
    for (var i = 0u; i < TILE; i++) {
        let t = t0 + i;
        if (t >= n) {
            break;
        }
        store_y(p, q, t, c0, acc[i]);
    }
}

// The bias at columns c .. c + 3 (clamped to O) through the vec4 view
// (linear_forward_v4, linear_sg_forward_v4).
fn bias4_v4(p: LinearParams, q: LinearProblem, c: u32) -> vec4<f32> {
    var bias: vec4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let e = q.b_off + min(c + j, p.o - 1u);
        bias[j] = wf4[e / 4u][e % 4u];
    }
    return bias;
}

// Row t of an 8 x 8 forward tile (columns c0 .. c0 + 7, bias included), stored
// where the row is inside the problem.
fn store_y_row8(p: LinearParams, q: LinearProblem, t: u32, c0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (t < p.b * q.u) {
        store_y(p, q, t, c0, lo);
        store_y(p, q, t, c0 + 4u, hi);
    }
}

// The 8 x 8 tile of y at rows t0.., columns c0.. (row r: a<r>0 | a<r>1) plus
// the bias, stored: the epilogue of linear_forward_v4 and linear_sg_forward_v4.
// Named values, not an array: gathered into an array and looped, the epilogue
// spills and the kernel ran ~1.2x slower on llvmpipe.
fn store_y_tile8(p: LinearParams, q: LinearProblem, t0: u32, c0: u32,
        a00: vec4<f32>, a01: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>, a20: vec4<f32>, a21: vec4<f32>, a30: vec4<f32>, a31: vec4<f32>, a40: vec4<f32>, a41: vec4<f32>, a50: vec4<f32>, a51: vec4<f32>, a60: vec4<f32>, a61: vec4<f32>, a70: vec4<f32>, a71: vec4<f32>) {
    let bias0 = bias4_v4(p, q, c0);
    let bias1 = bias4_v4(p, q, c0 + 4u);
    store_y_row8(p, q, t0 + 0u, c0, a00 + bias0, a01 + bias1);
    store_y_row8(p, q, t0 + 1u, c0, a10 + bias0, a11 + bias1);
    store_y_row8(p, q, t0 + 2u, c0, a20 + bias0, a21 + bias1);
    store_y_row8(p, q, t0 + 3u, c0, a30 + bias0, a31 + bias1);
    store_y_row8(p, q, t0 + 4u, c0, a40 + bias0, a41 + bias1);
    store_y_row8(p, q, t0 + 5u, c0, a50 + bias0, a51 + bias1);
    store_y_row8(p, q, t0 + 6u, c0, a60 + bias0, a61 + bias1);
    store_y_row8(p, q, t0 + 7u, c0, a70 + bias0, a71 + bias1);
}

// ---- linear_forward ----
@group(0) @binding(0) var<uniform> pf: LinearParams;
@group(0) @binding(1) var<storage, read> xf: array<f32>;
@group(0) @binding(2) var<storage, read> wf: array<f32>;
@group(0) @binding(3) var<storage, read> lenf: array<u32>;
@group(0) @binding(4) var<storage, read_write> yf: array<f32>;
@group(0) @binding(5) var<storage, read_write> rf: array<f32>;
@group(0) @binding(6) var<storage, read> qf: array<LinearProblem>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn linear_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = pf;
    let z = gid.z;
    if (z >= p.problems) {
        return;
    }
    let q = qf[z];
    let n = p.b * q.u;
    let c0 = gid.x * TILE;
    let t0 = gid.y * TILE;
    if (c0 >= p.o || t0 >= n) {
        return;
    }
    // Out-of-range rows / columns read a clamped (valid) address and are not stored.
    // The tile is unrolled by hand into named registers: llvmpipe keeps dynamically
    // indexed local arrays in memory, which made this loop ~6x slower.
    let xo = q.x_off;
    let x0 = xo + min(t0, n - 1u) * p.k;
    let x1 = xo + min(t0 + 1u, n - 1u) * p.k;
    let x2 = xo + min(t0 + 2u, n - 1u) * p.k;
    let x3 = xo + min(t0 + 3u, n - 1u) * p.k;
    let wo = q.w_off;
    let w0 = wo + min(c0, p.o - 1u) * p.k;
    let w1 = wo + min(c0 + 1u, p.o - 1u) * p.k;
    let w2 = wo + min(c0 + 2u, p.o - 1u) * p.k;
    let w3 = wo + min(c0 + 3u, p.o - 1u) * p.k;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let wv = vec4<f32>(wf[w0 + kk], wf[w1 + kk], wf[w2 + kk], wf[w3 + kk]);
        a0 += xf[x0 + kk] * wv;
        a1 += xf[x1 + kk] * wv;
        a2 += xf[x2 + kk] * wv;
        a3 += xf[x3 + kk] * wv;
    }
    store_y_tile(p, q, t0, c0, a0, a1, a2, a3);
}

// ---- linear_backward (activation gradient) ----
@group(0) @binding(0) var<uniform> pb: LinearParams;
@group(0) @binding(1) var<storage, read> dyb: array<f32>;
@group(0) @binding(2) var<storage, read> yb: array<f32>;
@group(0) @binding(3) var<storage, read> wb: array<f32>;
@group(0) @binding(4) var<storage, read> lenb: array<u32>;
@group(0) @binding(5) var<storage, read_write> dxb: array<f32>;
@group(0) @binding(6) var<storage, read> qb: array<LinearProblem>;

// g = dy, masked by the ReLU's y > 0 (times scale) when the layer has one.
fn grad_b(p: LinearParams, q: LinearProblem, idx: u32) -> f32 {
    let g = dyb[q.y_off + idx];
    if (p.relu != 0u) {
        return select(0.0, g * p.scale, yb[q.y_off + idx] > 0.0);
    }
    return g;
}

// Backward epilogue of a tile row: padding, mask, dx written.
fn store_dx(p: LinearParams, q: LinearProblem, t: u32, c0: u32, acc: vec4<f32>) {
    var v = acc;
    if (!real_row_b(p, q, t)) {
        v = vec4<f32>(0.0);
    }
    for (var j = 0u; j < TILE; j++) {
        let c = c0 + j;
        if (c < p.k) {
            dxb[q.x_off + t * p.k + c] = v[j] * mask(p, q, t * p.k + c);
        }
    }
}

// Row t of an 8 x 8 dx tile (columns c0 .. c0 + 7), stored where the row is
// inside the problem (linear_backward_v4, linear_sg_backward_v4).
fn store_dx_row8(p: LinearParams, q: LinearProblem, t: u32, c0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (t < p.b * q.u) {
        store_dx(p, q, t, c0, lo);
        store_dx(p, q, t, c0 + 4u, hi);
    }
}

// The 8 x 8 tile of dx at rows t0.., columns c0.. (row r: a<r>0 | a<r>1),
// stored: the epilogue of linear_backward_v4 and linear_sg_backward_v4.
fn store_dx_tile8(p: LinearParams, q: LinearProblem, t0: u32, c0: u32,
        a00: vec4<f32>, a01: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>, a20: vec4<f32>, a21: vec4<f32>, a30: vec4<f32>, a31: vec4<f32>, a40: vec4<f32>, a41: vec4<f32>, a50: vec4<f32>, a51: vec4<f32>, a60: vec4<f32>, a61: vec4<f32>, a70: vec4<f32>, a71: vec4<f32>) {
    store_dx_row8(p, q, t0 + 0u, c0, a00, a01);
    store_dx_row8(p, q, t0 + 1u, c0, a10, a11);
    store_dx_row8(p, q, t0 + 2u, c0, a20, a21);
    store_dx_row8(p, q, t0 + 3u, c0, a30, a31);
    store_dx_row8(p, q, t0 + 4u, c0, a40, a41);
    store_dx_row8(p, q, t0 + 5u, c0, a50, a51);
    store_dx_row8(p, q, t0 + 6u, c0, a60, a61);
    store_dx_row8(p, q, t0 + 7u, c0, a70, a71);
}

fn real_row_b(p: LinearParams, q: LinearProblem, t: u32) -> bool {
    return t < p.b * q.u && (t % q.u) < lenb[q.len_off + t / q.u];
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn linear_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = pb;
    let z = gid.z;
    if (z >= p.problems) {
        return;
    }
    let q = qb[z];
    let n = p.b * q.u;
    let c0 = gid.x * TILE;
    let t0 = gid.y * TILE;
    if (c0 >= p.k || t0 >= n) {
        return;
    }
    // Unrolled by hand, as in linear_forward.
    let g0 = min(t0, n - 1u) * p.o;
    let g1 = min(t0 + 1u, n - 1u) * p.o;
    let g2 = min(t0 + 2u, n - 1u) * p.o;
    let g3 = min(t0 + 3u, n - 1u) * p.o;
    let k0 = min(c0, p.k - 1u);
    let k1 = min(c0 + 1u, p.k - 1u);
    let k2 = min(c0 + 2u, p.k - 1u);
    let k3 = min(c0 + 3u, p.k - 1u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var o = 0u; o < p.o; o++) {
        let w = q.w_off + o * p.k;
        let wv = vec4<f32>(wb[w + k0], wb[w + k1], wb[w + k2], wb[w + k3]);
        a0 += grad_b(p, q, g0 + o) * wv;
        a1 += grad_b(p, q, g1 + o) * wv;
        a2 += grad_b(p, q, g2 + o) * wv;
        a3 += grad_b(p, q, g3 + o) * wv;
    }
    let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var i = 0u; i < TILE; i++) {
        let t = t0 + i;
        if (t >= n) {
            break;
        }
        store_dx(p, q, t, c0, acc[i]);
    }
}

// ---- linear_backward_weights (parameter gradients, accumulated) ----
@group(0) @binding(0) var<uniform> pw: LinearParams;
@group(0) @binding(1) var<storage, read> dyw: array<f32>;
@group(0) @binding(2) var<storage, read> yw: array<f32>;
@group(0) @binding(3) var<storage, read> xw: array<f32>;
@group(0) @binding(4) var<storage, read> lenw: array<u32>;
@group(0) @binding(5) var<storage, read_write> gw: array<f32>;
@group(0) @binding(6) var<storage, read> qw: array<LinearProblem>;

fn grad_w(p: LinearParams, q: LinearProblem, idx: u32) -> f32 {
    let g = dyw[q.y_off + idx];
    if (p.relu != 0u) {
        return select(0.0, g * p.scale, yw[q.y_off + idx] > 0.0);
    }
    return g;
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn linear_backward_weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = pw;
    let z = gid.z;
    let c0 = gid.x * TILE; // input column (K)
    let o0 = gid.y * TILE; // output row of W (O)
    if (c0 >= p.k || o0 >= p.o || z >= p.problems) {
        return;
    }
    let q = qw[z];
    // Unrolled by hand, as in linear_forward.
    let o_0 = min(o0, p.o - 1u);
    let o_1 = min(o0 + 1u, p.o - 1u);
    let o_2 = min(o0 + 2u, p.o - 1u);
    let o_3 = min(o0 + 3u, p.o - 1u);
    let k0 = min(c0, p.k - 1u);
    let k1 = min(c0 + 1u, p.k - 1u);
    let k2 = min(c0 + 2u, p.k - 1u);
    let k3 = min(c0 + 3u, p.k - 1u);
    var a0 = vec4<f32>(0.0); // dW[o0 + 0, c0 .. c0 + 3]
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var dbias = vec4<f32>(0.0);
    for (var b = 0u; b < p.b; b++) {
        let l = min(lenw[q.len_off + b], q.u);
        for (var i = 0u; i < l; i++) {
            let t = b * q.u + i;
            let gr = t * p.o;
            let gv = vec4<f32>(grad_w(p, q, gr + o_0), grad_w(p, q, gr + o_1), grad_w(p, q, gr + o_2), grad_w(p, q, gr + o_3));
            let xr = q.x_off + t * p.k;
            let xv = vec4<f32>(xw[xr + k0], xw[xr + k1], xw[xr + k2], xw[xr + k3]);
            a0 += gv.x * xv;
            a1 += gv.y * xv;
            a2 += gv.z * xv;
            a3 += gv.w * xv;
            dbias += gv;
        }
    }
    let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var r = 0u; r < TILE; r++) {
        if (o0 + r >= p.o) {
            break;
        }
        for (var j = 0u; j < TILE; j++) {
            if (c0 + j < p.k) {
                let idx = q.w_off + (o0 + r) * p.k + c0 + j;
                gw[idx] += acc[r][j];
            }
        }
        if (gid.x == 0u) {
            gw[q.b_off + o0 + r] += dbias[r];
        }
    }
}

// ---- vec4 variants (launchers pick them when the widths read along are
// multiples of 4 and the offsets are 4-aligned; the kernels above otherwise).
// On llvmpipe each storage load is a loop over the SIMD lanes whatever its
// width, so loading 4 consecutive K (or O) at once quarters the loads: per 4
// steps of the reduction a 4x4 tile issues 8 vec4 loads for 64 multiply-adds
// (the scalar kernels: 32 loads). Same tiles and dispatch grids as above.
//   linear_forward_v4:          K % 4 == 0, w_off % 4 == 0, x_off % 4 == 0 (an 8 x 8 tile, below)
//   linear_backward_v4:         K % 4 == 0, O % 4 == 0, w_off % 4 == 0, y_off % 4 == 0
//   linear_backward_weights_v4: K % 4 == 0, O % 4 == 0, y_off, x_off, w_off % 4 == 0 (an 8 x 8 tile, below);
//     where only O % 4 == 0 and y_off % 4 == 0 hold: linear_backward_weights_v4g (g in vec4, x scalar)

@group(0) @binding(1) var<storage, read> xf4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wf4: array<vec4<f32>>;

// An 8 x 8 register tile (8 rows of x by 8 rows of W, two vec4 of outputs per
// row) where the scalar kernel owns 4 x 4: per 4 steps of K 16 vec4 loads for
// 256 multiply-adds instead of 8 for 64 (llvmpipe's cost is the loads), a
// quarter of the invocations. Rows past N and columns past O are clamped onto
// the last one for the loads and not stored (store_y).
@compute @workgroup_size(WG_X, WG_Y, 1)
fn linear_forward_v4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = pf;
    let z = gid.z;
    if (z >= p.problems) {
        return;
    }
    let q = qf[z];
    let n = p.b * q.u;
    let c0 = gid.x * WTILE;
    let t0 = gid.y * WTILE;
    if (c0 >= p.o || t0 >= n) {
        return;
    }
    let k4 = p.k / 4u;
    let xo = q.x_off / 4u;
    let x0 = xo + min(t0 + 0u, n - 1u) * k4;
    let x1 = xo + min(t0 + 1u, n - 1u) * k4;
    let x2 = xo + min(t0 + 2u, n - 1u) * k4;
    let x3 = xo + min(t0 + 3u, n - 1u) * k4;
    let x4 = xo + min(t0 + 4u, n - 1u) * k4;
    let x5 = xo + min(t0 + 5u, n - 1u) * k4;
    let x6 = xo + min(t0 + 6u, n - 1u) * k4;
    let x7 = xo + min(t0 + 7u, n - 1u) * k4;
    let wo = q.w_off / 4u;
    let w0 = wo + min(c0 + 0u, p.o - 1u) * k4;
    let w1 = wo + min(c0 + 1u, p.o - 1u) * k4;
    let w2 = wo + min(c0 + 2u, p.o - 1u) * k4;
    let w3 = wo + min(c0 + 3u, p.o - 1u) * k4;
    let w4 = wo + min(c0 + 4u, p.o - 1u) * k4;
    let w5 = wo + min(c0 + 5u, p.o - 1u) * k4;
    let w6 = wo + min(c0 + 6u, p.o - 1u) * k4;
    let w7 = wo + min(c0 + 7u, p.o - 1u) * k4;
    var a00 = vec4<f32>(0.0);
    var a01 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0);
    var a21 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0);
    var a31 = vec4<f32>(0.0);
    var a40 = vec4<f32>(0.0);
    var a41 = vec4<f32>(0.0);
    var a50 = vec4<f32>(0.0);
    var a51 = vec4<f32>(0.0);
    var a60 = vec4<f32>(0.0);
    var a61 = vec4<f32>(0.0);
    var a70 = vec4<f32>(0.0);
    var a71 = vec4<f32>(0.0);
    for (var kk = 0u; kk < k4; kk++) {
        let wv0 = wf4[w0 + kk];
        let wv1 = wf4[w1 + kk];
        let wv2 = wf4[w2 + kk];
        let wv3 = wf4[w3 + kk];
        let wv4 = wf4[w4 + kk];
        let wv5 = wf4[w5 + kk];
        let wv6 = wf4[w6 + kk];
        let wv7 = wf4[w7 + kk];
        let xv0 = xf4[x0 + kk];
        let xv1 = xf4[x1 + kk];
        let xv2 = xf4[x2 + kk];
        let xv3 = xf4[x3 + kk];
        let xv4 = xf4[x4 + kk];
        let xv5 = xf4[x5 + kk];
        let xv6 = xf4[x6 + kk];
        let xv7 = xf4[x7 + kk];
        // a<r><h>: output row t0 + r at the 4 columns of quad h. Unrolled into
        // named registers: as mat4x4 products (transpose(W) X) this ran 1.6x
        // slower on llvmpipe; dynamically indexed arrays spill.
        a00 += vec4<f32>(dot(xv0, wv0), dot(xv0, wv1), dot(xv0, wv2), dot(xv0, wv3));
        a01 += vec4<f32>(dot(xv0, wv4), dot(xv0, wv5), dot(xv0, wv6), dot(xv0, wv7));
        a10 += vec4<f32>(dot(xv1, wv0), dot(xv1, wv1), dot(xv1, wv2), dot(xv1, wv3));
        a11 += vec4<f32>(dot(xv1, wv4), dot(xv1, wv5), dot(xv1, wv6), dot(xv1, wv7));
        a20 += vec4<f32>(dot(xv2, wv0), dot(xv2, wv1), dot(xv2, wv2), dot(xv2, wv3));
        a21 += vec4<f32>(dot(xv2, wv4), dot(xv2, wv5), dot(xv2, wv6), dot(xv2, wv7));
        a30 += vec4<f32>(dot(xv3, wv0), dot(xv3, wv1), dot(xv3, wv2), dot(xv3, wv3));
        a31 += vec4<f32>(dot(xv3, wv4), dot(xv3, wv5), dot(xv3, wv6), dot(xv3, wv7));
        a40 += vec4<f32>(dot(xv4, wv0), dot(xv4, wv1), dot(xv4, wv2), dot(xv4, wv3));
        a41 += vec4<f32>(dot(xv4, wv4), dot(xv4, wv5), dot(xv4, wv6), dot(xv4, wv7));
        a50 += vec4<f32>(dot(xv5, wv0), dot(xv5, wv1), dot(xv5, wv2), dot(xv5, wv3));
        a51 += vec4<f32>(dot(xv5, wv4), dot(xv5, wv5), dot(xv5, wv6), dot(xv5, wv7));
        a60 += vec4<f32>(dot(xv6, wv0), dot(xv6, wv1), dot(xv6, wv2), dot(xv6, wv3));
        a61 += vec4<f32>(dot(xv6, wv4), dot(xv6, wv5), dot(xv6, wv6), dot(xv6, wv7));
        a70 += vec4<f32>(dot(xv7, wv0), dot(xv7, wv1), dot(xv7, wv2), dot(xv7, wv3));
        a71 += vec4<f32>(dot(xv7, wv4), dot(xv7, wv5), dot(xv7, wv6), dot(xv7, wv7));
    }
    store_y_tile8(p, q, t0, c0, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71);
}

@group(0) @binding(1) var<storage, read> dyb4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> yb4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wb4: array<vec4<f32>>;

// g = dy (masked by y > 0, times scale, with ReLU) at 4 consecutive outputs, vec4 index q.
fn grad_b4(p: LinearParams, q: u32) -> vec4<f32> {
    let g = dyb4[q];
    if (p.relu != 0u) {
        return select(vec4<f32>(0.0), g * p.scale, yb4[q] > vec4<f32>(0.0));
    }
    return g;
}

// An 8 x 8 register tile (8 rows of g by 8 columns of W, two vec4 of dx per
// row): per 4 steps of O 16 vec4 loads (24 with ReLU) for 256 multiply-adds
// instead of 8 (12) for 64. Columns past K are clamped for the loads and not
// stored (store_dx), rows past N likewise.
@compute @workgroup_size(WG_X, WG_Y, 1)
fn linear_backward_v4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = pb;
    let z = gid.z;
    if (z >= p.problems) {
        return;
    }
    let q = qb[z];
    let n = p.b * q.u;
    let c0 = gid.x * WTILE; // 8 consecutive input columns: two vec4 of W's row
    let t0 = gid.y * WTILE;
    if (c0 >= p.k || t0 >= n) {
        return;
    }
    let o4 = p.o / 4u;
    let k4 = p.k / 4u;
    let yo = q.y_off;
    let g0 = (yo + min(t0 + 0u, n - 1u) * p.o) / 4u;
    let g1 = (yo + min(t0 + 1u, n - 1u) * p.o) / 4u;
    let g2 = (yo + min(t0 + 2u, n - 1u) * p.o) / 4u;
    let g3 = (yo + min(t0 + 3u, n - 1u) * p.o) / 4u;
    let g4 = (yo + min(t0 + 4u, n - 1u) * p.o) / 4u;
    let g5 = (yo + min(t0 + 5u, n - 1u) * p.o) / 4u;
    let g6 = (yo + min(t0 + 6u, n - 1u) * p.o) / 4u;
    let g7 = (yo + min(t0 + 7u, n - 1u) * p.o) / 4u;
    let wc0 = q.w_off / 4u + c0 / 4u;
    let wc1 = q.w_off / 4u + min(c0 / 4u + 1u, k4 - 1u);
    var a00 = vec4<f32>(0.0);
    var a01 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0);
    var a21 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0);
    var a31 = vec4<f32>(0.0);
    var a40 = vec4<f32>(0.0);
    var a41 = vec4<f32>(0.0);
    var a50 = vec4<f32>(0.0);
    var a51 = vec4<f32>(0.0);
    var a60 = vec4<f32>(0.0);
    var a61 = vec4<f32>(0.0);
    var a70 = vec4<f32>(0.0);
    var a71 = vec4<f32>(0.0);
    for (var oo = 0u; oo < o4; oo++) {
        // Rows 4 oo .. 4 oo + 3 of W at the columns of quad h, as the columns
        // of w<h>: w<h> * g sums g[j] times row 4 oo + j.
        let w = 4u * oo * k4;
        let w0 = mat4x4<f32>(wb4[wc0 + w], wb4[wc0 + w + k4], wb4[wc0 + w + 2u * k4], wb4[wc0 + w + 3u * k4]);
        let w1 = mat4x4<f32>(wb4[wc1 + w], wb4[wc1 + w + k4], wb4[wc1 + w + 2u * k4], wb4[wc1 + w + 3u * k4]);
        let gv0 = grad_b4(p, g0 + oo);
        let gv1 = grad_b4(p, g1 + oo);
        let gv2 = grad_b4(p, g2 + oo);
        let gv3 = grad_b4(p, g3 + oo);
        let gv4 = grad_b4(p, g4 + oo);
        let gv5 = grad_b4(p, g5 + oo);
        let gv6 = grad_b4(p, g6 + oo);
        let gv7 = grad_b4(p, g7 + oo);
        a00 += w0 * gv0;
        a01 += w1 * gv0;
        a10 += w0 * gv1;
        a11 += w1 * gv1;
        a20 += w0 * gv2;
        a21 += w1 * gv2;
        a30 += w0 * gv3;
        a31 += w1 * gv3;
        a40 += w0 * gv4;
        a41 += w1 * gv4;
        a50 += w0 * gv5;
        a51 += w1 * gv5;
        a60 += w0 * gv6;
        a61 += w1 * gv6;
        a70 += w0 * gv7;
        a71 += w1 * gv7;
    }
    // Stored from the named registers: gathered into an array and looped, the
    // epilogue spills and the kernel ran ~1.2x slower on llvmpipe.
    store_dx_tile8(p, q, t0, c0, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71);
}

@group(0) @binding(1) var<storage, read> dyw4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> yw4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> xw4: array<vec4<f32>>;

// dW[o0 .. o0 + 7, c0 .. c0 + 7]: an 8 x 8 register tile (two vec4 quads of g
// by two of x per row) where the scalar kernel owns 4 x 4: per row 4 vec4 loads
// (6 with ReLU) for 64 multiply-adds instead of 2 (3) for 16, the loads being
// llvmpipe's cost, and a quarter of the invocations, each with the same row
// loop (B * U is only ~100-1600 rows: the reduction is short, the output wide).
// When O or K is 4 mod 8 the last tile's second quad is clamped onto its first
// and not stored.
@group(0) @binding(5) var<storage, read_write> gw4: array<vec4<f32>>;

// g x^T as a matrix whose column j is g[j] * x: one row of a weight tile each.
fn outer(g: vec4<f32>, x: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(g.x * x, g.y * x, g.z * x, g.w * x);
}

// dW[o, c .. c + 3] += v where that row and quad lie inside the weight (w_off % 4 == 0).
fn store_dw4(q: LinearProblem, o: u32, c: u32, v: vec4<f32>) {
    if (o < pw.o && c < pw.k) {
        let i = (q.w_off + o * pw.k + c) / 4u;
        gw4[i] += v;
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn linear_backward_weights_v4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = pw;
    let z = gid.z;
    let c0 = gid.x * WTILE; // input columns c0 .. c0 + 7 (two vec4 of x)
    let o0 = gid.y * WTILE; // output rows o0 .. o0 + 7 (two vec4 of g)
    if (c0 >= p.k || o0 >= p.o || z >= p.problems) {
        return;
    }
    let q = qw[z];
    let o4 = p.o / 4u;
    let k4 = p.k / 4u;
    let og0 = o0 / 4u;
    let og1 = min(og0 + 1u, o4 - 1u);
    let kq0 = c0 / 4u;
    let kq1 = min(kq0 + 1u, k4 - 1u);
    // The tile as four 4 x 4 blocks: m<G><X> column j is dW row o0 + 4G + j at
    // the columns of x quad X.
    var m00 = mat4x4<f32>();
    var m01 = mat4x4<f32>();
    var m10 = mat4x4<f32>();
    var m11 = mat4x4<f32>();
    var db0 = vec4<f32>(0.0);
    var db1 = vec4<f32>(0.0);
    for (var b = 0u; b < p.b; b++) {
        let l = min(lenw[q.len_off + b], q.u);
        for (var i = 0u; i < l; i++) {
            let t = b * q.u + i;
            let gr = q.y_off / 4u + t * o4;
            var g0 = dyw4[gr + og0];
            var g1 = dyw4[gr + og1];
            if (p.relu != 0u) {
                g0 = select(vec4<f32>(0.0), g0 * p.scale, yw4[gr + og0] > vec4<f32>(0.0));
                g1 = select(vec4<f32>(0.0), g1 * p.scale, yw4[gr + og1] > vec4<f32>(0.0));
            }
            let xr = q.x_off / 4u + t * k4;
            let x0 = xw4[xr + kq0];
            let x1 = xw4[xr + kq1];
            m00 += outer(g0, x0);
            m01 += outer(g0, x1);
            m10 += outer(g1, x0);
            m11 += outer(g1, x1);
            db0 += g0;
            db1 += g1;
        }
    }
    for (var j = 0u; j < 4u; j++) {
        store_dw4(q, o0 + j, c0, m00[j]);
        store_dw4(q, o0 + j, c0 + 4u, m01[j]);
        store_dw4(q, o0 + 4u + j, c0, m10[j]);
        store_dw4(q, o0 + 4u + j, c0 + 4u, m11[j]);
    }
    if (gid.x == 0u) {
        let bo = q.b_off;
        let n = min(p.o - o0, WTILE);
        for (var r = 0u; r < n; r++) {
            // gw (the scalar view) is not bound here: one variable per binding.
            let e = bo + o0 + r;
            gw4[e / 4u][e % 4u] += select(db1[r % 4u], db0[r % 4u], r < 4u);
        }
    }
}

// linear_backward_weights_v4g: the same 8 x 8 tile where only O allows vec4
// (K % 4 != 0: the audio and video input projections, K 74 and 35): g in
// vec4 quads, x in scalar loads (8 per row, the columns past K clamped),
// dW stored element by element. Per row 10 loads (12 with ReLU) for 64
// multiply-adds, against the scalar kernel's 8 for 16.
//   needs O % 4 == 0, y_off % 4 == 0; any K, x_off, w_off, b_off.

// dW[o, c .. c + 7] += (lo, hi) for the columns inside the weight.
fn store_dw_row(q: LinearProblem, o: u32, c: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (o >= pw.o) {
        return;
    }
    let row = q.w_off + o * pw.k;
    for (var j = 0u; j < 4u; j++) {
        if (c + j < pw.k) {
            gw[row + c + j] += lo[j];
        }
        if (c + 4u + j < pw.k) {
            gw[row + c + 4u + j] += hi[j];
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn linear_backward_weights_v4g(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = pw;
    let z = gid.z;
    let c0 = gid.x * WTILE;
    let o0 = gid.y * WTILE;
    if (c0 >= p.k || o0 >= p.o || z >= p.problems) {
        return;
    }
    let q = qw[z];
    let o4 = p.o / 4u;
    let og0 = o0 / 4u;
    let og1 = min(og0 + 1u, o4 - 1u);
    let km = p.k - 1u;
    // The tile as four 4 x 4 blocks: m<G><X> column j is dW row o0 + 4G + j at
    // the columns of x quad X.
    var m00 = mat4x4<f32>();
    var m01 = mat4x4<f32>();
    var m10 = mat4x4<f32>();
    var m11 = mat4x4<f32>();
    var db0 = vec4<f32>(0.0);
    var db1 = vec4<f32>(0.0);
    for (var b = 0u; b < p.b; b++) {
        let l = min(lenw[q.len_off + b], q.u);
        for (var i = 0u; i < l; i++) {
            let t = b * q.u + i;
            let gr = q.y_off / 4u + t * o4;
            var g0 = dyw4[gr + og0];
            var g1 = dyw4[gr + og1];
            if (p.relu != 0u) {
                g0 = select(vec4<f32>(0.0), g0 * p.scale, yw4[gr + og0] > vec4<f32>(0.0));
                g1 = select(vec4<f32>(0.0), g1 * p.scale, yw4[gr + og1] > vec4<f32>(0.0));
            }
            let xr = q.x_off + t * p.k;
            let x0 = vec4<f32>(xw[xr + min(c0, km)], xw[xr + min(c0 + 1u, km)], xw[xr + min(c0 + 2u, km)], xw[xr + min(c0 + 3u, km)]);
            let x1 = vec4<f32>(xw[xr + min(c0 + 4u, km)], xw[xr + min(c0 + 5u, km)], xw[xr + min(c0 + 6u, km)], xw[xr + min(c0 + 7u, km)]);
            m00 += outer(g0, x0);
            m01 += outer(g0, x1);
            m10 += outer(g1, x0);
            m11 += outer(g1, x1);
            db0 += g0;
            db1 += g1;
        }
    }
    for (var j = 0u; j < 4u; j++) {
        store_dw_row(q, o0 + j, c0, m00[j], m01[j]);
        store_dw_row(q, o0 + 4u + j, c0, m10[j], m11[j]);
    }
    if (gid.x == 0u) {
        let n = min(p.o - o0, WTILE);
        for (var r = 0u; r < n; r++) {
            gw[q.b_off + o0 + r] += select(db1[r % 4u], db0[r % 4u], r < 4u);
        }
    }
}
