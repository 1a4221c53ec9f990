//! Where a training step's time goes: every site of the schedule (the batch
//! gather, the forward sites, the heads, the backward sites, Adam) run and
//! timed alone, in recording order, for one batch. Each site is its own compute
//! pass and submit here (GPU timestamps around the pass where the device has
//! them, else the host clock around submit and wait), so the sum is close to,
//! not equal to, the step's time in one pass: what the table is for is the
//! share of each site, the place to look first when a member is slow on a
//! device. The step's state advances as a training step's does (gradients
//! accumulate, Adam steps), once per timed run: only for a throwaway engine
//! (`cimnet bench`).

use serde::{Deserialize, Serialize};

use crate::data::SplitName;
use crate::engine::EngineError;

use super::super::launch::Recordable;
use super::super::pipelines::Recorder;
use super::super::timing::Timer;
use super::schedule::Site;
use super::{input, GpuEngine, ModelStep};

/// One site's time in a training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteTime {
    pub site: String,
    pub dispatches: u32,
    /// Median of the timed runs.
    pub ms: f64,
}

/// A training step of one batch, site by site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepProfile {
    /// The batch: videos and its longest video (the U every site runs at).
    pub b: usize,
    pub u: usize,
    /// "timestamps" or "wall clock".
    pub method: String,
    pub reps: usize,
    /// Every site that records work for this batch, in recording order.
    pub sites: Vec<SiteTime>,
    pub total_ms: f64,
}

impl StepProfile {
    /// The table: site, dispatches, ms, share of the total.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "\nwhere a training step goes (B {}, U {}; each site alone, {}, median of {}):\n\n\
             | site | dispatches | ms | share |\n|---|---|---|---|\n",
            self.b, self.u, self.method, self.reps
        );
        for t in &self.sites {
            let share = 100.0 * t.ms / self.total_ms.max(1e-12);
            s.push_str(&format!("| {} | {} | {:.3} | {share:.1}% |\n", t.site, t.dispatches, t.ms));
        }
        let d: u32 = self.sites.iter().map(|t| t.dispatches).sum();
        s.push_str(&format!("| total | {d} | {:.3} | 100% |\n", self.total_ms));
        s
    }
}

/// A schedule site as recordable work.
struct SiteWork<'a>(&'a dyn Site);

impl Recordable for SiteWork<'_> {
    fn record_into(&self, rec: &mut Recorder) {
        self.0.record(rec);
    }
}

impl GpuEngine {
    /// Model 0's training step on `videos` of the training split, each site
    /// timed alone `reps` times after one warm-up run.
    pub fn profile_step(&mut self, videos: &[usize], step: u64, reps: usize) -> Result<StepProfile, EngineError> {
        if self.seeds.len() != 1 {
            return Err(input(format!("profile_step times one model's step; this engine holds {}", self.seeds.len())));
        }
        let rounds = self.rounds(&[ModelStep { model: 0, videos, step }])?;
        let round = rounds.first().ok_or_else(|| input("profile_step: no batch".to_string()))?;
        self.begin_train_step(round)?;
        let sd =
            self.splits[SplitName::Train.index()].as_ref().ok_or_else(|| input("the train split is empty".into()))?;
        let u = videos.iter().map(|&v| sd.data.host_lengths[v]).max().unwrap_or(0);
        let mut work: Vec<(String, &dyn Recordable)> = vec![("batch gather".into(), &sd.gather)];
        let sites: Vec<SiteWork> = self.schedule.training().map(SiteWork).collect();
        for s in &sites {
            work.push((s.0.name().to_string(), s));
        }
        work.push(("adam".into(), &self.adam));
        let timer = Timer::new(&self.ctx, false);
        let reps = reps.max(1);
        let mut out = Vec::new();
        for (site, w) in work {
            let t = timer.time(&self.ctx, &[w], 1, reps)?;
            if t.dispatches > 0 {
                out.push(SiteTime { site, dispatches: t.dispatches, ms: t.median_ms() });
            }
        }
        Ok(StepProfile {
            b: videos.len(),
            u,
            method: timer.method().as_str().to_string(),
            reps,
            total_ms: out.iter().map(|t| t.ms).sum(),
            sites: out,
        })
    }
}
