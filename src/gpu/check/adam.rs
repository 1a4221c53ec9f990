//! `cimnet check` rows for adam: the GPU kernels against src/cpu.

use super::*;

// ---- adam.wgsl ----

/// `steps` Adam steps over `n` parameters with fresh random gradients each step.
#[derive(Debug, Clone)]
pub struct AdamCase {
    pub n: usize,
    pub steps: u32,
    pub seed: u64,
}

/// adam_step with zero_grad, step after step against cpu::adam: parameters and
/// both moments; parameters whose gradient is always zero (like alignment gaps)
/// stay exactly 0; the gradients are zeroed. One step has tiny gradients (the eps
/// regime).
pub fn check_adam(ctx: &GpuContext, c: &AdamCase) -> Result<Vec<CheckRow>, GpuError> {
    let n = c.n;
    let gap = 64.min(n);
    let cfg = gpu::adam::AdamConfig::default();
    let mut p = random_vec(n, c.seed);
    for v in &mut p[..gap] {
        *v = 0.0;
    }
    let mut p = f64s(&f32s(&p));
    let params = up(ctx, "params", &p)?;
    let grads = storage::<f32>(ctx, "grads", n)?;
    let m = storage::<f32>(ctx, "adam m", n)?;
    let v = storage::<f32>(ctx, "adam v", n)?;
    let mut state = cpu::adam::AdamState::new(n);
    let mut launch = gpu::adam::adam_step(ctx, &params, &grads, &m, &v, gpu::adam::AdamParams::new(n, 1, &cfg, true))?;
    for step in 1..=c.steps {
        let mut g = random_vec(n, c.seed + 100 + u64::from(step));
        for x in &mut g[..gap] {
            *x = 0.0;
        }
        if step == 4 {
            for x in g.iter_mut().take(1000).skip(gap) {
                *x *= 1e-4; // tiny gradients: the eps regime
            }
        }
        let g = f64s(&f32s(&g));
        ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&f32s(&g)));
        launch.update(ctx, gpu::adam::AdamParams::new(n, step, &cfg, true));
        run(ctx, &[&launch])?;
        cpu::adam::adam_step(&mut p, &mut state, &g, &cfg);
    }
    let got = read_f32(ctx, &params, n)?;
    Ok(vec![CheckRow::new(
        format!("adam_step ({} steps)", c.steps),
        format!("n={n}"),
        vec![
            compare("params", &got, &p, ADAM_TOL),
            compare("m", &read_f32(ctx, &m, n)?, &state.m, ADAM_TOL),
            compare("v", &read_f32(ctx, &v, n)?, &state.v, ADAM_TOL),
            compare_exact("params with zero gradient", &got[..gap], &vec![0.0; gap]),
            compare_exact("grads (zero_grad)", &read_f32(ctx, &grads, n)?, &vec![0.0; n]),
        ],
    )])
}
