// heads.wgsl: both heads fused with the masked loss (MODEL.md layer 5 and "Loss").
//   sentiment = softmax(W_s r + b_s) over 2 classes, CE against (score >= 0)
//   emotion   = sigmoid(W_e r + b_e) over 7 labels, mean_k BCE against
//               (intensity_k > 0; no-emotion = all six are 0)
//   L = w_s * sum CE / count + w_e * sum meanBCE / count, count = real utterances.
// Entry points:
//   heads_forward            per row t: probs (B, U, 9) = [2 sentiment, 7 emotion],
//                            dz (B, U, 9) = dL/dlogits, row_loss (B, U, 2) = [CE, mean BCE];
//                            all zero at padded rows and for an absent head.
//   heads_loss               one workgroup: row_loss summed in a fixed order (strided
//                            per-thread sums, then a tree), loss (4) = [L, sum CE,
//                            sum meanBCE, count] written, or added when accumulate = 1.
//   heads_backward           dR (B, U, R) = dz W (written; 0 at padded rows); with the
//                            plain-block table also dX[t, c] += dR[t, plain[s] + c] for
//                            modality slot s's block gradient (B, U, D) (what
//                            representation_backward did, fused here).
//   heads_backward_weights   grads[W_c, j] += sum_t dz[t, c] R[t, j] and grads[b_c] +=
//                            sum_t dz[t, c], real rows in a fixed order (deterministic).
// The forward computes dz because it knows the labels; backward only reads it.
// Letters: B, U, R representation width (rw); rows t = b * U + i, real iff i < len[b].
//
// Dispatch:
//   heads_forward:          1-D over B*U rows, workgroup 64, one invocation per row
//   heads_loss:             exactly one workgroup of 256
//   heads_backward:         1-D over B*U*R elements, workgroup 256, grid folded into y
//   heads_backward_weights: 1-D over 9*(R+1) (class, column-or-bias), workgroup 64
// Bindings:
//   heads_forward:          0 p, 1 r (B, U, R), 2 w (flat params), 3 labels (B, U, 7), 4 len (B),
//                           5 probs (B, U, 9) rw, 6 dz (B, U, 9) rw, 7 row_loss (B, U, 2) rw
//   heads_loss:             0 p, 1 row_loss (B, U, 2), 2 len (B), 3 loss (4) rw
//   heads_backward:         0 p, 1 dz (B, U, 9), 2 w (flat params), 3 len (B), 4 dr (B, U, R) rw,
//                           5 / 6 / 7 dX of modality slot 0 / 1 / 2 (B, U, D) rw (any buffer if no block)
//   heads_backward_weights: 0 p, 1 dz (B, U, 9), 2 r (B, U, R), 3 len (B), 4 grads (flat) rw

const C: u32 = 9u; // 2 sentiment classes + 7 emotion labels
const S: u32 = 2u;
const E: u32 = 7u;

struct HeadsParams {
    b: u32,
    u: u32,
    rw: u32,            // representation width R
    has_sentiment: u32,
    has_emotion: u32,
    ws_off: u32,        // element offsets of sentiment.weight (2, R), sentiment.bias (2),
    bs_off: u32,        // emotion.weight (7, R), emotion.bias (7) in the flat params / grads
    we_off: u32,
    be_off: u32,
    w_s: f32,           // loss weights
    w_e: f32,
    accumulate: u32,    // heads_loss: 1 adds into loss instead of writing it
    d: u32,             // block width D
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    plain: vec4<u32>,   // column in R of modality slot s's plain block, NO_BLOCK if none
}

const NO_BLOCK: u32 = 0xffffffffu;

// Column j's offset in slot s's plain block, or NO_BLOCK.
fn in_block(p: HeadsParams, s: u32, j: u32) -> u32 {
    let off = p.plain[s];
    if (off != NO_BLOCK && j >= off && j < off + p.d) {
        return j - off;
    }
    return NO_BLOCK;
}

// Offset of class c's weight row and bias (c < 2 sentiment, else emotion c - 2).
fn w_row(p: HeadsParams, c: u32) -> u32 {
    if (c < S) {
        return p.ws_off + c * p.rw;
    }
    return p.we_off + (c - S) * p.rw;
}

fn b_at(p: HeadsParams, c: u32) -> u32 {
    if (c < S) {
        return p.bs_off + c;
    }
    return p.be_off + c - S;
}

fn head_on(p: HeadsParams, c: u32) -> bool {
    return (c < S && p.has_sentiment != 0u) || (c >= S && p.has_emotion != 0u);
}

// ---- heads_forward ----
@group(0) @binding(0) var<uniform> pf: HeadsParams;
@group(0) @binding(1) var<storage, read> rf: array<f32>;
@group(0) @binding(2) var<storage, read> wf: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<f32>;
@group(0) @binding(4) var<storage, read> lenf: array<u32>;
@group(0) @binding(5) var<storage, read_write> probs: array<f32>;
@group(0) @binding(6) var<storage, read_write> dzf: array<f32>;
@group(0) @binding(7) var<storage, read_write> row_loss: array<f32>;

fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

@compute @workgroup_size(64)
fn heads_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let p = pf;
    let t = (wg.y * nwg.x + wg.x) * 64u + lid;
    if (t >= p.b * p.u) {
        return;
    }
    for (var c = 0u; c < C; c++) {
        probs[t * C + c] = 0.0;
        dzf[t * C + c] = 0.0;
    }
    row_loss[t * 2u] = 0.0;
    row_loss[t * 2u + 1u] = 0.0;
    if ((t % p.u) >= lenf[t / p.u]) {
        return;
    }
    var count = 0u;
    for (var b = 0u; b < p.b; b++) {
        count += min(lenf[b], p.u);
    }
    let inv_count = 1.0 / f32(count);

    // All 9 logits in one pass over the row (absent heads read a clamped row, unused).
    var z: array<f32, 9>;
    var rows: array<u32, 9>;
    for (var c = 0u; c < C; c++) {
        rows[c] = select(0u, w_row(p, c), head_on(p, c));
    }
    let r0 = t * p.rw;
    for (var j = 0u; j < p.rw; j++) {
        let x = rf[r0 + j];
        for (var c = 0u; c < C; c++) {
            z[c] += wf[rows[c] + j] * x;
        }
    }
    for (var c = 0u; c < C; c++) {
        if (head_on(p, c)) {
            z[c] += wf[b_at(p, c)];
        }
    }
    let lab = t * 7u;
    if (p.has_sentiment != 0u) {
        let y = select(0u, 1u, labels[lab] >= 0.0);
        let mx = max(z[0], z[1]);
        let lse = mx + log(exp(z[0] - mx) + exp(z[1] - mx));
        for (var c = 0u; c < S; c++) {
            let pc = exp(z[c] - lse);
            probs[t * C + c] = pc;
            dzf[t * C + c] = (pc - select(0.0, 1.0, c == y)) * p.w_s * inv_count;
        }
        row_loss[t * 2u] = lse - z[y];
    }
    if (p.has_emotion != 0u) {
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
            probs[t * C + S + k] = pk;
            dzf[t * C + S + k] = (pk - tgt) * p.w_e * inv_count / f32(E);
            bce += softplus(zk) - tgt * zk;
        }
        row_loss[t * 2u + 1u] = bce / f32(E);
    }
}

// ---- heads_loss ----
@group(0) @binding(0) var<uniform> pl: HeadsParams;
@group(0) @binding(1) var<storage, read> row_loss_l: array<f32>;
@group(0) @binding(2) var<storage, read> lenl: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;

var<workgroup> part: array<vec2<f32>, 256>;

@compute @workgroup_size(256)
fn heads_loss(@builtin(local_invocation_index) lid: u32) {
    let p = pl;
    let n = p.b * p.u;
    var s = vec2<f32>(0.0);
    for (var t = lid; t < n; t += 256u) {
        s += vec2<f32>(row_loss_l[t * 2u], row_loss_l[t * 2u + 1u]);
    }
    part[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            part[lid] += part[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        var count = 0u;
        for (var b = 0u; b < p.b; b++) {
            count += min(lenl[b], p.u);
        }
        let sums = part[0];
        let cf = f32(count);
        var l = 0.0;
        if (p.has_sentiment != 0u) {
            l += p.w_s * sums.x / cf;
        }
        if (p.has_emotion != 0u) {
            l += p.w_e * sums.y / cf;
        }
        let v = vec4<f32>(l, sums.x, sums.y, cf);
        for (var q = 0u; q < 4u; q++) {
            if (p.accumulate != 0u) {
                loss[q] += v[q];
            } else {
                loss[q] = v[q];
            }
        }
    }
}

// ---- heads_backward (dR, written) ----
@group(0) @binding(0) var<uniform> pb: HeadsParams;
@group(0) @binding(1) var<storage, read> dzb: array<f32>;
@group(0) @binding(2) var<storage, read> wb: array<f32>;
@group(0) @binding(3) var<storage, read> lenb: array<u32>;
@group(0) @binding(4) var<storage, read_write> dr: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx0: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx1: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx2: array<f32>;

@compute @workgroup_size(256)
fn heads_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let p = pb;
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e >= p.b * p.u * p.rw) {
        return;
    }
    let j = e % p.rw;
    let t = e / p.rw;
    var g = 0.0;
    if ((t % p.u) < lenb[t / p.u]) {
        for (var c = 0u; c < C; c++) {
            if (head_on(p, c)) {
                g += dzb[t * C + c] * wb[w_row(p, c) + j];
            }
        }
    }
    dr[e] = g;
    let c0 = in_block(p, 0u, j);
    if (c0 != NO_BLOCK) {
        dx0[t * p.d + c0] += g;
    }
    let c1 = in_block(p, 1u, j);
    if (c1 != NO_BLOCK) {
        dx1[t * p.d + c1] += g;
    }
    let c2 = in_block(p, 2u, j);
    if (c2 != NO_BLOCK) {
        dx2[t * p.d + c2] += g;
    }
}

// ---- heads_backward_weights (accumulated) ----
@group(0) @binding(0) var<uniform> pw: HeadsParams;
@group(0) @binding(1) var<storage, read> dzw: array<f32>;
@group(0) @binding(2) var<storage, read> rw_: array<f32>;
@group(0) @binding(3) var<storage, read> lenw: array<u32>;
@group(0) @binding(4) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(64)
fn heads_backward_weights(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let p = pw;
    let e = (wg.y * nwg.x + wg.x) * 64u + lid;
    let width = p.rw + 1u; // column j == rw is the bias
    if (e >= C * width) {
        return;
    }
    let c = e / width;
    let j = e % width;
    if (!head_on(p, c)) {
        return;
    }
    var acc = 0.0;
    for (var b = 0u; b < p.b; b++) {
        let l = min(lenw[b], p.u);
        for (var i = 0u; i < l; i++) {
            let t = b * p.u + i;
            var x = 1.0;
            if (j < p.rw) {
                x = rw_[t * p.rw + j];
            }
            acc += dzw[t * C + c] * x;
        }
    }
    if (j < p.rw) {
        grads[w_row(p, c) + j] += acc;
    } else {
        grads[b_at(p, c)] += acc;
    }
}
