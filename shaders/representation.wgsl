// representation.wgsl: the plain blocks of R (MODEL.md layer 4). The attention
// kernels write their blocks straight into R; a plain block (T, V or A itself)
// is copied into its column slice here, and its gradient added back.
//   representation_forward   R[t, off + c]  = X[t, c]        for every row t < B*U
//   representation_backward  dX[t, c]      += dR[t, off + c] (dX also gets the
//                            attention kernels' contributions: accumulate)
// Letters: B, U, D block width, R (rw) representation width; t = b * U + i.
//
// Dispatch: 1-D over B*U*D elements, workgroup 256, grid folded into y.
// Bindings: 0 p, 1 src, 2 dst rw (forward: X -> R; backward: dR -> dX).

const WG: u32 = 256u;

struct ReprParams {
    b: u32,
    u: u32,
    d: u32,   // block width D
    rw: u32,  // row stride of R / dR
    off: u32, // column offset of the block in R
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ReprParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn representation_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let e = element(wg, nwg, lid);
    if (e >= p.b * p.u * p.d) {
        return;
    }
    let t = e / p.d;
    let c = e % p.d;
    dst[t * p.rw + p.off + c] = src[e];
}

@compute @workgroup_size(WG)
fn representation_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let e = element(wg, nwg, lid);
    if (e >= p.b * p.u * p.d) {
        return;
    }
    let t = e / p.d;
    let c = e % p.d;
    dst[e] += src[t * p.rw + p.off + c];
}
