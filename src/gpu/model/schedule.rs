//! The schedule of a training step as data: an ordered list of forward sites and
//! one of backward sites. A site is named once, where it is built and pushed
//! into its list; it carries how its params follow the batch, so re-sizing the
//! step for a batch (`Schedule::update`) and recording it (`record_forward`,
//! `record_backward`) walk the lists and name nothing.

use crate::engine::EngineError;

use super::super::attention::{AttentionLaunches, AttentionParams, AttentionProblem};
use super::super::context::GpuContext;
use super::super::dropout::{DropoutLaunch, DropoutParams, DropoutSegment};
use super::super::gru::{GruBackward, GruForward, GruParams, GruProblem};
use super::super::heads::{HeadsBackward, HeadsForward, HeadsParams, HeadsProblem};
use super::super::launch::Recordable;
use super::super::linear::{LinearLaunch, LinearParams, LinearProblem};
use super::super::pipelines::Recorder;
use super::plan::Plan;

/// One entry of the schedule: recordable work and how its params follow the batch.
pub trait Site {
    /// What the site computes (bench output, debugging).
    fn name(&self) -> &str;
    /// Point the site at a step's batches and the models taking part (the plan).
    fn update(&mut self, ctx: &GpuContext, plan: &Plan) -> Result<(), EngineError>;
    fn record(&self, rec: &mut Recorder);
}

type Update<L> = Box<dyn Fn(&mut L, &GpuContext, &Plan) -> Result<bool, EngineError>>;

struct Step<L> {
    name: String,
    work: L,
    update: Update<L>,
    live: bool,
}

impl<L: Recordable> Site for Step<L> {
    fn name(&self) -> &str {
        &self.name
    }
    fn update(&mut self, ctx: &GpuContext, plan: &Plan) -> Result<(), EngineError> {
        self.live = (self.update)(&mut self.work, ctx, plan)?;
        Ok(())
    }
    fn record(&self, rec: &mut Recorder) {
        if self.live {
            self.work.record_into(rec);
        }
    }
}

/// A site from its work and its update rule (which says whether any model
/// taking part has the site).
pub fn site<L: Recordable + 'static>(
    name: impl Into<String>,
    work: L,
    update: impl Fn(&mut L, &GpuContext, &Plan) -> Result<bool, EngineError> + 'static,
) -> Box<dyn Site> {
    Box::new(Step { name: name.into(), work, update: Box::new(update), live: true })
}

/// A launch re-parameterised by shared params and a problem list (every family's
/// launch type).
pub trait Listed {
    type Params;
    type Problem;
    fn set(&mut self, ctx: &GpuContext, p: Self::Params, list: &[Self::Problem]) -> Result<(), EngineError>;
}

/// A site whose params and problems follow from the plan by `formula`; it
/// records nothing when no model taking part has it.
pub fn listed<L: Listed + Recordable + 'static>(
    name: impl Into<String>,
    work: L,
    formula: impl Fn(&Plan) -> Result<(L::Params, Vec<L::Problem>), EngineError> + 'static,
) -> Box<dyn Site> {
    site(name, work, move |l, ctx, plan| {
        let (p, list) = formula(plan)?;
        if list.is_empty() {
            return Ok(false);
        }
        l.set(ctx, p, &list)?;
        Ok(true)
    })
}

macro_rules! listed_launch {
    ($($t:ty => ($p:ty, $q:ty), $by:ident;)*) => {$(
        impl Listed for $t {
            type Params = $p;
            type Problem = $q;
            fn set(&mut self, ctx: &GpuContext, p: $p, list: &[$q]) -> Result<(), EngineError> {
                Ok(self.update(ctx, listed_launch!(@$by p), list)?)
            }
        }
    )*};
    (@value $p:ident) => { $p };
    (@reference $p:ident) => { &$p };
}

listed_launch! {
    LinearLaunch => (LinearParams, LinearProblem), value;
    DropoutLaunch => (DropoutParams, DropoutSegment), value;
    AttentionLaunches => (AttentionParams, AttentionProblem), value;
    HeadsForward => (HeadsParams, HeadsProblem), value;
    HeadsBackward => (HeadsParams, HeadsProblem), value;
    GruForward => (GruParams, GruProblem), reference;
    GruBackward => (GruParams, GruProblem), reference;
}

/// Every site of a step, in recording order.
#[derive(Default)]
pub struct Schedule {
    /// Input projections through attention (the batch gather is per split and comes first).
    pub forward: Vec<Box<dyn Site>>,
    /// The heads in training (loss into the train accumulator) and evaluation mode.
    pub heads_train: Vec<Box<dyn Site>>,
    pub heads_eval: Vec<Box<dyn Site>>,
    /// The forward reversed: heads through the input projections' weight gradients.
    pub backward: Vec<Box<dyn Site>>,
}

impl Schedule {
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn Site>> {
        self.forward.iter_mut().chain(&mut self.heads_train).chain(&mut self.heads_eval).chain(&mut self.backward)
    }

    /// Point every site at a step.
    pub fn update(&mut self, ctx: &GpuContext, plan: &Plan) -> Result<(), EngineError> {
        for s in self.all_mut() {
            s.update(ctx, plan)?;
        }
        Ok(())
    }

    pub fn record_forward(&self, rec: &mut Recorder, train: bool) {
        let heads = if train { &self.heads_train } else { &self.heads_eval };
        for s in self.forward.iter().chain(heads) {
            s.record(rec);
        }
    }

    pub fn record_backward(&self, rec: &mut Recorder) {
        for s in &self.backward {
            s.record(rec);
        }
    }

    /// The sites of a training step in recording order.
    pub fn training(&self) -> impl Iterator<Item = &dyn Site> {
        self.forward.iter().chain(&self.heads_train).chain(&self.backward).map(|s| s.as_ref())
    }

    /// Site names in recording order of a training step.
    pub fn names(&self) -> Vec<String> {
        self.training().map(|s| s.name().to_string()).collect()
    }
}
