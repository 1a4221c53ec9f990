//! What a GPU engine reads back: each model's losses (accumulated on the GPU,
//! read once per epoch or split), predictions (scattered into a split-wide
//! buffer, read once per split), state (parameters, Adam moments, step count)
//! and, for the checks, one batch's gradients.

use crate::config::EMOTION_LABELS;
use crate::data::SplitName;
use crate::engine::{Engine, EngineError, EngineState, LossSums, Predictions};
use crate::params::ParamStore;

use super::super::buffers;
use super::super::heads::{CLASSES, LOSS_LEN};
use super::super::launch::Recordable;
use super::super::linear::linear_backward;
use super::super::pipelines::Recorder;
use super::{input, train_steps, GpuEngine, ModelStep};

impl GpuEngine {
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
        let step = self.prepare(SplitName::Train, &[(vec![0], videos, dropout_seed.unwrap_or(0))], p_drop)?;
        let shape = step.shape();
        self.zero(&self.eval_loss)?;
        self.zero(&self.grads)?;
        // Input gradients dx = gi W_ih, per modality one (2, B, U, K) buffer (one block
        // per direction), summed on the host.
        let m0 = self.model(0)?.clone();
        let plan = self.arena.plan(&step).map_err(input)?;
        let mut dx_bufs = Vec::new();
        let mut dx_launches = Vec::new();
        for &md in &m0.mods {
            let n = shape.b * shape.u * m0.cfg.dim(md);
            let buf = buffers::storage::<f32>(&self.ctx, "input gradient", 2 * n)?;
            let (p, mut list) = plan.projection(md);
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
            let mut rec = Recorder::new(&mut enc, "gradients");
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
            self.prepare(split, &[(part.to_vec(), videos.as_slice(), 0)], 0.0)?;
            let mut enc =
                self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("inference") });
            {
                let mut rec = Recorder::new(&mut enc, "inference");
                self.record_forward(&mut rec, split, false);
                if let Some(sd) = &self.splits[split.index()] {
                    sd.scatter.record(&mut rec);
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
        train_steps(&mut [(self, &[ModelStep { model: 0, videos, step }])])
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
