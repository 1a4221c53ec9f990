//! Measured choice of kernel members per device (cuDNN's benchmark mode, FFTW's
//! plans, burn's autotune): on first use of an adapter, for the shape class a
//! run needs (B, U bucket, H, D, input widths, problems), every family site
//! races its `candidates(profile, params)` on buffers of that shape for a
//! bounded time, the fastest member wins, and the result is cached per adapter,
//! driver, cimnet version and kernel sources in the user's cache directory. The tuner calls only
//! `candidates` and the launchers; progress goes to a callback (src/cli prints).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::engine::TuneMode;

use super::attention::{self, AttentionKernel, AttentionParams, AttentionProblem, AttentionSaved};
use super::buffers;
use super::context::GpuContext;
use super::gru::{self, GruKernel, GruMember, GruSchedule};
use super::launch::Recordable;
use super::linear::{self, LinearKernel, LinearLaunch, LinearOp, LinearParams, LinearProblem};
use super::model::{Arena, GpuEngineError, Shape, Step};
use super::profile::DeviceProfile;
use super::timing::Timer;

mod cache;
use crate::config::AdamConfig;
pub use cache::{cache_dir, cache_file};
use cache::{key, lookup, read_cache, store, CacheEntry};

/// The members a GPU engine is built with: one field per family site. Recorded
/// in a run's config.json so that --resume, eval and predict use the same ones.
/// A field missing from an older file takes the generic default (the launchers
/// fall back to Scalar where a shape does not allow the member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelChoice {
    /// GRU recurrence forward (kernel and schedule).
    pub gru_forward: GruMember,
    /// GRU recurrence backward and the dW_hh reduction (kernel and schedule).
    pub gru_backward: GruMember,
    /// Input projections x W_ih^T + b_ih (every modality, both directions).
    pub projection: LinearKernel,
    /// dW_ih, db_ih from gi.
    pub projection_weights: LinearKernel,
    /// Dense + ReLU + dropout (+ the plain block of R).
    pub dense: LinearKernel,
    /// Dense input gradient d(gru out).
    pub dense_backward: LinearKernel,
    /// Dense weight gradient.
    pub dense_weights: LinearKernel,
    /// Attention forward (every pair's CIM unit, or self-attention).
    pub attention_forward: AttentionKernel,
    /// Attention backward (dM, then dX and dY).
    pub attention_backward: AttentionKernel,
}

impl Default for KernelChoice {
    /// The widest member of each family (what the engine used before the tuner).
    fn default() -> Self {
        KernelChoice {
            gru_forward: GruMember { kernel: GruKernel::Wide, schedule: GruSchedule::Persistent },
            gru_backward: GruMember { kernel: GruKernel::Wide, schedule: GruSchedule::Persistent },
            projection: LinearKernel::Vec4,
            projection_weights: LinearKernel::Vec4,
            dense: LinearKernel::Vec4,
            dense_backward: LinearKernel::Vec4,
            dense_weights: LinearKernel::Vec4,
            // The only attention member before the family had two: a config.json
            // written then resumes bit for bit.
            attention_forward: AttentionKernel::Flat,
            attention_backward: AttentionKernel::Flat,
        }
    }
}

impl KernelChoice {
    /// `candidates(..)[0]` of every site at `shape` (`--tune off`).
    pub fn defaults(ctx: &GpuContext, cfg: &ModelConfig, shape: Shape) -> Result<KernelChoice, GpuEngineError> {
        let s = Sites::new(cfg, shape)?;
        let first = |c: Vec<LinearKernel>| c[0];
        Ok(KernelChoice {
            gru_forward: first_gru(gru::candidates(&ctx.profile, &s.gru, &s.gru_problems))?,
            gru_backward: first_gru(gru::candidates(&ctx.profile, &s.gru, &s.gru_problems))?,
            projection: first(s.linear_candidates(ctx, &s.projection)),
            projection_weights: first(s.linear_candidates(ctx, &s.projection)),
            dense: first(s.linear_candidates(ctx, &s.dense)),
            dense_backward: first(s.linear_candidates(ctx, &s.dense)),
            dense_weights: first(s.linear_candidates(ctx, &s.dense)),
            attention_forward: s.attention_candidates(ctx)[0],
            attention_backward: s.attention_candidates(ctx)[0],
        })
    }

    /// (site, member) pairs, for output.
    pub fn members(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("gru_forward", self.gru_forward.name()),
            ("gru_backward", self.gru_backward.name()),
            ("projection", self.projection.name()),
            ("projection_weights", self.projection_weights.name()),
            ("dense", self.dense.name()),
            ("dense_backward", self.dense_backward.name()),
            ("dense_weights", self.dense_weights.name()),
            ("attention_forward", self.attention_forward.name()),
            ("attention_backward", self.attention_backward.name()),
        ]
    }
}

/// One member's time in the race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaceEntry {
    pub site: String,
    pub member: String,
    /// Fastest timed run, ms; None where the time budget ran out before it or
    /// it was skipped.
    pub ms: Option<f64>,
    pub winner: bool,
    /// Why the member was not timed, when it was skipped by design (not by the budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A whole race: every site's members at one shape class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Race {
    pub shape: String,
    /// "timestamps" or "wall".
    pub method: String,
    pub seconds: f64,
    /// Every member got a timed run within the budget.
    pub complete: bool,
    pub entries: Vec<RaceEntry>,
}

/// Where a choice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChoiceSource {
    /// `--tune off`: the first candidate of every site.
    Defaults,
    /// A race run now.
    Raced,
    /// A race read from the cache.
    Cached,
    /// The members recorded in a run's config.json.
    Recorded,
}

/// The tuner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    pub choice: KernelChoice,
    pub source: ChoiceSource,
    pub race: Option<Race>,
}

/// What the tuner reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum TuneEvent {
    /// Member `done` of `total` is about to run.
    Progress { done: usize, total: usize, site: String, member: String },
    /// The race ended.
    Finished { seconds: f64 },
    /// Something the user should know (a corrupt cache ignored, a cache not written).
    Notice(String),
}

/// How to tune.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub mode: TuneMode,
    /// The cache directory; None: [`cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Time for the whole race: every member's first run, costliest sites
    /// first, then repeats of the close ones; pipeline compilation is not counted.
    pub budget: Duration,
}

impl TuneOptions {
    pub fn new(mode: TuneMode) -> TuneOptions {
        TuneOptions { mode, cache_dir: None, budget: Duration::from_secs(8) }
    }
}

/// The shape class of a run: what the race is keyed by and run at.
pub fn shape_class(cfg: &ModelConfig, shape: Shape) -> String {
    let k: Vec<String> = cfg.modalities.modalities().iter().map(|&m| format!("{}{}", m.letter(), cfg.dim(m))).collect();
    format!("B{} U{} H{} D{} K{} P{}", shape.b, shape.u, cfg.hidden, cfg.dense, k.join(","), 2 * k.len())
}

/// The U a race runs at: the power of two at or above `u` (a bucket), at most `u_max`.
pub fn u_bucket(u: usize, u_max: usize) -> usize {
    u.max(1).next_power_of_two().min(u_max.max(1))
}

/// The members for a run of `cfg` at `shape` (B = the batch, U = the race's
/// bucket), by `opts.mode`: off = defaults; auto = the cache, else a race that
/// is then cached; fresh = a race whatever the cache holds.
pub fn choose(
    ctx: &GpuContext,
    cfg: &ModelConfig,
    shape: Shape,
    opts: &TuneOptions,
    on: &mut dyn FnMut(&TuneEvent),
) -> Result<Tuned, GpuEngineError> {
    if opts.mode == TuneMode::Off {
        return Ok(Tuned {
            choice: KernelChoice::defaults(ctx, cfg, shape)?,
            source: ChoiceSource::Defaults,
            race: None,
        });
    }
    let class = shape_class(cfg, shape);
    let k = key(ctx, &class);
    let path = opts.cache_dir.clone().or_else(cache_dir).map(|d| cache_file(&d));
    if opts.mode == TuneMode::Auto {
        if let Some(p) = &path {
            if let Some(e) = lookup(&read_cache(p, on), &k) {
                return Ok(Tuned { choice: e.choice, source: ChoiceSource::Cached, race: Some(e.race) });
            }
        }
    }
    let (choice, race) = race(ctx, cfg, shape, opts.budget, on)?;
    match &path {
        Some(p) => store(p, CacheEntry { key: k, choice, race: race.clone() }, on),
        None => on(&TuneEvent::Notice("no user cache directory; the kernel race is not cached".into())),
    }
    Ok(Tuned { choice, source: ChoiceSource::Raced, race: Some(race) })
}

/// The params of every raced site at one shape: the engine's own formulas
/// (src/gpu/model/plan.rs) for this one model.
struct Sites {
    arena: Arena,
    shape: Shape,
    gru: gru::GruParams,
    gru_problems: Vec<gru::GruProblem>,
    /// Per modality: the site's shared params and its problems.
    projection: Vec<(LinearParams, Vec<LinearProblem>)>,
    dense: Vec<(LinearParams, Vec<LinearProblem>)>,
    /// Per attention pair (none without attention).
    attention: Vec<(AttentionParams, Vec<AttentionProblem>)>,
}

impl Sites {
    fn new(cfg: &ModelConfig, shape: Shape) -> Result<Sites, GpuEngineError> {
        let arena =
            Arena::new(&[(cfg.clone(), AdamConfig::default())], shape.b, shape.u, 1).map_err(GpuEngineError::Input)?;
        let step = Step::one(&[0], shape, 1, cfg.dropout);
        let (gru, gru_problems, projection, dense, attention) = {
            let plan = arena.plan(&step).map_err(GpuEngineError::Input)?;
            let (gru, gq) = plan.gru()?;
            let projection = arena.mods.iter().map(|&md| plan.projection(md)).collect();
            let dense = arena.mods.iter().map(|&md| plan.dense_forward(md)).collect();
            let attention = arena.pair_kinds.iter().map(|&pair| plan.attention(pair)).collect();
            (gru, gq, projection, dense, attention)
        };
        Ok(Sites { arena, shape, gru, gru_problems, projection, dense, attention })
    }

    /// The attention members every pair runs as themselves (Flat alone without attention).
    fn attention_candidates(&self, ctx: &GpuContext) -> Vec<AttentionKernel> {
        let all = self.attention.iter().map(|(p, _)| attention::candidates(&ctx.profile, p));
        all.reduce(|a, b| a.into_iter().filter(|k| b.contains(k)).collect())
            .filter(|c| !c.is_empty())
            .unwrap_or(vec![AttentionKernel::Flat])
    }

    /// Every member some modality lists, in the device's member order (so the
    /// default does not depend on which modalities a model or a group has:
    /// Vec4 where any modality takes it; each launcher still falls back to
    /// Scalar where its own shape needs it).
    fn linear_candidates(&self, ctx: &GpuContext, ps: &[(LinearParams, Vec<LinearProblem>)]) -> Vec<LinearKernel> {
        let lists: Vec<Vec<LinearKernel>> = ps.iter().map(|(p, q)| linear::candidates(&ctx.profile, p, q)).collect();
        let listed = |k: &LinearKernel| *k == LinearKernel::Scalar || lists.iter().any(|l| l.contains(k));
        linear::member_order(&ctx.profile).into_iter().filter(listed).collect()
    }
}

/// Zeroed buffers of the engine's arenas at the race's shape (the kernels' cost
/// does not depend on the values; the lengths are all U, no padding).
struct Bufs {
    w: wgpu::Buffer,
    grads: wgpu::Buffer,
    inputs: wgpu::Buffer,
    len: wgpu::Buffer,
    xp: wgpu::Buffer,
    cache: wgpu::Buffer,
    out: wgpu::Buffer,
    dout: wgpu::Buffer,
    dense_in: wgpu::Buffer,
    gi: wgpu::Buffer,
    gh: wgpu::Buffer,
    carry: wgpu::Buffer,
    feat: wgpu::Buffer,
    dfeat: wgpu::Buffer,
    r: wgpu::Buffer,
    dr: wgpu::Buffer,
    att_m: wgpu::Buffer,
    att_n: wgpu::Buffer,
    att_o: wgpu::Buffer,
    att_dm: wgpu::Buffer,
}

impl Bufs {
    fn new(ctx: &GpuContext, s: &Sites) -> Result<Bufs, GpuEngineError> {
        let (a, sh) = (&s.arena, s.shape);
        let (bu, h, nb, np, d) = (a.bu(), a.h, a.branches, a.pairs, a.d);
        let st = |label: &str, n: usize| buffers::storage::<f32>(ctx, label, n);
        Ok(Bufs {
            w: st("tune weights", a.params_len)?,
            grads: st("tune grads", a.params_len)?,
            inputs: st("tune inputs", a.inputs_len)?,
            len: buffers::upload(ctx, "tune lens", &vec![sh.u as u32; sh.b])?,
            xp: st("tune xp", 2 * nb * bu * 3 * h)?,
            cache: st("tune cache", 2 * nb * 5 * bu * h)?,
            out: st("tune gru out", nb * bu * 2 * h)?,
            dout: st("tune gru dout", nb * bu * 2 * h)?,
            dense_in: st("tune dense in", nb * bu * 2 * h)?,
            gi: st("tune gi", 2 * nb * bu * 3 * h)?,
            gh: st("tune gh", 2 * nb * bu * 3 * h)?,
            carry: st("tune carry", 2 * nb * sh.b * h)?,
            feat: st("tune feat", nb * bu * d)?,
            dfeat: st("tune dfeat", nb * bu * d)?,
            r: st("tune R", a.r_len)?,
            dr: st("tune dR", a.r_len)?,
            att_m: st("tune attention M", np * bu * sh.u)?,
            att_n: st("tune attention N", np * 2 * bu * sh.u)?,
            att_o: st("tune attention O", np * 2 * bu * d)?,
            att_dm: st("tune attention dM", np * 2 * bu * sh.u)?,
        })
    }
}

/// One member's work, ready to record.
type Work = Vec<Box<dyn Recordable>>;

/// One raced site: its entries are `entries[first..first + len]`.
struct SiteRace {
    first: usize,
    len: usize,
}

struct Racer<'a> {
    ctx: &'a GpuContext,
    timer: Timer,
    start: Instant,
    /// End of the whole race (moved on by the time spent compiling).
    deadline: Instant,
    done: usize,
    total: usize,
    complete: bool,
    entries: Vec<RaceEntry>,
    /// Per entry: the timed member's work and the wall time of one run, kept
    /// for the repeats of the second phase.
    works: Vec<Option<(Work, Duration)>>,
    sites: Vec<SiteRace>,
    on: &'a mut dyn FnMut(&TuneEvent),
}

impl Racer<'_> {
    fn progress(&mut self, site: &str, member: &str) {
        self.done += 1;
        (self.on)(&TuneEvent::Progress {
            done: self.done,
            total: self.total,
            site: site.into(),
            member: member.into(),
        });
    }

    /// Time `build()`'s work once: one untimed run (it also pages everything
    /// in), then one timed run, charged to the budget twice. None when the
    /// budget is spent, except for a site's first member, which is always
    /// timed: no site keeps its default unmeasured.
    fn time(
        &mut self,
        first: bool,
        build: impl FnOnce() -> Result<Work, GpuEngineError>,
    ) -> Result<Option<(f64, Work, Duration)>, GpuEngineError> {
        let now = Instant::now();
        if now >= self.deadline && !first {
            self.complete = false;
            return Ok(None);
        }
        // Building a member compiles its pipelines (seconds on llvmpipe, and
        // cached for the engine afterwards), and a driver may compile or page
        // in more at the first dispatch (llvmpipe with a cold Mesa shader cache
        // does: a fresh machine's race ran 24 s and lost the GRU members to
        // the budget; MESA_SHADER_CACHE_DISABLE=true shows it). Those one-time
        // costs are not the member's and do not eat into the race's budget:
        // the build, and what the warm-up run took beyond the timed run, move
        // the deadline on.
        let work = build()?;
        let refs: Vec<&dyn Recordable> = work.iter().map(|w| w.as_ref()).collect();
        self.timer.time(self.ctx, &refs, 0, 1)?;
        let timed = self.timer.time(self.ctx, &refs, 0, 1)?;
        let run = Duration::from_secs_f64(timed.wall_median_ms().max(0.0) / 1e3);
        self.deadline += now.elapsed().saturating_sub(2 * run);
        drop(refs);
        Ok(Some((timed.min_ms(), work, run)))
    }

    /// First phase for one site: every member not skipped by design (`skip(m)`
    /// names those and why) timed once, budget permitting. Returns the site's
    /// index for [`Racer::winner`].
    fn site<T: Copy>(
        &mut self,
        site: &str,
        members: &[T],
        name: fn(T) -> &'static str,
        skip: &dyn Fn(T) -> Option<String>,
        build: &mut dyn FnMut(T) -> Result<Work, GpuEngineError>,
    ) -> Result<usize, GpuEngineError> {
        if members.is_empty() {
            return Err(GpuEngineError::Input(format!("no member for {site}")));
        }
        let first = self.entries.len();
        for &m in members {
            self.progress(site, name(m));
            let why = skip(m);
            let mut ms = None;
            let mut work = None;
            if why.is_none() {
                let first_timed = self.entries[first..].iter().all(|e| e.ms.is_none());
                if let Some((t, w, run)) = self.time(first_timed, || build(m))? {
                    ms = Some(t);
                    work = Some((w, run));
                }
            }
            self.entries.push(RaceEntry { site: site.into(), member: name(m).into(), ms, winner: false, skipped: why });
            self.works.push(work);
        }
        self.sites.push(SiteRace { first, len: members.len() });
        Ok(self.sites.len() - 1)
    }

    /// Second phase: with what is left of the budget, time the contenders of
    /// every site again (members within [`CONTENDER`] of the site's fastest,
    /// up to [`RACE_RUNS`] runs each; the fastest run counts). One run swung by
    /// ~10% on a loaded llvmpipe and picked the slower of two members; the
    /// repeats come after every member's first run, so a slow or loaded device
    /// spends its budget on coverage first and never loses a site's likely
    /// winner to the repeats of another site.
    fn repeat_contenders(&mut self) -> Result<(), GpuEngineError> {
        for _ in 1..RACE_RUNS {
            for si in 0..self.sites.len() {
                let SiteRace { first, len } = self.sites[si];
                let best = self.fastest(si).map_or(f64::INFINITY, |i| self.entries[i].ms.unwrap_or(f64::INFINITY));
                for i in first..first + len {
                    let (Some(ms), Some((work, run))) = (self.entries[i].ms, &self.works[i]) else { continue };
                    if ms > best * CONTENDER {
                        continue;
                    }
                    if Instant::now() + *run >= self.deadline {
                        return Ok(());
                    }
                    let refs: Vec<&dyn Recordable> = work.iter().map(|w| w.as_ref()).collect();
                    let again = self.timer.time(self.ctx, &refs, 0, 1)?.min_ms();
                    self.entries[i].ms = Some(ms.min(again));
                }
            }
        }
        Ok(())
    }

    /// The entry of site `si`'s fastest timed member.
    fn fastest(&self, si: usize) -> Option<usize> {
        let SiteRace { first, len } = self.sites[si];
        (first..first + len)
            .filter_map(|i| self.entries[i].ms.map(|t| (i, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// Marks site `si`'s winner (the fastest timed member, else the first)
    /// and returns its index among the site's members.
    fn winner(&mut self, si: usize) -> usize {
        let first = self.sites[si].first;
        let best = self.fastest(si).map_or(0, |i| i - first);
        self.entries[first + best].winner = true;
        best
    }
}

/// GRU members not raced on a software device (llvmpipe), from their measured
/// cost there (docs/gru-notes.md, README: B 16, H 200, 6 problems, U 10, forward /
/// backward): `cells` 5.3 / 5.4 s and `scalar-persistent` 1.19 / 3.68 s against
/// `wide-persistent` 0.28 / 0.67 s (round 4, quiet machine: `cells-persistent`
/// 58 / 180 ms against `wide-persistent` 14 / 30 ms). One warm-up run of
/// `cells` alone spent most of the old 8 s race, so the linear sites after it
/// were never timed. Never the
/// site's default (its first candidate): with H % 4 != 0 Scalar is all there is.
fn skip_gru(profile: &DeviceProfile, m: GruMember, first: GruMember) -> Option<String> {
    let hopeless = m.kernel == GruKernel::Cells || (m.kernel == GruKernel::Scalar && first.kernel == GruKernel::Wide);
    (profile.is_software() && m != first && hopeless)
        .then(|| "not raced on a software device (4-19x slower there)".to_string())
}

/// The linear `tiled` member is not raced on a software device: on llvmpipe it
/// was 1.4-3.8x slower than the better register-tiled member in every row of
/// docs/perf-notes.md's round-3 table (e.g. text projection forward at the median
/// bucket: vec4 60.6 ms, tiled 173.8 ms), and the projection sites are the
/// race's costliest after the GRU. Never the site's default.
fn skip_linear(profile: &DeviceProfile, k: LinearKernel, first: LinearKernel) -> Option<String> {
    (profile.is_software() && k == LinearKernel::Tiled && k != first)
        .then(|| "not raced on a software device (1.4-3.8x slower there)".to_string())
}

fn no_skip<T>(_: T) -> Option<String> {
    None
}

/// Timed runs of a member at most (the fastest counts), budget permitting.
const RACE_RUNS: usize = 3;

/// A member whose first run is within this factor of its site's fastest is
/// timed again in the second phase.
const CONTENDER: f64 = 1.25;

/// Race every site's candidates at `shape` within about `budget`.
pub fn race(
    ctx: &GpuContext,
    cfg: &ModelConfig,
    shape: Shape,
    budget: Duration,
    on: &mut dyn FnMut(&TuneEvent),
) -> Result<(KernelChoice, Race), GpuEngineError> {
    let s = Sites::new(cfg, shape)?;
    let b = Bufs::new(ctx, &s)?;
    let prof = &ctx.profile;
    let gm = gru::candidates(prof, &s.gru, &s.gru_problems);
    let proj = s.linear_candidates(ctx, &s.projection);
    let dense = s.linear_candidates(ctx, &s.dense);
    // Vec4Sg is Vec4 where none of a site's launches runs a subgroup kernel
    // (the dense forward, every input gradient): raced only where it differs.
    // Likewise Vec4SgTex.
    let differs = |c: &[LinearKernel], ps: &[(LinearParams, Vec<LinearProblem>)], op: LinearOp| -> Vec<LinearKernel> {
        let own = |k: LinearKernel| ps.iter().any(|(p, q)| k.resolve(prof, p, q, op) == k);
        let raced = |k: &LinearKernel| !matches!(k, LinearKernel::Vec4Sg | LinearKernel::Vec4SgTex) || own(*k);
        c.iter().copied().filter(raced).collect()
    };
    let (proj_f, proj_w) =
        (differs(&proj, &s.projection, LinearOp::Forward), differs(&proj, &s.projection, LinearOp::Weights));
    let dense_f = differs(&dense, &s.dense, LinearOp::Forward);
    let (dense_i, dense_w) = (differs(&dense, &s.dense, LinearOp::Input), differs(&dense, &s.dense, LinearOp::Weights));
    // Without attention there is nothing to race: the default member is recorded.
    let att = if s.attention.is_empty() { Vec::new() } else { s.attention_candidates(ctx) };
    let linear = [&proj_f, &proj_w, &dense_f, &dense_i, &dense_w].map(|c| c.len()).iter().sum::<usize>();
    let total = 2 * gm.len() + linear + 2 * att.len();
    let start = Instant::now();
    let mut r = Racer {
        ctx,
        timer: Timer::new(ctx, false),
        start,
        deadline: start + budget,
        done: 0,
        total,
        complete: true,
        entries: Vec::new(),
        works: Vec::new(),
        sites: Vec::new(),
        on,
    };
    let (g, gq) = (s.gru, &s.gru_problems[..]);
    let Some(&gru_first) = gm.first() else {
        return Err(GpuEngineError::Input(format!("no GRU member fits H {}", g.h)));
    };
    let boxed = |l: Box<dyn Recordable>| -> Work { vec![l] };

    // Costliest sites first (a GRU backward run is ~4x a dense one on
    // llvmpipe, and the recurrence is ~40% of a step): a device too slow or
    // too loaded to time every member within the budget loses members of the
    // cheap sites, not the GRU's. (Raced last, with per-site shares and the
    // repeats inside them, a loaded 2-core llvmpipe lost both subgroup GRU
    // backward members, 3.5x faster than the default it then kept.) The two
    // directions of the recurrence pick their members independently (they
    // share only the cache layout, which every member writes alike).
    let gname: fn(GruMember) -> &'static str = |m| m.name();
    let skip = |m: GruMember| skip_gru(prof, m, gru_first);
    let gru_backward = r.site("gru_backward", &gm, gname, &skip, &mut |m| {
        let (gi, gh) = (&b.gi, &b.gh);
        let l =
            gru::gru_backward(ctx, gi, gh, &b.carry, &b.grads, &b.dout, &b.cache, &b.w, &b.len, &g, gq, gq.len(), m)?;
        Ok(boxed(Box::new(l)))
    })?;
    let gru_forward = r.site("gru_forward", &gm, gname, &skip, &mut |m| {
        Ok(boxed(Box::new(gru::gru_forward(ctx, &b.out, &b.cache, &b.xp, &b.w, &b.len, &g, gq, gq.len(), m)?)))
    })?;

    // Linear sites: every modality's launch of the site with the member.
    let n = s.arena.mods.len();
    let projection_weights = linear_site(&mut r, n, "projection_weights", &proj_w, &|k, mi| {
        let (p, q) = &s.projection[mi];
        Ok(linear::linear_backward_weights_variant(ctx, &b.grads, &b.gi, &b.gi, &b.inputs, &b.len, *p, q, q.len(), k)?)
    })?;
    let projection = linear_site(&mut r, n, "projection", &proj_f, &|k, mi| {
        let (p, q) = &s.projection[mi];
        Ok(linear::linear_forward_variant(ctx, &b.xp, &ctx.dummy, &b.inputs, &b.w, &b.len, *p, q, q.len(), k)?)
    })?;
    let dense_backward = linear_site(&mut r, n, "dense_backward", &dense_i, &|k, mi| {
        let (p, q) = &s.dense[mi];
        Ok(linear::linear_backward_variant(ctx, &b.dout, &b.dfeat, &b.feat, &b.w, &b.len, *p, q, q.len(), k)?)
    })?;
    let dense_weights = linear_site(&mut r, n, "dense_weights", &dense_w, &|k, mi| {
        let (p, q) = &s.dense[mi];
        let (dfeat, feat) = (&b.dfeat, &b.feat);
        Ok(linear::linear_backward_weights_variant(ctx, &b.grads, dfeat, feat, &b.dense_in, &b.len, *p, q, q.len(), k)?)
    })?;
    let dense_fw = linear_site(&mut r, n, "dense", &dense_f, &|k, mi| {
        let (p, q) = &s.dense[mi];
        Ok(linear::linear_forward_variant(ctx, &b.feat, &b.r, &b.dense_in, &b.w, &b.len, *p, q, q.len(), k)?)
    })?;

    // Attention: every pair's launches with the member (pairs share the buffers:
    // the cost does not depend on the values).
    let mut attention = None;
    if !att.is_empty() {
        let saved = AttentionSaved { m: &b.att_m, n: &b.att_n, o: &b.att_o };
        let aname: fn(AttentionKernel) -> &'static str = |k| k.name();
        let backward = r.site("attention_backward", &att, aname, &no_skip, &mut |k| {
            let mut w: Work = Vec::new();
            for (p, q) in &s.attention {
                let l = attention::attention_backward_variant(
                    ctx,
                    &b.dfeat,
                    &b.att_dm,
                    &b.dr,
                    &saved,
                    &b.feat,
                    &b.len,
                    *p,
                    q,
                    q.len(),
                    k,
                )?;
                w.push(Box::new(l));
            }
            Ok(w)
        })?;
        let forward = r.site("attention_forward", &att, aname, &no_skip, &mut |k| {
            let mut w: Work = Vec::new();
            for (p, q) in &s.attention {
                let l = attention::attention_forward_variant(ctx, &b.r, &saved, &b.feat, &b.len, *p, q, q.len(), k)?;
                w.push(Box::new(l));
            }
            Ok(w)
        })?;
        attention = Some((forward, backward));
    }

    r.repeat_contenders()?;
    let seconds = r.start.elapsed().as_secs_f64();
    (r.on)(&TuneEvent::Finished { seconds });
    let (attention_forward, attention_backward) = match attention {
        Some((f, b)) => (att[r.winner(f)], att[r.winner(b)]),
        None => (AttentionKernel::Flat, AttentionKernel::Flat),
    };
    let choice = KernelChoice {
        gru_forward: gm[r.winner(gru_forward)],
        gru_backward: gm[r.winner(gru_backward)],
        projection: proj_f[r.winner(projection)],
        projection_weights: proj_w[r.winner(projection_weights)],
        dense: dense_f[r.winner(dense_fw)],
        dense_backward: dense_i[r.winner(dense_backward)],
        dense_weights: dense_w[r.winner(dense_weights)],
        attention_forward,
        attention_backward,
    };
    let race = Race {
        shape: shape_class(cfg, shape),
        method: r.timer.method().as_str().to_string(),
        seconds,
        complete: r.complete,
        entries: r.entries,
    };
    Ok((choice, race))
}

/// The default GRU member (the first candidate), or an error naming the shape none fits.
fn first_gru(c: Vec<GruMember>) -> Result<GruMember, GpuEngineError> {
    c.first().copied().ok_or_else(|| GpuEngineError::Input("no GRU member fits this shape".into()))
}

type BuildLinear<'a> = &'a dyn Fn(LinearKernel, usize) -> Result<LinearLaunch, GpuEngineError>;

/// Race one linear site: each member runs the site's launch of every one of the `n` modalities.
fn linear_site(
    r: &mut Racer,
    n: usize,
    site: &str,
    members: &[LinearKernel],
    build: BuildLinear,
) -> Result<usize, GpuEngineError> {
    let name: fn(LinearKernel) -> &'static str = |k| k.name();
    let (prof, first) = (&r.ctx.profile, members.first().copied().unwrap_or(LinearKernel::Scalar));
    r.site(site, members, name, &|k| skip_linear(prof, k, first), &mut |k| {
        (0..n).map(|mi| Ok(Box::new(build(k, mi)?) as Box<dyn Recordable>)).collect()
    })
}
