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
// Bindings: as linear_forward (0 p, 1 x, 2 w, 3 len, 4 y, 5 r, 6 problems).
// The structs, bindings and epilogue (store_y) are linear.wgsl's, written
// before this body in the module (src/gpu/pipelines.rs), not copied here.

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
    var bias: vec4<f32>;
    for (var j = 0u; j < TILE; j++) {
        bias[j] = wf[q.b_off + min(c0 + j, p.o - 1u)];
    }
    let acc = array<vec4<f32>, 4>(a0 + bias, a1 + bias, a2 + bias, a3 + bias);
    for (var i = 0u; i < TILE; i++) {
        let t = t0 + i;
        if (t >= n) {
            break;
        }
        store_y(p, q, t, c0, acc[i]);
    }
}
