//! A step of a GPU engine: its models' batches placed in the batch slots, every
//! site re-parameterised for them, and the recording of forward, backward and
//! Adam. `train_steps` advances the engines of a group together: the models of
//! each engine that train on the same batch (the same videos and seed) share a
//! batch slot, models of other seeds take other slots of the same step, so one
//! schedule (one dispatch per site) covers every model whatever its seed.

use std::sync::Arc;

use crate::data::SplitName;
use crate::engine::{step_seed, EngineError};

use super::super::launch::Recordable;
use super::super::pipelines::Recorder;
use super::{input, u32s, GpuEngine, Step, StepBatch};

/// One model's part in a training step: its videos and its step number (its
/// dropout seed follows from its run seed and the step).
#[derive(Debug, Clone, Copy)]
pub struct ModelStep<'a> {
    pub model: usize,
    pub videos: &'a [usize],
    pub step: u64,
}

/// The batches of one recording: (models ascending, videos, dropout seed).
pub(super) type Round<'a> = Vec<(Vec<usize>, &'a [usize], u32)>;

impl GpuEngine {
    /// Upload the video indices of `batches` ((models, videos, dropout seed), one
    /// batch slot each, all of the same size) of `split` and size every launch
    /// for them.
    pub(super) fn prepare(
        &mut self,
        split: SplitName,
        batches: &[(Vec<usize>, &[usize], u32)],
        p_drop: f64,
    ) -> Result<Step, EngineError> {
        let b_max = self.arena.b_max;
        let sd = self.splits[split.index()].as_ref().ok_or_else(|| input(format!("the {split} split is empty")))?;
        let lens = &sd.data.host_lengths;
        let b = batches.first().map_or(0, |x| x.1.len());
        let mut step = Step { b, p_drop, batches: Vec::with_capacity(batches.len()) };
        for (models, videos, seed) in batches {
            if videos.is_empty() || videos.len() > b_max || videos.len() != b {
                return Err(input(format!(
                    "a step's batches have {} and {} videos; this engine takes 1..={b_max}, the same in every batch",
                    b,
                    videos.len()
                )));
            }
            if let Some(&bad) = videos.iter().find(|&&v| v >= lens.len()) {
                return Err(input(format!("video {bad} is not in the {split} split ({} videos)", lens.len())));
            }
            let u = videos.iter().map(|&v| lens[v]).max().unwrap_or(1);
            step.batches.push(StepBatch { models: models.clone(), u, seed: *seed });
        }
        {
            let plan = self.arena.plan(&step).map_err(input)?;
            for (c, (_, videos, _)) in batches.iter().enumerate() {
                let at = (c * b_max * 4) as u64;
                self.ctx.queue.write_buffer(&self.index, at, bytemuck::cast_slice(&u32s(videos)));
            }
            let sd = self.splits[split.index()].as_mut().expect("checked above");
            let (gp, list) = plan.gather(&sd.data);
            sd.gather.update(&self.ctx, gp, &list)?;
            let (sp, list) = plan.scatter(sd.n_utt);
            sd.scatter.update(&self.ctx, sp, &list)?;
            self.schedule.update(&self.ctx, &plan)?;
        }
        Ok(step)
    }

    /// Record the forward (gather through heads) of the current step.
    pub(super) fn record_forward(&self, rec: &mut Recorder, split: SplitName, train: bool) {
        if let Some(sd) = &self.splits[split.index()] {
            sd.gather.record(rec);
        }
        self.schedule.record_forward(rec, train);
    }

    /// Record the backward (and, with `adam`, the optimizer step): the forward
    /// schedule reversed.
    pub(super) fn record_backward(&self, rec: &mut Recorder, adam: bool) {
        self.schedule.record_backward(rec);
        if adam {
            self.adam.record_into(rec);
        }
    }

    /// The model steps grouped into batches (the same videos and dropout seed),
    /// the batches into recordings of at most `batch_slots` batches of one size.
    pub(super) fn rounds<'a>(&self, steps: &[ModelStep<'a>]) -> Result<Vec<Round<'a>>, EngineError> {
        let mut batches: Round<'a> = Vec::new();
        for s in steps {
            let run_seed =
                *self.seeds.get(s.model).ok_or_else(|| input(format!("this engine has no model {}", s.model)))?;
            let seed = step_seed(run_seed, s.step);
            match batches.iter_mut().find(|b| b.1 == s.videos && b.2 == seed) {
                Some(b) => b.0.push(s.model),
                None => batches.push((vec![s.model], s.videos, seed)),
            }
        }
        let mut rounds: Vec<Round<'a>> = Vec::new();
        for mut b in batches {
            b.0.sort_unstable();
            let fits = |r: &&mut Round<'a>| r.len() < self.arena.batches && r[0].1.len() == b.1.len();
            match rounds.iter_mut().find(fits) {
                Some(r) => r.push(b),
                None => rounds.push(vec![b]),
            }
        }
        Ok(rounds)
    }

    /// Size every site for a training step of `round` and advance its models'
    /// Adam step counts (the Adam launch follows them).
    pub(super) fn begin_train_step(&mut self, round: &Round) -> Result<(), EngineError> {
        let step = self.prepare(SplitName::Train, round, self.arena.dropout)?;
        for k in step.batches.iter().flat_map(|b| &b.models) {
            self.steps[*k] += 1;
        }
        let list = self.arena.plan(&step).map_err(input)?.adam(&self.steps);
        self.adam.update(&self.ctx, &list, true)?;
        Ok(())
    }

    /// Record one training step (forward, loss, backward, Adam) of the batches
    /// `round` into `enc`; its params are written to the queue now and take
    /// effect at the submit of `enc`.
    fn record_train_step(&mut self, enc: &mut wgpu::CommandEncoder, round: &Round) -> Result<(), EngineError> {
        self.begin_train_step(round)?;
        enc.clear_buffer(&self.dfeat, 0, None);
        let mut rec = Recorder::new(enc, "training step");
        self.record_forward(&mut rec, SplitName::Train, true);
        self.record_backward(&mut rec, true);
        self.dispatches = rec.dispatches;
        self.invocations = rec.invocations;
        Ok(())
    }
}

/// One training step of the models listed for each engine (each model at most
/// once), recorded into one command buffer and submitted once: the engines of a
/// group (cimnet grid) advance together. Within an engine, models on the same
/// batch share a batch slot and models on other batches (other seeds) take other
/// slots of the same recording; only batches of different sizes, or more
/// batches than slots, take another submit. Every engine must run on the same
/// device. Each model's arithmetic is exactly that of its own step alone.
pub fn train_steps(steps: &mut [(&mut GpuEngine, &[ModelStep])]) -> Result<(), EngineError> {
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
    let rounds: Vec<Vec<Round>> = steps.iter().map(|(e, s)| e.rounds(s)).collect::<Result<_, _>>()?;
    let n = rounds.iter().map(Vec::len).max().unwrap_or(0);
    for r in 0..n {
        let mut enc =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("training step") });
        for ((engine, _), rs) in steps.iter_mut().zip(&rounds) {
            if let Some(round) = rs.get(r) {
                engine.record_train_step(&mut enc, round)?;
            }
        }
        ctx.queue.submit([enc.finish()]);
        // Non-blocking: lets wgpu retire finished work without waiting for this step.
        let _ = ctx.device.poll(wgpu::PollType::Poll);
    }
    Ok(())
}
