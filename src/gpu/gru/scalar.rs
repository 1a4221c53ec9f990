//! WGSL of the Scalar member (`GruKernel::Scalar`):
//! the persistent one-workgroup-per-(16 sequences, problem) schedule with h in
//! workgroup memory, any H <= MAX_H, scalar loads. Written once here; the
//! constants it names (SEQ_PER_WG, UNIT_LANES, UNIT_ITERS, MAX_H, C_*) are
//! declared by src/gpu/gru/wgsl.rs from the launcher's Rust values.

/// gru_forward, gru_backward and gru_backward_weights; `{WG}` is replaced by
/// the workgroup size.
pub const SCALAR: &str = r#"
@compute @workgroup_size({WG})
fn gru_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = wid.y;
    let d = p % 2u;
    let rev = d == 1u;
    let lane = lid.x;
    let quad = lid.y;
    let s0 = wid.x * SEQ_PER_WG + 4u * quad;
    let wo = w_hh_offset(p);
    let bo = b_hh_offset(p);
    let len = quad_lens(p, s0);
    let t0 = params.t0;
    // The problem's own steps: nothing of this chunk past its U.
    let t1 = min(params.t1, problems[p].u);
    if (t0 >= t1) {
        return;
    }
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
    for (var t = t0; t < t1; t++) {
        var hnew: array<vec4<f32>, UNIT_ITERS>;
        for (var it = 0u; it < UNIT_ITERS; it++) {
            let j = lane + it * UNIT_LANES;
            if (j < nh) {
                // Rows j, H+j, 2H+j of W_hh h for the 4 sequences at once,
                // unrolled by 4 (llvmpipe loop budget, src/gpu/profile.rs).
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
                        let a = vec3<f32>(ar[q], az[q], an[q]);
                        hnew[it][q] = cell_forward(p, b, i, j, t < len[q], a, vec3<f32>(br, bz, bn), hprev[q]);
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

@compute @workgroup_size({WG})
fn gru_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = wid.y;
    // The problem's own U: nothing of this chunk past it.
    let nu = problems[p].u;
    if (params.t0 >= nu) {
        return;
    }
    let d = p % 2u;
    let rev = d == 1u;
    let lane = lid.x;
    let quad = lid.y;
    let s0 = wid.x * SEQ_PER_WG + 4u * quad;
    let wo = w_hh_offset(p);
    let len = quad_lens(p, s0);
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
    for (var t = min(params.t1, nu); t > params.t0; ) {
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
                        let i = position(t, len[q], rev);
                        carry[it][q] = cell_backward(p, b, i, j, t, t < len[q], carry[it][q]).w;
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
        let len = seq_len(p, b);
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
"#;
