//! The scheduler: the whole model of MODEL.md on the GPU. The dataset is uploaded
//! once; a training step gathers its batch on the GPU from an index list and
//! records forward, loss, backward and Adam into ONE command buffer with no
//! readback; the loss accumulates on the GPU and is read once per epoch.
//! Inference runs the same forward and scatters the probabilities into a
//! split-wide buffer that is read once per split.
//!
//! Every launch is built once for the largest batch (B_max videos, U_max
//! utterances) and re-parameterised per batch with `update` (uniform writes
//! only). The backward walks the forward schedule in reverse, one call per line.
//! Letters: B, U, K_m input dims, H, D, R (rw), P = 2M GRU problems.

use crate::config::{AdamConfig, Block, Modality, ModelConfig, EMOTIONS, EMOTION_LABELS};
use crate::cpu::dropout::stream;
use crate::data::{Dataset, SplitName};
use crate::engine::{step_seed, Engine, EngineError, EngineState, LossSums, Predictions};
use crate::params::{Layout, ParamStore};

use super::adam::{adam_step, AdamParams};
use super::attention::{
    attention_backward, attention_forward, AttentionBackward, AttentionForward, AttentionParams, AttentionSaved,
};
use super::buffers;
use super::context::{GpuContext, GpuError};
use super::dropout::{dropout_forward, DropoutParams};
use super::gather::{gather_forward, scatter_rows, GatherParams, GpuDataset, LABEL_WIDTH};
use super::gru::{self, gru_backward, gru_forward, GruBackward, GruError, GruForward, GruParams};
use super::heads::{heads_backward, heads_forward, HeadsBackward, HeadsForward, HeadsParams, CLASSES, LOSS_LEN};
use super::launch::{Launch, Recordable};
use super::linear::{linear_backward, linear_backward_weights, linear_forward, linear_forward_repr, LinearParams};
use super::pipelines::Recorder;

/// What the GPU engine can refuse or fail at; it reaches the training loop
/// whole inside `EngineError::Gpu`.
#[derive(Debug, thiserror::Error)]
pub enum GpuEngineError {
    #[error(transparent)]
    Context(#[from] GpuError),
    #[error(transparent)]
    Gru(#[from] GruError),
    /// Inputs the engine does not take (what it was given, what it takes).
    #[error("GPU engine: {0}")]
    Input(String),
}

impl From<GpuEngineError> for EngineError {
    fn from(e: GpuEngineError) -> Self {
        EngineError::Gpu(Box::new(e))
    }
}

impl From<GpuError> for EngineError {
    fn from(e: GpuError) -> Self {
        GpuEngineError::from(e).into()
    }
}

impl From<GruError> for EngineError {
    fn from(e: GruError) -> Self {
        GpuEngineError::from(e).into()
    }
}

/// One attention pair (or self-attention) of the representation.
struct Pair {
    x: usize, // index into `mods`
    y: usize,
    r_xy: usize,
    r_yx: Option<usize>,
    m: wgpu::Buffer, // (B, U, U)
    n: wgpu::Buffer, // (2, B, U, U)
    o: wgpu::Buffer, // (2, B, U, D)
}

/// Per-modality activations. Each (B_max, U_max, width).
struct Branch {
    modality: Modality,
    feat: wgpu::Buffer,  // (B, U, D) dropout(relu(dense)): the matrix T, A or V
    dfeat: wgpu::Buffer, // (B, U, D) gradient of feat (accumulated)
}

/// A split on the GPU with its gathers and prediction scatter.
struct SplitData {
    data: GpuDataset,
    gather: Launch<GatherParams>, // labels and every modality's features
    probs: wgpu::Buffer,          // (N_utt, 9) predictions
    scatter: Launch<GatherParams>,
}

/// The launches of one step, in schedule order.
struct Launches {
    proj: Vec<Launch<LinearParams>>, // per modality: both directions' input projections
    gru_f: GruForward,
    drop_gru: Launch<DropoutParams>,  // every modality's GRU-site dropout
    dense: Vec<Launch<LinearParams>>, // per modality: dense, relu, dense-site dropout, plain block of R
    att_f: Vec<AttentionForward>,
    heads_train: HeadsForward,
    heads_eval: HeadsForward,
    // backward
    heads_b: HeadsBackward, // also the plain blocks' gradients
    att_b: Vec<AttentionBackward>,
    dense_bx: Vec<Launch<LinearParams>>, // d(gru out) = GRU-site mask * (g W), g from dfeat
    dense_bw: Vec<Launch<LinearParams>>,
    gru_b: GruBackward,
    proj_bw: Vec<Launch<LinearParams>>,
    adam: Launch<AdamParams>,
}

/// The GPU backend of the training loop.
pub struct GpuEngine {
    ctx: GpuContext,
    config: ModelConfig,
    layout: Layout,
    adam_cfg: AdamConfig,
    run_seed: u64,
    mods: Vec<Modality>,
    b_max: usize,
    // Flat stores (layout.len).
    w: wgpu::Buffer,
    grads: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    // Batch inputs.
    index: wgpu::Buffer, // (B) u32 video indices
    len: wgpu::Buffer,   // (B) u32
    /// Where each modality's gathered features (B, U, K) start in the batch inputs
    /// (labels (B, U, 7) at 0, then one block per modality).
    x_off: Vec<usize>,
    branches: Vec<Branch>,
    // Shared activations.
    gi: wgpu::Buffer,         // (P, B, U, 3H) input-side gate gradients
    probs: wgpu::Buffer,      // (B, U, 9)
    train_loss: wgpu::Buffer, // (4) accumulated over steps
    eval_loss: wgpu::Buffer,  // (4) accumulated over a split
    pairs: Vec<Pair>,
    /// Column of each modality's plain block in R, if it has one.
    plain_off: Vec<Option<usize>>,
    splits: [Option<SplitData>; 3],
    launches: Launches,
    adam_step: u32,
    dispatches: u32,
    /// Keeps the buffers the launches bind alive.
    _keep: Vec<wgpu::Buffer>,
}

fn u32s(v: &[usize]) -> Vec<u32> {
    v.iter().map(|&x| u32::try_from(x).unwrap_or(u32::MAX)).collect()
}

/// Features (N_utt, D_m) per modality and labels (N_utt, 7) of a split, flattened.
fn flatten(ds: &Dataset, split: SplitName) -> ([Vec<f32>; 3], Vec<f32>, Vec<usize>) {
    let videos = ds.split(split);
    let mut feats: [Vec<f32>; 3] = Default::default();
    let mut labels = Vec::new();
    for v in videos {
        for m in Modality::ALL {
            if let Some(f) = v.feature(m) {
                feats[m.index()].extend_from_slice(f);
            }
        }
        for i in 0..v.len {
            labels.push(v.sentiment[i]);
            match &v.emotion {
                Some(e) => labels.extend_from_slice(&e[i * EMOTIONS..(i + 1) * EMOTIONS]),
                None => labels.extend_from_slice(&[0.0; EMOTIONS]),
            }
        }
    }
    (feats, labels, videos.iter().map(|v| v.len).collect())
}

impl GpuEngine {
    /// Upload the parameters and every split of `data`; build every launch for
    /// batches of up to `batch` videos.
    pub fn new(
        ctx: GpuContext,
        params: &ParamStore,
        data: &Dataset,
        adam_cfg: AdamConfig,
        run_seed: u64,
        batch: usize,
    ) -> Result<GpuEngine, EngineError> {
        let cfg = params.config.clone();
        let layout = params.layout.clone();
        let mods = cfg.modalities.modalities();
        let (h, d, rw) = (cfg.hidden, cfg.dense, cfg.repr_width());
        let b_max = batch.max(1);
        let u_max = SplitName::ALL.iter().flat_map(|&s| data.lens(s)).max().unwrap_or(1).max(1);
        let bu = b_max * u_max;
        let nm = mods.len();
        let st = |label: &str, n: usize| buffers::storage::<f32>(&ctx, label, n);

        let w = buffers::upload(&ctx, "parameters", &params.values)?;
        let grads = st("gradients", layout.len)?;
        let m = st("adam m", layout.len)?;
        let v = st("adam v", layout.len)?;
        let index = buffers::storage::<u32>(&ctx, "batch video indices", b_max)?;
        let len = buffers::storage::<u32>(&ctx, "batch lengths", b_max)?;
        // Blocks 4-aligned so that the vec4 kernels can read them.
        let mut x_off = Vec::with_capacity(nm);
        let mut inputs_len = (bu * LABEL_WIDTH).next_multiple_of(4);
        for &md in &mods {
            x_off.push(inputs_len);
            inputs_len += (bu * cfg.dim(md)).next_multiple_of(4);
        }
        let inputs = st("batch inputs (labels, features)", inputs_len)?;
        let mut branches = Vec::with_capacity(nm);
        for &md in &mods {
            let n = md.name();
            branches.push(Branch {
                modality: md,
                feat: st(&format!("{n} representation block"), bu * d)?,
                dfeat: st(&format!("{n} block gradient"), bu * d)?,
            });
        }
        let p_count = 2 * nm;
        let xp = st("gru xp", p_count * bu * 3 * h)?;
        let cache = st("gru cache", p_count * 5 * bu * h)?;
        let gru_out = st("gru output", nm * bu * 2 * h)?;
        let dgru_out = st("gru output gradient", nm * bu * 2 * h)?;
        let dense_in = st("dense input", nm * bu * 2 * h)?; // (M, B, U, 2H) dropout(gru output), packed like it
        let gi = st("gru gi", p_count * bu * 3 * h)?;
        let gh = st("gru gh", p_count * bu * 3 * h)?;
        let carry = st("gru carry", p_count * b_max * h)?;
        let r = st("representation", bu * rw)?;
        let dr = st("representation gradient", bu * rw)?;
        let probs = st("probabilities", bu * CLASSES)?;
        let dz = st("logit gradients", bu * CLASSES)?;
        let row_loss = st("row losses", bu * 2)?;
        let train_loss = st("train loss", LOSS_LEN)?;
        let eval_loss = st("eval loss", LOSS_LEN)?;
        let dm = st("attention dM scratch", 2 * bu * u_max)?;

        // Attention pairs with their column offsets in R.
        let blocks = cfg.representation();
        let col = |b: Block| blocks.iter().position(|&x| x == b).map(|k| k * d);
        let pos = |md: Modality| mods.iter().position(|&x| x == md).expect("pair modality is used");
        let mut pairs = Vec::new();
        for (x, y) in cfg.attention_pairs() {
            let r_xy = col(Block::Att(x, y)).expect("pair block in R");
            let r_yx = if x == y { None } else { col(Block::Att(y, x)) };
            pairs.push(Pair {
                x: pos(x),
                y: pos(y),
                r_xy,
                r_yx,
                m: st("attention M", bu * u_max)?,
                n: st("attention N", 2 * bu * u_max)?,
                o: st("attention O", 2 * bu * d)?,
            });
        }
        let plain: Vec<(usize, usize)> = blocks
            .iter()
            .enumerate()
            .filter_map(|(k, b)| match b {
                Block::Plain(md) => Some((pos(*md), k * d)),
                Block::Att(..) => None,
            })
            .collect();

        // Splits: uploaded once.
        let mut splits: [Option<SplitData>; 3] = Default::default();
        for s in SplitName::ALL {
            if data.split(s).is_empty() {
                continue;
            }
            let (feats, lab, lens) = flatten(data, s);
            let fr: [Option<&[f32]>; 3] =
                [0, 1, 2].map(|i| (data.dims[i] > 0 && cfg.dims[i] > 0).then(|| feats[i].as_slice()));
            let gd = GpuDataset::upload(&ctx, fr, data.dims, &lab, &lens)?;
            for &md in &mods {
                if gd.features_off[md.index()].is_none() {
                    return Err(EngineError::from(GpuEngineError::Input(format!(
                        "the data has no {} features",
                        md.name()
                    ))));
                }
            }
            let p = gather_params(&cfg, &mods, &x_off, &gd, Shape { b: b_max, u: u_max });
            let gather = gather_forward(&ctx, &inputs, &len, &gd, &index, p)?;
            let n_utt: usize = lens.iter().sum();
            let split_probs = st(&format!("{s} predictions"), n_utt * CLASSES)?;
            let sp = GatherParams::new(b_max, u_max, false).tensor(CLASSES, 0, 0);
            let scatter = scatter_rows(&ctx, &split_probs, &probs, &gd, &index, sp)?;
            splits[s.index()] = Some(SplitData { data: gd, gather, probs: split_probs, scatter });
        }

        // Launches, built for (B_max, U_max) and dropout on.
        let shape = Shape { b: b_max, u: u_max };
        let pp = ParamsFor { cfg: &cfg, layout: &layout, mods: &mods, x_off: &x_off };
        let seed = 0;
        let mut proj = Vec::new();
        let mut proj_bw = Vec::new();
        for mi in 0..nm {
            let p = pp.projection(mi, shape);
            proj.push(linear_forward(&ctx, &xp, &inputs, &w, &len, p)?);
            proj_bw.push(linear_backward_weights(&ctx, &grads, &gi, &gi, &inputs, &len, p)?);
        }
        let mut plain_off = vec![None; nm];
        for &(mi, off) in &plain {
            plain_off[mi] = Some(off);
        }
        let gp = pp.gru(shape)?;
        // The device's default GRU member (docs/gru-notes.md); the tuner may choose another.
        let member = gru::candidates(&ctx.profile, &gp).first().copied().ok_or(GruError::NoMember)?;
        let gru_f = gru_forward(&ctx, &gru_out, &cache, &xp, &w, &len, &gp, member)?;
        let gru_b = gru_backward(&ctx, &gi, &gh, &carry, &grads, &dgru_out, &cache, &w, &len, &gp, member)?;
        let drop_gru = dropout_forward(&ctx, &dense_in, &gru_out, pp.drop_gru(shape, seed, cfg.dropout))?;
        let mut dense = Vec::new();
        let mut dense_bx = Vec::new();
        let mut dense_bw = Vec::new();
        for (mi, br) in branches.iter().enumerate() {
            let p = pp.dense_forward(mi, shape, seed, cfg.dropout, plain_off[mi]);
            dense.push(linear_forward_repr(&ctx, &br.feat, &r, &dense_in, &w, &len, p)?);
            let p = pp.dense_backward(mi, shape, seed, cfg.dropout);
            dense_bx.push(linear_backward(&ctx, &dgru_out, &br.dfeat, &br.feat, &w, &len, p)?);
            dense_bw.push(linear_backward_weights(&ctx, &grads, &br.dfeat, &br.feat, &dense_in, &len, p)?);
        }
        let mut att_f = Vec::new();
        let mut att_b = Vec::new();
        for pr in &pairs {
            let saved = AttentionSaved { m: &pr.m, n: &pr.n, o: &pr.o };
            let p = AttentionParams::new(b_max, u_max, d, rw, pr.r_xy, pr.r_yx);
            let (bx, by) = (&branches[pr.x], &branches[pr.y]);
            att_f.push(attention_forward(&ctx, &r, &saved, &bx.feat, &by.feat, &len, p)?);
            let dy = (pr.x != pr.y).then_some(&by.dfeat);
            att_b.push(attention_backward(&ctx, &bx.dfeat, dy, &dm, &dr, &saved, &bx.feat, &by.feat, &len, p)?);
        }
        let hp = pp.heads(shape);
        let heads_train = heads_forward(&ctx, &probs, &dz, &row_loss, &train_loss, &r, &w, &inputs, &len, hp)?;
        let heads_eval = heads_forward(&ctx, &probs, &dz, &row_loss, &eval_loss, &r, &w, &inputs, &len, hp)?;
        let dblocks = [0, 1, 2].map(|s| branches.get(s).map_or(&ctx.dummy, |b| &b.dfeat));
        let heads_b = heads_backward(&ctx, &dr, dblocks, &grads, &dz, &r, &w, &len, hp.with_plain(&plain_off))?;
        let adam = adam_step(&ctx, &w, &grads, &m, &v, AdamParams::new(layout.len, 1, &adam_cfg, true))?;

        let launches = Launches {
            proj,
            gru_f,
            drop_gru,
            dense,
            att_f,
            heads_train,
            heads_eval,
            heads_b,
            att_b,
            dense_bx,
            dense_bw,
            gru_b,
            proj_bw,
            adam,
        };
        // The batch inputs, (M, B, U, 2H) d(gru out), (B, U, R) R and dR, and the GRU scratch.
        let keep = vec![inputs, dgru_out, dense_in, r, dr, xp, cache, gru_out, gh, carry, dz, row_loss, dm];
        let engine = GpuEngine {
            ctx,
            config: cfg,
            layout,
            adam_cfg,
            run_seed,
            mods,
            b_max,
            w,
            grads,
            m,
            v,
            index,
            len,
            x_off,
            branches,
            gi,
            probs,
            train_loss,
            eval_loss,
            pairs,
            plain_off,
            splits,
            launches,
            adam_step: 0,
            dispatches: 0,
            _keep: keep,
        };
        engine.ctx.check()?;
        Ok(engine)
    }

    /// Dispatches recorded by the last training step.
    pub fn dispatches_per_step(&self) -> u32 {
        self.dispatches
    }

    /// Point every launch at a (b, u) batch; `dropout` is (step seed, p) or None.
    fn set_shape(&mut self, shape: Shape, seed: u32, p_drop: f64) -> Result<(), EngineError> {
        let ctx = &self.ctx;
        let pp = ParamsFor { cfg: &self.config, layout: &self.layout, mods: &self.mods, x_off: &self.x_off };
        let l = &mut self.launches;
        l.drop_gru.update(ctx, pp.drop_gru(shape, seed, p_drop));
        for mi in 0..self.branches.len() {
            let p = pp.projection(mi, shape);
            l.proj[mi].update(ctx, p);
            l.proj_bw[mi].update(ctx, p);
            l.dense[mi].update(ctx, pp.dense_forward(mi, shape, seed, p_drop, self.plain_off[mi]));
            let p = pp.dense_backward(mi, shape, seed, p_drop);
            l.dense_bx[mi].update(ctx, p);
            l.dense_bw[mi].update(ctx, p);
        }
        let gp = pp.gru(shape)?;
        l.gru_f.update(ctx, &gp)?;
        l.gru_b.update(ctx, &gp)?;
        let d = self.config.dense;
        let rw = self.config.repr_width();
        for (k, pr) in self.pairs.iter().enumerate() {
            let p = AttentionParams::new(shape.b, shape.u, d, rw, pr.r_xy, pr.r_yx);
            l.att_f[k].update(ctx, p);
            l.att_b[k].update(ctx, p);
        }
        let hp = pp.heads(shape);
        l.heads_train.update(ctx, hp);
        l.heads_eval.update(ctx, hp);
        l.heads_b.update(ctx, hp.with_plain(&self.plain_off));
        Ok(())
    }

    /// Upload a batch's video indices and size every launch for it.
    fn prepare_batch(
        &mut self,
        split: SplitName,
        videos: &[usize],
        seed: u32,
        p_drop: f64,
    ) -> Result<Shape, EngineError> {
        let sd = self.splits[split.index()]
            .as_ref()
            .ok_or_else(|| EngineError::from(GpuEngineError::Input(format!("the {split} split is empty"))))?;
        if videos.is_empty() || videos.len() > self.b_max {
            return Err(EngineError::from(GpuEngineError::Input(format!(
                "a batch has {} videos; this engine takes 1..={}",
                videos.len(),
                self.b_max
            ))));
        }
        let lens = &sd.data.host_lengths;
        let u = videos.iter().map(|&v| lens[v]).max().unwrap_or(1);
        let shape = Shape { b: videos.len(), u };
        self.ctx.queue.write_buffer(&self.index, 0, bytemuck::cast_slice(&u32s(videos)));
        let sd = self.splits[split.index()].as_mut().expect("checked above");
        let p = gather_params(&self.config, &self.mods, &self.x_off, &sd.data, shape);
        sd.gather.update(&self.ctx, p);
        sd.scatter.update(&self.ctx, GatherParams::new(shape.b, shape.u, false).tensor(CLASSES, 0, 0));
        self.set_shape(shape, seed, p_drop)?;
        Ok(shape)
    }

    /// Record the forward (gather through heads) of the current batch.
    fn record_forward(&self, rec: &mut Recorder, split: SplitName, train: bool) {
        let l = &self.launches;
        if let Some(sd) = &self.splits[split.index()] {
            sd.gather.record(rec);
        }
        for p in &l.proj {
            p.record(rec);
        }
        l.gru_f.record_into(rec);
        l.drop_gru.record(rec);
        for k in &l.dense {
            k.record(rec);
        }
        for a in &l.att_f {
            a.record_into(rec);
        }
        if train {
            l.heads_train.record_into(rec);
        } else {
            l.heads_eval.record_into(rec);
        }
    }

    /// Record the backward (and, with `adam`, the optimizer step): the forward
    /// schedule reversed.
    fn record_backward(&self, rec: &mut Recorder, adam: bool) {
        let l = &self.launches;
        l.heads_b.record_into(rec);
        for a in &l.att_b {
            a.record_into(rec);
        }
        for k in &l.dense_bx {
            k.record(rec);
        }
        for k in &l.dense_bw {
            k.record(rec);
        }
        l.gru_b.record_into(rec);
        for k in &l.proj_bw {
            k.record(rec);
        }
        if adam {
            l.adam.record(rec);
        }
    }

    fn read_f64(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<f64>, EngineError> {
        Ok(buffers::read::<f32>(&self.ctx, buf, 0, n)?.into_iter().map(f64::from).collect())
    }

    fn read_loss(&self, buf: &wgpu::Buffer) -> Result<LossSums, EngineError> {
        let l = self.read_f64(buf, LOSS_LEN)?;
        let c = &self.config;
        let ws = if c.tasks.has_sentiment() { c.w_sentiment } else { 0.0 };
        let we = if c.tasks.has_emotion() { c.w_emotion } else { 0.0 };
        Ok(LossSums { loss: ws * l[1] + we * l[2], sentiment: l[1], emotion: l[2], utterances: l[3].round() as u64 })
    }

    fn zero(&self, buf: &wgpu::Buffer) -> Result<(), EngineError> {
        let mut enc = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("clear") });
        enc.clear_buffer(buf, 0, None);
        buffers::submit_and_wait(&self.ctx, enc)?;
        Ok(())
    }

    /// Forward, loss and backward of one batch of the train split WITHOUT the
    /// optimizer step, read back: the loss, the probabilities, every parameter
    /// gradient and the input gradients. `dropout_seed: None` runs without
    /// dropout. For `cimnet grads --backend gpu`, `cimnet check` and the tests.
    pub fn compute_gradients(
        &mut self,
        videos: &[usize],
        dropout_seed: Option<u32>,
    ) -> Result<GpuGradients, EngineError> {
        let p_drop = if dropout_seed.is_some() { self.config.dropout } else { 0.0 };
        let shape = self.prepare_batch(SplitName::Train, videos, dropout_seed.unwrap_or(0), p_drop)?;
        self.zero(&self.eval_loss)?;
        self.zero(&self.grads)?;
        // Input gradients dx = gi W_ih, per modality one (2, B, U, K) buffer (one block
        // per direction), summed on the host.
        let pp = ParamsFor { cfg: &self.config, layout: &self.layout, mods: &self.mods, x_off: &self.x_off };
        let mut dx_bufs = Vec::new();
        let mut dx_launches = Vec::new();
        for (mi, br) in self.branches.iter().enumerate() {
            let n = shape.b * shape.u * self.config.dim(br.modality);
            let buf = buffers::storage::<f32>(&self.ctx, "input gradient", 2 * n)?;
            let mut p = pp.projection(mi, shape);
            p.x_off = [0, u32::try_from(n).unwrap_or(u32::MAX), 0, 0];
            dx_launches.push(linear_backward(&self.ctx, &buf, &self.gi, &self.gi, &self.w, &self.len, p)?);
            dx_bufs.push(buf);
        }
        let mut enc =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gradients") });
        for br in &self.branches {
            enc.clear_buffer(&br.dfeat, 0, None);
        }
        {
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("gradients"), timestamp_writes: None });
            let mut rec = Recorder::new(&mut pass);
            self.record_forward(&mut rec, SplitName::Train, false);
            self.record_backward(&mut rec, false);
            for k in &dx_launches {
                k.record(&mut rec);
            }
        }
        buffers::submit_and_wait(&self.ctx, enc)?;
        let loss = self.read_loss(&self.eval_loss)?;
        let probs = self.read_f64(&self.probs, shape.b * shape.u * CLASSES)?;
        let grads = self.read_f64(&self.grads, self.layout.len)?;
        let mut inputs: [Option<Vec<f64>>; 3] = Default::default();
        for (mi, br) in self.branches.iter().enumerate() {
            let n = shape.b * shape.u * self.config.dim(br.modality);
            let both = self.read_f64(&dx_bufs[mi], 2 * n)?;
            let (f, r) = both.split_at(n);
            inputs[br.modality.index()] = Some(f.iter().zip(r).map(|(a, b)| a + b).collect());
        }
        self.zero(&self.grads)?;
        self.zero(&self.eval_loss)?;
        Ok(GpuGradients { b: shape.b, u: shape.u, loss, probs, grads, inputs })
    }
}

/// What `compute_gradients` reads back (f32 values widened to f64).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuGradients {
    pub b: usize,
    /// Padded length of this batch (its longest video).
    pub u: usize,
    pub loss: LossSums,
    /// (B, U, 9): 2 sentiment probabilities, then 7 emotion probabilities.
    pub probs: Vec<f64>,
    /// Flat, in the parameter layout.
    pub grads: Vec<f64>,
    /// Per modality in T, A, V order: (B, U, K), zero at padding.
    pub inputs: [Option<Vec<f64>>; 3],
}

/// A batch's size.
#[derive(Debug, Clone, Copy)]
struct Shape {
    b: usize,
    u: usize,
}

/// The batch's gather: labels (tensor 0, writing the lengths) into the batch inputs
/// at 0, then each modality's features into its block at `x_off`.
fn gather_params(cfg: &ModelConfig, mods: &[Modality], x_off: &[usize], data: &GpuDataset, s: Shape) -> GatherParams {
    let mut p = GatherParams::new(s.b, s.u, true).tensor(LABEL_WIDTH, data.labels_off, 0);
    for (mi, &md) in mods.iter().enumerate() {
        p = p.tensor(cfg.dim(md), data.features_off[md.index()].unwrap_or(0), x_off[mi]);
    }
    p
}

/// Builds each launch's params for a batch shape (one place for the formulas).
struct ParamsFor<'a> {
    cfg: &'a ModelConfig,
    layout: &'a Layout,
    mods: &'a [Modality],
    /// Each modality's features in the batch inputs.
    x_off: &'a [usize],
}

impl ParamsFor<'_> {
    fn off(&self, name: &str) -> usize {
        self.layout.slice(name).offset
    }
    /// xp blocks of problems 2 mi + dir, both directions in one launch (z = dir):
    /// x W_ih^T + b_ih.
    fn projection(&self, mi: usize, s: Shape) -> LinearParams {
        let md = self.mods[mi];
        let h3 = 3 * self.cfg.hidden;
        let mut p = LinearParams::new(s.b, s.u, self.cfg.dim(md), h3, false, 0, 0);
        for (dir, sfx) in ["", "_reverse"].into_iter().enumerate() {
            let w = self.off(&format!("{}.gru.weight_ih_l0{sfx}", md.name()));
            let b = self.off(&format!("{}.gru.bias_ih_l0{sfx}", md.name()));
            p = p.problem(dir, w, b, self.x_off[mi], (2 * mi + dir) * s.b * s.u * h3);
        }
        p
    }
    fn gru(&self, s: Shape) -> Result<GruParams, GruError> {
        GruParams::new(self.layout, self.mods, s.b, s.u, self.cfg.hidden)
    }
    /// GRU-site dropout of every modality: gru output (M, B, U, 2H) -> dense input, same layout.
    fn drop_gru(&self, s: Shape, seed: u32, p: f64) -> DropoutParams {
        let n = s.b * s.u * 2 * self.cfg.hidden;
        let streams: Vec<u32> = self.mods.iter().map(|m| stream(m.index(), 0)).collect();
        DropoutParams::new(n, seed, 0, p).segments(&streams)
    }
    /// The dense layer of modality mi reading its block of the dense input.
    fn dense(&self, mi: usize, s: Shape) -> LinearParams {
        let n = self.mods[mi].name();
        let (w, b) = (self.off(&format!("{n}.dense.weight")), self.off(&format!("{n}.dense.bias")));
        let h2 = 2 * self.cfg.hidden;
        LinearParams::new(s.b, s.u, h2, self.cfg.dense, true, w, b).problem(0, w, b, mi * s.b * s.u * h2, 0)
    }
    /// feat = dense-site dropout(relu(dense)), also written into R's plain block.
    fn dense_forward(&self, mi: usize, s: Shape, seed: u32, p: f64, plain: Option<usize>) -> LinearParams {
        let p = self.dense(mi, s).dropout(seed, p, [stream(self.mods[mi].index(), 1), 0, 0, 0]);
        match plain {
            Some(off) => p.repr(self.cfg.repr_width(), [off, 0, 0, 0]),
            None => p,
        }
    }
    /// g = dfeat * scale where feat > 0; d(gru out) block = GRU-site mask * (g W).
    fn dense_backward(&self, mi: usize, s: Shape, seed: u32, p: f64) -> LinearParams {
        self.dense(mi, s).dropout(seed, p, [stream(self.mods[mi].index(), 0), 0, 0, 0])
    }
    fn heads(&self, s: Shape) -> HeadsParams {
        HeadsParams { accumulate: 1, ..HeadsParams::new(self.cfg, self.layout, s.b, s.u) }
    }
}

impl Engine for GpuEngine {
    fn describe(&self) -> String {
        format!("gpu: {}", self.ctx.describe())
    }

    fn train_step(&mut self, videos: &[usize], step: u64) -> Result<(), EngineError> {
        let seed = step_seed(self.run_seed, step);
        self.prepare_batch(SplitName::Train, videos, seed, self.config.dropout)?;
        self.adam_step += 1;
        let ap = AdamParams::new(self.layout.len, self.adam_step, &self.adam_cfg, true);
        self.launches.adam.update(&self.ctx, ap);
        let mut enc =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("training step") });
        for br in &self.branches {
            enc.clear_buffer(&br.dfeat, 0, None);
        }
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("training step"),
                timestamp_writes: None,
            });
            let mut rec = Recorder::new(&mut pass);
            self.record_forward(&mut rec, SplitName::Train, true);
            self.record_backward(&mut rec, true);
            self.dispatches = rec.dispatches;
        }
        self.ctx.queue.submit([enc.finish()]);
        // Non-blocking: lets wgpu retire finished work without waiting for this step.
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        Ok(())
    }

    fn take_train_loss(&mut self) -> Result<LossSums, EngineError> {
        let l = self.read_loss(&self.train_loss)?;
        self.zero(&self.train_loss)?;
        Ok(l)
    }

    fn predict(&mut self, split: SplitName, batches: &[Vec<usize>]) -> Result<Predictions, EngineError> {
        self.zero(&self.eval_loss)?;
        for videos in batches {
            self.prepare_batch(split, videos, 0, 0.0)?;
            let mut enc =
                self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("inference") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("inference"),
                    timestamp_writes: None,
                });
                let mut rec = Recorder::new(&mut pass);
                self.record_forward(&mut rec, split, false);
                if let Some(sd) = &self.splits[split.index()] {
                    sd.scatter.record(&mut rec);
                }
            }
            self.ctx.queue.submit([enc.finish()]);
            let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        }
        let loss = self.read_loss(&self.eval_loss)?;
        let Some(sd) = &self.splits[split.index()] else {
            return Ok(Predictions { loss, ..Predictions::default() });
        };
        let lens = &sd.data.host_lengths;
        let n_utt: usize = lens.iter().sum();
        let all = self.read_f64(&sd.probs, n_utt * CLASSES)?;
        let offsets = &sd.data.host_offsets;
        let row = |v: usize, i: usize| &all[(offsets[v] + i) * CLASSES..(offsets[v] + i + 1) * CLASSES];
        let tasks = self.config.tasks;
        let sentiment = tasks
            .has_sentiment()
            .then(|| (0..lens.len()).map(|v| (0..lens[v]).map(|i| [row(v, i)[0], row(v, i)[1]]).collect()).collect());
        let emotion = tasks.has_emotion().then(|| {
            (0..lens.len())
                .map(|v| {
                    (0..lens[v]).map(|i| std::array::from_fn::<f64, EMOTION_LABELS, _>(|k| row(v, i)[2 + k])).collect()
                })
                .collect()
        });
        Ok(Predictions { sentiment, emotion, loss })
    }

    fn state(&mut self) -> Result<EngineState, EngineError> {
        let n = self.layout.len;
        let master = self.read_f64(&self.w, n)?;
        let mut params = ParamStore::zeros(&self.config);
        for (p, &x) in params.values.iter_mut().zip(&master) {
            *p = x as f32;
        }
        Ok(EngineState {
            params,
            master,
            m: self.read_f64(&self.m, n)?,
            v: self.read_f64(&self.v, n)?,
            adam_step: u64::from(self.adam_step),
        })
    }

    fn set_state(&mut self, s: &EngineState) -> Result<(), EngineError> {
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        self.ctx.queue.write_buffer(&self.w, 0, bytemuck::cast_slice(&f32s(&s.master)));
        self.ctx.queue.write_buffer(&self.m, 0, bytemuck::cast_slice(&f32s(&s.m)));
        self.ctx.queue.write_buffer(&self.v, 0, bytemuck::cast_slice(&f32s(&s.v)));
        self.adam_step = u32::try_from(s.adam_step).unwrap_or(u32::MAX);
        self.zero(&self.grads)?;
        Ok(())
    }
}
