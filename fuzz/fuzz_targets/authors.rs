//! Any bytes as the authors' directory: the input is cut into text.npz,
//! audio.npz and video.npz at two offsets taken from its first four bytes.
#![no_main]

use std::sync::OnceLock;

use cimnet::data::authors;
use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory")).path();
    let rest = &data[4..];
    let a = (usize::from(u16::from_le_bytes([data[0], data[1]]))).min(rest.len());
    let b = (a + usize::from(u16::from_le_bytes([data[2], data[3]]))).min(rest.len());
    for (name, part) in [("text.npz", &rest[..a]), ("audio.npz", &rest[a..b]), ("video.npz", &rest[b..])] {
        let path = dir.join(name);
        if part.is_empty() {
            let _ = std::fs::remove_file(&path);
        } else {
            std::fs::write(&path, part).expect("write a fuzz file");
        }
    }
    let _ = authors::read_dir(dir);
});
