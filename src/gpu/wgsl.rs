//! The WGSL that runs: every module of a kernel family is the shared prelude
//! followed by the family's body. WGSL has no includes or macros, so the
//! prelude is written here from the Rust values it must agree with (the dropout
//! hash of src/cpu/dropout.rs), never copied by hand into a shader. After it
//! come the family's constants (workgroup sizes, tiles, sentinels), written from
//! the Rust constants its launcher dispatches with, so a hand-written body declares
//! none of them and no WGSL constant is kept equal to a Rust twin. Family
//! bodies are the files of shaders/ or, for families generated from parameters,
//! Rust code beside their launcher; `cimnet kernels --dump DIR` writes every
//! module as the driver receives it.

use std::fmt::Write;

use crate::cpu::dropout::{HASH_MULTIPLIERS, HASH_SHIFTS};

/// Functions every module may call: `hash32` / `random24`, bit for bit
/// `cpu::dropout::{hash32, random24}`.
pub fn prelude() -> String {
    let [s0, s1, s2] = HASH_SHIFTS;
    let [m0, m1] = HASH_MULTIPLIERS;
    let mut w = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        w,
        "// ---- prelude (src/gpu/wgsl.rs; generated from src/cpu/dropout.rs) ----\n\
         // lowbias32: the counter-based hash of every dropout mask.\n\
         fn hash32(v: u32) -> u32 {{\n\
         \x20   var x = v;\n\
         \x20   x ^= x >> {s0}u;\n\
         \x20   x *= {m0:#010x}u;\n\
         \x20   x ^= x >> {s1}u;\n\
         \x20   x *= {m1:#010x}u;\n\
         \x20   x ^= x >> {s2}u;\n\
         \x20   return x;\n\
         }}\n\
         \n\
         // 24-bit random value of element `index` of dropout stream `stream` under step seed `seed`.\n\
         fn random24(seed: u32, stream: u32, index: u32) -> u32 {{\n\
         \x20   return hash32(hash32(hash32(seed) ^ stream) ^ index) >> 8u;\n\
         }}\n\
         // ---- end of prelude ----\n\n"
    );
    w
}

/// A module-scope `const NAME: u32` of a family, set from its launcher's Rust value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Const {
    pub name: &'static str,
    pub value: u32,
    /// What it is, written after it as a comment.
    pub doc: &'static str,
}

impl Const {
    pub const fn new(name: &'static str, value: u32, doc: &'static str) -> Self {
        Const { name, value, doc }
    }
}

/// The constants block of a module: one `const` line per entry, from `source`
/// (the launcher's Rust file, named in the block's first line).
fn constants(source: &str, consts: &[Const]) -> String {
    let mut w = String::new();
    if consts.is_empty() {
        return w;
    }
    let _ = writeln!(w, "// ---- constants (from {source}) ----");
    for c in consts {
        // Sentinels such as u32::MAX read best in hex, sizes in decimal.
        let value = if c.value > 0xffff { format!("{:#x}", c.value) } else { c.value.to_string() };
        let _ = writeln!(w, "const {}: u32 = {value}u; // {}", c.name, c.doc);
    }
    let _ = writeln!(w, "// ---- end of constants ----\n");
    w
}

/// A whole module: the family's header and body with the prelude and the family's
/// constants (`consts`, the Rust values of `source`) inserted after the header
/// comment (the leading `//` lines), so the file still opens with what it computes.
pub fn module(body: &str, source: &str, consts: &[Const]) -> String {
    let header_end =
        body.lines().take_while(|l| l.starts_with("//")).map(|l| l.len() + 1).sum::<usize>().min(body.len());
    let (header, rest) = body.split_at(header_end);
    format!("{header}\n{}{}{rest}", prelude(), constants(source, consts))
}

/// `source` with the statement `stmt` (one line, indented as a kernel's body)
/// inserted in every kernel (each `@compute` entry point), after the kernel's
/// first line for which `after` holds (e.g. the line that opens its body). A
/// kernel with no such line is left as it is.
pub fn in_every_kernel(source: &str, after: impl Fn(&str) -> bool, stmt: &str) -> String {
    let mut out = String::with_capacity(source.len() + 1024);
    let mut kernel = false;
    for line in source.split_inclusive('\n') {
        out.push_str(line);
        if line.contains("@compute") {
            kernel = true;
        } else if kernel && after(line.trim_end()) {
            out.push_str(&format!("    {stmt}\n"));
            kernel = false;
        }
    }
    out
}

/// Test support for the generators whose output is committed under shaders/:
/// `body` must equal shaders/`file` (`CIMNET_REGENERATE=1` rewrites the file
/// first; `tests` is the `cargo test --lib` filter that does it).
/// WGSL `fn NAME(e: u32) -> vec4<f32>`: the 4 floats of `what` at element e,
/// read through its vec4 view `view` at any alignment (the quad holding e and,
/// unless e is 4-aligned, the next one, shifted). `view` is an array (`xw4`),
/// or a function of the quad index ending in `(` (`wft4(`, a texture's).
/// Every module that reads rows at odd offsets in quads takes its helpers from
/// here (the linear family's wide kernels, the heads' texture views).
pub fn shifted_quad(name: &str, what: &str, view: &str) -> String {
    let quad = |i: &str| if view.ends_with('(') { format!("{view}{i})") } else { format!("{view}[{i}]") };
    let (lo, hi) = (quad("e / 4u"), quad("e / 4u + 1u"));
    format!(
        "\n// The 4 floats of {what} at element e, from the vec4 view (any alignment).
fn {name}(e: u32) -> vec4<f32> {{
    let lo = {lo};
    let r = e % 4u;
    if (r == 0u) {{
        return lo;
    }}
    let hi = {hi};
    var v = vec4<f32>(lo.w, hi.xyz);
    v = select(v, vec4<f32>(lo.zw, hi.xy), r == 2u);
    return select(v, vec4<f32>(lo.yzw, hi.x), r == 1u);
}}
"
    )
}

#[cfg(test)]
pub(crate) fn assert_committed(file: &str, body: &str, tests: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders").join(file);
    if std::env::var_os("CIMNET_REGENERATE").is_some() {
        std::fs::write(&path, body).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == body, "{} is stale: run CIMNET_REGENERATE=1 cargo test --lib {tests}", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_goes_into_every_kernel_after_its_marker_line() {
        let src = "fn helper() {\n}\n@compute @workgroup_size(8)\nfn a(\n    x: u32) {\n    let p = 1u;\n}\n\
                   @compute @workgroup_size(8)\nfn b() {\n}\n";
        let opened = in_every_kernel(src, |l| l.ends_with('{'), "q = 2u;");
        assert_eq!(opened.matches("    q = 2u;\n").count(), 2, "{opened}");
        assert!(opened.contains("    x: u32) {\n    q = 2u;\n    let p = 1u;"), "{opened}");
        assert!(opened.starts_with("fn helper() {\n}\n"), "not in a helper: {opened}");
        let after_p = in_every_kernel(src, |l| l.starts_with("    let p = "), "q = p;");
        assert!(after_p.contains("    let p = 1u;\n    q = p;\n}"), "{after_p}");
        assert_eq!(after_p.matches("q = p;").count(), 1, "b has no let p: {after_p}");
    }

    #[test]
    fn the_prelude_hash_is_the_cpu_hash_written_out() {
        let p = prelude();
        assert!(p.contains("x ^= x >> 16u;\n    x *= 0x7feb352du;\n    x ^= x >> 15u;\n    x *= 0x846ca68bu;"), "{p}");
        let m = module(
            "// a\n// b\nfn f() {}\n",
            "src/x.rs",
            &[Const::new("WG", 64, "workgroup"), Const::new("NONE", u32::MAX, "none")],
        );
        assert!(m.starts_with("// a\n// b\n\n// ---- prelude"), "{m}");
        assert!(m.contains("// ---- constants (from src/x.rs) ----\nconst WG: u32 = 64u; // workgroup\nconst NONE: u32 = 0xffffffffu; // none\n"), "{m}");
        assert!(m.ends_with("fn f() {}\n"));
    }
}
