//! Many runs at once (`cimnet grid`): up to K runs train side by side, each in a
//! thread of its own that runs the one training loop every run uses
//! (src/train/run.rs through `pipeline::execute_with`), unchanged. What a run's
//! thread holds is a member engine: a proxy whose every call goes to one
//! coordinator (the calling thread), which owns the real engines, one per run,
//! on one shared GPU device. The coordinator waits until every engine it holds
//! has a call pending, then serves that round: all pending training steps as
//! ONE grouped step (on the GPU one command buffer and one submit,
//! `gpu::model::train_steps`; on the CPU a loop), everything else (evaluation,
//! state, loss read-back) run by run. A run thus computes exactly what it
//! computes alone: the same loop, the same engine, the same kernel members, the
//! same seeds; only submits are shared. A run that ends (finished, early-stopped,
//! failed) leaves the group and the next queued run takes its slot, so the group
//! stays full while runs stop at different epochs.
//!
//! What this does not do yet: fuse the K models into the same dispatches (a model
//! axis in every kernel); a grouped step records K times the dispatches of one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::engine::{choose_on, AnyEngine, Chosen, Device};
use super::pipeline::{EngineSource, PipelineError};
use super::run::{EpochRecord, Progress, RunConfig};
use crate::data::{Dataset, SplitName};
use crate::engine::{Engine, EngineError, EngineState, LossSums, Predictions, TuneMode};
use crate::gpu::model::{train_steps, GpuEngine};
use crate::params::ParamStore;

/// One run of a group: a label for progress lines and the work, which gets its
/// engine from the engine source it is handed.
pub struct Job<'a, T> {
    pub label: String,
    #[allow(clippy::type_complexity)]
    pub work: Box<dyn FnOnce(&mut EngineSource, &mut dyn Progress) -> Result<T, PipelineError> + Send + 'a>,
}

/// What a group did: grouped training steps served, and the most models one of them held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub rounds: u64,
    pub widest: usize,
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

/// An engine the coordinator holds for a run, and its pending call.
struct Slot {
    engine: AnyEngine,
    answers: Sender<Reply>,
    pending: Option<Op>,
    /// GPU memory the engine holds (0 on the CPU).
    bytes: u64,
}

/// How many runs a group trains at once: at most `width`, and, where `memory`
/// is known, only as many GPU engines as fit in it (each run's engine measured
/// when it is built; until the first is, one run at a time).
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
        let mut epochs: Vec<Option<(usize, usize)>> = vec![None; n];
        let mut status = GroupStatus { total: n, queued: n, ..GroupStatus::default() };
        let mut alive = 0usize;
        let mut drawn = Instant::now() - Duration::from_secs(1);
        // GPU bytes of the engines held, and the largest engine seen (the estimate
        // for runs started but not yet built).
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
                Msg::Join { job, mut run, params, data, reply } => {
                    let made = choose_on(device, &mut run, *params, &data, tune, &mut |e| progress.tune(e));
                    let answer = made.map(|(engine, notice)| {
                        let (tx, rx) = channel();
                        let backend = engine.backend();
                        let bytes = engine.bytes();
                        largest = largest.max(bytes);
                        let mut slot = Slot { engine, answers: tx, pending: None, bytes };
                        let describe = slot.engine.as_dyn().describe();
                        let free = slots.iter().position(Option::is_none).unwrap_or(slots.len());
                        if free == slots.len() {
                            slots.push(None);
                        }
                        slots[free] = Some(slot);
                        Joined { slot: free, run, backend, notice, describe, answers: rx }
                    });
                    if answer.is_ok() {
                        epochs[job] = Some((0, 0));
                    }
                    let _ = reply.send(answer);
                }
                Msg::Call { slot, op } => {
                    if let Some(Some(s)) = slots.get_mut(slot) {
                        s.pending = Some(op);
                    }
                }
                Msg::Leave { slot } => {
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
            let mut held = slots.iter().flatten().peekable();
            if held.peek().is_some() && held.all(|s| s.pending.is_some()) {
                let stepped = serve(&mut slots);
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

/// Whether another run may start within `memory`: the engines held take `held`
/// bytes, runs started but not built yet are estimated at the `largest` engine
/// seen, and so is the new one; before any engine is built, one run at a time.
fn may_start(memory: Option<u64>, held: &[u64], alive: usize, largest: u64) -> bool {
    match memory {
        None => true,
        Some(_) if alive == 0 => true,
        Some(_) if largest == 0 => false,
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

/// Serve one round: every held engine has a call pending. Training steps go
/// together (the GPU ones in one submit); the rest run one by one. Returns
/// how many training steps the round held.
fn serve(slots: &mut [Option<Slot>]) -> usize {
    let mut steps: Vec<(usize, Vec<usize>, u64)> = Vec::new();
    let mut others: Vec<(usize, Op)> = Vec::new();
    for (i, s) in slots.iter_mut().enumerate() {
        match s.as_mut().and_then(|s| s.pending.take()) {
            Some(Op::TrainStep(videos, step)) => steps.push((i, videos, step)),
            Some(op) => others.push((i, op)),
            None => {}
        }
    }
    let grouped = steps.len();
    let mut gpu: Vec<(&mut GpuEngine, &[usize], u64)> = Vec::new();
    let mut gpu_answers: Vec<Sender<Reply>> = Vec::new();
    for (i, s) in slots.iter_mut().enumerate() {
        let Some(s) = s else { continue };
        let Some((_, videos, step)) = steps.iter().find(|x| x.0 == i) else { continue };
        match &mut s.engine {
            AnyEngine::Gpu(g) => {
                gpu.push((g, videos.as_slice(), *step));
                gpu_answers.push(s.answers.clone());
            }
            AnyEngine::Cpu(c) => {
                let _ = s.answers.send(c.train_step(videos, *step).map(|()| Answer::Unit));
            }
        }
    }
    if !gpu.is_empty() {
        let outcome = train_steps(&mut gpu).map_err(|e| e.to_string());
        for a in gpu_answers {
            let _ = a.send(outcome.clone().map(|()| Answer::Unit).map_err(EngineError::Group));
        }
    }
    for (i, op) in others {
        let Some(s) = slots[i].as_mut() else { continue };
        let e = s.engine.as_dyn();
        let answer = match op {
            Op::TakeLoss => e.take_train_loss().map(Answer::Loss),
            Op::Predict(split, batches) => e.predict(split, &batches).map(Answer::Predictions),
            Op::State => e.state().map(|s| Answer::State(Box::new(s))),
            Op::SetState(st) => e.set_state(&st).map(|()| Answer::Unit),
            Op::TrainStep(..) => Err(unexpected()), // served above
        };
        let _ = s.answers.send(answer);
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
        assert!(!may_start(Some(1000), &[], 1, 0), "one at a time until an engine's size is known");
        assert!(may_start(Some(300), &[100, 100], 2, 100));
        assert!(!may_start(Some(299), &[100, 100], 2, 100));
        // A started run not built yet counts as the largest engine seen.
        assert!(!may_start(Some(299), &[100], 2, 100));
        assert!(may_start(Some(300), &[100], 2, 100));
    }
}
