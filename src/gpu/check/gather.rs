//! `cimnet check` rows for gather: the GPU kernels against src/cpu.

use super::*;

// ---- gather.wgsl ----

/// A dataset of videos with `lengths`, feature widths `dims` (plus the 7 label
/// columns), gathered into a batch of the videos `index` (repeats allowed).
#[derive(Debug, Clone)]
pub struct GatherCase {
    pub lengths: Vec<usize>,
    pub dims: Vec<usize>,
    pub index: Vec<usize>,
    pub seed: u64,
}

/// gather_forward (the labels, every feature tensor and the lengths in one launch,
/// exact, the output outside the tensors' blocks untouched) and
/// scatter_rows (a (B, U, 9) batch with garbage at padding scattered back into a
/// split-wide buffer, over the distinct videos of `index`, exact).
pub fn check_gather(ctx: &GpuContext, c: &GatherCase) -> Result<Vec<CheckRow>, GpuError> {
    let lengths = &c.lengths;
    let n_utt: usize = lengths.iter().sum();
    let starts: Vec<usize> = lengths
        .iter()
        .scan(0, |s, &l| {
            let start = *s;
            *s += l;
            Some(start)
        })
        .collect();
    // Widths: each modality's features, then the labels.
    let widths: Vec<usize> = c.dims.iter().copied().chain([gpu::gather::LABEL_WIDTH]).collect();
    let srcs: Vec<Vec<f32>> =
        widths.iter().enumerate().map(|(m, &d)| f32s(&random_vec(n_utt * d, c.seed + m as u64))).collect();
    let nf = c.dims.len().min(3);
    let mut feats: [Option<&[f32]>; 3] = [None; 3];
    let mut dims3 = [0usize; 3];
    for m in 0..nf {
        feats[m] = Some(&srcs[m]);
        dims3[m] = c.dims[m];
    }
    let data = gpu::gather::GpuDataset::upload(ctx, feats, dims3, &srcs[srcs.len() - 1], lengths)?;

    // gather_forward: two batches of B videos in one launch (the given index list
    // and one of the shortest video, so of another u), each with its labels
    // (writing its lengths at its slot) and every feature tensor, from the split's
    // one buffer into blocks of one output buffer at unaligned offsets, with a
    // sentinel element between blocks.
    let b = c.index.len();
    let shortest = (0..lengths.len()).min_by_key(|&v| lengths[v]).unwrap_or(0);
    let batches = [c.index.clone(), vec![shortest; b]];
    let us: Vec<usize> = batches.iter().map(|ix| ix.iter().map(|&v| lengths[v]).max().unwrap_or(0)).collect();
    let flat: Vec<usize> = batches.iter().flatten().copied().collect();
    let idx = upload(ctx, "index", &u32s(&flat))?;
    let mut problems = Vec::new();
    let mut blocks = Vec::new();
    let mut at = 3;
    for (bi, u) in us.iter().copied().enumerate() {
        for m in std::iter::once(srcs.len() - 1).chain(0..nf) {
            let src_off = if m < nf { data.features_off[m] } else { Some(data.labels_off) };
            let Some(src_off) = src_off else { continue };
            let d = widths[m];
            let q = gpu::gather::GatherProblem::new(d, src_off, at, u, bi * b);
            // The second batch's lengths one past the first's: a sentinel between.
            problems.push(if m < nf { q } else { q.lengths(bi * (b + 1)) });
            blocks.push((at..at + b * u * d, m, bi));
            at += b * u * d + 1;
        }
    }
    // The device's columns per invocation, and 1 (the GPU layout) and 3 (runs
    // that end inside a row) on any device.
    let device_run = gpu::gather::columns_per_invocation(&ctx.profile);
    let mut runs = vec![device_run, 1, 3];
    runs.dedup();
    let mut gathered = Vec::new();
    for cols in runs {
        let out = upload(ctx, "gathered", &vec![SENTINEL; at])?;
        let out_len = upload(ctx, "len", &vec![999u32; 2 * b + 1])?;
        let p = gpu::gather::GatherParams::new(b);
        let mut launch = gpu::gather::gather_forward(ctx, &out, &out_len, &data, &idx, p, &problems, problems.len())?;
        launch.set_columns_per_invocation(ctx, cols);
        let dispatches = run(ctx, &[&launch])?;
        let got = read_f32(ctx, &out, at)?;
        let tag = format!("{cols} columns per invocation");
        for (r, m, bi) in &blocks {
            let (d, u) = (widths[*m], us[*bi]);
            let mut want = vec![0.0f32; b * u * d];
            for (row, &v) in batches[*bi].iter().enumerate() {
                let rows = (starts[v] * d)..((starts[v] + lengths[v]) * d);
                want[row * u * d..(row * u + lengths[v]) * d].copy_from_slice(&srcs[*m][rows]);
            }
            let name = if *m < nf {
                format!("batch {bi} features {m} (D={d}), {tag}")
            } else {
                format!("batch {bi} labels, {tag}")
            };
            gathered.push(compare_exact(&name, &got[r.clone()], &want));
        }
        let ranges: Vec<std::ops::Range<usize>> = blocks.iter().map(|(r, _, _)| r.clone()).collect();
        let rest = outside(&got, &ranges);
        gathered.push(compare_bits(&format!("output outside the blocks, {tag}"), &rest, &vec![SENTINEL; rest.len()]));
        gathered.push(compare_exact("dispatches", &[dispatches as f32], &[1.0]));
        let mut want_len: Vec<f32> = batches[0].iter().map(|&v| lengths[v] as f32).collect();
        want_len.push(999.0);
        want_len.extend(batches[1].iter().map(|&v| lengths[v] as f32));
        let got_len: Vec<f32> = read::<u32>(ctx, &out_len, 0, 2 * b + 1)?.iter().map(|&l| l as f32).collect();
        gathered.push(compare_exact(&format!("lengths, {tag}"), &got_len, &want_len));
    }
    let (u, u2) = (us[0], us[1]);

    // scatter_rows over the distinct videos (a repeated video would be a write race).
    let mut distinct: Vec<usize> = Vec::new();
    for &v in &c.index {
        if !distinct.contains(&v) {
            distinct.push(v);
        }
    }
    let (sb, su, d) = (distinct.len(), distinct.iter().map(|&v| lengths[v]).max().unwrap_or(0), gpu::heads::CLASSES);
    let slens: Vec<usize> = distinct.iter().map(|&v| lengths[v]).collect();
    // Two tensors (two models' probabilities), each its block of src and of dst.
    let block = sb * su * d;
    let mut src = random_vec(2 * block, c.seed + 100);
    fill_padding(&mut src[..block], &slens, su, d, GARBAGE);
    fill_padding(&mut src[block..], &slens, su, d, GARBAGE);
    let src = f32s(&src);
    let srcb = upload(ctx, "batch rows", &src)?;
    let dst = upload(ctx, "split rows", &vec![SENTINEL; 2 * n_utt * d + 5])?;
    let sidx = upload(ctx, "index", &u32s(&distinct))?;
    let problems: Vec<_> =
        (0..2).map(|z| gpu::gather::GatherProblem::new(d, z * block, z * n_utt * d, su, 0)).collect();
    let p = gpu::gather::GatherParams::new(sb);
    let scatter = gpu::gather::scatter_rows(ctx, &dst, &srcb, &data, &sidx, p, &problems, 2)?;
    run(ctx, &[&scatter])?;
    let mut want = vec![SENTINEL; 2 * n_utt * d + 5];
    for z in 0..2 {
        for (bi, &v) in distinct.iter().enumerate() {
            let (to, from) = (z * n_utt * d + starts[v] * d, z * block + bi * su * d);
            want[to..to + lengths[v] * d].copy_from_slice(&src[from..from + lengths[v] * d]);
        }
    }
    let got = read_f32(ctx, &dst, 2 * n_utt * d + 5)?;
    Ok(vec![
        CheckRow::new("gather_forward", format!("N_utt={n_utt} B={b} U={u} and {u2} D={:?}+7", c.dims), gathered),
        CheckRow::new(
            "scatter_rows",
            format!("N_utt={n_utt} B={sb} U={su} D={d}, 2 tensors"),
            vec![compare_bits("split rows", &got, &want)],
        ),
    ])
}
