// gru.wgsl: the recurrent part of the bidirectional GRU (MODEL.md layer 1),
// PyTorch gate order r, z, n. The input projection xp = W_ih x + b_ih and the
// gradients with respect to W_ih, b_ih and x are matmuls done by linear.wgsl;
// these kernels consume xp and produce the input-side gradients gi.
//
// Letters: B batch, U padded utterances (= the number of time steps run),
// H hidden, M modalities in this launch, P = 2M problems, one per
// (modality m, direction d) with p = 2m + d (d = 0 forward, 1 reverse).
// Every per-problem tensor is P blocks, each exactly the (B, U, ...) layout of
// src/cpu/gru.rs's GruCache for that direction.
//
// Entry points
//   gru_forward            per step t: hh = W_hh h + b_hh, gates r, z, n, h';
//                          saves h, r, z, n, hn and writes the bi-GRU output
//                          [fwd | rev], zero at padding.
//   gru_backward           backward through time from d(out): writes gi and
//                          gh (both zero at padding); the carried dh stays in
//                          registers.
//   gru_backward_weights   dW_hh += gh^T h_prev, db_hh += sum gh over all real
//                          (b, i) in a fixed order (deterministic, no atomics).
//
// Dispatch layout
//   gru_forward, gru_backward: workgroup (64, 4) = 64 unit lanes x 4 sequence
//     quads; workgroup (x, y) owns sequences 16x .. 16x+15 of problem y and ALL
//     hidden units, and loops over the time steps [t0, t1) of params inside
//     the kernel: no step needs data from another workgroup, so
//     workgroupBarrier / storageBarrier between steps are enough. The launcher
//     splits the U steps into chunks, one dispatch each (1 step per dispatch
//     up to all of them; llvmpipe ends any invocation after 65535 loop
//     iterations in total, see LOOP_BUDGET in src/gpu/gru.rs). Between chunks
//     h travels through the cache, the backward's carried dh through `carry`.
//     An invocation owns units lane, lane+64, ... (< H) of 4 sequences (a
//     vec4). dispatch (ceil(B / 16), P, 1) per chunk; the backward's chunks
//     run from the last one to the first.
//   gru_backward_weights: workgroup (8, 8); an invocation owns a 4x4 tile of
//     the (3H, H+1) matrix [dW_hh | db_hh] of problem z and sums over all real
//     (b, i) in order. dispatch (ceil((H + 1) / 32), ceil(3H / 32), P).
//
// Bindings (group 0; each entry point numbers its own from 0, in the order
// its launcher lists them)
//   gru_forward:           0 params, 1 lens, 2 weights, 3 xp, 4 cache (w), 5 out (w)
//   gru_backward:          0 params, 1 lens, 2 weights, 3 cache, 4 dout, 5 gi (w), 6 gh (w),
//                          7 carry (w)
//   gru_backward_weights:  0 params, 1 lens, 2 cache, 3 gh, 4 grads (w, accumulated)
// where
//   params   uniform GruParams
//   lens     (B) u32, true lengths, 1 <= len <= U
//   weights  flat parameter store, W_hh (3H, H) / b_hh (3H) at the offsets
//   grads    flat gradient store (same layout as weights)
//   xp       (P, B, U, 3H)  W_ih x + b_ih, read at real positions only
//   cache    (P, 5, B, U, H) [h, r, z, n, hn], zero at padding
//   out      (M, B, U, 2H)  bi-GRU output [fwd | rev], zero at padding
//   dout     (M, B, U, 2H)  gradient wrt out
//   gi       (P, B, U, 3H)  input-side pre-activation grads [dar, daz, dan]
//   gh       (P, B, U, 3H)  hidden-side pre-activation grads [dar, daz, dan*r]
//   carry    (P, B, H)      dh carried from one backward chunk to the next

struct GruParams {
    b: u32,
    u: u32,
    h: u32,
    problems: u32,
    // Steps [t0, t1) run by this dispatch (backward: from t1 - 1 down to t0).
    t0: u32,
    t1: u32,
    _pad0: u32,
    _pad1: u32,
    // Element offsets in the weights / grads stores of problem p at [p / 4][p % 4].
    w_hh_offset: array<vec4<u32>, 2>,
    b_hh_offset: array<vec4<u32>, 2>,
}

// Sequences owned by one workgroup of gru_forward / gru_backward.
const SEQ_PER_WG: u32 = 16u;
const UNIT_LANES: u32 = 64u;
// Workgroup memory holds h for 16 sequences: 16 * 256 * 4 bytes = 16 KiB, the
// WebGPU default limit; the launcher rejects H > MAX_H.
const MAX_H: u32 = 256u;
const UNIT_ITERS: u32 = 4u; // MAX_H / UNIT_LANES
// Index of each saved tensor inside a problem's cache block.
const C_H: u32 = 0u;
const C_R: u32 = 1u;
const C_Z: u32 = 2u;
const C_N: u32 = 3u;
const C_HN: u32 = 4u;

@group(0) @binding(0) var<uniform> params: GruParams;
@group(0) @binding(1) var<storage, read> lens: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
// gru_forward
@group(0) @binding(3) var<storage, read> fw_xp: array<f32>;
@group(0) @binding(4) var<storage, read_write> fw_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> fw_out: array<f32>;
// gru_backward
@group(0) @binding(3) var<storage, read> bw_cache: array<f32>;
@group(0) @binding(4) var<storage, read> bw_dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> bw_gi: array<f32>;
@group(0) @binding(6) var<storage, read_write> bw_gh: array<f32>;
@group(0) @binding(7) var<storage, read_write> bw_carry: array<f32>;
// gru_backward_weights
@group(0) @binding(2) var<storage, read> ww_cache: array<f32>;
@group(0) @binding(3) var<storage, read> ww_gh: array<f32>;
@group(0) @binding(4) var<storage, read_write> ww_grads: array<f32>;

// h of the workgroup's 16 sequences: [quad][unit], each vec4 = 4 sequences.
var<workgroup> h_shared: array<vec4<f32>, 1024>; // (SEQ_PER_WG / 4, MAX_H)

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// Some drivers compute tanh as a ratio of exponentials that turns into inf/inf
// for large |x|; this form never overflows.
fn tanh_safe(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

fn w_hh_offset(p: u32) -> u32 {
    return params.w_hh_offset[p / 4u][p % 4u];
}

fn b_hh_offset(p: u32) -> u32 {
    return params.b_hh_offset[p / 4u][p % 4u];
}

// Flat index of (b, i) in a (P, B, U, ...) tensor of problem p.
fn row_of(p: u32, b: u32, i: u32) -> u32 {
    return (p * params.b + b) * params.u + i;
}

// Index of element j of saved tensor k at (b, i) of problem p.
fn cache_at(p: u32, k: u32, b: u32, i: u32, j: u32) -> u32 {
    return (((p * 5u + k) * params.b + b) * params.u + i) * params.h + j;
}

// Position processed at step t by a sequence of length len: the forward
// direction runs i = t, the reverse one i = len-1-t; steps t >= len handle the
// padded position i = t, so that over all steps each position is visited once.
fn position(t: u32, len: u32, rev: bool) -> u32 {
    if (t < len && rev) {
        return len - 1u - t;
    }
    return t;
}

// Sequence lengths of the 4 sequences of a quad (0 beyond B).
fn quad_lens(s0: u32) -> vec4<u32> {
    var len = vec4<u32>(0u);
    for (var q = 0u; q < 4u; q++) {
        if (s0 + q < params.b) {
            len[q] = lens[s0 + q];
        }
    }
    return len;
}

@compute @workgroup_size(64, 4, 1)
fn gru_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = wid.y;
    let m = p / 2u;
    let d = p % 2u;
    let rev = d == 1u;
    let lane = lid.x;
    let quad = lid.y;
    let s0 = wid.x * SEQ_PER_WG + 4u * quad;
    let wo = w_hh_offset(p);
    let bo = b_hh_offset(p);
    let len = quad_lens(s0);
    let t0 = params.t0;
    // h_prev of step t0: zero at the start, else what the previous dispatch
    // saved at the position processed at step t0 - 1.
    for (var it = 0u; it < UNIT_ITERS; it++) {
        let j = lane + it * UNIT_LANES;
        var hv = vec4<f32>(0.0);
        if (j < nh && t0 > 0u) {
            for (var q = 0u; q < 4u; q++) {
                if (t0 < len[q]) {
                    hv[q] = fw_cache[cache_at(p, C_H, s0 + q, position(t0 - 1u, len[q], rev), j)];
                }
            }
        }
        h_shared[quad * MAX_H + j] = hv;
    }
    workgroupBarrier();

    let nh4 = nh / 4u;
    for (var t = t0; t < params.t1; t++) {
        var hnew: array<vec4<f32>, UNIT_ITERS>;
        for (var it = 0u; it < UNIT_ITERS; it++) {
            let j = lane + it * UNIT_LANES;
            if (j < nh) {
                // Rows j, H+j, 2H+j of W_hh h for the 4 sequences at once,
                // unrolled by 4 (see LOOP_BUDGET in src/gpu/gru.rs).
                var ar = vec4<f32>(0.0);
                var az = vec4<f32>(0.0);
                var an = vec4<f32>(0.0);
                let wr = wo + j * nh;
                let wz = wo + (nh + j) * nh;
                let wn = wo + (2u * nh + j) * nh;
                let hb = quad * MAX_H;
                // A quad whose sequences are all done (or beyond B) only writes padding.
                let live = any(vec4<u32>(t) < len);
                let n4 = select(0u, nh4, live);
                let nr = select(0u, nh, live);
                for (var c4 = 0u; c4 < n4; c4++) {
                    let c = 4u * c4;
                    let h0 = h_shared[hb + c];
                    let h1 = h_shared[hb + c + 1u];
                    let h2 = h_shared[hb + c + 2u];
                    let h3 = h_shared[hb + c + 3u];
                    ar += weights[wr + c] * h0 + weights[wr + c + 1u] * h1 + weights[wr + c + 2u] * h2 + weights[wr + c + 3u] * h3;
                    az += weights[wz + c] * h0 + weights[wz + c + 1u] * h1 + weights[wz + c + 2u] * h2 + weights[wz + c + 3u] * h3;
                    an += weights[wn + c] * h0 + weights[wn + c + 1u] * h1 + weights[wn + c + 2u] * h2 + weights[wn + c + 3u] * h3;
                }
                for (var c = 4u * nh4; c < nr; c++) {
                    let hv = h_shared[hb + c];
                    ar += weights[wr + c] * hv;
                    az += weights[wz + c] * hv;
                    an += weights[wn + c] * hv;
                }
                let hprev = h_shared[hb + j];
                let br = weights[bo + j];
                let bz = weights[bo + nh + j];
                let bn = weights[bo + 2u * nh + j];
                for (var q = 0u; q < 4u; q++) {
                    let b = s0 + q;
                    if (b < nb) {
                        let i = position(t, len[q], rev);
                        var hv = 0.0;
                        var r = 0.0;
                        var z = 0.0;
                        var n = 0.0;
                        var hn = 0.0;
                        if (t < len[q]) {
                            let x0 = row_of(p, b, i) * 3u * nh;
                            r = sigmoid(fw_xp[x0 + j] + ar[q] + br);
                            z = sigmoid(fw_xp[x0 + nh + j] + az[q] + bz);
                            hn = an[q] + bn;
                            n = tanh_safe(fw_xp[x0 + 2u * nh + j] + r * hn);
                            hv = (1.0 - z) * n + z * hprev[q];
                        }
                        hnew[it][q] = hv;
                        fw_cache[cache_at(p, C_H, b, i, j)] = hv;
                        fw_cache[cache_at(p, C_R, b, i, j)] = r;
                        fw_cache[cache_at(p, C_Z, b, i, j)] = z;
                        fw_cache[cache_at(p, C_N, b, i, j)] = n;
                        fw_cache[cache_at(p, C_HN, b, i, j)] = hn;
                        fw_out[((m * nb + b) * params.u + i) * 2u * nh + d * nh + j] = hv;
                    }
                }
            }
        }
        // Everyone has read h_prev before anyone overwrites it.
        workgroupBarrier();
        for (var it = 0u; it < UNIT_ITERS; it++) {
            let j = lane + it * UNIT_LANES;
            if (j < nh) {
                h_shared[quad * MAX_H + j] = hnew[it];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(64, 4, 1)
fn gru_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let nu = params.u;
    let p = wid.y;
    let m = p / 2u;
    let d = p % 2u;
    let rev = d == 1u;
    let lane = lid.x;
    let quad = lid.y;
    let s0 = wid.x * SEQ_PER_WG + 4u * quad;
    let wo = w_hh_offset(p);
    let len = quad_lens(s0);
    // d(loss)/d(h) arriving from the step processed after this one, in
    // registers (the same invocation owns unit j in both phases of a step);
    // it crosses dispatches through bw_carry.
    var carry: array<vec4<f32>, UNIT_ITERS>;
    for (var it = 0u; it < UNIT_ITERS; it++) {
        let j = lane + it * UNIT_LANES;
        var cv = vec4<f32>(0.0);
        if (j < nh && params.t1 < nu) {
            for (var q = 0u; q < 4u; q++) {
                if (s0 + q < nb) {
                    cv[q] = bw_carry[(p * nb + s0 + q) * nh + j];
                }
            }
        }
        carry[it] = cv;
    }

    let n3 = 3u * nh;
    let n34 = n3 / 4u;
    for (var t = params.t1; t > params.t0; ) {
        t -= 1u;
        // Row (into gi / gh) of each of the 4 sequences at this step; a
        // sequence beyond B reads a valid row of this workgroup and is ignored.
        var grow = vec4<u32>(0u);
        for (var q = 0u; q < 4u; q++) {
            let b = min(s0 + q, nb - 1u);
            grow[q] = row_of(p, b, position(t, len[q], rev)) * n3;
        }
        // Phase A: gate gradients of units j, written to gi and gh.
        for (var it = 0u; it < UNIT_ITERS; it++) {
            let j = lane + it * UNIT_LANES;
            if (j < nh) {
                for (var q = 0u; q < 4u; q++) {
                    let b = s0 + q;
                    if (b < nb) {
                        var dar = 0.0;
                        var daz = 0.0;
                        var dan = 0.0;
                        var dhn = 0.0;
                        var gz = 0.0;
                        if (t < len[q]) {
                            let i = position(t, len[q], rev);
                            var hprev = 0.0;
                            if (t > 0u) {
                                let ip = select(i - 1u, i + 1u, rev);
                                hprev = bw_cache[cache_at(p, C_H, b, ip, j)];
                            }
                            let r = bw_cache[cache_at(p, C_R, b, i, j)];
                            let z = bw_cache[cache_at(p, C_Z, b, i, j)];
                            let n = bw_cache[cache_at(p, C_N, b, i, j)];
                            let hn = bw_cache[cache_at(p, C_HN, b, i, j)];
                            let g = bw_dout[((m * nb + b) * nu + i) * 2u * nh + d * nh + j] + carry[it][q];
                            let dn = g * (1.0 - z);
                            let dz = g * (hprev - n);
                            dan = dn * (1.0 - n * n);
                            dar = dan * hn * r * (1.0 - r);
                            daz = dz * z * (1.0 - z);
                            dhn = dan * r;
                            gz = g * z;
                        }
                        let o = grow[q];
                        bw_gi[o + j] = dar;
                        bw_gi[o + nh + j] = daz;
                        bw_gi[o + 2u * nh + j] = dan;
                        bw_gh[o + j] = dar;
                        bw_gh[o + nh + j] = daz;
                        bw_gh[o + 2u * nh + j] = dhn;
                        carry[it][q] = gz;
                    }
                }
            }
        }
        // gh of this step is complete for all units before phase B reads it.
        storageBarrier();
        // Phase B: dh_prev[c] = g z + sum_row W_hh[row, c] gh[row] (W_hh^T gh;
        // neighbouring lanes read neighbouring columns), unrolled by 4.
        // Sequences that are done read their zeroed padding row: carry stays 0.
        for (var it = 0u; it < UNIT_ITERS; it++) {
            let c = lane + it * UNIT_LANES;
            if (c < nh) {
                var acc = vec4<f32>(0.0);
                let live = any(vec4<u32>(t) < len);
                let n4 = select(0u, n34, live);
                let nr = select(0u, n3, live);
                for (var r4 = 0u; r4 < n4; r4++) {
                    let row = 4u * r4;
                    let w = wo + row * nh + c;
                    acc += weights[w] * vec4<f32>(bw_gh[grow.x + row], bw_gh[grow.y + row], bw_gh[grow.z + row], bw_gh[grow.w + row]);
                    acc += weights[w + nh] * vec4<f32>(bw_gh[grow.x + row + 1u], bw_gh[grow.y + row + 1u], bw_gh[grow.z + row + 1u], bw_gh[grow.w + row + 1u]);
                    acc += weights[w + 2u * nh] * vec4<f32>(bw_gh[grow.x + row + 2u], bw_gh[grow.y + row + 2u], bw_gh[grow.z + row + 2u], bw_gh[grow.w + row + 2u]);
                    acc += weights[w + 3u * nh] * vec4<f32>(bw_gh[grow.x + row + 3u], bw_gh[grow.y + row + 3u], bw_gh[grow.z + row + 3u], bw_gh[grow.w + row + 3u]);
                }
                for (var row = 4u * n34; row < nr; row++) {
                    acc += weights[wo + row * nh + c] * vec4<f32>(bw_gh[grow.x + row], bw_gh[grow.y + row], bw_gh[grow.z + row], bw_gh[grow.w + row]);
                }
                carry[it] += acc;
            }
        }
        // Phase A of the next step writes other rows of gh, and carry is
        // private, so no barrier is needed here.
    }
    if (params.t0 > 0u) {
        for (var it = 0u; it < UNIT_ITERS; it++) {
            let j = lane + it * UNIT_LANES;
            if (j < nh) {
                for (var q = 0u; q < 4u; q++) {
                    if (s0 + q < nb) {
                        bw_carry[(p * nb + s0 + q) * nh + j] = carry[it][q];
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn gru_backward_weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let nu = params.u;
    let p = gid.z;
    let rev = p % 2u == 1u;
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if (row0 >= 3u * nh || col0 > nh) {
        return;
    }
    // acc[r][c]: row row0 + r, column col0 + c; column H is the bias.
    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    // Reads beyond the matrix are clamped to a valid index and multiplied by 0.
    let rows_ok = vec4<f32>(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(3u * nh));
    let rowc = min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(3u * nh - 1u));
    let cols = vec4<u32>(col0) + vec4<u32>(0u, 1u, 2u, 3u);
    let cols_h = vec4<f32>(cols < vec4<u32>(nh));
    let cols_bias = vec4<f32>(cols == vec4<u32>(nh));
    let colc = min(cols, vec4<u32>(nh - 1u));
    for (var b = 0u; b < nb; b++) {
        let len = lens[b];
        for (var i = 0u; i < len; i++) {
            let g0 = row_of(p, b, i) * 3u * nh;
            let g = vec4<f32>(ww_gh[g0 + rowc.x], ww_gh[g0 + rowc.y], ww_gh[g0 + rowc.z], ww_gh[g0 + rowc.w]) * rows_ok;
            // h_prev in processing order; zero at the first step.
            var hp = cols_bias;
            let first = select(i == 0u, i + 1u == len, rev);
            if (!first) {
                let ip = select(i - 1u, i + 1u, rev);
                let h0 = cache_at(p, C_H, b, ip, 0u);
                hp += vec4<f32>(ww_cache[h0 + colc.x], ww_cache[h0 + colc.y], ww_cache[h0 + colc.z], ww_cache[h0 + colc.w]) * cols_h;
            }
            acc[0] += g.x * hp;
            acc[1] += g.y * hp;
            acc[2] += g.z * hp;
            acc[3] += g.w * hp;
        }
    }
    let wo = w_hh_offset(p);
    let bo = b_hh_offset(p);
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + r;
        if (row >= 3u * nh) {
            break;
        }
        for (var c = 0u; c < 4u; c++) {
            let col = col0 + c;
            if (col < nh) {
                ww_grads[wo + row * nh + col] += acc[r][c];
            } else if (col == nh) {
                ww_grads[bo + row] += acc[r][c];
            }
        }
    }
}
