// dropout.wgsl: inverted dropout with masks generated on the fly (MODEL.md layer 2).
//   dropout_forward   y  = x  * mask
//   dropout_backward  dx = dy * mask   (written)
// mask[i] = scale if random24(seed, stream, i) >= threshold else 0, where
// random24 = hash(hash(hash(seed) ^ stream) ^ i) >> 8 and hash is "lowbias32":
// bit for bit the generator of src/cpu/dropout.rs, so no mask is ever stored and
// the CPU reference can replay a GPU step. i is the flat element index of the
// (B, U, W) tensor, padding included (as on the CPU). hash32 and random24 come
// from the shared prelude (src/gpu/wgsl.rs), generated from the CPU constants.
//
// Dispatch: 1-D, workgroup 256, one invocation per element; the grid folds into y
// past 65535 workgroups (flat index = (wg.y * num_wg.x + wg.x) * 256 + local).
// Grid z = segment: `segments` tensors, segment z at offset z * p.n past x_off /
// y_off (p.n: the stride, elements per segment at the launch's U_max), its own
// seg[z].n <= p.n elements (elements past them are never touched) masked by its
// own stream and step seed, from entry z of the launch's segment list (a storage
// array of any length). In a training step the segments are the GRU outputs of
// every (model, modality) branch, one block each of the (branches, B, U_max, 2H)
// arena, each of its model's batch (B, u, 2H): one launch for every model of a
// group (K models multiply the workgroups in flight, at one dispatch), of any
// seed (each its own batch and step seed: a 5-seed grid's step is one schedule,
// not five), each segment bit for bit what a one-segment launch of n = seg[z].n gives.
// Bindings (both entry points): 0 p, 1 input, 2 output rw, 3 segments (>= p.segments entries).

// WG comes before this body in the module, from src/gpu/dropout.rs (WGSL_CONSTS).

struct DropoutParams {
    n: u32,         // segment stride: elements per segment at U_max (sizes the grid)
    segments: u32,  // grid z: segments (entries of the segment list used)
    threshold: u32, // round(p * 2^24): drop iff random24 < threshold
    scale: f32,     // 1 / (1 - p)
    x_off: u32,     // element offset of x (forward input) / dx (backward output) in its buffer
    y_off: u32,     // element offset of y (forward output) / dy (backward input) in its buffer
    _pad0: u32,
    _pad1: u32,
}

// One segment of the launch (grid z).
struct DropoutSegment {
    stream: u32, // dropout site of its mask (cpu::dropout::stream)
    seed: u32,   // step seed of its mask
    n: u32,      // its elements (<= p.n)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: DropoutParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> seg: array<DropoutSegment>;

fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid;
}

// The mask index i is local to the segment's n elements, whatever the offsets.
fn apply(i: u32, z: u32, src_off: u32, dst_off: u32) {
    if (z >= p.segments) {
        return;
    }
    let s = seg[z];
    if (i >= s.n) {
        return;
    }
    var m = 0.0;
    if (random24(s.seed, s.stream, i) >= p.threshold) {
        m = p.scale;
    }
    dst[dst_off + z * p.n + i] = src[src_off + z * p.n + i] * m;
}

@compute @workgroup_size(WG)
fn dropout_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    apply(flat_index(wg, nwg, lid), wg.z, p.x_off, p.y_off);
}

// The same mask again: inverted dropout is linear in its input.
@compute @workgroup_size(WG)
fn dropout_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    apply(flat_index(wg, nwg, lid), wg.z, p.y_off, p.x_off);
}
