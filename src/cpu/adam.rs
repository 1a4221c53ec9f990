//! Adam (MODEL.md "Training"): PyTorch's placement of epsilon,
//!     m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//!     p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//! over the flat parameter vector (alignment gaps have zero gradient and stay zero).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    /// The authors' Keras defaults: lr 1e-3, betas 0.9 / 0.999, eps 1e-7.
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-7 }
    }
}

/// One update; `step` is 1-based (the bias corrections use it).
pub fn adam_step(params: &mut [f64], m: &mut [f64], v: &mut [f64], grads: &[f64], step: u64, c: &AdamConfig) {
    let bc1 = 1.0 - c.beta1.powi(step as i32);
    let bc2 = 1.0 - c.beta2.powi(step as i32);
    for i in 0..params.len() {
        let g = grads[i];
        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
        params[i] -= c.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + c.eps);
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
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        adam_step(&mut p, &mut m, &mut v, &g, 1, &c);
        assert!((p[0] - (1.0 - 1e-3 * 0.3 / (0.3 + 1e-7))).abs() < 1e-15);
        assert!((p[1] - (-2.0 + 1e-3 * 4.0 / (4.0 + 1e-7))).abs() < 1e-15);
        assert_eq!(p[2], 0.5, "zero gradient leaves a parameter (and alignment gaps) unchanged");
    }
}
