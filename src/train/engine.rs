//! What the training loop asks of a backend, and the CPU backend (the f64
//! reference with Adam). The GPU backend implements the same trait in src/gpu/.

use crate::config::{ModelConfig, EMOTION_LABELS, SENTIMENT_CLASSES};
use crate::cpu::adam::{adam_step, AdamConfig, AdamState};
use crate::cpu::model::{backward, forward, DropoutMasks, ModelError};
use crate::data::{Dataset, SplitName};
use crate::params::ParamStore;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("unknown backend '{0}': allowed are gpu, cpu")]
    Backend(String),
}

/// Sums over real utterances, so that means over an epoch weight every utterance equally.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossSums {
    pub loss: f64,
    pub sentiment: f64,
    pub emotion: f64,
    pub utterances: u64,
}

impl LossSums {
    pub fn mean(&self) -> f64 {
        self.loss / self.utterances.max(1) as f64
    }
    pub fn add_batch(&mut self, loss: f64, sentiment: Option<f64>, emotion: Option<f64>, n: usize) {
        let n64 = n as f64;
        self.loss += loss * n64;
        self.sentiment += sentiment.unwrap_or(0.0) * n64;
        self.emotion += emotion.unwrap_or(0.0) * n64;
        self.utterances += n as u64;
    }
}

/// Forward-only outputs for every video of a split, in split order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    /// Per video, per real utterance: [negative, positive].
    pub sentiment: Option<Vec<Vec<[f64; SENTIMENT_CLASSES]>>>,
    /// Per video, per real utterance: the 7 emotion label probabilities.
    pub emotion: Option<Vec<Vec<[f64; EMOTION_LABELS]>>>,
    pub loss: LossSums,
}

/// Parameters and optimizer state: everything a resumed run needs from the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineState {
    pub params: ParamStore,
    /// Working copy of the parameters in the engine's precision (f64 on the CPU, f32 values on the GPU).
    pub master: Vec<f64>,
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    /// Adam steps taken so far.
    pub adam_step: u64,
}

/// A training backend. Steps are deterministic given the step number (dropout
/// masks derive from the run seed and the step).
pub trait Engine {
    /// One line naming the backend and device.
    fn describe(&self) -> String;
    /// Forward, loss, backward and Adam on the given videos of the train split.
    fn train_step(&mut self, videos: &[usize], step: u64) -> Result<(), EngineError>;
    /// Loss sums accumulated by `train_step` since the last call (the GPU reads back here only).
    fn take_train_loss(&mut self) -> Result<LossSums, EngineError>;
    /// Forward only, evaluation mode, over batches of a split.
    fn predict(&mut self, split: SplitName, batches: &[Vec<usize>]) -> Result<Predictions, EngineError>;
    fn state(&mut self) -> Result<EngineState, EngineError>;
    fn set_state(&mut self, state: &EngineState) -> Result<(), EngineError>;
}

/// Machine-specific engine choices (not part of a run's configuration).
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// GPU adapter by (part of its) name; else `CIMNET_ADAPTER`, else the best one.
    pub adapter: Option<String>,
}

/// The backend a run asks for ("gpu" or "cpu").
pub fn make_engine(
    run: &super::run::RunConfig,
    params: ParamStore,
    data: &Dataset,
    opts: &EngineOptions,
) -> Result<Box<dyn Engine>, EngineError> {
    let adam = AdamConfig { lr: run.train.lr, ..AdamConfig::default() };
    match run.train.backend.as_str() {
        "cpu" => Ok(Box::new(CpuEngine::new(params, data.clone(), adam, run.train.seed))),
        "gpu" => {
            let ctx = crate::gpu::GpuContext::new(&crate::gpu::GpuOptions { adapter: opts.adapter.clone() })?;
            Ok(Box::new(crate::gpu::model::GpuEngine::new(ctx, &params, data, adam, run.train.seed, run.train.batch)?))
        }
        other => Err(EngineError::Backend(other.to_string())),
    }
}

/// The dropout seed of one training step: a hash of the run seed and the step,
/// so that a resumed run draws the same masks.
pub fn step_seed(run_seed: u64, step: u64) -> u32 {
    use crate::cpu::dropout::hash32;
    hash32(hash32(run_seed as u32 ^ hash32((run_seed >> 32) as u32)) ^ step as u32)
}

/// The CPU backend: the f64 reference of src/cpu/ with Adam.
pub struct CpuEngine {
    config: ModelConfig,
    data: Dataset,
    params: ParamStore,
    master: Vec<f64>,
    adam_state: AdamState,
    adam: AdamConfig,
    run_seed: u64,
    train_loss: LossSums,
}

impl CpuEngine {
    pub fn new(params: ParamStore, data: Dataset, adam: AdamConfig, run_seed: u64) -> CpuEngine {
        let master = params.to_f64();
        let n = master.len();
        CpuEngine {
            config: params.config.clone(),
            data,
            params,
            master,
            adam_state: AdamState::new(n),
            adam,
            run_seed,
            train_loss: LossSums::default(),
        }
    }
}

impl Engine for CpuEngine {
    fn describe(&self) -> String {
        "cpu (f64 reference)".to_string()
    }

    fn train_step(&mut self, videos: &[usize], step: u64) -> Result<(), EngineError> {
        let batch = self.data.batch(SplitName::Train, videos);
        let masks = (self.config.dropout > 0.0)
            .then(|| DropoutMasks::generate(&self.config, batch.b, batch.u, step_seed(self.run_seed, step)));
        let layout = &self.params.layout;
        let f = forward(&self.config, layout, &self.master, &batch, masks.as_ref())?;
        let g = backward(&self.config, layout, &self.master, &batch, &f);
        self.train_loss.add_batch(f.heads.loss, f.heads.loss_sentiment, f.heads.loss_emotion, batch.real_count());
        adam_step(&mut self.master, &mut self.adam_state, &g.params, &self.adam);
        Ok(())
    }

    fn take_train_loss(&mut self) -> Result<LossSums, EngineError> {
        Ok(std::mem::take(&mut self.train_loss))
    }

    fn predict(&mut self, split: SplitName, batches: &[Vec<usize>]) -> Result<Predictions, EngineError> {
        let n = self.data.split(split).len();
        let mut sent: Vec<Vec<[f64; SENTIMENT_CLASSES]>> = vec![Vec::new(); n];
        let mut emo: Vec<Vec<[f64; EMOTION_LABELS]>> = vec![Vec::new(); n];
        let mut loss = LossSums::default();
        for videos in batches {
            let batch = self.data.batch(split, videos);
            let f = forward(&self.config, &self.params.layout, &self.master, &batch, None)?;
            loss.add_batch(f.heads.loss, f.heads.loss_sentiment, f.heads.loss_emotion, batch.real_count());
            for (bi, &vid) in videos.iter().enumerate() {
                for i in 0..batch.len[bi] {
                    let t = bi * batch.u + i;
                    if let Some(p) = &f.heads.sentiment_prob {
                        sent[vid].push([p[t * 2], p[t * 2 + 1]]);
                    }
                    if let Some(p) = &f.heads.emotion_prob {
                        emo[vid].push(std::array::from_fn(|k| p[t * EMOTION_LABELS + k]));
                    }
                }
            }
        }
        Ok(Predictions {
            sentiment: self.config.tasks.has_sentiment().then_some(sent),
            emotion: self.config.tasks.has_emotion().then_some(emo),
            loss,
        })
    }

    fn state(&mut self) -> Result<EngineState, EngineError> {
        let mut params = self.params.clone();
        for (p, &x) in params.values.iter_mut().zip(&self.master) {
            *p = x as f32;
        }
        Ok(EngineState {
            params,
            master: self.master.clone(),
            m: self.adam_state.m.clone(),
            v: self.adam_state.v.clone(),
            adam_step: u64::from(self.adam_state.step),
        })
    }

    fn set_state(&mut self, s: &EngineState) -> Result<(), EngineError> {
        self.params = s.params.clone();
        self.master = s.master.clone();
        self.adam_state = AdamState { m: s.m.clone(), v: s.v.clone(), step: s.adam_step as u32 };
        Ok(())
    }
}
