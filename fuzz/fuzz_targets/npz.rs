//! Any bytes as a native .npz: the dataset reader and every raw array reader.
#![no_main]

use cimnet::data::native;
use cimnet::npz::NpzIn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = native::read_bytes("fuzz.npz", data.to_vec());
    if let Ok(mut npz) = NpzIn::from_bytes("fuzz.npz", data.to_vec()) {
        for name in npz.names() {
            let _ = npz.read_float_opt(&name);
            let _ = npz.read_f32_opt(&name);
            let _ = npz.read_int_opt(&name);
            let _ = npz.read_strings_opt(&name);
        }
    }
});
