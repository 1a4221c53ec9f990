//! Any bytes as the MOSI CSV directory: the input is split at NUL bytes into
//! the nine files, in the order below (missing ones are empty).
#![no_main]

use std::sync::OnceLock;

use cimnet::data::mosi;
use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

const FILES: [&str; 9] = [
    "transcripts.csv",
    "text_train.csv",
    "text_test.csv",
    "text_train0.csv",
    "text_test0.csv",
    "audio_train0.csv",
    "audio_test0.csv",
    "video_train0.csv",
    "video_test0.csv",
];

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory")).path();
    let mut parts = data.split(|&b| b == 0);
    for name in FILES {
        std::fs::write(dir.join(name), parts.next().unwrap_or(&[])).expect("write a fuzz file");
    }
    let _ = mosi::prepare(dir, 0.5, 0);
});
