//! `prepare-mosei` on small .csd files written by h5py through the SDK's own
//! `writeCSD` (tests/fixtures/make_csd.py): features against the SDK's own
//! `align` output stored beside them (expected.json) and against hand-picked
//! rows, the cleaning report, every bad input, and the CLI down to `train`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cimnet::data::sdk::{self, csd::Csd, SdkError, Visual};
use cimnet::data::{Dataset, SplitName, Video};

const TRAIN_A: &str = "hh04W3xXa5s";
const TRAIN_B: &str = "GdFP_p4eQX0";
const VALID_A: &str = "188343";
const TEST_A: &str = "7l3BNtSE0xc";

fn good() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk/good")
}

fn bad(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk/bad").join(name)
}

/// A copy of the good directory, with `replace` = (file in it, new content) applied.
fn copy_good(replace: Option<(&str, Vec<u8>)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(good()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    if let Some((name, bytes)) = replace {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn video<'a>(ds: &'a Dataset, split: SplitName, id: &str) -> &'a Video {
    ds.split(split).iter().find(|v| v.id == id).unwrap_or_else(|| panic!("{id} not in {split}"))
}

/// The SDK's answer per segment key `video[row]`: (text, audio, video) means or None, and the 7 label columns.
type Expected = HashMap<String, ([Option<Vec<f64>>; 3], Vec<f64>)>;

fn expected() -> Expected {
    let text = std::fs::read_to_string(good().join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let num = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.parse::<f64>().unwrap(), // "inf", "-inf", "nan"
        x => x.as_f64().unwrap(),
    };
    let vec = |x: &serde_json::Value| x.as_array().map(|a| a.iter().map(num).collect::<Vec<f64>>());
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, e)| (k.clone(), ([vec(&e["text"]), vec(&e["audio"]), vec(&e["video"])], vec(&e["labels"]).unwrap())))
        .collect()
}

#[test]
fn features_match_the_sdks_own_align_with_documented_cleaning() {
    let (ds, _) = sdk::prepare(&good(), Visual::Facet).unwrap();
    let exp = expected();
    // Segment rows of each video in start-time order (the zero-length row 2 of TRAIN_A is dropped).
    let cases = [
        (SplitName::Train, TRAIN_A, vec![1, 3, 0]),
        (SplitName::Train, TRAIN_B, vec![0, 1, 2]),
        (SplitName::Valid, VALID_A, vec![0]),
        (SplitName::Test, TEST_A, vec![0, 1]),
    ];
    let mut checked = 0;
    for (split, id, rows) in cases {
        let v = video(&ds, split, id);
        assert_eq!(v.len, rows.len(), "{id}");
        for (u, row) in rows.iter().enumerate() {
            let (feats, labels) = &exp[&format!("{id}[{row}]")];
            for (m, want) in feats.iter().enumerate() {
                let d = ds.dims[m];
                let got = &v.features[m].as_ref().unwrap()[u * d..(u + 1) * d];
                // Cleaning: no surviving row -> zeros; non-finite mean -> 0.
                let want: Vec<f64> = match want {
                    Some(w) => w.iter().map(|&x| if x.is_finite() { x } else { 0.0 }).collect(),
                    None => vec![0.0; d],
                };
                for (g, w) in got.iter().zip(&want) {
                    assert!((f64::from(*g) - w).abs() < 1e-6, "{id}[{row}] modality {m}: {got:?} vs {want:?}");
                }
                checked += 1;
            }
            assert!((f64::from(v.sentiment[u]) - labels[0].clamp(-3.0, 3.0)).abs() < 1e-6);
        }
    }
    assert_eq!(checked, 3 * 9);
    assert_eq!(ds.dims, [3, 2, 2]);
    // Only the four complete fold videos are used, in fold order.
    assert_eq!(ds.split(SplitName::Train).iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), [TRAIN_A, TRAIN_B]);
}

#[test]
fn hand_picked_rows_give_the_same_means() {
    let (ds, _) = sdk::prepare(&good(), Visual::Facet).unwrap();
    let text = Csd::open(&good().join(sdk::TEXT_FILE)).unwrap().read(TRAIN_A).unwrap();
    let row_of = |start: f64| text.intervals.iter().position(|iv| (iv[0] - start).abs() < 1e-9).unwrap();
    let mean = |starts: &[f64]| -> Vec<f64> {
        (0..3).map(|c| starts.iter().map(|&s| text.row(row_of(s))[c]).sum::<f64>() / starts.len() as f64).collect()
    };
    let v = video(&ds, SplitName::Train, TRAIN_A);
    let t = v.features[0].as_ref().unwrap();
    // [0, 2]: the three words inside; the word starting at 1.9995 overlaps by less than epsilon.
    // [2, 4]: that word, and the word [3.0, 4.5] straddling 4.0; the zero-length word [2.5, 2.5] is not counted.
    // [4, 6]: the straddling word again, [4.6, 5.0] and [5.5, 6.2].
    for (u, starts) in [vec![0.1, 0.6, 1.2], vec![1.9995, 3.0], vec![3.0, 4.6, 5.5]].iter().enumerate() {
        let want = mean(starts);
        for c in 0..3 {
            assert!((f64::from(t[u * 3 + c]) - want[c]).abs() < 1e-6, "utterance {u}: {:?} vs {want:?}", &t[u * 3..]);
        }
    }
    // Audio [0, 2] holds frame [0.75, 1.0) with -inf in feature 1: that mean is set to 0, feature 0 is not.
    let audio = Csd::open(&good().join(sdk::AUDIO_FILE)).unwrap().read(TRAIN_A).unwrap();
    let a0: f64 = (0..8).map(|r| audio.row(r)[0]).sum::<f64>() / 8.0;
    let a = v.features[1].as_ref().unwrap();
    assert!((f64::from(a[0]) - a0).abs() < 1e-6 && a[1] == 0.0, "{a:?}");
    // Labels in MODEL.md's order: anger, disgust, fear, happy, sad, surprise.
    assert_eq!(v.sentiment[0], -0.667);
    assert_eq!(&v.emotion.as_ref().unwrap()[..6], &[0.667, 0.333, 0.0, 0.0, 1.0, 0.0]);
    // Clamped: sentiment -3.5 -> -3, sad 3.4 -> 3, disgust -0.1 -> 0.
    let b = video(&ds, SplitName::Train, TRAIN_B);
    assert_eq!(b.sentiment[0], -3.0);
    assert_eq!(b.emotion.as_ref().unwrap()[4], 3.0);
    assert_eq!(b.emotion.as_ref().unwrap()[6 + 1], 0.0);
}

#[test]
fn the_report_counts_every_cleaning_and_drop() {
    let (_, r) = sdk::prepare(&good(), Visual::Facet).unwrap();
    assert_eq!(r.outside_folds.examples, ["notInAnyFold"]);
    assert_eq!(r.missing_modality.examples, ["4iG0ffmnCOw (missing in CMU_MOSEI_VisualFacet42.csd)"]);
    assert_eq!(r.fold_videos_without_labels.count, 2250 + 300 + 678 - 5);
    assert_eq!((r.unlabelled_in_features.text, r.unlabelled_in_features.audio), (1, 0));
    assert_eq!(r.zero_length_segments.examples, [format!("{TRAIN_A}[2]")]);
    assert_eq!(r.overlapping_segments.examples, [format!("{TRAIN_B}[2] overlaps {TRAIN_B}[1]")]);
    assert_eq!(r.duplicate_segments.count, 0);
    assert_eq!((r.empty_segments.text, r.empty_segments.audio, r.empty_segments.video), (0, 2, 0));
    assert_eq!((r.non_finite.audio.input_values, r.non_finite.audio.zeroed_values), (2, 2));
    assert_eq!((r.non_finite.video.input_values, r.non_finite.video.zeroed_values), (1, 1));
    assert_eq!(r.non_finite.text.input_values, 0);
    assert_eq!((r.sentiment_clamped, r.emotion_clamped), (1, 2));
    assert_eq!((r.train.videos, r.train.utterances, r.valid.utterances, r.test.utterances), (2, 6, 1, 2));
}

fn err_of(dir: &Path) -> String {
    match sdk::prepare(dir, Visual::Facet) {
        Ok(_) => panic!("prepared {} without error", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_bad_input_is_a_clear_error() {
    // A missing file.
    let dir = copy_good(None);
    std::fs::remove_file(dir.path().join(sdk::AUDIO_FILE)).unwrap();
    let e = err_of(dir.path());
    assert!(e.contains(sdk::AUDIO_FILE) && e.contains("no such file") && e.contains("audio"), "{e}");
    // OpenFace asked for, FACET present.
    let e = match sdk::prepare(&good(), Visual::OpenFace) {
        Err(e @ SdkError::Missing { .. }) => e.to_string(),
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert!(e.contains(sdk::OPENFACE_FILE), "{e}");
    // Wrong dims: one video's audio has 3 columns where the others have 2.
    let dir = copy_good(Some((sdk::AUDIO_FILE, std::fs::read(bad("wrong_dims_COVAREP.csd")).unwrap())));
    let e = err_of(dir.path());
    assert!(e.contains(sdk::AUDIO_FILE) && e.contains(TEST_A) && e.contains("3 columns"), "{e}");
    // Features and intervals with different row counts.
    let dir = copy_good(Some((sdk::AUDIO_FILE, std::fs::read(bad("row_mismatch_COVAREP.csd")).unwrap())));
    let e = err_of(dir.path());
    assert!(e.contains(sdk::AUDIO_FILE) && e.contains(VALID_A) && e.contains("feature rows but 3 intervals"), "{e}");
    // Labels with 6 columns.
    let dir = copy_good(Some((sdk::LABELS_FILE, std::fs::read(bad("six_columns_Labels.csd")).unwrap())));
    let e = err_of(dir.path());
    assert!(e.contains(sdk::LABELS_FILE) && e.contains(TRAIN_A) && e.contains("6 columns"), "{e}");
    // Truncated HDF5 files, cut at several places: an error naming the file, never a panic.
    let whole = std::fs::read(good().join(sdk::AUDIO_FILE)).unwrap();
    for cut in [0, 100, whole.len() / 3, whole.len() / 2, whole.len() - 100] {
        let dir = copy_good(Some((sdk::AUDIO_FILE, whole[..cut].to_vec())));
        let e = err_of(dir.path());
        assert!(e.contains(sdk::AUDIO_FILE), "cut at {cut}: {e}");
    }
}

fn cimnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

#[test]
fn cli_prepares_refuses_to_overwrite_and_train_runs_on_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mosei.npz");
    let o = cimnet(&["data", "prepare-mosei", "--sdk", good().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("missing a modality: 1") && stdout.contains("4iG0ffmnCOw"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("mosei.report.json")).unwrap()).unwrap();
    assert_eq!(report["sentiment_clamped"], 1);
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.utterances(SplitName::Train), 6);
    assert!(ds.has_emotion);

    let before = std::fs::read(&out).unwrap();
    let o = cimnet(&["data", "prepare-mosei", "--sdk", good().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), before);

    let run = dir.path().join("run");
    let o = cimnet(&[
        "train",
        "--data",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--epochs",
        "2",
        "--batch",
        "2",
        "--hidden",
        "4",
        "--dense",
        "4",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}
