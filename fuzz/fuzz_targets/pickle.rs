//! cargo-fuzz target for the restricted pickle reader and the MMSA / MulT
//! conversion on top of it: any input must give a value or an error, never a
//! panic, an abort or unbounded allocation. Seed corpus: tests/fixtures/*.pkl.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cimnet::data::pickle::parse(data);
    if let Ok((ds, _report)) = cimnet::data::pickled::from_bytes(data, Path::new("fuzz.pkl")) {
        assert!(ds.validate().is_ok(), "an accepted dataset must validate");
    }
});
