//! What the training loop asks of a backend: the `Engine` trait and its types.
//! Both engines sit above this file (src/cpu/engine.rs, src/gpu/model.rs);
//! the training loop (src/train/) sits above them.

use crate::config::{EMOTION_LABELS, SENTIMENT_CLASSES};
use crate::cpu::model::ModelError;
use crate::data::SplitName;
use crate::params::ParamStore;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The GPU engine's own typed error (src/gpu/), kept whole so callers can
    /// downcast it; this file sits below the GPU engine and cannot name its types.
    #[error(transparent)]
    Gpu(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A failure passed on to the runs of a group (a grouped step failed, or the group stopped).
    #[error("{0}")]
    Group(String),
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
    /// How the GPU engine picks its kernel members where a run has none recorded.
    pub tune: TuneMode,
}

/// `--tune`: how kernel members are chosen for a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TuneMode {
    /// The cached race for this adapter and shape, else race now and cache it.
    #[default]
    Auto,
    /// No race: the first candidate of every family (the profile's defaults).
    Off,
    /// Race now whatever the cache holds, and cache the result.
    Fresh,
}

impl TuneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TuneMode::Auto => "auto",
            TuneMode::Off => "off",
            TuneMode::Fresh => "fresh",
        }
    }
}

impl std::str::FromStr for TuneMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(TuneMode::Auto),
            "off" => Ok(TuneMode::Off),
            "fresh" => Ok(TuneMode::Fresh),
            _ => Err(format!("unknown --tune '{s}': allowed are auto, off, fresh")),
        }
    }
}

/// The dropout seed of one training step: a hash of the run seed and the step,
/// so that a resumed run draws the same masks.
pub fn step_seed(run_seed: u64, step: u64) -> u32 {
    use crate::cpu::dropout::hash32;
    hash32(hash32(run_seed as u32 ^ hash32((run_seed >> 32) as u32)) ^ step as u32)
}
