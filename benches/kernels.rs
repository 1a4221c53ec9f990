//! Kernel benchmarks at MOSEI shapes: every kernel family is first checked
//! against the f64 CPU reference (src/cpu) on the very buffers it is then timed
//! on; a failed check aborts that benchmark with the worst element. Times are
//! GPU timestamps around the compute pass where the adapter offers them, else
//! wall time around submit + wait; the median of several runs.
//!
//!     WGPU_BACKEND=vulkan cargo bench --bench kernels [-- FILTER] [--json] [--wall] [--quick]
//!
//! FILTER keeps the benchmarks whose name contains it; `--json` (or
//! CIMNET_BENCH_JSON=1) adds one JSON object per row after the table; `--wall`
//! forces wall time; `--quick` only runs the longest bucket.
//!
//! Shapes: B = 16 videos; U from the bucketed batches of the MOSEI-shaped
//! synthetic train split (the median, p90 and longest batch), each with that
//! batch's real lengths; H = 200, D = 100, dims 300 / 74 / 35, R = 900.
//! GFLOP/s count useful work (real utterances only); GB/s count each tensor the
//! kernel must read or write once.

use cimnet::config::{Attention, Modality, ModalitySet, ModelConfig, Tasks};
use cimnet::cpu;
use cimnet::data::{make_batches, synth, BatchMode, SplitName};
use cimnet::gpu::buffers::{read, storage, upload};
use cimnet::gpu::gru::{self, GruKernel, GruParams};
use cimnet::gpu::linear::LinearKernel;
use cimnet::gpu::timing::{Timer, Timing};
use cimnet::gpu::{adam, attention, heads, linear, GpuContext, GpuOptions, Recordable};
use cimnet::params::ParamStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const B: usize = 16;
const H: usize = 200;
const D: usize = 100;
const DIMS: [usize; 3] = [300, 74, 35];

// Tolerances relative to each tensor's largest magnitude, as in tests/: f32
// dot products of length <= 900 (~1e-6), sums over <= B*U rows (~1e-5), the
// GRU recurrence over <= 98 steps (~1e-6 forward, ~1e-5 backward).
const MATMUL_TOL: f64 = 1e-5;
const WGRAD_TOL: f64 = 3e-5;
const GRU_TOL: f64 = 1e-4;
const ATTENTION_TOL: f64 = 2e-5;
const HEADS_TOL: f64 = 2e-5;
const ADAM_TOL: f64 = 1e-6;

type Check = Result<(), String>;

/// |got - want| <= tol * max|want| everywhere, else the worst element.
fn close(name: &str, got: &[f32], want: &[f64], tol: f64) -> Check {
    if got.len() != want.len() {
        return Err(format!("{name}: length {} != {}", got.len(), want.len()));
    }
    let atol = tol * want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (f64::from(g) - w).abs();
        let e = if e.is_nan() { f64::INFINITY } else { e };
        if e > worst.0 {
            worst = (e, i);
        }
    }
    if worst.0 > atol {
        let i = worst.1;
        return Err(format!(
            "{name}: element {i} of {}: got {:e}, want {:e}, |err| {:e} > {atol:e}",
            got.len(),
            got[i],
            want[i],
            worst.0
        ));
    }
    Ok(())
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn u32s(v: &[usize]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}

fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Values of the real rows of a (B, U, W) tensor.
fn real_rows<T: Copy>(v: &[T], lens: &[usize], u: usize, w: usize) -> Vec<T> {
    let mut out = Vec::new();
    for (b, &l) in lens.iter().enumerate() {
        out.extend_from_slice(&v[b * u * w..(b * u + l) * w]);
    }
    out
}

/// One bucket of the benchmark: a batch's real lengths, padded to U.
#[derive(Clone)]
struct Shape {
    tag: &'static str,
    lens: Vec<usize>,
    u: usize,
}

impl Shape {
    fn real(&self) -> usize {
        self.lens.iter().sum()
    }
}

/// The median, p90 and longest batch of the bucketed MOSEI-shaped train split.
fn mosei_shapes() -> (Vec<Shape>, String) {
    let ds = synth::mosei_like(0);
    let lens = ds.lens(SplitName::Train);
    let batches = make_batches(&lens, B, BatchMode::Bucketed, 0);
    let mut by_u: Vec<(usize, Vec<usize>)> = batches
        .iter()
        .filter(|b| b.len() == B)
        .map(|b| {
            let l: Vec<usize> = b.iter().map(|&i| lens[i]).collect();
            (*l.iter().max().unwrap_or(&1), l)
        })
        .collect();
    by_u.sort_by_key(|(u, _)| *u);
    let pick = |q: f64| by_u[((by_u.len() - 1) as f64 * q).round() as usize].clone();
    let steps: usize = batches.iter().map(|b| b.iter().map(|&i| lens[i]).max().unwrap_or(0)).sum();
    let about = format!(
        "MOSEI-shaped train split: {} videos, {} utterances, {} batches of <= {B} (bucketed); GRU steps per epoch (sum of batch U) {steps}",
        lens.len(),
        lens.iter().sum::<usize>(),
        batches.len()
    );
    let shapes = [("median", 0.5), ("p90", 0.9), ("max", 1.0)]
        .into_iter()
        .map(|(tag, q)| {
            let (u, lens) = pick(q);
            Shape { tag, lens, u }
        })
        .collect();
    (shapes, about)
}

struct Row {
    kernel: String,
    shape: String,
    timing: Timing,
    flop: f64,
    bytes: f64,
}

struct Bench {
    ctx: GpuContext,
    timer: Timer,
    filter: Option<String>,
    rows: std::cell::RefCell<Vec<Row>>,
    failures: std::cell::RefCell<Vec<String>>,
}

impl Bench {
    fn wants(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
    }

    /// Time `work` (warm-up, then enough runs for ~1.5 s, 3 to 15) and record a row.
    fn time(&self, kernel: &str, shape: &str, work: &[&dyn Recordable], flop: f64, bytes: f64) {
        let probe = match self.timer.time(&self.ctx, work, 1, 1) {
            Ok(t) => t.wall_median_ms(),
            Err(e) => {
                self.failures.borrow_mut().push(format!("{kernel} {shape}: {e}"));
                return;
            }
        };
        let reps = ((1500.0 / probe.max(0.01)).ceil() as usize).clamp(3, 15);
        match self.timer.time(&self.ctx, work, 0, reps) {
            Ok(timing) => {
                let row = Row { kernel: kernel.to_string(), shape: shape.to_string(), timing, flop, bytes };
                print_row(&row);
                self.rows.borrow_mut().push(row);
            }
            Err(e) => self.failures.borrow_mut().push(format!("{kernel} {shape}: {e}")),
        }
    }

    fn fail(&self, kernel: &str, shape: &str, why: String) {
        eprintln!("CHECK FAILED {kernel} {shape}: {why} (not timed)");
        self.failures.borrow_mut().push(format!("{kernel} {shape}: {why}"));
    }
}

fn print_row(r: &Row) {
    let t = r.timing.median_ms();
    println!(
        "{:<34} {:<26} {:>10.3} {:>9.2} {:>8.2} {:>4} {:>10.3}",
        r.kernel,
        r.shape,
        t,
        r.timing.gflops(r.flop),
        r.timing.gbps(r.bytes),
        r.timing.dispatches,
        r.timing.wall_median_ms()
    );
}

fn json_row(r: &Row) -> String {
    serde_json::json!({
        "kernel": r.kernel,
        "shape": r.shape,
        "method": r.timing.method.as_str(),
        "median_ms": r.timing.median_ms(),
        "min_ms": r.timing.min_ms(),
        "wall_median_ms": r.timing.wall_median_ms(),
        "runs": r.timing.samples_ms.len(),
        "dispatches": r.timing.dispatches,
        "flop": r.flop,
        "bytes": r.bytes,
        "gflops": r.timing.gflops(r.flop),
        "gbps": r.timing.gbps(r.bytes),
    })
    .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json") || std::env::var("CIMNET_BENCH_JSON").as_deref() == Ok("1");
    let wall = args.iter().any(|a| a == "--wall");
    let quick = args.iter().any(|a| a == "--quick");
    let filter = args.iter().find(|a| !a.starts_with("--")).cloned();
    let ctx = match GpuContext::new(&GpuOptions::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no GPU for the kernel benchmarks: {e}");
            std::process::exit(2);
        }
    };
    let timer = Timer::new(&ctx, wall);
    let (mut shapes, about) = mosei_shapes();
    if quick {
        shapes.retain(|s| s.tag == "max");
    }
    println!("adapter: {}", ctx.describe());
    println!("timing: {} (median of 3-15 runs after a warm-up)", timer.method().as_str());
    println!("{about}");
    for s in &shapes {
        println!("bucket {:<6} U = {:>3}, real utterances {} of {}", s.tag, s.u, s.real(), B * s.u);
    }
    println!(
        "{:<34} {:<26} {:>10} {:>9} {:>8} {:>4} {:>10}",
        "kernel", "shape", "time ms", "GFLOP/s", "GB/s", "disp", "wall ms"
    );
    let bench = Bench { ctx, timer, filter, rows: Default::default(), failures: Default::default() };
    for s in &shapes {
        bench_linear(&bench, s);
        bench_gru(&bench, s);
        bench_attention(&bench, s);
        bench_heads(&bench, s);
    }
    bench_adam(&bench);
    if json {
        for r in bench.rows.borrow().iter() {
            println!("{}", json_row(r));
        }
    }
    let failures = bench.failures.borrow();
    if !failures.is_empty() {
        eprintln!("{} benchmark(s) failed:", failures.len());
        for f in failures.iter() {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- linear

/// The GRU input projection per modality (K -> 3H, no activation) and the
/// dense layer (2H -> D, ReLU): forward, dx and dW/db.
fn bench_linear(bench: &Bench, s: &Shape) {
    let cases = [
        ("T", DIMS[0], 3 * H, false),
        ("A", DIMS[1], 3 * H, false),
        ("V", DIMS[2], 3 * H, false),
        ("dense", 2 * H, D, true),
    ];
    for (name, k, o, relu) in cases {
        let fam = if relu { "dense" } else { "gru_input_projection" };
        if !bench.wants(fam) && !bench.wants("linear") {
            continue;
        }
        if let Err(e) = linear_case(bench, s, name, k, o, relu) {
            bench.fail(&format!("linear {name}"), s.tag, e);
        }
    }
}

fn linear_case(bench: &Bench, s: &Shape, name: &str, k: usize, o: usize, relu: bool) -> Check {
    let ctx = &bench.ctx;
    let (b, u) = (B, s.u);
    let n = b * u;
    let w_off = 64;
    let b_off = (w_off + o * k).div_ceil(64) * 64;
    let flat = rand_vec(b_off + o + 64, 1).iter().map(|v| v * 0.1).collect::<Vec<_>>();
    let x = rand_vec(n * k, 2);
    let dy = rand_vec(n * o, 3);
    let grads0 = vec![0.0; flat.len()];
    let w = &flat[w_off..w_off + o * k];
    let bias = &flat[b_off..b_off + o];
    let want_y = if relu {
        cpu::dense::dense_forward(&x, w, bias, &s.lens, b, u, k, o)
    } else {
        let zeros = vec![0.0; o];
        let gw = cpu::gru::GruWeights { w_ih: w, w_hh: &[], b_ih: bias, b_hh: &zeros };
        cpu::gru::gru_input_projection(&x, &gw, &s.lens, cpu::gru::GruShape { b, u, k, h: o / 3 })
    };
    let mask_y = if relu { want_y.clone() } else { vec![1.0; want_y.len()] };
    let mut want_dx = vec![0.0; n * k];
    let mut want_dw = vec![0.0; o * k];
    let mut want_db = vec![0.0; o];
    cpu::dense::dense_backward(&mut want_dx, &mut want_dw, &mut want_db, &dy, &x, &mask_y, w, &s.lens, b, u, k, o);

    let e = |e: cimnet::gpu::GpuError| e.to_string();
    let xb = upload(ctx, "x", &f32s(&x)).map_err(e)?;
    let fb = upload(ctx, "params", &f32s(&flat)).map_err(e)?;
    let len = upload(ctx, "len", &u32s(&s.lens)).map_err(e)?;
    let dyb = upload(ctx, "dy", &f32s(&dy)).map_err(e)?;
    let gb = upload(ctx, "grads", &f32s(&grads0)).map_err(e)?;
    let yb = upload(ctx, "y", &vec![7.0f32; n * o]).map_err(e)?;
    let dxb = upload(ctx, "dx", &vec![7.0f32; n * k]).map_err(e)?;
    let p = linear::LinearParams::new(b, u, k, o, relu);
    let q = [linear::LinearProblem::new(w_off, b_off, 0, 0).batch(u, 0)];
    let real = s.real() as f64;
    let (kf, of) = (k as f64, o as f64);
    let flop = 2.0 * real * kf * of;
    let shape = format!("{} B{b} U{u} K{k} O{o}", s.tag);
    let fam = if relu { "dense" } else { "gru_input_projection" };
    let bytes = 4.0 * (real * (kf + of) + kf * of);
    for kernel in LinearKernel::ALL {
        let fwd = linear::linear_forward_variant(ctx, &yb, &ctx.dummy, &xb, &fb, &len, p, &q, 1, kernel).map_err(e)?;
        let bwd = linear::linear_backward_variant(ctx, &dxb, &dyb, &yb, &fb, &len, p, &q, 1, kernel).map_err(e)?;
        let bww =
            linear::linear_backward_weights_variant(ctx, &gb, &dyb, &yb, &xb, &len, p, &q, 1, kernel).map_err(e)?;
        let names = linear::LinearOp::ALL.map(|op| kernel.resolve(&ctx.profile, &p, &q, op).name());
        if kernel != LinearKernel::Scalar && names == ["scalar"; 3] {
            continue; // the member does not apply to this shape (it would run Scalar)
        }
        ctx.queue.write_buffer(&gb, 0, bytemuck::cast_slice(&f32s(&grads0)));
        ctx.queue.write_buffer(&yb, 0, bytemuck::cast_slice(&vec![7.0f32; n * o]));
        ctx.queue.write_buffer(&dxb, 0, bytemuck::cast_slice(&vec![7.0f32; n * k]));
        cimnet::gpu::run(ctx, &[&fwd, &bwd, &bww]).map_err(e)?;
        close("y", &read::<f32>(ctx, &yb, 0, n * o).map_err(e)?, &want_y, MATMUL_TOL)?;
        close("dx", &read::<f32>(ctx, &dxb, 0, n * k).map_err(e)?, &want_dx, MATMUL_TOL)?;
        let g = read::<f32>(ctx, &gb, 0, flat.len()).map_err(e)?;
        close("dW", &g[w_off..w_off + o * k], &want_dw, WGRAD_TOL)?;
        close("db", &g[b_off..b_off + o], &want_db, WGRAD_TOL)?;
        bench.time(&format!("{fam} {name} forward {}", names[0]), &shape, &[&fwd], flop, bytes);
        bench.time(&format!("{fam} {name} backward dx {}", names[1]), &shape, &[&bwd], flop, bytes);
        bench.time(&format!("{fam} {name} backward dW {}", names[2]), &shape, &[&bww], flop, bytes + 4.0 * kf * of);
    }
    Ok(())
}

// ---------------------------------------------------------------- GRU

fn tav_config() -> ModelConfig {
    let mut cfg = ModelConfig::new(ModalitySet::TAV, Attention::Cim, Tasks::Mtl, DIMS);
    cfg.hidden = H;
    cfg.dense = D;
    cfg
}

/// The recurrent part of all six (modality, direction) problems in one launch.
fn bench_gru(bench: &Bench, s: &Shape) {
    if !bench.wants("gru_forward") && !bench.wants("gru_backward") && !bench.wants("gru ") {
        return;
    }
    if let Err(e) = gru_case(bench, s) {
        bench.fail("gru", s.tag, e);
    }
}

fn gru_case(bench: &Bench, s: &Shape) -> Check {
    let cfg = tav_config();
    let store = ParamStore::init(&cfg, 7);
    let layout = &store.layout;
    let mods: Vec<Modality> = cfg.modalities.modalities();
    let wv = store.to_f64();
    let (b, u, h) = (B, s.u, H);
    let params = GruParams::new(b, u, h, 2 * mods.len()).map_err(|e| e.to_string())?;
    let problems: Vec<_> =
        gru::gru_problems(layout, &mods, 0).map_err(|e| e.to_string())?.into_iter().map(|q| q.batch(u, 0)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // CPU reference per problem; xp (P, B, U, 3H) comes from it so that only
    // the recurrent kernels are compared and timed.
    let mut xp = Vec::new();
    let mut out_want = Vec::new();
    let mut dout = Vec::new();
    let mut whh_want: Vec<(std::ops::Range<usize>, Vec<f64>)> = Vec::new();
    for m in &mods {
        let k = cfg.dim(*m);
        let shape = cpu::gru::GruShape { b, u, k, h };
        let x: Vec<f64> = (0..b * u * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let names = |dir: &str| {
            ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"].map(|t| format!("{}.gru.{t}{dir}", m.name()))
        };
        let weights = |dir: &str| {
            let n = names(dir);
            let g = |i: usize| &wv[layout.slice(&n[i]).range()];
            cpu::gru::GruWeights { w_ih: g(0), w_hh: g(1), b_ih: g(2), b_hh: g(3) }
        };
        let fwd = cpu::gru::gru_forward(&x, &weights(""), &s.lens, shape, false);
        let rev = cpu::gru::gru_forward(&x, &weights("_reverse"), &s.lens, shape, true);
        out_want.extend(cpu::gru::bigru_concat(&fwd.h, &rev.h, shape));
        let dm: Vec<f64> = (0..b * u * 2 * h).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (dfwd, drev) = cpu::gru::bigru_split(&dm, shape);
        let mut dx = vec![0.0; b * u * k];
        for (dir, cache, dh, reverse) in [("", &fwd, &dfwd, false), ("_reverse", &rev, &drev, true)] {
            let n = names(dir);
            let mut gw: Vec<Vec<f64>> = n.iter().map(|t| vec![0.0; layout.slice(t).len()]).collect();
            let [a, bb, cc, dd] = &mut gw[..] else { unreachable!() };
            let mut grads = cpu::gru::GruGrads { w_ih: a, w_hh: bb, b_ih: cc, b_hh: dd };
            cpu::gru::gru_backward(&mut dx, &mut grads, dh, &x, &weights(dir), cache, &s.lens, shape, reverse);
            whh_want.push((layout.slice(&n[1]).range(), gw[1].clone()));
            whh_want.push((layout.slice(&n[3]).range(), gw[3].clone()));
            xp.extend(cache.xp.iter().copied());
        }
        dout.extend(dm);
    }
    let ctx = &bench.ctx;
    let e = |e: cimnet::gpu::GpuError| e.to_string();
    let lens = upload(ctx, "lens", &u32s(&s.lens)).map_err(e)?;
    let weights = upload(ctx, "weights", &store.values).map_err(e)?;
    let grads = upload(ctx, "grads", &vec![0f32; layout.len]).map_err(e)?;
    let xpb = upload(ctx, "xp", &f32s(&xp)).map_err(e)?;
    let doutb = upload(ctx, "dout", &f32s(&dout)).map_err(e)?;
    let cache = storage::<f32>(ctx, "cache", (params.cache_bytes() / 4) as usize).map_err(e)?;
    let out = storage::<f32>(ctx, "out", (params.out_bytes() / 4) as usize).map_err(e)?;
    let gi = storage::<f32>(ctx, "gi", (params.gates_bytes() / 4) as usize).map_err(e)?;
    let gh = storage::<f32>(ctx, "gh", (params.gates_bytes() / 4) as usize).map_err(e)?;
    let carry = storage::<f32>(ctx, "carry", (params.carry_bytes() / 4) as usize).map_err(e)?;
    let real = s.real() as f64;
    let pf = params.problems as f64;
    let hf = h as f64;
    // Per real step and problem: W_hh h (2 * 3H * H) and ~15H of gate math;
    // the backward does W_hh^T gh and gh^T h_prev (twice that) and ~25H.
    let flop_f = pf * real * (2.0 * 3.0 * hf * hf + 15.0 * hf);
    let flop_b = pf * real * (4.0 * 3.0 * hf * hf + 25.0 * hf);
    // Forward: xp read, cache and out written, W_hh read once per launch.
    let bytes_f = 4.0 * pf * (real * (3.0 * hf + 5.0 * hf + hf) + 3.0 * hf * hf);
    let bytes_b = 4.0 * pf * (real * (hf + 5.0 * hf + 6.0 * hf) + 2.0 * 3.0 * hf * hf);
    let shape = format!("{} B{b} U{u} H{h} P6", s.tag);
    // Every member the tuner can pick here; the scalar ones (seconds per run at
    // U 98) only when asked for by name.
    let scalar = bench.filter.as_deref().is_some_and(|f| f.contains("scalar"));
    let members = gru::candidates(&ctx.profile, &params, &problems)
        .into_iter()
        .filter(|m| scalar || m.kernel != GruKernel::Scalar);
    let n = problems.len();
    for member in members {
        let fwd = gru::gru_forward(ctx, &out, &cache, &xpb, &weights, &lens, &params, &problems, n, member)
            .map_err(|e| e.to_string())?;
        let (w, q) = (&weights, &problems);
        let bwd = gru::gru_backward(ctx, &gi, &gh, &carry, &grads, &doutb, &cache, w, &lens, &params, q, n, member)
            .map_err(|e| e.to_string())?;
        ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&vec![0f32; layout.len]));
        cimnet::gpu::run(ctx, &[&fwd, &bwd]).map_err(e)?;
        let got = read::<f32>(ctx, &out, 0, (params.out_bytes() / 4) as usize).map_err(e)?;
        let (w2h, want2h) = (2 * h, &out_want);
        let rows = |v: &[f32]| -> Vec<f32> {
            (0..mods.len())
                .flat_map(|m| real_rows(&v[m * b * u * w2h..(m + 1) * b * u * w2h], &s.lens, u, w2h))
                .collect()
        };
        let rows64 = (0..mods.len())
            .flat_map(|m| real_rows(&want2h[m * b * u * w2h..(m + 1) * b * u * w2h], &s.lens, u, w2h))
            .collect::<Vec<f64>>();
        let tag = member.name();
        close(&format!("{tag} out"), &rows(&got), &rows64, GRU_TOL)?;
        let g = read::<f32>(ctx, &grads, 0, layout.len).map_err(e)?;
        for (range, want) in &whh_want {
            close(&format!("{tag} dW_hh/db_hh at {}", range.start), &g[range.clone()], want, GRU_TOL)?;
        }
        bench.time(&format!("gru_forward {tag}"), &shape, &[&fwd], flop_f, bytes_f);
        bench.time(&format!("gru_backward {tag} (+dW_hh)"), &shape, &[&bwd], flop_b, bytes_b);
        // Of which dW_hh += gh^T h_prev (2 * 3H * H per real step and problem).
        let flop_w = pf * real * 2.0 * 3.0 * hf * hf;
        let bytes_w = 4.0 * pf * (real * (3.0 * hf + hf) + 3.0 * hf * hf);
        bench.time(
            &format!("gru_backward_weights {tag} (dW_hh alone)"),
            &shape,
            &[&gru::GruWeightsOnly(&bwd)],
            flop_w,
            bytes_w,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- attention

/// The fused CIM pair [att(X, Y), att(Y, X)] at D = 100, R = 900.
fn bench_attention(bench: &Bench, s: &Shape) {
    if !bench.wants("attention") {
        return;
    }
    if let Err(e) = attention_case(bench, s) {
        bench.fail("attention", s.tag, e);
    }
}

fn attention_case(bench: &Bench, s: &Shape) -> Check {
    for kernel in attention::AttentionKernel::ALL {
        attention_member(bench, s, kernel)?;
    }
    Ok(())
}

/// One member of the family, forward and backward, checked then timed (a member
/// the device cannot run at the shape runs `flat`, and is named so).
fn attention_member(bench: &Bench, s: &Shape, kernel: attention::AttentionKernel) -> Check {
    use attention::AttentionSaved;
    use attention::{attention_backward_variant, attention_forward_variant, AttentionParams, AttentionProblem};
    let (b, u, d) = (B, s.u, D);
    let rw = 9 * d;
    let (r_xy, r_yx) = (2 * d, 5 * d);
    let x = rand_vec(b * u * d, 41);
    let y = rand_vec(b * u * d, 42);
    let dr = rand_vec(b * u * rw, 43);
    let slice = |m: &[f64], off: usize| -> Vec<f64> {
        (0..b * u).flat_map(|t| m[t * rw + off..t * rw + off + d].to_vec()).collect()
    };
    let (out_xy, c_xy) = cpu::attention::attention_forward(&x, &y, &s.lens, b, u, d);
    let (out_yx, c_yx) = cpu::attention::attention_forward(&y, &x, &s.lens, b, u, d);
    let mut want_dx = vec![0.0; b * u * d];
    let mut want_dy = vec![0.0; b * u * d];
    cpu::attention::attention_backward(&mut want_dx, &mut want_dy, &slice(&dr, r_xy), &x, &y, &c_xy, &s.lens, b, u, d);
    cpu::attention::attention_backward(&mut want_dy, &mut want_dx, &slice(&dr, r_yx), &y, &x, &c_yx, &s.lens, b, u, d);

    let ctx = &bench.ctx;
    let e = |e: cimnet::gpu::GpuError| e.to_string();
    // One model's pair: X, Y (and dX, dY) the first two blocks of the feat (dfeat) arena.
    let block = b * u * d;
    let feat = upload(ctx, "feat", &f32s(&[x.clone(), y.clone()].concat())).map_err(e)?;
    let len = upload(ctx, "len", &u32s(&s.lens)).map_err(e)?;
    let r = storage::<f32>(ctx, "R", b * u * rw).map_err(e)?;
    let drb = upload(ctx, "dR", &f32s(&dr)).map_err(e)?;
    let dfeat = storage::<f32>(ctx, "dfeat", 2 * block).map_err(e)?;
    let m = storage::<f32>(ctx, "M", b * u * u).map_err(e)?;
    let n = storage::<f32>(ctx, "N", 2 * b * u * u).map_err(e)?;
    let o = storage::<f32>(ctx, "O", 2 * b * u * d).map_err(e)?;
    let dm = storage::<f32>(ctx, "dM", 2 * b * u * u).map_err(e)?;
    let saved = AttentionSaved { m: &m, n: &n, o: &o };
    let p = AttentionParams::new(b, u, d, true);
    let q = [AttentionProblem::new(rw, r_xy, Some(r_yx)).feat(0, block, 0, block).batch(u, 0)];
    let fwd = attention_forward_variant(ctx, &r, &saved, &feat, &len, p, &q, 1, kernel).map_err(e)?;
    let bwd = attention_backward_variant(ctx, &dfeat, &dm, &drb, &saved, &feat, &len, p, &q, 1, kernel).map_err(e)?;
    cimnet::gpu::run(ctx, &[&fwd, &bwd]).map_err(e)?;
    let got_r = read::<f32>(ctx, &r, 0, b * u * rw).map_err(e)?;
    let got_xy: Vec<f32> = (0..b * u).flat_map(|t| got_r[t * rw + r_xy..t * rw + r_xy + d].to_vec()).collect();
    let got_yx: Vec<f32> = (0..b * u).flat_map(|t| got_r[t * rw + r_yx..t * rw + r_yx + d].to_vec()).collect();
    close("att(X,Y)", &real_rows(&got_xy, &s.lens, u, d), &real_rows(&out_xy, &s.lens, u, d), ATTENTION_TOL)?;
    close("att(Y,X)", &real_rows(&got_yx, &s.lens, u, d), &real_rows(&out_yx, &s.lens, u, d), ATTENTION_TOL)?;
    close(
        "dX",
        &real_rows(&read::<f32>(ctx, &dfeat, 0, block).map_err(e)?, &s.lens, u, d),
        &real_rows(&want_dx, &s.lens, u, d),
        ATTENTION_TOL,
    )?;
    close(
        "dY",
        &real_rows(&read::<f32>(ctx, &dfeat, block, block).map_err(e)?, &s.lens, u, d),
        &real_rows(&want_dy, &s.lens, u, d),
        ATTENTION_TOL,
    )?;

    // Per video of length l: M (2 l^2 D), two softmaxes (~10 l^2), two N V (4 l^2 D),
    // two gates; backward: two dN (4 l^2 D), two softmax backward, dX/dY (12 l^2 D).
    let (l2, l1): (f64, f64) = (s.lens.iter().map(|&l| (l * l) as f64).sum(), s.real() as f64);
    let df = d as f64;
    let flop_f = 6.0 * l2 * df + 10.0 * l2 + 2.0 * l1 * df;
    let flop_b = 16.0 * l2 * df + 8.0 * l2 + 4.0 * l1 * df;
    let bytes_f = 4.0 * (2.0 * l1 * df + 3.0 * l2 + 4.0 * l1 * df);
    let bytes_b = 4.0 * (2.0 * l1 * df + 4.0 * l2 + 6.0 * l1 * df);
    let shape = format!("{} B{b} U{u} D{d} pair", s.tag);
    bench.time(&format!("attention_forward [{}]", fwd.kernel.name()), &shape, &[&fwd], flop_f, bytes_f);
    bench.time(&format!("attention_backward [{}]", bwd.kernel.name()), &shape, &[&bwd], flop_b, bytes_b);
    Ok(())
}

// ---------------------------------------------------------------- heads + loss

fn bench_heads(bench: &Bench, s: &Shape) {
    if !bench.wants("heads") {
        return;
    }
    if let Err(e) = heads_case(bench, s) {
        bench.fail("heads", s.tag, e);
    }
}

fn heads_case(bench: &Bench, s: &Shape) -> Check {
    let cfg = tav_config();
    let layout = cimnet::params::Layout::new(&cfg);
    let rw = cfg.repr_width();
    let (b, u) = (B, s.u);
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let params: Vec<f64> = (0..layout.len).map(|_| rng.gen_range(-0.1..0.1)).collect();
    let r = rand_vec(b * u * rw, 17);
    let sentiment: Vec<f64> = (0..b * u).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let emotion: Vec<f64> =
        (0..b * u * 6).map(|_| if rng.gen_bool(0.6) { 0.0 } else { rng.gen_range(0.1..3.0) }).collect();
    let batch = cimnet::batch::Batch {
        b,
        u,
        features: [None, None, None],
        dims: DIMS,
        len: s.lens.clone(),
        sentiment: sentiment.clone(),
        emotion: Some(emotion.clone()),
    };
    let head = |n: &str| {
        layout
            .get(&format!("{n}.weight"))
            .map(|w| cpu::heads::Head { w: &params[w.range()], b: &params[layout.slice(&format!("{n}.bias")).range()] })
    };
    let (hs, he) = (head("sentiment"), head("emotion"));
    let out = cpu::heads::heads_forward(&r, hs, he, &batch, rw, cfg.w_sentiment, cfg.w_emotion);
    let mut want_dr = vec![0.0; b * u * rw];
    let (ws, bs, we, be) = (
        layout.slice("sentiment.weight"),
        layout.slice("sentiment.bias"),
        layout.slice("emotion.weight"),
        layout.slice("emotion.bias"),
    );
    let (mut gws, mut gbs, mut gwe, mut gbe) =
        (vec![0.0; ws.len()], vec![0.0; bs.len()], vec![0.0; we.len()], vec![0.0; be.len()]);
    cpu::heads::heads_backward(
        &mut want_dr,
        Some(cpu::heads::HeadGrads { w: &mut gws, b: &mut gbs }),
        Some(cpu::heads::HeadGrads { w: &mut gwe, b: &mut gbe }),
        &r,
        hs,
        he,
        &out,
        &batch,
        rw,
        cfg.w_sentiment,
        cfg.w_emotion,
    );
    let mut labels = vec![0.0f32; b * u * 7];
    for t in 0..b * u {
        labels[t * 7] = sentiment[t] as f32;
        for k in 0..6 {
            labels[t * 7 + 1 + k] = emotion[t * 6 + k] as f32;
        }
    }
    let ctx = &bench.ctx;
    let e = |e: cimnet::gpu::GpuError| e.to_string();
    let rb = upload(ctx, "R", &f32s(&r)).map_err(e)?;
    let wb = upload(ctx, "params", &f32s(&params)).map_err(e)?;
    let lb = upload(ctx, "labels", &labels).map_err(e)?;
    let len = upload(ctx, "len", &u32s(&s.lens)).map_err(e)?;
    let n = b * u;
    let probs = storage::<f32>(ctx, "probs", n * heads::CLASSES).map_err(e)?;
    let dz = storage::<f32>(ctx, "dz", n * heads::CLASSES).map_err(e)?;
    let row_loss = storage::<f32>(ctx, "row loss", n * 2).map_err(e)?;
    let loss = storage::<f32>(ctx, "loss", heads::LOSS_LEN).map_err(e)?;
    let dr = storage::<f32>(ctx, "dR", n * rw).map_err(e)?;
    let grads = upload(ctx, "grads", &vec![0f32; layout.len]).map_err(e)?;
    let p = heads::HeadsParams::new(b, u, cfg.dense, false);
    let q = [heads::HeadsProblem::new(&cfg, &layout, 0).batch(u, 0)];
    let fwd = heads::heads_forward(ctx, &probs, &dz, &row_loss, &loss, &rb, &wb, &lb, &len, p, &q, 1).map_err(e)?;
    let bwd = heads::heads_backward(ctx, &dr, &ctx.dummy, &grads, &dz, &rb, &wb, &len, p, &q, 1).map_err(e)?;
    cimnet::gpu::run(ctx, &[&fwd, &bwd]).map_err(e)?;
    let got_loss = read::<f32>(ctx, &loss, 0, 1).map_err(e)?;
    close("loss", &got_loss, &[out.loss], HEADS_TOL)?;
    close(
        "dR",
        &real_rows(&read::<f32>(ctx, &dr, 0, n * rw).map_err(e)?, &s.lens, u, rw),
        &real_rows(&want_dr, &s.lens, u, rw),
        HEADS_TOL,
    )?;
    let g = read::<f32>(ctx, &grads, 0, layout.len).map_err(e)?;
    close("dW_s", &g[ws.range()], &gws, HEADS_TOL)?;
    close("dW_e", &g[we.range()], &gwe, HEADS_TOL)?;
    let real = s.real() as f64;
    let rf = rw as f64;
    let shape = format!("{} B{b} U{u} R{rw}", s.tag);
    bench.time(
        "heads_forward + loss",
        &shape,
        &[&fwd],
        2.0 * real * rf * 9.0 + 60.0 * real,
        4.0 * (real * (rf + 7.0 + 20.0) + 9.0 * rf),
    );
    bench.time(
        "heads_backward (dR + dW)",
        &shape,
        &[&bwd],
        4.0 * real * rf * 9.0,
        4.0 * (2.0 * real * rf + 9.0 * real + 18.0 * rf),
    );
    Ok(())
}

// ---------------------------------------------------------------- Adam

/// One Adam step over the whole TAV cim parameter store (with zero_grad).
fn bench_adam(bench: &Bench) {
    if !bench.wants("adam") {
        return;
    }
    if let Err(e) = adam_case(bench) {
        bench.fail("adam", "", e);
    }
}

fn adam_case(bench: &Bench) -> Check {
    let cfg = tav_config();
    let store = ParamStore::init(&cfg, 3);
    let n = store.layout.len;
    let acfg = adam::AdamConfig::default();
    let p0 = store.to_f64();
    let g = rand_vec(n, 5).iter().map(|v| v * 1e-2).collect::<Vec<_>>();
    let g = f32s(&g).iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
    let mut want = p0.clone();
    let mut state = cpu::adam::AdamState::new(n);
    cpu::adam::adam_step(&mut want, &mut state, &g, &acfg);
    let ctx = &bench.ctx;
    let e = |e: cimnet::gpu::GpuError| e.to_string();
    let pb = upload(ctx, "params", &store.values).map_err(e)?;
    let gb = upload(ctx, "grads", &f32s(&g)).map_err(e)?;
    let m = upload(ctx, "m", &vec![0f32; n]).map_err(e)?;
    let v = upload(ctx, "v", &vec![0f32; n]).map_err(e)?;
    let launch =
        adam::adam_step(ctx, [&pb, &gb, &m, &v], &[adam::AdamProblem::new(0, n, 1, &acfg)], 1, true).map_err(e)?;
    cimnet::gpu::run(ctx, &[&launch]).map_err(e)?;
    close("params", &read::<f32>(ctx, &pb, 0, n).map_err(e)?, &want, ADAM_TOL)?;
    let nf = n as f64;
    bench.time("adam_step (+zero_grad)", &format!("{n} parameters"), &[&launch], 15.0 * nf, 32.0 * nf);
    Ok(())
}
