//! The kernel tuner: it picks a valid member per site and caches the race per
//! adapter; `--tune off` gives each family's first candidate; a corrupt cache is
//! ignored with a notice; the members a run used round-trip through config.json
//! and a resumed GPU run with recorded (non-default) members equals the
//! uninterrupted run bit for bit; `cimnet kernels --dump` writes valid modules.

mod common;

use std::path::Path;
use std::time::Duration;

use cimnet::config::AdamConfig;
use cimnet::config::{Attention, ModalitySet, ModelConfig, Tasks};
use cimnet::data::{native, synth, Dataset};
use cimnet::engine::{EngineOptions, TuneMode};
use cimnet::gpu::attention::{self, AttentionKernel, AttentionParams};
use cimnet::gpu::gru::{self, GruKernel, GruMember, GruSchedule};
use cimnet::gpu::linear::{self, LinearKernel};
use cimnet::gpu::model::{Arena, Shape, Step};
use cimnet::gpu::tune::{self, cache_file, ChoiceSource, KernelChoice, TuneEvent, TuneOptions};
use cimnet::params::ParamStore;
use cimnet::train::engine::choose_engine;
use cimnet::train::run::{train, EpochRecord, Progress, RunConfig, RunDir, TrainConfig};
use cimnet::train::source::DataSource;

/// H and D multiples of 4 so that every member is a candidate.
fn config() -> ModelConfig {
    let mut c = ModelConfig::new(ModalitySet::TAV, Attention::Cim, Tasks::Mtl, [12, 8, 6]);
    c.hidden = 8;
    c.dense = 4;
    c
}

const SHAPE: Shape = Shape { b: 5, u: 4 };

fn opts(mode: TuneMode, dir: &Path) -> TuneOptions {
    TuneOptions { mode, cache_dir: Some(dir.to_path_buf()), budget: Duration::from_secs(6) }
}

fn notices(events: &[TuneEvent]) -> Vec<String> {
    events.iter().filter_map(|e| if let TuneEvent::Notice(n) = e { Some(n.clone()) } else { None }).collect()
}

#[test]
fn the_tuner_picks_valid_members_and_caches_the_race() {
    let Some(ctx) = common::gpu::context() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config();
    let mut events = Vec::new();
    let t = tune::choose(ctx, &cfg, SHAPE, &opts(TuneMode::Auto, tmp.path()), &mut |e| events.push(e.clone())).unwrap();
    assert_eq!(t.source, ChoiceSource::Raced);
    assert!(notices(&events).is_empty(), "{events:?}");
    let progress = events.iter().filter(|e| matches!(e, TuneEvent::Progress { .. })).count();
    assert!(matches!(events.last(), Some(TuneEvent::Finished { .. })));

    // Every chosen member is one of its site's candidates at that shape.
    let arena = Arena::new(&[(cfg.clone(), AdamConfig::default())], SHAPE.b, SHAPE.u, 1).unwrap();
    let step = Step::one(&[0], SHAPE, 0, 0.0);
    let plan = arena.plan(&step).unwrap();
    let (gp, gq) = plan.gru().unwrap();
    let prof = &ctx.profile;
    let c = t.choice;
    assert!(gru::candidates(prof, &gp, &gq).contains(&c.gru_forward));
    assert!(gru::candidates(prof, &gp, &gq).contains(&c.gru_backward));
    // Any modality's candidates (the site's list is the longest of them).
    let lin: Vec<_> = arena
        .mods
        .iter()
        .flat_map(|&m| {
            let (lp, lq) = plan.projection(m);
            linear::candidates(prof, &lp, &lq)
        })
        .collect();
    for k in [c.projection, c.projection_weights, c.dense, c.dense_backward, c.dense_weights] {
        assert!(lin.contains(&k), "{k:?} not in {lin:?}");
    }
    let att = attention::candidates(prof, &AttentionParams::new(SHAPE.b, SHAPE.u, 4, true));
    assert_eq!(att.len(), 2, "both attention members run at this shape: {att:?}");
    assert!(att.contains(&c.attention_forward) && att.contains(&c.attention_backward));

    // The race: every member of every site once, exactly one winner per site,
    // and the winner is the fastest timed member (GRU: within the chosen schedule).
    let race = t.race.clone().unwrap();
    assert_eq!(race.entries.len(), progress);
    // Costliest sites first: an exhausted budget loses cheap sites' members, not the GRU's.
    let order: Vec<&str> = race.entries.iter().map(|e| e.site.as_str()).fold(Vec::new(), |mut v, s| {
        if v.last() != Some(&s) {
            v.push(s);
        }
        v
    });
    assert_eq!(&order[..3], ["gru_backward", "gru_forward", "projection_weights"], "{order:?}");
    assert_eq!(order.len(), 9, "each site raced once, in one block: {order:?}");
    let n_gru = gru::candidates(prof, &gp, &gq).len();
    assert_eq!(race.entries.iter().filter(|e| e.site == "gru_forward").count(), n_gru);
    for site in KernelChoice::default().members().iter().map(|(site, _)| *site) {
        let winners: Vec<_> = race.entries.iter().filter(|e| e.site == site && e.winner).collect();
        assert_eq!(winners.len(), 1, "{site}: {race:?}");
        assert!(race.entries.iter().any(|e| e.site == site && e.ms.is_some()), "{site} untimed: {race:?}");
    }
    assert_eq!(race.entries.iter().filter(|e| e.site == "attention_backward").count(), 2);
    // On a software device the GRU members known to be hopeless there are listed, not raced.
    if prof.is_software() {
        for e in race.entries.iter().filter(|e| e.site.starts_with("gru") && e.member == "cells") {
            assert!(e.skipped.is_some() && e.ms.is_none() && !e.winner, "{e:?}");
        }
    }
    for site in ["projection", "dense_weights"] {
        let timed: Vec<_> = race.entries.iter().filter(|e| e.site == site && e.ms.is_some()).collect();
        if let Some(w) = race.entries.iter().find(|e| e.site == site && e.winner && e.ms.is_some()) {
            assert!(timed.iter().all(|e| e.ms.unwrap() >= w.ms.unwrap()), "{site}: {timed:?}");
        }
    }
    let fwd = race.entries.iter().find(|e| e.site == "gru_forward" && e.winner).unwrap();
    assert_eq!(fwd.member, c.gru_forward.name());

    // Cached: the next auto run reads it back without racing; fresh races again.
    assert!(cache_file(tmp.path()).exists());
    let mut again = Vec::new();
    let t2 = tune::choose(ctx, &cfg, SHAPE, &opts(TuneMode::Auto, tmp.path()), &mut |e| again.push(e.clone())).unwrap();
    assert_eq!(t2.source, ChoiceSource::Cached);
    assert_eq!(t2.choice, t.choice);
    assert_eq!(t2.race, t.race);
    assert!(again.is_empty(), "a cache hit races nothing: {again:?}");
    // Another shape class is a miss.
    let other = Shape { b: 3, u: 2 };
    let t3 = tune::choose(ctx, &cfg, other, &opts(TuneMode::Auto, tmp.path()), &mut |_| {}).unwrap();
    assert_eq!(t3.source, ChoiceSource::Raced);
    // Both entries are kept.
    let t4 = tune::choose(ctx, &cfg, SHAPE, &opts(TuneMode::Auto, tmp.path()), &mut |_| {}).unwrap();
    assert_eq!(t4.source, ChoiceSource::Cached);

    // Entries written by a build whose kernel sources differ (same version,
    // another commit) are misses: the key carries the sources' fingerprint.
    let path = cache_file(tmp.path());
    let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let entries = file["entries"].as_array_mut().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries.iter_mut() {
        let fp = e["key"]["kernels"].as_str().unwrap().to_string();
        assert_eq!(fp.len(), 16, "{fp}");
        e["key"]["kernels"] = serde_json::Value::from("0".repeat(16));
    }
    std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
    let t5 = tune::choose(ctx, &cfg, SHAPE, &opts(TuneMode::Auto, tmp.path()), &mut |_| {}).unwrap();
    assert_eq!(t5.source, ChoiceSource::Raced);
}

/// A spent budget still times every site's first member once: no site keeps its
/// default unmeasured (the old race lost the linear sites on llvmpipe).
#[test]
fn every_site_is_timed_even_when_the_budget_is_spent() {
    let Some(ctx) = common::gpu::context() else { return };
    let (choice, race) = tune::race(ctx, &config(), SHAPE, Duration::ZERO, &mut |_| {}).unwrap();
    for (site, member) in choice.members() {
        let timed: Vec<_> = race.entries.iter().filter(|e| e.site == site && e.ms.is_some()).collect();
        assert_eq!(timed.len(), 1, "{site}: {race:?}");
        assert!(timed[0].winner && timed[0].member == member, "{site}: {race:?}");
    }
    assert!(!race.complete, "members were left untimed");
}

#[test]
fn tune_off_gives_each_familys_first_candidate_and_writes_no_cache() {
    let Some(ctx) = common::gpu::context() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config();
    let t = tune::choose(ctx, &cfg, SHAPE, &opts(TuneMode::Off, tmp.path()), &mut |_| panic!("no events")).unwrap();
    assert_eq!(t.source, ChoiceSource::Defaults);
    assert!(t.race.is_none());
    assert!(!cache_file(tmp.path()).exists());
    let want = KernelChoice {
        gru_forward: GruMember { kernel: GruKernel::Wide, schedule: GruSchedule::Persistent },
        gru_backward: GruMember { kernel: GruKernel::Wide, schedule: GruSchedule::Persistent },
        projection: LinearKernel::Vec4,
        projection_weights: LinearKernel::Vec4,
        dense: LinearKernel::Vec4,
        dense_backward: LinearKernel::Vec4,
        dense_weights: LinearKernel::Vec4,
        attention_forward: AttentionKernel::Flat,
        attention_backward: AttentionKernel::Flat,
    };
    assert_eq!(t.choice, want);
    // H not a multiple of 4: the GRU's only candidate is Scalar.
    let mut odd = cfg.clone();
    odd.hidden = 5;
    let t = tune::choose(ctx, &odd, SHAPE, &opts(TuneMode::Off, tmp.path()), &mut |_| {}).unwrap();
    assert_eq!((t.choice.gru_forward.kernel, t.choice.gru_backward.kernel), (GruKernel::Scalar, GruKernel::Scalar));
}

#[test]
fn a_corrupt_cache_is_ignored_with_a_notice_and_replaced() {
    let Some(ctx) = common::gpu::context() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config();
    let small = Shape { b: 2, u: 2 };
    for bad in ["{ not json", "{\"format\": 99, \"entries\": []}", ""] {
        std::fs::write(cache_file(tmp.path()), bad).unwrap();
        let mut events = Vec::new();
        let t =
            tune::choose(ctx, &cfg, small, &opts(TuneMode::Auto, tmp.path()), &mut |e| events.push(e.clone())).unwrap();
        assert_eq!(t.source, ChoiceSource::Raced, "{bad:?}");
        let n = notices(&events);
        assert_eq!(n.len(), 1, "{bad:?}: {events:?}");
        assert!(n[0].contains("kernels.json") && n[0].contains("ignored"), "{}", n[0]);
        // Replaced by a readable cache.
        let t2 = tune::choose(ctx, &cfg, small, &opts(TuneMode::Auto, tmp.path()), &mut |_| {}).unwrap();
        assert_eq!(t2.source, ChoiceSource::Cached, "{bad:?}");
    }
    // An entry this version cannot read (a retired member) is skipped, not fatal.
    let text = std::fs::read_to_string(cache_file(tmp.path())).unwrap();
    let text = text.replacen("\"gru_forward\": \"", "\"gru_forward\": \"retired-", 1);
    std::fs::write(cache_file(tmp.path()), text).unwrap();
    let t = tune::choose(ctx, &cfg, small, &opts(TuneMode::Auto, tmp.path()), &mut |_| {}).unwrap();
    assert_eq!(t.source, ChoiceSource::Raced);
}

fn gpu_run(dir: &Path, epochs: usize, kernels: KernelChoice) -> (RunConfig, Dataset) {
    let data = synth::tiny(3);
    let path = dir.join("tiny.npz");
    if !path.exists() {
        native::write(&data, &path).unwrap();
    }
    let mut model = config();
    model.dims = data.dims;
    let train = TrainConfig { epochs, batch: 4, backend: "gpu".into(), seed: 11, ..TrainConfig::default() };
    (
        RunConfig {
            model,
            train,
            data: DataSource::Path { path },
            fingerprint: None,
            normalizer: None,
            kernels: Some(kernels),
        },
        data,
    )
}

/// The members that are not the defaults, so that using the defaults on resume would show.
fn non_default() -> KernelChoice {
    KernelChoice {
        gru_forward: GruMember { kernel: GruKernel::Cells, schedule: GruSchedule::PerStep },
        gru_backward: GruMember { kernel: GruKernel::Scalar, schedule: GruSchedule::PerStep },
        projection: LinearKernel::Scalar,
        projection_weights: LinearKernel::Vec4,
        dense: LinearKernel::Scalar,
        dense_backward: LinearKernel::Scalar,
        dense_weights: LinearKernel::Scalar,
        attention_forward: AttentionKernel::Tiled,
        attention_backward: AttentionKernel::Tiled,
    }
}

#[test]
fn recorded_members_round_trip_through_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = gpu_run(tmp.path(), 1, non_default());
    let rd = RunDir::new(tmp.path());
    rd.write_json(&rd.config(), &run).unwrap();
    let text = std::fs::read_to_string(rd.config()).unwrap();
    assert!(
        text.contains("\"gru_backward\": \"scalar-per-step\"") && text.contains("\"gru_forward\": \"cells\""),
        "{text}"
    );
    assert_eq!(rd.read_config().unwrap(), run);
    // A config written before the tuner has no members; it still reads.
    let old = RunConfig { kernels: None, ..run.clone() };
    rd.write_json(&rd.config(), &old).unwrap();
    assert!(!std::fs::read_to_string(rd.config()).unwrap().contains("kernels"));
    assert_eq!(rd.read_config().unwrap().kernels, None);
    // A partial record (an older cimnet with fewer sites) fills in the defaults.
    let partial: KernelChoice = serde_json::from_str("{\"gru_forward\": \"scalar-persistent\"}").unwrap();
    let scalar = GruMember { kernel: GruKernel::Scalar, schedule: GruSchedule::Persistent };
    assert_eq!(partial, KernelChoice { gru_forward: scalar, ..KernelChoice::default() });
    // A record from before the attention family had members: the one member it had.
    assert_eq!((partial.attention_forward, partial.attention_backward), (AttentionKernel::Flat, AttentionKernel::Flat));
    assert!(serde_json::from_str::<KernelChoice>("{\"gru_forward\": \"warp\"}").is_err());
}

struct StopAfter(usize, usize);
impl Progress for StopAfter {
    fn epoch_end(&mut self, _r: &EpochRecord) {
        self.1 += 1;
    }
    fn should_stop(&mut self) -> bool {
        self.1 >= self.0
    }
}

fn losses(records: &[EpochRecord]) -> Vec<(u64, u64)> {
    records.iter().map(|r| (r.train_loss.to_bits(), r.valid.loss.to_bits())).collect()
}

#[test]
fn a_resumed_gpu_run_uses_its_recorded_members_bit_for_bit() {
    if common::gpu::context().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (run, data) = gpu_run(tmp.path(), 3, non_default());
    let engine_for = |run: &mut RunConfig| {
        let params = ParamStore::init(&run.model, run.train.seed);
        let opts = EngineOptions { adapter: None, tune: TuneMode::Off };
        choose_engine(run, params, &data, &opts, &mut |e| panic!("recorded members race nothing: {e:?}"))
            .unwrap()
            .engine
    };
    let full_dir = RunDir::new(&tmp.path().join("full"));
    let full = train(engine_for(&mut run.clone()).as_mut(), &data, &run, &full_dir, &mut ()).unwrap();
    assert_eq!(full.records.len(), 3);

    let dir = RunDir::new(&tmp.path().join("stopped"));
    let part = train(engine_for(&mut run.clone()).as_mut(), &data, &run, &dir, &mut StopAfter(1, 0)).unwrap();
    assert_eq!(part.records.len(), 1);
    // --resume reads config.json: the members come from there, not from --tune off.
    let mut resumed = dir.read_config().unwrap();
    assert_eq!(resumed.kernels, Some(non_default()));
    let rest = train(engine_for(&mut resumed).as_mut(), &data, &resumed, &dir, &mut ()).unwrap();
    assert_eq!(losses(&rest.records), losses(&full.records), "every epoch's train and valid loss, bit for bit");
    let (a, b) = (ParamStore::load(&dir.model()).unwrap(), ParamStore::load(&full_dir.model()).unwrap());
    assert!(a == b, "the resumed run keeps the same weights, bit for bit");

    // The members matter: the default members give different bits (else this test could not fail).
    let mut defaults = RunConfig { kernels: Some(KernelChoice::default()), ..run.clone() };
    let other_dir = RunDir::new(&tmp.path().join("defaults"));
    let other = train(engine_for(&mut defaults).as_mut(), &data, &defaults, &other_dir, &mut ()).unwrap();
    assert_ne!(losses(&other.records), losses(&full.records));
}

#[test]
fn kernels_dump_writes_every_module_and_overwrites_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wgsl");
    let run =
        || std::process::Command::new(env!("CARGO_BIN_EXE_cimnet")).args(["kernels", "--dump"]).arg(&dir).output();
    let out = run().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for s in cimnet::gpu::Shader::ALL {
        let text = std::fs::read_to_string(dir.join(format!("{}.wgsl", s.name()))).unwrap();
        assert!(text.starts_with("// cimnet "), "{}", s.name());
        assert!(text.ends_with(&s.source()), "{}: the dump is the module the driver compiles", s.name());
        let module = naga::front::wgsl::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", s.name()));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", s.name()));
    }
    let before = std::fs::read_to_string(dir.join("gru.wgsl")).unwrap();
    std::fs::write(dir.join("gru.wgsl"), "mine").unwrap();
    let out = run().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".wgsl exists") && err.contains("nothing is overwritten"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("gru.wgsl")).unwrap(), "mine");
    assert!(before.len() > 4);
}
