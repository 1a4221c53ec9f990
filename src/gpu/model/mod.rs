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

mod params;
mod schedule;

pub use params::{Batch, ParamsFor, Shape};

use std::sync::Arc;

use crate::config::{AdamConfig, Block, Modality, EMOTIONS, EMOTION_LABELS};
use crate::data::{Dataset, SplitName};
use crate::engine::{step_seed, Engine, EngineError, EngineState, LossSums, Predictions};
use crate::params::ParamStore;

use super::adam::{adam_step, AdamParams};
use super::attention::{attention_backward_variant, attention_forward_variant, AttentionParams, AttentionSaved};
use super::buffers;
use super::context::{GpuContext, GpuError};
use super::dropout::dropout_forward;
use super::gather::{gather_forward, scatter_rows, GatherParams, GpuDataset};
use super::gru::{gru_backward, gru_forward, GruError};
use super::heads::{heads_backward, heads_forward, CLASSES, LOSS_LEN};
use super::launch::Launch;
use super::linear::{
    linear_backward, linear_backward_variant, linear_backward_weights_variant, linear_forward_variant,
};
use super::pipelines::Recorder;
use super::tune::KernelChoice;
use schedule::{site, Schedule, Site};

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

/// The GPU backend of the training loop.
pub struct GpuEngine {
    /// Shared by the engines of a group (`train_steps`).
    ctx: Arc<GpuContext>,
    /// The model config, its parameter layout and every launch's params formulas.
    pp: ParamsFor,
    adam_cfg: AdamConfig,
    run_seed: u64,
    kernels: KernelChoice,
    b_max: usize,
    // Flat stores (layout.len).
    w: wgpu::Buffer,
    grads: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    // Batch inputs.
    index: wgpu::Buffer, // (B) u32 video indices
    len: wgpu::Buffer,   // (B) u32
    branches: Vec<Branch>,
    // Shared activations.
    gi: wgpu::Buffer,         // (P, B, U, 3H) input-side gate gradients
    probs: wgpu::Buffer,      // (B, U, 9)
    train_loss: wgpu::Buffer, // (4) accumulated over steps
    eval_loss: wgpu::Buffer,  // (4) accumulated over a split
    splits: [Option<SplitData>; 3],
    schedule: Schedule,
    adam: Launch<AdamParams>,
    adam_step: u32,
    dispatches: u32,
    invocations: u64,
    /// Keeps the buffers the launches bind alive.
    _keep: Vec<wgpu::Buffer>,
}

/// The longest video of any split: the U every launch is built for.
pub fn max_len(data: &Dataset) -> usize {
    SplitName::ALL.iter().flat_map(|&s| data.lens(s)).max().unwrap_or(1).max(1)
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
    /// batches of up to `batch` videos with the kernel members `kernels`.
    pub fn new(
        ctx: impl Into<Arc<GpuContext>>,
        params: &ParamStore,
        data: &Dataset,
        adam_cfg: AdamConfig,
        run_seed: u64,
        batch: usize,
        kernels: &KernelChoice,
    ) -> Result<GpuEngine, EngineError> {
        let ctx: Arc<GpuContext> = ctx.into();
        let cfg = params.config.clone();
        let (h, d, rw) = (cfg.hidden, cfg.dense, cfg.repr_width());
        let b_max = batch.max(1);
        let u_max = max_len(data);
        let bu = b_max * u_max;
        let pp = ParamsFor::new(&cfg, bu);
        let nm = pp.mods.len();
        let n_params = pp.layout.len;
        let st = |label: &str, n: usize| buffers::storage::<f32>(&ctx, label, n);

        let w = buffers::upload(&ctx, "parameters", &params.values)?;
        let grads = st("gradients", n_params)?;
        let m = st("adam m", n_params)?;
        let v = st("adam v", n_params)?;
        let index = buffers::storage::<u32>(&ctx, "batch video indices", b_max)?;
        let len = buffers::storage::<u32>(&ctx, "batch lengths", b_max)?;
        let inputs = st("batch inputs (labels, features)", pp.inputs_len)?;
        let mut branches = Vec::with_capacity(nm);
        for &md in &pp.mods {
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
        let mut keep = Vec::new();

        // Column offsets of the blocks in R.
        let blocks = cfg.representation();
        let col = |b: Block| blocks.iter().position(|&x| x == b).map(|k| k * d);
        let pos = |md: Modality| pp.mods.iter().position(|&x| x == md).expect("pair modality is used");
        let mut plain_off = vec![None; nm];
        for (k, b) in blocks.iter().enumerate() {
            if let Block::Plain(md) = b {
                plain_off[pos(*md)] = Some(k * d);
            }
        }

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
            for &md in &pp.mods {
                if gd.features_off[md.index()].is_none() {
                    return Err(EngineError::from(GpuEngineError::Input(format!(
                        "the data has no {} features",
                        md.name()
                    ))));
                }
            }
            let p = pp.gather(&gd, Shape { b: b_max, u: u_max });
            let gather = gather_forward(&ctx, &inputs, &len, &gd, &index, p)?;
            let n_utt: usize = lens.iter().sum();
            let split_probs = st(&format!("{s} predictions"), n_utt * CLASSES)?;
            let sp = GatherParams::new(b_max, u_max, false).tensor(CLASSES, 0, 0);
            let scatter = scatter_rows(&ctx, &split_probs, &probs, &gd, &index, sp)?;
            splits[s.index()] = Some(SplitData { data: gd, gather, probs: split_probs, scatter });
        }

        // The schedule, built for (B_max, U_max) with dropout on; each site is
        // named here, where it is built, and nowhere else.
        let shape = Shape { b: b_max, u: u_max };
        let full = Batch { shape, seed: 0, p_drop: cfg.dropout };
        let k = kernels;
        let mut fwd: Vec<Box<dyn Site>> = Vec::new();
        let mut bwd: Vec<Box<dyn Site>> = Vec::new();
        // Backward sites are built in forward order and recorded reversed, so
        // they are collected per stage and appended in reverse at the end.
        let (mut b_proj, mut b_gru, mut b_dense, mut b_att) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (mi, md) in pp.mods.iter().enumerate() {
            let p = pp.projection(mi, shape);
            let l = linear_forward_variant(&ctx, &xp, &ctx.dummy, &inputs, &w, &len, p, k.projection)?;
            fwd.push(site(format!("{} input projection", md.name()), l, move |l, ctx, pp, b| {
                l.update(ctx, pp.projection(mi, b.shape));
                Ok(())
            }));
            let l = linear_backward_weights_variant(&ctx, &grads, &gi, &gi, &inputs, &len, p, k.projection_weights)?;
            b_proj.push(site(format!("{} input projection weight gradient", md.name()), l, move |l, ctx, pp, b| {
                l.update(ctx, pp.projection(mi, b.shape));
                Ok(())
            }));
        }
        let (gp, gq) = (pp.gru(shape)?, pp.gru_problems()?);
        let l = gru_forward(&ctx, &gru_out, &cache, &xp, &w, &len, &gp, &gq, gq.len(), k.gru_forward)?;
        fwd.push(site("gru recurrence", l, |l, ctx, pp, b| {
            Ok(l.update(ctx, &pp.gru(b.shape)?, &pp.gru_problems()?)?)
        }));
        let (q, n) = (&gq[..], gq.len());
        let l = gru_backward(&ctx, &gi, &gh, &carry, &grads, &dgru_out, &cache, &w, &len, &gp, q, n, k.gru_backward)?;
        b_gru.push(site("gru recurrence backward and dW_hh", l, |l, ctx, pp, b| {
            Ok(l.update(ctx, &pp.gru(b.shape)?, &pp.gru_problems()?)?)
        }));
        let l = dropout_forward(&ctx, &dense_in, &gru_out, pp.drop_gru(&full))?;
        fwd.push(site("gru-site dropout", l, |l, ctx, pp, b| {
            l.update(ctx, pp.drop_gru(b));
            Ok(())
        }));
        for (mi, br) in branches.iter().enumerate() {
            let md = br.modality;
            let plain = plain_off[mi];
            let p = pp.dense_forward(mi, &full, plain);
            let l = linear_forward_variant(&ctx, &br.feat, &r, &dense_in, &w, &len, p, k.dense)?;
            fwd.push(site(format!("{} dense, relu, dropout", md.name()), l, move |l, ctx, pp, b| {
                l.update(ctx, pp.dense_forward(mi, b, plain));
                Ok(())
            }));
            let p = pp.dense_backward(mi, &full);
            let l = linear_backward_variant(&ctx, &dgru_out, &br.dfeat, &br.feat, &w, &len, p, k.dense_backward)?;
            b_dense.push(site(format!("{} dense input gradient", md.name()), l, move |l, ctx, pp, b| {
                l.update(ctx, pp.dense_backward(mi, b));
                Ok(())
            }));
            let l = linear_backward_weights_variant(
                &ctx,
                &grads,
                &br.dfeat,
                &br.feat,
                &dense_in,
                &len,
                p,
                k.dense_weights,
            )?;
            b_dense.push(site(format!("{} dense weight gradient", md.name()), l, move |l, ctx, pp, b| {
                l.update(ctx, pp.dense_backward(mi, b));
                Ok(())
            }));
        }
        for (x, y) in cfg.attention_pairs() {
            let r_xy = col(Block::Att(x, y)).expect("pair block in R");
            let r_yx = if x == y { None } else { col(Block::Att(y, x)) };
            let (pm, pn, po) =
                (st("attention M", bu * u_max)?, st("attention N", 2 * bu * u_max)?, st("attention O", 2 * bu * d)?);
            let saved = AttentionSaved { m: &pm, n: &pn, o: &po };
            let ap = move |s: Shape| AttentionParams::new(s.b, s.u, d, rw, r_xy, r_yx);
            let (bx, by) = (&branches[pos(x)], &branches[pos(y)]);
            let l =
                attention_forward_variant(&ctx, &r, &saved, &bx.feat, &by.feat, &len, ap(shape), k.attention_forward)?;
            fwd.push(site(format!("attention {}{}", x.letter(), y.letter()), l, move |l, ctx, _, b| {
                l.update(ctx, ap(b.shape));
                Ok(())
            }));
            let dy = (x != y).then_some(&by.dfeat);
            let (bxf, byf, kb) = (&bx.feat, &by.feat, k.attention_backward);
            let l = attention_backward_variant(&ctx, &bx.dfeat, dy, &dm, &dr, &saved, bxf, byf, &len, ap(shape), kb)?;
            b_att.push(site(format!("attention {}{} backward", x.letter(), y.letter()), l, move |l, ctx, _, b| {
                l.update(ctx, ap(b.shape));
                Ok(())
            }));
            keep.extend([pm, pn, po]);
        }
        let hp = pp.heads(shape);
        let l = heads_forward(&ctx, &probs, &dz, &row_loss, &train_loss, &r, &w, &inputs, &len, hp)?;
        let heads_train = vec![site("heads and loss (train)", l, |l, ctx, pp, b| {
            l.update(ctx, pp.heads(b.shape));
            Ok(())
        })];
        let l = heads_forward(&ctx, &probs, &dz, &row_loss, &eval_loss, &r, &w, &inputs, &len, hp)?;
        let heads_eval = vec![site("heads and loss (eval)", l, |l, ctx, pp, b| {
            l.update(ctx, pp.heads(b.shape));
            Ok(())
        })];
        let dblocks = [0, 1, 2].map(|s| branches.get(s).map_or(&ctx.dummy, |b| &b.dfeat));
        let po = plain_off.clone();
        let l = heads_backward(&ctx, &dr, dblocks, &grads, &dz, &r, &w, &len, hp.with_plain(&plain_off))?;
        bwd.push(site("heads backward (and the plain blocks' gradients)", l, move |l, ctx, pp, b| {
            l.update(ctx, pp.heads(b.shape).with_plain(&po));
            Ok(())
        }));
        // The forward reversed: attention, dense (input then weight gradient), GRU, projections.
        bwd.extend(b_att.into_iter().chain(b_dense).chain(b_gru).chain(b_proj));
        let schedule = Schedule { forward: fwd, heads_train, heads_eval, backward: bwd };
        let adam = adam_step(&ctx, &w, &grads, &m, &v, AdamParams::new(n_params, 1, &adam_cfg, true))?;

        // The batch inputs, (M, B, U, 2H) d(gru out), (B, U, R) R and dR, and the GRU scratch.
        keep.extend([inputs, dgru_out, dense_in, r, dr, xp, cache, gru_out, gh, carry, dz, row_loss, dm]);
        let engine = GpuEngine {
            ctx,
            pp,
            adam_cfg,
            run_seed,
            kernels: *kernels,
            b_max,
            w,
            grads,
            m,
            v,
            index,
            len,
            branches,
            gi,
            probs,
            train_loss,
            eval_loss,
            splits,
            schedule,
            adam,
            adam_step: 0,
            dispatches: 0,
            invocations: 0,
            _keep: keep,
        };
        engine.ctx.check()?;
        Ok(engine)
    }

    /// Dispatches recorded by the last training step.
    pub fn dispatches_per_step(&self) -> u32 {
        self.dispatches
    }

    /// Bytes of GPU memory held by this engine's buffers (data, parameters,
    /// optimizer state, activations): what a group budgets per model.
    pub fn bytes(&self) -> u64 {
        let mut held: Vec<&wgpu::Buffer> = vec![&self.w, &self.grads, &self.m, &self.v, &self.index, &self.len];
        held.extend([&self.gi, &self.probs, &self.train_loss, &self.eval_loss]);
        held.extend(self.branches.iter().flat_map(|b| [&b.feat, &b.dfeat]));
        for sd in self.splits.iter().flatten() {
            held.extend([&sd.data.rows, &sd.data.offsets, &sd.data.lengths, &sd.probs]);
        }
        held.extend(&self._keep);
        held.iter().map(|b| b.size()).sum()
    }

    /// Invocations launched by the last training step (workgroups x workgroup size).
    pub fn invocations_per_step(&self) -> u64 {
        self.invocations
    }

    /// The kernel members this engine was built with.
    pub fn kernels(&self) -> &KernelChoice {
        &self.kernels
    }

    /// The sites of a training step, in recording order.
    pub fn schedule(&self) -> Vec<String> {
        self.schedule.names()
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
        sd.gather.update(&self.ctx, self.pp.gather(&sd.data, shape));
        sd.scatter.update(&self.ctx, GatherParams::new(shape.b, shape.u, false).tensor(CLASSES, 0, 0));
        self.schedule.update(&self.ctx, &self.pp, &Batch { shape, seed, p_drop })?;
        Ok(shape)
    }

    /// Record the forward (gather through heads) of the current batch.
    fn record_forward(&self, rec: &mut Recorder, split: SplitName, train: bool) {
        if let Some(sd) = &self.splits[split.index()] {
            sd.gather.record(rec);
        }
        self.schedule.record_forward(rec, train);
    }

    /// Record the backward (and, with `adam`, the optimizer step): the forward
    /// schedule reversed.
    fn record_backward(&self, rec: &mut Recorder, adam: bool) {
        self.schedule.record_backward(rec);
        if adam {
            self.adam.record(rec);
        }
    }

    fn read_f64(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<f64>, EngineError> {
        Ok(buffers::read::<f32>(&self.ctx, buf, 0, n)?.into_iter().map(f64::from).collect())
    }

    fn read_loss(&self, buf: &wgpu::Buffer) -> Result<LossSums, EngineError> {
        let l = self.read_f64(buf, LOSS_LEN)?;
        let c = &self.pp.cfg;
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
        let p_drop = if dropout_seed.is_some() { self.pp.cfg.dropout } else { 0.0 };
        let shape = self.prepare_batch(SplitName::Train, videos, dropout_seed.unwrap_or(0), p_drop)?;
        self.zero(&self.eval_loss)?;
        self.zero(&self.grads)?;
        // Input gradients dx = gi W_ih, per modality one (2, B, U, K) buffer (one block
        // per direction), summed on the host.
        let pp = &self.pp;
        let mut dx_bufs = Vec::new();
        let mut dx_launches = Vec::new();
        for (mi, br) in self.branches.iter().enumerate() {
            let n = shape.b * shape.u * self.pp.cfg.dim(br.modality);
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
        let grads = self.read_f64(&self.grads, self.pp.layout.len)?;
        let mut inputs: [Option<Vec<f64>>; 3] = Default::default();
        for (mi, br) in self.branches.iter().enumerate() {
            let n = shape.b * shape.u * self.pp.cfg.dim(br.modality);
            let both = self.read_f64(&dx_bufs[mi], 2 * n)?;
            let (f, r) = both.split_at(n);
            inputs[br.modality.index()] = Some(f.iter().zip(r).map(|(a, b)| a + b).collect());
        }
        self.zero(&self.grads)?;
        self.zero(&self.eval_loss)?;
        Ok(GpuGradients { b: shape.b, u: shape.u, loss, probs, grads, inputs })
    }
}

impl GpuEngine {
    /// Record one training step (forward, loss, backward, Adam) of `videos` into
    /// `enc`; its params are written to the queue now and take effect at the
    /// submit of `enc`.
    fn record_train_step(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        videos: &[usize],
        step: u64,
    ) -> Result<(), EngineError> {
        let seed = step_seed(self.run_seed, step);
        self.prepare_batch(SplitName::Train, videos, seed, self.pp.cfg.dropout)?;
        self.adam_step += 1;
        let ap = AdamParams::new(self.pp.layout.len, self.adam_step, &self.adam_cfg, true);
        self.adam.update(&self.ctx, ap);
        for br in &self.branches {
            enc.clear_buffer(&br.dfeat, 0, None);
        }
        let mut pass = enc
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("training step"), timestamp_writes: None });
        let mut rec = Recorder::new(&mut pass);
        self.record_forward(&mut rec, SplitName::Train, true);
        self.record_backward(&mut rec, true);
        self.dispatches = rec.dispatches;
        self.invocations = rec.invocations;
        Ok(())
    }
}

/// One training step of each engine (its videos, its step number), all recorded
/// into one command buffer and submitted once: the models of a group (cimnet
/// grid) advance together. Every engine must run on the same device. Each
/// engine's arithmetic is exactly that of its own `train_step`: the engines
/// share no buffer, only the device and the submit.
pub fn train_steps(steps: &mut [(&mut GpuEngine, &[usize], u64)]) -> Result<(), EngineError> {
    let Some(ctx) = steps.first().map(|s| s.0.ctx.clone()) else {
        return Ok(());
    };
    if let Some(other) = steps.iter().find(|s| !Arc::ptr_eq(&s.0.ctx, &ctx)) {
        return Err(GpuEngineError::Input(format!(
            "a grouped step spans two devices ({} and {})",
            ctx.describe(),
            other.0.ctx.describe()
        ))
        .into());
    }
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("training step") });
    for (engine, videos, step) in steps.iter_mut() {
        engine.record_train_step(&mut enc, videos, *step)?;
    }
    ctx.queue.submit([enc.finish()]);
    // Non-blocking: lets wgpu retire finished work without waiting for this step.
    let _ = ctx.device.poll(wgpu::PollType::Poll);
    Ok(())
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

impl Engine for GpuEngine {
    fn describe(&self) -> String {
        format!("gpu: {}", self.ctx.describe())
    }

    fn train_step(&mut self, videos: &[usize], step: u64) -> Result<(), EngineError> {
        train_steps(&mut [(self, videos, step)])
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
        let tasks = self.pp.cfg.tasks;
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
        let n = self.pp.layout.len;
        let master = self.read_f64(&self.w, n)?;
        let mut params = ParamStore::zeros(&self.pp.cfg);
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
