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
// Bindings: as linear_forward (0 p, 1 x, 2 w, 3 len, 4 y, 5 r, 6 problems);
// linear_sg_backward_weights as linear_backward_weights. The structs,
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

// linear_sg_backward_weights: dW += g^T x, db += sum g (linear_backward_weights_v4
// and _v4g) with the 8 x 8 tile per invocation, the 64 x 64 tile per workgroup
// and the order of summation of those two, so bit for bit their result; what
// differs is who loads. The 64 lanes are 8 octets of subgroup lanes, octet o a
// 2 x 4 block of tiles (16 rows of dW x 32 columns: rows (o / 2) * 16,
// columns (o % 2) * 32 of the workgroup's); per row (b, i) of the reduction the
// octet needs 4 quads of g and 8 quads of x, so lane l loads g quad l % 4 (and
// y's, with ReLU) and x quad l, and takes its tile's 2 + 2 quads from their
// owners with subgroupShuffle: per row 2 vec4 loads where _v4 has 4, or 3
// where _v4g has 10 (x at any offset is the two quads around it, shifted; the
// columns past K that reads are never stored, and only their own products
// see them). Needs O % 4 == 0 and y_off % 4 == 0 (as Vec4's weight gradient);
// any K, x_off, w_off, b_off. One variable per binding: x and dW through their
// vec4 views only. No lane returns early once the workgroup has work.

// The 4 floats of x at element e, from the vec4 view (any alignment).
fn x_at(e: u32) -> vec4<f32> {
    let lo = xw4[e / 4u];
    let r = e % 4u;
    if (r == 0u) {
        return lo;
    }
    let hi = xw4[e / 4u + 1u];
    var v = vec4<f32>(lo.w, hi.xyz);
    v = select(v, vec4<f32>(lo.zw, hi.xy), r == 2u);
    return select(v, vec4<f32>(lo.yzw, hi.x), r == 1u);
}

// dW[o, c .. c + 7] += (lo, hi) for the columns inside the weight, element by element.
fn store_dw_row4(q: LinearProblem, o: u32, c: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (o >= pw.o) {
        return;
    }
    let row = q.w_off + o * pw.k;
    for (var j = 0u; j < 4u; j++) {
        if (c + j < pw.k) {
            let e = row + c + j;
            gw4[e / 4u][e % 4u] += lo[j];
        }
        if (c + 4u + j < pw.k) {
            let e = row + c + 4u + j;
            gw4[e / 4u][e % 4u] += hi[j];
        }
    }
}

// The two entry points: x and dW in whole quads (K, x_off and w_off all
// 4-aligned: the text projection and the dense layer, as _v4), or at any
// alignment (as _v4g). One body, `quads` a constant each passes, so the
// driver compiles each without the other's branch.
@compute @workgroup_size(64, 1, 1)
fn linear_sg_backward_weights(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32) {
    sg_weights(wg, sl, sg_id * sg_size + sl, true);
}

@compute @workgroup_size(64, 1, 1)
fn linear_sg_backward_weights_any(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32) {
    sg_weights(wg, sl, sg_id * sg_size + sl, false);
}

// The body of both: li is the lane's place in the workgroup (subgroup_id *
// subgroup_size + sl), sl its subgroup lane.
fn sg_weights(wg: vec3<u32>, sl: u32, li: u32, quads: bool) {
    let p = pw;
    let z = wg.z;
    if (z >= p.problems || wg.x * WG_X * WTILE >= p.k || wg.y * WG_Y * WTILE >= p.o) {
        return;
    }
    let q = qw[z];
    let o = li / 8u;
    let l = sl & 7u;
    let base = sl & ~7u;
    // (WG_X, WG_Y) = (8, 8) tiles of 8 x 8: 4 x 2 octets (src/gpu/linear.rs asserts it).
    let orow = wg.y * WG_Y * WTILE + (o / 2u) * 2u * WTILE;
    let ocol = wg.x * WG_X * WTILE + (o % 2u) * 4u * WTILE;
    let o0 = orow + WTILE * (l / 4u);
    let c0 = ocol + WTILE * (l % 4u);
    // What this lane loads for the octet: g quad (clamped) and the 4 columns
    // of x from ocol + 4 l (from K - 1 where that is past K): columns past K
    // read the next row or past the buffer (bounds-checked), never stored.
    let o4 = p.o / 4u;
    let gq = min(orow / 4u + (l % 4u), o4 - 1u);
    let xc = min(ocol + 4u * l, p.k - 1u);
    // The lanes holding this tile's g quads and x quads.
    let gs = base + 2u * (l / 4u);
    let xs = base + 2u * (l % 4u);
    var r0l = vec4<f32>(0.0); var r0h = vec4<f32>(0.0);
    var r1l = vec4<f32>(0.0); var r1h = vec4<f32>(0.0);
    var r2l = vec4<f32>(0.0); var r2h = vec4<f32>(0.0);
    var r3l = vec4<f32>(0.0); var r3h = vec4<f32>(0.0);
    var r4l = vec4<f32>(0.0); var r4h = vec4<f32>(0.0);
    var r5l = vec4<f32>(0.0); var r5h = vec4<f32>(0.0);
    var r6l = vec4<f32>(0.0); var r6h = vec4<f32>(0.0);
    var r7l = vec4<f32>(0.0); var r7h = vec4<f32>(0.0);
    var db0 = vec4<f32>(0.0);
    var db1 = vec4<f32>(0.0);
    for (var b = 0u; b < p.b; b++) {
        let len = min(lenw[q.len_off + b], q.u);
        for (var i = 0u; i < len; i++) {
            let t = b * q.u + i;
            let gr = q.y_off / 4u + t * o4 + gq;
            var gv = dyw4[gr];
            if (p.relu != 0u) {
                gv = select(vec4<f32>(0.0), gv * p.scale, yw4[gr] > vec4<f32>(0.0));
            }
            var xv: vec4<f32>;
            if (quads) {
                xv = xw4[(q.x_off + t * p.k + xc) / 4u];
            } else {
                xv = x_at(q.x_off + t * p.k + xc);
            }
            let g0 = subgroupShuffle(gv, gs);
            let g1 = subgroupShuffle(gv, gs + 1u);
            let x0 = subgroupShuffle(xv, xs);
            let x1 = subgroupShuffle(xv, xs + 1u);
            r0l += g0.x * x0;
            r0h += g0.x * x1;
            r1l += g0.y * x0;
            r1h += g0.y * x1;
            r2l += g0.z * x0;
            r2h += g0.z * x1;
            r3l += g0.w * x0;
            r3h += g0.w * x1;
            r4l += g1.x * x0;
            r4h += g1.x * x1;
            r5l += g1.y * x0;
            r5h += g1.y * x1;
            r6l += g1.z * x0;
            r6h += g1.z * x1;
            r7l += g1.w * x0;
            r7h += g1.w * x1;
            db0 += g0;
            db1 += g1;
        }
    }
    if (o0 >= p.o || c0 >= p.k) {
        return;
    }
    // Whole quads (one vec4 read-modify-write per 4 columns), or element by
    // element (a dynamic component each: slower).
    if (quads) {
        store_dw4(q, o0 + 0u, c0, r0l);
        store_dw4(q, o0 + 0u, c0 + 4u, r0h);
        store_dw4(q, o0 + 1u, c0, r1l);
        store_dw4(q, o0 + 1u, c0 + 4u, r1h);
        store_dw4(q, o0 + 2u, c0, r2l);
        store_dw4(q, o0 + 2u, c0 + 4u, r2h);
        store_dw4(q, o0 + 3u, c0, r3l);
        store_dw4(q, o0 + 3u, c0 + 4u, r3h);
        store_dw4(q, o0 + 4u, c0, r4l);
        store_dw4(q, o0 + 4u, c0 + 4u, r4h);
        store_dw4(q, o0 + 5u, c0, r5l);
        store_dw4(q, o0 + 5u, c0 + 4u, r5h);
        store_dw4(q, o0 + 6u, c0, r6l);
        store_dw4(q, o0 + 6u, c0 + 4u, r6h);
        store_dw4(q, o0 + 7u, c0, r7l);
        store_dw4(q, o0 + 7u, c0 + 4u, r7h);
    } else {
        store_dw_row4(q, o0 + 0u, c0, r0l, r0h);
        store_dw_row4(q, o0 + 1u, c0, r1l, r1h);
        store_dw_row4(q, o0 + 2u, c0, r2l, r2h);
        store_dw_row4(q, o0 + 3u, c0, r3l, r3h);
        store_dw_row4(q, o0 + 4u, c0, r4l, r4h);
        store_dw_row4(q, o0 + 5u, c0, r5l, r5h);
        store_dw_row4(q, o0 + 6u, c0, r6l, r6h);
        store_dw_row4(q, o0 + 7u, c0, r7l, r7h);
    }
    if (c0 == 0u) {
        let n = min(p.o - o0, WTILE);
        for (var r = 0u; r < n; r++) {
            let e = q.b_off + o0 + r;
            gw4[e / 4u][e % 4u] += select(db1[r % 4u], db0[r % 4u], r < 4u);
        }
    }
}
