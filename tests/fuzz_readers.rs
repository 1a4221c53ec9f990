//! A bounded, deterministic fuzz run of every reader, inside `cargo test` so CI
//! exercises them each time (the open-ended runs are the cargo-fuzz targets in
//! fuzz/). Small valid files of each format are mutated by a seeded generator
//! (bit flips, truncations, inserted and removed bytes, huge sizes written over
//! length fields, numbers in text made huge, random bytes), and every reader
//! must return Ok or a clean Err, never panic. A single bit flip in an npz must
//! moreover never be read as different data: either the same dataset or an error.

mod fixtures;
use fixtures::*;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use cimnet::data::{authors, mosi, native};
use cimnet::npy;
use cimnet::npz::NpzIn;
use cimnet::params::ParamStore;
use cimnet::train::run::TrainState;

/// Which mutation `mutate` applied.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mutation {
    BitFlip,
    Truncate,
    Insert,
    Remove,
    HugeWord,
    HugeNumber,
    Random,
}

fn mutate(valid: &[u8], rng: &mut ChaCha8Rng) -> (Mutation, Vec<u8>) {
    let mut b = valid.to_vec();
    let kind = match rng.gen_range(0..7) {
        0 => Mutation::BitFlip,
        1 => Mutation::Truncate,
        2 => Mutation::Insert,
        3 => Mutation::Remove,
        4 => Mutation::HugeWord,
        5 => Mutation::HugeNumber,
        _ => Mutation::Random,
    };
    match kind {
        Mutation::BitFlip if !b.is_empty() => {
            let i = rng.gen_range(0..b.len());
            b[i] ^= 1 << rng.gen_range(0..8);
        }
        Mutation::Truncate => b.truncate(rng.gen_range(0..=b.len())),
        Mutation::Insert => {
            let i = rng.gen_range(0..=b.len());
            let ins: Vec<u8> = (0..rng.gen_range(1..24)).map(|_| rng.gen()).collect();
            b.splice(i..i, ins);
        }
        Mutation::Remove if !b.is_empty() => {
            let i = rng.gen_range(0..b.len());
            let n = rng.gen_range(1..=24.min(b.len() - i));
            b.drain(i..i + n);
        }
        Mutation::HugeWord => {
            let w = [2usize, 4, 8][rng.gen_range(0..3)];
            if b.len() >= w {
                let i = rng.gen_range(0..=b.len() - w);
                let v = [u64::MAX, u64::MAX / 2, 1 << 40, 0x7fff_ffff, 0xffff_ffff, 0x8000][rng.gen_range(0..6)];
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
        }
        Mutation::HugeNumber => {
            // A digit in text (an .npy shape, a CSV field, a JSON number) becomes a huge number.
            let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
            if !digits.is_empty() {
                let i = digits[rng.gen_range(0..digits.len())];
                let big = ["99999999999999999999", "18446744073709551615", "4294967296", "1e308", "-1"];
                b.splice(i..=i, big[rng.gen_range(0..big.len())].bytes());
            }
        }
        _ => b = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
    }
    (kind, b)
}

/// Run `f` on `cases` mutations of `valid`; any panic fails the test with the case to replay.
fn fuzz(what: &str, valid: &[u8], seed: u64, cases: usize, mut f: impl FnMut(&[u8], Mutation)) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in 0..cases {
        let (kind, bytes) = mutate(valid, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| f(&bytes, kind))).is_err() {
            panic!("{what}: case {case} ({kind:?}, {} bytes, seed {seed}) panicked", bytes.len());
        }
    }
}

#[test]
fn npy_header_parser_never_panics() {
    for (descr, shape, data) in npy_samples() {
        let valid = npy_bytes(descr, &shape, &data);
        fuzz("npy", &valid, 1, 600, |b, _| {
            let mut r = std::io::Cursor::new(b);
            if let Ok(h) = npy::read_header(&mut r, b.len() as u64) {
                let _ = npy::read_elements(&mut r, &h, |e| npy::to_f64(&h.descr, e));
            }
        });
    }
}

#[test]
fn native_npz_reader_never_panics_and_a_bit_flip_is_never_other_data() {
    let ds = small_dataset();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.npz");
    native::write(&ds, &path).unwrap();
    let deflated = std::fs::read(&path).unwrap();
    let stored = stored_native(&ds);
    for (label, valid, seed) in [("deflated", &deflated, 2), ("stored", &stored, 3)] {
        let back = native::read_bytes("small.npz", valid.clone()).expect("the valid file reads");
        assert_eq!(back.splits, ds.splits, "{label}: the unmutated file reads back as written");
        let mut accepted_changed = Vec::new();
        fuzz(label, valid, seed, 900, |b, kind| {
            if let Ok(got) = native::read_bytes("small.npz", b.to_vec()) {
                if kind == Mutation::BitFlip && got.splits != ds.splits {
                    let at = (0..b.len()).find(|&i| b[i] != valid[i]).unwrap_or(0);
                    let context = String::from_utf8_lossy(&valid[at.saturating_sub(24)..(at + 24).min(b.len())]);
                    accepted_changed.push(format!("byte {at} ({context:?})"));
                }
            }
            // Every member through the raw readers too.
            if let Ok(mut npz) = NpzIn::from_bytes("small.npz", b.to_vec()) {
                for name in npz.names() {
                    let _ = npz.read_float_opt(&name);
                    let _ = npz.read_int_opt(&name);
                    let _ = npz.read_strings_opt(&name);
                }
            }
        });
        assert!(accepted_changed.is_empty(), "{label}: bit flips read as other data: {accepted_changed:?}");
    }
}

#[test]
fn authors_directory_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let files = authors_files();
    for (k, (name, valid)) in files.iter().enumerate() {
        for (n, b) in &files {
            std::fs::write(dir.path().join(n), b).unwrap();
        }
        authors::read_dir(dir.path()).expect("the valid directory reads");
        fuzz(name, valid, 10 + k as u64, 150, |b, _| {
            std::fs::write(dir.path().join(name), b).unwrap();
            let _ = authors::read_dir(dir.path());
        });
    }
}

#[test]
fn mosi_csv_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let files = mosi_files();
    let write_all = |d: &Path| {
        for (n, b) in &files {
            std::fs::write(d.join(n), b).unwrap();
        }
    };
    write_all(dir.path());
    mosi::prepare(dir.path(), 0.5, 0).expect("the valid CSV directory reads");
    for (k, (name, valid)) in files.iter().enumerate() {
        write_all(dir.path());
        fuzz(name, valid.as_bytes(), 20 + k as u64, 60, |b, _| {
            std::fs::write(dir.path().join(name), b).unwrap();
            let _ = mosi::prepare(dir.path(), 0.5, 0);
        });
    }
}

#[test]
fn batch_npz_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.npz");
    let lens = [1usize, 2];
    let members = vec![
        ("len".to_string(), npy_bytes("<i4", &[2], &i32_bytes(&[1, 2]))),
        ("text".to_string(), npy_bytes("<f4", &[2, 2, 3], &f32_bytes(&[0.5; 12]))),
        ("sentiment".to_string(), npy_bytes("<f4", &[2, 2], &f32_bytes(&[1.0, 0.0, -1.0, 2.0]))),
        ("emotion".to_string(), npy_bytes("<f4", &[2, 2, 6], &f32_bytes(&[0.5; 24]))),
    ];
    let valid = stored_zip(&members);
    std::fs::write(&path, &valid).unwrap();
    assert_eq!(cimnet::batch::Batch::read_npz(&path).expect("the valid batch reads").len, lens);
    fuzz("batch npz", &valid, 35, 300, |b, _| {
        std::fs::write(&path, b).unwrap();
        let _ = cimnet::batch::Batch::read_npz(&path);
    });
}

#[test]
fn safetensors_reader_never_panics() {
    let p = ParamStore::init(&small_config(), 4);
    let valid = p.to_safetensors();
    let file = Path::new("model.safetensors");
    assert_eq!(ParamStore::from_safetensors(&valid, file).unwrap(), p);
    fuzz("safetensors", &valid, 30, 1200, |b, _| {
        let _ = ParamStore::from_safetensors(b, file);
    });
    // The header alone, where the sizes live, mutated harder.
    let n = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    fuzz("safetensors header", &valid[..n], 31, 600, |b, _| {
        let mut whole = b.to_vec();
        whole.extend_from_slice(&valid[n..]);
        let _ = ParamStore::from_safetensors(&whole, file);
    });
}

#[test]
fn state_json_reader_never_panics() {
    // A finite best_valid_loss: the default (infinity) is written as `null` and
    // does not read back (a finding of this test, reported; state.json is
    // written only after an epoch, when the loss is finite).
    let s = TrainState {
        epochs_done: 3,
        step: 17,
        best_epoch: Some(2),
        best_score: Some(0.75),
        best_valid_loss: 0.5,
        ..Default::default()
    };
    let valid = serde_json::to_vec_pretty(&s).unwrap();
    assert_eq!(serde_json::from_slice::<TrainState>(&valid).unwrap(), s);
    fuzz("state.json", &valid, 40, 800, |b, _| {
        let _ = serde_json::from_slice::<TrainState>(b);
    });
}
