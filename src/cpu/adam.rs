//! Adam (MODEL.md "Training"), PyTorch's placement of eps:
//!     m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2
//!     p -= lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
//! The reference for `shaders/adam.wgsl`.

use crate::config::AdamConfig;

/// Moments of every parameter and the number of steps taken.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    pub step: u32,
}

impl AdamState {
    pub fn new(n: usize) -> AdamState {
        AdamState { m: vec![0.0; n], v: vec![0.0; n], step: 0 }
    }
}

/// One step: updates `params` and the state from `grads`.
pub fn adam_step(params: &mut [f64], state: &mut AdamState, grads: &[f64], cfg: &AdamConfig) {
    state.step += 1;
    let t = i32::try_from(state.step).unwrap_or(i32::MAX);
    let bias1 = 1.0 - cfg.beta1.powi(t);
    let bias2 = 1.0 - cfg.beta2.powi(t);
    for i in 0..params.len() {
        let g = grads[i];
        state.m[i] = cfg.beta1 * state.m[i] + (1.0 - cfg.beta1) * g;
        state.v[i] = cfg.beta2 * state.v[i] + (1.0 - cfg.beta2) * g * g;
        params[i] -= cfg.lr * (state.m[i] / bias1) / ((state.v[i] / bias2).sqrt() + cfg.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_each_parameter_by_lr_against_its_gradient_sign() {
        // With m_hat = g and v_hat = g^2 the first step is lr * g / (|g| + eps).
        let c = AdamConfig::default();
        let mut p = vec![1.0, -2.0, 0.5];
        let g = vec![0.3, -4.0, 0.0];
        let mut s = AdamState::new(3);
        adam_step(&mut p, &mut s, &g, &c);
        assert!((p[0] - (1.0 - 1e-3 * 0.3 / (0.3 + 1e-7))).abs() < 1e-15);
        assert!((p[1] - (-2.0 + 1e-3 * 4.0 / (4.0 + 1e-7))).abs() < 1e-15);
        assert_eq!(p[2], 0.5, "zero gradient leaves a parameter (and alignment gaps) unchanged");
    }
}
