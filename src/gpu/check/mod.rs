//! Every kernel against the f64 CPU reference (src/cpu), forward and backward, on
//! random masked batches: B not a multiple of any workgroup size, lengths mixed
//! (including 1 and U), garbage at padded positions, outputs pre-filled with
//! NaN (so "written" is tested, not assumed: an invocation that stops early, as
//! llvmpipe's do silently after 65,535 loop iterations, leaves NaN, which no
//! comparison passes) and parameter gradients starting
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

use super::attention::AttentionKernel;
use super::buffers::{read, storage, upload};
use super::context::{GpuContext, GpuError};
use super::gru::{GruError, GruMember, GruParams};
use super::launch::run;
use super::linear::LinearKernel;
use crate::batch::Batch;
use crate::config::{Attention, Block, Modality, ModalitySet, ModelConfig, Tasks, EMOTIONS};
use crate::cpu;
use crate::gpu;
use crate::params::{Layout, ParamStore};

mod adam;
mod attention;
mod dropout;
mod gather;
mod gru;
mod heads;
mod linear;
mod model;

pub use self::adam::*;
pub use self::attention::*;
pub use self::dropout::*;
pub use self::gather::*;
pub use self::gru::*;
pub use self::heads::*;
pub use self::linear::*;
pub use model::*;

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
/// Pre-filled into outputs and into buffer regions a kernel must not touch: an
/// element left unwritten stays NaN and fails `compare` / `compare_exact` (NaN is
/// never within tolerance, nor equal); untouched regions are checked bit for bit
/// with [`compare_bits`].
pub const SENTINEL: f32 = f32::NAN;

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

/// `got` against `want` bit for bit: copies, and buffer regions a kernel must
/// leave alone (they hold the NaN [`SENTINEL`], which only this comparison
/// finds equal to itself).
pub fn compare_bits(tensor: &str, got: &[f32], want: &[f32]) -> Compared {
    if got.len() != want.len() {
        return length_mismatch(tensor, got.len(), want.len(), EXACT);
    }
    let first = got.iter().zip(want).position(|(g, w)| g.to_bits() != w.to_bits());
    let worst = first.map(|i| Worst { index: i, got: f64::from(got[i]), want: f64::from(want[i]) });
    let max_abs = worst.map_or(0.0, |w| {
        let e = (w.got - w.want).abs();
        if e.is_nan() {
            f64::INFINITY
        } else {
            e
        }
    });
    Compared {
        tensor: tensor.to_string(),
        max_abs,
        max_rel: if first.is_none() { 0.0 } else { f64::INFINITY },
        tol: EXACT,
        pass: first.is_none(),
        worst,
        note: None,
    }
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

/// Three batches of CHECK_LENS's B, as models of different seeds see at one step:
/// u = 9 (CHECK_LENS), 1 and 5.
fn check_batches() -> Vec<Vec<usize>> {
    vec![CHECK_LENS.to_vec(), vec![1; CHECK_LENS.len()], CHECK_LENS.iter().map(|&l| l.min(5)).collect()]
}

fn linear_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let lens = CHECK_LENS.to_vec();
    let n = lens.len() * 9;
    let mut rows = Vec::new();
    // The GRU input projections (K 300 -> 3H 600, written as the second problem's
    // block of xp; K 35, whose weight gradient vec4 runs as _v4g, the rest scalar) and the dense layer
    // (2H 400 -> D 100) with ReLU, on every kernel variant their shapes allow.
    for (k, o, relu, y_off, seed) in [(300, 600, false, n * 600, 1), (35, 600, false, 0, 2), (400, 100, true, 0, 3)] {
        let mut c = LinearCase { lens: lens.clone(), k, o, relu, y_off, kernel: LinearKernel::Scalar, seed };
        for kernel in linear_kernels(ctx, &c) {
            c.kernel = kernel;
            rows.extend(check_linear(ctx, &c)?);
        }
    }
    Ok(rows)
}

fn dropout_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    // Five segments (GRU outputs of a group's branches, of three seeds' batches) at a
    // stride of (B, U_max, 2H) of the check batch plus 3, at offsets into larger
    // buffers: streams out of order, each its own n (U = U_max, 1, U_max, 4; one odd
    // size and a single element).
    use gpu::dropout::DropoutSegment as S;
    let (n, row) = (17 * 9 * 400 + 3, 17 * 400);
    let segments = vec![
        S::new(5, 12345, n),
        S::new(0, 999, row),
        S::new(9, 12345, n - 7),
        S::new(2, 31, 4 * row),
        S::new(4, 999, 1),
    ];
    check_dropout(ctx, &DropoutCase { n, segments, p: 0.3, x_off: 100, y_off: 37 })
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
        GruCase::single(CHECK_LENS.to_vec(), [0, 0, 35], 200, 4),
        // Fused launches: two models' GRUs (5 branches, P = 10) over one weight arena.
        GruCase {
            lens: vec![5, 1, 13, 2, 13, 7, 1, 9, 3, 11, 4, 6, 12, 8, 2, 10, 13],
            models: vec![[5, 3, 9], [4, 0, 6]],
            h: 7,
            seed: 5,
        },
        GruCase { lens: CHECK_LENS.to_vec(), models: vec![[0, 7, 11], [5, 3, 9]], h: 36, seed: 6 },
    ];
    let mut rows = Vec::new();
    for c in &cases {
        for member in gru_members(ctx, c)? {
            rows.extend(check_gru(ctx, c, member)?);
        }
    }
    // Problems of three batches (u = 1, 9, 5) in one launch (P = 8), as models of different seeds.
    let mixed = GruBatchCase {
        batches: vec![CHECK_LENS.to_vec(), vec![1; 17], CHECK_LENS.iter().map(|&l| l.min(5)).collect()],
        branch_batch: vec![1, 0, 2, 0],
        models: vec![[0, 7, 11], [5, 3, 0]],
        h: 12,
        seed: 8,
    };
    for member in gru_batch_members(ctx, &mixed)? {
        rows.extend(check_gru_batches(ctx, &mixed, member)?);
    }
    Ok(rows)
}

fn attention_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let mut rows = Vec::new();
    for (pair, seed) in [(true, 6), (false, 7)] {
        let mut c = AttentionCase::new(check_batches(), 100, pair, AttentionKernel::Flat, seed);
        for kernel in attention_members(ctx, &c) {
            (c.forward, c.backward) = (kernel, kernel);
            rows.extend(check_attention(ctx, &c)?);
        }
        // The flat member's vec4 entries, which run where the layout is 4-aligned
        // (the engine's, at D 100).
        let c = AttentionCase { forward: AttentionKernel::Flat, backward: AttentionKernel::Flat, ..c.aligned() };
        rows.extend(check_attention(ctx, &c)?);
    }
    Ok(rows)
}

fn linear_fused_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    // Six problems per launch (a group of models' site, three seeds' batches: u = 9,
    // 1, 4, 3, 6, 9): the dense site (2H 400 -> D 100: every member), the
    // input-projection site (K 36 -> 3H 48: every member) and odd shapes that Vec4
    // cannot take (it runs Scalar there), on every member.
    let mut rows = Vec::new();
    // Vec4Sg where the device has it (on Vec4's shapes it runs Vec4), and
    // Vec4SgTex where the profile runs the wide lane tiles too.
    use LinearKernel::*;
    let sg: &[LinearKernel] = match (ctx.profile.subgroup_octets(), ctx.profile.wide_lane_tiles) {
        (true, true) => &[Vec4Sg, Vec4SgTex],
        (true, false) => &[Vec4Sg],
        _ => &[],
    };
    let all = [&[Vec4, Scalar, Tiled][..], sg].concat();
    let odd = [&[Scalar, Tiled][..], sg].concat();
    for (k, o, dense, seed, kernels) in [(400, 100, true, 8, &all), (6, 5, true, 11, &odd), (36, 48, false, 12, &all)] {
        for &kernel in kernels {
            let c = FusedLinearCase::mixed(CHECK_LENS.len(), 9, k, o, dense, kernel).seed(seed);
            rows.extend(check_linear_fused(ctx, &c)?);
        }
    }
    Ok(rows)
}

fn heads_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    let mut rows = Vec::new();
    for tasks in Tasks::ALL {
        rows.extend(check_heads(ctx, &HeadsCase::single(tasks, CHECK_LENS.to_vec(), 9))?);
    }
    rows.extend(check_heads(ctx, &HeadsCase::mixed(check_batches(), 19))?);
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

/// Element ranges of the real rows of a (B, U, W) tensor.
fn real_ranges(lens: &[usize], u: usize, w: usize) -> Vec<std::ops::Range<usize>> {
    lens.iter().enumerate().map(|(b, &l)| b * u * w..(b * u + l) * w).collect()
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

    /// An output element no invocation wrote keeps the NaN sentinel; every
    /// comparison catches it, however loose the tolerance.
    #[test]
    fn an_unwritten_output_element_fails_every_comparison() {
        let want = [1.0, -2.0, 3.0, 0.5];
        let mut got: Vec<f32> = want.iter().map(|&w| w as f32).collect();
        got[2] = SENTINEL;
        let c = compare("t", &got, &want, 1e30);
        assert!(!c.pass && c.max_abs == f64::INFINITY);
        assert_eq!(c.worst.map(|w| w.index), Some(2));
        let want32 = want.map(|w| w as f32);
        assert!(!compare_exact("t", &got, &want32).pass);
        assert!(!compare_bits("t", &got, &want32).pass);
        // A region that must stay untouched passes only while it still holds the sentinel.
        assert!(compare_bits("t", &[SENTINEL; 3], &[SENTINEL; 3]).pass);
        let c = compare_bits("t", &[SENTINEL, 0.0, SENTINEL], &[SENTINEL; 3]);
        assert!(!c.pass && c.worst.map(|w| w.index) == Some(1));
        assert!(!compare_bits("t", &[-0.0], &[0.0]).pass, "bit for bit");
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
