// gather.wgsl: build padded batches on the GPU from the dataset that lives there.
//   gather_forward  for each problem z (grid z), a tensor of one batch:
//                   out[dst_off + (b, i, c)] = src[src_off + (offsets[v] + i) * D + c]
//                   if i < length[v] else 0, v = index[index_off + b], rows (B, u)
//                   of the problem's own u; with len_off != NO_LEN the problem also
//                   writes out_len[len_off + b] = length[v].
// One call for every tensor of every batch of a step: the labels (N_utt, 7) =
// [sentiment score, six emotion intensities] and each modality's features
// (N_utt, D_m), stored as blocks of one split buffer, gathered into blocks of one
// batch buffer; the batches of a fused engine's models of different seeds are
// problems of the same launch (each with its index list, u and length slot), so a
// step gathers in one dispatch however many batches it has. Inputs carry no
// gradient, so there is no gather_backward.
//
// Dispatch: 1-D over B*U*ceil(max(D) / run) runs of `run` consecutive columns of
// a row (U the largest u, D the widest tensor), workgroup 256, grid folded into
// y; z = problem. run is the device's (src/gpu/gather.rs): 1 on a GPU, where
// neighbouring lanes then copy neighbouring elements; 32 on a software device,
// where a video's index, length and offset are storage loads that loop over the
// SIMD lanes, read once per run instead of once per element.
// Bindings: 0 p, 1 src (blocks (N_utt, D)), 2 offset (N_videos) u32, 3 length (N_videos) u32,
//           4 index (batches, B) u32, 5 out (blocks (B, u, D)) rw, 6 out_len (batches, B) u32 rw,
//           7 problems.

// WG and NO_LEN come before this body in the module, from src/gpu/gather.rs (WGSL_CONSTS).

struct GatherParams {
    b: u32,        // videos in each batch B
    u: u32,        // the largest u of the problems (sizes the grid)
    problems: u32, // grid z
    d_max: u32,    // the widest tensor (sizes the grid)
    run: u32,      // gather_forward: columns per invocation (scatter_rows: 1)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct GatherProblem {
    d: u32,         // row width D of the tensor
    src_off: u32,   // element offset of the tensor's block in src
    dst_off: u32,   // element offset of its (B, u, D) block in out
    index_off: u32, // its batch's B video indices in index
    u: u32,         // its batch's padded length (>= every gathered length)
    len_off: u32,   // NO_LEN, or where the batch's B lengths go in out_len
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read> lengths: array<u32>;
@group(0) @binding(4) var<storage, read> indices: array<u32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_len: array<u32>;
@group(0) @binding(7) var<storage, read> problems: array<GatherProblem>;

@compute @workgroup_size(WG)
fn gather_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let z = wg.z;
    let e = (wg.y * nwg.x + wg.x) * WG + lid;
    if (z >= p.problems) {
        return;
    }
    let q = problems[z];
    let d = q.d;
    let run = max(p.run, 1u);
    let chunks = (d + run - 1u) / run;
    if (e >= p.b * q.u * chunks) {
        return;
    }
    let t = e / chunks;
    let c0 = (e % chunks) * run;
    let i = t % q.u;
    let b = t / q.u;
    let v = indices[q.index_off + b];
    let l = lengths[v];
    let row = q.src_off + (offsets[v] + i) * d;
    for (var c = c0; c < min(c0 + run, d); c++) {
        var x = 0.0;
        if (i < l) {
            x = src[row + c];
        }
        dst[q.dst_off + t * d + c] = x;
    }
    if (q.len_off != NO_LEN && i == 0u && c0 == 0u) {
        out_len[q.len_off + b] = min(l, q.u);
    }
}

// ---- scatter_rows: the transpose of gather_forward, for predictions ----
//   dst[dst_off + (offsets[v] + i) * D + c] = src[src_off + (b, i, c)]
//   for i < length[v], v = index[index_off + b], per problem z (grid z): the
//   models of a fused engine, each one's (B, u, 9) block into its (N_utt, 9) block.
// Writes a batch's per-utterance outputs (e.g. probabilities) into a split-wide
// (N_utt, D) buffer, so inference reads back once per split, not once per batch.
// Bindings: 0 p, 1 src (B, u, D), 2 offset, 3 length, 4 index, 5 dst (N_utt, D) rw, 6 problems.
@group(0) @binding(0) var<uniform> ps: GatherParams;
@group(0) @binding(1) var<storage, read> s_src: array<f32>;
@group(0) @binding(2) var<storage, read> s_offsets: array<u32>;
@group(0) @binding(3) var<storage, read> s_lengths: array<u32>;
@group(0) @binding(4) var<storage, read> s_indices: array<u32>;
@group(0) @binding(5) var<storage, read_write> s_dst: array<f32>;
@group(0) @binding(6) var<storage, read> s_problems: array<GatherProblem>;

@compute @workgroup_size(WG)
fn scatter_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let z = wg.z;
    if (z >= ps.problems) {
        return;
    }
    let q = s_problems[z];
    let d = q.d;
    let e = (wg.y * nwg.x + wg.x) * WG + lid;
    if (e >= ps.b * q.u * d) {
        return;
    }
    let c = e % d;
    let t = e / d;
    let i = t % q.u;
    let b = t / q.u;
    let v = s_indices[q.index_off + b];
    if (i < s_lengths[v]) {
        s_dst[q.dst_off + (s_offsets[v] + i) * d + c] = s_src[q.src_off + e];
    }
}
