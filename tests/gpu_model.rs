//! The whole model on the GPU against the CPU reference: loss, probabilities,
//! every parameter gradient and the input gradients for each attention kind and
//! task setup (with and without dropout); 10 Adam steps give the CPU's losses;
//! one seed gives identical bits; inference matches.

mod common;

use cimnet::config::AdamConfig;
use cimnet::config::{Attention, Modality, ModalitySet, ModelConfig, Tasks};
use cimnet::cpu::engine::CpuEngine;
use cimnet::cpu::model::{backward, forward, DropoutMasks};
use cimnet::data::{Dataset, SplitName, Video};
use cimnet::engine::Engine;
use cimnet::gpu::gru::{GruKernel, GruMember, GruSchedule};
use cimnet::gpu::model::{GpuEngine, ModelStep};
use cimnet::gpu::tune::KernelChoice;
use cimnet::gpu::{GpuContext, GpuOptions};
use cimnet::params::ParamStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// f32 GPU vs f64 CPU, relative to each tensor's largest magnitude: the longest
/// chains here are 20 GRU steps and dot products of a few hundred terms, whose
/// f32 rounding stays near 1e-6 relative; 1e-4 leaves room for the softmax and
/// sigmoid backward without hiding a wrong formula (those give O(1) errors).
const MODEL_RTOL: f64 = 1e-4;
/// Losses after 10 Adam steps: the f32 parameter trajectory drifts from the f64
/// one by a few 1e-6 relative per step.
const ADAM_LOSS_RTOL: f64 = 1e-4;

const LENS: [usize; 5] = [20, 1, 7, 13, 2];

fn ctx() -> Option<GpuContext> {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        eprintln!("CIMNET_SKIP_GPU_TESTS=1: skipping a GPU test");
        return None;
    }
    match GpuContext::new(&GpuOptions::default()) {
        Ok(c) => Some(c),
        Err(e) => panic!("{e}\n(set CIMNET_SKIP_GPU_TESTS=1 to skip the GPU tests explicitly)"),
    }
}

/// A dataset whose train split holds videos of the given lengths (and a few
/// valid/test videos), features in [-1, 1], emotions with zeros.
fn dataset(train_lens: &[usize], seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dims = [6, 4, 3];
    let mut video = |id: String, len: usize| Video {
        id,
        len,
        features: dims.map(|d| Some((0..len * d).map(|_| rng.gen_range(-1.0f32..1.0)).collect())),
        sentiment: (0..len).map(|_| rng.gen_range(-3.0f32..3.0)).collect(),
        emotion: Some((0..len * 6).map(|_| if rng.gen_bool(0.6) { 0.0 } else { rng.gen_range(0.1f32..3.0) }).collect()),
    };
    let train = train_lens.iter().enumerate().map(|(i, &l)| video(format!("tr{i}"), l)).collect();
    let valid = [3, 9, 1].iter().enumerate().map(|(i, &l)| video(format!("va{i}"), l)).collect();
    let test = [5, 2, 11, 1, 4, 6].iter().enumerate().map(|(i, &l)| video(format!("te{i}"), l)).collect();
    Dataset { source: "test data".into(), dims, has_emotion: true, splits: [train, valid, test] }
}

fn config(set: ModalitySet, attention: Attention, tasks: Tasks) -> ModelConfig {
    let mut c = ModelConfig::new(set, attention, tasks, [6, 4, 3]);
    c.hidden = 7;
    c.dense = 5;
    c
}

/// Parameters with non-zero biases (init gives zero biases).
fn params(cfg: &ModelConfig, seed: u64) -> ParamStore {
    let mut p = ParamStore::init(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    for s in p.layout.slices.clone() {
        if s.name.contains("bias") {
            for v in p.get_mut(&s.name) {
                *v = rng.gen_range(-0.3..0.3);
            }
        }
    }
    p
}

fn worst(got: &[f64], want: &[f64]) -> (f64, usize) {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
    let mut w = (0.0, 0);
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        let r = (g - e).abs() / scale;
        if r > w.0 {
            w = (r, i);
        }
    }
    w
}

fn check(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let (err, i) = worst(got, want);
    assert!(
        err <= tol,
        "{name}: element {i}: GPU {} vs CPU {} (error {err:.2e} of the tensor's largest magnitude > {tol:e})",
        got[i],
        want[i]
    );
}

fn compare_gradients(ctx: GpuContext, cfg: &ModelConfig, dropout_seed: Option<u32>) {
    compare_gradients_with(ctx, cfg, dropout_seed, &KernelChoice::default());
}

fn compare_gradients_with(ctx: GpuContext, cfg: &ModelConfig, dropout_seed: Option<u32>, kernels: &KernelChoice) {
    let data = dataset(&LENS, 3);
    let p = params(cfg, 5);
    let mut eng = GpuEngine::new(ctx, &p, &data, AdamConfig::default(), 1, LENS.len(), kernels).unwrap();
    let videos: Vec<usize> = (0..LENS.len()).collect();
    let g = eng.compute_gradients(&videos, dropout_seed).unwrap();
    let mut batch = data.batch(SplitName::Train, &videos);
    cimnet::grads::restrict_to_model(&mut batch, &p);
    let masks = dropout_seed.map(|s| DropoutMasks::generate(cfg, batch.b, batch.u, s));
    let pf = p.to_f64();
    let f = forward(cfg, &p.layout, &pf, &batch, masks.as_ref()).unwrap();
    let want = backward(cfg, &p.layout, &pf, &batch, &f);
    let tag = format!(
        "{}/{}/{}{}",
        cfg.modalities,
        cfg.attention,
        cfg.tasks,
        if dropout_seed.is_some() { " dropout" } else { "" }
    );
    let n = batch.real_count() as f64;
    assert_eq!(g.loss.utterances, batch.real_count() as u64);
    let got_loss = g.loss.loss / n;
    assert!(
        (got_loss - f.heads.loss).abs() <= 1e-5 * f.heads.loss,
        "{tag}: loss GPU {got_loss} vs CPU {}",
        f.heads.loss
    );
    // Probabilities at real positions.
    for (bi, &l) in batch.len.iter().enumerate() {
        for i in 0..l {
            let t = bi * batch.u + i;
            if let Some(sp) = &f.heads.sentiment_prob {
                check(&format!("{tag} sentiment prob"), &g.probs[t * 9..t * 9 + 2], &sp[t * 2..t * 2 + 2], MODEL_RTOL);
            }
            if let Some(ep) = &f.heads.emotion_prob {
                check(
                    &format!("{tag} emotion prob"),
                    &g.probs[t * 9 + 2..t * 9 + 9],
                    &ep[t * 7..t * 7 + 7],
                    MODEL_RTOL,
                );
            }
        }
    }
    for s in &p.layout.slices {
        check(&format!("{tag} {}", s.name), &g.grads[s.range()], &want.params[s.range()], MODEL_RTOL);
    }
    for m in cfg.modalities.modalities() {
        check(
            &format!("{tag} input {}", m.name()),
            g.inputs[m.index()].as_ref().unwrap(),
            want.inputs[m.index()].as_ref().unwrap(),
            MODEL_RTOL,
        );
    }
    assert!(eng.dispatches_per_step() == 0, "compute_gradients is not a training step");
}

#[test]
fn whole_model_gradients_match_cpu_for_each_attention_and_task() {
    for attention in Attention::ALL {
        for tasks in Tasks::ALL {
            let Some(c) = ctx() else { return };
            compare_gradients(c, &config(ModalitySet::TAV, attention, tasks), None);
        }
    }
    for set in [ModalitySet::T, ModalitySet::AV, ModalitySet::TA] {
        let Some(c) = ctx() else { return };
        compare_gradients(c, &config(set, Attention::Cim, Tasks::Mtl), None);
    }
}

/// The engine built with the tiled attention member (forward and backward) at
/// every attention site: the same losses and gradients as the CPU.
#[test]
fn whole_model_gradients_match_cpu_with_the_tiled_attention_member() {
    use cimnet::gpu::attention::AttentionKernel;
    let kernels = KernelChoice {
        attention_forward: AttentionKernel::Tiled,
        attention_backward: AttentionKernel::Tiled,
        ..KernelChoice::default()
    };
    for (set, attention) in
        [(ModalitySet::TAV, Attention::Cim), (ModalitySet::TAV, Attention::SelfAttn), (ModalitySet::T, Attention::Cim)]
    {
        let Some(c) = ctx() else { return };
        compare_gradients_with(c, &config(set, attention, Tasks::Mtl), Some(0xC1A0), &kernels);
    }
}

#[test]
fn whole_model_gradients_with_dropout_match_the_cpu_masks() {
    for attention in Attention::ALL {
        let Some(c) = ctx() else { return };
        compare_gradients(c, &config(ModalitySet::TAV, attention, Tasks::Mtl), Some(0xC1A0));
    }
}

fn batches() -> Vec<Vec<usize>> {
    vec![vec![0, 1, 2], vec![3, 4], vec![2, 0], vec![1, 3, 4]]
}

#[test]
fn ten_adam_steps_give_the_cpu_reference_losses() {
    let Some(c) = ctx() else { return };
    let cfg = config(ModalitySet::TAV, Attention::Cim, Tasks::Mtl);
    let data = dataset(&LENS, 4);
    let p = params(&cfg, 6);
    let adam = AdamConfig { lr: 1e-2, ..AdamConfig::default() };
    let mut gpu = GpuEngine::new(c, &p, &data, adam, 9, 3, &KernelChoice::default()).unwrap();
    let mut cpu = CpuEngine::new(p.clone(), data.clone(), adam, 9);
    let bs = batches();
    for step in 0..10u64 {
        let videos = &bs[step as usize % bs.len()];
        gpu.train_step(videos, step).unwrap();
        cpu.train_step(videos, step).unwrap();
        let (g, c) = (gpu.take_train_loss().unwrap(), cpu.take_train_loss().unwrap());
        assert_eq!(g.utterances, c.utterances);
        let (gl, cl) = (g.mean(), c.mean());
        assert!((gl - cl).abs() <= ADAM_LOSS_RTOL * cl, "step {step}: GPU loss {gl} vs CPU {cl}");
    }
    let (gs, cs) = (gpu.state().unwrap(), cpu.state().unwrap());
    assert_eq!(gs.adam_step, 10);
    for s in &p.layout.slices {
        check(&format!("{} after 10 steps", s.name), &gs.master[s.range()], &cs.master[s.range()], 1e-3);
    }
    let steps = gpu.dispatches_per_step();
    eprintln!("dispatches per training step (TAV/cim/mtl): {steps}");
    assert!(steps > 0);
}

/// The step profile times exactly the step: its sites, in recording order,
/// record the dispatches of a training step on the same batch (the gather
/// first, Adam last), each with a measured time; a bad video is an error.
#[test]
fn the_step_profile_covers_every_dispatch_of_a_step() {
    let Some(c) = ctx() else { return };
    let cfg = config(ModalitySet::TAV, Attention::Cim, Tasks::Mtl);
    let data = dataset(&LENS, 4);
    let p = params(&cfg, 6);
    let mut gpu = GpuEngine::new(c, &p, &data, AdamConfig::default(), 9, 3, &KernelChoice::default()).unwrap();
    let videos = [0, 2, 3];
    gpu.train_step(&videos, 0).unwrap();
    let steps = gpu.dispatches_per_step();
    let prof = gpu.profile_step(&videos, 1, 2).unwrap();
    assert_eq!((prof.b, prof.u, prof.reps), (3, 20, 2));
    assert_eq!(prof.sites.iter().map(|s| s.dispatches).sum::<u32>(), steps, "{prof:?}");
    assert_eq!(prof.sites.first().map(|s| s.site.as_str()), Some("batch gather"));
    assert_eq!(prof.sites.last().map(|s| s.site.as_str()), Some("adam"));
    for name in ["gru recurrence", "gru recurrence backward and dW_hh", "heads and loss (train)"] {
        assert!(prof.sites.iter().any(|s| s.site == name), "no {name}: {prof:?}");
    }
    assert!(prof.sites.iter().all(|s| s.ms.is_finite() && s.ms > 0.0), "{prof:?}");
    let sum: f64 = prof.sites.iter().map(|s| s.ms).sum();
    assert!((prof.total_ms - sum).abs() <= 1e-9 * sum, "{prof:?}");
    assert!(prof.markdown().contains("| gru recurrence |"), "{}", prof.markdown());
    assert!(gpu.profile_step(&[0, 99], 2, 1).is_err(), "video 99 is not in the train split");
}

/// An engine on `c` (seed 3, batches of up to `max_batch` videos) after a
/// training step on each of `batches()`, and the bits of those steps' losses.
fn trained(c: GpuContext, p: &ParamStore, data: &Dataset, max_batch: usize) -> (GpuEngine, Vec<u64>) {
    let mut e = GpuEngine::new(c, p, data, AdamConfig::default(), 3, max_batch, &KernelChoice::default()).unwrap();
    let mut losses = Vec::new();
    for (step, videos) in batches().iter().enumerate() {
        e.train_step(videos, step as u64).unwrap();
        losses.push(e.take_train_loss().unwrap().loss.to_bits());
    }
    (e, losses)
}

#[test]
fn one_seed_gives_identical_bits() {
    let cfg = config(ModalitySet::TAV, Attention::Cim, Tasks::Mtl);
    let data = dataset(&LENS, 7);
    let p = params(&cfg, 8);
    let run = || {
        let (mut e, losses) = trained(ctx()?, &p, &data, 3);
        Some((losses, e.state().unwrap().master.iter().map(|x| x.to_bits()).collect::<Vec<_>>()))
    };
    let (Some(a), Some(b)) = (run(), run()) else { return };
    assert_eq!(a.0, b.0, "losses differ between two runs with one seed");
    assert!(a.1 == b.1, "parameters differ between two runs with one seed");
}

/// Params as uniform buffers (GPUs) or read-only storage with private copies
/// (lavapipe, `DeviceProfile::params_in_storage`) change no arithmetic: three
/// training steps and the inference after them give the same bits both ways.
#[test]
fn params_as_uniforms_or_in_storage_give_identical_bits() {
    if ctx().is_none() {
        return;
    }
    let cfg = config(ModalitySet::TAV, Attention::Cim, Tasks::Mtl);
    let data = dataset(&LENS, 7);
    let p = params(&cfg, 8);
    let run = |storage: bool| {
        let c = GpuContext::new(&GpuOptions { params_in_storage: Some(storage), ..Default::default() }).unwrap();
        assert_eq!(c.profile.params_in_storage, storage);
        let (mut e, mut bits) = trained(c, &p, &data, 4);
        bits.extend(e.state().unwrap().master.iter().map(|x| x.to_bits()));
        let pr = e.predict(SplitName::Test, &[vec![2, 0, 5, 1], vec![3, 4]]).unwrap();
        let sentiment = pr.sentiment.iter().flatten().flatten().flat_map(|r| r.iter());
        let emotion = pr.emotion.iter().flatten().flatten().flat_map(|r| r.iter());
        bits.extend(sentiment.chain(emotion).map(|x| x.to_bits()));
        bits
    };
    let (uniform, storage) = (run(false), run(true));
    assert_eq!(uniform.len(), storage.len());
    assert!(uniform == storage, "params as uniforms and in storage buffers give different bits");
}

#[test]
fn inference_matches_the_cpu_and_covers_every_utterance() {
    let Some(c) = ctx() else { return };
    let cfg = config(ModalitySet::TAV, Attention::Cim, Tasks::Mtl);
    let data = dataset(&LENS, 11);
    let p = params(&cfg, 12);
    let mut gpu = GpuEngine::new(c, &p, &data, AdamConfig::default(), 1, 4, &KernelChoice::default()).unwrap();
    let mut cpu = CpuEngine::new(p, data.clone(), AdamConfig::default(), 1);
    let bs = vec![vec![2, 0, 5, 1], vec![3, 4]];
    let (g, c) = (gpu.predict(SplitName::Test, &bs).unwrap(), cpu.predict(SplitName::Test, &bs).unwrap());
    assert_eq!(g.loss.utterances, data.utterances(SplitName::Test) as u64);
    assert!((g.loss.mean() - c.loss.mean()).abs() <= 1e-5 * c.loss.mean());
    let flat = |v: &Vec<Vec<[f64; 7]>>| v.iter().flatten().flat_map(|r| r.iter().copied()).collect::<Vec<f64>>();
    check(
        "test emotion probabilities",
        &flat(g.emotion.as_ref().unwrap()),
        &flat(c.emotion.as_ref().unwrap()),
        MODEL_RTOL,
    );
    let sflat = |v: &Vec<Vec<[f64; 2]>>| v.iter().flatten().flat_map(|r| r.iter().copied()).collect::<Vec<f64>>();
    check(
        "test sentiment probabilities",
        &sflat(g.sentiment.as_ref().unwrap()),
        &sflat(c.sentiment.as_ref().unwrap()),
        MODEL_RTOL,
    );
    let _ = Modality::ALL;
}

/// Every one of the 63 variants (7 modality sets x 3 attention kinds x 3 task
/// setups) runs forward and backward on the GPU and matches the CPU.
#[test]
fn all_63_variants_run_on_the_gpu() {
    for set in ModalitySet::ALL {
        for attention in Attention::ALL {
            for tasks in Tasks::ALL {
                let Some(c) = ctx() else { return };
                compare_gradients(c, &config(set, attention, tasks), Some(7));
            }
        }
    }
}

/// H and widths divisible by 4 take the vec4 GRU and linear kernels.
#[test]
fn vec4_kernel_path_matches_the_cpu() {
    for tasks in Tasks::ALL {
        let Some(c) = ctx() else { return };
        let mut cfg = config(ModalitySet::TAV, Attention::Cim, tasks);
        cfg.hidden = 8;
        cfg.dense = 4;
        compare_gradients(c, &cfg, Some(11));
    }
}

/// The models of one fused engine (a mix of modality sets, attention kinds,
/// task setups and seeds, each on its own seed's batches, launches covering
/// all of them) against each model in an
/// engine of its own, with the same kernel members: the same losses and
/// states bit for bit, step after step, also when a model stops (it leaves the
/// steps; its state stays where it was) and when evaluations cover a subset.
/// The default members, the cells / scalar per-step, vec4 and tiled ones, and
/// cells-persistent.
#[test]
fn a_fused_engine_trains_each_model_exactly_as_alone() {
    let Some(c) = ctx() else { return };
    let c = std::sync::Arc::new(c);
    let data = dataset(&LENS, 11);
    let cfgs = [
        config(ModalitySet::T, Attention::Cim, Tasks::Sentiment),
        config(ModalitySet::TAV, Attention::Cim, Tasks::Mtl),
        config(ModalitySet::AV, Attention::SelfAttn, Tasks::Emotion),
        config(ModalitySet::TV, Attention::None, Tasks::Mtl),
        config(ModalitySet::TA, Attention::Cim, Tasks::Emotion),
    ];
    let ps: Vec<ParamStore> = cfgs.iter().enumerate().map(|(i, cfg)| params(cfg, 20 + i as u64)).collect();
    let adams: Vec<AdamConfig> =
        (0..cfgs.len()).map(|i| AdamConfig { lr: 1e-2 * (1.0 + i as f64), ..AdamConfig::default() }).collect();
    let tuned = KernelChoice {
        gru_forward: GruMember { kernel: GruKernel::Cells, schedule: GruSchedule::PerStep },
        gru_backward: GruMember { kernel: GruKernel::Scalar, schedule: GruSchedule::PerStep },
        projection: cimnet::gpu::linear::LinearKernel::Vec4,
        dense: cimnet::gpu::linear::LinearKernel::Vec4,
        attention_forward: cimnet::gpu::attention::AttentionKernel::Tiled,
        attention_backward: cimnet::gpu::attention::AttentionKernel::Tiled,
        ..KernelChoice::default()
    };
    let cells_persistent = GruMember { kernel: GruKernel::Cells, schedule: GruSchedule::Persistent };
    let persistent =
        KernelChoice { gru_forward: cells_persistent, gru_backward: cells_persistent, ..KernelChoice::default() };
    // Models of three seeds (three batch orders and dropout streams) in one
    // engine: at some steps the seeds' batches differ in U (one launch, three
    // batch slots), at others in B too (a second recording).
    let seeds = [5u64, 6, 5, 7, 6];
    let order = |seed: u64| -> Vec<Vec<usize>> {
        match seed {
            5 => batches(),
            6 => vec![vec![1, 4, 3], vec![0, 2], vec![4, 1], vec![2, 0, 3]],
            _ => vec![vec![4, 1], vec![0, 2, 3], vec![3, 1], vec![0, 4, 2]],
        }
    };
    let videos_of = |k: usize, step: usize| order(seeds[k % seeds.len()])[step % 4].clone();
    for kernels in [KernelChoice::default(), tuned, persistent] {
        let members: Vec<(&ParamStore, AdamConfig, u64)> =
            ps.iter().zip(&adams).zip(seeds).map(|((p, a), s)| (p, *a, s)).collect();
        let mut fused = GpuEngine::new_group(c.clone(), &members, &data, 3, &kernels).unwrap();
        assert_eq!(fused.batch_slots(), 3, "one batch slot per seed");
        let mut alone: Vec<GpuEngine> = ps
            .iter()
            .zip(&adams)
            .zip(seeds)
            .map(|((p, a), seed)| GpuEngine::new(c.clone(), p, &data, *a, seed, 3, &kernels).unwrap())
            .collect();
        let bits = |s: &cimnet::engine::EngineState| {
            let f = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (f(&s.master), f(&s.m), f(&s.v), s.adam_step)
        };
        for step in 0..6 {
            // Model 1 stops after step 2 (early stopping); model 3 sits out step 4.
            let part: Vec<usize> = (0..cfgs.len()).filter(|&k| !(k == 1 && step > 2 || k == 3 && step == 4)).collect();
            let videos: Vec<Vec<usize>> = part.iter().map(|&k| videos_of(k, step)).collect();
            let list: Vec<ModelStep> =
                part.iter().zip(&videos).map(|(&model, v)| ModelStep { model, videos: v, step: step as u64 }).collect();
            cimnet::gpu::model::train_steps(&mut [(&mut fused, list.as_slice())]).unwrap();
            for (&k, v) in part.iter().zip(&videos) {
                alone[k].train_step(v, step as u64).unwrap();
                let (f, a) = (fused.take_train_loss_of(k).unwrap(), alone[k].take_train_loss().unwrap());
                assert_eq!(f, a, "{kernels:?}: model {k} step {step}: fused loss {f:?} vs alone {a:?}");
            }
        }
        for (k, e) in alone.iter_mut().enumerate() {
            let (f, a) = (fused.state_of(k).unwrap(), e.state().unwrap());
            assert!(bits(&f) == bits(&a), "{kernels:?}: model {k}'s state differs from its engine alone");
        }
        let part = [0, 2, 4];
        let preds = fused.predict_of(&part, SplitName::Test, &batches()[..2]).unwrap();
        for (&k, p) in part.iter().zip(&preds) {
            let a = alone[k].predict(SplitName::Test, &batches()[..2]).unwrap();
            assert_eq!(*p, a, "{kernels:?}: model {k}'s test predictions differ from its engine alone");
        }
        // One launch per site, whatever the number of models and seeds: the same
        // five variants twice over (ten models, three seeds) record the same
        // dispatches as five, and as five of one seed, fewer than the five alone
        // together. Step 10 takes every seed's batch of 2 videos (one recording).
        let step_of = |n: usize| -> Vec<(usize, Vec<usize>)> { (0..n).map(|k| (k, videos_of(k, 10))).collect() };
        let run = |e: &mut GpuEngine, n: usize| {
            let vs = step_of(n);
            let list: Vec<ModelStep> =
                vs.iter().map(|(model, v)| ModelStep { model: *model, videos: v, step: 10 }).collect();
            cimnet::gpu::model::train_steps(&mut [(e, list.as_slice())]).unwrap();
        };
        run(&mut fused, cfgs.len());
        let twice_ps: Vec<ParamStore> = cfgs.iter().enumerate().map(|(i, cfg)| params(cfg, 40 + i as u64)).collect();
        let twice: Vec<(&ParamStore, AdamConfig, u64)> = ps
            .iter()
            .chain(&twice_ps)
            .zip(adams.iter().cycle())
            .zip(seeds.iter().cycle())
            .map(|((p, a), s)| (p, *a, *s))
            .collect();
        let mut ten = GpuEngine::new_group(c.clone(), &twice, &data, 3, &kernels).unwrap();
        run(&mut ten, 10);
        let one_seed: Vec<(&ParamStore, AdamConfig, u64)> = ps.iter().zip(&adams).map(|(p, a)| (p, *a, 5)).collect();
        let mut same = GpuEngine::new_group(c.clone(), &one_seed, &data, 3, &kernels).unwrap();
        let one = batches()[2].clone();
        let list: Vec<ModelStep> = (0..5).map(|model| ModelStep { model, videos: &one, step: 10 }).collect();
        cimnet::gpu::model::train_steps(&mut [(&mut same, list.as_slice())]).unwrap();
        for (k, e) in alone.iter_mut().enumerate() {
            e.train_step(&videos_of(k, 10), 10).unwrap();
        }
        assert_eq!(same.dispatches_per_step(), fused.dispatches_per_step(), "three seeds vs one: dispatches");
        let sum: u32 = alone.iter().map(GpuEngine::dispatches_per_step).sum();
        let (five, got) = (fused.dispatches_per_step(), ten.dispatches_per_step());
        eprintln!("{kernels:?}: 5 models fused {five} dispatches, 10 fused {got}, 5 alone {sum} in all");
        assert_eq!(got, five, "ten models record {got} dispatches, five {five}");
        assert!(five < sum, "fused {five} vs alone {sum} summed");
    }
}
