//! Every WGSL file of shaders/ parses and validates with naga (no device needed),
//! and every params struct has the same size and field offsets in Rust as naga
//! computes for its WGSL mirror; tile and workgroup constants agree too.

use std::mem::{offset_of, size_of};
use std::path::Path;

use cimnet::gpu::adam::{AdamParams, AdamProblem};
use cimnet::gpu::attention::{AttentionParams, AttentionProblem};
use cimnet::gpu::dropout::{DropoutParams, DropoutSegment};
use cimnet::gpu::gather::{GatherParams, GatherProblem};
use cimnet::gpu::gru::{GruParams, GruProblem};
use cimnet::gpu::heads::{HeadsParams, HeadsProblem};
use cimnet::gpu::linear::{LinearParams, LinearProblem};
use cimnet::gpu::pipelines::params_space;
use cimnet::gpu::Shader;

/// Parse and validate `src`; with the subgroup capability only where `shader`
/// needs it, so a subgroup operation anywhere else fails here.
fn parse(shader: Shader, src: &str) -> naga::Module {
    let name = format!("{}.wgsl", shader.name());
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let caps = if shader.needs_subgroups() {
        naga::valid::Capabilities::SUBGROUP
    } else {
        naga::valid::Capabilities::default()
    };
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    module
}

/// Where a shader's body lives: shaders/NAME.wgsl, or for a generated family the
/// committed copy shaders/generated/NAME.wgsl.
fn shader_path(s: Shader) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let dir = if s.generated() { dir.join("generated") } else { dir };
    dir.join(format!("{}.wgsl", s.name()))
}

#[test]
fn every_shader_module_validates() {
    for shader in Shader::ALL {
        let name = format!("{}.wgsl", shader.name());
        // What the driver compiles: the body behind the shared prelude, with its
        // params as uniforms (GPUs) and as read-only storage (lavapipe).
        let module = parse(shader, &shader.source());
        let storage = params_space(&shader.source(), true);
        assert!(!storage.contains("var<uniform>"), "{name}: a uniform left in the storage form");
        let in_storage = parse(shader, &storage);
        assert_eq!(module.entry_points.len(), in_storage.entry_points.len(), "{name}");
        // A module with one params struct: every kernel starts with its private copy.
        if shader.source().matches("var<uniform> ").count() == 1 {
            let copies = storage.lines().filter(|l| l.trim_end().ends_with("_in;") && l.contains(" = ")).count();
            assert_eq!(copies, in_storage.entry_points.len(), "{name}: a kernel without its params copy");
        }
        // Forward and backward side by side (STYLE.md 1), where the op has a backward.
        let stem = shader.name();
        assert!(module.entry_points.iter().any(|e| e.name.starts_with(stem)), "{name}: no entry point named {stem}_*");
    }
    // Every file of shaders/ (and shaders/generated/) is one of them.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for dir in [root.clone(), root.join("generated")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
                assert!(Shader::ALL.into_iter().any(|s| shader_path(s) == path), "{}: no Shader", path.display());
            }
        }
    }
}

/// The compiled-in bodies are the files; for generated families this is the
/// regeneration check (`CIMNET_REGENERATE=1` rewrites the committed copies).
#[test]
fn compiled_in_sources_match_the_files() {
    for s in Shader::ALL {
        let path = shader_path(s);
        if s.generated() && std::env::var_os("CIMNET_REGENERATE").is_some() {
            std::fs::write(&path, s.body().as_ref()).unwrap();
        }
        let file = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            file == s.body(),
            "{} differs from the compiled-in body{}",
            path.display(),
            if s.generated() { " (regenerate: CIMNET_REGENERATE=1 cargo test --test shaders)" } else { "" }
        );
    }
}

/// naga's (span, [(member, offset)]) of struct `name` in `shader`.
fn wgsl_layout(shader: Shader, name: &str) -> (u32, Vec<(String, u32)>) {
    let m = parse(shader, &shader.source());
    for (_, ty) in m.types.iter() {
        if ty.name.as_deref() == Some(name) {
            if let naga::TypeInner::Struct { members, span } = &ty.inner {
                return (*span, members.iter().map(|mb| (mb.name.clone().unwrap_or_default(), mb.offset)).collect());
            }
        }
    }
    panic!("{}.wgsl has no struct {name}", shader.name());
}

/// Same size, and every field named in Rust sits at naga's offset of the WGSL member
/// with that name; WGSL members that are not padding all have a Rust field.
fn check(shader: Shader, name: &str, size: usize, fields: &[(&str, usize)]) {
    let (span, members) = wgsl_layout(shader, name);
    assert_eq!(size, span as usize, "{name}: Rust size {size} != WGSL span {span}");
    for (f, off) in fields {
        let m = members.iter().find(|(n, _)| n == f).unwrap_or_else(|| panic!("{name}: WGSL has no member {f}"));
        assert_eq!(*off, m.1 as usize, "{name}.{f}: Rust offset {off} != WGSL offset {}", m.1);
    }
    for (n, _) in &members {
        assert!(
            n.starts_with("_pad") || fields.iter().any(|(f, _)| f == n),
            "{name}: WGSL member {n} has no Rust field"
        );
    }
}

macro_rules! layout {
    ($shader:expr, $t:ident, [$($f:ident),* $(,)?]) => {
        check($shader, stringify!($t), size_of::<$t>(), &[$((stringify!($f), offset_of!($t, $f))),*])
    };
}

#[test]
fn params_structs_match_wgsl_layout() {
    for shader in [Shader::Linear, Shader::LinearTiled] {
        layout!(shader, LinearParams, [b, u, k, o, relu, problems, drop, threshold, scale]);
        layout!(shader, LinearProblem, [w_off, b_off, x_off, y_off, stream, r_off, rw, u, len_off, seed]);
    }
    layout!(Shader::Dropout, DropoutParams, [n, segments, threshold, scale, x_off, y_off]);
    layout!(Shader::Dropout, DropoutSegment, [stream, seed, n]);
    layout!(Shader::Adam, AdamParams, [problems, zero_grad, n_max, per_inv]);
    layout!(
        Shader::Adam,
        AdamProblem,
        [offset, n, step, lr, beta1, beta2, eps, bias1, bias2, one_minus_beta1, one_minus_beta2]
    );
    layout!(Shader::Gather, GatherParams, [b, u, problems, d_max, run]);
    layout!(Shader::Gather, GatherProblem, [d, src_off, dst_off, index_off, u, len_off]);
    layout!(Shader::Gru, GruParams, [b, u, h, problems, t0, t1]);
    layout!(Shader::Gru, GruProblem, [w_hh_offset, b_hh_offset, u, len_off]);
    layout!(Shader::GruSg, GruParams, [b, u, h, problems, t0, t1]);
    layout!(Shader::GruSg, GruProblem, [w_hh_offset, b_hh_offset, u, len_off]);
    layout!(Shader::Attention, AttentionParams, [b, u, d, pair, problems]);
    layout!(Shader::AttentionTiled, AttentionParams, [b, u, d, pair, problems]);
    for shader in [Shader::Attention, Shader::AttentionTiled] {
        layout!(
            shader,
            AttentionProblem,
            [x_off, y_off, r_off, rw, r_xy, r_yx, m_off, n_off, o_off, dm_off, dx_off, dy_off, u, len_off]
        );
    }
    layout!(Shader::Heads, HeadsParams, [b, u, d, accumulate, problems, rw_max]);
    layout!(
        Shader::Heads,
        HeadsProblem,
        [
            r_off,
            rw,
            has_sentiment,
            has_emotion,
            ws_off,
            bs_off,
            we_off,
            be_off,
            w_s,
            w_e,
            probs_off,
            dz_off,
            row_loss_off,
            loss_off,
            plain,
            dfeat_off,
            u,
            len_off,
            lab_off
        ]
    );
}

/// Value of the WGSL `const NAME: u32`.
fn wgsl_const(shader: Shader, name: &str) -> u32 {
    let m = parse(shader, &shader.source());
    for (_, c) in m.constants.iter() {
        if c.name.as_deref() == Some(name) {
            if let naga::Expression::Literal(naga::Literal::U32(v)) = m.global_expressions[c.init] {
                return v;
            }
        }
    }
    panic!("{}.wgsl has no u32 const {name}", shader.name());
}

#[test]
fn hand_written_bodies_declare_no_constant_their_launcher_owns() {
    for shader in Shader::ALL {
        let (rust, consts) = shader.constants();
        if shader.generated() || matches!(shader, Shader::Gru | Shader::GruSg | Shader::GruSgTex) {
            assert!(consts.is_empty(), "{}: generated bodies write their own constants", shader.name());
            continue;
        }
        // Every module-scope constant of a hand-written body comes from Rust.
        let body = shader.body();
        let declared: Vec<&str> = body.lines().filter(|l| l.starts_with("const ")).collect();
        assert!(declared.is_empty(), "{}.wgsl declares {declared:?}: list them in {rust} (WGSL_CONSTS)", shader.name());
        // And the module the driver compiles has each with its Rust value
        // (below: each list names the launcher constant it should).
        for c in consts {
            assert_eq!(wgsl_const(shader, c.name), c.value, "{}: {}", shader.name(), c.name);
        }
    }
    use cimnet::gpu::{adam, dropout, gather, linear};
    assert_eq!(wgsl_const(Shader::Linear, "TILE"), linear::TILE);
    assert_eq!(wgsl_const(Shader::Linear, "WTILE"), linear::V4_TILE);
    assert_eq!(wgsl_const(Shader::Linear, "WG_X"), linear::WORKGROUP[0]);
    assert_eq!(wgsl_const(Shader::Linear, "WG_Y"), linear::WORKGROUP[1]);
    assert_eq!(wgsl_const(Shader::Dropout, "WG"), dropout::WORKGROUP);
    assert_eq!(wgsl_const(Shader::Adam, "WG"), adam::WORKGROUP);
    assert_eq!(wgsl_const(Shader::Gather, "WG"), gather::WORKGROUP);
    assert_eq!(wgsl_const(Shader::Gather, "NO_LEN"), gather::NO_LEN);
    assert_eq!(wgsl_const(Shader::Attention, "WG"), cimnet::gpu::attention::WORKGROUP);
    assert_eq!(wgsl_const(Shader::Heads, "C") as usize, cimnet::gpu::heads::CLASSES);
    assert_eq!(wgsl_const(Shader::Gru, "SEQ_PER_WG"), cimnet::gpu::gru::SEQ_PER_WG);
    assert_eq!(wgsl_const(Shader::Gru, "MAX_H"), cimnet::gpu::gru::MAX_H);
    assert_eq!(wgsl_const(Shader::Gru, "UNIT_ITERS"), cimnet::gpu::gru::UNIT_ITERS);
}
