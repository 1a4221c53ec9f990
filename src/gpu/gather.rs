//! The dataset on the GPU and the launcher of `shaders/gather.wgsl`, which builds a
//! padded batch from an index list of videos without touching the host.
//! Letters: N_utt utterances in the split, D_m a modality's width, B, U.

use super::buffers;
use super::context::{GpuContext, GpuError};
use super::launch::Launch;
use super::pipelines::{grid_1d, Bind, Shader};

pub const WORKGROUP: u32 = 256;
/// Label columns per utterance: sentiment score, then the six emotion intensities.
pub const LABEL_WIDTH: usize = 7;

/// Mirrors `GatherParams` in gather.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    pub b: u32,
    pub u: u32,
    pub d: u32,
    pub write_len: u32,
}

/// One split of the dataset, uploaded once.
pub struct GpuDataset {
    /// Per modality in T, A, V order: (N_utt, D_m) utterance features, `None` if absent.
    pub features: [Option<wgpu::Buffer>; 3],
    pub dims: [usize; 3],
    /// (N_utt, 7): sentiment score, six emotion intensities (zeros without emotions).
    pub labels: wgpu::Buffer,
    /// (N_videos) u32: first utterance of each video.
    pub offsets: wgpu::Buffer,
    /// (N_videos) u32: utterances per video.
    pub lengths: wgpu::Buffer,
    /// Host copy of the lengths (to size batches: U = max length of the batch).
    pub host_lengths: Vec<usize>,
}

impl GpuDataset {
    /// Upload features (each (N_utt, D_m) row-major f32), labels (N_utt, 7) and per-video lengths.
    pub fn upload(
        ctx: &GpuContext,
        features: [Option<&[f32]>; 3],
        dims: [usize; 3],
        labels: &[f32],
        lengths: &[usize],
    ) -> Result<GpuDataset, GpuError> {
        let names = ["text features", "audio features", "video features"];
        let mut feats: [Option<wgpu::Buffer>; 3] = Default::default();
        for m in 0..3 {
            if let Some(f) = features[m] {
                feats[m] = Some(buffers::upload(ctx, names[m], f)?);
            }
        }
        let mut offsets = Vec::with_capacity(lengths.len());
        let mut acc = 0u32;
        for &l in lengths {
            offsets.push(acc);
            acc = acc.saturating_add(u32::try_from(l).unwrap_or(u32::MAX));
        }
        let lens: Vec<u32> = lengths.iter().map(|&l| u32::try_from(l).unwrap_or(u32::MAX)).collect();
        Ok(GpuDataset {
            features: feats,
            dims,
            labels: buffers::upload(ctx, "labels", labels)?,
            offsets: buffers::upload(ctx, "video offsets", &offsets)?,
            lengths: buffers::upload(ctx, "video lengths", &lens)?,
            host_lengths: lengths.to_vec(),
        })
    }
}

/// out (B, U, D) = rows of `src` (N_utt, D) for the videos `index` (B) u32, zero
/// padded; with `write_len`, `out_len` (B) u32 = their lengths (bind any u32
/// buffer otherwise).
#[allow(clippy::too_many_arguments)]
pub fn gather_forward(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    out_len: &wgpu::Buffer,
    src: &wgpu::Buffer,
    data: &GpuDataset,
    index: &wgpu::Buffer,
    p: GatherParams,
) -> Result<Launch<GatherParams>, GpuError> {
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Read, Bind::Write, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Gather, "gather_forward", &binds)?;
    Launch::new(ctx, k, &[src, &data.offsets, &data.lengths, index, out, out_len], p, |p| {
        grid_1d(p.b as usize * p.u as usize * p.d as usize, WORKGROUP)
    })
}

/// dst (N_utt, D) rows of the videos `index` (B) = src (B, U, D) at their real
/// positions: the transpose of `gather_forward`, used to collect predictions.
pub fn scatter_rows(
    ctx: &GpuContext,
    dst: &wgpu::Buffer,
    src: &wgpu::Buffer,
    data: &GpuDataset,
    index: &wgpu::Buffer,
    p: GatherParams,
) -> Result<Launch<GatherParams>, GpuError> {
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Read, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Gather, "scatter_rows", &binds)?;
    Launch::new(ctx, k, &[src, &data.offsets, &data.lengths, index, dst], p, |p| {
        grid_1d(p.b as usize * p.u as usize * p.d as usize, WORKGROUP)
    })
}
