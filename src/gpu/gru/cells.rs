//! WGSL of the Cells member (`GruKernel::Cells`), the schedule shaped for a
//! discrete GPU: one launch per time step, one invocation per (hidden unit,
//! sequence), and the weight gradient as a tiled GEMM over a problem's B * q.u rows.
//!
//! Why it should win on a GPU: at the training shape (B 16, H 200, P 6) a step
//! is 19,200 (unit, sequence) cells; a workgroup of CELL_UNITS x CELL_SEQS = 256
//! invocations owns 64 units of 4 sequences, so a step launches
//! ceil(H / 64) x ceil(B / 4) x P = 96 workgroups (the persistent Scalar member:
//! 6), enough to give every SM of a mid-size GPU work, and launches cost a few
//! microseconds there. h_prev of the 4 sequences is staged in workgroup memory
//! once per step; W_hh is staged in CELL_KT-column tiles read along its rows
//! (coalesced), each element then feeding 4 sequences from workgroup memory.
//! The backward stages gh of the step after (3H per sequence) and reads W_hh
//! rows with neighbouring lanes on neighbouring columns (coalesced). The
//! carried dh of a cell lives in `carry` (P, B, H) between launches.
//! What it costs on llvmpipe: one launch per step (~0.1-0.3 ms each there) and
//! scalar loads through workgroup memory; it loses to Wide there
//! (docs/gru-notes.md), which is why Wide stays. Its loops are short (per
//! launch at most ~H / CELL_KT tiles), so llvmpipe's loop budget never binds.

/// Hidden units one Cells workgroup owns (its x size).
pub const CELL_UNITS: u32 = 64;
/// Sequences one Cells workgroup owns (its y size).
pub const CELL_SEQS: u32 = 4;
/// Columns of W_hh staged per tile by gru_forward_cells.
pub const CELL_KT: u32 = 8;
/// Output tile (rows and columns of [dW_hh | db_hh]) of one gru_backward_weights_tiled workgroup.
pub const TILED_TILE: u32 = 64;
/// (b, i) rows of the reduction staged per tile by gru_backward_weights_tiled.
pub const TILED_KT: u32 = 16;
/// Workgroup side of gru_backward_weights_tiled: TILED_TILE / 4 (4x4 outputs per invocation).
pub const TILED_WG: u32 = 16;

/// gru_forward_cells, gru_backward_cells, gru_backward_weights_tiled.
pub const CELLS: &str = r#"
// ---- Cells member: one launch per step, one invocation per (unit, sequence) ----
// h_prev [sequence][unit] of the workgroup's CELL_SEQS sequences.
var<workgroup> cell_h: array<f32, CELL_SEQS * MAX_H>;
// One W_hh tile: [gate][unit][column] for CELL_UNITS units, CELL_KT columns.
var<workgroup> cell_w: array<f32, 3u * CELL_UNITS * CELL_KT>;
// gh of the step processed after this one: [sequence][gate row].
var<workgroup> cell_g: array<f32, CELL_SEQS * 3u * MAX_H>;

// gru_forward_cells: step t = params.t0 of every (unit, sequence) cell.
// Workgroup (x, y, p) owns units 64x .. 64x+63 of sequences 4y .. 4y+3 of
// problem p. dispatch (ceil(H / CELL_UNITS), ceil(B / CELL_SEQS), P) per step.
@compute @workgroup_size(CELL_UNITS, CELL_SEQS, 1)
fn gru_forward_cells(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = wid.z;
    let rev = p % 2u == 1u;
    let j0 = wid.x * CELL_UNITS;
    let j = j0 + lid.x;
    let s = lid.y;
    let sb = wid.y * CELL_SEQS;
    let b = sb + s;
    let t = params.t0;
    // The problem's own steps: nothing at a step past its U.
    if (t >= problems[p].u) {
        return;
    }
    let flat = lid.y * CELL_UNITS + lid.x;
    let wo = w_hh_offset(p);
    let bo = b_hh_offset(p);
    // h_prev: zero at step 0 and for finished or absent sequences, else what
    // the previous launch saved at the position processed at step t - 1.
    for (var e = flat; e < CELL_SEQS * nh; e += CELL_UNITS * CELL_SEQS) {
        let sq = e / nh;
        let k = e % nh;
        let bb = sb + sq;
        var hv = 0.0;
        if (bb < nb && t > 0u) {
            let len = seq_len(p, bb);
            if (t < len) {
                hv = fw_cache[cache_at(p, C_H, bb, position(t - 1u, len, rev), k)];
            }
        }
        cell_h[sq * MAX_H + k] = hv;
    }
    var ar = 0.0;
    var az = 0.0;
    var an = 0.0;
    let hb = s * MAX_H;
    for (var k0 = 0u; k0 < nh; k0 += CELL_KT) {
        // Stage W_hh[g H + j0 + u, k0 .. k0 + CELL_KT): consecutive invocations
        // read consecutive columns of a row.
        for (var e = flat; e < 3u * CELL_UNITS * CELL_KT; e += CELL_UNITS * CELL_SEQS) {
            let kk = e % CELL_KT;
            let gu = e / CELL_KT;
            let row = (gu / CELL_UNITS) * nh + min(j0 + gu % CELL_UNITS, nh - 1u);
            var wv = 0.0;
            if (k0 + kk < nh) {
                wv = weights[wo + row * nh + k0 + kk];
            }
            cell_w[e] = wv;
        }
        workgroupBarrier();
        let kn = min(CELL_KT, nh - k0);
        let wr = lid.x * CELL_KT;
        let wz = (CELL_UNITS + lid.x) * CELL_KT;
        let wn = (2u * CELL_UNITS + lid.x) * CELL_KT;
        for (var kk = 0u; kk < kn; kk++) {
            let hv = cell_h[hb + k0 + kk];
            ar += cell_w[wr + kk] * hv;
            az += cell_w[wz + kk] * hv;
            an += cell_w[wn + kk] * hv;
        }
        workgroupBarrier();
    }
    if (j >= nh || b >= nb) {
        return;
    }
    let len = seq_len(p, b);
    let i = position(t, len, rev);
    let bh = vec3<f32>(weights[bo + j], weights[bo + nh + j], weights[bo + 2u * nh + j]);
    _ = cell_forward(p, b, i, j, t < len, vec3<f32>(ar, az, an), bh, cell_h[hb + j]);
}

// gru_backward_cells: step t = params.t0 of every cell, launched from t = U - 1
// down to 0 (a problem's first is its t = q.u - 1). dh of a cell = d(out) +
// g z of the step after (bw_carry, written by the previous launch) + (W_hh^T
// gh of the step after)[unit]. Writes gi, gh of step t (zero at padding) and
// g z to bw_carry. Layout and dispatch as gru_forward_cells.
@compute @workgroup_size(CELL_UNITS, CELL_SEQS, 1)
fn gru_backward_cells(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let n3 = 3u * nh;
    let p = wid.z;
    let rev = p % 2u == 1u;
    // The problem's own U: nothing at a step past it.
    let nu = problems[p].u;
    let t = params.t0;
    if (t >= nu) {
        return;
    }
    let j = wid.x * CELL_UNITS + lid.x;
    let s = lid.y;
    let sb = wid.y * CELL_SEQS;
    let b = sb + s;
    let flat = lid.y * CELL_UNITS + lid.x;
    let after = t + 1u < nu;
    // gh of step t + 1 (zero rows where that step was padding).
    if (after) {
        for (var e = flat; e < CELL_SEQS * n3; e += CELL_UNITS * CELL_SEQS) {
            let sq = e / n3;
            let row = e % n3;
            let bb = sb + sq;
            var gv = 0.0;
            if (bb < nb) {
                gv = bw_gh[row_of(p, bb, position(t + 1u, seq_len(p, bb), rev)) * n3 + row];
            }
            cell_g[sq * 3u * MAX_H + row] = gv;
        }
    }
    workgroupBarrier();
    if (j >= nh || b >= nb) {
        return;
    }
    let len = seq_len(p, b);
    let c = (p * nb + b) * nh + j;
    var carry = 0.0;
    if (after) {
        // Neighbouring lanes read neighbouring columns of each W_hh row.
        let wo = w_hh_offset(p) + j;
        let gb = s * 3u * MAX_H;
        var acc = 0.0;
        for (var row = 0u; row < n3; row++) {
            acc += weights[wo + row * nh] * cell_g[gb + row];
        }
        carry = bw_carry[c] + acc;
    }
    let i = position(t, len, rev);
    bw_carry[c] = cell_backward(p, b, i, j, t, t < len, carry).w;
}

// gh rows [kk][row] and [h_prev | 1] rows [kk][column] of one reduction tile.
var<workgroup> tiled_g: array<f32, TILED_KT * TILED_TILE>;
var<workgroup> tiled_h: array<f32, TILED_KT * TILED_TILE>;

// [dW_hh | db_hh] += gh^T [h_prev | 1] as a tiled GEMM over the problem's
// B * q.u rows (b, i) (padding rows contribute nothing): workgroup (x, y, p)
// owns rows 64y .. 64y+63 and columns 64x .. 64x+63 of problem p's (3H, H + 1) matrix,
// an invocation a 4x4 block; per TILED_KT rows it stages a tile of gh and of
// h_prev (both read along contiguous rows) in workgroup memory. Fixed order of
// summation (deterministic, no atomics). dispatch (ceil((H + 1) / 64), ceil(3H / 64), P).
@compute @workgroup_size(TILED_WG, TILED_WG, 1)
fn gru_backward_weights_tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let n3 = 3u * nh;
    let p = wid.z;
    let rev = p % 2u == 1u;
    // The problem's B * q.u rows (b, i), in its block of gh from p * B * U_max.
    let nu = problems[p].u;
    let g0 = p * nb * params.u;
    let row0 = wid.y * TILED_TILE;
    let col0 = wid.x * TILED_TILE;
    let flat = lid.y * TILED_WG + lid.x;
    let total = nb * nu;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var n0 = 0u; n0 < total; n0 += TILED_KT) {
        for (var e = flat; e < TILED_KT * TILED_TILE; e += TILED_WG * TILED_WG) {
            let n = n0 + e / TILED_TILE;
            let x = e % TILED_TILE;
            var gv = 0.0;
            var hv = 0.0;
            if (n < total) {
                let b = n / nu;
                let i = n % nu;
                let len = seq_len(p, b);
                if (i < len) {
                    if (row0 + x < n3) {
                        gv = ww_gh[(g0 + n) * n3 + row0 + x];
                    }
                    let col = col0 + x;
                    let first = select(i == 0u, i + 1u == len, rev);
                    if (col == nh) {
                        hv = 1.0;
                    } else if (col < nh && !first) {
                        hv = ww_cache[cache_at(p, C_H, b, select(i - 1u, i + 1u, rev), col)];
                    }
                }
            }
            tiled_g[e] = gv;
            tiled_h[e] = hv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILED_KT; kk++) {
            let gi = kk * TILED_TILE + 4u * lid.y;
            let hi = kk * TILED_TILE + 4u * lid.x;
            let h = vec4<f32>(tiled_h[hi], tiled_h[hi + 1u], tiled_h[hi + 2u], tiled_h[hi + 3u]);
            a0 += tiled_g[gi] * h;
            a1 += tiled_g[gi + 1u] * h;
            a2 += tiled_g[gi + 2u] * h;
            a3 += tiled_g[gi + 3u] * h;
        }
        workgroupBarrier();
    }
    let rows = row0 + 4u * lid.y;
    let cols = col0 + 4u * lid.x;
    add_row_tiled(p, rows, cols, a0);
    add_row_tiled(p, rows + 1u, cols, a1);
    add_row_tiled(p, rows + 2u, cols, a2);
    add_row_tiled(p, rows + 3u, cols, a3);
}

// [dW_hh | db_hh][row, col .. col + 3] += v of problem p, within the matrix.
fn add_row_tiled(p: u32, row: u32, col: u32, v: vec4<f32>) {
    let nh = params.h;
    if (row >= 3u * nh) {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if (col + c < nh) {
            ww_grads[w_hh_offset(p) + row * nh + col + c] += v[c];
        } else if (col + c == nh) {
            ww_grads[b_hh_offset(p) + row] += v[c];
        }
    }
}
"#;
