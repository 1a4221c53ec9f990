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

/// Mirrors `GatherParams` in gather.wgsl: up to 4 tensors gathered by one launch.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    pub b: u32,
    pub u: u32,
    /// Tensors in the launch (grid z).
    pub tensors: u32,
    /// 1: tensor 0 also writes the batch lengths.
    pub write_len: u32,
    /// Row width of tensor z.
    pub d: [u32; 4],
    /// Element offset of tensor z's block in the source (the split's rows).
    pub src_off: [u32; 4],
    /// Element offset of tensor z's block in the output.
    pub dst_off: [u32; 4],
}

fn c32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl GatherParams {
    /// A (B, U) batch with no tensors yet.
    pub fn new(b: usize, u: usize, write_len: bool) -> GatherParams {
        GatherParams { b: c32(b), u: c32(u), write_len: u32::from(write_len), ..bytemuck::Zeroable::zeroed() }
    }

    /// One more tensor (at most 4): rows of width `d` from the source block at
    /// `src_off` into the output block at `dst_off`.
    pub fn tensor(mut self, d: usize, src_off: usize, dst_off: usize) -> GatherParams {
        let z = self.tensors as usize;
        self.d[z] = c32(d);
        self.src_off[z] = c32(src_off);
        self.dst_off[z] = c32(dst_off);
        self.tensors += 1;
        self
    }

    fn max_d(&self) -> usize {
        self.d[..self.tensors as usize].iter().copied().max().unwrap_or(0) as usize
    }
}

/// A split on the GPU: every tensor's rows as blocks of one buffer.
pub struct GpuDataset {
    /// Blocks: labels (N_utt, 7), then the features (N_utt, D_m) of each present modality.
    pub rows: wgpu::Buffer,
    pub dims: [usize; 3],
    /// Element offset of the labels' block in `rows` (0).
    pub labels_off: usize,
    /// Element offset of modality m's block in `rows`, if the split has it.
    pub features_off: [Option<usize>; 3],
    pub offsets: wgpu::Buffer,
    pub lengths: wgpu::Buffer,
    pub host_lengths: Vec<usize>,
    /// Host copy of the offsets: first utterance of each video.
    pub host_offsets: Vec<usize>,
}

impl GpuDataset {
    pub fn upload(
        ctx: &GpuContext,
        features: [Option<&[f32]>; 3],
        dims: [usize; 3],
        labels: &[f32],
        lengths: &[usize],
    ) -> Result<GpuDataset, GpuError> {
        let mut rows = labels.to_vec();
        let mut features_off = [None; 3];
        for m in 0..3 {
            if let Some(f) = features[m] {
                features_off[m] = Some(rows.len());
                rows.extend_from_slice(f);
            }
        }
        let host_offsets: Vec<usize> = lengths
            .iter()
            .scan(0usize, |acc, &l| {
                let start = *acc;
                *acc += l;
                Some(start)
            })
            .collect();
        let to_u32 = |v: &[usize]| v.iter().map(|&x| u32::try_from(x).unwrap_or(u32::MAX)).collect::<Vec<u32>>();
        let (offsets, lens) = (to_u32(&host_offsets), to_u32(lengths));
        Ok(GpuDataset {
            rows: buffers::upload(ctx, "split rows (labels, features)", &rows)?,
            dims,
            labels_off: 0,
            features_off,
            offsets: buffers::upload(ctx, "video offsets", &offsets)?,
            lengths: buffers::upload(ctx, "video lengths", &lens)?,
            host_lengths: lengths.to_vec(),
            host_offsets,
        })
    }
}

/// Every tensor of `p` gathered from `data.rows` into its block of `out` in one launch,
/// and (write_len) the batch lengths into `out_len` (B).
pub fn gather_forward(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    out_len: &wgpu::Buffer,
    data: &GpuDataset,
    index: &wgpu::Buffer,
    p: GatherParams,
) -> Result<Launch<GatherParams>, GpuError> {
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Read, Bind::Write, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Gather, "gather_forward", &binds)?;
    Launch::new(ctx, k, &[&data.rows, &data.offsets, &data.lengths, index, out, out_len], p, |p| {
        let [x, y, _] = grid_1d(p.b as usize * p.u as usize * p.max_d(), WORKGROUP);
        [x, y, p.tensors]
    })
}

/// dst (N_utt, D) rows of the videos `index` (B) = src (B, U, D) at their real
/// positions: the transpose of `gather_forward`, used to collect predictions.
/// Tensor z (grid z) reads src at `src_off[z]` and writes dst at `dst_off[z]`
/// (the models of a fused engine: one tensor each).
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
        let [x, y, _] = grid_1d(p.b as usize * p.u as usize * p.max_d(), WORKGROUP);
        [x, y, p.tensors]
    })
}
