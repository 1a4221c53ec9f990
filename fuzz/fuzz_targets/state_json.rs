//! Any bytes as checkpoint/state.json.
#![no_main]

use cimnet::train::run::TrainState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<TrainState>(data);
});
