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

/// The forms checked on every device, (quads per invocation, texture operands):
/// a GPU's (1, storage) and a software device's (32, textures)
/// (`gpu::adam::quads_per_invocation`, `gpu::texture::preferred`), the
/// other operand form at 32, and one odd count in both.
const FORMS: [(u32, bool); 5] = [(1, false), (32, false), (3, false), (32, true), (3, true)];

fn form_name(per_inv: u32, textures: bool) -> String {
    format!("[{per_inv} quads per invocation{}]", if textures { ", textures" } else { "" })
}

/// adam_step with zero_grad, step after step against cpu::adam: parameters and
/// both moments; parameters whose gradient is always zero (like alignment gaps)
/// stay exactly 0; the gradients are zeroed. One step has tiny gradients (the eps
/// regime). Alone and grouped, for each quads-per-invocation form.
pub fn check_adam(ctx: &GpuContext, c: &AdamCase) -> Result<Vec<CheckRow>, GpuError> {
    let mut rows = Vec::new();
    for (per_inv, textures) in FORMS {
        rows.push(check_adam_alone(ctx, c, per_inv, textures)?);
        rows.push(check_adam_grouped(ctx, c, per_inv, textures)?);
    }
    Ok(rows)
}

fn check_adam_alone(ctx: &GpuContext, c: &AdamCase, per_inv: u32, textures: bool) -> Result<CheckRow, GpuError> {
    let n = c.n;
    let gap = 64.min(n);
    let cfg = gpu::adam::AdamConfig::default();
    let mut p = random_vec(n, c.seed);
    for v in &mut p[..gap] {
        *v = 0.0;
    }
    let mut p = f64s(&f32s(&p));
    // The buffers hold whole vec4 quads (adam_step's binding); the block is n.
    let nq = n.next_multiple_of(4);
    let params = up(ctx, "params", &[p.clone(), vec![0.0; nq - n]].concat())?;
    let grads = storage::<f32>(ctx, "grads", nq)?;
    let m = storage::<f32>(ctx, "adam m", nq)?;
    let v = storage::<f32>(ctx, "adam v", nq)?;
    let mut state = cpu::adam::AdamState::new(n);
    let block = |step: u32| [gpu::adam::AdamProblem::new(0, n, step, &cfg)];
    let mut launch = gpu::adam::adam_step_form(ctx, [&params, &grads, &m, &v], &block(1), 1, true, textures)?;
    launch.set_quads_per_invocation(per_inv);
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
        launch.update(ctx, &block(step), true)?;
        run(ctx, &[&launch])?;
        cpu::adam::adam_step(&mut p, &mut state, &g, &cfg);
    }
    let got = read_f32(ctx, &params, n)?;
    Ok(CheckRow::new(
        format!("adam_step ({} steps) {}", c.steps, form_name(per_inv, textures)),
        format!("n={n}"),
        vec![
            compare("params", &got, &p, ADAM_TOL),
            compare("m", &read_f32(ctx, &m, n)?, &state.m, ADAM_TOL),
            compare("v", &read_f32(ctx, &v, n)?, &state.v, ADAM_TOL),
            compare_exact("params with zero gradient", &got[..gap], &vec![0.0; gap]),
            compare_exact("grads (zero_grad)", &read_f32(ctx, &grads, n)?, &vec![0.0; n]),
        ],
    ))
}

/// One launch over three models' blocks of one arena (gaps between them), as a
/// group trains them: each with its own learning rate and step count; model 2
/// joins at step 4, model 1 stops after step 6 (early stopping: no longer in the
/// list). Every block against cpu::adam run on it alone; the gaps and a stopped
/// block's later steps untouched bit for bit (parameters, moments, gradients).
fn check_adam_grouped(ctx: &GpuContext, c: &AdamCase, per_inv: u32, textures: bool) -> Result<CheckRow, GpuError> {
    let sizes = [c.n / 3, c.n / 4, c.n / 5];
    let gaps = [37, 13, 0];
    let mut starts = Vec::new();
    let mut total = 0;
    for (i, &len) in sizes.iter().enumerate() {
        total += gaps[i];
        starts.push(total);
        total += len;
    }
    total += 11;
    total = total.next_multiple_of(4); // whole vec4 quads (adam_step's binding)
    let cfgs: Vec<gpu::adam::AdamConfig> = [1.0, 3.0, 0.5]
        .iter()
        .map(|&f| {
            let d = gpu::adam::AdamConfig::default();
            gpu::adam::AdamConfig { lr: d.lr * f, ..d }
        })
        .collect();
    let (join, leave) = ([1u32, 1, 4], [c.steps, 6, c.steps]);
    let p0 = f64s(&f32s(&random_vec(total, c.seed + 7)));
    let params = up(ctx, "params", &p0)?;
    let grads = storage::<f32>(ctx, "grads", total)?;
    let m = up(ctx, "adam m", &vec![0.0; total])?;
    let v = up(ctx, "adam v", &vec![0.0; total])?;
    let mut want = p0.clone();
    let mut states: Vec<cpu::adam::AdamState> = sizes.iter().map(|&n| cpu::adam::AdamState::new(n)).collect();
    let mut last_g = vec![0.0f64; total];
    let mut launch: Option<gpu::adam::AdamLaunch> = None;
    for step in 1..=c.steps {
        let g = f64s(&f32s(&random_vec(total, c.seed + 500 + u64::from(step))));
        ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&f32s(&g)));
        last_g.clone_from(&g);
        let mut list = Vec::new();
        for k in 0..3 {
            if step < join[k] || step > leave[k] {
                continue;
            }
            let (a, n) = (starts[k], sizes[k]);
            let t = step - join[k] + 1;
            list.push(gpu::adam::AdamProblem::new(a, n, t, &cfgs[k]));
            cpu::adam::adam_step(&mut want[a..a + n], &mut states[k], &g[a..a + n], &cfgs[k]);
            last_g[a..a + n].iter_mut().for_each(|x| *x = 0.0);
        }
        if launch.is_none() {
            let mut l = gpu::adam::adam_step_form(ctx, [&params, &grads, &m, &v], &list, 3, true, textures)?;
            l.set_quads_per_invocation(per_inv);
            launch = Some(l);
        }
        if let Some(l) = &mut launch {
            l.update(ctx, &list, true)?;
        }
        if let Some(l) = &launch {
            run(ctx, &[l])?;
        }
    }
    let (got, gm, gv) = (read_f32(ctx, &params, total)?, read_f32(ctx, &m, total)?, read_f32(ctx, &v, total)?);
    let mut cmp = Vec::new();
    let mut want_m = vec![0.0; total];
    let mut want_v = vec![0.0; total];
    for k in 0..3 {
        let (a, n) = (starts[k], sizes[k]);
        want_m[a..a + n].copy_from_slice(&states[k].m);
        want_v[a..a + n].copy_from_slice(&states[k].v);
        cmp.push(compare(&format!("params of model {k}"), &got[a..a + n], &want[a..a + n], ADAM_TOL));
    }
    cmp.push(compare("m", &gm, &want_m, ADAM_TOL));
    cmp.push(compare("v", &gv, &want_v, ADAM_TOL));
    let outside: Vec<usize> =
        (0..total).filter(|&i| !(0..3).any(|k| (starts[k]..starts[k] + sizes[k]).contains(&i))).collect();
    let pick = |v: &[f32]| outside.iter().map(|&i| v[i]).collect::<Vec<f32>>();
    cmp.push(compare_exact("params outside every block", &pick(&got), &pick(&f32s(&p0))));
    cmp.push(compare_exact(
        "grads (zeroed in the blocks stepped last)",
        &read_f32(ctx, &grads, total)?,
        &f32s(&last_g),
    ));
    let name = format!("adam_step, 3 models ({} steps) {}", c.steps, form_name(per_inv, textures));
    Ok(CheckRow::new(name, format!("n={total}"), cmp))
}
