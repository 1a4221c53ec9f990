//! `cimnet check` rows for dropout: the GPU kernels against src/cpu.

use super::*;

// ---- dropout.wgsl ----

/// One launch over `streams.len()` segments of `n` elements, segment z with the
/// mask of `streams[z]`, consecutive from x / dx at `x_off` and y / dy at `y_off`
/// of larger buffers.
#[derive(Debug, Clone)]
pub struct DropoutCase {
    pub n: usize,
    pub seed: u32,
    /// One stream per segment (>= 1).
    pub streams: Vec<u32>,
    pub p: f64,
    pub x_off: usize,
    pub y_off: usize,
}

/// dropout_forward (each segment's mask, bit-exact with cpu::dropout, and y = x *
/// mask) and dropout_backward (dx = dy * mask), one dispatch each for all segments,
/// buffers outside the segments untouched.
pub fn check_dropout(ctx: &GpuContext, c: &DropoutCase) -> Result<Vec<CheckRow>, GpuError> {
    let (n, ns) = (c.n, c.streams.len());
    let all = n * ns;
    let mask32: Vec<f32> =
        c.streams.iter().flat_map(|&s| f32s(&cpu::dropout::dropout_mask(c.seed, s, n, c.p))).collect();
    let x = f32s(&random_vec(all, u64::from(c.seed) + 1));
    let dy = f32s(&random_vec(all, u64::from(c.seed) + 2));
    let (xlen, ylen) = (c.x_off + all + 5, c.y_off + all + 5);
    let (xr, yr) = (c.x_off..c.x_off + all, c.y_off..c.y_off + all);
    let place = |v: &[f32], len: usize, r: &std::ops::Range<usize>| {
        let mut full = vec![SENTINEL; len];
        full[r.clone()].copy_from_slice(v);
        full
    };
    let ones = upload(ctx, "ones", &vec![1.0f32; all])?;
    let maskb = storage::<f32>(ctx, "mask", all)?;
    let xb = upload(ctx, "x", &place(&x, xlen, &xr))?;
    let yb = upload(ctx, "y", &vec![SENTINEL; ylen])?;
    let dyb = upload(ctx, "dy", &place(&dy, ylen, &yr))?;
    let dxb = upload(ctx, "dx", &vec![SENTINEL; xlen])?;
    let p = gpu::dropout::DropoutParams::new(n, c.seed, c.p);
    let (st, at) = (&c.streams, p.at(c.x_off, c.y_off));
    let mask = gpu::dropout::dropout_forward(ctx, &maskb, &ones, p, st, ns)?;
    let fwd = gpu::dropout::dropout_forward(ctx, &yb, &xb, at, st, ns)?;
    let bwd = gpu::dropout::dropout_backward(ctx, &dxb, &dyb, at, st, ns)?;
    let dispatches = run(ctx, &[&mask, &fwd, &bwd])?;
    let got_mask = read_f32(ctx, &maskb, all)?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dxb, xlen)?;
    // y = x * mask in f32, exactly as the CPU computes it in f32.
    let times = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mask32).map(|(a, m)| a * m).collect() };
    let (want_y, want_dx) = (times(&x), times(&dy));
    let seg = |z: usize| z * n..(z + 1) * n;
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for (z, s) in c.streams.iter().enumerate() {
        forward.push(compare_exact(&format!("mask of segment {z} (stream {s})"), &got_mask[seg(z)], &mask32[seg(z)]));
        forward.push(compare_exact(&format!("y[{z}]"), &got_y[yr.start..][seg(z)], &want_y[seg(z)]));
        backward.push(compare_exact(&format!("dx[{z}]"), &got_dx[xr.start..][seg(z)], &want_dx[seg(z)]));
    }
    forward.push(compare_bits("y buffer outside the segments", &outside(&got_y, &[yr]), &vec![SENTINEL; ylen - all]));
    backward.push(compare_bits(
        "dx buffer outside the segments",
        &outside(&got_dx, &[xr]),
        &vec![SENTINEL; xlen - all],
    ));
    backward.push(compare_exact("dispatches for the three launches", &[dispatches as f32], &[3.0]));
    let shape = format!("n={n} x {ns} segments p={} x_off={} y_off={}", c.p, c.x_off, c.y_off);
    Ok(vec![
        CheckRow::new("dropout_forward", shape.clone(), forward),
        CheckRow::new("dropout_backward", shape, backward),
    ])
}
