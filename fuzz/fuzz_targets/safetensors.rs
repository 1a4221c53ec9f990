//! Any bytes as a model.safetensors.
#![no_main]

use cimnet::params::ParamStore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ParamStore::from_safetensors(data, std::path::Path::new("fuzz.safetensors"));
});
