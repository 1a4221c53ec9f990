//! The CPU engine: the f64 reference of this folder with Adam, behind the same
//! `Engine` trait as the GPU engine.

use crate::config::{AdamConfig, ModelConfig, EMOTION_LABELS, SENTIMENT_CLASSES};
use crate::cpu::adam::{adam_step, AdamState};
use crate::cpu::model::{backward, forward, DropoutMasks};
use crate::data::{Dataset, SplitName};
use crate::engine::{step_seed, Engine, EngineError, EngineState, LossSums, Predictions};
use crate::params::ParamStore;

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
