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

mod plan;
mod schedule;

pub use plan::{Arena, Batch, Placed, Plan, Shape};

use std::sync::Arc;

use crate::config::{AdamConfig, Modality, EMOTIONS, EMOTION_LABELS};
use crate::data::{Dataset, SplitName};
use crate::engine::{step_seed, Engine, EngineError, EngineState, LossSums, Predictions};
use crate::params::ParamStore;

use super::adam::{adam_step, AdamLaunch};
use super::attention::{attention_backward_variant, attention_forward_variant, AttentionSaved};
use super::buffers;
use super::context::{GpuContext, GpuError};
use super::dropout::dropout_forward;
use super::gather::{gather_forward, scatter_rows, GatherParams, GpuDataset};
use super::gru::{gru_backward, gru_forward, GruError};
use super::heads::{heads_backward, heads_forward, CLASSES, LOSS_LEN};
use super::launch::{Launch, Recordable};
use super::linear::{
    linear_backward, linear_backward_variant, linear_backward_weights_variant, linear_forward_variant,
};
use super::pipelines::Recorder;
use super::tune::KernelChoice;
use schedule::{listed, Schedule, Site};

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

/// A split on the GPU with its gathers and prediction scatters.
struct SplitData {
    data: GpuDataset,
    gather: Launch<GatherParams>, // labels and every modality's features
    /// (models, N_utt, 9) predictions, one block per model.
    probs: wgpu::Buffer,
    /// Each model's (B, U, 9) probabilities into its block, up to 4 models a launch.
    scatter: Vec<Launch<GatherParams>>,
    n_utt: usize,
}

/// The GPU backend of the training loop: K >= 1 models (a group of `cimnet
/// grid`, or one run) trained on the same batches, each with its own
/// parameters, Adam state, loss and early stopping, every launch covering all
/// of them (src/gpu/model/plan.rs places them in the arenas).
pub struct GpuEngine {
    /// Shared by the engines of a group (`train_steps`).
    ctx: Arc<GpuContext>,
    arena: Arena,
    run_seed: u64,
    kernels: KernelChoice,
    // Parameter arenas (arena.params_len).
    w: wgpu::Buffer,
    grads: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    // Batch inputs, shared by every model.
    index: wgpu::Buffer, // (B) u32 video indices
    len: wgpu::Buffer,   // (B) u32
    dfeat: wgpu::Buffer, // (branches, B_max, U_max, D) block gradients (accumulated)
    gi: wgpu::Buffer,    // (P, B, U, 3H) input-side gate gradients
    probs: wgpu::Buffer, // (models, B_max, U_max, 9)
    /// (models, 4) accumulated over steps / over a split.
    train_loss: wgpu::Buffer,
    eval_loss: wgpu::Buffer,
    splits: [Option<SplitData>; 3],
    schedule: Schedule,
    adam: AdamLaunch,
    /// Each model's Adam step count.
    steps: Vec<u32>,
    /// The models the launches are parameterised for (the last call's).
    part: Vec<usize>,
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

fn input(msg: String) -> EngineError {
    GpuEngineError::Input(msg).into()
}

impl GpuEngine {
    /// One model: upload its parameters and every split of `data`; build every
    /// launch for batches of up to `batch` videos with the kernel members `kernels`.
    pub fn new(
        ctx: impl Into<Arc<GpuContext>>,
        params: &ParamStore,
        data: &Dataset,
        adam_cfg: AdamConfig,
        run_seed: u64,
        batch: usize,
        kernels: &KernelChoice,
    ) -> Result<GpuEngine, EngineError> {
        GpuEngine::new_group(ctx, &[(params, adam_cfg)], data, run_seed, batch, kernels)
    }

    /// K models that train on the same batches (the same seed `run_seed`, the
    /// same `batch`, H, D and dropout), any mix of modality sets, attention
    /// kinds and task setups, in one engine: every launch covers all of them.
    pub fn new_group(
        ctx: impl Into<Arc<GpuContext>>,
        models: &[(&ParamStore, AdamConfig)],
        data: &Dataset,
        run_seed: u64,
        batch: usize,
        kernels: &KernelChoice,
    ) -> Result<GpuEngine, EngineError> {
        let ctx: Arc<GpuContext> = ctx.into();
        if models.is_empty() {
            return Err(input("an engine needs at least one model".to_string()));
        }
        let b_max = batch.max(1);
        let u_max = max_len(data);
        let cfgs: Vec<_> = models.iter().map(|(p, a)| (p.config.clone(), *a)).collect();
        let arena = Arena::new(&cfgs, b_max, u_max).map_err(input)?;
        let (h, d, bu, k) = (arena.h, arena.d, arena.bu(), models.len());
        let nb = arena.branches;
        let st = |label: &str, n: usize| buffers::storage::<f32>(&ctx, label, n);

        let mut flat = vec![0f32; arena.params_len];
        for (m, (p, _)) in arena.models.iter().zip(models) {
            flat[m.w_base..m.w_base + p.values.len()].copy_from_slice(&p.values);
        }
        let w = buffers::upload(&ctx, "parameters", &flat)?;
        let grads = st("gradients", arena.params_len)?;
        let m = st("adam m", arena.params_len)?;
        let v = st("adam v", arena.params_len)?;
        let index = buffers::storage::<u32>(&ctx, "batch video indices", b_max)?;
        let len = buffers::storage::<u32>(&ctx, "batch lengths", b_max)?;
        let inputs = st("batch inputs (labels, features)", arena.inputs_len)?;
        let feat = st("representation blocks", nb * bu * d)?;
        let dfeat = st("representation block gradients", nb * bu * d)?;
        let xp = st("gru xp", 2 * nb * bu * 3 * h)?;
        let cache = st("gru cache", 2 * nb * 5 * bu * h)?;
        let gru_out = st("gru output", nb * bu * 2 * h)?;
        let dgru_out = st("gru output gradient", nb * bu * 2 * h)?;
        let dense_in = st("dense input", nb * bu * 2 * h)?; // dropout(gru output), packed like it
        let gi = st("gru gi", 2 * nb * bu * 3 * h)?;
        let gh = st("gru gh", 2 * nb * bu * 3 * h)?;
        let carry = st("gru carry", 2 * nb * b_max * h)?;
        let r = st("representation", arena.r_len)?;
        let dr = st("representation gradient", arena.r_len)?;
        let probs = st("probabilities", k * bu * CLASSES)?;
        let dz = st("logit gradients", k * bu * CLASSES)?;
        let row_loss = st("row losses", k * bu * 2)?;
        let train_loss = st("train loss", k * LOSS_LEN)?;
        let eval_loss = st("eval loss", k * LOSS_LEN)?;
        let np = arena.pairs;
        let saved_m = st("attention M", np * bu * u_max)?;
        let saved_n = st("attention N", np * 2 * bu * u_max)?;
        let saved_o = st("attention O", np * 2 * bu * d)?;
        let dm = st("attention dM scratch", np * 2 * bu * u_max)?;

        let all: Vec<usize> = (0..k).collect();
        let shape = Shape { b: b_max, u: u_max };
        let full = Batch { shape, seed: 0, p_drop: arena.dropout };
        let plan = arena.plan(&all);

        // Splits: uploaded once.
        let mut splits: [Option<SplitData>; 3] = Default::default();
        for s in SplitName::ALL {
            if data.split(s).is_empty() {
                continue;
            }
            let (feats, lab, lens) = flatten(data, s);
            let fr: [Option<&[f32]>; 3] =
                [0, 1, 2].map(|i| (data.dims[i] > 0 && arena.x_off[i].is_some()).then(|| feats[i].as_slice()));
            let gd = GpuDataset::upload(&ctx, fr, data.dims, &lab, &lens)?;
            if let Some(md) = arena.mods.iter().find(|md| gd.features_off[md.index()].is_none()) {
                return Err(input(format!("the data has no {} features", md.name())));
            }
            let gather = gather_forward(&ctx, &inputs, &len, &gd, &index, plan.gather(&gd, shape))?;
            let n_utt: usize = lens.iter().sum();
            let split_probs = st(&format!("{s} predictions"), k * n_utt * CLASSES)?;
            let mut scatter = Vec::new();
            for chunk in all.chunks(4) {
                let sp = scatter_params(chunk, shape, bu, n_utt);
                scatter.push(scatter_rows(&ctx, &split_probs, &probs, &gd, &index, sp)?);
            }
            splits[s.index()] = Some(SplitData { data: gd, gather, probs: split_probs, scatter, n_utt });
        }

        // The schedule, built for (B_max, U_max) with dropout on and every model
        // taking part; each site is named here, where it is built, and nowhere else.
        let kc = kernels;
        let mut fwd: Vec<Box<dyn Site>> = Vec::new();
        let mut bwd: Vec<Box<dyn Site>> = Vec::new();
        // Backward sites are built in forward order and recorded reversed, so
        // they are collected per stage and appended in reverse at the end.
        let (mut b_proj, mut b_gru, mut b_dense, mut b_att) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &md in &arena.mods {
            let n = md.name();
            let (p, list) = plan.projection(md, shape);
            let cap = list.len();
            let l = linear_forward_variant(&ctx, &xp, &ctx.dummy, &inputs, &w, &len, p, &list, cap, kc.projection)?;
            fwd.push(listed(format!("{n} input projection"), l, move |plan, b| Ok(plan.projection(md, b.shape))));
            let l = linear_backward_weights_variant(
                &ctx,
                &grads,
                &gi,
                &gi,
                &inputs,
                &len,
                p,
                &list,
                cap,
                kc.projection_weights,
            )?;
            b_proj.push(listed(format!("{n} input projection weight gradient"), l, move |plan, b| {
                Ok(plan.projection(md, b.shape))
            }));
        }
        let (gp, list) = plan.gru(shape)?;
        let cap = list.len();
        let l = gru_forward(&ctx, &gru_out, &cache, &xp, &w, &len, &gp, &list, cap, kc.gru_forward)?;
        fwd.push(listed("gru recurrence", l, |plan, b| Ok(plan.gru(b.shape)?)));
        let l = gru_backward(
            &ctx,
            &gi,
            &gh,
            &carry,
            &grads,
            &dgru_out,
            &cache,
            &w,
            &len,
            &gp,
            &list,
            cap,
            kc.gru_backward,
        )?;
        b_gru.push(listed("gru recurrence backward and dW_hh", l, |plan, b| Ok(plan.gru(b.shape)?)));
        let (dp, segments) = plan.drop_gru(&full);
        let l = dropout_forward(&ctx, &dense_in, &gru_out, dp, &segments, segments.len())?;
        fwd.push(listed("gru-site dropout", l, |plan, b| Ok(plan.drop_gru(b))));
        for &md in &arena.mods {
            let n = md.name();
            let (p, list) = plan.dense_forward(md, &full);
            let cap = list.len();
            let l = linear_forward_variant(&ctx, &feat, &r, &dense_in, &w, &len, p, &list, cap, kc.dense)?;
            fwd.push(listed(format!("{n} dense, relu, dropout"), l, move |plan, b| Ok(plan.dense_forward(md, b))));
            let (p, list) = plan.dense_backward(md, &full);
            let l =
                linear_backward_variant(&ctx, &dgru_out, &dfeat, &feat, &w, &len, p, &list, cap, kc.dense_backward)?;
            b_dense.push(listed(format!("{n} dense input gradient"), l, move |plan, b| Ok(plan.dense_backward(md, b))));
            let l = linear_backward_weights_variant(
                &ctx,
                &grads,
                &dfeat,
                &feat,
                &dense_in,
                &len,
                p,
                &list,
                cap,
                kc.dense_weights,
            )?;
            b_dense.push(listed(
                format!("{n} dense weight gradient"),
                l,
                move |plan, b| Ok(plan.dense_backward(md, b)),
            ));
        }
        let saved = AttentionSaved { m: &saved_m, n: &saved_n, o: &saved_o };
        for &pair in &arena.pair_kinds {
            let (x, y) = pair;
            let name = format!("attention {}{}", x.letter(), y.letter());
            let (ap, list) = plan.attention(pair, shape);
            let cap = list.len();
            let l = attention_forward_variant(&ctx, &r, &saved, &feat, &len, ap, &list, cap, kc.attention_forward)?;
            fwd.push(listed(name.clone(), l, move |plan, b| Ok(plan.attention(pair, b.shape))));
            let l = attention_backward_variant(
                &ctx,
                &dfeat,
                &dm,
                &dr,
                &saved,
                &feat,
                &len,
                ap,
                &list,
                cap,
                kc.attention_backward,
            )?;
            b_att.push(listed(format!("{name} backward"), l, move |plan, b| Ok(plan.attention(pair, b.shape))));
        }
        let (hp, list) = plan.heads(shape);
        let l = heads_forward(&ctx, &probs, &dz, &row_loss, &train_loss, &r, &w, &inputs, &len, hp, &list, k)?;
        let heads_train = vec![listed("heads and loss (train)", l, |plan, b| Ok(plan.heads(b.shape)))];
        let l = heads_forward(&ctx, &probs, &dz, &row_loss, &eval_loss, &r, &w, &inputs, &len, hp, &list, k)?;
        let heads_eval = vec![listed("heads and loss (eval)", l, |plan, b| Ok(plan.heads(b.shape)))];
        let l = heads_backward(&ctx, &dr, &dfeat, &grads, &dz, &r, &w, &len, hp, &list, k)?;
        bwd.push(listed("heads backward (and the plain blocks' gradients)", l, |plan, b| Ok(plan.heads(b.shape))));
        // The forward reversed: attention, dense (input then weight gradient), GRU, projections.
        bwd.extend(b_att.into_iter().chain(b_dense).chain(b_gru).chain(b_proj));
        let schedule = Schedule { forward: fwd, heads_train, heads_eval, backward: bwd };
        let steps = vec![1; k];
        let adam = adam_step(&ctx, [&w, &grads, &m, &v], &plan.adam(&steps), k, true)?;
        drop(plan);

        let keep = vec![
            inputs, feat, dgru_out, dense_in, r, dr, xp, cache, gru_out, gh, carry, dz, row_loss, dm, saved_m, saved_n,
            saved_o,
        ];
        let engine = GpuEngine {
            ctx,
            arena,
            run_seed,
            kernels: *kernels,
            w,
            grads,
            m,
            v,
            index,
            len,
            dfeat,
            gi,
            probs,
            train_loss,
            eval_loss,
            splits,
            schedule,
            adam,
            steps: vec![0; k],
            part: all,
            dispatches: 0,
            invocations: 0,
            _keep: keep,
        };
        engine.ctx.check()?;
        Ok(engine)
    }

    /// Models in this engine.
    pub fn models(&self) -> usize {
        self.arena.models.len()
    }

    /// Dispatches recorded by the last training step.
    pub fn dispatches_per_step(&self) -> u32 {
        self.dispatches
    }

    /// Bytes of GPU memory held by this engine's buffers (data, parameters,
    /// optimizer state, activations): what a group budgets.
    pub fn bytes(&self) -> u64 {
        let mut held: Vec<&wgpu::Buffer> = vec![&self.w, &self.grads, &self.m, &self.v, &self.index, &self.len];
        held.extend([&self.dfeat, &self.gi, &self.probs, &self.train_loss, &self.eval_loss]);
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

    fn model(&self, k: usize) -> Result<&Placed, EngineError> {
        self.arena.models.get(k).ok_or_else(|| input(format!("this engine has no model {k}")))
    }

    /// Upload a batch's video indices and size every launch for it and the
    /// models `part` (ascending, each < models()).
    fn prepare_batch(
        &mut self,
        part: &[usize],
        split: SplitName,
        videos: &[usize],
        seed: u32,
        p_drop: f64,
    ) -> Result<Shape, EngineError> {
        if part.is_empty() || part.windows(2).any(|w| w[0] >= w[1]) || part.iter().any(|&k| k >= self.models()) {
            return Err(input(format!("models {part:?} of an engine of {} cannot take a step", self.models())));
        }
        let b_max = self.arena.b_max;
        let sd = self.splits[split.index()].as_ref().ok_or_else(|| input(format!("the {split} split is empty")))?;
        if videos.is_empty() || videos.len() > b_max {
            return Err(input(format!("a batch has {} videos; this engine takes 1..={b_max}", videos.len())));
        }
        let lens = &sd.data.host_lengths;
        if let Some(&bad) = videos.iter().find(|&&v| v >= lens.len()) {
            return Err(input(format!("video {bad} is not in the {split} split ({} videos)", lens.len())));
        }
        let u = videos.iter().map(|&v| lens[v]).max().unwrap_or(1);
        let shape = Shape { b: videos.len(), u };
        self.ctx.queue.write_buffer(&self.index, 0, bytemuck::cast_slice(&u32s(videos)));
        let plan = self.arena.plan(part);
        let sd = self.splits[split.index()].as_mut().expect("checked above");
        sd.gather.update(&self.ctx, plan.gather(&sd.data, shape));
        let n_utt = sd.n_utt;
        let all: Vec<usize> = (0..self.arena.models.len()).collect();
        for (l, chunk) in sd.scatter.iter_mut().zip(all.chunks(4)) {
            l.update(&self.ctx, scatter_params(chunk, shape, self.arena.bu(), n_utt));
        }
        self.schedule.update(&self.ctx, &plan, &Batch { shape, seed, p_drop })?;
        drop(plan);
        self.part = part.to_vec();
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
            self.adam.record_into(rec);
        }
    }

    fn read_f64(&self, buf: &wgpu::Buffer, offset: usize, n: usize) -> Result<Vec<f64>, EngineError> {
        Ok(buffers::read::<f32>(&self.ctx, buf, offset, n)?.into_iter().map(f64::from).collect())
    }

    /// Clear model k's slot of a loss buffer (at the next submit).
    fn clear_loss(&self, buf: &wgpu::Buffer, k: usize) {
        self.ctx.queue.write_buffer(buf, (k * LOSS_LEN * 4) as u64, bytemuck::cast_slice(&[0f32; LOSS_LEN]));
    }

    /// Model k's loss sums from `buf`, its slot cleared.
    fn take_loss(&self, buf: &wgpu::Buffer, k: usize) -> Result<LossSums, EngineError> {
        let l = self.read_f64(buf, k * LOSS_LEN, LOSS_LEN)?;
        self.clear_loss(buf, k);
        let c = &self.model(k)?.cfg;
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
    /// optimizer step, read back for model 0: the loss, the probabilities, every
    /// parameter gradient and the input gradients. `dropout_seed: None` runs
    /// without dropout. For `cimnet grads --backend gpu`, `cimnet check` and the tests.
    pub fn compute_gradients(
        &mut self,
        videos: &[usize],
        dropout_seed: Option<u32>,
    ) -> Result<GpuGradients, EngineError> {
        let p_drop = if dropout_seed.is_some() { self.arena.dropout } else { 0.0 };
        let shape = self.prepare_batch(&[0], SplitName::Train, videos, dropout_seed.unwrap_or(0), p_drop)?;
        self.zero(&self.eval_loss)?;
        self.zero(&self.grads)?;
        // Input gradients dx = gi W_ih, per modality one (2, B, U, K) buffer (one block
        // per direction), summed on the host.
        let m0 = self.model(0)?.clone();
        let plan = self.arena.plan(&[0]);
        let mut dx_bufs = Vec::new();
        let mut dx_launches = Vec::new();
        for &md in &m0.mods {
            let n = shape.b * shape.u * m0.cfg.dim(md);
            let buf = buffers::storage::<f32>(&self.ctx, "input gradient", 2 * n)?;
            let (p, mut list) = plan.projection(md, shape);
            for (dir, q) in list.iter_mut().enumerate() {
                q.x_off = u32::try_from(dir * n).unwrap_or(u32::MAX);
            }
            dx_launches.push(linear_backward(&self.ctx, &buf, &self.gi, &self.gi, &self.w, &self.len, p, &list, 2)?);
            dx_bufs.push(buf);
        }
        drop(plan);
        let mut enc =
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gradients") });
        enc.clear_buffer(&self.dfeat, 0, None);
        {
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("gradients"), timestamp_writes: None });
            let mut rec = Recorder::new(&mut pass);
            self.record_forward(&mut rec, SplitName::Train, false);
            self.record_backward(&mut rec, false);
            for k in &dx_launches {
                k.record_into(&mut rec);
            }
        }
        buffers::submit_and_wait(&self.ctx, enc)?;
        let loss = self.take_loss(&self.eval_loss, 0)?;
        let probs = self.read_f64(&self.probs, 0, shape.b * shape.u * CLASSES)?;
        let grads = self.read_f64(&self.grads, 0, m0.layout.len)?;
        let mut inputs: [Option<Vec<f64>>; 3] = Default::default();
        for (mi, &md) in m0.mods.iter().enumerate() {
            let n = shape.b * shape.u * m0.cfg.dim(md);
            let both = self.read_f64(&dx_bufs[mi], 0, 2 * n)?;
            let (f, r) = both.split_at(n);
            inputs[md.index()] = Some(f.iter().zip(r).map(|(a, b)| a + b).collect());
        }
        self.zero(&self.grads)?;
        self.zero(&self.eval_loss)?;
        Ok(GpuGradients { b: shape.b, u: shape.u, loss, probs, grads, inputs })
    }

    /// Record one training step (forward, loss, backward, Adam) of the models
    /// `part` on `videos` into `enc`; its params are written to the queue now
    /// and take effect at the submit of `enc`.
    fn record_train_step(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        part: &[usize],
        videos: &[usize],
        step: u64,
    ) -> Result<(), EngineError> {
        let seed = step_seed(self.run_seed, step);
        self.prepare_batch(part, SplitName::Train, videos, seed, self.arena.dropout)?;
        for &k in part {
            self.steps[k] += 1;
        }
        let plan = self.arena.plan(part);
        let list = plan.adam(&self.steps);
        drop(plan);
        self.adam.update(&self.ctx, &list, true)?;
        enc.clear_buffer(&self.dfeat, 0, None);
        let mut pass = enc
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("training step"), timestamp_writes: None });
        let mut rec = Recorder::new(&mut pass);
        self.record_forward(&mut rec, SplitName::Train, true);
        self.record_backward(&mut rec, true);
        self.dispatches = rec.dispatches;
        self.invocations = rec.invocations;
        Ok(())
    }

    /// Model k's training loss accumulated since the last call, cleared.
    pub fn take_train_loss_of(&mut self, k: usize) -> Result<LossSums, EngineError> {
        self.take_loss(&self.train_loss, k)
    }

    /// The forward of the models `part` on every batch of `split`: each one's
    /// predictions and loss.
    pub fn predict_of(
        &mut self,
        part: &[usize],
        split: SplitName,
        batches: &[Vec<usize>],
    ) -> Result<Vec<Predictions>, EngineError> {
        for &k in part {
            self.clear_loss(&self.eval_loss, k);
        }
        for videos in batches {
            self.prepare_batch(part, split, videos, 0, 0.0)?;
            let mut enc =
                self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("inference") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("inference"),
                    timestamp_writes: None,
                });
                let mut rec = Recorder::new(&mut pass);
                self.record_forward(&mut rec, split, false);
                for l in self.splits[split.index()].iter().flat_map(|sd| &sd.scatter) {
                    l.record(&mut rec);
                }
            }
            self.ctx.queue.submit([enc.finish()]);
            let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        }
        let mut out = Vec::with_capacity(part.len());
        for &k in part {
            let loss = self.take_loss(&self.eval_loss, k)?;
            let Some(sd) = &self.splits[split.index()] else {
                out.push(Predictions { loss, ..Predictions::default() });
                continue;
            };
            let lens = &sd.data.host_lengths;
            let all = self.read_f64(&sd.probs, k * sd.n_utt * CLASSES, sd.n_utt * CLASSES)?;
            let offsets = &sd.data.host_offsets;
            let row = |v: usize, i: usize| &all[(offsets[v] + i) * CLASSES..(offsets[v] + i + 1) * CLASSES];
            let tasks = self.model(k)?.cfg.tasks;
            let sentiment = tasks.has_sentiment().then(|| {
                (0..lens.len()).map(|v| (0..lens[v]).map(|i| [row(v, i)[0], row(v, i)[1]]).collect()).collect()
            });
            let emotion = tasks.has_emotion().then(|| {
                (0..lens.len())
                    .map(|v| {
                        (0..lens[v])
                            .map(|i| std::array::from_fn::<f64, EMOTION_LABELS, _>(|c| row(v, i)[2 + c]))
                            .collect()
                    })
                    .collect()
            });
            out.push(Predictions { sentiment, emotion, loss });
        }
        Ok(out)
    }

    /// Model k's parameters, Adam moments and step count.
    pub fn state_of(&mut self, k: usize) -> Result<EngineState, EngineError> {
        let m = self.model(k)?.clone();
        let (base, n) = (m.w_base, m.layout.len);
        let master = self.read_f64(&self.w, base, n)?;
        let mut params = ParamStore::zeros(&m.cfg);
        for (p, &x) in params.values.iter_mut().zip(&master) {
            *p = x as f32;
        }
        Ok(EngineState {
            params,
            master,
            m: self.read_f64(&self.m, base, n)?,
            v: self.read_f64(&self.v, base, n)?,
            adam_step: u64::from(self.steps[k]),
        })
    }

    /// Set model k's parameters, Adam moments and step count (its gradients cleared).
    pub fn set_state_of(&mut self, k: usize, s: &EngineState) -> Result<(), EngineError> {
        let m = self.model(k)?.clone();
        let n = m.layout.len;
        if [s.master.len(), s.m.len(), s.v.len()].iter().any(|&l| l != n) {
            return Err(input(format!("a state of {} parameters for a model of {n}", s.master.len())));
        }
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let at = (m.w_base * 4) as u64;
        self.ctx.queue.write_buffer(&self.w, at, bytemuck::cast_slice(&f32s(&s.master)));
        self.ctx.queue.write_buffer(&self.m, at, bytemuck::cast_slice(&f32s(&s.m)));
        self.ctx.queue.write_buffer(&self.v, at, bytemuck::cast_slice(&f32s(&s.v)));
        self.ctx.queue.write_buffer(&self.grads, at, bytemuck::cast_slice(&vec![0f32; n]));
        self.steps[k] = u32::try_from(s.adam_step).unwrap_or(u32::MAX);
        Ok(())
    }
}

/// The scatter of models `chunk` (at most 4): model k's (B, U, 9) probabilities
/// block into its block of the split's predictions.
fn scatter_params(chunk: &[usize], s: Shape, bu: usize, n_utt: usize) -> GatherParams {
    let mut p = GatherParams::new(s.b, s.u, false);
    for &k in chunk {
        p = p.tensor(CLASSES, k * bu * CLASSES, k * n_utt * CLASSES);
    }
    p
}

/// One training step of each engine (the models taking part, their videos,
/// the step number), all recorded into one command buffer and submitted once:
/// the engines of a group (cimnet grid) advance together. Every engine must run
/// on the same device. Each engine's arithmetic is exactly that of its own step:
/// the engines share no buffer, only the device and the submit.
pub fn train_steps(steps: &mut [(&mut GpuEngine, &[usize], &[usize], u64)]) -> Result<(), EngineError> {
    let Some(ctx) = steps.first().map(|s| s.0.ctx.clone()) else {
        return Ok(());
    };
    if let Some(other) = steps.iter().find(|s| !Arc::ptr_eq(&s.0.ctx, &ctx)) {
        return Err(input(format!(
            "a grouped step spans two devices ({} and {})",
            ctx.describe(),
            other.0.ctx.describe()
        )));
    }
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("training step") });
    for (engine, part, videos, step) in steps.iter_mut() {
        engine.record_train_step(&mut enc, part, videos, *step)?;
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

/// The engine of one model (model 0 of a group of one).
impl Engine for GpuEngine {
    fn describe(&self) -> String {
        format!("gpu: {}", self.ctx.describe())
    }

    fn train_step(&mut self, videos: &[usize], step: u64) -> Result<(), EngineError> {
        train_steps(&mut [(self, &[0], videos, step)])
    }

    fn take_train_loss(&mut self) -> Result<LossSums, EngineError> {
        self.take_train_loss_of(0)
    }

    fn predict(&mut self, split: SplitName, batches: &[Vec<usize>]) -> Result<Predictions, EngineError> {
        Ok(self.predict_of(&[0], split, batches)?.pop().unwrap_or_default())
    }

    fn state(&mut self) -> Result<EngineState, EngineError> {
        self.state_of(0)
    }

    fn set_state(&mut self, s: &EngineState) -> Result<(), EngineError> {
        self.set_state_of(0, s)
    }
}
