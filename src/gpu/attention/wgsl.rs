//! The generated member of the attention family: the workgroup-tiled CIM unit
//! (`AttentionKernel::Tiled`). Its tile sizes live in [`TILED`], the values the
//! launcher dispatches with and checks against the device's limits; the WGSL
//! constants are written from them (no WGSL constant kept equal to a Rust twin).
//! The output is committed as shaders/generated/attention_tiled.wgsl;
//! tests/shaders.rs fails when regenerating changes it
//! (`CIMNET_REGENERATE=1 cargo test --test shaders` rewrites it).

use std::fmt::Write;

/// One tiling of the attention kernels: a workgroup of `wg` invocations owns
/// `rows` query rows of one (video, direction); every key row of the video
/// (at most `keys`) is staged in workgroup memory `chunk` features at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionTile {
    pub wg: u32,
    pub rows: u32,
    pub keys: u32,
    pub chunk: u32,
}

impl AttentionTile {
    /// Invocations that share one row's softmax reduction.
    pub const fn lanes(self) -> u32 {
        self.wg / self.rows
    }

    /// Scores (keys) per invocation and row: keys lid + wg q, q < this.
    pub const fn keys_per_invocation(self) -> u32 {
        self.keys / self.wg
    }

    /// Bytes of workgroup memory the module declares (every entry point's tiles
    /// counted, whichever of them a driver charges a pipeline for): the length word,
    /// the query chunk, two key chunks, the score tile, two coefficient tiles and
    /// the reduction partials.
    pub const fn shared_bytes(self) -> u32 {
        4 * (1 + self.rows * self.chunk + 2 * self.keys * self.chunk + 3 * self.rows * self.keys + self.wg)
    }

    /// An upper bound of the loop iterations one invocation runs at padded
    /// length `u` (<= keys) and width `d`, for llvmpipe's loop budget: per
    /// feature chunk the staging loops, the score loops (chunk x keys per
    /// invocation x (rows + 1)) and the weighted sum over keys, twice (the
    /// forward's two passes over the chunks), plus the row reductions.
    pub fn loop_iterations(self, u: u32, d: u32) -> u32 {
        let chunks = d.div_ceil(self.chunk);
        let staging = (self.keys * self.chunk).div_ceil(self.wg) + (self.rows * self.chunk).div_ceil(self.wg);
        let scores = self.chunk * (self.keys_per_invocation() * (self.rows + 1) + 1);
        let per_chunk = 2 * staging + scores + self.keys + 4;
        let rows = 4 * self.keys + 2 * self.rows * u.max(d) / self.wg + 4 * self.lanes() + 16;
        chunks.saturating_mul(per_chunk).saturating_add(rows)
    }
}

/// The member's tiles: 64 invocations, 8 query rows per workgroup (8 lanes per
/// row's softmax), up to 128 keys, 8 features per staged chunk. With
/// rows x chunk = 64 every invocation owns one (row, feature) output per chunk.
/// 21 KiB of workgroup memory in all: over WebGPU's default 16 KiB, under what
/// discrete GPUs offer (48-64 KiB); a device with less runs `flat`.
pub const TILED: AttentionTile = AttentionTile { wg: 64, rows: 8, keys: 128, chunk: 8 };

// The body below assumes these (one output per invocation and chunk; whole
// key strides; whole rows of lanes).
const _: () = assert!(TILED.rows * TILED.chunk == TILED.wg);
const _: () = assert!(TILED.keys.is_multiple_of(TILED.wg) && TILED.wg.is_multiple_of(TILED.rows));

/// The WGSL mirrors of `AttentionParams` and `AttentionProblem` (src/gpu/attention.rs),
/// declared by both members: the tiled body below and the flat one (`attention/flat.rs`).
/// tests/shaders.rs pins their layouts against the Rust structs.
pub const STRUCTS: &str = "struct AttentionParams {
    b: u32,
    u: u32,        // U_max: the largest u of the problems (sizes the grids)
    d: u32,
    pair: u32,     // 1: X != Y, both directions; 0: self-attention att(X, X), direction 0 only
    problems: u32, // entries of the problem list
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// One problem: element offsets into the bound buffers, the model's R row, and its batch.
// Every block is laid out with the problem's own u (rows t = b * u + i).
struct AttentionProblem {
    x_off: u32,   // X (B, u, D) in feat
    y_off: u32,   // Y (B, u, D) in feat (= x_off for self-attention)
    r_off: u32,   // the model's R (B, u, rw) in r and dr
    rw: u32,      // row width of the model's R
    r_xy: u32,    // column of att(X, Y) within a row of R
    r_yx: u32,    // column of att(Y, X) (unused when pair = 0)
    m_off: u32,   // M (B, u, u) (the flat member's scratch)
    n_off: u32,   // N (2, B, u, u)
    o_off: u32,   // O (2, B, u, D)
    dm_off: u32,  // dM scratch (2, B, u, u)
    dx_off: u32,  // dX (B, u, D) in dfeat
    dy_off: u32,  // dY (B, u, D) in dfeat (unused when pair = 0)
    u: u32,       // the problem's own U (its batch's longest video), 1..=the launch's U
    len_off: u32, // its B lengths at len[len_off + b]
    _pad0: u32,
    _pad1: u32,
}
";

/// The module body (without the prelude): header, constants from [`TILED`], the kernels.
pub fn tiled_body() -> String {
    let t = TILED;
    let mut w = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        w,
        "// attention_tiled.wgsl: the workgroup-tiled member of the attention family\n\
         // (AttentionKernel::Tiled). GENERATED by src/gpu/attention/wgsl.rs from its tile sizes;\n\
         // do not edit (tests/shaders.rs fails when regenerating changes this file).\n\
         // The same CIM unit as attention.wgsl (the `flat` member; its header has the math and\n\
         // the gradient formulas), the same saved N (2, B, U, U) and O (2, B, U, D), the same\n\
         // dM scratch and bindings for the backward, so either member's backward follows\n\
         // either member's forward. M is not written (the scores stay in workgroup memory).\n\
         //   attention_tiled_forward          N, O and the R slices       grid (U/TQ, B, problems x dirs)\n\
         //   attention_tiled_backward_scores  dM = N * (dN - sum_j N dN)  grid (U/TQ, B, problems x dirs)\n\
         //   attention_tiled_backward         dX, dY (+=)                 grid (U/TQ, B, problems x dirs)\n\
         //\n\
         // Problems: as in attention.wgsl, one launch is one pair kind over `problems`\n\
         // problems (one per model with that pair); the problem list (binding 1) holds each\n\
         // one's offsets of X, Y in the ONE feat arena, of its R block (rw, r_xy, r_yx), of\n\
         // the saved N, O and dM, and of dX, dY in the ONE dfeat arena, and its own batch:\n\
         // u (<= the launch's U = U_max, which only sizes the grid) and len_off (lengths at\n\
         // len[len_off + b]); its blocks are laid out with its own u, as alone at U = u, so\n\
         // models of different seeds share the launch. Grid z = problem x dirs + dir; tiles\n\
         // past a problem's u return at once; per problem the workgroups and their arithmetic\n\
         // are a one-problem launch's at U = u (the same bits), and K models' problems in one\n\
         // launch give the GPU K times the workgroups in flight.\n\
         //\n\
         // Dispatch: a workgroup of WG = {wg} invocations owns TQ = {tq} query rows i of one\n\
         // video b and direction (the backward: of one output, z = 0 dX, z = 1 dY). The key\n\
         // rows j < len (at most KEYS = {keys}) are staged in workgroup memory DC = {dc}\n\
         // features at a time, with the TQ query rows' chunk; invocation lid then\n\
         // accumulates the scores (r, j = lid + WG q) of every row r, each staged key\n\
         // feature feeding TQ products. The softmax (and its backward's row sum) is a\n\
         // workgroup reduction: LANES = {lanes} invocations per row take every LANES-th key,\n\
         // then every invocation combines the row's LANES partials in lane order. The\n\
         // weighted sums give one (row, feature) output per invocation and chunk.\n\
         // The backward's dX_i (dY_i alike, roles swapped) is a GEMM over keys j with the\n\
         // coefficients dM[i, j] + dM'[j, i] and N'[j, i] staged per tile (TQ x KEYS each);\n\
         // every output element is one invocation's sum over j in order (no atomics, no\n\
         // races: deterministic, the same bits every run).\n\
         // Why on a discrete GPU: B * U/TQ * dirs workgroups of {wg} invocations (the flat\n\
         // member's softmax has one invocation per row, its backward scores one per row\n\
         // doing U * D work), and every global load of a key row is reused TQ times\n\
         // from workgroup memory; the forward is one launch instead of three. On llvmpipe\n\
         // barriers and workgroup memory cost more than they save, and idle lanes at short\n\
         // videos (len < 64) are not free (docs/perf-notes.md).\n\
         // Needs U <= KEYS, {shared} bytes of workgroup memory and, on llvmpipe, the\n\
         // loop budget (AttentionTile::loop_iterations); else the launcher runs `flat`.\n\
         //\n\
         // Bindings (0 p, 1 problem list, 2 feat in every entry point):\n\
         //   attention_tiled_forward:         3 len, 4 n rw, 5 o rw, 6 r rw\n\
         //   attention_tiled_backward_scores: 3 n, 4 dr, 5 len, 6 dm rw\n\
         //   attention_tiled_backward:        3 n, 4 o, 5 dr, 6 dm, 7 len, 8 dfeat rw\n\
         // Letters: B, U, D, R (rw); dir 0 = att(X, Y) with Q = X, V = Y; dir 1 = att(Y, X), Q = Y, V = X.\n\n",
        wg = t.wg,
        tq = t.rows,
        keys = t.keys,
        dc = t.chunk,
        lanes = t.lanes(),
        shared = t.shared_bytes(),
    );
    let _ = writeln!(w, "const WG: u32 = {}u;", t.wg);
    let _ = writeln!(w, "const TQ: u32 = {}u;", t.rows);
    let _ = writeln!(w, "const KEYS: u32 = {}u;", t.keys);
    let _ = writeln!(w, "const DC: u32 = {}u;", t.chunk);
    let _ = writeln!(w, "const LANES: u32 = {}u;", t.lanes());
    let _ = writeln!(w, "const KPI: u32 = {}u; // keys per invocation and row", t.keys_per_invocation());
    w.push('\n');
    w.push_str(STRUCTS);
    w.push_str(BODY);
    w
}

const BODY: &str = r#"
// Shared by the three entry points (the same bindings in each).
@group(0) @binding(0) var<uniform> pa: AttentionParams;
@group(0) @binding(1) var<storage, read> qa: array<AttentionProblem>;
@group(0) @binding(2) var<storage, read> fa: array<f32>; // the feat arena: X at x_off, Y at y_off

var<workgroup> len_w: u32;
var<workgroup> tile_q: array<f32, TQ * DC>;     // the query rows' chunk (Q, or dout * Q)
var<workgroup> tile_v: array<f32, KEYS * DC>;   // the key rows' chunk (V)
var<workgroup> tile_s: array<f32, TQ * KEYS>;   // scores, then N (forward); dN (backward)
var<workgroup> partial: array<f32, WG>;         // one row reduction's partials, LANES per row
var<workgroup> coef_a: array<f32, TQ * KEYS>;   // backward: dM_own[i, j] + dM_other[j, i]
var<workgroup> coef_b: array<f32, TQ * KEYS>;   // backward: N_other[j, i]
var<workgroup> tile_w: array<f32, KEYS * DC>;   // backward: dout_other_j * V_j

// Q (the gate) and V (the keys and values) of problem q's direction dir at element idx.
fn q_of(q: AttentionProblem, dir: u32, idx: u32) -> f32 {
    return select(fa[q.y_off + idx], fa[q.x_off + idx], dir == 0u);
}

fn v_of(q: AttentionProblem, dir: u32, idx: u32) -> f32 {
    return select(fa[q.x_off + idx], fa[q.y_off + idx], dir == 0u);
}

fn r_col(q: AttentionProblem, dir: u32) -> u32 {
    return select(q.r_yx, q.r_xy, dir == 0u);
}

// Grid z = problem x dirs + dir.
fn dirs_of(p: AttentionParams) -> u32 {
    return select(1u, 2u, p.pair != 0u);
}

// Stage V rows j < l, features [c0, c0 + DC), of video `base` (zero past D).
fn stage_keys(p: AttentionParams, q: AttentionProblem, dir: u32, base: u32, l: u32, c0: u32, lid: u32) {
    for (var k = lid; k < l * DC; k += WG) {
        let c = c0 + k % DC;
        let ok = c < p.d;
        tile_v[k] = select(0.0, v_of(q, dir, select(0u, (base + k / DC) * p.d + c, ok)), ok);
    }
}

// Accumulate the staged chunk into the scores acc[r * KPI + q] of keys j = lid + WG q < l
// (keys past the video are skipped: whole SIMD groups of them at short videos).
fn accumulate_scores(acc: ptr<function, array<f32, TQ * KPI>>, lid: u32, l: u32) {
    for (var q = 0u; q < KPI; q++) {
        let j = lid + WG * q;
        if (j < l) {
            for (var c = 0u; c < DC; c++) {
                let v = tile_v[j * DC + c];
                for (var r = 0u; r < TQ; r++) {
                    (*acc)[r * KPI + q] += tile_q[r * DC + c] * v;
                }
            }
        }
    }
}

fn store_scores(acc: ptr<function, array<f32, TQ * KPI>>, lid: u32) {
    for (var q = 0u; q < KPI; q++) {
        for (var r = 0u; r < TQ; r++) {
            tile_s[r * KEYS + lid + WG * q] = (*acc)[r * KPI + q];
        }
    }
}

// ---- attention_tiled_forward ----
@group(0) @binding(3) var<storage, read> lenf: array<u32>;
@group(0) @binding(4) var<storage, read_write> nf: array<f32>;
@group(0) @binding(5) var<storage, read_write> outf: array<f32>;
@group(0) @binding(6) var<storage, read_write> rf: array<f32>;

@compute @workgroup_size(WG)
fn attention_tiled_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = pa;
    let i0 = wg.x * TQ;
    let b = wg.y;
    let q = qa[wg.z / dirs_of(p)];
    let dir = wg.z % dirs_of(p);
    let u = q.u; // the problem's own U: its rows are b * u + i
    if (i0 >= u) {
        return; // a tile past the problem's rows (the grid covers U_max)
    }
    if (lid == 0u) {
        len_w = min(lenf[q.len_off + b], min(u, KEYS));
    }
    let l = workgroupUniformLoad(&len_w);
    let base = b * u;                // first row of video b
    let nrow0 = (dir * p.b + b) * u; // first row of (dir, b)'s (U, U) block of N
    let obase = dir * p.b * u;       // first row of direction dir's O
    let roff = r_col(q, dir);
    if (i0 >= l) {
        // Padded rows only: N rows, O and the R slice are zero.
        for (var k = lid; k < TQ * u; k += WG) {
            let i = i0 + k / u;
            if (i < u) {
                nf[q.n_off + (nrow0 + i) * u + k % u] = 0.0;
            }
        }
        for (var k = lid; k < TQ * p.d; k += WG) {
            let t = base + i0 + k / p.d;
            if (i0 + k / p.d < u) {
                outf[q.o_off + (obase + t) * p.d + k % p.d] = 0.0;
                rf[q.r_off + t * q.rw + roff + k % p.d] = 0.0;
            }
        }
        return;
    }

    // Scores M[i0 + r, j] (j = lid + WG q), the sum over features in order.
    var acc: array<f32, TQ * KPI>;
    for (var c0 = 0u; c0 < p.d; c0 += DC) {
        for (var k = lid; k < TQ * DC; k += WG) {
            let i = i0 + k / DC;
            let c = c0 + k % DC;
            let ok = i < l && c < p.d;
            tile_q[k] = select(0.0, q_of(q, dir, select(0u, (base + i) * p.d + c, ok)), ok);
        }
        stage_keys(p, q, dir, base, l, c0, lid);
        workgroupBarrier();
        accumulate_scores(&acc, lid, l);
        workgroupBarrier();
    }
    store_scores(&acc, lid);
    workgroupBarrier();

    // Softmax of row r over j < l: LANES invocations per row, partials combined in lane order.
    let r = lid / LANES;
    let lane = lid % LANES;
    let i = i0 + r;
    let srow = r * KEYS;
    var mx = -3.0e38;
    for (var j = lane; j < l; j += LANES) {
        mx = max(mx, tile_s[srow + j]);
    }
    partial[lid] = mx;
    workgroupBarrier();
    mx = partial[r * LANES];
    for (var k = 1u; k < LANES; k++) {
        mx = max(mx, partial[r * LANES + k]);
    }
    workgroupBarrier();
    var s = 0.0;
    for (var j = lane; j < l; j += LANES) {
        let e = exp(tile_s[srow + j] - mx);
        tile_s[srow + j] = e;
        s += e;
    }
    partial[lid] = s;
    workgroupBarrier();
    s = 0.0;
    for (var k = 0u; k < LANES; k++) {
        s += partial[r * LANES + k];
    }
    let inv = 1.0 / s;
    for (var j = lane; j < u; j += LANES) {
        var n = 0.0;
        if (i < l && j < l) {
            n = tile_s[srow + j] * inv;
        }
        if (j < l) {
            tile_s[srow + j] = n;
        }
        if (i < u) {
            nf[q.n_off + (nrow0 + i) * u + j] = n;
        }
    }
    workgroupBarrier();

    // O = N V, out = O * Q: invocation (rr, cc) owns one feature of one row per chunk.
    let rr = lid / DC;
    let cc = lid % DC;
    let io = i0 + rr;
    let t = base + io;
    for (var c0 = 0u; c0 < p.d; c0 += DC) {
        stage_keys(p, q, dir, base, l, c0, lid);
        workgroupBarrier();
        let c = c0 + cc;
        if (io < u && c < p.d) {
            var o = 0.0;
            var out = 0.0;
            if (io < l) {
                for (var j = 0u; j < l; j++) {
                    o += tile_s[rr * KEYS + j] * tile_v[j * DC + cc];
                }
                out = o * q_of(q, dir, t * p.d + c);
            }
            outf[q.o_off + (obase + t) * p.d + c] = o;
            rf[q.r_off + t * q.rw + roff + c] = out;
        }
        workgroupBarrier();
    }
}

// ---- attention_tiled_backward_scores ----
@group(0) @binding(3) var<storage, read> ns: array<f32>;
@group(0) @binding(4) var<storage, read> drs: array<f32>;
@group(0) @binding(5) var<storage, read> lens: array<u32>;
@group(0) @binding(6) var<storage, read_write> dms: array<f32>;

@compute @workgroup_size(WG)
fn attention_tiled_backward_scores(@builtin(workgroup_id) wg: vec3<u32>,
                                   @builtin(local_invocation_index) lid: u32) {
    let p = pa;
    let i0 = wg.x * TQ;
    let b = wg.y;
    let q = qa[wg.z / dirs_of(p)];
    let dir = wg.z % dirs_of(p);
    let u = q.u; // the problem's own U: its rows are b * u + i
    if (i0 >= u) {
        return; // a tile past the problem's rows (the grid covers U_max)
    }
    if (lid == 0u) {
        len_w = min(lens[q.len_off + b], min(u, KEYS));
    }
    let l = workgroupUniformLoad(&len_w);
    let base = b * u;
    let nrow0 = (dir * p.b + b) * u;
    let roff = r_col(q, dir);
    if (i0 >= l) {
        for (var k = lid; k < TQ * u; k += WG) {
            let i = i0 + k / u;
            if (i < u) {
                dms[q.dm_off + (nrow0 + i) * u + k % u] = 0.0;
            }
        }
        return;
    }

    // dN[i0 + r, j] = (dout_i * Q_i) . V_j, staged like the forward's scores.
    var acc: array<f32, TQ * KPI>;
    for (var c0 = 0u; c0 < p.d; c0 += DC) {
        for (var k = lid; k < TQ * DC; k += WG) {
            let i = i0 + k / DC;
            let c = c0 + k % DC;
            let ok = i < l && c < p.d;
            let dro = drs[select(0u, q.r_off + (base + i) * q.rw + roff + c, ok)];
            tile_q[k] = select(0.0, dro * q_of(q, dir, select(0u, (base + i) * p.d + c, ok)), ok);
        }
        stage_keys(p, q, dir, base, l, c0, lid);
        workgroupBarrier();
        accumulate_scores(&acc, lid, l);
        workgroupBarrier();
    }
    store_scores(&acc, lid);
    workgroupBarrier();

    // dM[i, j] = N[i, j] (dN[i, j] - sum_j N dN): the row sum as a workgroup reduction.
    let r = lid / LANES;
    let lane = lid % LANES;
    let i = i0 + r;
    let srow = r * KEYS;
    let nrow = (nrow0 + i) * u;
    var s = 0.0;
    if (i < l) {
        for (var j = lane; j < l; j += LANES) {
            s += ns[q.n_off + nrow + j] * tile_s[srow + j];
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    s = 0.0;
    for (var k = 0u; k < LANES; k++) {
        s += partial[r * LANES + k];
    }
    if (i < u) {
        for (var j = lane; j < u; j += LANES) {
            var g = 0.0;
            if (i < l && j < l) {
                g = ns[q.n_off + nrow + j] * (tile_s[srow + j] - s);
            }
            dms[q.dm_off + nrow + j] = g;
        }
    }
}

// ---- attention_tiled_backward ----
@group(0) @binding(3) var<storage, read> nb: array<f32>;
@group(0) @binding(4) var<storage, read> ob: array<f32>;
@group(0) @binding(5) var<storage, read> drb: array<f32>;
@group(0) @binding(6) var<storage, read> dmb: array<f32>;
@group(0) @binding(7) var<storage, read> lenb: array<u32>;
@group(0) @binding(8) var<storage, read_write> dfb: array<f32>; // the dfeat arena: dX at dx_off, dY at dy_off

// The values of output k's GEMM: Y for dX (k = 0), X for dY (k = 1); self-attention has y_off = x_off.
fn values_of(q: AttentionProblem, k: u32, idx: u32) -> f32 {
    return select(fa[q.x_off + idx], fa[q.y_off + idx], k == 0u);
}

@compute @workgroup_size(WG)
fn attention_tiled_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = pa;
    let i0 = wg.x * TQ;
    let b = wg.y;
    let q = qa[wg.z / dirs_of(p)];
    let k = wg.z % dirs_of(p); // 0: dX (own direction 0), 1: dY (own direction 1)
    let u = q.u;
    if (i0 >= u) {
        return;
    }
    if (lid == 0u) {
        len_w = min(lenb[q.len_off + b], min(u, KEYS));
    }
    let l = workgroupUniformLoad(&len_w);
    if (i0 >= l) {
        return; // padded rows get no gradient
    }
    // dP_i = dout_i * O_i + sum_j (dM[i, j] + dM'[j, i]) V_j + sum_j N'[j, i] dout'_j V_j, with
    // the own direction k and the other direction (1 - k; self-attention: 0 both).
    let other = select(0u, 1u - k, p.pair != 0u);
    let base = b * u;
    let own0 = (k * p.b + b) * u;
    let oth0 = (other * p.b + b) * u;
    let roff_own = r_col(q, k);
    let roff_oth = r_col(q, other);
    for (var e = lid; e < TQ * l; e += WG) {
        let r = e / l;
        let j = e % l;
        let i = i0 + r;
        var a = 0.0;
        var n = 0.0;
        if (i < l) {
            a = dmb[q.dm_off + (own0 + i) * u + j] + dmb[q.dm_off + (oth0 + j) * u + i];
            n = nb[q.n_off + (oth0 + j) * u + i];
        }
        coef_a[r * KEYS + j] = a;
        coef_b[r * KEYS + j] = n;
    }

    let rr = lid / DC;
    let cc = lid % DC;
    let io = i0 + rr;
    let t = base + io;
    for (var c0 = 0u; c0 < p.d; c0 += DC) {
        for (var e = lid; e < l * DC; e += WG) {
            let tj = base + e / DC;
            let c = c0 + e % DC;
            let ok = c < p.d;
            let v = select(0.0, values_of(q, k, select(0u, tj * p.d + c, ok)), ok);
            let dro = select(0.0, drb[select(0u, q.r_off + tj * q.rw + roff_oth + c, ok)], ok);
            tile_v[e] = v;
            tile_w[e] = dro * v;
        }
        workgroupBarrier();
        let c = c0 + cc;
        if (io < l && c < p.d) {
            let e = t * p.d + c;
            var g = drb[q.r_off + t * q.rw + roff_own + c] * ob[q.o_off + k * p.b * u * p.d + e];
            for (var j = 0u; j < l; j++) {
                g += coef_a[rr * KEYS + j] * tile_v[j * DC + cc] + coef_b[rr * KEYS + j] * tile_w[j * DC + cc];
            }
            if (k == 0u) {
                dfb[q.dx_off + e] += g;
            } else {
                dfb[q.dy_off + e] += g;
            }
        }
        workgroupBarrier();
    }
}
"#;
