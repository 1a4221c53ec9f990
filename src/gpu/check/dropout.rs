//! `cimnet check` rows for dropout: the GPU kernels against src/cpu.

use super::*;
use crate::gpu::dropout::DropoutSegment;
use crate::gpu::launch::Recordable;

// ---- dropout.wgsl ----

/// One launch over `segments` at a stride of `n` elements (the launch's n),
/// segment z with its own n, seed and stream, from x / dx at `x_off` and y / dy at
/// `y_off` of larger buffers.
#[derive(Debug, Clone)]
pub struct DropoutCase {
    pub n: usize,
    /// One entry per segment (>= 1), each n <= `n`.
    pub segments: Vec<DropoutSegment>,
    pub p: f64,
    pub x_off: usize,
    pub y_off: usize,
}

impl DropoutCase {
    /// Segments of `n` elements each under one step seed, one per stream (a group of one seed).
    pub fn same(n: usize, seed: u32, streams: &[u32], p: f64, x_off: usize, y_off: usize) -> DropoutCase {
        let segments = streams.iter().map(|&s| DropoutSegment::new(s, seed, n)).collect();
        DropoutCase { n, segments, p, x_off, y_off }
    }
}

/// dropout_forward (each segment's mask, bit-exact with cpu::dropout, and y = x *
/// mask) and dropout_backward (dx = dy * mask), one dispatch each for all segments;
/// buffers outside the segments' own elements (the rest of each stride too)
/// untouched; each segment launched alone (n = its own) gives the same bits.
pub fn check_dropout(ctx: &GpuContext, c: &DropoutCase) -> Result<Vec<CheckRow>, GpuError> {
    let (n, ns) = (c.n, c.segments.len());
    let all = n * ns;
    // Segment z's own elements, relative to the offsets.
    let seg = |z: usize| z * n..z * n + c.segments[z].n as usize;
    let mut mask32 = vec![SENTINEL; all];
    for (z, s) in c.segments.iter().enumerate() {
        mask32[seg(z)].copy_from_slice(&f32s(&cpu::dropout::dropout_mask(s.seed, s.stream, s.n as usize, c.p)));
    }
    let x = f32s(&random_vec(all, 1 + u64::from(c.segments[0].seed)));
    let dy = f32s(&random_vec(all, 2 + u64::from(c.segments[0].seed)));
    let (xlen, ylen) = (c.x_off + all + 5, c.y_off + all + 5);
    let (xr, yr) = (c.x_off..c.x_off + all, c.y_off..c.y_off + all);
    let place = |v: &[f32], len: usize, r: &std::ops::Range<usize>| {
        let mut full = vec![SENTINEL; len];
        full[r.clone()].copy_from_slice(v);
        full
    };
    let ones = upload(ctx, "ones", &vec![1.0f32; all])?;
    let maskb = upload(ctx, "mask", &vec![SENTINEL; all])?;
    let xb = upload(ctx, "x", &place(&x, xlen, &xr))?;
    let dyb = upload(ctx, "dy", &place(&dy, ylen, &yr))?;
    let outputs =
        || Ok::<_, GpuError>((upload(ctx, "y", &vec![SENTINEL; ylen])?, upload(ctx, "dx", &vec![SENTINEL; xlen])?));
    let (yb, dxb) = outputs()?;
    let p = gpu::dropout::DropoutParams::new(n, c.p);
    let (sg, at) = (&c.segments, p.at(c.x_off, c.y_off));
    let mask = gpu::dropout::dropout_forward(ctx, &maskb, &ones, p, sg, ns)?;
    let fwd = gpu::dropout::dropout_forward(ctx, &yb, &xb, at, sg, ns)?;
    let bwd = gpu::dropout::dropout_backward(ctx, &dxb, &dyb, at, sg, ns)?;
    let dispatches = run(ctx, &[&mask, &fwd, &bwd])?;
    let got_mask = read_f32(ctx, &maskb, all)?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dxb, xlen)?;
    // Each segment alone: a launch of one segment of n = its own, at its place.
    let (ya, dxa) = outputs()?;
    let mut single = Vec::new();
    for (z, s) in c.segments.iter().enumerate() {
        let pz = gpu::dropout::DropoutParams::new(s.n as usize, c.p).at(c.x_off + z * n, c.y_off + z * n);
        single.push(gpu::dropout::dropout_forward(ctx, &ya, &xb, pz, &[*s], 1)?);
        single.push(gpu::dropout::dropout_backward(ctx, &dxa, &dyb, pz, &[*s], 1)?);
    }
    run(ctx, &single.iter().map(|l| l as &dyn Recordable).collect::<Vec<_>>())?;
    let alone_y = read_f32(ctx, &ya, ylen)?;
    let alone_dx = read_f32(ctx, &dxa, xlen)?;
    // y = x * mask in f32, exactly as the CPU computes it in f32.
    let times = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mask32).map(|(a, m)| a * m).collect() };
    let (want_y, want_dx) = (times(&x), times(&dy));
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    let own: Vec<std::ops::Range<usize>> = (0..ns).map(seg).collect();
    let shifted = |off: usize| own.iter().map(|r| r.start + off..r.end + off).collect::<Vec<_>>();
    for (z, s) in c.segments.iter().enumerate() {
        let what = format!("segment {z} (stream {}, seed {}, n {})", s.stream, s.seed, s.n);
        forward.push(compare_exact(&format!("mask of {what}"), &got_mask[seg(z)], &mask32[seg(z)]));
        forward.push(compare_exact(&format!("y of {what}"), &got_y[yr.start..][seg(z)], &want_y[seg(z)]));
        backward.push(compare_exact(&format!("dx of {what}"), &got_dx[xr.start..][seg(z)], &want_dx[seg(z)]));
    }
    let rest = |v: &[f32], ranges: &[std::ops::Range<usize>]| outside(v, ranges);
    let nan = |v: &[f32]| vec![SENTINEL; v.len()];
    let (rm, ry, rx) = (rest(&got_mask, &own), rest(&got_y, &shifted(c.y_off)), rest(&got_dx, &shifted(c.x_off)));
    forward.push(compare_bits("mask outside the segments' elements", &rm, &nan(&rm)));
    forward.push(compare_bits("y outside the segments' elements", &ry, &nan(&ry)));
    forward.push(compare_bits("y = each segment alone", &got_y, &alone_y));
    backward.push(compare_bits("dx outside the segments' elements", &rx, &nan(&rx)));
    backward.push(compare_bits("dx = each segment alone", &got_dx, &alone_dx));
    backward.push(compare_exact("dispatches for the three launches", &[dispatches as f32], &[3.0]));
    let sizes: Vec<String> = c.segments.iter().map(|s| s.n.to_string()).collect();
    let shape =
        format!("stride n={n} x {ns} segments of n {} p={} x_off={} y_off={}", sizes.join(","), c.p, c.x_off, c.y_off);
    Ok(vec![
        CheckRow::new("dropout_forward", shape.clone(), forward),
        CheckRow::new("dropout_backward", shape, backward),
    ])
}
