//! WGSL of the Cells member's persistent schedule (`GruMember` "cells-persistent"):
//! ONE launch runs every step of the recurrence, with one workgroup per
//! (CELL_SEQS sequences, problem) and one invocation per hidden unit, which
//! owns that unit of the workgroup's 4 sequences (a vec4 over them). The weight
//! gradient is the Cells member's tiled GEMM (cells.rs).
//!
//! Why it should win on a discrete GPU, and where the per-step Cells schedule
//! may win instead:
//! - Sequences are independent, so the only dependency of step t + 1 on step t
//!   is inside one sequence: a workgroup that owns all H units of its sequences
//!   needs a workgroup barrier between steps, not a launch. cuDNN's persistent
//!   RNN kernels go further (W_hh held in registers across the whole grid, a
//!   grid-wide barrier per step); WGSL has no grid-wide barrier and no
//!   forward-progress guarantee between workgroups, so each workgroup streams
//!   its problem's W_hh from L2 every step instead (3H x H floats, 480 KB at
//!   H 200, which every workgroup of a problem shares in L2).
//! - Per step an invocation runs H iterations of 3 W_hh loads and 1 vec4
//!   workgroup-memory load of h_prev (a broadcast: every lane reads the same
//!   address) for 12 multiply-adds (3 gates x 4 sequences): each W_hh element
//!   feeds 4 sequences. In the backward, lanes on neighbouring units read
//!   neighbouring columns of each W_hh row (coalesced), and gh of the step
//!   after, staged in workgroup memory, is broadcast.
//! - Per training step the GRU costs 2 launches (one forward, one backward)
//!   instead of the per-step schedule's 2U, each of which is a dependent
//!   launch with a pipeline barrier (a few microseconds on a GPU, more than a
//!   step's arithmetic at B 16, H 200). The price: ceil(B / 4) x P workgroups
//!   (24 for one model at B 16, P 6) where the per-step schedule spreads a
//!   step over 96, so alone a model fills 24 SMs; a fused group (cimnet grid:
//!   P = 2 x every model's modalities, 72 for Table 4) fills the device.
//! - The tuner races both schedules on the user's device and keeps the faster.
//!
//! Workgroup memory: h_shared (QUADS x MAX_H vec4 = 16 KiB, declared with the
//! Scalar / Wide members): the forward double-buffers h_prev in its first
//! 2 x MAX_H, the backward stages gh of the step after (3H rows) in its first
//! 3 x MAX_H. On llvmpipe the launcher splits the steps into chunks within the
//! loop budget (about H + 6 iterations per forward step, 3H + 6 backward), and
//! a chunk starts from what the previous one saved (h in the cache, gh and the
//! carried g z in the gh / carry buffers), exactly as the per-step launches do.

// The kernels hold a workgroup's sequences in one vec4.
const _: () = assert!(super::cells::CELL_SEQS == 4);

/// Loop iterations one gru_forward_cells_persistent invocation runs per step
/// (the dot products, the sequence loop, the step loop), with margin.
pub fn forward_iters_per_step(h: u32) -> u32 {
    h + 6
}

/// Loop iterations of one gru_backward_cells_persistent invocation per step.
pub fn backward_iters_per_step(h: u32) -> u32 {
    3 * h + 6
}

/// gru_forward_cells_persistent, gru_backward_cells_persistent.
pub const CELLS_PERSISTENT: &str = r#"
// ---- Cells member, persistent schedule: one launch for every step ----
// Workgroup (0, y, p) owns sequences 4y .. 4y+3 of problem p and runs the
// steps [t0, t1) of its params (all of them where the device has no loop
// budget); invocation j owns unit j of the 4 sequences (lanes j >= H only
// take part in the barriers). dispatch (1, ceil(B / CELL_SEQS), P).

// gru_forward_cells_persistent: h_prev [unit] (a vec4 over the 4 sequences)
// double-buffered in h_shared[0 .. MAX_H) and h_shared[MAX_H .. 2 MAX_H).
@compute @workgroup_size(MAX_H, 1, 1)
fn gru_forward_cells_persistent(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let p = wid.z;
    let rev = p % 2u == 1u;
    let j = lid.x;
    let sb = wid.y * CELL_SEQS;
    // The problem's own steps: nothing of this chunk past its U.
    let t1 = min(params.t1, problems[p].u);
    if (params.t0 >= t1) {
        return;
    }
    let len = quad_lens(p, sb);
    let own = j < nh;
    // Row j of W_hh's r block; the z and n rows follow H x H further each.
    let wr = w_hh_offset(p) + j * nh;
    let wz = wr + nh * nh;
    let wn = wz + nh * nh;
    var br = 0.0;
    var bz = 0.0;
    var bn = 0.0;
    // h_prev of step t0: zero at step 0 and for sequences finished by then,
    // else what the previous chunk saved at the position of step t0 - 1.
    var h0 = vec4<f32>(0.0);
    if (own) {
        let bo = b_hh_offset(p);
        br = weights[bo + j];
        bz = weights[bo + nh + j];
        bn = weights[bo + 2u * nh + j];
        if (params.t0 > 0u) {
            for (var q = 0u; q < 4u; q++) {
                if (params.t0 < len[q]) {
                    h0[q] = fw_cache[cache_at(p, C_H, sb + q, position(params.t0 - 1u, len[q], rev), j)];
                }
            }
        }
    }
    h_shared[j] = h0;
    workgroupBarrier();
    var cur = 0u;
    for (var t = params.t0; t < t1; t++) {
        if (own) {
            let hb = cur * MAX_H;
            var ar = vec4<f32>(0.0);
            var az = vec4<f32>(0.0);
            var an = vec4<f32>(0.0);
            for (var k = 0u; k < nh; k++) {
                let hk = h_shared[hb + k];
                ar += weights[wr + k] * hk;
                az += weights[wz + k] * hk;
                an += weights[wn + k] * hk;
            }
            let hprev = h_shared[hb + j];
            var hnext = vec4<f32>(0.0);
            for (var q = 0u; q < 4u; q++) {
                let b = sb + q;
                if (b < nb) {
                    let i = position(t, len[q], rev);
                    let a = vec3<f32>(ar[q], az[q], an[q]);
                    hnext[q] = cell_forward(p, b, i, j, t < len[q], a, vec3<f32>(br, bz, bn), hprev[q]);
                }
            }
            h_shared[(1u - cur) * MAX_H + j] = hnext;
        }
        cur = 1u - cur;
        workgroupBarrier();
    }
}

// gru_backward_cells_persistent: steps t1 - 1 down to t0. gh of the step after
// [row] (a vec4 over the 4 sequences, zero where that step was padding) in
// h_shared[0 .. 3H); the carried g z of each owned unit in a register, saved to
// `carry` for the next chunk (the steps before t0).
@compute @workgroup_size(MAX_H, 1, 1)
fn gru_backward_cells_persistent(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let n3 = 3u * nh;
    let p = wid.z;
    let rev = p % 2u == 1u;
    let j = lid.x;
    let sb = wid.y * CELL_SEQS;
    // The problem's own U: nothing of this chunk past it.
    let nu = problems[p].u;
    let t1 = min(params.t1, nu);
    if (params.t0 >= t1) {
        return;
    }
    let len = quad_lens(p, sb);
    let own = j < nh;
    let wo = w_hh_offset(p) + j;
    // What the launch of the steps after this chunk left: gh of step t1 and
    // the carried g z (none where t1 is the problem's last step + 1).
    var carry = vec4<f32>(0.0);
    if (t1 < nu) {
        for (var row = j; row < n3; row += MAX_H) {
            var gv = vec4<f32>(0.0);
            for (var q = 0u; q < 4u; q++) {
                if (sb + q < nb) {
                    gv[q] = bw_gh[row_of(p, sb + q, position(t1, len[q], rev)) * n3 + row];
                }
            }
            h_shared[row] = gv;
        }
        if (own) {
            for (var q = 0u; q < 4u; q++) {
                if (sb + q < nb) {
                    carry[q] = bw_carry[(p * nb + sb + q) * nh + j];
                }
            }
        }
    }
    workgroupBarrier();
    for (var s = t1; s > params.t0; s--) {
        let t = s - 1u;
        var dar = vec4<f32>(0.0);
        var daz = vec4<f32>(0.0);
        var dhn = vec4<f32>(0.0);
        var gz = vec4<f32>(0.0);
        if (own) {
            if (t + 1u < nu) {
                var acc = vec4<f32>(0.0);
                for (var row = 0u; row < n3; row++) {
                    acc += weights[wo + row * nh] * h_shared[row];
                }
                carry = carry + acc;
            }
            for (var q = 0u; q < 4u; q++) {
                let b = sb + q;
                if (b < nb) {
                    let i = position(t, len[q], rev);
                    let d = cell_backward(p, b, i, j, t, t < len[q], carry[q]);
                    dar[q] = d.x;
                    daz[q] = d.y;
                    dhn[q] = d.z;
                    gz[q] = d.w;
                }
            }
        }
        // Every lane has read gh of step t + 1; replace it by step t's.
        workgroupBarrier();
        if (own) {
            h_shared[j] = dar;
            h_shared[nh + j] = daz;
            h_shared[2u * nh + j] = dhn;
            carry = gz;
        }
        workgroupBarrier();
    }
    if (own) {
        for (var q = 0u; q < 4u; q++) {
            if (sb + q < nb) {
                bw_carry[(p * nb + sb + q) * nh + j] = carry[q];
            }
        }
    }
}
"#;
