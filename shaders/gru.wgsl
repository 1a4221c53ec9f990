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
//   *_v4, gru_forward_wide, gru_backward_wide, gru_backward_weights_t8: the
//                          same work with vec4 loads (H % 4 == 0); the wide
//                          ones are the default (sections at the end of this file).
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
//   (the _v4 / _wide / _t8 variants bind exactly as their scalar counterparts)
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

// ---------------------------------------------------------------------------
// vec4 variants (H % 4 == 0 and every W_hh / b_hh offset % 4 == 0; the
// launchers pick them then, the scalar kernels above otherwise).
//
// Why: on llvmpipe every storage or workgroup load whose address is not a
// compile-time uniform becomes a loop over the SIMD lanes with a branch per
// lane, so the cost of these kernels is the number of load instructions, and a
// vec4 load costs about as much as a scalar one. Here an invocation owns 4
// CONSECUTIVE hidden units j0 = 4 lane .. 4 lane + 3 (not lane, lane + 64, ..)
// of its quad's 4 sequences, so every W_hh, xp, cache, dout, gi, gh access is a
// vec4 along a contiguous row, and each loaded h (forward) or gh (backward)
// feeds 4 units: per 4 columns of W_hh the forward issues 16 loads for 192
// multiply-adds (the scalar kernel: 64), the backward 8 loads for 64 (scalar:
// 80 for 16). On GPUs the same layout gives 16-byte loads per thread.
// Dispatch and bindings: as gru_forward / gru_backward / gru_backward_weights.
// ---------------------------------------------------------------------------

// gru_forward_v4
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> fw4_xp: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> fw4_cache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> fw4_out: array<vec4<f32>>;
// gru_backward_v4
@group(0) @binding(3) var<storage, read> bw4_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bw4_dout: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> bw4_gi: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> bw4_gh: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> bw4_carry: array<vec4<f32>>;
// gru_backward_weights_v4
@group(0) @binding(2) var<storage, read> ww4_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> ww4_gh: array<vec4<f32>>;

// W[j, c..c+3] . h[c..c+3] for 4 sequences: h0..h3 hold columns c..c+3, each
// a vec4 over the sequences.
fn mix4(w: vec4<f32>, h0: vec4<f32>, h1: vec4<f32>, h2: vec4<f32>, h3: vec4<f32>) -> vec4<f32> {
    return w.x * h0 + w.y * h1 + w.z * h2 + w.w * h3;
}

// One sequence's step of gru_forward_v4 for units j0..j0+3: gates from the
// recurrent sums (vec4 over the units), saves, returns the new h (0 at padding).
fn forward_seq4(p: u32, b: u32, t: u32, len: u32, rev: bool, j0: u32, store: bool,
                ar: vec4<f32>, az: vec4<f32>, an: vec4<f32>, hprev: vec4<f32>,
                br: vec4<f32>, bz: vec4<f32>, bn: vec4<f32>) -> vec4<f32> {
    let nh = params.h;
    let i = position(t, len, rev);
    var hv = vec4<f32>(0.0);
    var r = vec4<f32>(0.0);
    var z = vec4<f32>(0.0);
    var n = vec4<f32>(0.0);
    var hn = vec4<f32>(0.0);
    if (t < len) {
        let x0 = (row_of(p, b, i) * 3u * nh + j0) / 4u;
        let nh4 = nh / 4u;
        r = 1.0 / (1.0 + exp(-(fw4_xp[x0] + ar + br)));
        z = 1.0 / (1.0 + exp(-(fw4_xp[x0 + nh4] + az + bz)));
        hn = an + bn;
        let a = fw4_xp[x0 + 2u * nh4] + r * hn;
        let e = exp(-2.0 * abs(a));
        n = sign(a) * (1.0 - e) / (1.0 + e);
        hv = (1.0 - z) * n + z * hprev;
    }
    if (store) {
        fw4_cache[cache_at(p, C_H, b, i, j0) / 4u] = hv;
        fw4_cache[cache_at(p, C_R, b, i, j0) / 4u] = r;
        fw4_cache[cache_at(p, C_Z, b, i, j0) / 4u] = z;
        fw4_cache[cache_at(p, C_N, b, i, j0) / 4u] = n;
        fw4_cache[cache_at(p, C_HN, b, i, j0) / 4u] = hn;
        let m = p / 2u;
        let d = p % 2u;
        fw4_out[(((m * params.b + b) * params.u + i) * 2u * nh + d * nh + j0) / 4u] = hv;
    }
    return hv;
}

@compute @workgroup_size(64, 4, 1)
fn gru_forward_v4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = wid.y;
    let rev = p % 2u == 1u;
    let quad = lid.y;
    let s0 = wid.x * SEQ_PER_WG + 4u * quad;
    let len = quad_lens(s0);
    let j0 = 4u * lid.x;
    let owns = j0 < nh;
    // Idle lanes (H < 256) compute on a valid unit and store nothing.
    let jc = min(j0, nh - 4u);
    let wo = w_hh_offset(p) / 4u;
    let bo = b_hh_offset(p) / 4u;
    let nh4 = nh / 4u;
    let br = w4[bo + jc / 4u];
    let bz = w4[bo + nh4 + jc / 4u];
    let bn = w4[bo + 2u * nh4 + jc / 4u];
    let hb = quad * MAX_H;
    let t0 = params.t0;
    // h_prev of step t0 (see gru_forward).
    if (owns) {
        for (var u = 0u; u < 4u; u++) {
            var hv = vec4<f32>(0.0);
            if (t0 > 0u) {
                for (var q = 0u; q < 4u; q++) {
                    if (t0 < len[q]) {
                        hv[q] = fw4_cache[cache_at(p, C_H, s0 + q, position(t0 - 1u, len[q], rev), j0) / 4u][u];
                    }
                }
            }
            h_shared[hb + j0 + u] = hv;
        }
    }
    workgroupBarrier();

    // Row j of W_hh starts at vec4 index wo + j * nh4.
    let r0 = wo + jc * nh4;
    let z0 = wo + (nh + jc) * nh4;
    let n0 = wo + (2u * nh + jc) * nh4;
    for (var t = t0; t < params.t1; t++) {
        // acc<gate><unit>: vec4 over the quad's sequences.
        var ar0 = vec4<f32>(0.0); var ar1 = vec4<f32>(0.0); var ar2 = vec4<f32>(0.0); var ar3 = vec4<f32>(0.0);
        var az0 = vec4<f32>(0.0); var az1 = vec4<f32>(0.0); var az2 = vec4<f32>(0.0); var az3 = vec4<f32>(0.0);
        var an0 = vec4<f32>(0.0); var an1 = vec4<f32>(0.0); var an2 = vec4<f32>(0.0); var an3 = vec4<f32>(0.0);
        let live = any(vec4<u32>(t) < len);
        let n4 = select(0u, nh4, live);
        for (var c4 = 0u; c4 < n4; c4++) {
            let c = 4u * c4;
            let h0 = h_shared[hb + c];
            let h1 = h_shared[hb + c + 1u];
            let h2 = h_shared[hb + c + 2u];
            let h3 = h_shared[hb + c + 3u];
            ar0 += mix4(w4[r0 + c4], h0, h1, h2, h3);
            ar1 += mix4(w4[r0 + nh4 + c4], h0, h1, h2, h3);
            ar2 += mix4(w4[r0 + 2u * nh4 + c4], h0, h1, h2, h3);
            ar3 += mix4(w4[r0 + 3u * nh4 + c4], h0, h1, h2, h3);
            az0 += mix4(w4[z0 + c4], h0, h1, h2, h3);
            az1 += mix4(w4[z0 + nh4 + c4], h0, h1, h2, h3);
            az2 += mix4(w4[z0 + 2u * nh4 + c4], h0, h1, h2, h3);
            az3 += mix4(w4[z0 + 3u * nh4 + c4], h0, h1, h2, h3);
            an0 += mix4(w4[n0 + c4], h0, h1, h2, h3);
            an1 += mix4(w4[n0 + nh4 + c4], h0, h1, h2, h3);
            an2 += mix4(w4[n0 + 2u * nh4 + c4], h0, h1, h2, h3);
            an3 += mix4(w4[n0 + 3u * nh4 + c4], h0, h1, h2, h3);
        }
        let hp0 = h_shared[hb + jc];
        let hp1 = h_shared[hb + jc + 1u];
        let hp2 = h_shared[hb + jc + 2u];
        let hp3 = h_shared[hb + jc + 3u];
        // Per sequence q: the 4 units' sums as one vec4 (component q of each).
        let hq0 = forward_seq4(p, min(s0, nb - 1u), t, len.x, rev, jc, owns && s0 < nb,
            vec4(ar0.x, ar1.x, ar2.x, ar3.x), vec4(az0.x, az1.x, az2.x, az3.x), vec4(an0.x, an1.x, an2.x, an3.x),
            vec4(hp0.x, hp1.x, hp2.x, hp3.x), br, bz, bn);
        let hq1 = forward_seq4(p, min(s0 + 1u, nb - 1u), t, len.y, rev, jc, owns && s0 + 1u < nb,
            vec4(ar0.y, ar1.y, ar2.y, ar3.y), vec4(az0.y, az1.y, az2.y, az3.y), vec4(an0.y, an1.y, an2.y, an3.y),
            vec4(hp0.y, hp1.y, hp2.y, hp3.y), br, bz, bn);
        let hq2 = forward_seq4(p, min(s0 + 2u, nb - 1u), t, len.z, rev, jc, owns && s0 + 2u < nb,
            vec4(ar0.z, ar1.z, ar2.z, ar3.z), vec4(az0.z, az1.z, az2.z, az3.z), vec4(an0.z, an1.z, an2.z, an3.z),
            vec4(hp0.z, hp1.z, hp2.z, hp3.z), br, bz, bn);
        let hq3 = forward_seq4(p, min(s0 + 3u, nb - 1u), t, len.w, rev, jc, owns && s0 + 3u < nb,
            vec4(ar0.w, ar1.w, ar2.w, ar3.w), vec4(az0.w, az1.w, az2.w, az3.w), vec4(an0.w, an1.w, an2.w, an3.w),
            vec4(hp0.w, hp1.w, hp2.w, hp3.w), br, bz, bn);
        // Everyone has read h_prev before anyone overwrites it.
        workgroupBarrier();
        if (owns) {
            h_shared[hb + j0] = vec4(hq0.x, hq1.x, hq2.x, hq3.x);
            h_shared[hb + j0 + 1u] = vec4(hq0.y, hq1.y, hq2.y, hq3.y);
            h_shared[hb + j0 + 2u] = vec4(hq0.z, hq1.z, hq2.z, hq3.z);
            h_shared[hb + j0 + 3u] = vec4(hq0.w, hq1.w, hq2.w, hq3.w);
        }
        workgroupBarrier();
    }
}

// Phase A of gru_backward_v4 for one sequence and units j0..j0+3: writes gi
// and gh at the row processed at step t, returns the dh carried to h_prev
// through z (g z); `g_in` is d(out) + the carry, added here.
fn backward_seq4(p: u32, b: u32, t: u32, len: u32, rev: bool, j0: u32, store: bool, carry: vec4<f32>) -> vec4<f32> {
    let nh = params.h;
    let nh4 = nh / 4u;
    let i = position(t, len, rev);
    var dar = vec4<f32>(0.0);
    var daz = vec4<f32>(0.0);
    var dan = vec4<f32>(0.0);
    var dhn = vec4<f32>(0.0);
    var gz = vec4<f32>(0.0);
    if (t < len) {
        var hprev = vec4<f32>(0.0);
        if (t > 0u) {
            let ip = select(i - 1u, i + 1u, rev);
            hprev = bw4_cache[cache_at(p, C_H, b, ip, j0) / 4u];
        }
        let r = bw4_cache[cache_at(p, C_R, b, i, j0) / 4u];
        let z = bw4_cache[cache_at(p, C_Z, b, i, j0) / 4u];
        let n = bw4_cache[cache_at(p, C_N, b, i, j0) / 4u];
        let hn = bw4_cache[cache_at(p, C_HN, b, i, j0) / 4u];
        let m = p / 2u;
        let d = p % 2u;
        let g = bw4_dout[(((m * params.b + b) * params.u + i) * 2u * nh + d * nh + j0) / 4u] + carry;
        let dn = g * (1.0 - z);
        let dz = g * (hprev - n);
        dan = dn * (1.0 - n * n);
        dar = dan * hn * r * (1.0 - r);
        daz = dz * z * (1.0 - z);
        dhn = dan * r;
        gz = g * z;
    }
    if (store) {
        let o = (row_of(p, b, i) * 3u * nh + j0) / 4u;
        bw4_gi[o] = dar;
        bw4_gi[o + nh4] = daz;
        bw4_gi[o + 2u * nh4] = dan;
        bw4_gh[o] = dar;
        bw4_gh[o + nh4] = daz;
        bw4_gh[o + 2u * nh4] = dhn;
    }
    return gz;
}

@compute @workgroup_size(64, 4, 1)
fn gru_backward_v4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let nu = params.u;
    let p = wid.y;
    let rev = p % 2u == 1u;
    let quad = lid.y;
    let s0 = wid.x * SEQ_PER_WG + 4u * quad;
    let len = quad_lens(s0);
    let j0 = 4u * lid.x;
    let owns = j0 < nh;
    let jc = min(j0, nh - 4u);
    let nh4 = nh / 4u;
    let wo = w_hh_offset(p) / 4u;
    let bq = vec4<u32>(min(s0, nb - 1u), min(s0 + 1u, nb - 1u), min(s0 + 2u, nb - 1u), min(s0 + 3u, nb - 1u));
    let ok = vec4<bool>(owns && s0 < nb, owns && s0 + 1u < nb, owns && s0 + 2u < nb, owns && s0 + 3u < nb);
    // dh arriving from the step processed after this one, per sequence (vec4
    // over units j0..j0+3); crosses dispatches through bw4_carry.
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    if (params.t1 < nu) {
        c0 = bw4_carry[((p * nb + bq.x) * nh + jc) / 4u];
        c1 = bw4_carry[((p * nb + bq.y) * nh + jc) / 4u];
        c2 = bw4_carry[((p * nb + bq.z) * nh + jc) / 4u];
        c3 = bw4_carry[((p * nb + bq.w) * nh + jc) / 4u];
    }
    let n34 = 3u * nh4;
    for (var t = params.t1; t > params.t0; ) {
        t -= 1u;
        c0 = backward_seq4(p, bq.x, t, len.x, rev, jc, ok.x, c0);
        c1 = backward_seq4(p, bq.y, t, len.y, rev, jc, ok.y, c1);
        c2 = backward_seq4(p, bq.z, t, len.z, rev, jc, ok.z, c2);
        c3 = backward_seq4(p, bq.w, t, len.w, rev, jc, ok.w, c3);
        // gh of this step is complete for all units before phase B reads it.
        storageBarrier();
        // Phase B: dh_prev[j] += sum_row W_hh[row, j] gh[row] for units j0..j0+3,
        // 4 rows at a time: gh of 4 rows is one vec4 per sequence, W_hh of one
        // row and 4 units one vec4. Done sequences read their zero padding row.
        let g0 = (row_of(p, bq.x, position(t, len.x, rev)) * 3u * nh) / 4u;
        let g1 = (row_of(p, bq.y, position(t, len.y, rev)) * 3u * nh) / 4u;
        let g2 = (row_of(p, bq.z, position(t, len.z, rev)) * 3u * nh) / 4u;
        let g3 = (row_of(p, bq.w, position(t, len.w, rev)) * 3u * nh) / 4u;
        let live = any(vec4<u32>(t) < len);
        let n4 = select(0u, n34, live);
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        for (var r4 = 0u; r4 < n4; r4++) {
            let w = wo + 4u * r4 * nh4 + jc / 4u;
            let wa = w4[w];
            let wb = w4[w + nh4];
            let wc = w4[w + 2u * nh4];
            let wd = w4[w + 3u * nh4];
            let q0 = bw4_gh[g0 + r4];
            let q1 = bw4_gh[g1 + r4];
            let q2 = bw4_gh[g2 + r4];
            let q3 = bw4_gh[g3 + r4];
            a0 += wa * q0.x + wb * q0.y + wc * q0.z + wd * q0.w;
            a1 += wa * q1.x + wb * q1.y + wc * q1.z + wd * q1.w;
            a2 += wa * q2.x + wb * q2.y + wc * q2.z + wd * q2.w;
            a3 += wa * q3.x + wb * q3.y + wc * q3.z + wd * q3.w;
        }
        c0 += a0;
        c1 += a1;
        c2 += a2;
        c3 += a3;
        // Phase A of the next step writes other rows of gh: no barrier here.
    }
    if (params.t0 > 0u) {
        if (ok.x) { bw4_carry[((p * nb + bq.x) * nh + j0) / 4u] = c0; }
        if (ok.y) { bw4_carry[((p * nb + bq.y) * nh + j0) / 4u] = c1; }
        if (ok.z) { bw4_carry[((p * nb + bq.z) * nh + j0) / 4u] = c2; }
        if (ok.w) { bw4_carry[((p * nb + bq.w) * nh + j0) / 4u] = c3; }
    }
}

// [dW_hh | db_hh] += gh^T [h_prev | 1]: as gru_backward_weights, with the
// 4 rows of gh and the 4 columns of h_prev of a tile each read as one vec4.
@compute @workgroup_size(8, 8, 1)
fn gru_backward_weights_v4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = gid.z;
    let rev = p % 2u == 1u;
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if (row0 >= 3u * nh || col0 > nh) {
        return;
    }
    let bias = col0 == nh; // the tile of column H (db_hh); H % 4 == 0
    let colc = min(col0, nh - 4u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let one = select(vec4<f32>(0.0), vec4<f32>(1.0, 0.0, 0.0, 0.0), bias);
    for (var b = 0u; b < nb; b++) {
        let len = lens[b];
        for (var i = 0u; i < len; i++) {
            let g = ww4_gh[(row_of(p, b, i) * 3u * nh + row0) / 4u];
            var hp = one;
            let first = select(i == 0u, i + 1u == len, rev);
            if (!first && !bias) {
                let ip = select(i - 1u, i + 1u, rev);
                hp = ww4_cache[cache_at(p, C_H, b, ip, colc) / 4u];
            }
            a0 += g.x * hp;
            a1 += g.y * hp;
            a2 += g.z * hp;
            a3 += g.w * hp;
        }
    }
    let wo = w_hh_offset(p);
    let bo = b_hh_offset(p);
    if (bias) {
        ww_grads[bo + row0] += a0.x;
        ww_grads[bo + row0 + 1u] += a1.x;
        ww_grads[bo + row0 + 2u] += a2.x;
        ww_grads[bo + row0 + 3u] += a3.x;
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        ww_grads[wo + row0 * nh + col0 + c] += a0[c];
        ww_grads[wo + (row0 + 1u) * nh + col0 + c] += a1[c];
        ww_grads[wo + (row0 + 2u) * nh + col0 + c] += a2[c];
        ww_grads[wo + (row0 + 3u) * nh + col0 + c] += a3[c];
    }
}

// ---------------------------------------------------------------------------
// Wide kernels (GruKernel::Wide, the default where Vec4 applies): as the v4
// kernels, but ONE invocation owns its units for ALL 16 sequences of its
// workgroup, so every W_hh vec4 load feeds 16 sequences instead of 4.
// Both own units 8 lane .. 8 lane + 7 (two 4-unit halves, each owned when
// < H), workgroup (32, 1, 1). gru_forward_wide: per 4 columns of W_hh 24 W +
// 16 h loads for 1536 multiply-adds (v4: 8 x 16 loads for the same).
// gru_backward_wide: phase B per 4 rows 8 W + 16 gh loads for 512 (v4: 8 x 8). Lanes that own no unit (H < 256) skip the dot products, so a
// SIMD group of idle lanes costs nothing; a quad of 4 finished sequences skips
// its h / gh loads. gru_backward_weights_t8 owns an 8x8 tile of
// [dW_hh | db_hh] (4 vec4 loads per 64 multiply-adds; v4: 2 per 16).
// Dispatch: gru_forward_wide / gru_backward_wide as gru_forward (workgroups
// (ceil(B / 16), P, 1) per chunk); gru_backward_weights_t8: workgroup (8, 8),
// dispatch (ceil((H + 1) / 64), ceil(3H / 64), P). Bindings as the v4 kernels.
// Code below the sequence / quad level is unrolled by hand (no loops: every
// loop iteration counts against llvmpipe's limit, and local arrays indexed by
// a loop counter go to scratch memory); names: _s sequence s = 4k + q of the
// workgroup, _k quad k, _u half u, <gate><unit>. Generated: scripts are not
// kept; edit by hand (the pattern is regular).
// ---------------------------------------------------------------------------

// gru_forward_wide: 8 units per invocation (two 4-unit halves j0 and j0 + 4,
// each owned when < H): per 4 columns 24 W + 16 h loads for 1536
// multiply-adds; workgroup (32, 1, 1).
@compute @workgroup_size(32, 1, 1)
fn gru_forward_wide(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = wid.y;
    let rev = p % 2u == 1u;
    let s0 = wid.x * SEQ_PER_WG;
    let j0 = 8u * lid.x;
    let own_0 = j0 < nh;
    let own_1 = j0 + 4u < nh;
    // A half beyond H computes on a valid unit and stores nothing.
    let jc_0 = min(j0, nh - 4u);
    let jc_1 = min(j0 + 4u, nh - 4u);
    let wo = w_hh_offset(p) / 4u;
    let bo = b_hh_offset(p) / 4u;
    let nh4 = nh / 4u;
    let br_0 = w4[bo + jc_0 / 4u];
    let bz_0 = w4[bo + nh4 + jc_0 / 4u];
    let bn_0 = w4[bo + 2u * nh4 + jc_0 / 4u];
    let br_1 = w4[bo + jc_1 / 4u];
    let bz_1 = w4[bo + nh4 + jc_1 / 4u];
    let bn_1 = w4[bo + 2u * nh4 + jc_1 / 4u];
    let t0 = params.t0;
    // h_prev of step t0 (see gru_forward), quad k at h_shared[k * MAX_H + ..].
    for (var k = 0u; k < 4u; k++) {
        let sk = s0 + 4u * k;
        let len = quad_lens(sk);
        for (var u = 0u; u < 8u; u++) {
            let ja = j0 + 4u * (u / 4u);
            if (ja < nh) {
                var hv = vec4<f32>(0.0);
                if (t0 > 0u) {
                    for (var q = 0u; q < 4u; q++) {
                        if (t0 < len[q]) {
                            hv[q] = fw4_cache[cache_at(p, C_H, sk + q, position(t0 - 1u, len[q], rev), ja) / 4u][u % 4u];
                        }
                    }
                }
                h_shared[k * MAX_H + j0 + u] = hv;
            }
        }
    }
    let len_0 = quad_lens(s0 + 0u);
    let len_1 = quad_lens(s0 + 4u);
    let len_2 = quad_lens(s0 + 8u);
    let len_3 = quad_lens(s0 + 12u);
    workgroupBarrier();

    // Row j of W_hh starts at vec4 index wo + j * nh4.
    let r0 = wo + jc_0 * nh4;
    let z0 = wo + (nh + jc_0) * nh4;
    let n0 = wo + (2u * nh + jc_0) * nh4;
    let r1 = wo + jc_1 * nh4;
    let z1 = wo + (nh + jc_1) * nh4;
    let n1 = wo + (2u * nh + jc_1) * nh4;
    for (var t = t0; t < params.t1; t++) {
        // <gate><unit>_<quad>: vec4 over the quad's 4 sequences.
        var ar0_0 = vec4<f32>(0.0); var ar0_1 = vec4<f32>(0.0); var ar0_2 = vec4<f32>(0.0); var ar0_3 = vec4<f32>(0.0);
        var ar1_0 = vec4<f32>(0.0); var ar1_1 = vec4<f32>(0.0); var ar1_2 = vec4<f32>(0.0); var ar1_3 = vec4<f32>(0.0);
        var ar2_0 = vec4<f32>(0.0); var ar2_1 = vec4<f32>(0.0); var ar2_2 = vec4<f32>(0.0); var ar2_3 = vec4<f32>(0.0);
        var ar3_0 = vec4<f32>(0.0); var ar3_1 = vec4<f32>(0.0); var ar3_2 = vec4<f32>(0.0); var ar3_3 = vec4<f32>(0.0);
        var ar4_0 = vec4<f32>(0.0); var ar4_1 = vec4<f32>(0.0); var ar4_2 = vec4<f32>(0.0); var ar4_3 = vec4<f32>(0.0);
        var ar5_0 = vec4<f32>(0.0); var ar5_1 = vec4<f32>(0.0); var ar5_2 = vec4<f32>(0.0); var ar5_3 = vec4<f32>(0.0);
        var ar6_0 = vec4<f32>(0.0); var ar6_1 = vec4<f32>(0.0); var ar6_2 = vec4<f32>(0.0); var ar6_3 = vec4<f32>(0.0);
        var ar7_0 = vec4<f32>(0.0); var ar7_1 = vec4<f32>(0.0); var ar7_2 = vec4<f32>(0.0); var ar7_3 = vec4<f32>(0.0);
        var az0_0 = vec4<f32>(0.0); var az0_1 = vec4<f32>(0.0); var az0_2 = vec4<f32>(0.0); var az0_3 = vec4<f32>(0.0);
        var az1_0 = vec4<f32>(0.0); var az1_1 = vec4<f32>(0.0); var az1_2 = vec4<f32>(0.0); var az1_3 = vec4<f32>(0.0);
        var az2_0 = vec4<f32>(0.0); var az2_1 = vec4<f32>(0.0); var az2_2 = vec4<f32>(0.0); var az2_3 = vec4<f32>(0.0);
        var az3_0 = vec4<f32>(0.0); var az3_1 = vec4<f32>(0.0); var az3_2 = vec4<f32>(0.0); var az3_3 = vec4<f32>(0.0);
        var az4_0 = vec4<f32>(0.0); var az4_1 = vec4<f32>(0.0); var az4_2 = vec4<f32>(0.0); var az4_3 = vec4<f32>(0.0);
        var az5_0 = vec4<f32>(0.0); var az5_1 = vec4<f32>(0.0); var az5_2 = vec4<f32>(0.0); var az5_3 = vec4<f32>(0.0);
        var az6_0 = vec4<f32>(0.0); var az6_1 = vec4<f32>(0.0); var az6_2 = vec4<f32>(0.0); var az6_3 = vec4<f32>(0.0);
        var az7_0 = vec4<f32>(0.0); var az7_1 = vec4<f32>(0.0); var az7_2 = vec4<f32>(0.0); var az7_3 = vec4<f32>(0.0);
        var an0_0 = vec4<f32>(0.0); var an0_1 = vec4<f32>(0.0); var an0_2 = vec4<f32>(0.0); var an0_3 = vec4<f32>(0.0);
        var an1_0 = vec4<f32>(0.0); var an1_1 = vec4<f32>(0.0); var an1_2 = vec4<f32>(0.0); var an1_3 = vec4<f32>(0.0);
        var an2_0 = vec4<f32>(0.0); var an2_1 = vec4<f32>(0.0); var an2_2 = vec4<f32>(0.0); var an2_3 = vec4<f32>(0.0);
        var an3_0 = vec4<f32>(0.0); var an3_1 = vec4<f32>(0.0); var an3_2 = vec4<f32>(0.0); var an3_3 = vec4<f32>(0.0);
        var an4_0 = vec4<f32>(0.0); var an4_1 = vec4<f32>(0.0); var an4_2 = vec4<f32>(0.0); var an4_3 = vec4<f32>(0.0);
        var an5_0 = vec4<f32>(0.0); var an5_1 = vec4<f32>(0.0); var an5_2 = vec4<f32>(0.0); var an5_3 = vec4<f32>(0.0);
        var an6_0 = vec4<f32>(0.0); var an6_1 = vec4<f32>(0.0); var an6_2 = vec4<f32>(0.0); var an6_3 = vec4<f32>(0.0);
        var an7_0 = vec4<f32>(0.0); var an7_1 = vec4<f32>(0.0); var an7_2 = vec4<f32>(0.0); var an7_3 = vec4<f32>(0.0);
        let live_0 = any(vec4<u32>(t) < len_0);
        let live_1 = any(vec4<u32>(t) < len_1);
        let live_2 = any(vec4<u32>(t) < len_2);
        let live_3 = any(vec4<u32>(t) < len_3);
        let live = live_0 || live_1 || live_2 || live_3;
        let n4 = select(0u, nh4, live && own_0);
        for (var c4 = 0u; c4 < n4; c4++) {
            let c = 4u * c4;
            let wr0 = w4[r0 + c4];
            let wr1 = w4[r0 + nh4 + c4];
            let wr2 = w4[r0 + 2u * nh4 + c4];
            let wr3 = w4[r0 + 3u * nh4 + c4];
            let wr4 = w4[r1 + c4];
            let wr5 = w4[r1 + nh4 + c4];
            let wr6 = w4[r1 + 2u * nh4 + c4];
            let wr7 = w4[r1 + 3u * nh4 + c4];
            let wz0 = w4[z0 + c4];
            let wz1 = w4[z0 + nh4 + c4];
            let wz2 = w4[z0 + 2u * nh4 + c4];
            let wz3 = w4[z0 + 3u * nh4 + c4];
            let wz4 = w4[z1 + c4];
            let wz5 = w4[z1 + nh4 + c4];
            let wz6 = w4[z1 + 2u * nh4 + c4];
            let wz7 = w4[z1 + 3u * nh4 + c4];
            let wn0 = w4[n0 + c4];
            let wn1 = w4[n0 + nh4 + c4];
            let wn2 = w4[n0 + 2u * nh4 + c4];
            let wn3 = w4[n0 + 3u * nh4 + c4];
            let wn4 = w4[n1 + c4];
            let wn5 = w4[n1 + nh4 + c4];
            let wn6 = w4[n1 + 2u * nh4 + c4];
            let wn7 = w4[n1 + 3u * nh4 + c4];
            // A quad whose sequences are all done skips its h loads (its sums stay 0).
            if (live_0) {
                let h0_0 = h_shared[c];
                let h1_0 = h_shared[c + 1u];
                let h2_0 = h_shared[c + 2u];
                let h3_0 = h_shared[c + 3u];
                ar0_0 += mix4(wr0, h0_0, h1_0, h2_0, h3_0);
                ar1_0 += mix4(wr1, h0_0, h1_0, h2_0, h3_0);
                ar2_0 += mix4(wr2, h0_0, h1_0, h2_0, h3_0);
                ar3_0 += mix4(wr3, h0_0, h1_0, h2_0, h3_0);
                ar4_0 += mix4(wr4, h0_0, h1_0, h2_0, h3_0);
                ar5_0 += mix4(wr5, h0_0, h1_0, h2_0, h3_0);
                ar6_0 += mix4(wr6, h0_0, h1_0, h2_0, h3_0);
                ar7_0 += mix4(wr7, h0_0, h1_0, h2_0, h3_0);
                az0_0 += mix4(wz0, h0_0, h1_0, h2_0, h3_0);
                az1_0 += mix4(wz1, h0_0, h1_0, h2_0, h3_0);
                az2_0 += mix4(wz2, h0_0, h1_0, h2_0, h3_0);
                az3_0 += mix4(wz3, h0_0, h1_0, h2_0, h3_0);
                az4_0 += mix4(wz4, h0_0, h1_0, h2_0, h3_0);
                az5_0 += mix4(wz5, h0_0, h1_0, h2_0, h3_0);
                az6_0 += mix4(wz6, h0_0, h1_0, h2_0, h3_0);
                az7_0 += mix4(wz7, h0_0, h1_0, h2_0, h3_0);
                an0_0 += mix4(wn0, h0_0, h1_0, h2_0, h3_0);
                an1_0 += mix4(wn1, h0_0, h1_0, h2_0, h3_0);
                an2_0 += mix4(wn2, h0_0, h1_0, h2_0, h3_0);
                an3_0 += mix4(wn3, h0_0, h1_0, h2_0, h3_0);
                an4_0 += mix4(wn4, h0_0, h1_0, h2_0, h3_0);
                an5_0 += mix4(wn5, h0_0, h1_0, h2_0, h3_0);
                an6_0 += mix4(wn6, h0_0, h1_0, h2_0, h3_0);
                an7_0 += mix4(wn7, h0_0, h1_0, h2_0, h3_0);
            }
            if (live_1) {
                let h0_1 = h_shared[MAX_H + c];
                let h1_1 = h_shared[MAX_H + c + 1u];
                let h2_1 = h_shared[MAX_H + c + 2u];
                let h3_1 = h_shared[MAX_H + c + 3u];
                ar0_1 += mix4(wr0, h0_1, h1_1, h2_1, h3_1);
                ar1_1 += mix4(wr1, h0_1, h1_1, h2_1, h3_1);
                ar2_1 += mix4(wr2, h0_1, h1_1, h2_1, h3_1);
                ar3_1 += mix4(wr3, h0_1, h1_1, h2_1, h3_1);
                ar4_1 += mix4(wr4, h0_1, h1_1, h2_1, h3_1);
                ar5_1 += mix4(wr5, h0_1, h1_1, h2_1, h3_1);
                ar6_1 += mix4(wr6, h0_1, h1_1, h2_1, h3_1);
                ar7_1 += mix4(wr7, h0_1, h1_1, h2_1, h3_1);
                az0_1 += mix4(wz0, h0_1, h1_1, h2_1, h3_1);
                az1_1 += mix4(wz1, h0_1, h1_1, h2_1, h3_1);
                az2_1 += mix4(wz2, h0_1, h1_1, h2_1, h3_1);
                az3_1 += mix4(wz3, h0_1, h1_1, h2_1, h3_1);
                az4_1 += mix4(wz4, h0_1, h1_1, h2_1, h3_1);
                az5_1 += mix4(wz5, h0_1, h1_1, h2_1, h3_1);
                az6_1 += mix4(wz6, h0_1, h1_1, h2_1, h3_1);
                az7_1 += mix4(wz7, h0_1, h1_1, h2_1, h3_1);
                an0_1 += mix4(wn0, h0_1, h1_1, h2_1, h3_1);
                an1_1 += mix4(wn1, h0_1, h1_1, h2_1, h3_1);
                an2_1 += mix4(wn2, h0_1, h1_1, h2_1, h3_1);
                an3_1 += mix4(wn3, h0_1, h1_1, h2_1, h3_1);
                an4_1 += mix4(wn4, h0_1, h1_1, h2_1, h3_1);
                an5_1 += mix4(wn5, h0_1, h1_1, h2_1, h3_1);
                an6_1 += mix4(wn6, h0_1, h1_1, h2_1, h3_1);
                an7_1 += mix4(wn7, h0_1, h1_1, h2_1, h3_1);
            }
            if (live_2) {
                let h0_2 = h_shared[2u * MAX_H + c];
                let h1_2 = h_shared[2u * MAX_H + c + 1u];
                let h2_2 = h_shared[2u * MAX_H + c + 2u];
                let h3_2 = h_shared[2u * MAX_H + c + 3u];
                ar0_2 += mix4(wr0, h0_2, h1_2, h2_2, h3_2);
                ar1_2 += mix4(wr1, h0_2, h1_2, h2_2, h3_2);
                ar2_2 += mix4(wr2, h0_2, h1_2, h2_2, h3_2);
                ar3_2 += mix4(wr3, h0_2, h1_2, h2_2, h3_2);
                ar4_2 += mix4(wr4, h0_2, h1_2, h2_2, h3_2);
                ar5_2 += mix4(wr5, h0_2, h1_2, h2_2, h3_2);
                ar6_2 += mix4(wr6, h0_2, h1_2, h2_2, h3_2);
                ar7_2 += mix4(wr7, h0_2, h1_2, h2_2, h3_2);
                az0_2 += mix4(wz0, h0_2, h1_2, h2_2, h3_2);
                az1_2 += mix4(wz1, h0_2, h1_2, h2_2, h3_2);
                az2_2 += mix4(wz2, h0_2, h1_2, h2_2, h3_2);
                az3_2 += mix4(wz3, h0_2, h1_2, h2_2, h3_2);
                az4_2 += mix4(wz4, h0_2, h1_2, h2_2, h3_2);
                az5_2 += mix4(wz5, h0_2, h1_2, h2_2, h3_2);
                az6_2 += mix4(wz6, h0_2, h1_2, h2_2, h3_2);
                az7_2 += mix4(wz7, h0_2, h1_2, h2_2, h3_2);
                an0_2 += mix4(wn0, h0_2, h1_2, h2_2, h3_2);
                an1_2 += mix4(wn1, h0_2, h1_2, h2_2, h3_2);
                an2_2 += mix4(wn2, h0_2, h1_2, h2_2, h3_2);
                an3_2 += mix4(wn3, h0_2, h1_2, h2_2, h3_2);
                an4_2 += mix4(wn4, h0_2, h1_2, h2_2, h3_2);
                an5_2 += mix4(wn5, h0_2, h1_2, h2_2, h3_2);
                an6_2 += mix4(wn6, h0_2, h1_2, h2_2, h3_2);
                an7_2 += mix4(wn7, h0_2, h1_2, h2_2, h3_2);
            }
            if (live_3) {
                let h0_3 = h_shared[3u * MAX_H + c];
                let h1_3 = h_shared[3u * MAX_H + c + 1u];
                let h2_3 = h_shared[3u * MAX_H + c + 2u];
                let h3_3 = h_shared[3u * MAX_H + c + 3u];
                ar0_3 += mix4(wr0, h0_3, h1_3, h2_3, h3_3);
                ar1_3 += mix4(wr1, h0_3, h1_3, h2_3, h3_3);
                ar2_3 += mix4(wr2, h0_3, h1_3, h2_3, h3_3);
                ar3_3 += mix4(wr3, h0_3, h1_3, h2_3, h3_3);
                ar4_3 += mix4(wr4, h0_3, h1_3, h2_3, h3_3);
                ar5_3 += mix4(wr5, h0_3, h1_3, h2_3, h3_3);
                ar6_3 += mix4(wr6, h0_3, h1_3, h2_3, h3_3);
                ar7_3 += mix4(wr7, h0_3, h1_3, h2_3, h3_3);
                az0_3 += mix4(wz0, h0_3, h1_3, h2_3, h3_3);
                az1_3 += mix4(wz1, h0_3, h1_3, h2_3, h3_3);
                az2_3 += mix4(wz2, h0_3, h1_3, h2_3, h3_3);
                az3_3 += mix4(wz3, h0_3, h1_3, h2_3, h3_3);
                az4_3 += mix4(wz4, h0_3, h1_3, h2_3, h3_3);
                az5_3 += mix4(wz5, h0_3, h1_3, h2_3, h3_3);
                az6_3 += mix4(wz6, h0_3, h1_3, h2_3, h3_3);
                az7_3 += mix4(wz7, h0_3, h1_3, h2_3, h3_3);
                an0_3 += mix4(wn0, h0_3, h1_3, h2_3, h3_3);
                an1_3 += mix4(wn1, h0_3, h1_3, h2_3, h3_3);
                an2_3 += mix4(wn2, h0_3, h1_3, h2_3, h3_3);
                an3_3 += mix4(wn3, h0_3, h1_3, h2_3, h3_3);
                an4_3 += mix4(wn4, h0_3, h1_3, h2_3, h3_3);
                an5_3 += mix4(wn5, h0_3, h1_3, h2_3, h3_3);
                an6_3 += mix4(wn6, h0_3, h1_3, h2_3, h3_3);
                an7_3 += mix4(wn7, h0_3, h1_3, h2_3, h3_3);
            }
        }
        let hp0_0 = h_shared[jc_0];
        let hp1_0 = h_shared[jc_0 + 1u];
        let hp2_0 = h_shared[jc_0 + 2u];
        let hp3_0 = h_shared[jc_0 + 3u];
        let hp4_0 = h_shared[jc_1];
        let hp5_0 = h_shared[jc_1 + 1u];
        let hp6_0 = h_shared[jc_1 + 2u];
        let hp7_0 = h_shared[jc_1 + 3u];
        let hp0_1 = h_shared[MAX_H + jc_0];
        let hp1_1 = h_shared[MAX_H + jc_0 + 1u];
        let hp2_1 = h_shared[MAX_H + jc_0 + 2u];
        let hp3_1 = h_shared[MAX_H + jc_0 + 3u];
        let hp4_1 = h_shared[MAX_H + jc_1];
        let hp5_1 = h_shared[MAX_H + jc_1 + 1u];
        let hp6_1 = h_shared[MAX_H + jc_1 + 2u];
        let hp7_1 = h_shared[MAX_H + jc_1 + 3u];
        let hp0_2 = h_shared[2u * MAX_H + jc_0];
        let hp1_2 = h_shared[2u * MAX_H + jc_0 + 1u];
        let hp2_2 = h_shared[2u * MAX_H + jc_0 + 2u];
        let hp3_2 = h_shared[2u * MAX_H + jc_0 + 3u];
        let hp4_2 = h_shared[2u * MAX_H + jc_1];
        let hp5_2 = h_shared[2u * MAX_H + jc_1 + 1u];
        let hp6_2 = h_shared[2u * MAX_H + jc_1 + 2u];
        let hp7_2 = h_shared[2u * MAX_H + jc_1 + 3u];
        let hp0_3 = h_shared[3u * MAX_H + jc_0];
        let hp1_3 = h_shared[3u * MAX_H + jc_0 + 1u];
        let hp2_3 = h_shared[3u * MAX_H + jc_0 + 2u];
        let hp3_3 = h_shared[3u * MAX_H + jc_0 + 3u];
        let hp4_3 = h_shared[3u * MAX_H + jc_1];
        let hp5_3 = h_shared[3u * MAX_H + jc_1 + 1u];
        let hp6_3 = h_shared[3u * MAX_H + jc_1 + 2u];
        let hp7_3 = h_shared[3u * MAX_H + jc_1 + 3u];
        // Per sequence and half: the 4 units' sums as one vec4 (component q of each).
        let hq0_0 = forward_seq4(p, min(s0, nb - 1u), t, len_0.x, rev, jc_0, own_0 && s0 < nb,
            vec4(ar0_0.x, ar1_0.x, ar2_0.x, ar3_0.x), vec4(az0_0.x, az1_0.x, az2_0.x, az3_0.x), vec4(an0_0.x, an1_0.x, an2_0.x, an3_0.x),
            vec4(hp0_0.x, hp1_0.x, hp2_0.x, hp3_0.x), br_0, bz_0, bn_0);
        let hq0_1 = forward_seq4(p, min(s0, nb - 1u), t, len_0.x, rev, jc_1, own_1 && s0 < nb,
            vec4(ar4_0.x, ar5_0.x, ar6_0.x, ar7_0.x), vec4(az4_0.x, az5_0.x, az6_0.x, az7_0.x), vec4(an4_0.x, an5_0.x, an6_0.x, an7_0.x),
            vec4(hp4_0.x, hp5_0.x, hp6_0.x, hp7_0.x), br_1, bz_1, bn_1);
        let hq1_0 = forward_seq4(p, min(s0 + 1u, nb - 1u), t, len_0.y, rev, jc_0, own_0 && s0 + 1u < nb,
            vec4(ar0_0.y, ar1_0.y, ar2_0.y, ar3_0.y), vec4(az0_0.y, az1_0.y, az2_0.y, az3_0.y), vec4(an0_0.y, an1_0.y, an2_0.y, an3_0.y),
            vec4(hp0_0.y, hp1_0.y, hp2_0.y, hp3_0.y), br_0, bz_0, bn_0);
        let hq1_1 = forward_seq4(p, min(s0 + 1u, nb - 1u), t, len_0.y, rev, jc_1, own_1 && s0 + 1u < nb,
            vec4(ar4_0.y, ar5_0.y, ar6_0.y, ar7_0.y), vec4(az4_0.y, az5_0.y, az6_0.y, az7_0.y), vec4(an4_0.y, an5_0.y, an6_0.y, an7_0.y),
            vec4(hp4_0.y, hp5_0.y, hp6_0.y, hp7_0.y), br_1, bz_1, bn_1);
        let hq2_0 = forward_seq4(p, min(s0 + 2u, nb - 1u), t, len_0.z, rev, jc_0, own_0 && s0 + 2u < nb,
            vec4(ar0_0.z, ar1_0.z, ar2_0.z, ar3_0.z), vec4(az0_0.z, az1_0.z, az2_0.z, az3_0.z), vec4(an0_0.z, an1_0.z, an2_0.z, an3_0.z),
            vec4(hp0_0.z, hp1_0.z, hp2_0.z, hp3_0.z), br_0, bz_0, bn_0);
        let hq2_1 = forward_seq4(p, min(s0 + 2u, nb - 1u), t, len_0.z, rev, jc_1, own_1 && s0 + 2u < nb,
            vec4(ar4_0.z, ar5_0.z, ar6_0.z, ar7_0.z), vec4(az4_0.z, az5_0.z, az6_0.z, az7_0.z), vec4(an4_0.z, an5_0.z, an6_0.z, an7_0.z),
            vec4(hp4_0.z, hp5_0.z, hp6_0.z, hp7_0.z), br_1, bz_1, bn_1);
        let hq3_0 = forward_seq4(p, min(s0 + 3u, nb - 1u), t, len_0.w, rev, jc_0, own_0 && s0 + 3u < nb,
            vec4(ar0_0.w, ar1_0.w, ar2_0.w, ar3_0.w), vec4(az0_0.w, az1_0.w, az2_0.w, az3_0.w), vec4(an0_0.w, an1_0.w, an2_0.w, an3_0.w),
            vec4(hp0_0.w, hp1_0.w, hp2_0.w, hp3_0.w), br_0, bz_0, bn_0);
        let hq3_1 = forward_seq4(p, min(s0 + 3u, nb - 1u), t, len_0.w, rev, jc_1, own_1 && s0 + 3u < nb,
            vec4(ar4_0.w, ar5_0.w, ar6_0.w, ar7_0.w), vec4(az4_0.w, az5_0.w, az6_0.w, az7_0.w), vec4(an4_0.w, an5_0.w, an6_0.w, an7_0.w),
            vec4(hp4_0.w, hp5_0.w, hp6_0.w, hp7_0.w), br_1, bz_1, bn_1);
        let hq4_0 = forward_seq4(p, min(s0 + 4u, nb - 1u), t, len_1.x, rev, jc_0, own_0 && s0 + 4u < nb,
            vec4(ar0_1.x, ar1_1.x, ar2_1.x, ar3_1.x), vec4(az0_1.x, az1_1.x, az2_1.x, az3_1.x), vec4(an0_1.x, an1_1.x, an2_1.x, an3_1.x),
            vec4(hp0_1.x, hp1_1.x, hp2_1.x, hp3_1.x), br_0, bz_0, bn_0);
        let hq4_1 = forward_seq4(p, min(s0 + 4u, nb - 1u), t, len_1.x, rev, jc_1, own_1 && s0 + 4u < nb,
            vec4(ar4_1.x, ar5_1.x, ar6_1.x, ar7_1.x), vec4(az4_1.x, az5_1.x, az6_1.x, az7_1.x), vec4(an4_1.x, an5_1.x, an6_1.x, an7_1.x),
            vec4(hp4_1.x, hp5_1.x, hp6_1.x, hp7_1.x), br_1, bz_1, bn_1);
        let hq5_0 = forward_seq4(p, min(s0 + 5u, nb - 1u), t, len_1.y, rev, jc_0, own_0 && s0 + 5u < nb,
            vec4(ar0_1.y, ar1_1.y, ar2_1.y, ar3_1.y), vec4(az0_1.y, az1_1.y, az2_1.y, az3_1.y), vec4(an0_1.y, an1_1.y, an2_1.y, an3_1.y),
            vec4(hp0_1.y, hp1_1.y, hp2_1.y, hp3_1.y), br_0, bz_0, bn_0);
        let hq5_1 = forward_seq4(p, min(s0 + 5u, nb - 1u), t, len_1.y, rev, jc_1, own_1 && s0 + 5u < nb,
            vec4(ar4_1.y, ar5_1.y, ar6_1.y, ar7_1.y), vec4(az4_1.y, az5_1.y, az6_1.y, az7_1.y), vec4(an4_1.y, an5_1.y, an6_1.y, an7_1.y),
            vec4(hp4_1.y, hp5_1.y, hp6_1.y, hp7_1.y), br_1, bz_1, bn_1);
        let hq6_0 = forward_seq4(p, min(s0 + 6u, nb - 1u), t, len_1.z, rev, jc_0, own_0 && s0 + 6u < nb,
            vec4(ar0_1.z, ar1_1.z, ar2_1.z, ar3_1.z), vec4(az0_1.z, az1_1.z, az2_1.z, az3_1.z), vec4(an0_1.z, an1_1.z, an2_1.z, an3_1.z),
            vec4(hp0_1.z, hp1_1.z, hp2_1.z, hp3_1.z), br_0, bz_0, bn_0);
        let hq6_1 = forward_seq4(p, min(s0 + 6u, nb - 1u), t, len_1.z, rev, jc_1, own_1 && s0 + 6u < nb,
            vec4(ar4_1.z, ar5_1.z, ar6_1.z, ar7_1.z), vec4(az4_1.z, az5_1.z, az6_1.z, az7_1.z), vec4(an4_1.z, an5_1.z, an6_1.z, an7_1.z),
            vec4(hp4_1.z, hp5_1.z, hp6_1.z, hp7_1.z), br_1, bz_1, bn_1);
        let hq7_0 = forward_seq4(p, min(s0 + 7u, nb - 1u), t, len_1.w, rev, jc_0, own_0 && s0 + 7u < nb,
            vec4(ar0_1.w, ar1_1.w, ar2_1.w, ar3_1.w), vec4(az0_1.w, az1_1.w, az2_1.w, az3_1.w), vec4(an0_1.w, an1_1.w, an2_1.w, an3_1.w),
            vec4(hp0_1.w, hp1_1.w, hp2_1.w, hp3_1.w), br_0, bz_0, bn_0);
        let hq7_1 = forward_seq4(p, min(s0 + 7u, nb - 1u), t, len_1.w, rev, jc_1, own_1 && s0 + 7u < nb,
            vec4(ar4_1.w, ar5_1.w, ar6_1.w, ar7_1.w), vec4(az4_1.w, az5_1.w, az6_1.w, az7_1.w), vec4(an4_1.w, an5_1.w, an6_1.w, an7_1.w),
            vec4(hp4_1.w, hp5_1.w, hp6_1.w, hp7_1.w), br_1, bz_1, bn_1);
        let hq8_0 = forward_seq4(p, min(s0 + 8u, nb - 1u), t, len_2.x, rev, jc_0, own_0 && s0 + 8u < nb,
            vec4(ar0_2.x, ar1_2.x, ar2_2.x, ar3_2.x), vec4(az0_2.x, az1_2.x, az2_2.x, az3_2.x), vec4(an0_2.x, an1_2.x, an2_2.x, an3_2.x),
            vec4(hp0_2.x, hp1_2.x, hp2_2.x, hp3_2.x), br_0, bz_0, bn_0);
        let hq8_1 = forward_seq4(p, min(s0 + 8u, nb - 1u), t, len_2.x, rev, jc_1, own_1 && s0 + 8u < nb,
            vec4(ar4_2.x, ar5_2.x, ar6_2.x, ar7_2.x), vec4(az4_2.x, az5_2.x, az6_2.x, az7_2.x), vec4(an4_2.x, an5_2.x, an6_2.x, an7_2.x),
            vec4(hp4_2.x, hp5_2.x, hp6_2.x, hp7_2.x), br_1, bz_1, bn_1);
        let hq9_0 = forward_seq4(p, min(s0 + 9u, nb - 1u), t, len_2.y, rev, jc_0, own_0 && s0 + 9u < nb,
            vec4(ar0_2.y, ar1_2.y, ar2_2.y, ar3_2.y), vec4(az0_2.y, az1_2.y, az2_2.y, az3_2.y), vec4(an0_2.y, an1_2.y, an2_2.y, an3_2.y),
            vec4(hp0_2.y, hp1_2.y, hp2_2.y, hp3_2.y), br_0, bz_0, bn_0);
        let hq9_1 = forward_seq4(p, min(s0 + 9u, nb - 1u), t, len_2.y, rev, jc_1, own_1 && s0 + 9u < nb,
            vec4(ar4_2.y, ar5_2.y, ar6_2.y, ar7_2.y), vec4(az4_2.y, az5_2.y, az6_2.y, az7_2.y), vec4(an4_2.y, an5_2.y, an6_2.y, an7_2.y),
            vec4(hp4_2.y, hp5_2.y, hp6_2.y, hp7_2.y), br_1, bz_1, bn_1);
        let hq10_0 = forward_seq4(p, min(s0 + 10u, nb - 1u), t, len_2.z, rev, jc_0, own_0 && s0 + 10u < nb,
            vec4(ar0_2.z, ar1_2.z, ar2_2.z, ar3_2.z), vec4(az0_2.z, az1_2.z, az2_2.z, az3_2.z), vec4(an0_2.z, an1_2.z, an2_2.z, an3_2.z),
            vec4(hp0_2.z, hp1_2.z, hp2_2.z, hp3_2.z), br_0, bz_0, bn_0);
        let hq10_1 = forward_seq4(p, min(s0 + 10u, nb - 1u), t, len_2.z, rev, jc_1, own_1 && s0 + 10u < nb,
            vec4(ar4_2.z, ar5_2.z, ar6_2.z, ar7_2.z), vec4(az4_2.z, az5_2.z, az6_2.z, az7_2.z), vec4(an4_2.z, an5_2.z, an6_2.z, an7_2.z),
            vec4(hp4_2.z, hp5_2.z, hp6_2.z, hp7_2.z), br_1, bz_1, bn_1);
        let hq11_0 = forward_seq4(p, min(s0 + 11u, nb - 1u), t, len_2.w, rev, jc_0, own_0 && s0 + 11u < nb,
            vec4(ar0_2.w, ar1_2.w, ar2_2.w, ar3_2.w), vec4(az0_2.w, az1_2.w, az2_2.w, az3_2.w), vec4(an0_2.w, an1_2.w, an2_2.w, an3_2.w),
            vec4(hp0_2.w, hp1_2.w, hp2_2.w, hp3_2.w), br_0, bz_0, bn_0);
        let hq11_1 = forward_seq4(p, min(s0 + 11u, nb - 1u), t, len_2.w, rev, jc_1, own_1 && s0 + 11u < nb,
            vec4(ar4_2.w, ar5_2.w, ar6_2.w, ar7_2.w), vec4(az4_2.w, az5_2.w, az6_2.w, az7_2.w), vec4(an4_2.w, an5_2.w, an6_2.w, an7_2.w),
            vec4(hp4_2.w, hp5_2.w, hp6_2.w, hp7_2.w), br_1, bz_1, bn_1);
        let hq12_0 = forward_seq4(p, min(s0 + 12u, nb - 1u), t, len_3.x, rev, jc_0, own_0 && s0 + 12u < nb,
            vec4(ar0_3.x, ar1_3.x, ar2_3.x, ar3_3.x), vec4(az0_3.x, az1_3.x, az2_3.x, az3_3.x), vec4(an0_3.x, an1_3.x, an2_3.x, an3_3.x),
            vec4(hp0_3.x, hp1_3.x, hp2_3.x, hp3_3.x), br_0, bz_0, bn_0);
        let hq12_1 = forward_seq4(p, min(s0 + 12u, nb - 1u), t, len_3.x, rev, jc_1, own_1 && s0 + 12u < nb,
            vec4(ar4_3.x, ar5_3.x, ar6_3.x, ar7_3.x), vec4(az4_3.x, az5_3.x, az6_3.x, az7_3.x), vec4(an4_3.x, an5_3.x, an6_3.x, an7_3.x),
            vec4(hp4_3.x, hp5_3.x, hp6_3.x, hp7_3.x), br_1, bz_1, bn_1);
        let hq13_0 = forward_seq4(p, min(s0 + 13u, nb - 1u), t, len_3.y, rev, jc_0, own_0 && s0 + 13u < nb,
            vec4(ar0_3.y, ar1_3.y, ar2_3.y, ar3_3.y), vec4(az0_3.y, az1_3.y, az2_3.y, az3_3.y), vec4(an0_3.y, an1_3.y, an2_3.y, an3_3.y),
            vec4(hp0_3.y, hp1_3.y, hp2_3.y, hp3_3.y), br_0, bz_0, bn_0);
        let hq13_1 = forward_seq4(p, min(s0 + 13u, nb - 1u), t, len_3.y, rev, jc_1, own_1 && s0 + 13u < nb,
            vec4(ar4_3.y, ar5_3.y, ar6_3.y, ar7_3.y), vec4(az4_3.y, az5_3.y, az6_3.y, az7_3.y), vec4(an4_3.y, an5_3.y, an6_3.y, an7_3.y),
            vec4(hp4_3.y, hp5_3.y, hp6_3.y, hp7_3.y), br_1, bz_1, bn_1);
        let hq14_0 = forward_seq4(p, min(s0 + 14u, nb - 1u), t, len_3.z, rev, jc_0, own_0 && s0 + 14u < nb,
            vec4(ar0_3.z, ar1_3.z, ar2_3.z, ar3_3.z), vec4(az0_3.z, az1_3.z, az2_3.z, az3_3.z), vec4(an0_3.z, an1_3.z, an2_3.z, an3_3.z),
            vec4(hp0_3.z, hp1_3.z, hp2_3.z, hp3_3.z), br_0, bz_0, bn_0);
        let hq14_1 = forward_seq4(p, min(s0 + 14u, nb - 1u), t, len_3.z, rev, jc_1, own_1 && s0 + 14u < nb,
            vec4(ar4_3.z, ar5_3.z, ar6_3.z, ar7_3.z), vec4(az4_3.z, az5_3.z, az6_3.z, az7_3.z), vec4(an4_3.z, an5_3.z, an6_3.z, an7_3.z),
            vec4(hp4_3.z, hp5_3.z, hp6_3.z, hp7_3.z), br_1, bz_1, bn_1);
        let hq15_0 = forward_seq4(p, min(s0 + 15u, nb - 1u), t, len_3.w, rev, jc_0, own_0 && s0 + 15u < nb,
            vec4(ar0_3.w, ar1_3.w, ar2_3.w, ar3_3.w), vec4(az0_3.w, az1_3.w, az2_3.w, az3_3.w), vec4(an0_3.w, an1_3.w, an2_3.w, an3_3.w),
            vec4(hp0_3.w, hp1_3.w, hp2_3.w, hp3_3.w), br_0, bz_0, bn_0);
        let hq15_1 = forward_seq4(p, min(s0 + 15u, nb - 1u), t, len_3.w, rev, jc_1, own_1 && s0 + 15u < nb,
            vec4(ar4_3.w, ar5_3.w, ar6_3.w, ar7_3.w), vec4(az4_3.w, az5_3.w, az6_3.w, az7_3.w), vec4(an4_3.w, an5_3.w, an6_3.w, an7_3.w),
            vec4(hp4_3.w, hp5_3.w, hp6_3.w, hp7_3.w), br_1, bz_1, bn_1);
        // Everyone has read h_prev before anyone overwrites it.
        workgroupBarrier();
        if (own_0) {
            h_shared[jc_0] = vec4(hq0_0.x, hq1_0.x, hq2_0.x, hq3_0.x);
            h_shared[jc_0 + 1u] = vec4(hq0_0.y, hq1_0.y, hq2_0.y, hq3_0.y);
            h_shared[jc_0 + 2u] = vec4(hq0_0.z, hq1_0.z, hq2_0.z, hq3_0.z);
            h_shared[jc_0 + 3u] = vec4(hq0_0.w, hq1_0.w, hq2_0.w, hq3_0.w);
            h_shared[MAX_H + jc_0] = vec4(hq4_0.x, hq5_0.x, hq6_0.x, hq7_0.x);
            h_shared[MAX_H + jc_0 + 1u] = vec4(hq4_0.y, hq5_0.y, hq6_0.y, hq7_0.y);
            h_shared[MAX_H + jc_0 + 2u] = vec4(hq4_0.z, hq5_0.z, hq6_0.z, hq7_0.z);
            h_shared[MAX_H + jc_0 + 3u] = vec4(hq4_0.w, hq5_0.w, hq6_0.w, hq7_0.w);
            h_shared[2u * MAX_H + jc_0] = vec4(hq8_0.x, hq9_0.x, hq10_0.x, hq11_0.x);
            h_shared[2u * MAX_H + jc_0 + 1u] = vec4(hq8_0.y, hq9_0.y, hq10_0.y, hq11_0.y);
            h_shared[2u * MAX_H + jc_0 + 2u] = vec4(hq8_0.z, hq9_0.z, hq10_0.z, hq11_0.z);
            h_shared[2u * MAX_H + jc_0 + 3u] = vec4(hq8_0.w, hq9_0.w, hq10_0.w, hq11_0.w);
            h_shared[3u * MAX_H + jc_0] = vec4(hq12_0.x, hq13_0.x, hq14_0.x, hq15_0.x);
            h_shared[3u * MAX_H + jc_0 + 1u] = vec4(hq12_0.y, hq13_0.y, hq14_0.y, hq15_0.y);
            h_shared[3u * MAX_H + jc_0 + 2u] = vec4(hq12_0.z, hq13_0.z, hq14_0.z, hq15_0.z);
            h_shared[3u * MAX_H + jc_0 + 3u] = vec4(hq12_0.w, hq13_0.w, hq14_0.w, hq15_0.w);
        }
        if (own_1) {
            h_shared[jc_1] = vec4(hq0_1.x, hq1_1.x, hq2_1.x, hq3_1.x);
            h_shared[jc_1 + 1u] = vec4(hq0_1.y, hq1_1.y, hq2_1.y, hq3_1.y);
            h_shared[jc_1 + 2u] = vec4(hq0_1.z, hq1_1.z, hq2_1.z, hq3_1.z);
            h_shared[jc_1 + 3u] = vec4(hq0_1.w, hq1_1.w, hq2_1.w, hq3_1.w);
            h_shared[MAX_H + jc_1] = vec4(hq4_1.x, hq5_1.x, hq6_1.x, hq7_1.x);
            h_shared[MAX_H + jc_1 + 1u] = vec4(hq4_1.y, hq5_1.y, hq6_1.y, hq7_1.y);
            h_shared[MAX_H + jc_1 + 2u] = vec4(hq4_1.z, hq5_1.z, hq6_1.z, hq7_1.z);
            h_shared[MAX_H + jc_1 + 3u] = vec4(hq4_1.w, hq5_1.w, hq6_1.w, hq7_1.w);
            h_shared[2u * MAX_H + jc_1] = vec4(hq8_1.x, hq9_1.x, hq10_1.x, hq11_1.x);
            h_shared[2u * MAX_H + jc_1 + 1u] = vec4(hq8_1.y, hq9_1.y, hq10_1.y, hq11_1.y);
            h_shared[2u * MAX_H + jc_1 + 2u] = vec4(hq8_1.z, hq9_1.z, hq10_1.z, hq11_1.z);
            h_shared[2u * MAX_H + jc_1 + 3u] = vec4(hq8_1.w, hq9_1.w, hq10_1.w, hq11_1.w);
            h_shared[3u * MAX_H + jc_1] = vec4(hq12_1.x, hq13_1.x, hq14_1.x, hq15_1.x);
            h_shared[3u * MAX_H + jc_1 + 1u] = vec4(hq12_1.y, hq13_1.y, hq14_1.y, hq15_1.y);
            h_shared[3u * MAX_H + jc_1 + 2u] = vec4(hq12_1.z, hq13_1.z, hq14_1.z, hq15_1.z);
            h_shared[3u * MAX_H + jc_1 + 3u] = vec4(hq12_1.w, hq13_1.w, hq14_1.w, hq15_1.w);
        }
        workgroupBarrier();
    }
}

// gru_backward_wide: 8 units per invocation (two 4-unit halves j0 and j0 + 4,
// each owned when < H), so phase B loads 8 W + 16 gh vec4 per 4 rows for 512
// multiply-adds; workgroup (32, 1, 1).
@compute @workgroup_size(32, 1, 1)
fn gru_backward_wide(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let nu = params.u;
    let p = wid.y;
    let rev = p % 2u == 1u;
    let s0 = wid.x * SEQ_PER_WG;
    let j0 = 8u * lid.x;
    let own_0 = j0 < nh;
    let own_1 = j0 + 4u < nh;
    let jc_0 = min(j0, nh - 4u);
    let jc_1 = min(j0 + 4u, nh - 4u);
    let nh4 = nh / 4u;
    let n3 = 3u * nh;
    let wo = w_hh_offset(p) / 4u;
    let len_0 = quad_lens(s0 + 0u);
    let len_1 = quad_lens(s0 + 4u);
    let len_2 = quad_lens(s0 + 8u);
    let len_3 = quad_lens(s0 + 12u);
    // Sequence s (clamped into the batch); ok_s_u: it exists and half u is owned.
    let b_0 = min(s0, nb - 1u);
    let ok_0_0 = own_0 && s0 < nb;
    let ok_0_1 = own_1 && s0 < nb;
    let b_1 = min(s0 + 1u, nb - 1u);
    let ok_1_0 = own_0 && s0 + 1u < nb;
    let ok_1_1 = own_1 && s0 + 1u < nb;
    let b_2 = min(s0 + 2u, nb - 1u);
    let ok_2_0 = own_0 && s0 + 2u < nb;
    let ok_2_1 = own_1 && s0 + 2u < nb;
    let b_3 = min(s0 + 3u, nb - 1u);
    let ok_3_0 = own_0 && s0 + 3u < nb;
    let ok_3_1 = own_1 && s0 + 3u < nb;
    let b_4 = min(s0 + 4u, nb - 1u);
    let ok_4_0 = own_0 && s0 + 4u < nb;
    let ok_4_1 = own_1 && s0 + 4u < nb;
    let b_5 = min(s0 + 5u, nb - 1u);
    let ok_5_0 = own_0 && s0 + 5u < nb;
    let ok_5_1 = own_1 && s0 + 5u < nb;
    let b_6 = min(s0 + 6u, nb - 1u);
    let ok_6_0 = own_0 && s0 + 6u < nb;
    let ok_6_1 = own_1 && s0 + 6u < nb;
    let b_7 = min(s0 + 7u, nb - 1u);
    let ok_7_0 = own_0 && s0 + 7u < nb;
    let ok_7_1 = own_1 && s0 + 7u < nb;
    let b_8 = min(s0 + 8u, nb - 1u);
    let ok_8_0 = own_0 && s0 + 8u < nb;
    let ok_8_1 = own_1 && s0 + 8u < nb;
    let b_9 = min(s0 + 9u, nb - 1u);
    let ok_9_0 = own_0 && s0 + 9u < nb;
    let ok_9_1 = own_1 && s0 + 9u < nb;
    let b_10 = min(s0 + 10u, nb - 1u);
    let ok_10_0 = own_0 && s0 + 10u < nb;
    let ok_10_1 = own_1 && s0 + 10u < nb;
    let b_11 = min(s0 + 11u, nb - 1u);
    let ok_11_0 = own_0 && s0 + 11u < nb;
    let ok_11_1 = own_1 && s0 + 11u < nb;
    let b_12 = min(s0 + 12u, nb - 1u);
    let ok_12_0 = own_0 && s0 + 12u < nb;
    let ok_12_1 = own_1 && s0 + 12u < nb;
    let b_13 = min(s0 + 13u, nb - 1u);
    let ok_13_0 = own_0 && s0 + 13u < nb;
    let ok_13_1 = own_1 && s0 + 13u < nb;
    let b_14 = min(s0 + 14u, nb - 1u);
    let ok_14_0 = own_0 && s0 + 14u < nb;
    let ok_14_1 = own_1 && s0 + 14u < nb;
    let b_15 = min(s0 + 15u, nb - 1u);
    let ok_15_0 = own_0 && s0 + 15u < nb;
    let ok_15_1 = own_1 && s0 + 15u < nb;
    // dh arriving from the step processed after this one, per sequence and
    // half (vec4 over 4 units); crosses dispatches through bw4_carry.
    var c_0_0 = vec4<f32>(0.0);
    var c_0_1 = vec4<f32>(0.0);
    var c_1_0 = vec4<f32>(0.0);
    var c_1_1 = vec4<f32>(0.0);
    var c_2_0 = vec4<f32>(0.0);
    var c_2_1 = vec4<f32>(0.0);
    var c_3_0 = vec4<f32>(0.0);
    var c_3_1 = vec4<f32>(0.0);
    var c_4_0 = vec4<f32>(0.0);
    var c_4_1 = vec4<f32>(0.0);
    var c_5_0 = vec4<f32>(0.0);
    var c_5_1 = vec4<f32>(0.0);
    var c_6_0 = vec4<f32>(0.0);
    var c_6_1 = vec4<f32>(0.0);
    var c_7_0 = vec4<f32>(0.0);
    var c_7_1 = vec4<f32>(0.0);
    var c_8_0 = vec4<f32>(0.0);
    var c_8_1 = vec4<f32>(0.0);
    var c_9_0 = vec4<f32>(0.0);
    var c_9_1 = vec4<f32>(0.0);
    var c_10_0 = vec4<f32>(0.0);
    var c_10_1 = vec4<f32>(0.0);
    var c_11_0 = vec4<f32>(0.0);
    var c_11_1 = vec4<f32>(0.0);
    var c_12_0 = vec4<f32>(0.0);
    var c_12_1 = vec4<f32>(0.0);
    var c_13_0 = vec4<f32>(0.0);
    var c_13_1 = vec4<f32>(0.0);
    var c_14_0 = vec4<f32>(0.0);
    var c_14_1 = vec4<f32>(0.0);
    var c_15_0 = vec4<f32>(0.0);
    var c_15_1 = vec4<f32>(0.0);
    if (params.t1 < nu) {
        c_0_0 = bw4_carry[((p * nb + b_0) * nh + jc_0) / 4u];
        c_0_1 = bw4_carry[((p * nb + b_0) * nh + jc_1) / 4u];
        c_1_0 = bw4_carry[((p * nb + b_1) * nh + jc_0) / 4u];
        c_1_1 = bw4_carry[((p * nb + b_1) * nh + jc_1) / 4u];
        c_2_0 = bw4_carry[((p * nb + b_2) * nh + jc_0) / 4u];
        c_2_1 = bw4_carry[((p * nb + b_2) * nh + jc_1) / 4u];
        c_3_0 = bw4_carry[((p * nb + b_3) * nh + jc_0) / 4u];
        c_3_1 = bw4_carry[((p * nb + b_3) * nh + jc_1) / 4u];
        c_4_0 = bw4_carry[((p * nb + b_4) * nh + jc_0) / 4u];
        c_4_1 = bw4_carry[((p * nb + b_4) * nh + jc_1) / 4u];
        c_5_0 = bw4_carry[((p * nb + b_5) * nh + jc_0) / 4u];
        c_5_1 = bw4_carry[((p * nb + b_5) * nh + jc_1) / 4u];
        c_6_0 = bw4_carry[((p * nb + b_6) * nh + jc_0) / 4u];
        c_6_1 = bw4_carry[((p * nb + b_6) * nh + jc_1) / 4u];
        c_7_0 = bw4_carry[((p * nb + b_7) * nh + jc_0) / 4u];
        c_7_1 = bw4_carry[((p * nb + b_7) * nh + jc_1) / 4u];
        c_8_0 = bw4_carry[((p * nb + b_8) * nh + jc_0) / 4u];
        c_8_1 = bw4_carry[((p * nb + b_8) * nh + jc_1) / 4u];
        c_9_0 = bw4_carry[((p * nb + b_9) * nh + jc_0) / 4u];
        c_9_1 = bw4_carry[((p * nb + b_9) * nh + jc_1) / 4u];
        c_10_0 = bw4_carry[((p * nb + b_10) * nh + jc_0) / 4u];
        c_10_1 = bw4_carry[((p * nb + b_10) * nh + jc_1) / 4u];
        c_11_0 = bw4_carry[((p * nb + b_11) * nh + jc_0) / 4u];
        c_11_1 = bw4_carry[((p * nb + b_11) * nh + jc_1) / 4u];
        c_12_0 = bw4_carry[((p * nb + b_12) * nh + jc_0) / 4u];
        c_12_1 = bw4_carry[((p * nb + b_12) * nh + jc_1) / 4u];
        c_13_0 = bw4_carry[((p * nb + b_13) * nh + jc_0) / 4u];
        c_13_1 = bw4_carry[((p * nb + b_13) * nh + jc_1) / 4u];
        c_14_0 = bw4_carry[((p * nb + b_14) * nh + jc_0) / 4u];
        c_14_1 = bw4_carry[((p * nb + b_14) * nh + jc_1) / 4u];
        c_15_0 = bw4_carry[((p * nb + b_15) * nh + jc_0) / 4u];
        c_15_1 = bw4_carry[((p * nb + b_15) * nh + jc_1) / 4u];
    }
    let n34 = 3u * nh4;
    for (var t = params.t1; t > params.t0; ) {
        t -= 1u;
        c_0_0 = backward_seq4(p, b_0, t, len_0.x, rev, jc_0, ok_0_0, c_0_0);
        c_0_1 = backward_seq4(p, b_0, t, len_0.x, rev, jc_1, ok_0_1, c_0_1);
        c_1_0 = backward_seq4(p, b_1, t, len_0.y, rev, jc_0, ok_1_0, c_1_0);
        c_1_1 = backward_seq4(p, b_1, t, len_0.y, rev, jc_1, ok_1_1, c_1_1);
        c_2_0 = backward_seq4(p, b_2, t, len_0.z, rev, jc_0, ok_2_0, c_2_0);
        c_2_1 = backward_seq4(p, b_2, t, len_0.z, rev, jc_1, ok_2_1, c_2_1);
        c_3_0 = backward_seq4(p, b_3, t, len_0.w, rev, jc_0, ok_3_0, c_3_0);
        c_3_1 = backward_seq4(p, b_3, t, len_0.w, rev, jc_1, ok_3_1, c_3_1);
        c_4_0 = backward_seq4(p, b_4, t, len_1.x, rev, jc_0, ok_4_0, c_4_0);
        c_4_1 = backward_seq4(p, b_4, t, len_1.x, rev, jc_1, ok_4_1, c_4_1);
        c_5_0 = backward_seq4(p, b_5, t, len_1.y, rev, jc_0, ok_5_0, c_5_0);
        c_5_1 = backward_seq4(p, b_5, t, len_1.y, rev, jc_1, ok_5_1, c_5_1);
        c_6_0 = backward_seq4(p, b_6, t, len_1.z, rev, jc_0, ok_6_0, c_6_0);
        c_6_1 = backward_seq4(p, b_6, t, len_1.z, rev, jc_1, ok_6_1, c_6_1);
        c_7_0 = backward_seq4(p, b_7, t, len_1.w, rev, jc_0, ok_7_0, c_7_0);
        c_7_1 = backward_seq4(p, b_7, t, len_1.w, rev, jc_1, ok_7_1, c_7_1);
        c_8_0 = backward_seq4(p, b_8, t, len_2.x, rev, jc_0, ok_8_0, c_8_0);
        c_8_1 = backward_seq4(p, b_8, t, len_2.x, rev, jc_1, ok_8_1, c_8_1);
        c_9_0 = backward_seq4(p, b_9, t, len_2.y, rev, jc_0, ok_9_0, c_9_0);
        c_9_1 = backward_seq4(p, b_9, t, len_2.y, rev, jc_1, ok_9_1, c_9_1);
        c_10_0 = backward_seq4(p, b_10, t, len_2.z, rev, jc_0, ok_10_0, c_10_0);
        c_10_1 = backward_seq4(p, b_10, t, len_2.z, rev, jc_1, ok_10_1, c_10_1);
        c_11_0 = backward_seq4(p, b_11, t, len_2.w, rev, jc_0, ok_11_0, c_11_0);
        c_11_1 = backward_seq4(p, b_11, t, len_2.w, rev, jc_1, ok_11_1, c_11_1);
        c_12_0 = backward_seq4(p, b_12, t, len_3.x, rev, jc_0, ok_12_0, c_12_0);
        c_12_1 = backward_seq4(p, b_12, t, len_3.x, rev, jc_1, ok_12_1, c_12_1);
        c_13_0 = backward_seq4(p, b_13, t, len_3.y, rev, jc_0, ok_13_0, c_13_0);
        c_13_1 = backward_seq4(p, b_13, t, len_3.y, rev, jc_1, ok_13_1, c_13_1);
        c_14_0 = backward_seq4(p, b_14, t, len_3.z, rev, jc_0, ok_14_0, c_14_0);
        c_14_1 = backward_seq4(p, b_14, t, len_3.z, rev, jc_1, ok_14_1, c_14_1);
        c_15_0 = backward_seq4(p, b_15, t, len_3.w, rev, jc_0, ok_15_0, c_15_0);
        c_15_1 = backward_seq4(p, b_15, t, len_3.w, rev, jc_1, ok_15_1, c_15_1);
        // gh of this step is complete for all units before phase B reads it.
        storageBarrier();
        // Phase B: dh_prev[j] += sum_row W_hh[row, j] gh[row] for the 8 units,
        // 4 rows at a time (one W vec4 per row and half, gh of 4 rows one vec4
        // per sequence). Done sequences read their zero padding row.
        let g_0 = (row_of(p, b_0, position(t, len_0.x, rev)) * n3) / 4u;
        let g_1 = (row_of(p, b_1, position(t, len_0.y, rev)) * n3) / 4u;
        let g_2 = (row_of(p, b_2, position(t, len_0.z, rev)) * n3) / 4u;
        let g_3 = (row_of(p, b_3, position(t, len_0.w, rev)) * n3) / 4u;
        let g_4 = (row_of(p, b_4, position(t, len_1.x, rev)) * n3) / 4u;
        let g_5 = (row_of(p, b_5, position(t, len_1.y, rev)) * n3) / 4u;
        let g_6 = (row_of(p, b_6, position(t, len_1.z, rev)) * n3) / 4u;
        let g_7 = (row_of(p, b_7, position(t, len_1.w, rev)) * n3) / 4u;
        let g_8 = (row_of(p, b_8, position(t, len_2.x, rev)) * n3) / 4u;
        let g_9 = (row_of(p, b_9, position(t, len_2.y, rev)) * n3) / 4u;
        let g_10 = (row_of(p, b_10, position(t, len_2.z, rev)) * n3) / 4u;
        let g_11 = (row_of(p, b_11, position(t, len_2.w, rev)) * n3) / 4u;
        let g_12 = (row_of(p, b_12, position(t, len_3.x, rev)) * n3) / 4u;
        let g_13 = (row_of(p, b_13, position(t, len_3.y, rev)) * n3) / 4u;
        let g_14 = (row_of(p, b_14, position(t, len_3.z, rev)) * n3) / 4u;
        let g_15 = (row_of(p, b_15, position(t, len_3.w, rev)) * n3) / 4u;
        let live_0 = any(vec4<u32>(t) < len_0);
        let live_1 = any(vec4<u32>(t) < len_1);
        let live_2 = any(vec4<u32>(t) < len_2);
        let live_3 = any(vec4<u32>(t) < len_3);
        let live = live_0 || live_1 || live_2 || live_3;
        let n4 = select(0u, n34, live && own_0);
        var a_0_0 = vec4<f32>(0.0);
        var a_0_1 = vec4<f32>(0.0);
        var a_1_0 = vec4<f32>(0.0);
        var a_1_1 = vec4<f32>(0.0);
        var a_2_0 = vec4<f32>(0.0);
        var a_2_1 = vec4<f32>(0.0);
        var a_3_0 = vec4<f32>(0.0);
        var a_3_1 = vec4<f32>(0.0);
        var a_4_0 = vec4<f32>(0.0);
        var a_4_1 = vec4<f32>(0.0);
        var a_5_0 = vec4<f32>(0.0);
        var a_5_1 = vec4<f32>(0.0);
        var a_6_0 = vec4<f32>(0.0);
        var a_6_1 = vec4<f32>(0.0);
        var a_7_0 = vec4<f32>(0.0);
        var a_7_1 = vec4<f32>(0.0);
        var a_8_0 = vec4<f32>(0.0);
        var a_8_1 = vec4<f32>(0.0);
        var a_9_0 = vec4<f32>(0.0);
        var a_9_1 = vec4<f32>(0.0);
        var a_10_0 = vec4<f32>(0.0);
        var a_10_1 = vec4<f32>(0.0);
        var a_11_0 = vec4<f32>(0.0);
        var a_11_1 = vec4<f32>(0.0);
        var a_12_0 = vec4<f32>(0.0);
        var a_12_1 = vec4<f32>(0.0);
        var a_13_0 = vec4<f32>(0.0);
        var a_13_1 = vec4<f32>(0.0);
        var a_14_0 = vec4<f32>(0.0);
        var a_14_1 = vec4<f32>(0.0);
        var a_15_0 = vec4<f32>(0.0);
        var a_15_1 = vec4<f32>(0.0);
        for (var r4 = 0u; r4 < n4; r4++) {
            let w = wo + 4u * r4 * nh4;
            let wa_0 = w4[w + jc_0 / 4u];
            let wb_0 = w4[w + nh4 + jc_0 / 4u];
            let wc_0 = w4[w + 2u * nh4 + jc_0 / 4u];
            let wd_0 = w4[w + 3u * nh4 + jc_0 / 4u];
            let wa_1 = w4[w + jc_1 / 4u];
            let wb_1 = w4[w + nh4 + jc_1 / 4u];
            let wc_1 = w4[w + 2u * nh4 + jc_1 / 4u];
            let wd_1 = w4[w + 3u * nh4 + jc_1 / 4u];
            // A quad whose sequences are all done skips its gh loads (zero rows).
            if (live_0) {
                let q_0 = bw4_gh[g_0 + r4];
                a_0_0 += wa_0 * q_0.x + wb_0 * q_0.y + wc_0 * q_0.z + wd_0 * q_0.w;
                a_0_1 += wa_1 * q_0.x + wb_1 * q_0.y + wc_1 * q_0.z + wd_1 * q_0.w;
                let q_1 = bw4_gh[g_1 + r4];
                a_1_0 += wa_0 * q_1.x + wb_0 * q_1.y + wc_0 * q_1.z + wd_0 * q_1.w;
                a_1_1 += wa_1 * q_1.x + wb_1 * q_1.y + wc_1 * q_1.z + wd_1 * q_1.w;
                let q_2 = bw4_gh[g_2 + r4];
                a_2_0 += wa_0 * q_2.x + wb_0 * q_2.y + wc_0 * q_2.z + wd_0 * q_2.w;
                a_2_1 += wa_1 * q_2.x + wb_1 * q_2.y + wc_1 * q_2.z + wd_1 * q_2.w;
                let q_3 = bw4_gh[g_3 + r4];
                a_3_0 += wa_0 * q_3.x + wb_0 * q_3.y + wc_0 * q_3.z + wd_0 * q_3.w;
                a_3_1 += wa_1 * q_3.x + wb_1 * q_3.y + wc_1 * q_3.z + wd_1 * q_3.w;
            }
            if (live_1) {
                let q_4 = bw4_gh[g_4 + r4];
                a_4_0 += wa_0 * q_4.x + wb_0 * q_4.y + wc_0 * q_4.z + wd_0 * q_4.w;
                a_4_1 += wa_1 * q_4.x + wb_1 * q_4.y + wc_1 * q_4.z + wd_1 * q_4.w;
                let q_5 = bw4_gh[g_5 + r4];
                a_5_0 += wa_0 * q_5.x + wb_0 * q_5.y + wc_0 * q_5.z + wd_0 * q_5.w;
                a_5_1 += wa_1 * q_5.x + wb_1 * q_5.y + wc_1 * q_5.z + wd_1 * q_5.w;
                let q_6 = bw4_gh[g_6 + r4];
                a_6_0 += wa_0 * q_6.x + wb_0 * q_6.y + wc_0 * q_6.z + wd_0 * q_6.w;
                a_6_1 += wa_1 * q_6.x + wb_1 * q_6.y + wc_1 * q_6.z + wd_1 * q_6.w;
                let q_7 = bw4_gh[g_7 + r4];
                a_7_0 += wa_0 * q_7.x + wb_0 * q_7.y + wc_0 * q_7.z + wd_0 * q_7.w;
                a_7_1 += wa_1 * q_7.x + wb_1 * q_7.y + wc_1 * q_7.z + wd_1 * q_7.w;
            }
            if (live_2) {
                let q_8 = bw4_gh[g_8 + r4];
                a_8_0 += wa_0 * q_8.x + wb_0 * q_8.y + wc_0 * q_8.z + wd_0 * q_8.w;
                a_8_1 += wa_1 * q_8.x + wb_1 * q_8.y + wc_1 * q_8.z + wd_1 * q_8.w;
                let q_9 = bw4_gh[g_9 + r4];
                a_9_0 += wa_0 * q_9.x + wb_0 * q_9.y + wc_0 * q_9.z + wd_0 * q_9.w;
                a_9_1 += wa_1 * q_9.x + wb_1 * q_9.y + wc_1 * q_9.z + wd_1 * q_9.w;
                let q_10 = bw4_gh[g_10 + r4];
                a_10_0 += wa_0 * q_10.x + wb_0 * q_10.y + wc_0 * q_10.z + wd_0 * q_10.w;
                a_10_1 += wa_1 * q_10.x + wb_1 * q_10.y + wc_1 * q_10.z + wd_1 * q_10.w;
                let q_11 = bw4_gh[g_11 + r4];
                a_11_0 += wa_0 * q_11.x + wb_0 * q_11.y + wc_0 * q_11.z + wd_0 * q_11.w;
                a_11_1 += wa_1 * q_11.x + wb_1 * q_11.y + wc_1 * q_11.z + wd_1 * q_11.w;
            }
            if (live_3) {
                let q_12 = bw4_gh[g_12 + r4];
                a_12_0 += wa_0 * q_12.x + wb_0 * q_12.y + wc_0 * q_12.z + wd_0 * q_12.w;
                a_12_1 += wa_1 * q_12.x + wb_1 * q_12.y + wc_1 * q_12.z + wd_1 * q_12.w;
                let q_13 = bw4_gh[g_13 + r4];
                a_13_0 += wa_0 * q_13.x + wb_0 * q_13.y + wc_0 * q_13.z + wd_0 * q_13.w;
                a_13_1 += wa_1 * q_13.x + wb_1 * q_13.y + wc_1 * q_13.z + wd_1 * q_13.w;
                let q_14 = bw4_gh[g_14 + r4];
                a_14_0 += wa_0 * q_14.x + wb_0 * q_14.y + wc_0 * q_14.z + wd_0 * q_14.w;
                a_14_1 += wa_1 * q_14.x + wb_1 * q_14.y + wc_1 * q_14.z + wd_1 * q_14.w;
                let q_15 = bw4_gh[g_15 + r4];
                a_15_0 += wa_0 * q_15.x + wb_0 * q_15.y + wc_0 * q_15.z + wd_0 * q_15.w;
                a_15_1 += wa_1 * q_15.x + wb_1 * q_15.y + wc_1 * q_15.z + wd_1 * q_15.w;
            }
        }
        c_0_0 += a_0_0;
        c_0_1 += a_0_1;
        c_1_0 += a_1_0;
        c_1_1 += a_1_1;
        c_2_0 += a_2_0;
        c_2_1 += a_2_1;
        c_3_0 += a_3_0;
        c_3_1 += a_3_1;
        c_4_0 += a_4_0;
        c_4_1 += a_4_1;
        c_5_0 += a_5_0;
        c_5_1 += a_5_1;
        c_6_0 += a_6_0;
        c_6_1 += a_6_1;
        c_7_0 += a_7_0;
        c_7_1 += a_7_1;
        c_8_0 += a_8_0;
        c_8_1 += a_8_1;
        c_9_0 += a_9_0;
        c_9_1 += a_9_1;
        c_10_0 += a_10_0;
        c_10_1 += a_10_1;
        c_11_0 += a_11_0;
        c_11_1 += a_11_1;
        c_12_0 += a_12_0;
        c_12_1 += a_12_1;
        c_13_0 += a_13_0;
        c_13_1 += a_13_1;
        c_14_0 += a_14_0;
        c_14_1 += a_14_1;
        c_15_0 += a_15_0;
        c_15_1 += a_15_1;
        // Phase A of the next step writes other rows of gh: no barrier here.
    }
    if (params.t0 > 0u) {
        if (ok_0_0) { bw4_carry[((p * nb + b_0) * nh + jc_0) / 4u] = c_0_0; }
        if (ok_0_1) { bw4_carry[((p * nb + b_0) * nh + jc_1) / 4u] = c_0_1; }
        if (ok_1_0) { bw4_carry[((p * nb + b_1) * nh + jc_0) / 4u] = c_1_0; }
        if (ok_1_1) { bw4_carry[((p * nb + b_1) * nh + jc_1) / 4u] = c_1_1; }
        if (ok_2_0) { bw4_carry[((p * nb + b_2) * nh + jc_0) / 4u] = c_2_0; }
        if (ok_2_1) { bw4_carry[((p * nb + b_2) * nh + jc_1) / 4u] = c_2_1; }
        if (ok_3_0) { bw4_carry[((p * nb + b_3) * nh + jc_0) / 4u] = c_3_0; }
        if (ok_3_1) { bw4_carry[((p * nb + b_3) * nh + jc_1) / 4u] = c_3_1; }
        if (ok_4_0) { bw4_carry[((p * nb + b_4) * nh + jc_0) / 4u] = c_4_0; }
        if (ok_4_1) { bw4_carry[((p * nb + b_4) * nh + jc_1) / 4u] = c_4_1; }
        if (ok_5_0) { bw4_carry[((p * nb + b_5) * nh + jc_0) / 4u] = c_5_0; }
        if (ok_5_1) { bw4_carry[((p * nb + b_5) * nh + jc_1) / 4u] = c_5_1; }
        if (ok_6_0) { bw4_carry[((p * nb + b_6) * nh + jc_0) / 4u] = c_6_0; }
        if (ok_6_1) { bw4_carry[((p * nb + b_6) * nh + jc_1) / 4u] = c_6_1; }
        if (ok_7_0) { bw4_carry[((p * nb + b_7) * nh + jc_0) / 4u] = c_7_0; }
        if (ok_7_1) { bw4_carry[((p * nb + b_7) * nh + jc_1) / 4u] = c_7_1; }
        if (ok_8_0) { bw4_carry[((p * nb + b_8) * nh + jc_0) / 4u] = c_8_0; }
        if (ok_8_1) { bw4_carry[((p * nb + b_8) * nh + jc_1) / 4u] = c_8_1; }
        if (ok_9_0) { bw4_carry[((p * nb + b_9) * nh + jc_0) / 4u] = c_9_0; }
        if (ok_9_1) { bw4_carry[((p * nb + b_9) * nh + jc_1) / 4u] = c_9_1; }
        if (ok_10_0) { bw4_carry[((p * nb + b_10) * nh + jc_0) / 4u] = c_10_0; }
        if (ok_10_1) { bw4_carry[((p * nb + b_10) * nh + jc_1) / 4u] = c_10_1; }
        if (ok_11_0) { bw4_carry[((p * nb + b_11) * nh + jc_0) / 4u] = c_11_0; }
        if (ok_11_1) { bw4_carry[((p * nb + b_11) * nh + jc_1) / 4u] = c_11_1; }
        if (ok_12_0) { bw4_carry[((p * nb + b_12) * nh + jc_0) / 4u] = c_12_0; }
        if (ok_12_1) { bw4_carry[((p * nb + b_12) * nh + jc_1) / 4u] = c_12_1; }
        if (ok_13_0) { bw4_carry[((p * nb + b_13) * nh + jc_0) / 4u] = c_13_0; }
        if (ok_13_1) { bw4_carry[((p * nb + b_13) * nh + jc_1) / 4u] = c_13_1; }
        if (ok_14_0) { bw4_carry[((p * nb + b_14) * nh + jc_0) / 4u] = c_14_0; }
        if (ok_14_1) { bw4_carry[((p * nb + b_14) * nh + jc_1) / 4u] = c_14_1; }
        if (ok_15_0) { bw4_carry[((p * nb + b_15) * nh + jc_0) / 4u] = c_15_0; }
        if (ok_15_1) { bw4_carry[((p * nb + b_15) * nh + jc_1) / 4u] = c_15_1; }
    }
}

// [dW_hh | db_hh][row, col..col+3] += v for problem p: the 4 columns of W_hh
// when col < H, db_hh[row] += v.x when col is the bias column H; nothing when
// col > H or !ok.
fn add_tile_t8(p: u32, row: u32, col: u32, ok: bool, v: vec4<f32>) {
    let nh = params.h;
    if (!ok || col > nh) {
        return;
    }
    if (col == nh) {
        ww_grads[b_hh_offset(p) + row] += v.x;
        return;
    }
    let o = w_hh_offset(p) + row * nh + col;
    ww_grads[o] += v.x;
    ww_grads[o + 1u] += v.y;
    ww_grads[o + 2u] += v.z;
    ww_grads[o + 3u] += v.w;
}

// [dW_hh | db_hh] += gh^T [h_prev | 1] with an 8x8 tile per invocation: rows
// row0..row0+7 (two vec4 of gh per (b, i)), columns col0..col0+7 as two
// 4-column chunks, each real (< H), the bias column (== H, H % 4 == 0) or
// empty (> H); loads are clamped to valid addresses and masked, so the loop
// body has no branch. Same order of summation as gru_backward_weights.
@compute @workgroup_size(8, 8, 1)
fn gru_backward_weights_t8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let n3 = 3u * nh;
    let p = gid.z;
    let rev = p % 2u == 1u;
    let row0 = gid.y * 8u;
    let col0 = gid.x * 8u;
    if (row0 >= n3 || col0 > nh) {
        return;
    }
    let row1 = min(row0 + 4u, n3 - 4u);
    let real0 = col0 < nh;
    let real1 = col0 + 4u < nh;
    let one0 = select(vec4<f32>(0.0), vec4<f32>(1.0, 0.0, 0.0, 0.0), col0 == nh);
    let one1 = select(vec4<f32>(0.0), vec4<f32>(1.0, 0.0, 0.0, 0.0), col0 + 4u == nh);
    let cc0 = min(col0, nh - 4u) / 4u;
    let cc1 = min(col0 + 4u, nh - 4u) / 4u;
    var x0 = vec4<f32>(0.0); var y0 = vec4<f32>(0.0);
    var x1 = vec4<f32>(0.0); var y1 = vec4<f32>(0.0);
    var x2 = vec4<f32>(0.0); var y2 = vec4<f32>(0.0);
    var x3 = vec4<f32>(0.0); var y3 = vec4<f32>(0.0);
    var x4 = vec4<f32>(0.0); var y4 = vec4<f32>(0.0);
    var x5 = vec4<f32>(0.0); var y5 = vec4<f32>(0.0);
    var x6 = vec4<f32>(0.0); var y6 = vec4<f32>(0.0);
    var x7 = vec4<f32>(0.0); var y7 = vec4<f32>(0.0);
    for (var b = 0u; b < nb; b++) {
        let len = lens[b];
        for (var i = 0u; i < len; i++) {
            let gb = row_of(p, b, i) * n3;
            let g0 = ww4_gh[(gb + row0) / 4u];
            let g1 = ww4_gh[(gb + row1) / 4u];
            let first = select(i == 0u, i + 1u == len, rev);
            // h_prev position (i itself where there is none: read, then masked).
            let ip = select(select(i - 1u, i + 1u, rev), i, first);
            let cb = cache_at(p, C_H, b, ip, 0u) / 4u;
            let l0 = ww4_cache[cb + cc0];
            let l1 = ww4_cache[cb + cc1];
            let h0 = select(one0, l0, real0 && !first);
            let h1 = select(one1, l1, real1 && !first);
            x0 += g0.x * h0;
            y0 += g0.x * h1;
            x1 += g0.y * h0;
            y1 += g0.y * h1;
            x2 += g0.z * h0;
            y2 += g0.z * h1;
            x3 += g0.w * h0;
            y3 += g0.w * h1;
            x4 += g1.x * h0;
            y4 += g1.x * h1;
            x5 += g1.y * h0;
            y5 += g1.y * h1;
            x6 += g1.z * h0;
            y6 += g1.z * h1;
            x7 += g1.w * h0;
            y7 += g1.w * h1;
        }
    }
    let rows1 = row0 + 4u < n3;
    add_tile_t8(p, row0 + 0u, col0, true, x0);
    add_tile_t8(p, row0 + 0u, col0 + 4u, true, y0);
    add_tile_t8(p, row0 + 1u, col0, true, x1);
    add_tile_t8(p, row0 + 1u, col0 + 4u, true, y1);
    add_tile_t8(p, row0 + 2u, col0, true, x2);
    add_tile_t8(p, row0 + 2u, col0 + 4u, true, y2);
    add_tile_t8(p, row0 + 3u, col0, true, x3);
    add_tile_t8(p, row0 + 3u, col0 + 4u, true, y3);
    add_tile_t8(p, row0 + 4u, col0, rows1, x4);
    add_tile_t8(p, row0 + 4u, col0 + 4u, rows1, y4);
    add_tile_t8(p, row0 + 5u, col0, rows1, x5);
    add_tile_t8(p, row0 + 5u, col0 + 4u, rows1, y5);
    add_tile_t8(p, row0 + 6u, col0, rows1, x6);
    add_tile_t8(p, row0 + 6u, col0 + 4u, rows1, y6);
    add_tile_t8(p, row0 + 7u, col0, rows1, x7);
    add_tile_t8(p, row0 + 7u, col0 + 4u, rows1, y7);
}
