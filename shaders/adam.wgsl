// adam.wgsl: one Adam step over flat parameter stores (MODEL.md "Training"):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * (m / bias1) / (sqrt(v / bias2) + eps)      (PyTorch's eps placement)
// bias1 = 1 - b1^step and bias2 = 1 - b2^step come in the problem entry (computed
// on the host in f64 from the step count). With zero_grad = 1 the gradient is
// cleared after use, so the next step's backward can accumulate (+=) into it.
// Alignment gaps of the flat store have g = 0 and stay 0.
// An optimizer has no backward: adam_step and its texture form adam_step_tex.
//
// Problems: one per model of a group (src/gpu/model: the K models' stores are
// concatenated in one arena), each its block [offset, offset + n) with its own
// step count and hyper-parameters; a model that has stopped (early stopping) or
// does not take this step is simply not in the list, so its block is untouched.
// One dispatch updates every model; each element's arithmetic is the same as in
// a launch over that model alone.
//
// Dispatch: workgroup 256, each invocation a run of `per_inv` consecutive
// QUADs (4 consecutive elements, loaded and stored as one vec4), a workgroup
// WG runs one after another: x (folded into y past 65,535 groups) over the
// largest block's quads, z over the problems. per_inv is the device
// profile's (src/gpu/adam.rs): 1 on a GPU, whose memory system wants every
// quad in flight at once and neighbouring lanes on neighbouring quads
// (coalesced); 32 on a software device, where the problem entry and the
// index arithmetic, paid per invocation, cost as much as the quad's own loads
// (measured on llvmpipe: 6.7 ms -> 5.7 ms a step at 1.35M parameters going
// from 1 to 8), and where a lane's own run beats neighbouring lanes on
// neighbouring quads (WG apart) by 2x: the same 1.39M-element step took 8.6-
// 9.9 ms against 18.8-19.7 ms, best of 15, four times each way (round 11 of
// docs/perf-notes.md). Why
// vec4: the step is 4 loads and 4 stores per element and no reuse, so its time is
// the number of memory operations: on llvmpipe each is a per-lane loop, so a
// vec4 one moves 4 elements for the cost of 1 (measured below); on a GPU a
// 16-byte load per lane is the widest coalesced access, and a quarter of the
// invocations carry the same bytes. Blocks need not be quad-aligned (the flat
// store aligns every model's block to 64 elements, the checks use odd gaps): a
// quad inside its block is stored whole; a quad the block only partly covers
// (its first or last) stores only the block's own elements, component by
// component, so the neighbouring block's elements are left to their own
// problem. Each element's arithmetic is the scalar formula above, lane by lane.
// Bindings: 0 p, 1 problems (read), 2 params rw, 3 grads rw, 4 m rw, 5 v rw
// (each a whole number of quads: the launcher checks; the engine's flat stores
// are multiples of 64 elements); adam_step_tex: 3 the gradients' texture, and
// 6, 7, 8 those of params, m and v.

// WG and TEX_ROW come before this body in the module, from src/gpu/adam.rs (WGSL_CONSTS).

struct AdamParams {
    problems: u32,
    zero_grad: u32, // 1: g = 0 after the update
    n_max: u32,     // the largest block in elements (the grid's x extent, in quads)
    per_inv: u32,   // quads per invocation, WG apart
}

struct AdamProblem {
    offset: u32,
    n: u32,
    step: u32,      // 1-based step count (informational; bias1/bias2 derive from it)
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias1: f32,     // 1 - beta1^step
    bias2: f32,     // 1 - beta2^step
    // 1 - beta in f64 rounded once: 1.0 - f32(0.999) would be off by 1.3e-5 relative.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read> problems: array<AdamProblem>;
@group(0) @binding(2) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> grad: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m1: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> m2: array<vec4<f32>>;
// adam_step_tex only: the operands' texture copies (binding 3 replaces `grad`,
// which that entry does not touch: the launcher clears the gradient blocks).
@group(0) @binding(3) var grad_t: texture_2d<f32>;
@group(0) @binding(6) var param_t: texture_2d<f32>;
@group(0) @binding(7) var m1_t: texture_2d<f32>;
@group(0) @binding(8) var m2_t: texture_2d<f32>;

// The updated (m, v, w) of one quad from its g, m, v and w: the formula above,
// lane by lane; both entry points call it, so they give the same bits.
struct AdamQuad {
    m: vec4<f32>,
    v: vec4<f32>,
    w: vec4<f32>,
}

fn adam_math(q: AdamProblem, g: vec4<f32>, m_old: vec4<f32>, v_old: vec4<f32>, w_old: vec4<f32>) -> AdamQuad {
    let m = q.beta1 * m_old + q.one_minus_beta1 * g;
    let v = q.beta2 * v_old + q.one_minus_beta2 * g * g;
    let w = w_old - q.lr * (m / q.bias1) / (sqrt(v / q.bias2) + q.eps);
    return AdamQuad(m, v, w);
}

// Quad k of a block [lo, hi): the elements of it that the block owns.
fn owned(k: u32, lo: u32, hi: u32) -> vec4<bool> {
    let e = 4u * k + vec4<u32>(0u, 1u, 2u, 3u);
    return e >= vec4<u32>(lo) & e < vec4<u32>(hi);
}

// Store quad k of the block [lo, hi): whole where the block covers it, else
// component by component (the block's own only). The partial path is a loop
// that runs no iteration for a whole quad: on llvmpipe both sides of an `if`
// run under a lane mask (its masked stores still loop over the lanes), while a
// loop no lane enters is skipped.
fn store_quad(k: u32, lo: u32, hi: u32, o: AdamQuad) {
    let own = owned(k, lo, hi);
    let whole = all(own);
    if (whole) {
        m1[k] = o.m;
        m2[k] = o.v;
        param[k] = o.w;
    }
    for (var c = select(0u, 4u, whole); c < 4u; c++) {
        if (own[c]) {
            m1[k][c] = o.m[c];
            m2[k][c] = o.v[c];
            param[k][c] = o.w[c];
        }
    }
}

// The quads [lo / 4, ceil(hi / 4)) of problem wg.z's block this invocation
// updates: per_inv consecutive ones from this one (k >= end: none).
fn first_quad(q: AdamProblem, wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return q.offset / 4u + ((wg.y * nwg.x + wg.x) * WG + lid) * p.per_inv;
}

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let q = problems[wg.z];
    let lo = q.offset;
    let hi = q.offset + q.n;
    if (q.n == 0u) {
        return;
    }
    let end = (hi + 3u) / 4u;
    let k0 = first_quad(q, wg, nwg, lid);
    for (var j = 0u; j < p.per_inv; j++) {
        let k = k0 + j;
        if (k >= end) {
            return;
        }
        store_quad(k, lo, hi, adam_math(q, grad[k], m1[k], m2[k], param[k]));
        if (p.zero_grad != 0u) {
            let own = owned(k, lo, hi);
            let whole = all(own);
            if (whole) {
                grad[k] = vec4<f32>(0.0);
            }
            for (var c = select(0u, 4u, whole); c < 4u; c++) {
                if (own[c]) {
                    grad[k][c] = 0.0;
                }
            }
        }
    }
}

// adam_step with g, m, v and w read from texture copies made before the pass
// (src/gpu/texture.rs: quad k is texel (k % TEX_ROW, k / TEX_ROW)) and no
// gradient store (zero_grad is the launcher's clear of each block, recorded
// after the copies): 4 texel fetches and 3 stores per quad where adam_step has
// 4 storage loads and 4 stores. For software devices: on llvmpipe a storage
// load or store is a loop over the SIMD lanes (~15 ns per lane) and a texel
// fetch a vectorised gather (~2 ns). The same adam_math: the same bits.
fn texel(k: u32) -> vec2<u32> {
    return vec2<u32>(k % TEX_ROW, k / TEX_ROW);
}

@compute @workgroup_size(WG)
fn adam_step_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let q = problems[wg.z];
    let lo = q.offset;
    let hi = q.offset + q.n;
    if (q.n == 0u) {
        return;
    }
    let end = (hi + 3u) / 4u;
    let k0 = first_quad(q, wg, nwg, lid);
    for (var j = 0u; j < p.per_inv; j++) {
        let k = k0 + j;
        if (k >= end) {
            return;
        }
        let t = texel(k);
        let g = textureLoad(grad_t, t, 0);
        store_quad(k, lo, hi, adam_math(q, g, textureLoad(m1_t, t, 0), textureLoad(m2_t, t, 0), textureLoad(param_t, t, 0)));
    }
}
