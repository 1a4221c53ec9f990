//! `data prepare-pickle`: pickles written by Python's pickle + numpy
//! (tests/fixtures/make_pickles.py) in MMSA's and MulT's layouts, protocols
//! 2, 4 and 5, numpy 1 and 2 globals; hand-computed averages; every bad
//! input a clear error; and a bounded fuzz of seeded mutations.

use std::path::{Path, PathBuf};

use cimnet::data::pickle::{self, Fault};
use cimnet::data::pickled::{self, PickleError, PickleReport};
use cimnet::data::{native, Dataset, SplitName};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn prepare(name: &str) -> (Dataset, PickleReport) {
    pickled::prepare(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn err(name: &str) -> String {
    match pickled::prepare(&fixture(name)) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} does not mention {p:?}");
    }
}

/// (id, len, text, audio, video, sentiment) of a split's videos.
type Want<'a> = (&'a str, &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

fn check_split(ds: &Dataset, split: SplitName, want: &[Want]) {
    let got = ds.split(split);
    assert_eq!(got.len(), want.len(), "{split}: video count");
    for (v, (id, text, audio, video, sent)) in got.iter().zip(want) {
        assert_eq!(v.id, *id, "{split}: video order");
        assert_eq!(v.len, sent.len(), "{split} {id}: length");
        assert_eq!(v.features[0].as_deref(), Some(*text), "{split} {id}: text");
        assert_eq!(v.features[1].as_deref(), Some(*audio), "{split} {id}: audio");
        assert_eq!(v.features[2].as_deref(), Some(*video), "{split} {id}: video");
        assert_eq!(v.sentiment, *sent, "{split} {id}: sentiment");
        assert!(v.emotion.is_none());
    }
}

// MMSA train: vA$_$2 (file row 0), vA$_$0 (row 1), vB$_$1 (row 2); see make_pickles.py.
// text averages the non-zero rows: row 0 [1,2],[3,4] -> [2,3]; row 1 [5,5]; row 2 [2,0],[4,6] -> [3,3].
// audio row 0 is 1, -inf, 5: -inf counts as 0 -> 6/3 = 2. vision row 2 is all zero -> empty -> 0.
// sentiment 3.5 is clamped to 3.
#[test]
fn mmsa_aligned_protocol2_numpy1_averages_non_padding_rows_and_regroups_by_clip() {
    let (ds, rep) = prepare("mmsa_aligned_p2_numpy1.pkl");
    assert_eq!(ds.dims, [2, 1, 1]);
    assert!(!ds.has_emotion);
    // Aligned: no stored lengths, so audio row 1 (2, 4, 0) averages its two non-zero rows: 3.
    check_split(
        &ds,
        SplitName::Train,
        &[("vA", &[5., 5., 2., 3.], &[3., 2.], &[3., 1.5], &[-1.0, 2.5]), ("vB", &[3., 3.], &[9.], &[0.], &[3.0])],
    );
    check_split(&ds, SplitName::Valid, &[("vC", &[1., 1.], &[1.], &[1.], &[0.5])]);
    check_split(&ds, SplitName::Test, &[("vD", &[2., 2.], &[2.], &[2.], &[-0.5])]);
    assert_eq!(rep.layout, "mmsa");
    let train = &rep.splits[0];
    assert_eq!((train.utterances, train.videos, train.sentiment_clamped), (3, 2, 1));
    let [t, a, v] = [0, 1, 2].map(|m| &train.modalities[m]);
    assert_eq!((t.rows.as_str(), t.rows_averaged, t.empty_utterances), ("non-padding rows", 5, 0));
    assert_eq!((a.rows_averaged, a.non_finite_zeroed), (3 + 2 + 1, 1));
    assert_eq!((v.rows_averaged, v.empty_utterances), (3, 1));
    assert!(rep.emotions.starts_with("absent"));
    for k in ["raw_text", "text_bert", "classification_labels"] {
        assert!(rep.ignored_keys.iter().any(|i| i == k), "{k} not reported as unused: {:?}", rep.ignored_keys);
    }
}

#[test]
fn mmsa_unaligned_uses_stored_lengths_same_in_protocols_4_and_5() {
    let (ds4, rep) = prepare("mmsa_unaligned_p4.pkl");
    let (ds5, _) = prepare("mmsa_unaligned_p5.pkl");
    assert_eq!(ds4.splits, ds5.splits);
    // audio_lengths [3, 3, 1]: row 1 averages 2, 4 and the zero third row -> 2 (not 3 as by non-padding rows);
    // vision_lengths [2, 1, 0]: row 0 -> 1.5, row 1 -> 3, row 2 -> empty.
    check_split(
        &ds4,
        SplitName::Train,
        &[("vA", &[5., 5., 2., 3.], &[2., 2.], &[3., 1.5], &[-1.0, 2.5]), ("vB", &[3., 3.], &[9.], &[0.], &[3.0])],
    );
    let a = &rep.splits[0].modalities[1];
    assert_eq!((a.rows.as_str(), a.rows_averaged), ("stored audio_lengths", 7));
    assert_eq!(rep.splits[0].modalities[2].empty_utterances, 1);
}

// MulT train: ids (v1, 10.5), (v1, 2.25), (v2, 0.0): v1 is ordered by start time, row 1 first.
// Row 0: text [0,0] is padding, [1,3] -> [1,3]; audio [0] padding, [-inf] real -> 0; vision [6].
#[test]
fn mult_layout_protocols_2_and_4_order_by_start_time() {
    let (ds2, rep) = prepare("mult_p2_numpy1.pkl");
    let (ds4, _) = prepare("mult_p4.pkl");
    assert_eq!(ds2.splits, ds4.splits);
    assert_eq!(rep.layout, "mult");
    check_split(
        &ds2,
        SplitName::Train,
        &[("v1", &[3., 3., 1., 3.], &[2., 0.], &[1., 6.], &[-2.0, 1.0]), ("v2", &[1., 1.], &[2.], &[5.], &[0.0])],
    );
    assert_eq!(rep.splits[0].modalities[1].non_finite_zeroed, 1);
    assert_eq!(rep.splits[0].ids_without_clip, 0);
}

#[test]
fn output_round_trips_through_the_native_format() {
    let (ds, _) = prepare("mult_p4.pkl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mult.npz");
    native::write(&ds, &out).unwrap();
    let back = Dataset::load(&out).unwrap();
    assert_eq!(back.splits, ds.splits);
    assert_eq!(back.dims, ds.dims);
}

#[test]
fn a_forbidden_global_is_refused_and_nothing_runs() {
    let msg = err("evil_os_system_p4.pkl");
    assert_mentions(&msg, &["evil_os_system_p4.pkl", "system", "not allowed", "never runs code"]);
    let bytes = std::fs::read(fixture("evil_os_system_p4.pkl")).unwrap();
    let e = pickle::parse(&bytes).unwrap_err();
    assert!(matches!(e.fault, Fault::Forbidden { ref name, .. } if name == "system"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    for name in ["mmsa_aligned_p2_numpy1.pkl", "mmsa_unaligned_p5.pkl", "mult_p4.pkl"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in 0..bytes.len() {
            let e = pickled::from_bytes(&bytes[..cut], Path::new(name)).err();
            let msg = e.map(|e| e.to_string()).unwrap_or_else(|| panic!("{name} cut at {cut} was accepted"));
            assert!(msg.starts_with(name), "{msg}");
        }
        let msg = pickled::from_bytes(&bytes[..bytes.len() - 40], Path::new(name)).err().unwrap().to_string();
        assert_mentions(&msg, &[name, "truncated"]);
    }
}

#[test]
fn bad_layouts_name_the_file_the_key_path_and_the_utterance() {
    let msg = err("bad_dim_p4.pkl");
    assert_mentions(&msg, &["bad_dim_p4.pkl", "valid/text", "3-dimensional", "2 in train"]);
    let msg = err("bad_nan_label_p4.pkl");
    assert_mentions(&msg, &["bad_nan_label_p4.pkl", "train/regression_labels", "utterance 1", "vA", "NaN"]);
    let msg = err("bad_length_p4.pkl");
    assert_mentions(&msg, &["bad_length_p4.pkl", "train/audio_lengths", "utterance 2", "0..=3"]);
    let msg = err("bad_missing_split_p4.pkl");
    assert_mentions(&msg, &["bad_missing_split_p4.pkl", "'test'", "split missing"]);
    let missing = pickled::prepare(Path::new("/nonexistent/x.pkl")).unwrap_err();
    assert!(matches!(missing, PickleError::Io { .. }));
    assert_mentions(&missing.to_string(), &["/nonexistent/x.pkl"]);
}

/// Opcode helpers for hand-made hostile pickles (protocol 2 spells globals as text lines).
fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

fn unicode(s: &str) -> Vec<u8> {
    let mut b = vec![b'X'];
    b.extend((s.len() as u32).to_le_bytes());
    b.extend(s.as_bytes());
    b
}

fn binint(v: i32) -> Vec<u8> {
    let mut b = vec![b'J'];
    b.extend(v.to_le_bytes());
    b
}

/// `_frombuffer(buf, dtype('f4'), shape, 'C')` with a 4-byte buffer.
fn frombuffer(shape: &[i32]) -> Vec<u8> {
    let mut b = vec![0x80, 2];
    b.extend(global("numpy._core.numeric", "_frombuffer"));
    b.push(b'(');
    b.extend([b'C', 4, 0, 0, 128, 63]);
    b.extend(global("numpy", "dtype"));
    b.extend(unicode("f4"));
    b.extend([0x89, 0x88, 0x87, b'R', b'(']);
    for &d in shape {
        b.extend(binint(d));
    }
    b.push(b't');
    b.extend(unicode("C"));
    b.extend([b't', b'R', b'.']);
    b
}

#[test]
fn huge_declared_sizes_are_refused_before_allocating() {
    // A string claiming 2^62 bytes.
    let mut b = vec![0x80, 4, 0x8d];
    b.extend((1u64 << 62).to_le_bytes());
    let e = pickle::parse(&b).unwrap_err();
    assert!(matches!(e.fault, Fault::Truncated { .. }), "{e}");
    // An array whose shape overflows, one whose shape needs more bytes than given, and a sane one.
    let e = pickle::parse(&frombuffer(&[i32::MAX, i32::MAX, i32::MAX])).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    let e = pickle::parse(&frombuffer(&[1000, 1000])).unwrap_err();
    assert!(e.to_string().contains("needs 4000000 bytes but has 4"), "{e}");
    let e = pickle::parse(&frombuffer(&[-1])).unwrap_err();
    assert!(e.to_string().contains("non-negative"), "{e}");
    let ok = pickle::parse(&frombuffer(&[1])).unwrap();
    match ok.node(ok.root) {
        pickle::Node::Array(Some(a)) => assert_eq!(a.number(0), Some(1.0)),
        other => panic!("{other:?}"),
    }
    // Deep nesting and self-reference: no recursion, so no stack overflow.
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b']', 200_000));
    deep.extend(std::iter::repeat_n(b'a', 199_999));
    deep.extend([b'q', 0, b'h', 0, b'a', b'.']);
    assert!(pickle::parse(&deep).is_ok());
    assert!(pickled::from_bytes(&deep, Path::new("deep.pkl")).unwrap_err().to_string().contains("dict of splits"));
}

/// Seeded mutations of the fixtures: nothing may panic (an error is fine).
#[test]
fn fuzz_mutated_fixtures_never_panic() {
    let names = [
        "mmsa_aligned_p2_numpy1.pkl",
        "mmsa_unaligned_p4.pkl",
        "mmsa_unaligned_p5.pkl",
        "mult_p2_numpy1.pkl",
        "mult_p4.pkl",
    ];
    let seeds: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(fixture(n)).unwrap()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let start = std::time::Instant::now();
    let mut accepted = 0;
    const CASES: usize = 20_000;
    for case in 0..CASES {
        let mut b = seeds[case % seeds.len()].clone();
        for _ in 0..rng.gen_range(1..6) {
            let at = rng.gen_range(0..b.len().max(1));
            match rng.gen_range(0..6) {
                0 => b[at] = rng.gen(),
                1 => b[at] ^= 1 << rng.gen_range(0..8),
                2 => b.insert(at, rng.gen()),
                3 if b.len() > 1 => {
                    b.remove(at);
                }
                4 => {
                    // Overwrite with an interesting value: a length or count field gone wild.
                    let v: [u8; 4] = [0xff, 0xff, 0xff, 0x7f];
                    for (k, x) in v.iter().enumerate() {
                        if let Some(slot) = b.get_mut(at + k) {
                            *slot = *x;
                        }
                    }
                }
                _ => {
                    let len = rng.gen_range(1..32).min(b.len() - at);
                    let chunk: Vec<u8> = b[at..at + len].to_vec();
                    let to = rng.gen_range(0..b.len());
                    b.splice(to..to, chunk);
                }
            }
        }
        if let Ok((ds, _)) = pickled::from_bytes(&b, Path::new("fuzz.pkl")) {
            ds.validate().expect("an accepted dataset validates");
            accepted += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(secs < 20.0, "{CASES} fuzz cases took {secs:.1} s");
    assert!(accepted < CASES, "every mutation was accepted: the mutations do nothing");
    eprintln!("{CASES} mutated pickles in {secs:.2} s, {accepted} accepted");
}

fn cimnet(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

#[test]
fn cli_prepares_a_pickle_refuses_to_overwrite_and_trains_on_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mmsa.npz");
    let (src, o) = (fixture("mmsa_unaligned_p4.pkl"), out.to_str().unwrap());
    let run = cimnet(&["data", "prepare-pickle", src.to_str().unwrap(), "--out", o]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert_mentions(&stdout, &["train 2 videos / 3 utterances", "stored audio_lengths", "emotions: absent"]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("mmsa.report.json")).unwrap()).unwrap();
    assert_eq!(report["splits"][0]["modalities"][1]["non_finite_zeroed"], 1);
    let before = std::fs::read(&out).unwrap();
    let again = cimnet(&["data", "prepare-pickle", src.to_str().unwrap(), "--out", o]);
    assert!(!again.status.success());
    assert_mentions(&String::from_utf8_lossy(&again.stderr), &["already exists", "--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), before, "a refused run leaves the output alone");
    let evil =
        cimnet(&["data", "prepare-pickle", fixture("evil_os_system_p4.pkl").to_str().unwrap(), "--out", o, "--force"]);
    assert!(!evil.status.success());
    assert_mentions(&String::from_utf8_lossy(&evil.stderr), &["evil_os_system_p4.pkl", "not allowed"]);
    assert_eq!(std::fs::read(&out).unwrap(), before, "a failed run leaves the output alone");

    let r = tmp.path().join("run");
    let args = ["train", "--data", o, "--epochs", "1", "--batch", "2", "--hidden", "4", "--dense", "3"];
    let t = cimnet(&[&args[..], &["--backend", "cpu", "--out", r.to_str().unwrap()]].concat());
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    assert!(r.join("report.json").exists());
}
