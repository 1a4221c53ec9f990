//! The dataset on the GPU and the launcher of `shaders/gather.wgsl`, which builds a
//! padded batch from an index list of videos without touching the host.
//! Letters: N_utt utterances in the split, D_m a modality's width, B, U.

use super::buffers;
use super::context::{GpuContext, GpuError};
use super::launch::{Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use super::wgsl::Const;

pub const WORKGROUP: u32 = 256;
/// Label columns per utterance: sentiment score, then the six emotion intensities.
pub const LABEL_WIDTH: usize = 7;

/// Mirrors `GatherParams` in gather.wgsl: what the problems of one launch share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherParams {
    /// Videos in each batch.
    pub b: u32,
    /// The largest `u` of the problems (set by the launchers): sizes the grid.
    pub u: u32,
    /// Problems in the launch (grid z; set by the launchers).
    pub problems: u32,
    /// The widest tensor of the problems (set by the launchers): sizes the grid.
    pub d_max: u32,
    /// gather_forward: columns of a row each invocation copies, a run of
    /// consecutive ones (set by the launch, [`columns_per_invocation`]);
    /// scatter_rows: 1.
    pub run: u32,
    pub _pad: [u32; 3],
}

/// `GatherProblem::len_off` of a problem that writes no lengths.
pub const NO_LEN: u32 = u32::MAX;

/// The constants of shaders/gather.wgsl, written into its module from these values.
pub const WGSL_CONSTS: [Const; 2] = [
    Const::new("WG", WORKGROUP, "workgroup size"),
    Const::new("NO_LEN", NO_LEN, "len_off of a problem that writes no lengths"),
];

/// Mirrors `GatherProblem` in gather.wgsl: one tensor of one batch (gather) or one
/// model's block (scatter), as element offsets into the bound buffers.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherProblem {
    /// Row width of the tensor.
    pub d: u32,
    /// Its block in the source (gather: the split's rows; scatter: the batch's (B, u, D)).
    pub src_off: u32,
    /// Its block in the output.
    pub dst_off: u32,
    /// Its batch's B video indices in the index buffer.
    pub index_off: u32,
    /// Its batch's padded length (>= every gathered length).
    pub u: u32,
    /// Gather: [`NO_LEN`], or where the batch's B lengths are written.
    pub len_off: u32,
    pub _pad: [u32; 2],
}

fn c32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl GatherParams {
    /// Batches of `b` videos (the launchers fill in the rest from the problem list).
    pub fn new(b: usize) -> GatherParams {
        GatherParams { b: c32(b), run: 1, ..bytemuck::Zeroable::zeroed() }
    }
}

impl GatherProblem {
    /// Rows of width `d` from the source block at `src_off` into the output block
    /// at `dst_off`, for the batch of padded length `u` whose video indices sit at
    /// `index_off`; no lengths written.
    pub fn new(d: usize, src_off: usize, dst_off: usize, u: usize, index_off: usize) -> GatherProblem {
        GatherProblem {
            d: c32(d),
            src_off: c32(src_off),
            dst_off: c32(dst_off),
            index_off: c32(index_off),
            u: c32(u),
            len_off: NO_LEN,
            _pad: [0; 2],
        }
    }

    /// Also write the batch's lengths at `len_off` of the length output.
    pub fn lengths(mut self, len_off: usize) -> GatherProblem {
        self.len_off = c32(len_off);
        self
    }
}

/// A gather (or scatter) launch over a problem list, built for up to `capacity` problems.
pub struct GatherLaunch {
    launch: Launch<GatherParams>,
    list: ProblemList<GatherProblem>,
}

/// Columns of a row one gather_forward invocation copies on `profile`'s
/// device: 1 on a GPU (neighbouring lanes on neighbouring elements, coalesced);
/// 32 on a software device, where an invocation's own loads (its video's
/// index, length and offset: storage loads that each loop over the SIMD lanes)
/// cost several times an element's copy, and the grid of B * U * D_max
/// invocations per tensor mostly returned at once. Measured on llvmpipe in
/// round 11 of docs/perf-notes.md.
pub fn columns_per_invocation(profile: &super::profile::DeviceProfile) -> u32 {
    if profile.is_software() {
        32
    } else {
        1
    }
}

fn grid(p: &GatherParams) -> [u32; 3] {
    let chunks = p.d_max.div_ceil(p.run.max(1));
    let [x, y, _] = grid_1d(p.b as usize * p.u as usize * chunks as usize, WORKGROUP);
    [x, y, p.problems]
}

/// The shared params completed from the list; an empty problem (u or d 0) is refused.
fn complete(p: GatherParams, problems: &[GatherProblem]) -> Result<GatherParams, GpuError> {
    if let Some(z) = problems.iter().position(|q| q.u == 0 || q.d == 0) {
        return Err(GpuError::Validation(format!("gather problem {z} has no rows (u 0 or width 0)")));
    }
    Ok(GatherParams {
        u: problems.iter().map(|q| q.u).max().unwrap_or(0),
        problems: c32(problems.len()),
        d_max: problems.iter().map(|q| q.d).max().unwrap_or(0),
        ..p
    })
}

impl GatherLaunch {
    /// New params and problems (1..=capacity) for the next submit.
    pub fn update(&mut self, ctx: &GpuContext, p: GatherParams, problems: &[GatherProblem]) -> Result<(), GpuError> {
        let p = complete(GatherParams { run: self.launch.params.run, ..p }, problems)?;
        self.list.write(ctx, problems)?;
        self.launch.update(ctx, p);
        Ok(())
    }

    /// gather_forward only: copy `run` columns per invocation from now on
    /// (instead of the device's): `cimnet check` runs several on any device.
    pub fn set_columns_per_invocation(&mut self, ctx: &GpuContext, run: u32) {
        let p = GatherParams { run: run.max(1), ..self.launch.params };
        self.launch.update(ctx, p);
    }

    pub fn record(&self, rec: &mut Recorder) {
        self.launch.record(rec);
    }
}

impl Recordable for GatherLaunch {
    fn record_into(&self, rec: &mut Recorder) {
        self.launch.record(rec);
    }
}

fn launch(
    ctx: &GpuContext,
    entry: &'static str,
    binds: &[Bind],
    buffers: &[&wgpu::Buffer],
    p: GatherParams,
    problems: &[GatherProblem],
    capacity: usize,
) -> Result<GatherLaunch, GpuError> {
    let p = complete(p, problems)?;
    let list = ProblemList::along_z(ctx, entry, problems, capacity)?;
    let k = ctx.pipelines.get(ctx, Shader::Gather, entry, binds)?;
    let mut bound = buffers.to_vec();
    bound.push(&list.buffer);
    let launch = Launch::new(ctx, k, &bound, p, grid)?;
    Ok(GatherLaunch { launch, list })
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

/// Every problem's tensor gathered from `data.rows` into its block of `out` in one
/// launch, and the lengths of problems that ask into `out_len`.
#[allow(clippy::too_many_arguments)]
pub fn gather_forward(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    out_len: &wgpu::Buffer,
    data: &GpuDataset,
    index: &wgpu::Buffer,
    p: GatherParams,
    problems: &[GatherProblem],
    capacity: usize,
) -> Result<GatherLaunch, GpuError> {
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Read, Bind::Write, Bind::Write, Bind::Read];
    let bufs = [&data.rows, &data.offsets, &data.lengths, index, out, out_len];
    let p = GatherParams { run: columns_per_invocation(&ctx.profile), ..p };
    launch(ctx, "gather_forward", &binds, &bufs, p, problems, capacity)
}

/// dst (N_utt, D) rows of each problem's videos = src (B, u, D) at their real
/// positions: the transpose of `gather_forward`, used to collect predictions.
/// Problem z reads src at its `src_off` and writes dst at its `dst_off` (the
/// models of a fused engine: one problem each).
#[allow(clippy::too_many_arguments)]
pub fn scatter_rows(
    ctx: &GpuContext,
    dst: &wgpu::Buffer,
    src: &wgpu::Buffer,
    data: &GpuDataset,
    index: &wgpu::Buffer,
    p: GatherParams,
    problems: &[GatherProblem],
    capacity: usize,
) -> Result<GatherLaunch, GpuError> {
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Read, Bind::Write, Bind::Read];
    let bufs = [src, &data.offsets, &data.lengths, index, dst];
    launch(ctx, "scatter_rows", &binds, &bufs, GatherParams { run: 1, ..p }, problems, capacity)
}
