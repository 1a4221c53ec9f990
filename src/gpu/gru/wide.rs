//! WGSL of the Wide member (`GruKernel::Wide`): one invocation owns 8 hidden
//! units (two 4-unit halves) for all `SEQ_PER_WG` sequences of its workgroup,
//! so every W_hh vec4 load feeds 16 sequences. The per-sequence code is
//! unrolled here, in Rust, not by loops in WGSL: on llvmpipe every loop
//! iteration counts against the driver's loop budget and a local array indexed
//! by a loop counter goes to scratch memory. Names in the output: `_s`
//! sequence s = 4k + q of the workgroup, `_k` quad k, `_u` half u,
//! `<gate><unit>`.

use std::fmt::Write;

use super::wgsl::{QUADS, SEQ_PER_WG};

/// Units one Wide invocation owns (two vec4 halves).
pub const WIDE_UNITS: u32 = 8;
/// Invocations of one Wide workgroup: MAX_H / WIDE_UNITS.
pub const WIDE_LANES: u32 = 32;
/// Rows and columns of [dW_hh | db_hh] one gru_sg_backward_weights workgroup
/// owns: its 8 octets of 16 x 32 stacked (a narrow tile wastes less of the
/// H + 1 = 201 columns than t8's 64: 224 computed instead of 256).
pub const SG_TILE_ROWS: u32 = 128;
pub const SG_TILE_COLS: u32 = 32;
// The kernel's octets are 2 x 4 tiles of 8 x 8 (16 x 32), 8 of them stacked.
const _: () = assert!(SG_TILE_ROWS == 8 * 16 && SG_TILE_COLS == 32);

const XYZW: [&str; 4] = ["x", "y", "z", "w"];
const GATES: [&str; 3] = ["r", "z", "n"];

/// `k * MAX_H + ` as written in the shader (nothing for quad 0).
fn quad_base(k: u32) -> String {
    match k {
        0 => String::new(),
        1 => "MAX_H + ".to_string(),
        _ => format!("{k}u * MAX_H + "),
    }
}

/// `s0 + s` (just `s0` for s = 0).
fn seq(s: u32) -> String {
    if s == 0 {
        "s0".to_string()
    } else {
        format!("s0 + {s}u")
    }
}

/// gru_forward_wide, gru_backward_wide and gru_backward_weights_t8 (module gru).
pub fn wide() -> String {
    let mut w = String::new();
    forward(&mut w, false, false);
    backward(&mut w, false, false);
    w.push_str(ADD_TILE);
    weights_t8(&mut w);
    w
}

/// The WideSg member (module gru_sg): gru_sg_forward, gru_sg_backward and
/// gru_sg_backward_weights, the Wide kernels with operands shared by subgroup
/// shuffles; with `tex` (module gru_sg_tex, the WideSgTex member) the
/// recurrence reads W_hh and b_hh through the texture `wt` instead of `w4`.
pub fn wide_sg(tex: bool) -> String {
    let mut w = String::new();
    forward(&mut w, true, tex);
    backward(&mut w, true, tex);
    w.push_str(ADD_TILE);
    weights_sg(&mut w, 8, tex);
    w.push('\n');
    weights_sg(&mut w, 32, tex);
    w
}

// Writing to a String cannot fail: the results of writeln! are ignored below.
macro_rules! line {
    ($w:expr, $($arg:tt)*) => {{ let _ = writeln!($w, $($arg)*); }};
}

/// The load of W_hh / b_hh vec4 `idx`: from the storage view `w4`, or with
/// `tex` from the weights' texture (`wt`, src/gpu/texture.rs): the same value.
fn wload(tex: bool, idx: &str) -> String {
    if tex {
        format!("wt({idx})")
    } else {
        format!("w4[{idx}]")
    }
}

/// The extra builtin of a subgroup entry point.
fn lane_arg(sg: bool) -> &'static str {
    if sg {
        ",\n        @builtin(subgroup_invocation_id) sl: u32"
    } else {
        ""
    }
}

fn forward(w: &mut String, sg: bool, tex: bool) {
    if sg {
        line!(w, "// gru_sg_forward: gru_forward_wide with the h_shared reads shared by octets");
        line!(w, "// of subgroup lanes: per 4 columns 24 W + 2 h loads and 16 shuffles.");
    } else {
        line!(w, "// gru_forward_wide: 8 units per invocation (two 4-unit halves j0 and j0 + 4,");
        line!(w, "// each owned when < H): per 4 columns 24 W + 16 h loads for 1536");
        line!(w, "// multiply-adds; workgroup ({WIDE_LANES}, 1, 1).");
    }
    line!(w, "@compute @workgroup_size({WIDE_LANES}, 1, 1)");
    if tex {
        line!(w, "// gru_sg_tex_forward: gru_sg_forward with W_hh and b_hh read through `wt` (the texture).");
    }
    let name = if tex {
        "gru_sg_tex_forward"
    } else if sg {
        "gru_sg_forward"
    } else {
        "gru_forward_wide"
    };
    let lane = lane_arg(sg);
    line!(w, "fn {name}(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>{lane}) {{");
    w.push_str(
        "    let nb = params.b;
    let nh = params.h;
    let p = wid.y;
    let rev = p % 2u == 1u;
    let s0 = wid.x * SEQ_PER_WG;
    let j0 = 8u * lid.x;
    let own_0 = j0 < nh;
    let own_1 = j0 + 4u < nh;
    // A half beyond H computes on a valid unit and stores nothing.
    let jc_0 = min(j0, nh - 4u);
    let jc_1 = min(j0 + 4u, nh - 4u);
    let wo = w_hh_offset(p) / 4u;
    let bo = b_hh_offset(p) / 4u;
    let nh4 = nh / 4u;
",
    );
    for u in 0..2 {
        line!(w, "    let br_{u} = {};", wload(tex, &format!("bo + jc_{u} / 4u")));
        line!(w, "    let bz_{u} = {};", wload(tex, &format!("bo + nh4 + jc_{u} / 4u")));
        line!(w, "    let bn_{u} = {};", wload(tex, &format!("bo + 2u * nh4 + jc_{u} / 4u")));
    }
    w.push_str(
        "    let t0 = params.t0;
    // The problem's own steps: nothing of this chunk past its U.
    let t1 = min(params.t1, problems[p].u);
    if (t0 >= t1) {
        return;
    }
    // h_prev of step t0 (see gru_forward), quad k at h_shared[k * MAX_H + ..].
    for (var k = 0u; k < 4u; k++) {
        let sk = s0 + 4u * k;
        let len = quad_lens(p, sk);
        for (var u = 0u; u < 8u; u++) {
            let ja = j0 + 4u * (u / 4u);
            if (ja < nh) {
                var hv = vec4<f32>(0.0);
                if (t0 > 0u) {
                    for (var q = 0u; q < 4u; q++) {
                        if (t0 < len[q]) {
                            hv[q] = fw4_cache[cache_at(p, C_H, sk + q, position(t0 - 1u, len[q], rev), ja) / 4u][u % 4u];
                        }
                    }
                }
                h_shared[k * MAX_H + j0 + u] = hv;
            }
        }
    }
",
    );
    for k in 0..QUADS {
        line!(w, "    let len_{k} = quad_lens(p, s0 + {}u);", 4 * k);
    }
    line!(w, "    workgroupBarrier();\n");
    line!(w, "    // Row j of W_hh starts at vec4 index wo + j * nh4.");
    for u in 0..2 {
        line!(w, "    let r{u} = wo + jc_{u} * nh4;");
        line!(w, "    let z{u} = wo + (nh + jc_{u}) * nh4;");
        line!(w, "    let n{u} = wo + (2u * nh + jc_{u}) * nh4;");
    }
    line!(w, "    for (var t = t0; t < t1; t++) {{");
    line!(w, "        // <gate><unit>_<quad>: vec4 over the quad's 4 sequences.");
    for g in GATES {
        for j in 0..WIDE_UNITS {
            let vars: Vec<String> = (0..QUADS).map(|k| format!("var a{g}{j}_{k} = vec4<f32>(0.0);")).collect();
            line!(w, "        {}", vars.join(" "));
        }
    }
    for k in 0..QUADS {
        line!(w, "        let live_{k} = any(vec4<u32>(t) < len_{k});");
    }
    line!(w, "        let live = live_0 || live_1 || live_2 || live_3;");
    if sg {
        line!(w, "        // Every lane runs the loop (a shuffle needs the whole octet); lane l of an");
        line!(w, "        // octet reads column c + l % 4 of quads l / 4 and l / 4 + 2, the others");
        line!(w, "        // take them from it.");
        line!(w, "        let n4 = select(0u, nh4, live);");
        line!(w, "        let base = sl & ~7u;");
        line!(w, "        let hla = ((sl & 7u) / 4u) * MAX_H + (sl & 3u);");
    } else {
        line!(w, "        let n4 = select(0u, nh4, live && own_0);");
    }
    line!(w, "        for (var c4 = 0u; c4 < n4; c4++) {{");
    line!(w, "            let c = 4u * c4;");
    let w_row = |g: &str, j: u32| {
        let row = match j % 4 {
            0 => String::new(),
            1 => " + nh4".to_string(),
            m => format!(" + {m}u * nh4"),
        };
        wload(tex, &format!("{g}{}{row} + c4", j / 4))
    };
    if sg {
        owned_loads(w, "            ", &|u| {
            GATES.iter().flat_map(|g| (4 * u..4 * u + 4).map(move |j| (format!("w{g}{j}"), w_row(g, j)))).collect()
        });
    } else {
        for g in GATES {
            for j in 0..WIDE_UNITS {
                line!(w, "            let w{g}{j} = {};", w_row(g, j));
            }
        }
    }
    if sg {
        line!(w, "            let ha = h_shared[hla + c];");
        line!(w, "            let hb = h_shared[hla + 2u * MAX_H + c];");
    }
    line!(w, "            // A quad whose sequences are all done skips its h loads (its sums stay 0).");
    for k in 0..QUADS {
        line!(w, "            if (live_{k}) {{");
        for c in 0..4 {
            let off = if c == 0 { String::new() } else { format!(" + {c}u") };
            if sg {
                let v = if k < 2 { "ha" } else { "hb" };
                line!(w, "                let h{c}_{k} = subgroupShuffle({v}, base + {}u);", 4 * (k % 2) + c);
            } else {
                line!(w, "                let h{c}_{k} = h_shared[{}c{off}];", quad_base(k));
            }
        }
        for g in GATES {
            for j in 0..WIDE_UNITS {
                line!(w, "                a{g}{j}_{k} += mix4(w{g}{j}, h0_{k}, h1_{k}, h2_{k}, h3_{k});");
            }
        }
        line!(w, "            }}");
    }
    line!(w, "        }}");
    for k in 0..QUADS {
        for j in 0..WIDE_UNITS {
            let off = if j % 4 == 0 { String::new() } else { format!(" + {}u", j % 4) };
            line!(w, "        let hp{j}_{k} = h_shared[{}jc_{}{off}];", quad_base(k), j / 4);
        }
    }
    line!(w, "        // Per sequence and half: the 4 units' sums as one vec4 (component q of each).");
    for s in 0..SEQ_PER_WG {
        let (k, c) = (s / 4, XYZW[(s % 4) as usize]);
        for u in 0..2u32 {
            let units = |name: &str| {
                let v: Vec<String> = (4 * u..4 * u + 4).map(|j| format!("{name}{j}_{k}.{c}")).collect();
                format!("vec4({})", v.join(", "))
            };
            line!(
                w,
                "        let hq{s}_{u} = forward_seq4(p, min({}, nb - 1u), t, len_{k}.{c}, rev, jc_{u}, own_{u} && {} < nb,",
                seq(s),
                seq(s)
            );
            line!(w, "            {}, {}, {},", units("ar"), units("az"), units("an"));
            line!(w, "            {}, br_{u}, bz_{u}, bn_{u});", units("hp"));
        }
    }
    line!(w, "        // Everyone has read h_prev before anyone overwrites it.");
    line!(w, "        workgroupBarrier();");
    for u in 0..2 {
        line!(w, "        if (own_{u}) {{");
        for k in 0..QUADS {
            for (c, x) in XYZW.iter().enumerate() {
                let off = if c == 0 { String::new() } else { format!(" + {c}u") };
                let v: Vec<String> = (4 * k..4 * k + 4).map(|s| format!("hq{s}_{u}.{x}")).collect();
                line!(w, "            h_shared[{}jc_{u}{off}] = vec4({});", quad_base(k), v.join(", "));
            }
        }
        line!(w, "        }}");
    }
    line!(w, "        workgroupBarrier();");
    line!(w, "    }}");
    line!(w, "}}\n");
}

fn backward(w: &mut String, sg: bool, tex: bool) {
    if sg {
        line!(w, "// gru_sg_backward: gru_backward_wide with the gh reads of phase B shared by");
        line!(w, "// octets of subgroup lanes: per 4 rows 8 W + 2 gh loads and 16 shuffles.");
    } else {
        line!(w, "// gru_backward_wide: 8 units per invocation (two 4-unit halves j0 and j0 + 4,");
        line!(w, "// each owned when < H), so phase B loads 8 W + 16 gh vec4 per 4 rows for 512");
        line!(w, "// multiply-adds; workgroup ({WIDE_LANES}, 1, 1).");
    }
    line!(w, "@compute @workgroup_size({WIDE_LANES}, 1, 1)");
    if tex {
        line!(w, "// gru_sg_tex_backward: gru_sg_backward with W_hh read through `wt` (the texture).");
    }
    let name = if tex {
        "gru_sg_tex_backward"
    } else if sg {
        "gru_sg_backward"
    } else {
        "gru_backward_wide"
    };
    let lane = lane_arg(sg);
    line!(w, "fn {name}(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>{lane}) {{");
    w.push_str(
        "    let nb = params.b;
    let nh = params.h;
    let p = wid.y;
    // The problem's own U: nothing of this chunk past it.
    let nu = problems[p].u;
    if (params.t0 >= nu) {
        return;
    }
    let rev = p % 2u == 1u;
    let s0 = wid.x * SEQ_PER_WG;
    let j0 = 8u * lid.x;
    let own_0 = j0 < nh;
    let own_1 = j0 + 4u < nh;
    let jc_0 = min(j0, nh - 4u);
    let jc_1 = min(j0 + 4u, nh - 4u);
    let nh4 = nh / 4u;
    let n3 = 3u * nh;
    let wo = w_hh_offset(p) / 4u;
",
    );
    for k in 0..QUADS {
        line!(w, "    let len_{k} = quad_lens(p, s0 + {}u);", 4 * k);
    }
    line!(w, "    // Sequence s (clamped into the batch); ok_s_u: it exists and half u is owned.");
    for s in 0..SEQ_PER_WG {
        line!(w, "    let b_{s} = min({}, nb - 1u);", seq(s));
        for u in 0..2 {
            line!(w, "    let ok_{s}_{u} = own_{u} && {} < nb;", seq(s));
        }
    }
    line!(w, "    // dh arriving from the step processed after this one, per sequence and");
    line!(w, "    // half (vec4 over 4 units); crosses dispatches through bw4_carry.");
    for s in 0..SEQ_PER_WG {
        for u in 0..2 {
            line!(w, "    var c_{s}_{u} = vec4<f32>(0.0);");
        }
    }
    line!(w, "    if (params.t1 < nu) {{");
    for s in 0..SEQ_PER_WG {
        for u in 0..2 {
            line!(w, "        c_{s}_{u} = bw4_carry[((p * nb + b_{s}) * nh + jc_{u}) / 4u];");
        }
    }
    line!(w, "    }}");
    line!(w, "    let n34 = 3u * nh4;");
    line!(w, "    for (var t = min(params.t1, nu); t > params.t0; ) {{");
    line!(w, "        t -= 1u;");
    for s in 0..SEQ_PER_WG {
        let (k, c) = (s / 4, XYZW[(s % 4) as usize]);
        for u in 0..2 {
            line!(
                w,
                "        c_{s}_{u} = backward_seq4(p, b_{s}, t, len_{k}.{c}, rev, jc_{u}, ok_{s}_{u}, c_{s}_{u});"
            );
        }
    }
    w.push_str(
        "        // gh of this step is complete for all units before phase B reads it.
        storageBarrier();
        // Phase B: dh_prev[j] += sum_row W_hh[row, j] gh[row] for the 8 units,
        // 4 rows at a time (one W vec4 per row and half, gh of 4 rows one vec4
        // per sequence). Done sequences read their zero padding row.
",
    );
    for s in 0..SEQ_PER_WG {
        let (k, c) = (s / 4, XYZW[(s % 4) as usize]);
        line!(w, "        let g_{s} = (row_of(p, b_{s}, position(t, len_{k}.{c}, rev)) * n3) / 4u;");
    }
    for k in 0..QUADS {
        line!(w, "        let live_{k} = any(vec4<u32>(t) < len_{k});");
    }
    line!(w, "        let live = live_0 || live_1 || live_2 || live_3;");
    if sg {
        line!(w, "        // Every lane runs phase B (a shuffle needs the whole octet); lane l of an");
        line!(w, "        // octet loads gh of sequences 2l and 2l + 1, the others take it from there.");
        line!(w, "        let n4 = select(0u, n34, live);");
        line!(w, "        let base = sl & ~7u;");
        for (name, off) in [("a", ""), ("b", " + 1u")] {
            line!(w, "        let s{name} = s0 + 2u * (sl & 7u){off};");
            line!(w, "        let len{name} = select(0u, seq_len(p, min(s{name}, nb - 1u)), s{name} < nb);");
            line!(
                w,
                "        let g{name} = (row_of(p, min(s{name}, nb - 1u), position(t, len{name}, rev)) * n3) / 4u;"
            );
        }
    } else {
        line!(w, "        let n4 = select(0u, n34, live && own_0);");
    }
    for s in 0..SEQ_PER_WG {
        for u in 0..2 {
            line!(w, "        var a_{s}_{u} = vec4<f32>(0.0);");
        }
    }
    line!(w, "        for (var r4 = 0u; r4 < n4; r4++) {{");
    line!(w, "            let w = wo + 4u * r4 * nh4;");
    let w_row = |name: &str, r: usize, u: u32| {
        let row = match r {
            0 => String::new(),
            1 => "nh4 + ".to_string(),
            m => format!("{m}u * nh4 + "),
        };
        (format!("w{name}_{u}"), wload(tex, &format!("w + {row}jc_{u} / 4u")))
    };
    let rows = |u: u32| ["a", "b", "c", "d"].iter().enumerate().map(|(r, name)| w_row(name, r, u)).collect();
    if sg {
        owned_loads(w, "            ", &rows);
    } else {
        for u in 0..2 {
            for (name, load) in rows(u) {
                line!(w, "            let {name} = {load};");
            }
        }
    }
    if sg {
        line!(w, "            let qa = bw4_gh[ga + r4];");
        line!(w, "            let qb = bw4_gh[gb + r4];");
    }
    line!(w, "            // A quad whose sequences are all done skips its gh loads (zero rows).");
    for k in 0..QUADS {
        line!(w, "            if (live_{k}) {{");
        for s in 4 * k..4 * k + 4 {
            if sg {
                let v = if s % 2 == 0 { "qa" } else { "qb" };
                line!(w, "                let q_{s} = subgroupShuffle({v}, base + {}u);", s / 2);
            } else {
                line!(w, "                let q_{s} = bw4_gh[g_{s} + r4];");
            }
            for u in 0..2 {
                line!(
                    w,
                    "                a_{s}_{u} += wa_{u} * q_{s}.x + wb_{u} * q_{s}.y + wc_{u} * q_{s}.z + wd_{u} * q_{s}.w;"
                );
            }
        }
        line!(w, "            }}");
    }
    line!(w, "        }}");
    for s in 0..SEQ_PER_WG {
        for u in 0..2 {
            line!(w, "        c_{s}_{u} += a_{s}_{u};");
        }
    }
    line!(w, "        // Phase A of the next step writes other rows of gh: no barrier here.");
    line!(w, "    }}");
    line!(w, "    if (params.t0 > 0u) {{");
    for s in 0..SEQ_PER_WG {
        for u in 0..2 {
            line!(w, "        if (ok_{s}_{u}) {{ bw4_carry[((p * nb + b_{s}) * nh + jc_{u}) / 4u] = c_{s}_{u}; }}");
        }
    }
    line!(w, "    }}");
    line!(w, "}}\n");
}

/// The W_hh loads `(name, load)` of each half u (0, 1), made only by the lanes
/// that own the half (`own_u`); the others keep zeros. In the subgroup kernels
/// every lane runs the loop for the shuffles, but at H = 200 the last SIMD row
/// of 8 lanes owns units in one lane only: on llvmpipe a storage load is a loop
/// over the active lanes, so the other seven skip theirs (a lane's sums are its
/// own units' only, and a lane that owns no unit stores nothing).
fn owned_loads(w: &mut String, indent: &str, loads: &dyn Fn(u32) -> Vec<(String, String)>) {
    for u in 0..2 {
        let list = loads(u);
        for (name, _) in &list {
            line!(w, "{indent}var {name} = vec4<f32>(0.0);");
        }
        line!(w, "{indent}if (own_{u}) {{");
        for (name, load) in &list {
            line!(w, "{indent}    {name} = {load};");
        }
        line!(w, "{indent}}}");
    }
}

/// [dW_hh | db_hh] accumulation of one tile row (both weight-gradient kernels).
const ADD_TILE: &str = "// [dW_hh | db_hh][row, col..col+3] += v for problem p: the 4 columns of W_hh
// when col < H, db_hh[row] += v.x when col is the bias column H; nothing when
// col > H or !ok.
fn add_tile_t8(p: u32, row: u32, col: u32, ok: bool, v: vec4<f32>) {
    let nh = params.h;
    if (!ok || col > nh) {
        return;
    }
    if (col == nh) {
        ww_grads[b_hh_offset(p) + row] += v.x;
        return;
    }
    let o = w_hh_offset(p) + row * nh + col;
    ww_grads[o] += v.x;
    ww_grads[o + 1u] += v.y;
    ww_grads[o + 2u] += v.z;
    ww_grads[o + 3u] += v.w;
}

";

fn weights_t8(w: &mut String) {
    w.push_str(
        "// [dW_hh | db_hh] += gh^T [h_prev | 1] with an 8x8 tile per invocation: rows
// row0..row0+7 (two vec4 of gh per (b, i)), columns col0..col0+7 as two
// 4-column chunks, each real (< H), the bias column (== H, H % 4 == 0) or
// empty (> H); loads are clamped to valid addresses and masked, so the loop
// body has no branch. Same order of summation as gru_backward_weights.
@compute @workgroup_size(8, 8, 1)
fn gru_backward_weights_t8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let nb = params.b;
    let nh = params.h;
    let n3 = 3u * nh;
    let p = gid.z;
    let rev = p % 2u == 1u;
    let row0 = gid.y * 8u;
    let col0 = gid.x * 8u;
    if (row0 >= n3 || col0 > nh) {
        return;
    }
    let row1 = min(row0 + 4u, n3 - 4u);
    let real0 = col0 < nh;
    let real1 = col0 + 4u < nh;
    let one0 = select(vec4<f32>(0.0), vec4<f32>(1.0, 0.0, 0.0, 0.0), col0 == nh);
    let one1 = select(vec4<f32>(0.0), vec4<f32>(1.0, 0.0, 0.0, 0.0), col0 + 4u == nh);
    let cc0 = min(col0, nh - 4u) / 4u;
    let cc1 = min(col0 + 4u, nh - 4u) / 4u;
",
    );
    tile_accumulators(w, 8);
    w.push_str(
        "    // Row (b, i) of gh is row_of(p, b, i) and h_prev's is cache_at(p, C_H, b, ip,
    // 0): both b * q.u + i past a base, spelled out here so the loop reads
    // q.u (a storage load) once, not twice per row.
    let qu = problems[p].u;
    let nh4 = nh / 4u;
    let n34 = n3 / 4u;
    let gh_base = row_of(p, 0u, 0u) * n34;
    let h_base = cache_at(p, C_H, 0u, 0u, 0u) / 4u;
    let r0 = row0 / 4u;
    let r1 = row1 / 4u;
    for (var b = 0u; b < nb; b++) {
        let len = seq_len(p, b);
        let gb = gh_base + b * qu * n34;
        let hb = h_base + b * qu * nh4;
        for (var i = 0u; i < len; i++) {
            let g0 = ww4_gh[gb + i * n34 + r0];
            let g1 = ww4_gh[gb + i * n34 + r1];
            let first = select(i == 0u, i + 1u == len, rev);
            // h_prev position (i itself where there is none: read, then masked).
            let ip = select(select(i - 1u, i + 1u, rev), i, first);
            let cb = hb + ip * nh4;
            let l0 = ww4_cache[cb + cc0];
            let l1 = ww4_cache[cb + cc1];
            let h0 = select(one0, l0, real0 && !first);
            let h1 = select(one1, l1, real1 && !first);
",
    );
    tile_sums(w, 8);
    // Its workgroups start inside the 3H rows (it returned early otherwise).
    tile_stores(w, "true", 8);
}

/// gru_sg_backward_weights: gru_backward_weights_t8's 8 x 8 tiles (stacked 128 x 32
/// per workgroup, `SG_TILE_ROWS` x `SG_TILE_COLS`), with the
/// operands fetched once per octet of subgroup lanes and handed round by
/// subgroupShuffle instead of each lane loading its own.
/// `tex`: the WideSgTex form (gru_sg_tex_backward_weights*): gh and h_prev
/// read through texture copies of gh and the cache (`gh_t4`, `cache_t4`).
fn weights_sg(w: &mut String, rr: u32, tex: bool) {
    let text = if rr == 8 {
        "// gru_sg_backward_weights: the same 8x8 tile per invocation and the same
// order of summation as gru_backward_weights_t8 (bit for bit its result), but
// the workgroup's 64 lanes are 8 octets of subgroup lanes, octet o a 2 x 4
// block of tiles (16 rows x 32 columns), the octets stacked: a workgroup owns
// {SG_TILE_ROWS} rows x {SG_TILE_COLS} columns of [dW_hh | db_hh] (t8: 64 x 64), so at H 200
// the grid computes 640 x 224 outputs for 600 x 201 (t8: 640 x 256). Per
// (b, i) the octet needs 4 vec4 of gh and 8 vec4 of h_prev, so each lane loads
// one of each (lanes 4..7 repeat the gh of 0..3) and takes its 2 + 2 from
// their owners with subgroupShuffle: 2 loads per lane and step instead of
// t8's 4. The lane's place in the workgroup is subgroup_id * subgroup_size +
// its subgroup lane, so an octet is always 8 lanes of one subgroup whatever
// order the device gives invocations to subgroups. No lane returns early: a
// shuffle needs the whole octet. The GPU's lane tile (its 16 vec4
// accumulators stay in registers); a software device runs the _wide one.
@compute @workgroup_size(64, 1, 1)
fn gru_sg_backward_weights("
    } else {
        "// gru_sg_backward_weights_wide: gru_sg_backward_weights with 32 x 8 outputs
// per lane (64 vec4 accumulators; the same sums in the same order, so bit for
// bit its result and t8's): octet o owns 64 rows x 32 columns, the workgroup's
// 2 octets (16 lanes) its {SG_TILE_ROWS} x {SG_TILE_COLS} (the same grid). Per (b, i) the
// octet needs 16 vec4 of gh and 8 of h_prev: each lane loads two gh quads and
// one h_prev quad and takes its 8 + 2 by subgroupShuffle: 3 loads per lane
// for 256 multiply-adds where the 8 x 8 tile has 2 for 64. For a software
// device (DeviceProfile::wide_lane_tiles): on llvmpipe each storage load is a
// loop over the SIMD lanes while the accumulators spill to the stack either
// way, so fewer loads per multiply-add wins (docs/perf-notes.md round 8); on a
// GPU 256 accumulators would spill.
@compute @workgroup_size(16, 1, 1)
fn gru_sg_backward_weights_wide("
    };
    let rows = SG_TILE_ROWS.to_string();
    let mut text = text.replace("{SG_TILE_ROWS}", &rows).replace("{SG_TILE_COLS}", &SG_TILE_COLS.to_string());
    if tex {
        let note = "// (WideSgTex: gh and h_prev through texture copies of gh and the cache, the same sums.)\n@compute";
        text =
            text.replacen("@compute", note, 1).replace("fn gru_sg_backward_weights", "fn gru_sg_tex_backward_weights");
    }
    w.push_str(&text);
    let (gh, close) = if tex { ("gh_t4(", ")") } else { ("ww4_gh[", "]") };
    let hload = |at: &str| if tex { format!("cache_t4({at})") } else { format!("ww4_cache[{at}]") };
    w.push_str(
        "@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32) {
    let li = sg_id * sg_size + sl;
    let nb = params.b;
    let nh = params.h;
    let n3 = 3u * nh;
    let p = wid.z;
    let rev = p % 2u == 1u;
    let o = li / 8u;
    let l = sl & 7u;
    // The subgroup lane of this octet holding operand j: base + j.
    let base = sl & ~7u;
",
    );
    // The lane's rr / 4 gh quads start at octet quad (rr / 4) (l / 4): in lane
    // base + that (one quad per lane) or base + half of it (two per lane).
    line!(w, "    let ga = base + {}u * (l / 4u);", if rr == 8 { 2 } else { rr / 8 });
    line!(w, "    let ha = base + 2u * (l % 4u);");
    line!(w, "    // This lane's tile and the octet's rows ({}) and columns (32).", 2 * rr);
    line!(w, "    let orow = wid.y * {SG_TILE_ROWS}u + o * {}u;", 2 * rr);
    line!(w, "    let ocol = wid.x * {SG_TILE_COLS}u;");
    line!(w, "    let row0 = orow + {rr}u * (l / 4u);");
    line!(w, "    let col0 = ocol + 8u * (l % 4u);");
    if rr == 8 {
        w.push_str(
            "    // What this lane loads for the octet: gh rows orow + 4 (l % 4) .. (clamped;
    // rows past 3H are never stored) and h_prev columns ocol + 4 l ..: real
    // (< H), the bias column (== H: the constant 1) or none (> H: 0).
    let rl = min(orow + 4u * (l % 4u), n3 - 4u) / 4u;
",
        );
    } else {
        w.push_str(
            "    // What this lane loads for the octet: gh rows orow + 8 l .. + 7 (clamped;
    // rows past 3H are never stored) and h_prev columns ocol + 4 l ..: real
    // (< H), the bias column (== H: the constant 1) or none (> H: 0).
    let rla = min(orow + 8u * l, n3 - 4u) / 4u;
    let rlb = min(orow + 8u * l + 4u, n3 - 4u) / 4u;
",
        );
    }
    w.push_str(
        "    let cl = ocol + 4u * l;
    let real = cl < nh;
    let one = select(vec4<f32>(0.0), vec4<f32>(1.0, 0.0, 0.0, 0.0), cl == nh);
    let cc = min(cl, nh - 4u) / 4u;
",
    );
    tile_accumulators(w, rr);
    w.push_str(
        "    let qu = problems[p].u;
    let nh4 = nh / 4u;
    let n34 = n3 / 4u;
    let gh_base = row_of(p, 0u, 0u) * n34;
    let h_base = cache_at(p, C_H, 0u, 0u, 0u) / 4u;
    for (var b = 0u; b < nb; b++) {
        let len = seq_len(p, b);
        let gb = gh_base + b * qu * n34;
        let hb = h_base + b * qu * nh4;
        for (var i = 0u; i < len; i++) {
",
    );
    if rr == 8 {
        line!(w, "            let gv = {gh}gb + i * n34 + rl{close};");
    } else {
        line!(w, "            let gva = {gh}gb + i * n34 + rla{close};");
        line!(w, "            let gvb = {gh}gb + i * n34 + rlb{close};");
    }
    line!(w, "            let first = select(i == 0u, i + 1u == len, rev);");
    line!(w, "            let ip = select(select(i - 1u, i + 1u, rev), i, first);");
    line!(w, "            let hv = select(one, {}, real && !first);", hload("hb + ip * nh4 + cc"));
    // gh quad m of the lane: quad (rr / 4) (l / 4) + m of the octet; with two
    // per lane it sits in lane base + 4 (l / 4) + m / 2, slot m % 2.
    for m in 0..rr / 4 {
        let (v, j) = if rr == 8 { ("gv", m) } else { (["gva", "gvb"][(m % 2) as usize], m / 2) };
        let off = if j == 0 { String::new() } else { format!(" + {j}u") };
        line!(w, "            let g{m} = subgroupShuffle({v}, ga{off});");
    }
    line!(w, "            let h0 = subgroupShuffle(hv, ha);");
    line!(w, "            let h1 = subgroupShuffle(hv, ha + 1u);");
    tile_sums(w, rr);
    line!(w, "    let rows0 = row0 < n3;");
    tile_stores(w, "rows0", rr);
}

/// The rr x 8 tile of [dW_hh | db_hh] a weight-gradient lane owns: x<r> / y<r>
/// hold row row0 + r at columns col0 .. col0 + 3 / col0 + 4 .. col0 + 7.
fn tile_accumulators(w: &mut String, rr: u32) {
    for r in 0..rr {
        line!(w, "    var x{r} = vec4<f32>(0.0); var y{r} = vec4<f32>(0.0);");
    }
}

/// Row (b, i)'s products into the tile (g<m>: its gh rows 4m .. 4m + 3; h0, h1:
/// its 8 h_prev columns), then the end of the (b, i) loops.
fn tile_sums(w: &mut String, rr: u32) {
    for r in 0..rr {
        let g = format!("g{}.{}", r / 4, XYZW[(r % 4) as usize]);
        line!(w, "            x{r} += {g} * h0;");
        line!(w, "            y{r} += {g} * h1;");
    }
    line!(w, "        }}");
    line!(w, "    }}");
}

/// The tile added into the gradients, its first 4 rows where `rows0` holds,
/// each later 4 where they lie inside the 3H rows (3H is a multiple of 4).
fn tile_stores(w: &mut String, rows0: &str, rr: u32) {
    for m in 1..rr / 4 {
        line!(w, "    let rows{m} = row0 + {}u < n3;", 4 * m);
    }
    for r in 0..rr {
        let ok = if r < 4 { rows0.to_string() } else { format!("rows{}", r / 4) };
        line!(w, "    add_tile_t8(p, row0 + {r}u, col0, {ok}, x{r});");
        line!(w, "    add_tile_t8(p, row0 + {r}u, col0 + 4u, {ok}, y{r});");
    }
    line!(w, "}}");
}
