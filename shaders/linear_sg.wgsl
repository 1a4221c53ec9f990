// linear_sg.wgsl: linear_forward (linear.wgsl) with its operands shared by
// octets of subgroup lanes: the forward of the Vec4Sg member of the linear
// family (src/gpu/linear.rs `LinearKernel::Vec4Sg`), for the launches Vec4's
// vec4 loads cannot take (K % 4 != 0 or offsets not 4-aligned: the audio and
// video input projections, K = 74 and 35, which Vec4 runs as Scalar).
//
// Same tiles, grid, order of summation and epilogue as linear_forward, so bit
// for bit its result: one invocation owns a TILE x TILE (4 x 4) register tile,
// a workgroup the same 32 x 32 outputs as linear_forward's (8, 8) workgroup.
// What differs is who loads: linear_forward's invocation reads 4 x and 4 W
// values per step of K (8 scalar loads for 16 multiply-adds). Here the 64
// lanes are 8 octets of subgroup lanes, octet o a 2 x 4 block of tiles (8 rows
// x 16 columns: rows (o / 2) * 8, columns (o % 2) * 16 of the workgroup's);
// per step of K the octet needs 8 x and 16 W values, so lane l loads x of row
// l and W of columns 2l, 2l + 1 (3 loads) and takes its tile's 4 + 4 from
// their owners with subgroupShuffle. On llvmpipe a storage load is a loop over
// the SIMD lanes and a shuffle one permute (4x cheaper, measured): 3 loads
// instead of 8. On a GPU it is the register-level form of staging the x and W
// panels in workgroup memory (CUTLASS's warp-level fragment exchange), with no
// barrier. The lane's place is subgroup_id * subgroup_size + its subgroup
// lane, so an octet is 8 lanes of one subgroup whatever order the device gives
// invocations to subgroups (subgroups of a multiple of 8 lanes: the device
// profile offers the member only there). Every lane of a workgroup with work
// runs the loop (a shuffle needs the whole octet); out-of-range rows and
// columns load clamped addresses and are not stored.
//
// Bindings: as linear_forward (0 p, 1 x, 2 w, 3 len, 4 y, 5 r, 6 problems),
// and as linear_backward for linear_sg_backward_v4. The weight gradient's
// subgroup kernels are src/gpu/linear/sg_weights.rs's. The structs,
// bindings and helpers (store_y, outer) are linear.wgsl's: the module is
// linear.wgsl followed by this file (src/gpu/pipelines.rs), nothing copied.

@compute @workgroup_size(64, 1, 1)
fn linear_sg_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32) {
    let p = pf;
    let z = wg.z;
    if (z >= p.problems) {
        return;
    }
    let q = qf[z];
    let n = p.b * q.u;
    // The whole workgroup past the problem's rows or the columns: nothing to do.
    if (wg.y * WG_Y * TILE >= n || wg.x * WG_X * TILE >= p.o) {
        return;
    }
    let li = sg_id * sg_size + sl;
    let o = li / 8u;
    let l = sl & 7u;
    let base = sl & ~7u;
    // (WG_X, WG_Y) = (8, 8) tiles: 4 x 2 octets of 2 x 4 tiles (src/gpu/linear.rs asserts it).
    let orow = wg.y * WG_Y * TILE + (o / 2u) * 2u * TILE;
    let ocol = wg.x * WG_X * TILE + (o % 2u) * 4u * TILE;
    // This lane's tile.
    let t0 = orow + TILE * (l / 4u);
    let c0 = ocol + TILE * (l % 4u);
    // What this lane loads for the octet (clamped to valid rows and columns).
    let xr = q.x_off + min(orow + l, n - 1u) * p.k;
    let wa = q.w_off + min(ocol + 2u * l, p.o - 1u) * p.k;
    let wb = q.w_off + min(ocol + 2u * l + 1u, p.o - 1u) * p.k;
    // The lanes holding this tile's rows (4 lanes) and columns (2 lanes, 2 each).
    let xs = base + TILE * (l / 4u);
    let ws = base + 2u * (l % 4u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let xv = xf[xr + kk];
        let wv2 = vec2<f32>(wf[wa + kk], wf[wb + kk]);
        let wv = vec4<f32>(subgroupShuffle(wv2, ws), subgroupShuffle(wv2, ws + 1u));
        a0 += subgroupShuffle(xv, xs) * wv;
        a1 += subgroupShuffle(xv, xs + 1u) * wv;
        a2 += subgroupShuffle(xv, xs + 2u) * wv;
        a3 += subgroupShuffle(xv, xs + 3u) * wv;
    }
    if (c0 >= p.o || t0 >= n) {
        return;
    }
    store_y_tile(p, q, t0, c0, a0, a1, a2, a3);
}

// linear_sg_forward_v4: linear_forward_v4 (the 8 x 8 tile of vec4 loads along
// K, K % 4 == 0 and 4-aligned offsets) with the x rows shared by octets of
// subgroup lanes: an octet owns 8 rows x 64 columns (lane l the tile of
// columns 8 l .. 8 l + 7: its 8 W rows, loaded by itself), the workgroup's 8
// octets stacked (the same 64 x 64 per workgroup, so the same grid as
// linear_forward_v4). Per step of K (4 values) lane l loads x row l of the
// octet and its 8 W rows and takes the other 7 x rows from their lanes with
// subgroupShuffle: 9 vec4 loads where linear_forward_v4 has 16. Same dot
// products in the same order: bit for bit its y.
@compute @workgroup_size(64, 1, 1)
fn linear_sg_forward_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32) {
    let p = pf;
    let z = wg.z;
    if (z >= p.problems) {
        return;
    }
    let q = qf[z];
    let n = p.b * q.u;
    if (wg.y * WG_Y * WTILE >= n || wg.x * WG_X * WTILE >= p.o) {
        return;
    }
    let li = sg_id * sg_size + sl;
    let l = sl & 7u;
    let base = sl & ~7u;
    // (WG_X, WG_Y) = (8, 8) tiles of 8 x 8: 8 octets of 1 x 8 tiles, stacked.
    let t0 = wg.y * WG_Y * WTILE + (li / 8u) * WTILE;
    let c0 = wg.x * WG_X * WTILE + l * WTILE;
    let k4 = p.k / 4u;
    // This lane's x row (row l of the octet, clamped) and its tile's 8 W rows.
    let xr = q.x_off / 4u + min(t0 + l, n - 1u) * k4;
    let wo = q.w_off / 4u;
    let w0 = wo + min(c0, p.o - 1u) * k4;
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
        let xl = xf4[xr + kk];
        let xv0 = subgroupShuffle(xl, base + 0u);
        let xv1 = subgroupShuffle(xl, base + 1u);
        let xv2 = subgroupShuffle(xl, base + 2u);
        let xv3 = subgroupShuffle(xl, base + 3u);
        let xv4 = subgroupShuffle(xl, base + 4u);
        let xv5 = subgroupShuffle(xl, base + 5u);
        let xv6 = subgroupShuffle(xl, base + 6u);
        let xv7 = subgroupShuffle(xl, base + 7u);
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
    if (t0 >= n || c0 >= p.o) {
        return;
    }
    store_y_tile8(p, q, t0, c0, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71);
}

// linear_sg_backward_v4: linear_backward_v4 (dx = g W, the 8 x 8 tile of vec4
// loads along O; K % 4 == 0, O % 4 == 0, 4-aligned w_off and y_off) with the g
// rows shared by octets of subgroup lanes: an octet owns 8 rows x 64 columns
// of dx (lane l the tile of columns 8 l .. 8 l + 7: its W quads, loaded by
// itself), the workgroup's 8 octets stacked (64 x 64, linear_backward_v4's
// grid). Per 4 steps of O lane l loads g of row l of the octet (dy, and y
// with ReLU) and its 8 W quads and takes the other 7 g rows by subgroupShuffle:
// 9 vec4 loads (10 with ReLU) where linear_backward_v4 has 16 (24). Same
// products in the same order: bit for bit its dx.
@compute @workgroup_size(64, 1, 1)
fn linear_sg_backward_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32) {
    let p = pb;
    let z = wg.z;
    if (z >= p.problems) {
        return;
    }
    let q = qb[z];
    let n = p.b * q.u;
    if (wg.y * WG_Y * WTILE >= n || wg.x * WG_X * WTILE >= p.k) {
        return;
    }
    let li = sg_id * sg_size + sl;
    let l = sl & 7u;
    let base = sl & ~7u;
    // (WG_X, WG_Y) = (8, 8) tiles of 8 x 8: 8 octets of 1 x 8 tiles, stacked.
    let t0 = wg.y * WG_Y * WTILE + (li / 8u) * WTILE;
    let c0 = wg.x * WG_X * WTILE + l * WTILE;
    let o4 = p.o / 4u;
    let k4 = p.k / 4u;
    // This lane's g row (row l of the octet, clamped) and its tile's W columns.
    let gl = (q.y_off + min(t0 + l, n - 1u) * p.o) / 4u;
    let wc0 = q.w_off / 4u + min(c0 / 4u, k4 - 1u);
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
        let w = 4u * oo * k4;
        let w0 = mat4x4<f32>(wb4[wc0 + w], wb4[wc0 + w + k4], wb4[wc0 + w + 2u * k4], wb4[wc0 + w + 3u * k4]);
        let w1 = mat4x4<f32>(wb4[wc1 + w], wb4[wc1 + w + k4], wb4[wc1 + w + 2u * k4], wb4[wc1 + w + 3u * k4]);
        let gr = grad_b4(p, gl + oo);
        let gv0 = subgroupShuffle(gr, base + 0u);
        let gv1 = subgroupShuffle(gr, base + 1u);
        let gv2 = subgroupShuffle(gr, base + 2u);
        let gv3 = subgroupShuffle(gr, base + 3u);
        let gv4 = subgroupShuffle(gr, base + 4u);
        let gv5 = subgroupShuffle(gr, base + 5u);
        let gv6 = subgroupShuffle(gr, base + 6u);
        let gv7 = subgroupShuffle(gr, base + 7u);
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
    if (t0 >= n || c0 >= p.k) {
        return;
    }
    store_dx_tile8(p, q, t0, c0, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71);
}
