//! The generated member of the linear family: the workgroup-tiled GEMM
//! (`LinearKernel::Tiled`). Its three entry points differ only in what the two
//! operands and the epilogue are, so one Rust template emits them from the tile
//! sizes in [`TILED`], the same values the launcher dispatches with (no WGSL
//! constant kept equal to a Rust twin). The output is committed as
//! shaders/generated/linear_tiled.wgsl; tests/shaders.rs fails when regenerating
//! changes it (`CIMNET_REGENERATE=1 cargo test --test shaders` rewrites it).
//! The scalar and vec4 members stay hand-written in shaders/linear.wgsl: their
//! bodies share nothing a parameter could generate (different unrolled loads).

use std::fmt::Write;

/// One tiled-GEMM shape: a workgroup owns a `bm` x `bn` output tile, each invocation
/// `tm` x `tn` of it (strided by the workgroup's extent, see the header), and the
/// reduction is staged through workgroup memory `bk` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmTile {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
}

impl GemmTile {
    /// Invocations along x (output columns) and y (output rows).
    pub const fn workgroup(self) -> [u32; 2] {
        [self.bn / self.tn, self.bm / self.tm]
    }

    pub const fn invocations(self) -> u32 {
        self.workgroup()[0] * self.workgroup()[1]
    }

    /// Bytes of workgroup memory: the two staged operand tiles.
    pub const fn shared_bytes(self) -> u32 {
        4 * self.bk * (self.bm + self.bn)
    }

    /// Loop iterations one invocation runs for a reduction of `red` (the staging
    /// loop and the inner loop over a staged slice), for llvmpipe's loop budget.
    pub fn loop_iterations(self, red: u32) -> u32 {
        let slices = red.div_ceil(self.bk);
        slices.saturating_mul(self.bk + 1)
    }
}

/// The member's tiles: a 64 x 64 output tile per workgroup of 16 x 16 invocations,
/// 4 x 4 outputs each, K staged 16 at a time (8 KiB of workgroup memory).
pub const TILED: GemmTile = GemmTile { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 };

/// The WGSL mirrors of `LinearParams` and `LinearProblem` (src/gpu/linear.rs);
/// tests/shaders.rs pins their layouts against the Rust structs.
const PARAMS_STRUCT: &str = "struct LinearParams {
    b: u32,
    u: u32,
    k: u32,
    o: u32,
    relu: u32,
    problems: u32,
    drop: u32,
    threshold: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// One problem of the launch (grid z): element offsets into the bound buffers and
// its own batch (rows t = b * u + i, lengths at len[len_off ..], dropout seed).
struct LinearProblem {
    w_off: u32,
    b_off: u32,
    x_off: u32,
    y_off: u32,
    stream: u32,
    r_off: u32,
    rw: u32,
    u: u32,
    len_off: u32,
    seed: u32,
    _pad0: u32,
    _pad1: u32,
}
";

/// Which operand index runs along consecutive addresses: the staging loads
/// give consecutive invocations consecutive addresses along it.
#[derive(Clone, Copy)]
enum Fast {
    /// The reduction index (e.g. x[t, k] read along k).
    Red,
    /// The output row / column index (e.g. W[o, k] read along k as the column).
    Out,
}

/// One entry point of the template.
struct Entry {
    name: &'static str,
    /// Suffix of its globals and helpers.
    s: &'static str,
    doc: &'static str,
    bindings: &'static str,
    /// (rows M, columns N, reduction) of the GEMM, WGSL expressions in `p`.
    shape: [&'static str; 3],
    /// Body of `fn load_a_<s>(p, q, m, r) -> f32` (row m, reduction index r) and its fast axis.
    load_a: (&'static str, Fast),
    /// Body of `fn load_b_<s>(p, q, r, c) -> f32` (reduction index r, column c).
    load_b: (&'static str, Fast),
    /// Body of `fn store_<s>(p, q, m, c, acc)`.
    store: &'static str,
    /// Also sums the staged A over the reduction (the bias gradient).
    row_sums: bool,
}

fn entries() -> [Entry; 3] {
    [
        Entry {
            name: "linear_tiled_forward",
            s: "f",
            doc: "y (N, O) = act(x (N, K) W^T + b): M = N rows, N = O, reduction K",
            bindings: "@group(0) @binding(0) var<uniform> pf: LinearParams;
@group(0) @binding(1) var<storage, read> xf: array<f32>;
@group(0) @binding(2) var<storage, read> wf: array<f32>;
@group(0) @binding(3) var<storage, read> lenf: array<u32>;
@group(0) @binding(4) var<storage, read_write> yf: array<f32>;
@group(0) @binding(5) var<storage, read_write> rf: array<f32>;
@group(0) @binding(6) var<storage, read> qf: array<LinearProblem>;",
            shape: ["p.b * q.u", "p.o", "p.k"],
            load_a: (
                "    let ok = m < p.b * q.u && r < p.k;
    let v = xf[select(0u, q.x_off + m * p.k + r, ok)];
    return select(0.0, v, ok);",
                Fast::Red,
            ),
            load_b: (
                "    let ok = c < p.o && r < p.k;
    let v = wf[select(0u, q.w_off + c * p.k + r, ok)];
    return select(0.0, v, ok);",
                Fast::Red,
            ),
            store: "    if (m >= p.b * q.u || c >= p.o) {
        return;
    }
    var v = acc + wf[q.b_off + c];
    if (p.relu != 0u) {
        v = max(v, 0.0);
    }
    if ((m % q.u) >= lenf[q.len_off + m / q.u]) {
        v = 0.0; // padded row (select, so garbage in x cannot leak as NaN * 0)
    }
    let y = v * mask(p, q, m * p.o + c);
    yf[q.y_off + m * p.o + c] = y;
    if (q.rw != 0u) {
        rf[q.r_off + m * q.rw + c] = y;
    }",
            row_sums: false,
        },
        Entry {
            name: "linear_tiled_backward",
            s: "b",
            doc: "dx (N, K) = g (N, O) W (O, K): M = N rows, N = K, reduction O",
            bindings: "@group(0) @binding(0) var<uniform> pb: LinearParams;
@group(0) @binding(1) var<storage, read> dyb: array<f32>;
@group(0) @binding(2) var<storage, read> yb: array<f32>;
@group(0) @binding(3) var<storage, read> wb: array<f32>;
@group(0) @binding(4) var<storage, read> lenb: array<u32>;
@group(0) @binding(5) var<storage, read_write> dxb: array<f32>;
@group(0) @binding(6) var<storage, read> qb: array<LinearProblem>;",
            shape: ["p.b * q.u", "p.k", "p.o"],
            load_a: (
                "    let ok = m < p.b * q.u && r < p.o;
    let i = select(0u, q.y_off + m * p.o + r, ok);
    var g = dyb[i];
    if (p.relu != 0u) {
        g = select(0.0, g * p.scale, yb[i] > 0.0);
    }
    return select(0.0, g, ok);",
                Fast::Red,
            ),
            load_b: (
                "    let ok = c < p.k && r < p.o;
    let v = wb[select(0u, q.w_off + r * p.k + c, ok)];
    return select(0.0, v, ok);",
                Fast::Out,
            ),
            store: "    if (m >= p.b * q.u || c >= p.k) {
        return;
    }
    let v = select(acc, 0.0, (m % q.u) >= lenb[q.len_off + m / q.u]);
    dxb[q.x_off + m * p.k + c] = v * mask(p, q, m * p.k + c);",
            row_sums: false,
        },
        Entry {
            name: "linear_tiled_backward_weights",
            s: "w",
            doc: "dW (O, K) += g^T x, db += sum g: M = O, N = K, reduction over the N rows \
                  (padded rows staged as 0)",
            bindings: "@group(0) @binding(0) var<uniform> pw: LinearParams;
@group(0) @binding(1) var<storage, read> dyw: array<f32>;
@group(0) @binding(2) var<storage, read> yw: array<f32>;
@group(0) @binding(3) var<storage, read> xw: array<f32>;
@group(0) @binding(4) var<storage, read> lenw: array<u32>;
@group(0) @binding(5) var<storage, read_write> gw: array<f32>;
@group(0) @binding(6) var<storage, read> qw: array<LinearProblem>;",
            shape: ["p.o", "p.k", "p.b * q.u"],
            load_a: (
                "    let ok = m < p.o && r < p.b * q.u && (r % q.u) < lenw[q.len_off + min(r / q.u, p.b - 1u)];
    let i = select(0u, q.y_off + r * p.o + m, ok);
    var g = dyw[i];
    if (p.relu != 0u) {
        g = select(0.0, g * p.scale, yw[i] > 0.0);
    }
    return select(0.0, g, ok);",
                Fast::Out,
            ),
            load_b: (
                "    let ok = c < p.k && r < p.b * q.u && (r % q.u) < lenw[q.len_off + min(r / q.u, p.b - 1u)];
    let v = xw[select(0u, q.x_off + r * p.k + c, ok)];
    return select(0.0, v, ok);",
                Fast::Out,
            ),
            store: "    if (m >= p.o || c >= p.k) {
        return;
    }
    gw[q.w_off + m * p.k + c] += acc;",
            row_sums: true,
        },
    ]
}

/// The whole generated body (header, constants, helpers, entry points), without
/// the shared prelude (src/gpu/wgsl.rs adds it).
pub fn tiled_body() -> String {
    let t = TILED;
    let [wx, wy] = t.workgroup();
    let mut w = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        w,
        "// linear_tiled.wgsl: the workgroup-tiled GEMM member of the linear family (LinearKernel::Tiled).\n\
         // GENERATED by src/gpu/linear/wgsl.rs from its tile sizes; do not edit (tests/shaders.rs\n\
         // fails when regenerating changes this file). Same math, bindings and fusions as linear.wgsl\n\
         // (problem z of grid z reads entry z of the launch's problem list: its offsets, dropout\n\
         // seed and stream, R block and its own batch: rows t = b * q.u + i, lengths at\n\
         // len[q.len_off ..]; one launch covers every model's problems, of any seed; dropout\n\
         // mask on the output, copy into R).\n\
         //   linear_tiled_forward           y = act(x W^T + b)      padded rows written 0\n\
         //   linear_tiled_backward          dx = g W                 g = dy * scale * (y > 0) or dy\n\
         //   linear_tiled_backward_weights  dW += g^T x, db += sum g over real rows, fixed order\n\
         //\n\
         // Dispatch: grid (ceil(N / BN), ceil(M / BM), problems), M and N at U = U_max (the\n\
         // uniform's u); a workgroup past its problem's own M = B * q.u rows returns at once.\n\
         // A workgroup of WG_X x WG_Y =\n\
         // {wx} x {wy} invocations owns a BM x BN = {bm} x {bn} tile of its problem's output\n\
         // (CUTLASS grouped GEMM: problem z's operands found through its list entry, many\n\
         // workgroups per launch: K models' problems multiply them by K at one dispatch).\n\
         // Each step stages a BM x BK and a BK x BN slice ({bk} of the reduction) in\n\
         // workgroup memory, each invocation loading {la} elements of each with\n\
         // consecutive invocations on consecutive addresses; then every invocation\n\
         // accumulates its TM x TN = {tm} x {tn} outputs from workgroup memory: rows\n\
         // ly + WG_Y i, columns lx + WG_X j (strided, so a SIMD group reads consecutive\n\
         // words of the B slice and one broadcast word of the A slice: no bank conflicts).\n\
         // Why on a GPU: global traffic falls by the tile edge (each loaded element feeds\n\
         // {bm} or {bn} products instead of 4), {inv} invocations per workgroup fill the SIMD\n\
         // units, and the grid has one workgroup per output tile and problem. On llvmpipe\n\
         // barriers and workgroup memory cost more than they save (docs/perf-notes.md).\n\
         // Deterministic: every output is one invocation's sum over the reduction in order.\n\
         //\n\
         // Bindings: as linear.wgsl's linear_forward / linear_backward / linear_backward_weights\n\
         // (6: the problem list). No two problems of one launch share W or b (dW accumulates).\n\
         // Letters: N = B*u rows, K input width, O output width; M, N, reduction of each GEMM below.\n\n",
        bm = t.bm,
        bn = t.bn,
        bk = t.bk,
        tm = t.tm,
        tn = t.tn,
        la = t.bm * t.bk / t.invocations(),
        inv = t.invocations(),
    );
    let _ = writeln!(w, "const BM: u32 = {}u;", t.bm);
    let _ = writeln!(w, "const BN: u32 = {}u;", t.bn);
    let _ = writeln!(w, "const BK: u32 = {}u;", t.bk);
    let _ = writeln!(w, "const TM: u32 = {}u;", t.tm);
    let _ = writeln!(w, "const TN: u32 = {}u;", t.tn);
    let _ = writeln!(w, "const WG_X: u32 = {wx}u;");
    let _ = writeln!(w, "const WG_Y: u32 = {wy}u;\n");
    w.push_str(PARAMS_STRUCT);
    w.push_str(
        "
// The dropout mask value of element i of problem z's output, as dropout.wgsl.
fn mask(p: LinearParams, q: LinearProblem, i: u32) -> f32 {
    if (p.drop == 0u) {
        return 1.0;
    }
    return select(0.0, p.scale, random24(q.seed, q.stream, i) >= p.threshold);
}

// Staged slices of the reduction: sa[r * BM + m] (A), sb[r * BN + c] (B).
var<workgroup> sa: array<f32, BK * BM>;
var<workgroup> sb: array<f32, BK * BN>;
",
    );
    for e in entries() {
        entry(&mut w, t, &e);
    }
    w
}

fn entry(w: &mut String, t: GemmTile, e: &Entry) {
    let s = e.s;
    let [mexpr, nexpr, rexpr] = e.shape;
    let _ = write!(
        w,
        "\n// ---- {name}: {doc} ----\n{bindings}\n\n\
         fn load_a_{s}(p: LinearParams, q: LinearProblem, m: u32, r: u32) -> f32 {{\n{la}\n}}\n\n\
         fn load_b_{s}(p: LinearParams, q: LinearProblem, r: u32, c: u32) -> f32 {{\n{lb}\n}}\n\n\
         fn store_{s}(p: LinearParams, q: LinearProblem, m: u32, c: u32, acc: f32) {{\n{st}\n}}\n\n",
        name = e.name,
        doc = e.doc,
        bindings = e.bindings,
        la = e.load_a.0,
        lb = e.load_b.0,
        st = e.store,
    );
    let _ = write!(
        w,
        "@compute @workgroup_size(WG_X, WG_Y, 1)\n\
         fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{\n\
         \x20   let p = p{s};\n\
         \x20   let q = q{s}[wg.z]; // the problem (grid z = problems exactly)\n\
         \x20   let m0 = wg.y * BM;\n\
         \x20   let c0 = wg.x * BN;\n\
         \x20   let red = {rexpr}; // M = {mexpr}, N = {nexpr}\n\
         \x20   if (m0 >= {mexpr}) {{\n\
         \x20       return; // past the problem's rows (the grid is sized for U_max): the whole workgroup\n\
         \x20   }}\n\
         \x20   let li = lid.y * WG_X + lid.x;\n",
        name = e.name,
    );
    for i in 0..t.tm {
        let _ = writeln!(w, "    var acc{i} = vec{}<f32>(0.0); // row ly + WG_Y * {i}, columns lx + WG_X * j", t.tn);
    }
    if e.row_sums {
        let _ =
            writeln!(w, "    var rsum = vec{}<f32>(0.0); // sum over the reduction of A's rows ly + WG_Y * i", t.tm);
    }
    w.push_str("    for (var r0 = 0u; r0 < red; r0 += BK) {\n");
    let inv = t.invocations();
    for (op, fast, rows) in [("a", e.load_a.1, t.bm), ("b", e.load_b.1, t.bn)] {
        let (tile, extent) = if op == "a" { ("sa", "BM") } else { ("sb", "BN") };
        for l in 0..rows * t.bk / inv {
            let idx = if l == 0 { "li".to_string() } else { format!("li + {}u", l * inv) };
            let (r, mn) = match fast {
                Fast::Red => (format!("({idx}) % BK"), format!("({idx}) / BK")),
                Fast::Out => (format!("({idx}) / {extent}"), format!("({idx}) % {extent}")),
            };
            let base = if op == "a" { "m0" } else { "c0" };
            let call = if op == "a" {
                format!("load_a_{s}(p, q, {base} + {mn}, r0 + {r})")
            } else {
                format!("load_b_{s}(p, q, r0 + {r}, {base} + {mn})")
            };
            let _ = writeln!(w, "        {tile}[({r}) * {extent} + {mn}] = {call};");
        }
    }
    w.push_str("        workgroupBarrier();\n        for (var r = 0u; r < BK; r++) {\n");
    let cols: Vec<String> = (0..t.tn).map(|j| format!("sb[r * BN + lid.x + {}u]", j * t.workgroup()[0])).collect();
    let _ = writeln!(w, "            let bv = vec{}<f32>({});", t.tn, cols.join(", "));
    for i in 0..t.tm {
        let _ = writeln!(w, "            let a{i} = sa[r * BM + lid.y + {}u];", i * t.workgroup()[1]);
    }
    for i in 0..t.tm {
        let _ = writeln!(w, "            acc{i} += a{i} * bv;");
    }
    if e.row_sums {
        let a: Vec<String> = (0..t.tm).map(|i| format!("a{i}")).collect();
        let _ = writeln!(w, "            rsum += vec{}<f32>({});", t.tm, a.join(", "));
    }
    w.push_str("        }\n        workgroupBarrier();\n    }\n");
    for i in 0..t.tm {
        for j in 0..t.tn {
            let _ = writeln!(
                w,
                "    store_{s}(p, q, m0 + lid.y + {}u, c0 + lid.x + {}u, acc{i}[{j}]);",
                i * t.workgroup()[1],
                j * t.workgroup()[0]
            );
        }
    }
    if e.row_sums {
        w.push_str("    // The bias gradient: the first column of workgroups, one invocation per row.\n");
        w.push_str("    if (wg.x == 0u && lid.x == 0u) {\n");
        for i in 0..t.tm {
            let _ = write!(
                w,
                "        if (m0 + lid.y + {o}u < p.o) {{\n            gw[q.b_off + m0 + lid.y + {o}u] += rsum[{i}];\n        }}\n",
                o = i * t.workgroup()[1]
            );
        }
        w.push_str("    }\n");
    }
    w.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_divides_into_whole_loads() {
        let t = TILED;
        assert_eq!(t.bm % t.tm, 0);
        assert_eq!(t.bn % t.tn, 0);
        assert_eq!((t.bm * t.bk) % t.invocations(), 0);
        assert_eq!((t.bn * t.bk) % t.invocations(), 0);
        assert_eq!(t.loop_iterations(300), 19 * 17);
        let body = tiled_body();
        assert!(body.contains("const BM: u32 = 64u;"), "{body}");
        assert!(body.contains("fn linear_tiled_backward_weights("));
    }
}
