//! Every kernel against the f64 CPU reference (src/cpu), forward and backward, on
//! random masked batches: B not a multiple of any workgroup size, lengths mixed
//! (including 1 and U), garbage at padded positions, outputs pre-filled with
//! garbage (so "written" is tested, not assumed) and parameter gradients starting
//! non-zero (so `+=` is). One function per kernel family returns a table of
//! [`CheckRow`]s; `cimnet check` prints them for the user's GPU, and the GPU tests
//! (tests/gpu_kernels.rs, tests/gpu_gru.rs) call the same functions on larger
//! shapes and assert that every row passes.
//!
//! Errors are measured per tensor relative to the reference tensor's largest
//! magnitude: a tensor passes iff max |got - want| <= tol * max |want|
//! (tol = 0: equal as f32, for copies and the dropout mask).
//! Letters: B batch, U padded utterances, K input width, O output width,
//! H hidden, D dense width, R representation width.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::buffers::{read, storage, upload};
use super::context::{GpuContext, GpuError};
use super::gru::{GruError, GruKernel, GruParams, GruSchedule};
use super::launch::run;
use super::linear::LinearKernel;
use super::{adam, attention, dropout, gather, gru, heads, linear};
use crate::batch::Batch;
use crate::config::{Attention, Block, Modality, ModalitySet, ModelConfig, Tasks, EMOTIONS};
use crate::cpu;
use crate::params::{Layout, ParamStore};

// ---- Tolerances, relative to each tensor's largest magnitude ----

/// f32 dot products of length up to ~900 with random signs: the rounding error grows
/// like sqrt(K) * 2^-24 * sum|terms| (~1e-6 of the largest output); 1e-5 leaves a
/// 10x margin and still catches any wrong index or missing term (errors of O(1e-2)).
pub const MATMUL_TOL: f64 = 1e-5;
/// Weight gradients sum over up to B*U = 1666 rows in f32: sqrt(1666) * 6e-8 * the
/// summed magnitude, ~1e-5 of the largest gradient in the worst case; 3e-5 margin.
pub const WGRAD_TOL: f64 = 3e-5;
/// Adam: p is stored in f32, so every step rounds it (half an ulp, 3e-8 of |p| <= 1):
/// ten steps drift by up to ~3e-7 of max|p| (measured 2.8e-7); the update itself and
/// the f64-computed bias corrections and (1 - beta) add far less. 1e-6 is a third of
/// one update step (lr = 1e-3 times |m_hat / sqrt(v_hat)| >= ~3e-3 here).
pub const ADAM_TOL: f64 = 1e-6;
/// Heads: logits are dots of length R = 900 (as MATMUL_TOL), then exp/log in f32
/// (a few ulp); probabilities, losses and dz inherit ~1e-6 relative error.
pub const HEADS_TOL: f64 = 2e-5;
/// Attention: M is a dot of length D = 100 (as MATMUL_TOL), softmax exp in f32, then
/// sums of U <= 98 weighted rows; the backward chains three such sums.
pub const ATTENTION_TOL: f64 = 2e-5;
/// GRU forward: each step is a length-H f32 dot product (H <= 200: rounding
/// ~ sqrt(H) * 6e-8 relative to the terms) followed by gates whose derivatives
/// are <= 1; with orthogonal W_hh and z in (0, 1) the recurrence does not
/// amplify earlier errors, so after up to 98 steps the error stays ~1e-6.
/// 1e-4 leaves two decades of margin and still catches any indexing or gate
/// mistake (those give errors of order 1).
pub const GRU_FWD_TOL: f64 = 1e-4;
/// GRU backward: the same recurrence run backwards (W_hh^T gh, length 3H = 600) on
/// f32 inputs that already carry the forward's ~1e-6 error, and dW_hh / db_hh /
/// dW_ih sums over up to B*U = 1666 rows in f32: sequential accumulation error
/// ~ n * 6e-8 relative to the sum of |terms| in the worst case, ~1e-5 for
/// these sizes in practice. Held to the same 1e-4.
pub const GRU_BWD_TOL: f64 = 1e-4;
/// Copies, the dropout mask and single f32 operations (x * mask, a + b) are
/// correctly rounded in WGSL, so the GPU must give the CPU's f32 result exactly.
pub const EXACT: f64 = 0.0;

/// Written into padded input positions: a kernel that reads them is far off.
const GARBAGE: f64 = 1e3;
/// Pre-filled into outputs and into buffer regions a kernel must not touch.
const SENTINEL: f32 = 7.0;

// ---- Comparison ----

/// The worst element of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Worst {
    pub index: usize,
    pub got: f64,
    pub want: f64,
}

/// One tensor compared with its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compared {
    pub tensor: String,
    /// max |got - want| (infinite when a value is NaN or the lengths differ).
    pub max_abs: f64,
    /// max_abs / max |want|.
    pub max_rel: f64,
    /// Allowed max_rel (0: equal as f32).
    pub tol: f64,
    pub pass: bool,
    /// The element with the largest error (None for empty tensors).
    pub worst: Option<Worst>,
    /// Why the comparison failed before looking at values (e.g. lengths differ).
    pub note: Option<String>,
}

impl std::fmt::Display for Compared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: max |err| {:.2e} = {:.2e} of max|want|", self.tensor, self.max_abs, self.max_rel)?;
        if let Some(n) = &self.note {
            write!(f, " ({n})")?;
        }
        if let Some(w) = self.worst {
            write!(f, ", worst element {}: got {:e}, want {:e}", w.index, w.got, w.want)?;
        }
        if self.tol == EXACT {
            write!(f, " (must be exact)")
        } else {
            write!(f, " (tolerance {:.0e})", self.tol)
        }
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn length_mismatch(tensor: &str, got: usize, want: usize, tol: f64) -> Compared {
    Compared {
        tensor: tensor.to_string(),
        max_abs: f64::INFINITY,
        max_rel: f64::INFINITY,
        tol,
        pass: false,
        worst: None,
        note: Some(format!("length {got}, reference {want}")),
    }
}

/// `got` against the f64 reference: passes iff max |got - want| <= tol * max |want|
/// (NaN never passes).
pub fn compare(tensor: &str, got: &[f32], want: &[f64], tol: f64) -> Compared {
    if got.len() != want.len() {
        return length_mismatch(tensor, got.len(), want.len(), tol);
    }
    let mut worst: Option<Worst> = None;
    let mut max_err = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if worst.is_none() || err > max_err {
            max_err = err;
            worst = Some(Worst { index: i, got: f64::from(g), want: w });
        }
    }
    let scale = max_abs(want);
    let max_rel = if max_err == 0.0 { 0.0 } else { max_err / scale };
    Compared {
        tensor: tensor.to_string(),
        max_abs: max_err,
        max_rel,
        tol,
        pass: max_err <= tol * scale,
        worst,
        note: None,
    }
}

/// `got` against an f32 reference that the GPU must reproduce exactly (equal as
/// f32: +0 and -0 are equal, NaN never is).
pub fn compare_exact(tensor: &str, got: &[f32], want: &[f32]) -> Compared {
    if got.len() != want.len() {
        return length_mismatch(tensor, got.len(), want.len(), EXACT);
    }
    let want64: Vec<f64> = want.iter().map(|&w| f64::from(w)).collect();
    let mut c = compare(tensor, got, &want64, EXACT);
    // The first differing element is the one to report.
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        c.pass = false;
        c.worst = Some(Worst { index: i, got: f64::from(got[i]), want: want64[i] });
    } else {
        c.pass = true;
    }
    c
}

/// One line of the `cimnet check` table: one kernel (entry point or launch) on one
/// shape, over every tensor it writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRow {
    pub kernel: String,
    pub shape: String,
    /// Largest absolute error over the tensors.
    pub max_abs: f64,
    /// Largest error relative to its reference tensor's largest magnitude.
    pub max_rel: f64,
    /// The row's tolerance on max_rel (the largest of its tensors'; 0 = exact).
    pub tol: f64,
    pub pass: bool,
    /// The first failing tensor and its worst element, else the worst tensor.
    pub detail: String,
    pub tensors: Vec<Compared>,
}

impl CheckRow {
    pub fn new(kernel: impl Into<String>, shape: impl Into<String>, tensors: Vec<Compared>) -> CheckRow {
        let max_abs = tensors.iter().fold(0.0f64, |m, c| m.max(c.max_abs));
        let max_rel = tensors.iter().fold(0.0f64, |m, c| m.max(c.max_rel));
        let tol = tensors.iter().fold(0.0f64, |m, c| m.max(c.tol));
        let pass = !tensors.is_empty() && tensors.iter().all(|c| c.pass);
        let detail = match tensors.iter().find(|c| !c.pass) {
            Some(c) => c.to_string(),
            None if tensors.is_empty() => "nothing compared".to_string(),
            None => {
                let w = tensors.iter().fold(&tensors[0], |a, c| if c.max_rel > a.max_rel { c } else { a });
                format!("worst tensor: {}", w.tensor)
            }
        };
        CheckRow { kernel: kernel.into(), shape: shape.into(), max_abs, max_rel, tol, pass, detail, tensors }
    }

    /// A kernel family that could not run (the error is the detail); never passes.
    pub fn error(kernel: impl Into<String>, err: &dyn std::fmt::Display) -> CheckRow {
        CheckRow {
            kernel: kernel.into(),
            shape: String::new(),
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
            tol: 0.0,
            pass: false,
            detail: format!("error: {err}"),
            tensors: Vec::new(),
        }
    }
}

impl std::fmt::Display for CheckRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tol = if self.tol == EXACT { "exact".to_string() } else { format!("{:.0e}", self.tol) };
        write!(
            f,
            "{} [{}]: max abs {:.2e}, max rel {:.2e}, tol {tol}: {}; {}",
            self.kernel,
            self.shape,
            self.max_abs,
            self.max_rel,
            if self.pass { "pass" } else { "FAIL" },
            self.detail
        )
    }
}

// ---- What `cimnet check` runs ----

/// One family of checks at the sizes `cimnet check` uses (a few seconds on llvmpipe).
pub type CheckFn = fn(&GpuContext) -> Result<Vec<CheckRow>, GpuError>;

/// The families `cimnet check` runs, in table order. Adding a row (e.g. the whole
/// model) is one function here.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("linear", linear_rows),
    ("dropout", dropout_rows),
    ("gather", gather_rows),
    ("gru", gru_rows),
    ("attention", attention_rows),
    ("linear_fused", linear_fused_rows),
    ("heads", heads_rows),
    ("adam", adam_rows),
    ("model", model_rows),
];

/// Every row of [`CHECKS`]; stops at the first family that cannot run.
pub fn check_kernels(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let mut rows = Vec::new();
    for (_, f) in CHECKS {
        rows.extend(f(ctx)?);
    }
    Ok(rows)
}

/// B = 17 (one more than a GRU workgroup's 16 sequences, not a multiple of 64 or
/// 256), U = 9, lengths mixed with 1 and U twice each.
pub const CHECK_LENS: [usize; 17] = [9, 1, 4, 9, 2, 7, 9, 3, 5, 6, 9, 1, 8, 2, 9, 4, 6];

fn linear_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let lens = CHECK_LENS.to_vec();
    let n = lens.len() * 9;
    let mut rows = Vec::new();
    // The GRU input projections (K 300 -> 3H 600, written as the second problem's
    // block of xp; K 35, which only the scalar kernels take) and the dense layer
    // (2H 400 -> D 100) with ReLU, on every kernel variant their shapes allow.
    for (k, o, relu, y_off, seed) in [(300, 600, false, n * 600, 1), (35, 600, false, 0, 2), (400, 100, true, 0, 3)] {
        let mut c = LinearCase { lens: lens.clone(), k, o, relu, y_off, kernel: LinearKernel::Scalar, seed };
        for kernel in linear_kernels(&c) {
            c.kernel = kernel;
            rows.extend(check_linear(ctx, &c)?);
        }
    }
    Ok(rows)
}

fn dropout_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    // (B, U, 2H) of the check batch plus 3, at offsets into larger buffers.
    check_dropout(ctx, &DropoutCase { n: 17 * 9 * 400 + 3, seed: 12345, stream: 5, p: 0.3, x_off: 100, y_off: 37 })
}

fn gather_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let case = GatherCase {
        lengths: vec![3, 1, 9, 7, 1, 12, 4, 2],
        dims: vec![300, 74, 35],
        index: vec![7, 6, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 3],
        seed: 3,
    };
    check_gather(ctx, &case)
}

fn gru_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let cases = [
        GruCase { lens: CHECK_LENS.to_vec(), dims: [0, 0, 35], h: 200, seed: 4 },
        GruCase { lens: vec![5, 1, 13, 2, 13, 7, 1, 9, 3, 11, 4, 6, 12, 8, 2, 10, 13], dims: [5, 3, 9], h: 7, seed: 5 },
    ];
    let mut rows = Vec::new();
    for c in &cases {
        for kernel in gru_kernels(c)? {
            for schedule in [GruSchedule::Persistent, GruSchedule::PerStep] {
                rows.extend(check_gru(ctx, c, schedule, kernel)?);
            }
        }
    }
    Ok(rows)
}

fn attention_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let mut rows = check_attention(ctx, &AttentionCase { lens: CHECK_LENS.to_vec(), d: 100, pair: true, seed: 6 })?;
    rows.extend(check_attention(ctx, &AttentionCase { lens: CHECK_LENS.to_vec(), d: 100, pair: false, seed: 7 })?);
    Ok(rows)
}

fn linear_fused_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    // The dense site of a training step (2H 400 -> D 100: the vec4 kernels) and an
    // odd shape that only the scalar kernels take.
    let mut rows = Vec::new();
    for (k, o, seed) in [(400, 100, 8), (6, 5, 11)] {
        rows.extend(check_linear_fused(ctx, &FusedLinearCase { lens: CHECK_LENS.to_vec(), k, o, seed })?);
    }
    Ok(rows)
}

fn heads_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let mut rows = Vec::new();
    for tasks in Tasks::ALL {
        rows.extend(check_heads(ctx, &HeadsCase { tasks, lens: CHECK_LENS.to_vec(), seed: 9 })?);
    }
    Ok(rows)
}

fn adam_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    check_adam(ctx, &AdamCase { n: 70_001, steps: 10, seed: 10 })
}

// ---- Helpers ----

/// Uniform values in [-1, 1) from a seed.
pub fn random_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn u32s(v: &[usize]) -> Vec<u32> {
    v.iter().map(|&x| u32::try_from(x).unwrap_or(u32::MAX)).collect()
}

fn padded_u(lens: &[usize]) -> usize {
    lens.iter().copied().max().unwrap_or(0)
}

/// Set the padded rows of a (B, U, W) tensor to `value`.
fn fill_padding(v: &mut [f64], lens: &[usize], u: usize, w: usize, value: f64) {
    for (b, &l) in lens.iter().enumerate() {
        for x in &mut v[(b * u + l) * w..(b + 1) * u * w] {
            *x = value;
        }
    }
}

/// The real rows of a (B, U, W) tensor (outputs at padding are undefined).
fn real_rows<T: Copy>(v: &[T], lens: &[usize], u: usize, w: usize) -> Vec<T> {
    let mut out = Vec::new();
    for (b, &l) in lens.iter().enumerate() {
        out.extend_from_slice(&v[b * u * w..(b * u + l) * w]);
    }
    out
}

/// Columns [off, off + d) of every row of a (rows, rw) tensor.
fn columns<T: Copy>(v: &[T], rw: usize, off: usize, d: usize) -> Vec<T> {
    v.chunks(rw).flat_map(|row| row[off..off + d].to_vec()).collect()
}

/// Every column outside [off, off + d) (several ranges: pass them sorted).
fn other_columns<T: Copy>(v: &[T], rw: usize, blocks: &[(usize, usize)]) -> Vec<T> {
    v.chunks(rw)
        .flat_map(|row| {
            (0..rw).filter(|c| !blocks.iter().any(|&(o, d)| (o..o + d).contains(c))).map(|c| row[c]).collect::<Vec<_>>()
        })
        .collect()
}

/// Elements of `v` outside the given ranges.
fn outside<T: Copy>(v: &[T], ranges: &[std::ops::Range<usize>]) -> Vec<T> {
    v.iter().enumerate().filter(|(i, _)| !ranges.iter().any(|r| r.contains(i))).map(|(_, &x)| x).collect()
}

fn up(ctx: &GpuContext, label: &str, v: &[f64]) -> Result<wgpu::Buffer, GpuError> {
    upload(ctx, label, &f32s(v))
}

fn read_f32(ctx: &GpuContext, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, GpuError> {
    read::<f32>(ctx, buf, 0, len)
}

fn lens_shape(lens: &[usize]) -> String {
    let min = lens.iter().copied().min().unwrap_or(0);
    format!("B={} U={} len {min}..{}", lens.len(), padded_u(lens), padded_u(lens))
}

// ---- linear.wgsl ----

/// A linear launch (input projection or dense + ReLU) on a batch of `lens`.
#[derive(Debug, Clone)]
pub struct LinearCase {
    pub lens: Vec<usize>,
    pub k: usize,
    pub o: usize,
    pub relu: bool,
    /// Element offset of y / dy in their buffers.
    pub y_off: usize,
    /// The variant asked for; each entry point falls back to Scalar where the
    /// shapes do not allow Vec4 (the rows name the kernel that ran).
    pub kernel: LinearKernel,
    pub seed: u64,
}

/// Where W and b sit in the flat parameter buffer of a linear case.
fn linear_params(c: &LinearCase) -> linear::LinearParams {
    let w_off = 64;
    let b_off = (w_off + c.o * c.k).div_ceil(64) * 64;
    linear::LinearParams::new(c.lens.len(), padded_u(&c.lens), c.k, c.o, c.relu, w_off, b_off).at(c.y_off)
}

/// The kernels a case can run: Scalar, and Vec4 where any entry point allows it.
pub fn linear_kernels(c: &LinearCase) -> Vec<LinearKernel> {
    let p = linear_params(c);
    let best =
        [LinearKernel::best_forward(&p), LinearKernel::best_backward(&p), LinearKernel::best_backward_weights(&p)];
    if best.contains(&LinearKernel::Vec4) {
        vec![LinearKernel::Scalar, LinearKernel::Vec4]
    } else {
        vec![LinearKernel::Scalar]
    }
}

fn linear_kernel_name(asked: LinearKernel, best: LinearKernel) -> &'static str {
    match (asked, best) {
        (LinearKernel::Vec4, LinearKernel::Vec4) => "vec4",
        _ => "scalar",
    }
}

/// linear_forward (y), linear_backward (dx), linear_backward_weights (dW, db
/// accumulated, the rest of the gradient buffer untouched, a rerun bitwise equal).
/// W and b sit inside a flat buffer at non-zero offsets; x and dy carry garbage at
/// padded rows.
pub fn check_linear(ctx: &GpuContext, c: &LinearCase) -> Result<Vec<CheckRow>, GpuError> {
    let (b, u, k, o) = (c.lens.len(), padded_u(&c.lens), c.k, c.o);
    let n = b * u;
    let p = linear_params(c);
    let (w_off, b_off) = (p.w_off[0] as usize, p.b_off[0] as usize);
    let mut flat = random_vec(b_off + o + 64, c.seed);
    for v in &mut flat[..w_off] {
        *v = GARBAGE; // must never be read
    }
    let mut x = random_vec(n * k, c.seed + 1);
    fill_padding(&mut x, &c.lens, u, k, GARBAGE);
    let mut dy = random_vec(n * o, c.seed + 2);
    fill_padding(&mut dy, &c.lens, u, o, -GARBAGE);
    let grads0 = f64s(&f32s(&random_vec(flat.len(), c.seed + 3)));
    let (x, flat, dy) = (f64s(&f32s(&x)), f64s(&f32s(&flat)), f64s(&f32s(&dy)));

    // CPU: relu -> dense; none -> the GRU input projection, whose backward is the
    // dense backward with every unit "active" (y = 1).
    let w = &flat[w_off..w_off + o * k];
    let bias = &flat[b_off..b_off + o];
    let want_y = if c.relu {
        cpu::dense::dense_forward(&x, w, bias, &c.lens, b, u, k, o)
    } else {
        let s = cpu::gru::GruShape { b, u, k, h: o / 3 };
        let zeros = vec![0.0; o];
        let gw = cpu::gru::GruWeights { w_ih: w, w_hh: &[], b_ih: bias, b_hh: &zeros };
        cpu::gru::gru_input_projection(&x, &gw, &c.lens, s)
    };
    let mask_y = if c.relu { want_y.clone() } else { vec![1.0; want_y.len()] };
    let mut want_dx = vec![0.0; n * k];
    let mut want_dw = grads0[w_off..w_off + o * k].to_vec();
    let mut want_db = grads0[b_off..b_off + o].to_vec();
    cpu::dense::dense_backward(&mut want_dx, &mut want_dw, &mut want_db, &dy, &x, &mask_y, w, &c.lens, b, u, k, o);

    // y and dy are one block at y_off of larger buffers whose other elements are sentinels.
    let ylen = c.y_off + n * o + 16;
    let yblock = c.y_off..c.y_off + n * o;
    let mut dy_full = vec![f64::from(SENTINEL); ylen];
    dy_full[yblock.clone()].copy_from_slice(&dy);
    let xb = up(ctx, "x", &x)?;
    let flatb = up(ctx, "params", &flat)?;
    let len = upload(ctx, "len", &u32s(&c.lens))?;
    let dyb = up(ctx, "dy", &dy_full)?;
    let grads = up(ctx, "grads", &grads0)?;
    let yb = upload(ctx, "y", &vec![SENTINEL; ylen])?;
    let dx = upload(ctx, "dx", &vec![SENTINEL; n * k])?;
    let ybind = if c.relu { &yb } else { &dyb }; // y is read only for the ReLU mask
    let fwd = linear::linear_forward_variant(ctx, &yb, &ctx.dummy, &xb, &flatb, &len, p, c.kernel)?;
    let bwd = linear::linear_backward_variant(ctx, &dx, &dyb, ybind, &flatb, &len, p, c.kernel)?;
    let bww = linear::linear_backward_weights_variant(ctx, &grads, &dyb, ybind, &xb, &len, p, c.kernel)?;
    run(ctx, &[&fwd, &bwd, &bww])?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dx, n * k)?;
    let got_g = read_f32(ctx, &grads, grads0.len())?;
    // The same weight gradient again from the same start: bitwise equal (no atomics).
    ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&f32s(&grads0)));
    run(ctx, &[&bww])?;
    let again = read_f32(ctx, &grads, grads0.len())?;

    let what = if c.relu { "dense+ReLU" } else { "input projection" };
    let kf = linear_kernel_name(c.kernel, LinearKernel::best_forward(&p));
    let kb = linear_kernel_name(c.kernel, LinearKernel::best_backward(&p));
    let kw = linear_kernel_name(c.kernel, LinearKernel::best_backward_weights(&p));
    let shape = format!(
        "{} K={k} O={o}{}",
        lens_shape(&c.lens),
        if c.y_off > 0 { format!(" y_off={}", c.y_off) } else { String::new() }
    );
    let (wr, br) = (w_off..w_off + o * k, b_off..b_off + o);
    Ok(vec![
        CheckRow::new(
            format!("linear_forward [{kf}] ({what})"),
            shape.clone(),
            vec![
                // Padded rows are written as zero: compare the whole block.
                compare("y", &got_y[yblock.clone()], &want_y, MATMUL_TOL),
                compare_exact(
                    "y buffer outside the block",
                    &outside(&got_y, std::slice::from_ref(&yblock)),
                    &vec![SENTINEL; ylen - n * o],
                ),
            ],
        ),
        CheckRow::new(
            format!("linear_backward [{kb}] ({what})"),
            shape.clone(),
            vec![compare("dx", &got_dx, &want_dx, MATMUL_TOL)],
        ),
        CheckRow::new(
            format!("linear_backward_weights [{kw}] ({what})"),
            shape,
            vec![
                compare("dW", &got_g[wr.clone()], &want_dw, WGRAD_TOL),
                compare("db", &got_g[br.clone()], &want_db, WGRAD_TOL),
                compare_exact(
                    "grads outside dW, db",
                    &outside(&got_g, &[wr.clone(), br.clone()]),
                    &f32s(&outside(&grads0, &[wr, br])),
                ),
                compare_exact("dW, db of a rerun (determinism)", &again, &got_g),
            ],
        ),
    ])
}

// ---- dropout.wgsl ----

/// `n` elements of one dropout stream, x / dx at `x_off` and y / dy at `y_off` of
/// larger buffers.
#[derive(Debug, Clone)]
pub struct DropoutCase {
    pub n: usize,
    pub seed: u32,
    pub stream: u32,
    pub p: f64,
    pub x_off: usize,
    pub y_off: usize,
}

/// dropout_forward (the mask, bit-exact with cpu::dropout, and y = x * mask) and
/// dropout_backward (dx = dy * mask), buffers outside the blocks untouched.
pub fn check_dropout(ctx: &GpuContext, c: &DropoutCase) -> Result<Vec<CheckRow>, GpuError> {
    let n = c.n;
    let mask32 = f32s(&cpu::dropout::dropout_mask(c.seed, c.stream, n, c.p));
    let x = f32s(&random_vec(n, u64::from(c.seed) + 1));
    let dy = f32s(&random_vec(n, u64::from(c.seed) + 2));
    let (xlen, ylen) = (c.x_off + n + 5, c.y_off + n + 5);
    let (xr, yr) = (c.x_off..c.x_off + n, c.y_off..c.y_off + n);
    let place = |v: &[f32], len: usize, r: &std::ops::Range<usize>| {
        let mut full = vec![SENTINEL; len];
        full[r.clone()].copy_from_slice(v);
        full
    };
    let ones = upload(ctx, "ones", &vec![1.0f32; n])?;
    let maskb = storage::<f32>(ctx, "mask", n)?;
    let xb = upload(ctx, "x", &place(&x, xlen, &xr))?;
    let yb = upload(ctx, "y", &vec![SENTINEL; ylen])?;
    let dyb = upload(ctx, "dy", &place(&dy, ylen, &yr))?;
    let dxb = upload(ctx, "dx", &vec![SENTINEL; xlen])?;
    let p = dropout::DropoutParams::new(n, c.seed, c.stream, c.p);
    let mask = dropout::dropout_forward(ctx, &maskb, &ones, p)?;
    let fwd = dropout::dropout_forward(ctx, &yb, &xb, p.at(c.x_off, c.y_off))?;
    let bwd = dropout::dropout_backward(ctx, &dxb, &dyb, p.at(c.x_off, c.y_off))?;
    run(ctx, &[&mask, &fwd, &bwd])?;
    let got_mask = read_f32(ctx, &maskb, n)?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dxb, xlen)?;
    // y = x * mask in f32, exactly as the CPU computes it in f32.
    let times = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mask32).map(|(a, m)| a * m).collect() };
    let shape = format!("n={n} p={} x_off={} y_off={}", c.p, c.x_off, c.y_off);
    Ok(vec![
        CheckRow::new(
            "dropout_forward",
            shape.clone(),
            vec![
                compare_exact("mask", &got_mask, &mask32),
                compare_exact("y", &got_y[yr.clone()], &times(&x)),
                compare_exact("y buffer outside the block", &outside(&got_y, &[yr]), &vec![SENTINEL; ylen - n]),
            ],
        ),
        CheckRow::new(
            "dropout_backward",
            shape,
            vec![
                compare_exact("dx", &got_dx[xr.clone()], &times(&dy)),
                compare_exact("dx buffer outside the block", &outside(&got_dx, &[xr]), &vec![SENTINEL; xlen - n]),
            ],
        ),
    ])
}

// ---- gather.wgsl ----

/// A dataset of videos with `lengths`, feature widths `dims` (plus the 7 label
/// columns), gathered into a batch of the videos `index` (repeats allowed).
#[derive(Debug, Clone)]
pub struct GatherCase {
    pub lengths: Vec<usize>,
    pub dims: Vec<usize>,
    pub index: Vec<usize>,
    pub seed: u64,
}

/// gather_forward (the labels, every feature tensor and the lengths in one launch,
/// exact, the output outside the tensors' blocks untouched) and
/// scatter_rows (a (B, U, 9) batch with garbage at padding scattered back into a
/// split-wide buffer, over the distinct videos of `index`, exact).
pub fn check_gather(ctx: &GpuContext, c: &GatherCase) -> Result<Vec<CheckRow>, GpuError> {
    let lengths = &c.lengths;
    let n_utt: usize = lengths.iter().sum();
    let starts: Vec<usize> = lengths
        .iter()
        .scan(0, |s, &l| {
            let start = *s;
            *s += l;
            Some(start)
        })
        .collect();
    // Widths: each modality's features, then the labels.
    let widths: Vec<usize> = c.dims.iter().copied().chain([gather::LABEL_WIDTH]).collect();
    let srcs: Vec<Vec<f32>> =
        widths.iter().enumerate().map(|(m, &d)| f32s(&random_vec(n_utt * d, c.seed + m as u64))).collect();
    let nf = c.dims.len().min(3);
    let mut feats: [Option<&[f32]>; 3] = [None; 3];
    let mut dims3 = [0usize; 3];
    for m in 0..nf {
        feats[m] = Some(&srcs[m]);
        dims3[m] = c.dims[m];
    }
    let data = gather::GpuDataset::upload(ctx, feats, dims3, &srcs[srcs.len() - 1], lengths)?;

    // gather_forward: labels (writing the lengths) and every feature tensor in one
    // launch, from the split's one buffer into blocks of one output buffer at
    // unaligned offsets, with a sentinel element between blocks.
    let index = &c.index;
    let (b, u) = (index.len(), index.iter().map(|&v| lengths[v]).max().unwrap_or(0));
    let idx = upload(ctx, "index", &u32s(index))?;
    let out_len = upload(ctx, "len", &vec![999u32; b])?;
    let mut p = gather::GatherParams::new(b, u, true);
    let mut blocks = Vec::new();
    let mut at = 3;
    for m in std::iter::once(srcs.len() - 1).chain(0..nf) {
        let src_off = if m < nf { data.features_off[m] } else { Some(data.labels_off) };
        let Some(src_off) = src_off else { continue };
        let d = widths[m];
        p = p.tensor(d, src_off, at);
        blocks.push((at..at + b * u * d, m));
        at += b * u * d + 1;
    }
    let out = upload(ctx, "gathered", &vec![SENTINEL; at])?;
    let launch = gather::gather_forward(ctx, &out, &out_len, &data, &idx, p)?;
    let dispatches = run(ctx, &[&launch])?;
    let got = read_f32(ctx, &out, at)?;
    let mut gathered = Vec::new();
    for (r, m) in &blocks {
        let d = widths[*m];
        let mut want = vec![0.0f32; b * u * d];
        for (bi, &v) in index.iter().enumerate() {
            let rows = (starts[v] * d)..((starts[v] + lengths[v]) * d);
            want[bi * u * d..(bi * u + lengths[v]) * d].copy_from_slice(&srcs[*m][rows]);
        }
        let name = if *m < nf { format!("features {m} (D={d})") } else { "labels".to_string() };
        gathered.push(compare_exact(&name, &got[r.clone()], &want));
    }
    let ranges: Vec<std::ops::Range<usize>> = blocks.iter().map(|(r, _)| r.clone()).collect();
    let rest = outside(&got, &ranges);
    gathered.push(compare_exact("output outside the blocks", &rest, &vec![SENTINEL; rest.len()]));
    gathered.push(compare_exact("dispatches", &[dispatches as f32], &[1.0]));
    let want_len: Vec<f32> = index.iter().map(|&v| lengths[v] as f32).collect();
    let got_len: Vec<f32> = read::<u32>(ctx, &out_len, 0, b)?.iter().map(|&l| l as f32).collect();
    gathered.push(compare_exact("lengths", &got_len, &want_len));

    // scatter_rows over the distinct videos (a repeated video would be a write race).
    let mut distinct: Vec<usize> = Vec::new();
    for &v in index {
        if !distinct.contains(&v) {
            distinct.push(v);
        }
    }
    let (sb, su, d) = (distinct.len(), distinct.iter().map(|&v| lengths[v]).max().unwrap_or(0), heads::CLASSES);
    let slens: Vec<usize> = distinct.iter().map(|&v| lengths[v]).collect();
    let mut src = random_vec(sb * su * d, c.seed + 100);
    fill_padding(&mut src, &slens, su, d, GARBAGE);
    let src = f32s(&src);
    let srcb = upload(ctx, "batch rows", &src)?;
    let dst = upload(ctx, "split rows", &vec![SENTINEL; n_utt * d])?;
    let sidx = upload(ctx, "index", &u32s(&distinct))?;
    let p = gather::GatherParams::new(sb, su, false).tensor(d, 0, 0);
    let scatter = gather::scatter_rows(ctx, &dst, &srcb, &data, &sidx, p)?;
    run(ctx, &[&scatter])?;
    let mut want = vec![SENTINEL; n_utt * d];
    for (bi, &v) in distinct.iter().enumerate() {
        want[starts[v] * d..(starts[v] + lengths[v]) * d]
            .copy_from_slice(&src[bi * su * d..(bi * su + lengths[v]) * d]);
    }
    let got = read_f32(ctx, &dst, n_utt * d)?;
    Ok(vec![
        CheckRow::new("gather_forward", format!("N_utt={n_utt} B={b} U={u} D={:?}+7", c.dims), gathered),
        CheckRow::new(
            "scatter_rows",
            format!("N_utt={n_utt} B={sb} U={su} D={d}"),
            vec![compare_exact("split rows", &got, &want)],
        ),
    ])
}

// ---- gru.wgsl ----

/// A bi-GRU launch over the modalities with a non-zero width in `dims` (T, A, V).
#[derive(Debug, Clone)]
pub struct GruCase {
    pub lens: Vec<usize>,
    pub dims: [usize; 3],
    pub h: usize,
    pub seed: u64,
}

/// The model configuration (Attention::None, the case's modalities and H) and
/// its modalities in launch order.
fn gru_config(c: &GruCase) -> Result<(ModelConfig, Vec<Modality>), GpuError> {
    let set = ModalitySet::ALL
        .into_iter()
        .find(|s| Modality::ALL.iter().all(|&m| s.contains(m) == (c.dims[m.index()] > 0)))
        .ok_or_else(|| GpuError::Validation(format!("check: GRU case with no modality (dims {:?})", c.dims)))?;
    let mut cfg = ModelConfig::new(set, Attention::None, Tasks::Mtl, c.dims);
    cfg.hidden = c.h;
    let mods = cfg.modalities.modalities();
    Ok((cfg, mods))
}

/// The kernels a case can run: Scalar, and Vec4 and Wide where H and the offsets allow them.
pub fn gru_kernels(c: &GruCase) -> Result<Vec<GruKernel>, GpuError> {
    let (cfg, mods) = gru_config(c)?;
    let params = GruParams::new(&Layout::new(&cfg), &mods, c.lens.len(), padded_u(&c.lens), c.h).map_err(gru_err)?;
    Ok(match GruKernel::best(&params) {
        GruKernel::Wide | GruKernel::Vec4 => vec![GruKernel::Scalar, GruKernel::Vec4, GruKernel::Wide],
        GruKernel::Scalar => vec![GruKernel::Scalar],
    })
}

fn gru_err(e: GruError) -> GpuError {
    match e {
        GruError::Gpu(g) => g,
        other => GpuError::Validation(format!("check: {other}")),
    }
}

/// The GRU of every modality of `c` (both directions, one launch) against
/// cpu::gru: gru_forward (h, r, z, n, hn of every problem and the bi-GRU output),
/// gru_backward (gi, zero at padding, completed on the CPU into dx, dW_ih and
/// db_ih, which the reference computes directly) and gru_backward_weights
/// (dW_hh, db_hh accumulated onto non-zero gradients; nothing else touched).
/// Every GPU output buffer starts as NaN, so an element never written fails.
/// `kernel` is the variant asked for (Scalar where the shapes do not allow Vec4;
/// the rows name the kernel that ran).
pub fn check_gru(
    ctx: &GpuContext,
    c: &GruCase,
    schedule: GruSchedule,
    kernel: GruKernel,
) -> Result<Vec<CheckRow>, GpuError> {
    let (cfg, mods) = gru_config(c)?;
    let mut store = ParamStore::init(&cfg, c.seed);
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    for s in store.layout.slices.clone() {
        if s.name.contains("bias") {
            for v in store.get_mut(&s.name) {
                *v = rng.gen_range(-0.5..0.5);
            }
        }
    }
    let layout: &Layout = &store.layout;
    let wv = store.to_f64();
    let (b, u, h) = (c.lens.len(), padded_u(&c.lens), c.h);
    let params = GruParams::new(layout, &mods, b, u, h).map_err(gru_err)?;
    let gru_slice =
        |m: Modality, t: &str, dir: &str| layout.get(&format!("{}.gru.{t}{dir}", m.name())).map(|s| s.range());
    let missing = |n: &str| GpuError::Validation(format!("check: layout has no {n}"));

    // CPU: forward, a random output gradient (also at padding, which must be
    // ignored), backward into zeroed gradients.
    let mut xs = Vec::new();
    let mut caches: Vec<cpu::gru::GruCache> = Vec::new();
    let mut out_want = Vec::new();
    let mut dout = Vec::new();
    let mut grads_want = vec![0.0; layout.len];
    let mut dx_want = Vec::new();
    const TENSORS: [&str; 4] = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"];
    for m in &mods {
        let k = cfg.dim(*m);
        let s = cpu::gru::GruShape { b, u, k, h };
        let mut x: Vec<f64> = (0..b * u * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        fill_padding(&mut x, &c.lens, u, k, GARBAGE);
        let mut ranges = Vec::new();
        for dir in ["", "_reverse"] {
            let r: Vec<_> =
                TENSORS.iter().map(|t| gru_slice(*m, t, dir).ok_or_else(|| missing(t))).collect::<Result<_, _>>()?;
            ranges.push(r);
        }
        let weights = |d: usize| cpu::gru::GruWeights {
            w_ih: &wv[ranges[d][0].clone()],
            w_hh: &wv[ranges[d][1].clone()],
            b_ih: &wv[ranges[d][2].clone()],
            b_hh: &wv[ranges[d][3].clone()],
        };
        let fwd = cpu::gru::gru_forward(&x, &weights(0), &c.lens, s, false);
        let rev = cpu::gru::gru_forward(&x, &weights(1), &c.lens, s, true);
        out_want.extend(cpu::gru::bigru_concat(&fwd.h, &rev.h, s));
        let dm: Vec<f64> = (0..b * u * 2 * h).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (dfwd, drev) = cpu::gru::bigru_split(&dm, s);
        let mut dx = vec![0.0; b * u * k];
        for (d, cache, dh) in [(0, &fwd, &dfwd), (1, &rev, &drev)] {
            let mut gw: Vec<Vec<f64>> = ranges[d].iter().map(|r| vec![0.0; r.len()]).collect();
            if let [w_ih, w_hh, b_ih, b_hh] = &mut gw[..] {
                let mut grads = cpu::gru::GruGrads { w_ih, w_hh, b_ih, b_hh };
                cpu::gru::gru_backward(&mut dx, &mut grads, dh, &x, &weights(d), cache, &c.lens, s, d == 1);
            }
            for (r, v) in ranges[d].iter().zip(&gw) {
                grads_want[r.clone()].copy_from_slice(v);
            }
        }
        xs.push(x);
        caches.push(fwd);
        caches.push(rev);
        dout.extend(dm);
        dx_want.push(dx);
    }

    // GPU.
    let nans = |label: &str, bytes: u64| upload(ctx, label, &vec![f32::NAN; (bytes / 4) as usize]);
    let xp: Vec<f64> = caches.iter().flat_map(|c| c.xp.iter().copied()).collect();
    let lens_buf = upload(ctx, "lens", &u32s(&c.lens))?;
    let weights_buf = upload(ctx, "weights", &store.values)?;
    let xp_buf = up(ctx, "xp", &xp)?;
    let cache_buf = nans("cache", params.cache_bytes())?;
    let out_buf = nans("out", params.out_bytes())?;
    let dout_buf = up(ctx, "dout", &dout)?;
    let gi_buf = nans("gi", params.gates_bytes())?;
    let gh_buf = nans("gh", params.gates_bytes())?;
    let carry_buf = nans("carry", params.carry_bytes())?;
    // Gradients start non-zero to check that dW_hh / db_hh accumulate.
    let grads0: Vec<f64> = f64s(&f32s(&(0..layout.len).map(|_| rng.gen_range(-0.1..0.1)).collect::<Vec<f64>>()));
    let grads_buf = up(ctx, "grads", &grads0)?;
    let fwd = gru::gru_forward_variant(
        ctx,
        &out_buf,
        &cache_buf,
        &xp_buf,
        &weights_buf,
        &lens_buf,
        &params,
        schedule,
        kernel,
    )
    .map_err(gru_err)?;
    let bwd = gru::gru_backward_variant(
        ctx,
        &gi_buf,
        &gh_buf,
        &carry_buf,
        &grads_buf,
        &dout_buf,
        &cache_buf,
        &weights_buf,
        &lens_buf,
        &params,
        schedule,
        kernel,
    )
    .map_err(gru_err)?;
    run(ctx, &[&fwd, &bwd])?;

    // The launchers fall back to scalar where the shapes do not allow the others.
    let ran = match (kernel, GruKernel::best(&params)) {
        (_, GruKernel::Scalar) | (GruKernel::Scalar, _) => "scalar",
        (GruKernel::Vec4, _) => "vec4",
        (GruKernel::Wide, _) => "wide",
    };
    let sched = match schedule {
        GruSchedule::Persistent => format!("{ran}, persistent"),
        GruSchedule::PerStep => format!("{ran}, per-step"),
    };
    let names: Vec<&str> = mods.iter().map(|m| m.name()).collect();
    let shape = format!(
        "{} H={h} K={:?} ({})",
        lens_shape(&c.lens),
        mods.iter().map(|m| cfg.dim(*m)).collect::<Vec<_>>(),
        names.join("+")
    );

    // Forward: each saved tensor of each problem, and the bi-GRU output.
    let cache_got = read_f32(ctx, &cache_buf, (params.cache_bytes() / 4) as usize)?;
    let plane = b * u * h;
    let mut forward = Vec::new();
    for (p, cache) in caches.iter().enumerate() {
        let dir = ["fwd", "rev"][p % 2];
        for (k, (t, want)) in [("h", &cache.h), ("r", &cache.r), ("z", &cache.z), ("n", &cache.n), ("hn", &cache.hn)]
            .into_iter()
            .enumerate()
        {
            let off = (p * 5 + k) * plane;
            forward.push(compare(
                &format!("{} {dir} {t}", names[p / 2]),
                &cache_got[off..off + plane],
                want,
                GRU_FWD_TOL,
            ));
        }
    }
    forward.push(compare("out", &read_f32(ctx, &out_buf, (params.out_bytes() / 4) as usize)?, &out_want, GRU_FWD_TOL));

    // Backward: gi is zero at padding; completed on the CPU (in f64) into the
    // input-side gradients.
    let gi = read_f32(ctx, &gi_buf, (params.gates_bytes() / 4) as usize)?;
    let g3 = 3 * h;
    let mut backward = Vec::new();
    let mut gi_pad = Vec::new();
    for p in 0..2 * mods.len() {
        gi_pad.extend(outside(&gi[p * b * u * g3..(p + 1) * b * u * g3], &real_ranges(&c.lens, u, g3)));
    }
    backward.push(compare_exact("gi at padding", &gi_pad, &vec![0.0; gi_pad.len()]));
    for (mi, m) in mods.iter().enumerate() {
        let k = cfg.dim(*m);
        let mut dx = vec![0.0; b * u * k];
        for d in 0..2 {
            let dir = ["", "_reverse"][d];
            let p = 2 * mi + d;
            let w_ih = &wv[gru_slice(*m, "weight_ih_l0", dir).ok_or_else(|| missing("weight_ih_l0"))?];
            let mut dw = vec![0.0; g3 * k];
            let mut db = vec![0.0; g3];
            for (t, x) in xs[mi].chunks(k).enumerate() {
                let gr = &gi[(p * b * u + t) * g3..][..g3];
                for row in 0..g3 {
                    let gv = f64::from(gr[row]);
                    db[row] += gv;
                    for col in 0..k {
                        dw[row * k + col] += gv * x[col];
                        dx[t * k + col] += gv * w_ih[row * k + col];
                    }
                }
            }
            for (t, v) in [("weight_ih_l0", dw), ("bias_ih_l0", db)] {
                let r = gru_slice(*m, t, dir).ok_or_else(|| missing(t))?;
                backward.push(compare(
                    &format!("d {}.gru.{t}{dir} (from gi)", m.name()),
                    &f32s(&v),
                    &grads_want[r],
                    GRU_BWD_TOL,
                ));
            }
        }
        backward.push(compare(&format!("d {} x (from gi)", m.name()), &f32s(&dx), &dx_want[mi], GRU_BWD_TOL));
    }

    // gru_backward_weights added dW_hh / db_hh to grads0 and nothing else.
    let grads_got = read_f32(ctx, &grads_buf, layout.len)?;
    let mut weights = Vec::new();
    let mut hh = Vec::new();
    for s in layout.slices.iter().filter(|s| s.name.contains(".gru.") && s.name.contains("_hh")) {
        let got: Vec<f32> = s.range().map(|i| (f64::from(grads_got[i]) - grads0[i]) as f32).collect();
        weights.push(compare(&format!("d {}", s.name), &got, &grads_want[s.range()], GRU_BWD_TOL));
        hh.push(s.range());
    }
    weights.push(compare_exact("grads outside dW_hh, db_hh", &outside(&grads_got, &hh), &f32s(&outside(&grads0, &hh))));

    Ok(vec![
        CheckRow::new(format!("gru_forward [{sched}]"), shape.clone(), forward),
        CheckRow::new(format!("gru_backward [{sched}] (gi -> dx, dW_ih, db_ih)"), shape.clone(), backward),
        CheckRow::new(format!("gru_backward_weights [{sched}] (dW_hh, db_hh)"), shape, weights),
    ])
}

/// Element ranges of the real rows of a (B, U, W) tensor.
fn real_ranges(lens: &[usize], u: usize, w: usize) -> Vec<std::ops::Range<usize>> {
    lens.iter().enumerate().map(|(b, &l)| b * u * w..(b * u + l) * w).collect()
}

// ---- attention.wgsl ----

/// The fused CIM unit [att(X, Y), att(Y, X)] (`pair`) or self-attention att(X, X),
/// writing slices of an R of width 9D.
#[derive(Debug, Clone)]
pub struct AttentionCase {
    pub lens: Vec<usize>,
    pub d: usize,
    pub pair: bool,
    pub seed: u64,
}

/// attention_forward (the R slices, the other columns of R untouched, the saved N
/// and O of each direction) and attention_backward (dX, dY accumulated onto
/// non-zero values; self-attention leaves dY alone). X and Y carry garbage at
/// padded rows.
pub fn check_attention(ctx: &GpuContext, c: &AttentionCase) -> Result<Vec<CheckRow>, GpuError> {
    use attention::{attention_backward, attention_forward, AttentionParams, AttentionSaved};
    let (lens, d, pair) = (&c.lens, c.d, c.pair);
    let (b, u) = (lens.len(), padded_u(lens));
    let rw = 9 * d;
    let (r_xy, r_yx) = (2 * d, 5 * d);
    let mut x = random_vec(b * u * d, c.seed);
    fill_padding(&mut x, lens, u, d, GARBAGE);
    let y = if pair {
        let mut y = random_vec(b * u * d, c.seed + 1);
        fill_padding(&mut y, lens, u, d, -GARBAGE);
        y
    } else {
        x.clone()
    };
    let (x, y) = (f64s(&f32s(&x)), f64s(&f32s(&y)));
    let dr = f64s(&f32s(&random_vec(b * u * rw, c.seed + 2)));
    let r0 = f32s(&random_vec(b * u * rw, c.seed + 3));
    let dx0 = f64s(&f32s(&random_vec(b * u * d, c.seed + 4)));
    let dy0 = f64s(&f32s(&random_vec(b * u * d, c.seed + 5)));

    let (out_xy, cache_xy) = cpu::attention::attention_forward(&x, &y, lens, b, u, d);
    let mut want_dx = dx0.clone();
    let mut want_dy = dy0.clone();
    let mut outs = vec![(out_xy, r_xy)];
    let mut caches = vec![cache_xy.clone()];
    if pair {
        let (out_yx, cache_yx) = cpu::attention::attention_forward(&y, &x, lens, b, u, d);
        cpu::attention::attention_backward(
            &mut want_dx,
            &mut want_dy,
            &columns(&dr, rw, r_xy, d),
            &x,
            &y,
            &cache_xy,
            lens,
            b,
            u,
            d,
        );
        cpu::attention::attention_backward(
            &mut want_dy,
            &mut want_dx,
            &columns(&dr, rw, r_yx, d),
            &y,
            &x,
            &cache_yx,
            lens,
            b,
            u,
            d,
        );
        outs.push((out_yx, r_yx));
        caches.push(cache_yx);
    } else {
        let mut other = vec![0.0; b * u * d];
        cpu::attention::attention_backward(
            &mut want_dx,
            &mut other,
            &columns(&dr, rw, r_xy, d),
            &x,
            &x,
            &cache_xy,
            lens,
            b,
            u,
            d,
        );
        for (a, o) in want_dx.iter_mut().zip(&other) {
            *a += o;
        }
    }

    let dirs = outs.len();
    let xb = up(ctx, "X", &x)?;
    let yb = up(ctx, "Y", &y)?;
    let len = upload(ctx, "len", &u32s(lens))?;
    let r = upload(ctx, "R", &r0)?;
    let drb = up(ctx, "dR", &dr)?;
    let dxb = up(ctx, "dX", &dx0)?;
    let dyb = up(ctx, "dY", &dy0)?;
    let m = storage::<f32>(ctx, "M", b * u * u)?;
    let n = storage::<f32>(ctx, "N", 2 * b * u * u)?;
    let o = storage::<f32>(ctx, "O", 2 * b * u * d)?;
    let dm = storage::<f32>(ctx, "dM", 2 * b * u * u)?;
    let saved = AttentionSaved { m: &m, n: &n, o: &o };
    let p = AttentionParams::new(b, u, d, rw, r_xy, pair.then_some(r_yx));
    let ybind = if pair { &yb } else { &xb };
    let fwd = attention_forward(ctx, &r, &saved, &xb, ybind, &len, p)?;
    let bwd = attention_backward(ctx, &dxb, pair.then_some(&dyb), &dm, &drb, &saved, &xb, ybind, &len, p)?;
    run(ctx, &[&fwd, &bwd])?;

    let got_r = read_f32(ctx, &r, b * u * rw)?;
    let got_n = read_f32(ctx, &n, dirs * b * u * u)?;
    let got_o = read_f32(ctx, &o, dirs * b * u * d)?;
    let mut forward = Vec::new();
    let dir_names = ["att(X,Y)", "att(Y,X)"];
    for (k, ((out, off), cache)) in outs.iter().zip(&caches).enumerate() {
        let name = if pair { dir_names[k] } else { "att(X,X)" };
        forward.push(compare(&format!("R {name}"), &columns(&got_r, rw, *off, d), out, ATTENTION_TOL));
        forward.push(compare(
            &format!("N {name}"),
            &got_n[k * b * u * u..(k + 1) * b * u * u],
            &cache.n,
            ATTENTION_TOL,
        ));
        forward.push(compare(
            &format!("O {name}"),
            &got_o[k * b * u * d..(k + 1) * b * u * d],
            &cache.o,
            ATTENTION_TOL,
        ));
    }
    let blocks: Vec<(usize, usize)> = outs.iter().map(|(_, off)| (*off, d)).collect();
    forward.push(compare_exact(
        "R outside the attention blocks",
        &other_columns(&got_r, rw, &blocks),
        &other_columns(&r0, rw, &blocks),
    ));
    let mut backward = vec![compare("dX", &read_f32(ctx, &dxb, b * u * d)?, &want_dx, ATTENTION_TOL)];
    let got_dy = read_f32(ctx, &dyb, b * u * d)?;
    backward.push(if pair {
        compare("dY", &got_dy, &want_dy, ATTENTION_TOL)
    } else {
        compare_exact("dY (untouched by self-attention)", &got_dy, &f32s(&dy0))
    });
    let kind = if pair { "pair" } else { "self" };
    let shape = format!("{} D={d} R={rw}", lens_shape(lens));
    Ok(vec![
        CheckRow::new(format!("attention_forward ({kind})"), shape.clone(), forward),
        CheckRow::new(format!("attention_backward ({kind})"), shape, backward),
    ])
}

// ---- linear.wgsl, fused (the dense site of a training step) ----

/// Two dense problems (K -> O, ReLU) in one launch (grid z), each with its own W, b
/// and x / y blocks, with the step's dropout masks and the forward's copy into R.
#[derive(Debug, Clone)]
pub struct FusedLinearCase {
    pub lens: Vec<usize>,
    pub k: usize,
    pub o: usize,
    pub seed: u64,
}

/// The fused launches of the dense site: linear_forward_repr (per problem
/// y = dropout(relu(x W^T + b)), also written into its column block of R, every
/// other column of R untouched), linear_backward (g = dy * scale where y > 0, dx through the
/// GRU-site mask) and linear_backward_weights (dW, db accumulated), one dispatch
/// each for both problems. Reference: cpu::dense with cpu::dropout's masks, as
/// cpu::model chains them; R's blocks and the masks are exact.
pub fn check_linear_fused(ctx: &GpuContext, c: &FusedLinearCase) -> Result<Vec<CheckRow>, GpuError> {
    let (b, u, k, o) = (c.lens.len(), padded_u(&c.lens), c.k, c.o);
    let lens = &c.lens;
    let n = b * u;
    let (step_seed, p_drop) = (977u32.wrapping_add(c.seed as u32), 0.3);
    let (fwd_streams, bwd_streams) = ([1u32, 5, 0, 0], [0u32, 4, 0, 0]);
    let rw = 3 * o + 1;
    let r_off = [o + 1, 2 * o + 1];
    // Problem z: W at w_off[z], b at b_off[z]; x / dx at x_off[z], y / dy at y_off[z].
    let w_off = [64, 64 + (o * k + o).div_ceil(64) * 64];
    let b_off = [w_off[0] + o * k, w_off[1] + o * k];
    let x_off = [4, 8 + (n * k).div_ceil(4) * 4];
    let y_off = [0, (n * o).div_ceil(4) * 4];
    let (xlen, ylen) = (x_off[1] + n * k + 4, y_off[1] + n * o + 4);
    let mut flat = random_vec(b_off[1] + o + 64, c.seed);
    for v in &mut flat[..w_off[0]] {
        *v = GARBAGE; // must never be read
    }
    let mut x = random_vec(xlen, c.seed + 1);
    let mut dy = random_vec(ylen, c.seed + 2);
    for z in 0..2 {
        fill_padding(&mut x[x_off[z]..x_off[z] + n * k], lens, u, k, GARBAGE);
        fill_padding(&mut dy[y_off[z]..y_off[z] + n * o], lens, u, o, -GARBAGE);
    }
    let grads0 = f64s(&f32s(&random_vec(flat.len(), c.seed + 3)));
    let (x, flat, dy) = (f64s(&f32s(&x)), f64s(&f32s(&flat)), f64s(&f32s(&dy)));

    let xb = up(ctx, "x", &x)?;
    let fb = up(ctx, "params", &flat)?;
    let len = upload(ctx, "len", &u32s(lens))?;
    let dyb = up(ctx, "dy", &dy)?;
    let grads = up(ctx, "grads", &grads0)?;
    let yb = upload(ctx, "y", &vec![SENTINEL; ylen])?;
    let dxb = upload(ctx, "dx", &vec![SENTINEL; xlen])?;
    let rb = upload(ctx, "R", &vec![SENTINEL; n * rw])?;
    let mut p = linear::LinearParams::new(b, u, k, o, true, 0, 0);
    for z in 0..2 {
        p = p.problem(z, w_off[z], b_off[z], x_off[z], y_off[z]);
    }
    let pf = p.dropout(step_seed, p_drop, fwd_streams).repr(rw, [r_off[0], r_off[1], 0, 0]);
    let pb = p.dropout(step_seed, p_drop, bwd_streams);
    let fwd = linear::linear_forward_repr(ctx, &yb, &rb, &xb, &fb, &len, pf)?;
    let bwd = linear::linear_backward(ctx, &dxb, &dyb, &yb, &fb, &len, pb)?;
    let bww = linear::linear_backward_weights(ctx, &grads, &dyb, &yb, &xb, &len, pb)?;
    let dispatches = run(ctx, &[&fwd, &bwd, &bww])?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dxb, xlen)?;
    let got_g = read_f32(ctx, &grads, grads0.len())?;
    let got_r = read_f32(ctx, &rb, n * rw)?;

    let (mut forward, mut backward, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    let (mut yr, mut xr, mut gr) = (Vec::new(), Vec::new(), Vec::new());
    for z in 0..2 {
        let w = &flat[w_off[z]..w_off[z] + o * k];
        let bias = &flat[b_off[z]..b_off[z] + o];
        let xz = &x[x_off[z]..x_off[z] + n * k];
        let relu = cpu::dense::dense_forward(xz, w, bias, lens, b, u, k, o);
        let mask_d = cpu::dropout::dropout_mask(step_seed, fwd_streams[z], n * o, p_drop);
        let mask_g = cpu::dropout::dropout_mask(step_seed, bwd_streams[z], n * k, p_drop);
        let want_y = cpu::dropout::dropout_forward(&relu, &mask_d);
        let mut ddense = vec![0.0; n * o];
        cpu::dropout::dropout_backward(&mut ddense, &dy[y_off[z]..y_off[z] + n * o], &mask_d);
        let mut ddin = vec![0.0; n * k];
        let mut want_dw = grads0[w_off[z]..w_off[z] + o * k].to_vec();
        let mut want_db = grads0[b_off[z]..b_off[z] + o].to_vec();
        cpu::dense::dense_backward(&mut ddin, &mut want_dw, &mut want_db, &ddense, xz, &relu, w, lens, b, u, k, o);
        let mut want_dx = vec![0.0; n * k];
        cpu::dropout::dropout_backward(&mut want_dx, &ddin, &mask_g);
        let (ys, xs) = (y_off[z]..y_off[z] + n * o, x_off[z]..x_off[z] + n * k);
        // Padded rows are written as zero: compare whole blocks.
        forward.push(compare(&format!("y[{z}]"), &got_y[ys.clone()], &want_y, MATMUL_TOL));
        forward.push(compare_exact(
            &format!("R block {z} = y[{z}]"),
            &columns(&got_r, rw, r_off[z], o),
            &got_y[ys.clone()],
        ));
        backward.push(compare(&format!("dx[{z}]"), &got_dx[xs.clone()], &want_dx, MATMUL_TOL));
        let (wr, br) = (w_off[z]..w_off[z] + o * k, b_off[z]..b_off[z] + o);
        weights.push(compare(&format!("dW[{z}]"), &got_g[wr.clone()], &want_dw, WGRAD_TOL));
        weights.push(compare(&format!("db[{z}]"), &got_g[br.clone()], &want_db, WGRAD_TOL));
        yr.push(ys);
        xr.push(xs);
        gr.extend([wr, br]);
    }
    let sentinels = |v: &[f32]| vec![SENTINEL; v.len()];
    let rest_y = outside(&got_y, &yr);
    forward.push(compare_exact("y buffer outside the blocks", &rest_y, &sentinels(&rest_y)));
    let rest_r = other_columns(&got_r, rw, &[(r_off[0], o), (r_off[1], o)]);
    forward.push(compare_exact("R outside the blocks", &rest_r, &sentinels(&rest_r)));
    let rest_dx = outside(&got_dx, &xr);
    backward.push(compare_exact("dx buffer outside the blocks", &rest_dx, &sentinels(&rest_dx)));
    weights.push(compare_exact("grads outside dW, db", &outside(&got_g, &gr), &f32s(&outside(&grads0, &gr))));
    let one_each = [dispatches as f32];
    weights.push(compare_exact("dispatches for the three launches", &one_each, &[3.0]));

    let shape = format!("{} K={k} O={o} 2 problems p={p_drop} R={rw}", lens_shape(lens));
    let kf = linear_kernel_name(LinearKernel::Vec4, LinearKernel::best_forward(&pf));
    let kb = linear_kernel_name(LinearKernel::Vec4, LinearKernel::best_backward(&pb));
    let kw = linear_kernel_name(LinearKernel::Vec4, LinearKernel::best_backward_weights(&pb));
    Ok(vec![
        CheckRow::new(format!("linear_forward [{kf}] (fused dense: dropout, R blocks)"), shape.clone(), forward),
        CheckRow::new(format!("linear_backward [{kb}] (fused dense: dropout)"), shape.clone(), backward),
        CheckRow::new(format!("linear_backward_weights [{kw}] (fused dense)"), shape, weights),
    ])
}

// ---- heads.wgsl ----

/// Both heads (or one) and the masked loss on a batch of `lens`, R = 900.
#[derive(Debug, Clone)]
pub struct HeadsCase {
    pub tasks: Tasks,
    pub lens: Vec<usize>,
    pub seed: u64,
}

/// Labels for a batch: sentiment in [-3, 3], emotion intensities that are 0 60% of
/// the time (so the no-emotion label occurs); no features.
fn random_labels(lens: &[usize], seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (b, u) = (lens.len(), padded_u(lens));
    let sentiment = (0..b * u).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let emotion =
        (0..b * u * EMOTIONS).map(|_| if rng.gen_bool(0.6) { 0.0 } else { rng.gen_range(0.1..3.0) }).collect();
    Batch { b, u, features: [None, None, None], dims: [0; 3], len: lens.to_vec(), sentiment, emotion: Some(emotion) }
}

/// heads_forward (probabilities at real rows, the loss and its sums) and
/// heads_backward (dR, each plain block of dR added into its modality's block
/// gradient, the heads' gradients accumulated onto non-zero values, the rest of the
/// gradient buffer untouched), loss weights 0.7 and 1.3.
pub fn check_heads(ctx: &GpuContext, c: &HeadsCase) -> Result<Vec<CheckRow>, GpuError> {
    let mut cfg = ModelConfig::new(ModalitySet::TAV, Attention::Cim, c.tasks, [6, 5, 4]);
    cfg.hidden = 4;
    cfg.w_sentiment = 0.7; // not 1, so that a missing weight factor shows
    cfg.w_emotion = 1.3;
    let layout = Layout::new(&cfg);
    let rw = cfg.repr_width();
    let batch = random_labels(&c.lens, c.seed);
    let (b, u, lens) = (batch.b, batch.u, &c.lens);
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    let mut params = vec![0.0; layout.len];
    for s in &layout.slices {
        for v in &mut params[s.range()] {
            *v = rng.gen_range(-0.1..0.1);
        }
    }
    let params = f64s(&f32s(&params));
    let r = f64s(&f32s(&random_vec(b * u * rw, c.seed + 2)));
    let grads0 = f64s(&f32s(&random_vec(layout.len, c.seed + 3)));
    let range = |n: &str| layout.get(n).map(|s| s.range());
    let head = |n: &str| {
        range(&format!("{n}.weight"))
            .zip(range(&format!("{n}.bias")))
            .map(|(w, bb)| cpu::heads::Head { w: &params[w], b: &params[bb] })
    };
    let (hs, he) = (head("sentiment"), head("emotion"));
    let out = cpu::heads::heads_forward(&r, hs, he, &batch, rw, cfg.w_sentiment, cfg.w_emotion);
    let mut want_dr = vec![0.0; b * u * rw];
    let mut want_grads = grads0.clone();
    {
        // The heads' gradient slices, accumulated onto grads0 (absent heads stay None).
        let tmp = |n: &str| {
            range(&format!("{n}.weight"))
                .zip(range(&format!("{n}.bias")))
                .map(|(w, bb)| (w.clone(), bb.clone(), grads0[w].to_vec(), grads0[bb].to_vec()))
        };
        let mut ts = tmp("sentiment");
        let mut te = tmp("emotion");
        cpu::heads::heads_backward(
            &mut want_dr,
            ts.as_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
            te.as_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
            &r,
            hs,
            he,
            &out,
            &batch,
            rw,
            cfg.w_sentiment,
            cfg.w_emotion,
        );
        for (wr, br, w, bb) in [ts, te].into_iter().flatten() {
            want_grads[wr].copy_from_slice(&w);
            want_grads[br].copy_from_slice(&bb);
        }
    }

    // Labels (B, U, 7) = [score, six intensities], as gather builds them.
    let mut labels = vec![0.0f32; b * u * gather::LABEL_WIDTH];
    let emo = batch.emotion.as_deref().unwrap_or(&[]);
    for t in 0..b * u {
        labels[t * 7] = batch.sentiment[t] as f32;
        for k in 0..EMOTIONS {
            labels[t * 7 + 1 + k] = emo.get(t * EMOTIONS + k).copied().unwrap_or(0.0) as f32;
        }
    }
    let classes = heads::CLASSES;
    let rb = up(ctx, "R", &r)?;
    let wb = up(ctx, "params", &params)?;
    let lb = upload(ctx, "labels", &labels)?;
    let len = upload(ctx, "len", &u32s(lens))?;
    let probs = upload(ctx, "probs", &vec![SENTINEL; b * u * classes])?;
    let dz = storage::<f32>(ctx, "dz", b * u * classes)?;
    let row_loss = storage::<f32>(ctx, "row loss", b * u * 2)?;
    let loss = storage::<f32>(ctx, "loss", heads::LOSS_LEN)?;
    let dr = upload(ctx, "dR", &vec![SENTINEL; b * u * rw])?;
    let grads = up(ctx, "grads", &grads0)?;
    let p = heads::HeadsParams::new(&cfg, &layout, b, u);
    let fwd = heads::heads_forward(ctx, &probs, &dz, &row_loss, &loss, &rb, &wb, &lb, &len, p)?;
    // The plain blocks' gradients, fused into heads_backward: dX_s += dR[:, plain_s ..].
    let d = cfg.dense;
    let repr = cfg.representation();
    let plain: Vec<Option<usize>> = cfg
        .modalities
        .modalities()
        .iter()
        .map(|&m| repr.iter().position(|&bk| bk == Block::Plain(m)).map(|i| i * d))
        .collect();
    let dx0: Vec<Vec<f32>> = (0..3).map(|s| f32s(&random_vec(b * u * d, c.seed + 40 + s as u64))).collect();
    let dxb = dx0.iter().map(|v| upload(ctx, "dX", v)).collect::<Result<Vec<_>, _>>()?;
    let bwd = heads::heads_backward(
        ctx,
        &dr,
        [&dxb[0], &dxb[1], &dxb[2]],
        &grads,
        &dz,
        &rb,
        &wb,
        &len,
        p.with_plain(&plain),
    )?;
    run(ctx, &[&fwd, &bwd])?;

    let got_p = read_f32(ctx, &probs, b * u * classes)?;
    let mut forward = Vec::new();
    if let Some(sp) = &out.sentiment_prob {
        let got = columns(&got_p, classes, 0, 2);
        forward.push(compare("sentiment prob", &real_rows(&got, lens, u, 2), &real_rows(sp, lens, u, 2), HEADS_TOL));
    }
    if let Some(ep) = &out.emotion_prob {
        let got = columns(&got_p, classes, 2, 7);
        forward.push(compare("emotion prob", &real_rows(&got, lens, u, 7), &real_rows(ep, lens, u, 7), HEADS_TOL));
    }
    let got_loss = read_f32(ctx, &loss, heads::LOSS_LEN)?;
    let count = batch.real_count() as f64;
    let want_loss =
        [out.loss, out.loss_sentiment.unwrap_or(0.0) * count, out.loss_emotion.unwrap_or(0.0) * count, count];
    for (i, name) in ["loss L", "loss sum CE", "loss sum BCE", "real utterances"].iter().enumerate() {
        forward.push(compare(name, &got_loss[i..=i], &want_loss[i..=i], HEADS_TOL));
    }
    let got_dr = read_f32(ctx, &dr, b * u * rw)?;
    let mut backward = vec![compare("dR", &got_dr, &want_dr, HEADS_TOL)];
    // dX_s = dX0_s + dR's plain block of slot s (one f32 add per element: exact, as
    // cpu::model's block loop), and the block gradient of a slot without one untouched.
    for (s, x0) in dx0.iter().enumerate() {
        let want: Vec<f32> = match plain.get(s).copied().flatten() {
            Some(off) => x0.iter().zip(columns(&got_dr, rw, off, d)).map(|(a, g)| a + g).collect(),
            None => x0.clone(),
        };
        backward.push(compare_exact(
            &format!("dX of modality slot {s} (+ dR's plain block)"),
            &read_f32(ctx, &dxb[s], b * u * d)?,
            &want,
        ));
    }
    let got_g = read_f32(ctx, &grads, layout.len)?;
    let mut head_ranges = Vec::new();
    for n in ["sentiment.weight", "sentiment.bias", "emotion.weight", "emotion.bias"] {
        if let Some(s) = range(n) {
            backward.push(compare(&format!("d {n}"), &got_g[s.clone()], &want_grads[s.clone()], HEADS_TOL));
            head_ranges.push(s);
        }
    }
    backward.push(compare_exact(
        "grads outside the heads",
        &outside(&got_g, &head_ranges),
        &f32s(&outside(&grads0, &head_ranges)),
    ));
    let shape = format!("{} R={rw}", lens_shape(lens));
    Ok(vec![
        CheckRow::new(format!("heads_forward ({})", c.tasks), shape.clone(), forward),
        CheckRow::new(format!("heads_backward ({})", c.tasks), shape, backward),
    ])
}

// ---- adam.wgsl ----

/// `steps` Adam steps over `n` parameters with fresh random gradients each step.
#[derive(Debug, Clone)]
pub struct AdamCase {
    pub n: usize,
    pub steps: u32,
    pub seed: u64,
}

/// adam_step with zero_grad, step after step against cpu::adam: parameters and
/// both moments; parameters whose gradient is always zero (like alignment gaps)
/// stay exactly 0; the gradients are zeroed. One step has tiny gradients (the eps
/// regime).
pub fn check_adam(ctx: &GpuContext, c: &AdamCase) -> Result<Vec<CheckRow>, GpuError> {
    let n = c.n;
    let gap = 64.min(n);
    let cfg = adam::AdamConfig::default();
    let mut p = random_vec(n, c.seed);
    for v in &mut p[..gap] {
        *v = 0.0;
    }
    let mut p = f64s(&f32s(&p));
    let params = up(ctx, "params", &p)?;
    let grads = storage::<f32>(ctx, "grads", n)?;
    let m = storage::<f32>(ctx, "adam m", n)?;
    let v = storage::<f32>(ctx, "adam v", n)?;
    let mut state = cpu::adam::AdamState::new(n);
    let mut launch = adam::adam_step(ctx, &params, &grads, &m, &v, adam::AdamParams::new(n, 1, &cfg, true))?;
    for step in 1..=c.steps {
        let mut g = random_vec(n, c.seed + 100 + u64::from(step));
        for x in &mut g[..gap] {
            *x = 0.0;
        }
        if step == 4 {
            for x in g.iter_mut().take(1000).skip(gap) {
                *x *= 1e-4; // tiny gradients: the eps regime
            }
        }
        let g = f64s(&f32s(&g));
        ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&f32s(&g)));
        launch.update(ctx, adam::AdamParams::new(n, step, &cfg, true));
        run(ctx, &[&launch])?;
        cpu::adam::adam_step(&mut p, &mut state, &g, &cfg);
    }
    let got = read_f32(ctx, &params, n)?;
    Ok(vec![CheckRow::new(
        format!("adam_step ({} steps)", c.steps),
        format!("n={n}"),
        vec![
            compare("params", &got, &p, ADAM_TOL),
            compare("m", &read_f32(ctx, &m, n)?, &state.m, ADAM_TOL),
            compare("v", &read_f32(ctx, &v, n)?, &state.v, ADAM_TOL),
            compare_exact("params with zero gradient", &got[..gap], &vec![0.0; gap]),
            compare_exact("grads (zero_grad)", &read_f32(ctx, &grads, n)?, &vec![0.0; n]),
        ],
    )])
}

// ---- The whole model (src/gpu/model.rs against cpu::model) ----

/// A dataset whose train split holds videos of `lens` (features in [-1, 1],
/// sentiment in [-3, 3], emotions zero 60% of the time), dims 6 / 4 / 3.
pub fn random_dataset(lens: &[usize], seed: u64) -> crate::data::Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dims = [6, 4, 3];
    let videos = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| crate::data::Video {
            id: format!("v{i}"),
            len,
            features: dims.map(|d| Some((0..len * d).map(|_| rng.gen_range(-1.0f32..1.0)).collect())),
            sentiment: (0..len).map(|_| rng.gen_range(-3.0f32..3.0)).collect(),
            emotion: Some(
                (0..len * EMOTIONS).map(|_| if rng.gen_bool(0.6) { 0.0 } else { rng.gen_range(0.1f32..3.0) }).collect(),
            ),
        })
        .collect();
    crate::data::Dataset { source: "random".into(), dims, has_emotion: true, splits: [videos, Vec::new(), Vec::new()] }
}

/// One variant: a whole forward + backward on the GPU (with dropout) against
/// the CPU reference replaying the same masks.
fn check_model(
    opts: &super::GpuOptions,
    set: ModalitySet,
    attention: Attention,
    tasks: Tasks,
    hidden: usize,
) -> CheckRow {
    let kernel = format!("model {set}/{attention}/{tasks}");
    let shape = format!("B=17 U=9 H={hidden} D=5 dims 6,4,3, dropout 0.3");
    let run = || -> Result<CheckRow, String> {
        let mut cfg = ModelConfig::new(set, attention, tasks, [6, 4, 3]);
        cfg.hidden = hidden;
        cfg.dense = 5;
        let params = ParamStore::init(&cfg, 3);
        let data = random_dataset(&CHECK_LENS, 4);
        let ctx = GpuContext::new(opts).map_err(|e| e.to_string())?;
        let mut eng =
            super::model::GpuEngine::new(ctx, &params, &data, cpu::adam::AdamConfig::default(), 1, CHECK_LENS.len())
                .map_err(|e| e.to_string())?;
        let videos: Vec<usize> = (0..CHECK_LENS.len()).collect();
        let seed = 0xBEEF;
        let g = eng.compute_gradients(&videos, Some(seed)).map_err(|e| e.to_string())?;
        let mut batch = data.batch(crate::data::SplitName::Train, &videos);
        crate::grads::restrict_to_model(&mut batch, &params);
        let masks = cpu::model::DropoutMasks::generate(&cfg, batch.b, batch.u, seed);
        let p = params.to_f64();
        let f = cpu::model::forward(&cfg, &params.layout, &p, &batch, Some(&masks)).map_err(|e| e.to_string())?;
        let want = cpu::model::backward(&cfg, &params.layout, &p, &batch, &f);
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let n = batch.real_count() as f64;
        let mut tensors = vec![compare("loss", &[(g.loss.loss / n) as f32], &[f.heads.loss], MODEL_TOL)];
        // Probabilities at real positions only (padding is undefined).
        let (mut gp, mut wp) = (Vec::new(), Vec::new());
        for (b, &l) in batch.len.iter().enumerate() {
            for i in 0..l {
                let t = b * batch.u + i;
                if let Some(sp) = &f.heads.sentiment_prob {
                    gp.extend_from_slice(&g.probs[t * 9..t * 9 + 2]);
                    wp.extend_from_slice(&sp[t * 2..t * 2 + 2]);
                }
                if let Some(ep) = &f.heads.emotion_prob {
                    gp.extend_from_slice(&g.probs[t * 9 + 2..t * 9 + 9]);
                    wp.extend_from_slice(&ep[t * 7..t * 7 + 7]);
                }
            }
        }
        tensors.push(compare("probabilities", &f32s(&gp), &wp, MODEL_TOL));
        for s in &params.layout.slices {
            tensors.push(compare(&s.name, &f32s(&g.grads[s.range()]), &want.params[s.range()], MODEL_TOL));
        }
        for m in cfg.modalities.modalities() {
            if let (Some(a), Some(b)) = (&g.inputs[m.index()], &want.inputs[m.index()]) {
                tensors.push(compare(&format!("grad_input.{}", m.name()), &f32s(a), b, MODEL_TOL));
            }
        }
        Ok(CheckRow::new(kernel.clone(), shape.clone(), tensors))
    };
    run().unwrap_or_else(|e| CheckRow::error(kernel.clone(), &e))
}

/// f32 GPU vs f64 CPU over a whole forward + backward (9 GRU steps, dot
/// products of a few hundred terms, softmax and sigmoid backward): ~1e-6
/// relative in practice; 1e-4 of each tensor's largest magnitude, the issue's bound.
pub const MODEL_TOL: f64 = 1e-4;

fn model_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    // The engine owns its context: open another on the same adapter.
    let opts = super::GpuOptions { adapter: Some(ctx.adapter_info.name.clone()) };
    Ok(vec![
        check_model(&opts, ModalitySet::TAV, Attention::Cim, Tasks::Mtl, 8),
        check_model(&opts, ModalitySet::TAV, Attention::Cim, Tasks::Mtl, 7),
        check_model(&opts, ModalitySet::TAV, Attention::SelfAttn, Tasks::Sentiment, 8),
        check_model(&opts, ModalitySet::AV, Attention::None, Tasks::Emotion, 8),
        check_model(&opts, ModalitySet::T, Attention::Cim, Tasks::Mtl, 8),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_measures_relative_to_the_largest_reference_value() {
        let c = compare("t", &[1.0, 2.0, 4.1], &[1.0, 2.0, 4.0], 0.05);
        assert!(c.pass);
        assert!((c.max_abs - 0.1).abs() < 1e-6 && (c.max_rel - 0.025).abs() < 1e-6);
        assert_eq!(c.worst.map(|w| w.index), Some(2));
        assert!(!compare("t", &[1.0, 2.0, 4.3], &[1.0, 2.0, 4.0], 0.05).pass);
        assert!(!compare("t", &[f32::NAN], &[1.0], 1.0).pass, "NaN never passes");
        assert!(!compare("t", &[1.0], &[1.0, 2.0], 1.0).pass, "lengths must agree");
        assert!(compare("t", &[0.0], &[0.0], 0.0).pass, "all-zero tensors compare");
    }

    #[test]
    fn exact_comparison_reports_the_first_difference() {
        assert!(compare_exact("t", &[1.0, -0.0], &[1.0, 0.0]).pass);
        let c = compare_exact("t", &[1.0, 2.0, 3.5, 9.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!(!c.pass);
        assert_eq!(c.worst.map(|w| w.index), Some(2));
    }

    #[test]
    fn a_row_fails_when_any_tensor_fails_and_names_it() {
        let row = CheckRow::new("k", "s", vec![compare("a", &[1.0], &[1.0], 1e-5), compare("b", &[2.0], &[1.0], 1e-5)]);
        assert!(!row.pass);
        assert!(row.detail.starts_with("b:"), "{}", row.detail);
        let row = CheckRow::new("k", "s", vec![compare("a", &[1.0], &[1.0], 1e-5), compare_exact("c", &[0.0], &[0.0])]);
        assert!(row.pass && row.tol == 1e-5);
        assert!(!CheckRow::new("k", "s", vec![]).pass, "a row that compares nothing does not pass");
    }
}
