//! Many runs at once (`cimnet grid`): up to K runs train side by side, each in a
//! thread of its own that runs the one training loop every run uses
//! (src/train/run.rs through `pipeline::execute_with`), unchanged. What a run's
//! thread holds is a member engine: a proxy whose every call goes to one
//! coordinator (the calling thread), which owns the real engines on one shared
//! GPU device.
//!
//! Runs that start together and can share an engine (the same batch size, H, D,
//! dropout, data and kernel members; any seeds, modality sets, attention kinds
//! and task setups) become the models of ONE fused GPU engine
//! (`GpuEngine::new_group`): every launch of a step covers all of them, each on
//! its own batch (one batch slot per seed), so the dispatches per step do not
//! grow with the number of models. The coordinator waits until every engine it
//! holds has a call pending, then serves that round: the training steps of
//! every fused engine's models as one step (all engines' steps in one submit,
//! `gpu::model::train_steps`), evaluations of the same batches as one forward,
//! everything else (state, loss read-back) model by model. A run computes
//! exactly what it computes alone: the same loop, the same kernel members, the
//! same seeds, each model's arithmetic unchanged by its neighbours. A run that
//! ends (finished, early-stopped, failed) leaves: its model no longer takes part
//! (no compute, no update); the next queued runs form the next engine.
//! Runs on the CPU reference get an engine each (it loops over the models anyway).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::engine::{adam_of, target_on, Chosen, Device, Target};
use super::pipeline::{EngineSource, PipelineError};
use super::run::{EpochRecord, Progress, RunConfig};
use crate::cpu::engine::CpuEngine;
use crate::data::{Dataset, SplitName};
use crate::engine::{Engine, EngineError, EngineState, LossSums, Predictions, TuneMode};
use crate::gpu::model::{train_steps, GpuEngine, ModelStep};
use crate::params::ParamStore;

/// One run of a group: a label for progress lines and the work, which gets its
/// engine from the engine source it is handed.
pub struct Job<'a, T> {
    pub label: String,
    #[allow(clippy::type_complexity)]
    pub work: Box<dyn FnOnce(&mut EngineSource, &mut dyn Progress) -> Result<T, PipelineError> + Send + 'a>,
}

/// What a group did: grouped training steps served, the most models one of
/// them held, and the fused GPU engines built (each covering its models in
/// every launch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub rounds: u64,
    pub widest: usize,
    pub engines: usize,
}

/// Where a group stands, for the progress line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupStatus {
    pub total: usize,
    pub finished: usize,
    pub queued: usize,
    /// The runs training now: label, epochs done, epochs asked for.
    pub running: Vec<(String, usize, usize)>,
    /// Grouped training steps served so far.
    pub rounds: u64,
}

/// A call of a member engine.
enum Op {
    TrainStep(Vec<usize>, u64),
    TakeLoss,
    Predict(SplitName, Vec<Vec<usize>>),
    State,
    SetState(Box<EngineState>),
}

enum Answer {
    Unit,
    Loss(LossSums),
    Predictions(Predictions),
    State(Box<EngineState>),
}

type Reply = Result<Answer, EngineError>;

/// What a run's thread is given when it joins: its slot, its config with the
/// kernel members filled in, and where its answers arrive.
struct Joined {
    slot: usize,
    run: Box<RunConfig>,
    backend: &'static str,
    notice: Option<String>,
    describe: String,
    answers: Receiver<Reply>,
}

enum Event {
    EpochStart { epoch: usize, epochs: usize },
    EpochEnd(Box<EpochRecord>),
    Message(String),
}

enum Msg {
    Join {
        job: usize,
        run: Box<RunConfig>,
        params: Box<ParamStore>,
        data: Box<Dataset>,
        reply: Sender<Result<Joined, EngineError>>,
    },
    Call {
        slot: usize,
        op: Op,
    },
    Leave {
        slot: usize,
    },
    Progress {
        job: usize,
        event: Event,
    },
    Done {
        job: usize,
        failed: bool,
    },
}

/// The engine a run's thread trains with: every call is served by the coordinator.
struct Member {
    slot: usize,
    to: Sender<Msg>,
    answers: Receiver<Reply>,
    describe: String,
}

fn gone() -> EngineError {
    EngineError::Group("the group's coordinator stopped".to_string())
}

fn unexpected() -> EngineError {
    EngineError::Group("the group's coordinator answered another call".to_string())
}

impl Member {
    fn call(&self, op: Op) -> Result<Answer, EngineError> {
        self.to.send(Msg::Call { slot: self.slot, op }).map_err(|_| gone())?;
        self.answers.recv().map_err(|_| gone())?
    }
}

impl Engine for Member {
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn train_step(&mut self, videos: &[usize], step: u64) -> Result<(), EngineError> {
        match self.call(Op::TrainStep(videos.to_vec(), step))? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }
    fn take_train_loss(&mut self) -> Result<LossSums, EngineError> {
        match self.call(Op::TakeLoss)? {
            Answer::Loss(l) => Ok(l),
            _ => Err(unexpected()),
        }
    }
    fn predict(&mut self, split: SplitName, batches: &[Vec<usize>]) -> Result<Predictions, EngineError> {
        match self.call(Op::Predict(split, batches.to_vec()))? {
            Answer::Predictions(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }
    fn state(&mut self) -> Result<EngineState, EngineError> {
        match self.call(Op::State)? {
            Answer::State(s) => Ok(*s),
            _ => Err(unexpected()),
        }
    }
    fn set_state(&mut self, state: &EngineState) -> Result<(), EngineError> {
        match self.call(Op::SetState(Box::new(state.clone())))? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.to.send(Msg::Leave { slot: self.slot });
    }
}

/// A run thread's progress: forwarded to the coordinator, which draws it.
struct MemberProgress<'s> {
    job: usize,
    to: Sender<Msg>,
    stop: &'s AtomicBool,
}

impl Progress for MemberProgress<'_> {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, _steps: usize) {
        let _ = self.to.send(Msg::Progress { job: self.job, event: Event::EpochStart { epoch, epochs } });
    }
    fn epoch_end(&mut self, record: &EpochRecord) {
        let _ = self.to.send(Msg::Progress { job: self.job, event: Event::EpochEnd(Box::new(record.clone())) });
    }
    fn message(&mut self, text: &str) {
        let _ = self.to.send(Msg::Progress { job: self.job, event: Event::Message(text.to_string()) });
    }
    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Where a run's model lives: a CPU engine of its own, or model `model` of
/// fused GPU engine `engine` (a GPU run alone is a fused engine of one).
enum Holder {
    Cpu(Box<CpuEngine>),
    Fused { engine: usize, model: usize },
}

/// An engine the coordinator holds for a run, and its pending call.
struct Slot {
    holder: Holder,
    answers: Sender<Reply>,
    pending: Option<Op>,
    /// GPU memory the run's model holds (its share of a fused engine; 0 on the CPU).
    bytes: u64,
}

/// A fused engine and the slot of each of its models (None: the run left).
struct Fused {
    engine: GpuEngine,
    members: Vec<Option<usize>>,
}

/// A run waiting for its engine: built when every started run has joined.
struct Waiting {
    job: usize,
    run: Box<RunConfig>,
    params: Box<ParamStore>,
    data: Box<Dataset>,
    reply: Sender<Result<Joined, EngineError>>,
    /// Its kernel members came recorded in its config (a resumed run).
    recorded: bool,
}

/// How many runs a group trains at once: at most `width`, and, where `memory`
/// is known, only as many as fit in it (each engine measured when it is built;
/// a fused engine that does not fit is split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    pub width: usize,
    pub memory: Option<u64>,
}

/// Run `jobs`, as many at a time as `limits` allow, their engines on `device` (kernel
/// members by `tune` where a run has none recorded). Returns each job's result
/// in job order; `None` for a job not started because an earlier one failed or
/// `progress` asked to stop (runs already training then stop at their next
/// epoch boundary, resumable).
pub fn run_group<'a, T: Send + 'a>(
    jobs: Vec<Job<'a, T>>,
    limits: GroupLimits,
    device: &mut Device,
    tune: TuneMode,
    progress: &mut dyn Progress,
) -> (Vec<Option<Result<T, PipelineError>>>, GroupStats) {
    let n = jobs.len();
    let mut stats = GroupStats::default();
    let results: Mutex<Vec<Option<Result<T, PipelineError>>>> = Mutex::new((0..n).map(|_| None).collect());
    let stop = AtomicBool::new(false);
    let labels: Vec<String> = jobs.iter().map(|j| j.label.clone()).collect();
    std::thread::scope(|scope| {
        let (to, inbox) = channel::<Msg>();
        let mut queue: VecDeque<(usize, Job<'a, T>)> = jobs.into_iter().enumerate().collect();
        let mut slots: Vec<Option<Slot>> = Vec::new();
        let mut fused: Vec<Option<Fused>> = Vec::new();
        let mut waiting: Vec<Waiting> = Vec::new();
        let mut epochs: Vec<Option<(usize, usize)>> = vec![None; n];
        let mut status = GroupStatus { total: n, queued: n, ..GroupStatus::default() };
        let mut alive = 0usize;
        let mut drawn = Instant::now() - Duration::from_secs(1);
        // The largest per-run share of GPU memory seen (the estimate for runs
        // started but not yet built).
        let mut largest = 0u64;
        let fits = |slots: &[Option<Slot>], alive: usize, largest: u64| {
            let held: Vec<u64> = slots.iter().flatten().map(|s| s.bytes).collect();
            may_start(limits.memory, &held, alive, largest)
        };
        loop {
            while alive < limits.width.max(1) && !stop.load(Ordering::SeqCst) && fits(&slots, alive, largest) {
                let Some((job, j)) = queue.pop_front() else { break };
                alive += 1;
                let to = to.clone();
                let (results, stop) = (&results, &stop);
                scope.spawn(move || {
                    let mut p = MemberProgress { job, to: to.clone(), stop };
                    let mut source = |run: &mut RunConfig, params: ParamStore, data: &Dataset, _: &mut dyn Progress| {
                        join(&to, job, run, params, data)
                    };
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (j.work)(&mut source, &mut p)))
                        .unwrap_or_else(|_| Err(PipelineError::Grid(format!("run {job} panicked"))));
                    let failed = out.is_err();
                    results.lock().unwrap_or_else(|e| e.into_inner())[job] = Some(out);
                    let _ = to.send(Msg::Done { job, failed });
                });
            }
            status.queued = queue.len();
            if alive == 0 {
                break;
            }
            let Ok(msg) = inbox.recv() else { break };
            match msg {
                Msg::Join { job, run, params, data, reply } => {
                    waiting.push(Waiting { job, run, params, data, reply, recorded: false });
                }
                Msg::Call { slot, op } => {
                    if let Some(Some(s)) = slots.get_mut(slot) {
                        s.pending = Some(op);
                    }
                }
                Msg::Leave { slot } => {
                    if let Some(Some(Slot { holder: Holder::Fused { engine, model }, .. })) = slots.get(slot) {
                        let (e, m) = (*engine, *model);
                        if let Some(Some(f)) = fused.get_mut(e) {
                            f.members[m] = None;
                            if f.members.iter().all(Option::is_none) {
                                fused[e] = None; // every run left: free its memory
                            }
                        }
                    }
                    if let Some(s) = slots.get_mut(slot) {
                        *s = None;
                    }
                }
                Msg::Progress { job, event } => match event {
                    Event::EpochStart { epoch, epochs: total } => epochs[job] = Some((epoch, total)),
                    Event::EpochEnd(r) => {
                        if let Some(e) = &mut epochs[job] {
                            e.0 = r.epoch + 1;
                        }
                        progress.message(&format!(
                            "{}: epoch {}/{}  train loss {:.4}  valid loss {:.4}{}",
                            labels[job],
                            r.epoch + 1,
                            epochs[job].map_or(0, |e| e.1),
                            r.train_loss,
                            r.valid.loss,
                            if r.best { "  *" } else { "" }
                        ));
                    }
                    Event::Message(text) => progress.message(&format!("{}: {text}", labels[job])),
                },
                Msg::Done { job, failed } => {
                    alive -= 1;
                    status.finished += 1;
                    epochs[job] = None;
                    if failed {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            let held = slots.iter().flatten().count();
            if !waiting.is_empty() && waiting.len() + held >= alive {
                let built = &mut stats.engines;
                let mut cohort = Cohort { slots: &mut slots, fused: &mut fused, largest: &mut largest, limits, built };
                for job in cohort.build(std::mem::take(&mut waiting), device, tune, progress) {
                    epochs[job] = Some((0, 0));
                }
            }
            let mut held = slots.iter().flatten().peekable();
            if held.peek().is_some() && held.all(|s| s.pending.is_some()) {
                let stepped = serve(&mut slots, &mut fused);
                if stepped > 0 {
                    status.rounds += 1;
                    stats.rounds += 1;
                    stats.widest = stats.widest.max(stepped);
                }
            }
            if progress.should_stop() {
                stop.store(true, Ordering::SeqCst);
            }
            if drawn.elapsed() >= Duration::from_millis(200) {
                status.running =
                    (0..n).filter_map(|j| epochs[j].map(|(done, total)| (labels[j].clone(), done, total))).collect();
                progress.group(&status);
                drawn = Instant::now();
            }
        }
    });
    (results.into_inner().unwrap_or_else(|e| e.into_inner()), stats)
}

/// Whether another run may start within `memory`: the runs held take `held`
/// bytes, runs started but not built yet are estimated at the `largest` share
/// seen, and so is the new one. Before any engine is measured, runs start up to
/// the width: they join one cohort, and an engine that does not fit is split.
fn may_start(memory: Option<u64>, held: &[u64], alive: usize, largest: u64) -> bool {
    match memory {
        None => true,
        Some(_) if alive == 0 || largest == 0 => true,
        Some(budget) => {
            let unbuilt = alive.saturating_sub(held.len()) as u64;
            held.iter().sum::<u64>() + (unbuilt + 1) * largest <= budget
        }
    }
}

/// A run's thread joins the group: the coordinator builds its engine.
fn join(
    to: &Sender<Msg>,
    job: usize,
    run: &mut RunConfig,
    params: ParamStore,
    data: &Dataset,
) -> Result<Chosen, EngineError> {
    let (reply, answer) = channel();
    let msg =
        Msg::Join { job, run: Box::new(run.clone()), params: Box::new(params), data: Box::new(data.clone()), reply };
    to.send(msg).map_err(|_| gone())?;
    let joined = answer.recv().map_err(|_| gone())??;
    *run = *joined.run;
    let member = Member { slot: joined.slot, to: to.clone(), answers: joined.answers, describe: joined.describe };
    Ok(Chosen { engine: Box::new(member), backend: joined.backend, notice: joined.notice })
}

/// What the coordinator holds, while it builds the engines of joined runs.
struct Cohort<'c> {
    slots: &'c mut Vec<Option<Slot>>,
    fused: &'c mut Vec<Option<Fused>>,
    largest: &'c mut u64,
    limits: GroupLimits,
    /// Fused engines built so far.
    built: &'c mut usize,
}

/// Runs that can be models of one engine: the same device, batch size,
/// kernel members, H, D, dropout and data (seeds may differ: each model trains
/// on its own batches in a batch slot of the step).
fn fusable(a: &Waiting, b: &Waiting) -> bool {
    a.run.kernels == b.run.kernels && fusable_but_kernels(a, b)
}

fn fusable_but_kernels(a: &Waiting, b: &Waiting) -> bool {
    let (ra, rb) = (&a.run.train, &b.run.train);
    let (ca, cb) = (&a.params.config, &b.params.config);
    ra.batch == rb.batch
        && ra.backend == rb.backend
        && (ca.hidden, ca.dense) == (cb.hidden, cb.dense)
        && ca.dropout.to_bits() == cb.dropout.to_bits()
        && a.data == b.data
}

impl Cohort<'_> {
    /// A slot for a run; returns its index.
    fn hold(&mut self, slot: Slot) -> usize {
        let free = self.slots.iter().position(Option::is_none).unwrap_or(self.slots.len());
        if free == self.slots.len() {
            self.slots.push(None);
        }
        self.slots[free] = Some(slot);
        free
    }

    /// Answer a run's join with its slot.
    fn joined(&mut self, w: Waiting, holder: Holder, bytes: u64, describe: String, notice: Option<String>) {
        let backend = match &holder {
            Holder::Cpu(_) => "cpu",
            Holder::Fused { .. } => "gpu",
        };
        let (tx, rx) = channel();
        let slot = self.hold(Slot { holder, answers: tx, pending: None, bytes });
        let _ = w.reply.send(Ok(Joined { slot, run: w.run, backend, notice, describe, answers: rx }));
    }

    /// Build the engines of every waiting run: CPU runs one each, GPU runs fused
    /// by what they share. Returns the jobs that got an engine.
    fn build(
        &mut self,
        waiting: Vec<Waiting>,
        device: &mut Device,
        tune: TuneMode,
        progress: &mut dyn Progress,
    ) -> Vec<usize> {
        let mut started = Vec::new();
        let mut gpu: Vec<(Waiting, std::sync::Arc<crate::gpu::GpuContext>)> = Vec::new();
        // The richest models first (most modalities, then attention pairs): their
        // members are the ones the cohort shares, valid for every smaller model
        // (each launcher falls back where its own shape needs it, as it would for
        // that model alone with those members recorded).
        let mut waiting = waiting;
        let richness = |w: &Waiting| {
            let c = &w.params.config;
            (c.modalities.modalities().len(), c.attention_pairs().len())
        };
        waiting.sort_by_key(|w| std::cmp::Reverse(richness(w)));
        for mut w in waiting {
            // A run with no members recorded takes those of an earlier (richer)
            // such run it can share an engine with (raced for that run's model),
            // so that the two can be fused; each run records what it used.
            if w.run.kernels.is_none() {
                if let Some((v, _)) =
                    gpu.iter().find(|(v, _)| v.run.kernels.is_some() && !v.recorded && fusable_but_kernels(v, &w))
                {
                    w.run.kernels = v.run.kernels;
                }
            } else {
                w.recorded = true;
            }
            let target = target_on(device, &mut w.run, &w.params.config, &w.data, tune, &mut |e| progress.tune(e));
            match target {
                Err(e) => {
                    let _ = w.reply.send(Err(e));
                }
                Ok(Target::Cpu(notice)) => {
                    let (params, data) = (*w.params.clone(), (*w.data).clone());
                    let engine = CpuEngine::new(params, data, adam_of(&w.run), w.run.train.seed);
                    let describe = engine.describe();
                    started.push(w.job);
                    self.joined(w, Holder::Cpu(Box::new(engine)), 0, describe, notice);
                }
                Ok(Target::Gpu(ctx, _)) => gpu.push((w, ctx)),
            }
        }
        // Classes of fusable runs, in job order.
        let mut classes: Vec<Vec<(Waiting, std::sync::Arc<crate::gpu::GpuContext>)>> = Vec::new();
        for (w, ctx) in gpu {
            match classes.iter_mut().find(|c| fusable(&c[0].0, &w)) {
                Some(c) => c.push((w, ctx)),
                None => classes.push(vec![(w, ctx)]),
            }
        }
        for class in classes {
            started.extend(self.fuse(class));
        }
        started
    }

    /// One engine for `class` if it can be built and fits what is left of the
    /// memory budget; else the halves, down to one run per engine.
    fn fuse(&mut self, class: Vec<(Waiting, std::sync::Arc<crate::gpu::GpuContext>)>) -> Vec<usize> {
        let held: u64 = self.slots.iter().flatten().map(|s| s.bytes).sum();
        let left = self.limits.memory.map(|m| m.saturating_sub(held));
        let (ctx, first) = (class[0].1.clone(), &class[0].0);
        let models: Vec<(&ParamStore, crate::config::AdamConfig, u64)> =
            class.iter().map(|(w, _)| (w.params.as_ref(), adam_of(&w.run), w.run.train.seed)).collect();
        let kernels = first.run.kernels.unwrap_or_default();
        let made = GpuEngine::new_group(ctx, &models, &first.data, first.run.train.batch, &kernels);
        let made = match made {
            Ok(e) if class.len() > 1 && left.is_some_and(|l| e.bytes() > l) => Err(None),
            Ok(e) => Ok(e),
            Err(e) if class.len() > 1 => Err(Some(e)),
            Err(e) => {
                let msg = e.to_string();
                for (w, _) in class {
                    let _ = w.reply.send(Err(EngineError::Group(msg.clone())));
                }
                return Vec::new();
            }
        };
        let engine = match made {
            Ok(e) => e,
            Err(_) => {
                let mut class = class;
                let rest = class.split_off(class.len() / 2);
                let mut started = self.fuse(class);
                started.extend(self.fuse(rest));
                return started;
            }
        };
        let k = class.len();
        let share = engine.bytes() / k as u64;
        *self.largest = (*self.largest).max(share);
        let describe = engine.describe();
        let e = self.fused.iter().position(Option::is_none).unwrap_or(self.fused.len());
        if e == self.fused.len() {
            self.fused.push(None);
        }
        let mut members = Vec::with_capacity(k);
        let mut started = Vec::with_capacity(k);
        for (model, (w, _)) in class.into_iter().enumerate() {
            started.push(w.job);
            let before = self.slots.iter().position(Option::is_none).unwrap_or(self.slots.len());
            self.joined(w, Holder::Fused { engine: e, model }, share, describe.clone(), None);
            members.push(Some(before));
        }
        self.fused[e] = Some(Fused { engine, members });
        *self.built += 1;
        started
    }
}

/// A pending training step of a fused engine's model: (model, videos, step, slot).
type Pending = (usize, Vec<usize>, u64, usize);

/// The pending evaluations of one fused engine on the same (split, batches):
/// (engine, split, batches, (model, slot) of each).
type PredictClass = (usize, SplitName, Vec<Vec<usize>>, Vec<(usize, usize)>);

/// Serve one round: every held engine has a call pending. Training steps go
/// together (every GPU engine's in one submit; a fused engine's models with the
/// same batch as one step); evaluations of a fused engine's models on the same
/// batches as one forward; the rest model by model. Returns how many models the
/// round's training steps held.
fn serve(slots: &mut [Option<Slot>], fused: &mut [Option<Fused>]) -> usize {
    let mut ops: Vec<(usize, Op)> = Vec::new();
    for (i, s) in slots.iter_mut().enumerate() {
        if let Some(op) = s.as_mut().and_then(|s| s.pending.take()) {
            ops.push((i, op));
        }
    }
    let answer = |slots: &[Option<Slot>], i: usize, a: Reply| {
        if let Some(Some(s)) = slots.get(i) {
            let _ = s.answers.send(a);
        }
    };
    // Training steps: per fused engine, every model's; a CPU engine's now.
    let mut pending: Vec<Vec<Pending>> = (0..fused.len()).map(|_| Vec::new()).collect();
    let mut rest: Vec<(usize, Op)> = Vec::new();
    let mut grouped = 0;
    for (i, op) in ops {
        let Some(s) = slots[i].as_mut() else { continue };
        match (op, &mut s.holder) {
            (Op::TrainStep(videos, step), Holder::Fused { engine, model }) => {
                grouped += 1;
                pending[*engine].push((*model, videos, step, i));
            }
            (Op::TrainStep(videos, step), Holder::Cpu(c)) => {
                grouped += 1;
                let reply = c.train_step(&videos, step).map(|()| Answer::Unit);
                answer(slots, i, reply);
            }
            (op, _) => rest.push((i, op)),
        }
    }
    // Every fused engine's models in one step (one submit unless batches differ in size).
    let outcome = {
        let lists: Vec<Vec<ModelStep>> = pending
            .iter()
            .map(|p| {
                p.iter().map(|(model, videos, step, _)| ModelStep { model: *model, videos, step: *step }).collect()
            })
            .collect();
        let mut batch: Vec<(&mut GpuEngine, &[ModelStep])> = Vec::new();
        for (f, list) in fused.iter_mut().zip(&lists) {
            if let (Some(f), false) = (f.as_mut(), list.is_empty()) {
                batch.push((&mut f.engine, list.as_slice()));
            }
        }
        (!batch.is_empty()).then(|| train_steps(&mut batch).map_err(|e| e.to_string()))
    };
    if let Some(outcome) = outcome {
        for (_, _, _, i) in pending.iter().flatten() {
            answer(slots, *i, outcome.clone().map(|()| Answer::Unit).map_err(EngineError::Group));
        }
    }
    // Evaluations of a fused engine's models on the same batches: one forward.
    let mut predicts: Vec<PredictClass> = Vec::new();
    let mut others: Vec<(usize, Op)> = Vec::new();
    for (i, op) in rest {
        match (op, slots[i].as_ref().map(|s| &s.holder)) {
            (Op::Predict(split, batches), Some(Holder::Fused { engine, model })) => {
                match predicts.iter_mut().find(|p| p.0 == *engine && p.1 == split && p.2 == batches) {
                    Some(p) => p.3.push((*model, i)),
                    None => predicts.push((*engine, split, batches, vec![(*model, i)])),
                }
            }
            (op, _) => others.push((i, op)),
        }
    }
    for (e, split, batches, mut who) in predicts {
        who.sort_unstable();
        let part: Vec<usize> = who.iter().map(|w| w.0).collect();
        let Some(Some(f)) = fused.get_mut(e) else { continue };
        match f.engine.predict_of(&part, split, &batches) {
            Ok(preds) => {
                for ((_, i), p) in who.iter().zip(preds) {
                    answer(slots, *i, Ok(Answer::Predictions(p)));
                }
            }
            Err(err) => {
                let msg = err.to_string();
                for (_, i) in &who {
                    answer(slots, *i, Err(EngineError::Group(msg.clone())));
                }
            }
        }
    }
    for (i, op) in others {
        let reply = match slots[i].as_mut().map(|s| &mut s.holder) {
            Some(Holder::Cpu(engine)) => {
                let e: &mut dyn Engine = engine.as_mut();
                match op {
                    Op::TakeLoss => e.take_train_loss().map(Answer::Loss),
                    Op::Predict(split, batches) => e.predict(split, &batches).map(Answer::Predictions),
                    Op::State => e.state().map(|s| Answer::State(Box::new(s))),
                    Op::SetState(st) => e.set_state(&st).map(|()| Answer::Unit),
                    Op::TrainStep(..) => Err(unexpected()), // served above
                }
            }
            Some(Holder::Fused { engine, model }) => {
                let (e, k) = (*engine, *model);
                match fused.get_mut(e).and_then(Option::as_mut) {
                    None => Err(gone()),
                    Some(f) => {
                        let g = &mut f.engine;
                        match op {
                            Op::TakeLoss => g.take_train_loss_of(k).map(Answer::Loss),
                            Op::State => g.state_of(k).map(|s| Answer::State(Box::new(s))),
                            Op::SetState(st) => g.set_state_of(k, &st).map(|()| Answer::Unit),
                            Op::Predict(..) | Op::TrainStep(..) => Err(unexpected()), // served above
                        }
                    }
                }
            }
            None => continue,
        };
        answer(slots, i, reply);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::may_start;

    #[test]
    fn runs_start_while_the_memory_budget_holds_one_more_engine() {
        assert!(may_start(None, &[100; 50], 50, 100), "no budget: only the width limits");
        assert!(may_start(Some(1), &[], 0, 0), "the first run always starts");
        assert!(may_start(Some(1000), &[], 1, 0), "before any engine is measured, runs start to join one cohort");
        assert!(may_start(Some(300), &[100, 100], 2, 100));
        assert!(!may_start(Some(299), &[100, 100], 2, 100));
        // A started run not built yet counts as the largest engine seen.
        assert!(!may_start(Some(299), &[100], 2, 100));
        assert!(may_start(Some(300), &[100], 2, 100));
    }
}
