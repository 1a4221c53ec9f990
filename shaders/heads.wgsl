// heads.wgsl: both heads fused with the masked loss (MODEL.md layer 5 and "Loss").
//   sentiment = softmax(W_s r + b_s) over 2 classes, CE against (score >= 0)
//   emotion   = sigmoid(W_e r + b_e) over 7 labels, mean_k BCE against
//               (intensity_k > 0; no-emotion = all six are 0)
//   L = w_s * sum CE / count + w_e * sum meanBCE / count, count = real utterances.
// Entry points:
//   heads_forward            per row t: probs (B, u, 9) = [2 sentiment, 7 emotion],
//                            dz (B, u, 9) = dL/dlogits, row_loss (B, u, 2) = [CE, mean BCE];
//                            all zero at padded rows and for an absent head.
//   heads_loss               one workgroup per problem: row_loss summed in a fixed order
//                            (strided per-thread sums, then a tree), loss (4) = [L, sum CE,
//                            sum meanBCE, count] written, or added when accumulate = 1.
//   heads_backward           dR (B, u, R) = dz W (written; 0 at padded rows); with the
//                            plain-block table also dX[t, c] += dR[t, plain[s] + c] for
//                            modality slot s's block gradient (B, u, D) in the dfeat arena
//                            (what representation_backward did, fused here).
//   heads_backward_weights   grads[W_c, j] += sum_t dz[t, c] R[t, j] and grads[b_c] +=
//                            sum_t dz[t, c], real rows in a fixed order (deterministic).
// The forward computes dz because it knows the labels; backward only reads it.
// Letters: B, U (a problem's own u), R representation width (rw); rows t = b * u + i,
// real iff i < len[len_off + b].
//
// Problems: one problem is one model (its R block and width, its tasks and loss
// weights, its head parameters in the w / grads arenas, its probs, dz, row_loss
// blocks, its 4-float loss slot, its plain blocks and their gradients in the ONE
// dfeat arena); the list (binding 1) holds one HeadsProblem per model, with its own
// batch of the launch's B videos: u (its longest video), its lengths at
// len[len_off + b] and its labels (B, u, 7) at lab_off of the labels binding. Every
// block of a problem is laid out with its own u (rows t = b * u + i), as in a launch
// of its own at U = u; the launch's U is U_max (the largest u) and only sizes the
// grids; rows past B * u of a problem's blocks are never touched. So models of
// different seeds (different batches) share one launch: a 5-seed grid's step is one
// schedule, not five. Each problem is computed exactly as a one-problem launch at
// U = u (its loss summed in its own slot in the same order, over its own B * u rows),
// so a model gets the same bits alone or among K; one launch for K models gives the
// GPU K times the invocations (one model's heads are a few hundred rows).
//
// Dispatch (grid z = problem; the grids cover U_max and the launch's largest rw, a
// problem's invocations past its own B * u rows return at once):
//   heads_forward:          1-D over B*U rows, workgroup 64, one invocation per row
//   heads_loss:             exactly one workgroup of 256 per problem
//   heads_backward:         1-D over B*U*ceil(rw_max / BW_COLS) (row, BW_COLS columns), workgroup 256,
//                           grid folded into y
//   heads_backward_weights: 1-D over ceil((rw_max+1) / 4) (4 columns-or-bias, all 9 classes),
//                           workgroup 64
// Bindings (0 p, 1 problem list in every entry point):
//   heads_forward:          2 r, 3 w (flat params), 4 labels (B, u, 7) at lab_off, 5 len,
//                           6 probs rw, 7 dz rw, 8 row_loss rw
//   heads_loss:             2 row_loss, 3 len, 4 loss rw
//   heads_backward:         2 dz, 3 w (flat params), 4 len, 5 dr rw, 6 dfeat rw
//   heads_backward_weights: 2 dz, 3 r, 4 len, 5 grads (flat) rw

// C, S, E, NO_BLOCK and BW_COLS come before this body in the module, from src/gpu/heads.rs
// (WGSL_CONSTS).
//
// The read-only operands at bindings 2 and 3 (r_f / w_f of heads_forward, dz_b / w_b of
// heads_backward, dz_w / r_w of heads_backward_weights) are declared after this body by
// src/gpu/heads.rs (`views`): storage buffers, or in the texture form (the module
// heads_tex, its entries heads_tex_*) texture copies the launcher makes before the
// dispatch (src/gpu/texture.rs); the same values in the same sums either way.

struct HeadsParams {
    b: u32,
    u: u32,             // U_max: the largest u of the problems (sizes the grids)
    d: u32,             // block width D
    accumulate: u32,    // heads_loss: 1 adds into loss instead of writing it
    problems: u32,      // entries of the problem list (grid z)
    rw_max: u32,        // the largest rw of the problems (the grids' width)
    _pad0: u32,
    _pad1: u32,
}

// One model's heads: element offsets into the bound buffers unless said.
struct HeadsProblem {
    r_off: u32,         // R (B, u, rw) in r and dr
    rw: u32,            // representation width R of this model
    has_sentiment: u32,
    has_emotion: u32,
    ws_off: u32,        // sentiment.weight (2, R), sentiment.bias (2),
    bs_off: u32,        // emotion.weight (7, R), emotion.bias (7) in the w / grads arenas
    we_off: u32,
    be_off: u32,
    w_s: f32,           // loss weights
    w_e: f32,
    probs_off: u32,     // probs (B, u, 9)
    dz_off: u32,        // dz (B, u, 9)
    row_loss_off: u32,  // row_loss (B, u, 2)
    loss_off: u32,      // the model's 4-float loss slot
    plain: array<u32, 3>,     // column in R of modality slot s's plain block, NO_BLOCK if none
    dfeat_off: array<u32, 3>, // slot s's block gradient (B, u, D) in dfeat
    u: u32,             // the problem's own U (its batch's longest video), 1..=the launch's U
    len_off: u32,       // its B lengths at len[len_off + b]
    lab_off: u32,       // its labels (B, u, 7) at labels[lab_off]
    _pad0: u32,
}

// Column j's offset in the plain block at column `off` (NO_BLOCK: none), or NO_BLOCK.
fn in_block(p: HeadsParams, off: u32, j: u32) -> u32 {
    if (off != NO_BLOCK && j >= off && j < off + p.d) {
        return j - off;
    }
    return NO_BLOCK;
}

// Offset of class c's weight row and bias (c < 2 sentiment, else emotion c - 2).
fn w_row(q: HeadsProblem, c: u32) -> u32 {
    if (c < S) {
        return q.ws_off + c * q.rw;
    }
    return q.we_off + (c - S) * q.rw;
}

fn b_at(q: HeadsProblem, c: u32) -> u32 {
    if (c < S) {
        return q.bs_off + c;
    }
    return q.be_off + c - S;
}

fn head_on(q: HeadsProblem, c: u32) -> bool {
    return (c < S && q.has_sentiment != 0u) || (c >= S && q.has_emotion != 0u);
}

// ---- heads_forward ----
@group(0) @binding(0) var<uniform> pf: HeadsParams;
@group(0) @binding(1) var<storage, read> qf: array<HeadsProblem>;
@group(0) @binding(4) var<storage, read> labels: array<f32>;
@group(0) @binding(5) var<storage, read> lenf: array<u32>;
@group(0) @binding(6) var<storage, read_write> probs: array<f32>;
@group(0) @binding(7) var<storage, read_write> dzf: array<f32>;
@group(0) @binding(8) var<storage, read_write> row_loss: array<f32>;

fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

@compute @workgroup_size(64)
fn heads_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let p = pf;
    let t = (wg.y * nwg.x + wg.x) * 64u + lid;
    if (wg.z >= p.problems) {
        return;
    }
    let q = qf[wg.z];
    let u = q.u;
    if (t >= p.b * u) {
        return;
    }
    let po = q.probs_off + t * C;
    let dzo = q.dz_off + t * C;
    let rlo = q.row_loss_off + t * 2u;
    for (var c = 0u; c < C; c++) {
        probs[po + c] = 0.0;
        dzf[dzo + c] = 0.0;
    }
    row_loss[rlo] = 0.0;
    row_loss[rlo + 1u] = 0.0;
    if ((t % u) >= lenf[q.len_off + t / u]) {
        return;
    }
    var count = 0u;
    for (var b = 0u; b < p.b; b++) {
        count += min(lenf[q.len_off + b], u);
    }
    let inv_count = 1.0 / f32(count);

    // All 9 logits in one pass over the row (absent heads read a clamped row, unused).
    var z: array<f32, 9>;
    var rows: array<u32, 9>;
    for (var c = 0u; c < C; c++) {
        rows[c] = select(0u, w_row(q, c), head_on(q, c));
    }
    // Row t of R and the classes' weight rows 4 columns at a time (r_f4, w_f4:
    // quads at any alignment), then the last rw % 4 columns one by one; each
    // logit adds its products in column order, as one column at a time would.
    let r0 = q.r_off + t * q.rw;
    let whole = q.rw - q.rw % 4u;
    for (var j = 0u; j < whole; j += 4u) {
        let x = r_f4(r0 + j);
        for (var c = 0u; c < C; c++) {
            let w = w_f4(rows[c] + j);
            z[c] += w.x * x.x;
            z[c] += w.y * x.y;
            z[c] += w.z * x.z;
            z[c] += w.w * x.w;
        }
    }
    for (var j = whole; j < q.rw; j++) {
        let x = r_f(r0 + j);
        for (var c = 0u; c < C; c++) {
            z[c] += w_f(rows[c] + j) * x;
        }
    }
    for (var c = 0u; c < C; c++) {
        if (head_on(q, c)) {
            z[c] += w_f(b_at(q, c));
        }
    }
    let lab = q.lab_off + t * 7u;
    if (q.has_sentiment != 0u) {
        let y = select(0u, 1u, labels[lab] >= 0.0);
        let mx = max(z[0], z[1]);
        let lse = mx + log(exp(z[0] - mx) + exp(z[1] - mx));
        for (var c = 0u; c < S; c++) {
            let pc = exp(z[c] - lse);
            probs[po + c] = pc;
            dzf[dzo + c] = (pc - select(0.0, 1.0, c == y)) * q.w_s * inv_count;
        }
        row_loss[rlo] = lse - z[y];
    }
    if (q.has_emotion != 0u) {
        var none = 1.0;
        var bce = 0.0;
        for (var k = 0u; k < E; k++) {
            var tgt = 0.0;
            if (k < 6u) {
                if (labels[lab + 1u + k] > 0.0) {
                    tgt = 1.0;
                    none = 0.0;
                }
            } else {
                tgt = none;
            }
            let zk = z[S + k];
            let pk = 1.0 / (1.0 + exp(-zk));
            probs[po + S + k] = pk;
            dzf[dzo + S + k] = (pk - tgt) * q.w_e * inv_count / f32(E);
            bce += softplus(zk) - tgt * zk;
        }
        row_loss[rlo + 1u] = bce / f32(E);
    }
}

// ---- heads_loss ----
@group(0) @binding(0) var<uniform> pl: HeadsParams;
@group(0) @binding(1) var<storage, read> ql: array<HeadsProblem>;
@group(0) @binding(2) var<storage, read> row_loss_l: array<f32>;
@group(0) @binding(3) var<storage, read> lenl: array<u32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;

var<workgroup> part: array<vec2<f32>, 256>;

@compute @workgroup_size(256)
fn heads_loss(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = pl;
    let q = ql[min(wg.z, p.problems - 1u)];
    let n = p.b * q.u;
    var s = vec2<f32>(0.0);
    for (var t = lid; t < n; t += 256u) {
        let o = q.row_loss_off + t * 2u;
        s += vec2<f32>(row_loss_l[o], row_loss_l[o + 1u]);
    }
    part[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            part[lid] += part[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u && wg.z < p.problems) {
        var count = 0u;
        for (var b = 0u; b < p.b; b++) {
            count += min(lenl[q.len_off + b], q.u);
        }
        let sums = part[0];
        let cf = f32(count);
        var l = 0.0;
        if (q.has_sentiment != 0u) {
            l += q.w_s * sums.x / cf;
        }
        if (q.has_emotion != 0u) {
            l += q.w_e * sums.y / cf;
        }
        let v = vec4<f32>(l, sums.x, sums.y, cf);
        for (var k = 0u; k < 4u; k++) {
            if (p.accumulate != 0u) {
                loss[q.loss_off + k] += v[k];
            } else {
                loss[q.loss_off + k] = v[k];
            }
        }
    }
}

// ---- heads_backward (dR, written) ----
@group(0) @binding(0) var<uniform> pb: HeadsParams;
@group(0) @binding(1) var<storage, read> qb: array<HeadsProblem>;
@group(0) @binding(4) var<storage, read> lenb: array<u32>;
@group(0) @binding(5) var<storage, read_write> dr: array<f32>;
@group(0) @binding(6) var<storage, read_write> dfeat: array<f32>;

// dR[t, j] = g (row t's gradient at column j of R); with the plain-block table
// also dX[t, c] += g for the slot whose block holds column j.
fn store_dr(p: HeadsParams, q: HeadsProblem, t: u32, j: u32, g: f32) {
    dr[q.r_off + t * q.rw + j] = g;
    // Slots by constant index (the problem is a value, not a reference).
    let c0 = in_block(p, q.plain[0], j);
    if (c0 != NO_BLOCK) {
        dfeat[q.dfeat_off[0] + t * p.d + c0] += g;
    }
    let c1 = in_block(p, q.plain[1], j);
    if (c1 != NO_BLOCK) {
        dfeat[q.dfeat_off[1] + t * p.d + c1] += g;
    }
    let c2 = in_block(p, q.plain[2], j);
    if (c2 != NO_BLOCK) {
        dfeat[q.dfeat_off[2] + t * p.d + c2] += g;
    }
}

// One invocation per (row t, BW_COLS consecutive columns of R): the problem
// entry (a struct of ~25 words: on llvmpipe as many per-lane loads), the
// length and row t's dz are read once for the BW_COLS columns instead of once
// per column, and each class's weights as BW_COLS / 4 quads (w_b4: 4
// consecutive elements at any alignment) instead of BW_COLS scalars; each
// column sums its classes in the same order as a column alone.
@compute @workgroup_size(256)
fn heads_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let p = pb;
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (wg.z >= p.problems) {
        return;
    }
    let q = qb[wg.z];
    let u = q.u;
    let groups = (q.rw + BW_COLS - 1u) / BW_COLS;
    if (e >= p.b * u * groups) {
        return;
    }
    let t = e / groups;
    let j0 = (e % groups) * BW_COLS;
    // Columns past rw read whatever follows the class's row and are not stored.
    var g: array<vec4<f32>, BW_COLS / 4u>;
    if ((t % u) < lenb[q.len_off + t / u]) {
        for (var c = 0u; c < C; c++) {
            if (head_on(q, c)) {
                let d = dz_b(q.dz_off + t * C + c);
                let row = w_row(q, c);
                for (var k = 0u; k < BW_COLS / 4u; k++) {
                    g[k] += d * w_b4(row + j0 + 4u * k);
                }
            }
        }
    }
    for (var k = 0u; k < BW_COLS; k++) {
        if (j0 + k < q.rw) {
            store_dr(p, q, t, j0 + k, g[k / 4u][k % 4u]);
        }
    }
}

// ---- heads_backward_weights (accumulated) ----
@group(0) @binding(0) var<uniform> pw: HeadsParams;
@group(0) @binding(1) var<storage, read> qw: array<HeadsProblem>;
@group(0) @binding(4) var<storage, read> lenw: array<u32>;
@group(0) @binding(5) var<storage, read_write> grads: array<f32>;

// One invocation per quad of columns j0 .. j0 + 3 of [W | b] (column rw: the
// bias) for all C classes: row t's 4 R values are read as one quad (r_w4) for
// the C classes and 4 columns (they were read once per class and column), and
// each (class, column) sums over the rows in the same order as a class and
// column alone. Classes of an absent head have dz = 0 and are not stored.
@compute @workgroup_size(64)
fn heads_backward_weights(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let p = pw;
    let j0 = 4u * ((wg.y * nwg.x + wg.x) * 64u + lid);
    if (wg.z >= p.problems) {
        return;
    }
    let q = qw[wg.z];
    if (j0 > q.rw) {
        return;
    }
    // Column rw multiplies 1 (the bias); columns past it are not stored.
    let past = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u) >= vec4<u32>(q.rw);
    var acc: array<vec4<f32>, C>;
    for (var b = 0u; b < p.b; b++) {
        let l = min(lenw[q.len_off + b], q.u);
        for (var i = 0u; i < l; i++) {
            let t = b * q.u + i;
            let x = select(r_w4(q.r_off + t * q.rw + j0), vec4<f32>(1.0), past);
            let dz = q.dz_off + t * C;
            for (var c = 0u; c < C; c++) {
                acc[c] += dz_w(dz + c) * x;
            }
        }
    }
    for (var k = 0u; k < 4u; k++) {
        let j = j0 + k;
        for (var c = 0u; c < C; c++) {
            if (head_on(q, c) && j <= q.rw) {
                if (j < q.rw) {
                    grads[w_row(q, c) + j] += acc[c][k];
                } else {
                    grads[b_at(q, c)] += acc[c][k];
                }
            }
        }
    }
}
