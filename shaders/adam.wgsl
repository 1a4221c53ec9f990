// adam.wgsl: one Adam step over flat parameter stores (MODEL.md "Training"):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * (m / bias1) / (sqrt(v / bias2) + eps)      (PyTorch's eps placement)
// bias1 = 1 - b1^step and bias2 = 1 - b2^step come in the problem entry (computed
// on the host in f64 from the step count). With zero_grad = 1 the gradient is
// cleared after use, so the next step's backward can accumulate (+=) into it.
// Alignment gaps of the flat store have g = 0 and stay 0.
// Only one entry point: an optimizer has no backward.
//
// Problems: one per model of a group (src/gpu/model: the K models' stores are
// concatenated in one arena), each its block [offset, offset + n) with its own
// step count and hyper-parameters; a model that has stopped (early stopping) or
// does not take this step is simply not in the list, so its block is untouched.
// One dispatch updates every model; each element's arithmetic is the same as in
// a launch over that model alone.
//
// Dispatch: workgroup 256, each invocation `per_inv` QUADs (4 consecutive
// elements, loaded and stored as one vec4) WG apart, so a workgroup's lanes
// cover WG consecutive quads per pass: x (folded into y past 65,535 groups)
// over the largest block's quads, z over the problems. per_inv is the device
// profile's (src/gpu/adam.rs): 1 on a GPU, whose memory system wants every
// quad in flight at once; 8 on a software device, where the problem entry and
// the index arithmetic, paid per invocation, cost as much as the quad's own
// loads (measured on llvmpipe: 6.7 ms -> 5.7 ms a step at 1.35M parameters). Why
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
// are multiples of 64 elements).

// WG comes before this body in the module, from src/gpu/adam.rs (WGSL_CONSTS).

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

// One quad k of problem q's block [lo, hi): updated, then stored whole where
// the block covers it, else component by component (the block's own only).
fn adam_quad(q: AdamProblem, k: u32, lo: u32, hi: u32) {
    let g = grad[k];
    let m = q.beta1 * m1[k] + q.one_minus_beta1 * g;
    let v = q.beta2 * m2[k] + q.one_minus_beta2 * g * g;
    let w = param[k] - q.lr * (m / q.bias1) / (sqrt(v / q.bias2) + q.eps);
    let e = 4u * k;
    if (e >= lo && e + 4u <= hi) {
        m1[k] = m;
        m2[k] = v;
        param[k] = w;
        if (p.zero_grad != 0u) {
            grad[k] = vec4<f32>(0.0);
        }
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if (e + c >= lo && e + c < hi) {
            m1[k][c] = m[c];
            m2[k][c] = v[c];
            param[k][c] = w[c];
            if (p.zero_grad != 0u) {
                grad[k][c] = 0.0;
            }
        }
    }
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
    // The quads [lo / 4, ceil(hi / 4)) touch the block.
    let end = (hi + 3u) / 4u;
    let k0 = lo / 4u + (wg.y * nwg.x + wg.x) * WG * p.per_inv + lid;
    for (var j = 0u; j < p.per_inv; j++) {
        let k = k0 + j * WG;
        if (k >= end) {
            return;
        }
        adam_quad(q, k, lo, hi);
    }
}
