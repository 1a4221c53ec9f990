//! The scheduler: the whole model of MODEL.md on the GPU. The dataset is uploaded
//! once; a training step gathers its batch on the GPU from an index list and
//! records forward, loss, backward and Adam into ONE command buffer with no
//! readback; the loss accumulates on the GPU and is read once per epoch.
//! Inference runs the same forward and scatters the probabilities into a
//! split-wide buffer that is read once per split.
//!
//! Every launch is built once for the largest step (batch slots of B_max videos,
//! U_max utterances) and re-parameterised per step with `update` (uniform and
//! problem-list writes only). The backward walks the forward schedule in
//! reverse, one call per line. Letters: B, U, K_m input dims, H, D, R (rw), P =
//! 2M GRU problems.
//!
//! Files: this one builds the engine; step.rs prepares and records a step (the
//! batches of its models, `train_steps`); readback.rs reads losses,
//! predictions, states and gradients back.

mod plan;
mod readback;
mod schedule;
mod step;
mod step_profile;

pub use plan::{Arena, Placed, Plan, Shape, Step, StepBatch};
pub use readback::GpuGradients;
pub use step::{train_steps, ModelStep};
pub use step_profile::{SiteTime, StepProfile};

use std::sync::Arc;

use crate::config::{AdamConfig, Modality, EMOTIONS};
use crate::data::{Dataset, SplitName};
use crate::engine::EngineError;
use crate::params::ParamStore;

use super::adam::{adam_step, AdamLaunch};
use super::attention::{attention_backward_variant, attention_forward_variant, AttentionSaved};
use super::buffers;
use super::context::{GpuContext, GpuError};
use super::dropout::dropout_forward;
use super::gather::{gather_forward, scatter_rows, GatherLaunch, GpuDataset};
use super::gru::{gru_backward, gru_forward, GruError};
use super::heads::{heads_backward, heads_forward, CLASSES, LOSS_LEN};
use super::linear::{linear_backward_variant, linear_backward_weights_variant, linear_forward_variant};
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

/// A split on the GPU with its gather and prediction scatter.
struct SplitData {
    data: GpuDataset,
    /// Every batch's labels and modality features.
    gather: GatherLaunch,
    /// (models, N_utt, 9) predictions, one block per model.
    probs: wgpu::Buffer,
    /// Each model's (B, u, 9) probabilities into its block.
    scatter: GatherLaunch,
    n_utt: usize,
}

/// The GPU backend of the training loop: K >= 1 models (a group of `cimnet
/// grid`, or one run), each with its own parameters, Adam state, seed (batch
/// order and dropout), loss and early stopping, every launch covering all of
/// them, whichever batch each trains on (src/gpu/model/plan.rs places them in
/// the arenas).
pub struct GpuEngine {
    /// Shared by the engines of a group (`train_steps`).
    ctx: Arc<GpuContext>,
    arena: Arena,
    /// Each model's run seed (its dropout step seeds).
    seeds: Vec<u64>,
    kernels: KernelChoice,
    // Parameter arenas (arena.params_len).
    w: wgpu::Buffer,
    grads: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    // Batch slots (one per batch of a step), shared by the models of a batch.
    index: wgpu::Buffer, // (slots, B_max) u32 video indices
    len: wgpu::Buffer,   // (slots, B_max) u32
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
    /// One model of seed `run_seed`: upload its parameters and every split of
    /// `data`; build every launch for batches of up to `batch` videos with the
    /// kernel members `kernels`.
    pub fn new(
        ctx: impl Into<Arc<GpuContext>>,
        params: &ParamStore,
        data: &Dataset,
        adam_cfg: AdamConfig,
        run_seed: u64,
        batch: usize,
        kernels: &KernelChoice,
    ) -> Result<GpuEngine, EngineError> {
        GpuEngine::new_group(ctx, &[(params, adam_cfg, run_seed)], data, batch, kernels)
    }

    /// K models (each its parameters, Adam configuration and run seed) that
    /// share `batch`, H, D and dropout, any mix of modality sets, attention
    /// kinds, task setups and seeds, in one engine: every launch covers all of
    /// them. A step holds one batch slot per distinct seed.
    pub fn new_group(
        ctx: impl Into<Arc<GpuContext>>,
        models: &[(&ParamStore, AdamConfig, u64)],
        data: &Dataset,
        batch: usize,
        kernels: &KernelChoice,
    ) -> Result<GpuEngine, EngineError> {
        let ctx: Arc<GpuContext> = ctx.into();
        if models.is_empty() {
            return Err(input("an engine needs at least one model".to_string()));
        }
        let b_max = batch.max(1);
        let u_max = max_len(data);
        let cfgs: Vec<_> = models.iter().map(|(p, a, _)| (p.config.clone(), *a)).collect();
        let seeds: Vec<u64> = models.iter().map(|m| m.2).collect();
        let mut distinct = seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let arena = Arena::new(&cfgs, b_max, u_max, distinct.len()).map_err(input)?;
        let (h, d, bu, k) = (arena.h, arena.d, arena.bu(), models.len());
        let nb = arena.branches;
        let st = |label: &str, n: usize| buffers::storage::<f32>(&ctx, label, n);

        let mut flat = vec![0f32; arena.params_len];
        for (m, (p, _, _)) in arena.models.iter().zip(models) {
            flat[m.w_base..m.w_base + p.values.len()].copy_from_slice(&p.values);
        }
        let w = buffers::upload(&ctx, "parameters", &flat)?;
        let grads = st("gradients", arena.params_len)?;
        let m = st("adam m", arena.params_len)?;
        let v = st("adam v", arena.params_len)?;
        let slots = arena.batches;
        let index = buffers::storage::<u32>(&ctx, "batch video indices", slots * b_max)?;
        let len = buffers::storage::<u32>(&ctx, "batch lengths", slots * b_max)?;
        let inputs = st("batch inputs (labels, features)", slots * arena.inputs_len)?;
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
        // The largest step: every model taking part (in one batch; the lists'
        // capacities are the problems of every model, whatever batch each is in).
        let full = Step::one(&all, Shape { b: b_max, u: u_max }, 0, arena.dropout);
        let plan = arena.plan(&full).map_err(input)?;

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
            let (gp, list) = plan.gather(&gd);
            let cap = slots * list.len();
            let gather = gather_forward(&ctx, &inputs, &len, &gd, &index, gp, &list, cap)?;
            let n_utt: usize = lens.iter().sum();
            let split_probs = st(&format!("{s} predictions"), k * n_utt * CLASSES)?;
            let (sp, list) = plan.scatter(n_utt);
            let scatter = scatter_rows(&ctx, &split_probs, &probs, &gd, &index, sp, &list, k)?;
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
            let (p, list) = plan.projection(md);
            let cap = list.len();
            let l = linear_forward_variant(&ctx, &xp, &ctx.dummy, &inputs, &w, &len, p, &list, cap, kc.projection)?;
            fwd.push(listed(format!("{n} input projection"), l, move |plan| Ok(plan.projection(md))));
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
            b_proj.push(listed(
                format!("{n} input projection weight gradient"),
                l,
                move |plan| Ok(plan.projection(md)),
            ));
        }
        let (gp, list) = plan.gru()?;
        let cap = list.len();
        let l = gru_forward(&ctx, &gru_out, &cache, &xp, &w, &len, &gp, &list, cap, kc.gru_forward)?;
        fwd.push(listed("gru recurrence", l, |plan| Ok(plan.gru()?)));
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
        b_gru.push(listed("gru recurrence backward and dW_hh", l, |plan| Ok(plan.gru()?)));
        let (dp, segments) = plan.drop_gru();
        let l = dropout_forward(&ctx, &dense_in, &gru_out, dp, &segments, segments.len())?;
        fwd.push(listed("gru-site dropout", l, |plan| Ok(plan.drop_gru())));
        for &md in &arena.mods {
            let n = md.name();
            let (p, list) = plan.dense_forward(md);
            let cap = list.len();
            let l = linear_forward_variant(&ctx, &feat, &r, &dense_in, &w, &len, p, &list, cap, kc.dense)?;
            fwd.push(listed(format!("{n} dense, relu, dropout"), l, move |plan| Ok(plan.dense_forward(md))));
            let (p, list) = plan.dense_backward(md);
            let l =
                linear_backward_variant(&ctx, &dgru_out, &dfeat, &feat, &w, &len, p, &list, cap, kc.dense_backward)?;
            b_dense.push(listed(format!("{n} dense input gradient"), l, move |plan| Ok(plan.dense_backward(md))));
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
            b_dense.push(listed(format!("{n} dense weight gradient"), l, move |plan| Ok(plan.dense_backward(md))));
        }
        let saved = AttentionSaved { m: &saved_m, n: &saved_n, o: &saved_o };
        for &pair in &arena.pair_kinds {
            let (x, y) = pair;
            let name = format!("attention {}{}", x.letter(), y.letter());
            let (ap, list) = plan.attention(pair);
            let cap = list.len();
            let l = attention_forward_variant(&ctx, &r, &saved, &feat, &len, ap, &list, cap, kc.attention_forward)?;
            fwd.push(listed(name.clone(), l, move |plan| Ok(plan.attention(pair))));
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
            b_att.push(listed(format!("{name} backward"), l, move |plan| Ok(plan.attention(pair))));
        }
        let (hp, list) = plan.heads();
        let l = heads_forward(&ctx, &probs, &dz, &row_loss, &train_loss, &r, &w, &inputs, &len, hp, &list, k)?;
        let heads_train = vec![listed("heads and loss (train)", l, |plan| Ok(plan.heads()))];
        let l = heads_forward(&ctx, &probs, &dz, &row_loss, &eval_loss, &r, &w, &inputs, &len, hp, &list, k)?;
        let heads_eval = vec![listed("heads and loss (eval)", l, |plan| Ok(plan.heads()))];
        let l = heads_backward(&ctx, &dr, &dfeat, &grads, &dz, &r, &w, &len, hp, &list, k)?;
        bwd.push(listed("heads backward (and the plain blocks' gradients)", l, |plan| Ok(plan.heads())));
        // The forward reversed: attention, dense (input then weight gradient), GRU, projections.
        bwd.extend(b_att.into_iter().chain(b_dense).chain(b_gru).chain(b_proj));
        let schedule = Schedule { forward: fwd, heads_train, heads_eval, backward: bwd };
        let adam = adam_step(&ctx, [&w, &grads, &m, &v], &plan.adam(&vec![1; k]), k, true)?;
        drop(plan);

        let keep = vec![
            inputs, feat, dgru_out, dense_in, r, dr, xp, cache, gru_out, gh, carry, dz, row_loss, dm, saved_m, saved_n,
            saved_o,
        ];
        let engine = GpuEngine {
            ctx,
            arena,
            seeds,
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

    /// Batch slots of a step: the distinct seeds of the models.
    pub fn batch_slots(&self) -> usize {
        self.arena.batches
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
}
