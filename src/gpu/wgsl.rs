//! The WGSL that runs: every module of a kernel family is the shared prelude
//! followed by the family's body. WGSL has no includes or macros, so the
//! prelude is written here from the Rust values it must agree with (the dropout
//! hash of src/cpu/dropout.rs), never copied by hand into a shader. Family
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

/// A whole module: the family's header and body with the prelude inserted after
/// the header comment (the leading `//` lines), so the file still opens with
/// what it computes.
pub fn module(body: &str) -> String {
    let header_end =
        body.lines().take_while(|l| l.starts_with("//")).map(|l| l.len() + 1).sum::<usize>().min(body.len());
    let (header, rest) = body.split_at(header_end);
    format!("{header}\n{}{rest}", prelude())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_hash_is_the_cpu_hash_written_out() {
        let p = prelude();
        assert!(p.contains("x ^= x >> 16u;\n    x *= 0x7feb352du;\n    x ^= x >> 15u;\n    x *= 0x846ca68bu;"), "{p}");
        let m = module("// a\n// b\nfn f() {}\n");
        assert!(m.starts_with("// a\n// b\n\n// ---- prelude"), "{m}");
        assert!(m.ends_with("fn f() {}\n"));
    }
}
