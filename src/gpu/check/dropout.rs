//! `cimnet check` rows for dropout: the GPU kernels against src/cpu.

use super::*;

// ---- dropout.wgsl ----

/// `n` elements of one dropout stream, x / dx at `x_off` and y / dy at `y_off` of
/// larger buffers.
#[derive(Debug, Clone)]
pub struct DropoutCase {
    pub n: usize,
    pub seed: u32,
    pub stream: u32,
    pub p: f64,
    pub x_off: usize,
    pub y_off: usize,
}

/// dropout_forward (the mask, bit-exact with cpu::dropout, and y = x * mask) and
/// dropout_backward (dx = dy * mask), buffers outside the blocks untouched.
pub fn check_dropout(ctx: &GpuContext, c: &DropoutCase) -> Result<Vec<CheckRow>, GpuError> {
    let n = c.n;
    let mask32 = f32s(&cpu::dropout::dropout_mask(c.seed, c.stream, n, c.p));
    let x = f32s(&random_vec(n, u64::from(c.seed) + 1));
    let dy = f32s(&random_vec(n, u64::from(c.seed) + 2));
    let (xlen, ylen) = (c.x_off + n + 5, c.y_off + n + 5);
    let (xr, yr) = (c.x_off..c.x_off + n, c.y_off..c.y_off + n);
    let place = |v: &[f32], len: usize, r: &std::ops::Range<usize>| {
        let mut full = vec![SENTINEL; len];
        full[r.clone()].copy_from_slice(v);
        full
    };
    let ones = upload(ctx, "ones", &vec![1.0f32; n])?;
    let maskb = storage::<f32>(ctx, "mask", n)?;
    let xb = upload(ctx, "x", &place(&x, xlen, &xr))?;
    let yb = upload(ctx, "y", &vec![SENTINEL; ylen])?;
    let dyb = upload(ctx, "dy", &place(&dy, ylen, &yr))?;
    let dxb = upload(ctx, "dx", &vec![SENTINEL; xlen])?;
    let p = gpu::dropout::DropoutParams::new(n, c.seed, c.stream, c.p);
    let mask = gpu::dropout::dropout_forward(ctx, &maskb, &ones, p)?;
    let fwd = gpu::dropout::dropout_forward(ctx, &yb, &xb, p.at(c.x_off, c.y_off))?;
    let bwd = gpu::dropout::dropout_backward(ctx, &dxb, &dyb, p.at(c.x_off, c.y_off))?;
    run(ctx, &[&mask, &fwd, &bwd])?;
    let got_mask = read_f32(ctx, &maskb, n)?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dxb, xlen)?;
    // y = x * mask in f32, exactly as the CPU computes it in f32.
    let times = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mask32).map(|(a, m)| a * m).collect() };
    let shape = format!("n={n} p={} x_off={} y_off={}", c.p, c.x_off, c.y_off);
    Ok(vec![
        CheckRow::new(
            "dropout_forward",
            shape.clone(),
            vec![
                compare_exact("mask", &got_mask, &mask32),
                compare_exact("y", &got_y[yr.clone()], &times(&x)),
                compare_bits("y buffer outside the block", &outside(&got_y, &[yr]), &vec![SENTINEL; ylen - n]),
            ],
        ),
        CheckRow::new(
            "dropout_backward",
            shape,
            vec![
                compare_exact("dx", &got_dx[xr.clone()], &times(&dy)),
                compare_bits("dx buffer outside the block", &outside(&got_dx, &[xr]), &vec![SENTINEL; xlen - n]),
            ],
        ),
    ])
}
