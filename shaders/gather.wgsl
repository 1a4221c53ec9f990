// gather.wgsl: build a padded batch on the GPU from the dataset that lives there.
//   gather_forward  for each tensor z (grid z): out[dst_off[z] + (b, i, c)] =
//                   src[src_off[z] + (offsets[v] + i) * D_z + c] if i < length[v] else 0,
//                   v = index[b]; with write_len = 1 tensor 0 also writes
//                   out_len[b] = length[v].
// One call for every tensor of a batch: the labels (N_utt, 7) = [sentiment score,
// six emotion intensities] and each modality's features (N_utt, D_m), stored as
// blocks of one split buffer and gathered into blocks of one batch buffer. Inputs
// carry no gradient, so there is no gather_backward.
//
// Dispatch: 1-D over B*U*max(D_z) elements, workgroup 256, grid folded into y; z = tensor.
// Bindings: 0 p, 1 src (blocks (N_utt, D_z)), 2 offset (N_videos) u32, 3 length (N_videos) u32,
//           4 index (B) u32, 5 out (blocks (B, U, D_z)) rw, 6 out_len (B) u32 rw.

const WG: u32 = 256u;

struct GatherParams {
    b: u32,         // videos in the batch B
    u: u32,         // padded utterances U (>= every gathered length)
    tensors: u32,   // grid z: tensors gathered (<= 4)
    write_len: u32, // 1: tensor 0 also writes out_len
    d: vec4<u32>,       // row width D_z of tensor z
    src_off: vec4<u32>, // element offset of tensor z's block in src
    dst_off: vec4<u32>, // element offset of tensor z's block in out
}

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read> lengths: array<u32>;
@group(0) @binding(4) var<storage, read> indices: array<u32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_len: array<u32>;

@compute @workgroup_size(WG)
fn gather_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let z = wg.z;
    let e = (wg.y * nwg.x + wg.x) * WG + lid;
    if (z >= p.tensors) {
        return;
    }
    let d = p.d[z];
    if (e >= p.b * p.u * d) {
        return;
    }
    let c = e % d;
    let t = e / d;
    let i = t % p.u;
    let b = t / p.u;
    let v = indices[b];
    let l = lengths[v];
    var x = 0.0;
    if (i < l) {
        x = src[p.src_off[z] + (offsets[v] + i) * d + c];
    }
    dst[p.dst_off[z] + e] = x;
    if (p.write_len != 0u && z == 0u && i == 0u && c == 0u) {
        out_len[b] = min(l, p.u);
    }
}

// ---- scatter_rows: the transpose of gather_forward, for predictions ----
//   dst[dst_off[z] + (offsets[v] + i) * D + c] = src[src_off[z] + (b, i, c)]
//   for i < length[v], v = index[b]; D = d[z], tensor z = grid z (the models of a
//   fused engine: each one's (B, U, 9) block into its (N_utt, 9) block)
// Writes a batch's per-utterance outputs (e.g. probabilities) into a split-wide
// (N_utt, D) buffer, so inference reads back once per split, not once per batch.
// Bindings: 0 p, 1 src (B, U, D), 2 offset, 3 length, 4 index, 5 dst (N_utt, D) rw.
@group(0) @binding(0) var<uniform> ps: GatherParams;
@group(0) @binding(1) var<storage, read> s_src: array<f32>;
@group(0) @binding(2) var<storage, read> s_offsets: array<u32>;
@group(0) @binding(3) var<storage, read> s_lengths: array<u32>;
@group(0) @binding(4) var<storage, read> s_indices: array<u32>;
@group(0) @binding(5) var<storage, read_write> s_dst: array<f32>;

@compute @workgroup_size(WG)
fn scatter_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let z = wg.z;
    let d = ps.d[z];
    let e = (wg.y * nwg.x + wg.x) * WG + lid;
    if (e >= ps.b * ps.u * d) {
        return;
    }
    let c = e % d;
    let t = e / d;
    let i = t % ps.u;
    let b = t / ps.u;
    let v = s_indices[b];
    if (i < s_lengths[v]) {
        s_dst[ps.dst_off[z] + (s_offsets[v] + i) * d + c] = s_src[ps.src_off[z] + e];
    }
}
