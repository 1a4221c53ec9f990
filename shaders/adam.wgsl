// adam.wgsl: one Adam step over the whole flat parameter buffer (MODEL.md "Training"):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * (m / bias1) / (sqrt(v / bias2) + eps)      (PyTorch's eps placement)
// bias1 = 1 - b1^step and bias2 = 1 - b2^step come in the params (computed on the
// host in f64 from the step count). With zero_grad = 1 the gradient is cleared
// after use, so the next step's backward can accumulate (+=) into it. Alignment
// gaps of the flat store have g = 0 and stay 0.
// Only one entry point: an optimizer has no backward.
//
// Dispatch: 1-D, workgroup 256, one invocation per element, grid folded into y.
// Bindings: 0 p, 1 params (n) rw, 2 grads (n) rw, 3 m (n) rw, 4 v (n) rw.

const WG: u32 = 256u;

struct AdamParams {
    n: u32,
    step: u32,      // 1-based step count (informational; bias1/bias2 derive from it)
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias1: f32,     // 1 - beta1^step
    bias2: f32,     // 1 - beta2^step
    zero_grad: u32, // 1: g = 0 after the update
    // 1 - beta in f64 rounded once: 1.0 - f32(0.999) would be off by 1.3e-5 relative.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m1: array<f32>;
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let g = grad[i];
    let m = p.beta1 * m1[i] + p.one_minus_beta1 * g;
    let v = p.beta2 * m2[i] + p.one_minus_beta2 * g * g;
    m1[i] = m;
    m2[i] = v;
    param[i] -= p.lr * (m / p.bias1) / (sqrt(v / p.bias2) + p.eps);
    if (p.zero_grad != 0u) {
        grad[i] = 0.0;
    }
}
