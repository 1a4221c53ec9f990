//! The data layer end to end: formats round-trip, the real MOSI counts, the
//! MOSEI-shaped generator's structure and learnability, batching efficiency,
//! normalisation, and an error naming file/split/video/utterance for every
//! kind of bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cimnet::config::{Modality, ModalitySet, EMOTIONS};
use cimnet::data::{
    authors, info, make_batches, mosi, native, padding_efficiency, synth, BatchMode, DataError, Dataset, Normalizer,
    SplitName,
};
use cimnet::npz::NpzOut;

/// The shared MOSI CSVs: `shared/` beside the checkout (as in CI), else this workplace's copy.
fn mosi_dir() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mosi");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("/work/shared/data/mosi")
    }
}

// ---------------------------------------------------------------- helpers

/// An npz file's arrays, editable before writing (to make bad files).
#[derive(Clone)]
enum Raw {
    F32(Vec<usize>, Vec<f32>),
    I32(Vec<usize>, Vec<i32>),
    Str(Vec<String>),
}

type Arrays = BTreeMap<String, Raw>;

fn write_arrays(path: &Path, arrays: &Arrays) {
    let mut out = NpzOut::create(path).unwrap();
    for (k, a) in arrays {
        match a {
            Raw::F32(s, d) => out.write_f32(k, s, d).unwrap(),
            Raw::I32(s, d) => out.write_i32(k, s, d).unwrap(),
            Raw::Str(v) => out.write_strings(k, v).unwrap(),
        }
    }
    out.finish().unwrap();
}

/// Pad a split's per-video rows to (N, U_max, width).
fn padded(ds: &Dataset, s: SplitName, width: usize, get: impl Fn(&cimnet::data::Video) -> Vec<f32>) -> Raw {
    let vs = ds.split(s);
    let u = vs.iter().map(|v| v.len).max().unwrap_or(0);
    let mut a = vec![0.0f32; vs.len() * u * width];
    for (i, v) in vs.iter().enumerate() {
        let r = get(v);
        a[i * u * width..i * u * width + r.len()].copy_from_slice(&r);
    }
    let shape = if width == 1 { vec![vs.len(), u] } else { vec![vs.len(), u, width] };
    Raw::F32(shape, a)
}

/// The native layout of a dataset as editable arrays.
fn native_arrays(ds: &Dataset) -> Arrays {
    let mut m = Arrays::new();
    for s in SplitName::ALL {
        let lens: Vec<i32> = ds.split(s).iter().map(|v| v.len as i32).collect();
        m.insert(format!("{s}_len"), Raw::I32(vec![lens.len()], lens));
        for md in Modality::ALL {
            if ds.has(md) {
                m.insert(
                    format!("{s}_{}", md.name()),
                    padded(ds, s, ds.dims[md.index()], |v| v.feature(md).unwrap().to_vec()),
                );
            }
        }
        m.insert(format!("{s}_sentiment"), padded(ds, s, 1, |v| v.sentiment.clone()));
        if ds.has_emotion {
            m.insert(format!("{s}_emotion"), padded(ds, s, EMOTIONS, |v| v.emotion.clone().unwrap()));
        }
        m.insert(format!("{s}_ids"), Raw::Str(ds.split(s).iter().map(|v| v.id.clone()).collect()));
    }
    m
}

/// Write the authors' directory layout of a dataset (sentiment as (N, U_max, 1), as some of their files have).
fn write_authors(ds: &Dataset, dir: &Path) {
    for md in Modality::ALL {
        let mut m = Arrays::new();
        for s in SplitName::ALL {
            let lens: Vec<i32> = ds.split(s).iter().map(|v| v.len as i32).collect();
            m.insert(format!("{s}_length"), Raw::I32(vec![lens.len()], lens));
            m.insert(format!("{s}_data"), padded(ds, s, ds.dims[md.index()], |v| v.feature(md).unwrap().to_vec()));
            if md == Modality::Video {
                let Raw::F32(mut shape, d) = padded(ds, s, 1, |v| v.sentiment.clone()) else { unreachable!() };
                shape.push(1);
                m.insert(format!("{s}SentiLabel"), Raw::F32(shape, d));
                m.insert(format!("{s}EmoLabel"), padded(ds, s, EMOTIONS, |v| v.emotion.clone().unwrap()));
            }
        }
        write_arrays(&dir.join(authors::file_name(md)), &m);
    }
}

fn set_f32(a: &mut Arrays, key: &str, index: usize, value: f32) {
    match a.get_mut(key) {
        Some(Raw::F32(_, d)) => d[index] = value,
        _ => panic!("no f32 array {key}"),
    }
}

fn shape_of(a: &Arrays, key: &str) -> Vec<usize> {
    match &a[key] {
        Raw::F32(s, _) | Raw::I32(s, _) => s.clone(),
        Raw::Str(v) => vec![v.len()],
    }
}

/// Load a file written from `arrays` and return the error message (panics if it loads).
fn load_err(dir: &Path, name: &str, arrays: &Arrays) -> String {
    let path = dir.join(name);
    write_arrays(&path, arrays);
    match Dataset::load(&path) {
        Ok(_) => panic!("{name}: bad data loaded without error"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message lacks '{p}': {msg}");
    }
}

/// Same content, ignoring where it came from.
fn assert_same_data(a: &Dataset, b: &Dataset) {
    assert_eq!(a.dims, b.dims);
    assert_eq!(a.has_emotion, b.has_emotion);
    for s in SplitName::ALL {
        assert_eq!(a.split(s), b.split(s), "split {s}");
    }
}

// ---------------------------------------------------------------- formats

#[test]
fn native_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth::tiny(3);
    let path = dir.path().join("tiny.npz");
    native::write(&ds, &path).unwrap();
    let back = Dataset::load(&path).unwrap();
    assert_same_data(&ds, &back);
    assert_eq!(back.source, path.display().to_string());
}

#[test]
fn native_file_without_a_modality_loads_and_require_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = synth::tiny(4);
    ds.dims[Modality::Video.index()] = 0;
    for s in &mut ds.splits {
        for v in s {
            v.features[Modality::Video.index()] = None;
        }
    }
    let path = dir.path().join("no_video.npz");
    native::write(&ds, &path).unwrap();
    let back = Dataset::load(&path).unwrap();
    assert_eq!(back.dims, [12, 8, 0]);
    back.require(ModalitySet::TA).unwrap();
    let msg = back.require(ModalitySet::TAV).unwrap_err().to_string();
    assert_mentions(&msg, &["visual", "no_video.npz", "no video arrays"]);
    assert!(back.require(ModalitySet::V).is_err());
}

#[test]
fn authors_directory_reads_and_converts_to_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth::tiny(5);
    write_authors(&ds, dir.path());
    let read = Dataset::load(dir.path()).unwrap();
    assert_eq!(read.dims, ds.dims);
    for s in SplitName::ALL {
        let (a, b) = (ds.split(s), read.split(s));
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(y.id, format!("{s}_{i}"));
            assert_eq!((&x.features, &x.sentiment, &x.emotion, x.len), (&y.features, &y.sentiment, &y.emotion, y.len));
        }
    }
    let out = dir.path().join("converted.npz");
    native::write(&read, &out).unwrap();
    assert_same_data(&read, &Dataset::load(&out).unwrap());
}

#[test]
fn batch_pads_to_the_longest_chosen_video() {
    let ds = synth::tiny(6);
    let train = ds.split(SplitName::Train);
    let idx = [2usize, 0, 5];
    let b = ds.batch(SplitName::Train, &idx);
    let u = idx.iter().map(|&i| train[i].len).max().unwrap();
    assert_eq!((b.b, b.u, b.dims), (3, u, ds.dims));
    assert_eq!(b.len, idx.iter().map(|&i| train[i].len).collect::<Vec<_>>());
    let d = ds.dims[0];
    for (bi, &vi) in idx.iter().enumerate() {
        let v = &train[vi];
        let t = b.feature(Modality::Text).unwrap();
        for i in 0..u {
            for j in 0..d {
                let want = if i < v.len { f64::from(v.feature(Modality::Text).unwrap()[i * d + j]) } else { 0.0 };
                assert_eq!(t[(bi * u + i) * d + j], want);
            }
            let s = if i < v.len { f64::from(v.sentiment[i]) } else { 0.0 };
            assert_eq!(b.sentiment[bi * u + i], s);
        }
        let e = b.emotion.as_ref().unwrap();
        assert_eq!(e[(bi * u) * EMOTIONS + 3], f64::from(v.emotion.as_ref().unwrap()[3]));
    }
}

// ---------------------------------------------------------------- MOSI

fn check_mosi_counts(ds: &Dataset) {
    let vids = |s| ds.split(s).len();
    let utts = |s| ds.utterances(s);
    assert_eq!(SplitName::ALL.iter().map(|&s| vids(s)).sum::<usize>(), 93);
    assert_eq!(SplitName::ALL.iter().map(|&s| utts(s)).sum::<usize>(), 2199);
    assert_eq!((vids(SplitName::Test), utts(SplitName::Test)), (31, 752));
    assert_eq!(vids(SplitName::Train) + vids(SplitName::Valid), 62);
    assert_eq!(utts(SplitName::Train) + utts(SplitName::Valid), 1447);
    assert_eq!(vids(SplitName::Valid), 6, "default 10% of 62 training videos");
    assert_eq!(ds.dims, [100, 73, 100]);
    assert!(!ds.has_emotion);
    let msg = ds.require_emotion().unwrap_err().to_string();
    assert!(msg.contains("no emotion labels"), "{msg}");
    // The CSVs' label counts: 1,176 positive of 2,199; labels map to +-1.
    let all: Vec<f32> = ds.splits.iter().flatten().flat_map(|v| v.sentiment.clone()).collect();
    assert!(all.iter().all(|&s| s == 1.0 || s == -1.0));
    assert_eq!(all.iter().filter(|&&s| s >= 0.0).count(), 1176);
}

#[test]
fn bundled_mosi_has_the_real_counts() {
    let ds = Dataset::bundled_mosi().unwrap();
    check_mosi_counts(&ds);
    assert!(mosi::bundled_size() < 4 << 20, "bundled copy is {} bytes", mosi::bundled_size());
    let license = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/LICENSE-MOSI")).unwrap();
    assert!(license.contains("MIT License") && license.contains("DeCLaRe"));
}

#[test]
fn mosi_from_csv_matches_bundled_copy_and_carves_valid_by_seed() {
    let dir = mosi_dir();
    if !dir.is_dir() {
        eprintln!("skipping: {} is absent (the bundled copy is tested separately)", dir.display());
        return;
    }
    let ds = mosi::prepare(&dir, mosi::DEFAULT_VALID_FRACTION, mosi::DEFAULT_SEED).unwrap();
    check_mosi_counts(&ds);
    assert_same_data(&ds, &Dataset::bundled_mosi().unwrap());
    // Utterances are ordered by position: the first of video 03bSnISJMiM is
    // "ANYHOW IT WAS REALLY GOOD" (label 1), its 2nd (position 2) is not position 10.
    let v = ds.splits.iter().flatten().find(|v| v.id == "03bSnISJMiM").unwrap();
    assert_eq!(v.sentiment[0], 1.0);

    let other = mosi::prepare(&dir, 0.1, 7).unwrap();
    assert_eq!(other.split(SplitName::Test), ds.split(SplitName::Test), "test split untouched");
    assert_ne!(
        other.split(SplitName::Valid).iter().map(|v| &v.id).collect::<Vec<_>>(),
        ds.split(SplitName::Valid).iter().map(|v| &v.id).collect::<Vec<_>>()
    );
    assert_eq!(mosi::prepare(&dir, 0.1, 7).unwrap(), other, "deterministic by seed");
    let none = mosi::prepare(&dir, 0.0, 0).unwrap();
    assert_eq!((none.split(SplitName::Train).len(), none.split(SplitName::Valid).len()), (62, 0));
    let quarter = mosi::prepare(&dir, 0.25, 0).unwrap();
    assert_eq!(quarter.split(SplitName::Valid).len(), 16);
}

#[test]
fn mosi_csv_errors_name_file_and_line() {
    let src = mosi_dir();
    if !src.is_dir() {
        eprintln!("skipping: {} is absent", src.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    // Corrupt a value on line 3 of audio_train0.csv.
    let p = dir.path().join("audio_train0.csv");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2] = lines[2].replacen("\"", "\"x", 1);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let msg = mosi::prepare(dir.path(), 0.1, 0).unwrap_err().to_string();
    assert_mentions(&msg, &["audio_train0.csv", "line 3", "not a number"]);
}

// ---------------------------------------------------------------- synthetic

#[test]
fn synth_matches_mosei_structure_exactly_and_is_deterministic() {
    let t = std::time::Instant::now();
    let ds = synth::mosei_like(11);
    let secs = t.elapsed().as_secs_f64();
    let spec = synth::SynthSpec::mosei();
    let want = [(2249, 16327), (300, 1871), (676, 4662)];
    for s in SplitName::ALL {
        assert_eq!((ds.split(s).len(), ds.utterances(s)), want[s.index()], "split {s}");
        let mut hist = BTreeMap::new();
        for v in ds.split(s) {
            *hist.entry(v.len).or_insert(0usize) += 1;
        }
        assert_eq!(hist.into_iter().collect::<Vec<_>>(), spec.histograms[s.index()], "histogram of {s}");
    }
    assert_eq!(spec.histograms[0].last(), Some(&(98, 1)));
    assert_eq!(ds.dims, [300, 74, 35]);
    assert!(ds.has_emotion);
    ds.require_emotion().unwrap();
    ds.validate().unwrap();
    eprintln!("generated MOSEI-shaped data in {secs:.2}s");
    assert!(secs < 10.0, "generation took {secs:.1}s");

    let again = synth::mosei_like(11);
    assert_eq!(ds, again);
    let other = synth::mosei_like(12);
    assert_ne!(ds.split(SplitName::Train)[0].features, other.split(SplitName::Train)[0].features);
}

#[test]
fn synth_labels_behave_like_mosei() {
    let ds = synth::generate(&synth::SynthSpec::scaled(0.5), 1).0;
    let (mut n, mut none, mut multi) = (0usize, 0usize, 0usize);
    let mut present = [0usize; EMOTIONS];
    // Correlation of each emotion's presence with the sentiment score.
    let mut sum_s = 0.0;
    let mut sum_e = [0.0f64; EMOTIONS];
    let mut sum_se = [0.0f64; EMOTIONS];
    let mut sum_ss = 0.0;
    for v in ds.splits.iter().flatten() {
        let e = v.emotion.as_ref().unwrap();
        for i in 0..v.len {
            let row = &e[i * EMOTIONS..(i + 1) * EMOTIONS];
            let k = row.iter().filter(|&&x| x > 0.0).count();
            n += 1;
            none += usize::from(k == 0);
            multi += usize::from(k >= 2);
            let s = f64::from(v.sentiment[i]);
            sum_s += s;
            sum_ss += s * s;
            for j in 0..EMOTIONS {
                let p = f64::from(u8::from(row[j] > 0.0));
                present[j] += usize::from(row[j] > 0.0);
                sum_e[j] += p;
                sum_se[j] += s * p;
            }
        }
    }
    let nf = n as f64;
    let share = |c: usize| c as f64 / nf;
    assert!((0.08..0.35).contains(&share(none)), "no-emotion share {}", share(none));
    assert!(share(multi) > 0.2, "multi-label share {}", share(multi));
    // Happy is the most common emotion, fear among the rarest (as in MOSEI).
    assert_eq!(present.iter().enumerate().max_by_key(|(_, &c)| c).unwrap().0, 3);
    assert!(present[2] < present[4] && present[2] < present[0]);
    let cov = |j: usize| sum_se[j] / nf - (sum_s / nf) * (sum_e[j] / nf);
    assert!(sum_ss / nf > 0.5, "sentiment spread");
    for j in [0, 1, 2, 4] {
        assert!(cov(j) < -0.02, "emotion {j} should go with negative sentiment: cov {}", cov(j));
    }
    assert!(cov(3) > 0.05, "happy should go with positive sentiment: cov {}", cov(3));
    // Sentiment scores are MOSEI-like: thirds within [-3, 3], both classes present.
    let pos = ds.splits.iter().flatten().flat_map(|v| v.sentiment.iter()).filter(|&&s| s >= 0.0).count();
    assert!((0.5..0.75).contains(&share(pos)), "positive share {}", share(pos));
}

#[test]
fn synth_is_learnable_but_a_per_utterance_linear_model_stays_below_ground_truth() {
    let (ds, truth) = synth::generate(&synth::SynthSpec::mosei(), 0);
    let p = synth::probe(&ds, &truth);
    eprintln!("{p:?}");
    assert!(p.linear_sentiment_acc > 0.65, "learnable: {p:?}");
    assert!(p.truth_sentiment_acc > 0.9, "{p:?}");
    assert!(p.truth_sentiment_acc - p.linear_sentiment_acc > 0.1, "linear too close to ground truth: {p:?}");
    assert!(p.context_sentiment_acc - p.linear_sentiment_acc > 0.02, "context should help: {p:?}");
    assert!(p.truth_emotion_wa - p.linear_emotion_wa > 0.08, "{p:?}");
    assert!(p.linear_emotion_wa > 0.6, "{p:?}");
}

#[test]
fn synth_dropped_modality_makes_a_single_modality_worse_than_all() {
    // Each modality carries the labels with its own noise: text alone beats
    // video alone, and all three together beat text alone.
    let (ds, truth) = synth::generate(&synth::SynthSpec::scaled(0.5), 2);
    let only = |keep: &[Modality]| {
        let mut d = ds.clone();
        for m in Modality::ALL {
            if !keep.contains(&m) {
                d.dims[m.index()] = 0;
                d.splits.iter_mut().flatten().for_each(|v| v.features[m.index()] = None);
            }
        }
        synth::probe(&d, &truth).linear_sentiment_acc
    };
    let (t, v, all) = (only(&[Modality::Text]), only(&[Modality::Video]), only(&Modality::ALL));
    eprintln!("linear sentiment accuracy: text {t:.3}, video {v:.3}, all {all:.3}");
    assert!(t > v + 0.02 && all > t + 0.01, "text {t}, video {v}, all {all}");
}

// ---------------------------------------------------------------- batching

#[test]
fn bucketed_batches_are_at_least_90_percent_real_on_mosei_train() {
    let ds = synth::mosei_like(0);
    let lens = ds.lens(SplitName::Train);
    for seed in 0..8 {
        let b = make_batches(&lens, 16, BatchMode::Bucketed, seed);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..lens.len()).collect::<Vec<_>>(), "every video exactly once");
        assert!(b.iter().all(|x| x.len() <= 16));
        let eff = padding_efficiency(&lens, &b);
        let r = make_batches(&lens, 16, BatchMode::Random, seed);
        let reff = padding_efficiency(&lens, &r);
        assert!(eff >= 0.9, "seed {seed}: bucketed efficiency {eff}");
        assert!(reff < eff - 0.3, "seed {seed}: random {reff} vs bucketed {eff}");
        assert_eq!(b, make_batches(&lens, 16, BatchMode::Bucketed, seed));
    }
    // Batches are shuffled: the longest video is not always in the first batch.
    let longest = lens.iter().enumerate().max_by_key(|(_, &l)| l).unwrap().0;
    let firsts: Vec<bool> =
        (0..8).map(|s| make_batches(&lens, 16, BatchMode::Bucketed, s)[0].contains(&longest)).collect();
    assert!(firsts.iter().any(|&f| !f));
    let i = info::info(&ds, 16);
    assert!(i.train_padding.bucketed >= 0.9 && i.train_padding.random < 0.5, "{:?}", i.train_padding);
}

// ---------------------------------------------------------------- normalisation

#[test]
fn normaliser_is_fitted_on_train_only_and_round_trips_as_json() {
    let mut ds = synth::tiny(8);
    let n = Normalizer::fit(&ds);
    let mut spoiled = ds.clone();
    for s in [SplitName::Valid, SplitName::Test] {
        for v in spoiled.split_mut(s) {
            v.features.iter_mut().flatten().for_each(|f| f.iter_mut().for_each(|x| *x = 1e6));
        }
    }
    assert_eq!(Normalizer::fit(&spoiled), n, "valid/test must not change the fit");
    n.apply(&mut ds).unwrap();
    let d = ds.dims[Modality::Audio.index()];
    let rows: Vec<&[f32]> =
        ds.split(SplitName::Train).iter().flat_map(|v| v.feature(Modality::Audio).unwrap().chunks(d)).collect();
    for j in 0..d {
        let mean = rows.iter().map(|r| f64::from(r[j])).sum::<f64>() / rows.len() as f64;
        let var = rows.iter().map(|r| (f64::from(r[j]) - mean).powi(2)).sum::<f64>() / rows.len() as f64;
        assert!(mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3, "feature {j}: mean {mean}, var {var}");
    }
    let json = serde_json::to_string(&n).unwrap();
    assert_eq!(serde_json::from_str::<Normalizer>(&json).unwrap(), n);
    let mut other = synth::generate(&synth::SynthSpec::scaled(0.01), 0).0;
    let msg = n.apply(&mut other).unwrap_err().to_string();
    assert_mentions(&msg, &["text", "12"]);
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_values_name_file_split_video_and_utterance() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth::tiny(9);
    let good = native_arrays(&ds);
    let train = ds.split(SplitName::Train);
    let vi = train.iter().position(|v| v.len >= 3).unwrap();
    let u = shape_of(&good, "train_text")[1];
    let id = train[vi].id.clone();

    let mut a = good.clone();
    set_f32(&mut a, "train_text", (vi * u + 2) * 12 + 5, f32::NAN);
    let msg = load_err(dir.path(), "nan.npz", &a);
    assert_mentions(
        &msg,
        &["nan.npz", "split train", &format!("video {vi}"), &id, "utterance 2", "text feature 5", "NaN"],
    );

    let valid = ds.split(SplitName::Valid);
    let vj = valid.iter().position(|v| v.len >= 2).unwrap();
    let uv = shape_of(&good, "valid_audio")[1];
    let mut a = good.clone();
    set_f32(&mut a, "valid_audio", (vj * uv + 1) * 8, f32::INFINITY);
    let msg = load_err(dir.path(), "inf.npz", &a);
    assert_mentions(&msg, &["inf.npz", "split valid", &format!("video {vj}"), "utterance 1", "audio", "inf"]);

    let mut a = good.clone();
    set_f32(&mut a, "valid_sentiment", vj * uv + 1, 3.5);
    let msg = load_err(dir.path(), "sent.npz", &a);
    assert_mentions(
        &msg,
        &["sent.npz", "split valid", &format!("video {vj}"), "utterance 1", "sentiment 3.5", "[-3, 3]"],
    );

    let ut = shape_of(&good, "test_emotion")[1];
    let vt = ds.split(SplitName::Test).iter().position(|v| v.len >= 1).unwrap();
    for bad in [-0.5f32, 3.25] {
        let mut a = good.clone();
        set_f32(&mut a, "test_emotion", (vt * ut) * EMOTIONS + 2, bad);
        let msg = load_err(dir.path(), "emo.npz", &a);
        assert_mentions(&msg, &["emo.npz", "split test", &format!("video {vt}"), "utterance 0", "fear", "[0, 3]"]);
    }

    // A NaN at a padded position is not data: the file loads.
    let short = train.iter().position(|v| v.len < u).unwrap();
    let mut a = good.clone();
    set_f32(&mut a, "train_text", (short * u + u - 1) * 12, f32::NAN);
    set_f32(&mut a, "train_sentiment", short * u + u - 1, 99.0);
    let path = dir.path().join("padded_nan.npz");
    write_arrays(&path, &a);
    assert_same_data(&ds, &Dataset::load(&path).unwrap());
}

#[test]
fn bad_lengths_and_shapes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth::tiny(10);
    let good = native_arrays(&ds);
    let u = shape_of(&good, "train_text")[1];
    let set_len = |a: &mut Arrays, v: usize, len: i32| match a.get_mut("train_len") {
        Some(Raw::I32(_, d)) => d[v] = len,
        _ => unreachable!(),
    };
    let id2 = ds.split(SplitName::Train)[2].id.clone();
    let mut a = good.clone();
    set_len(&mut a, 2, 0);
    let msg = load_err(dir.path(), "len0.npz", &a);
    assert_mentions(&msg, &["len0.npz", "split train", "video 2", &id2, "length 0"]);
    let mut a = good.clone();
    set_len(&mut a, 2, u as i32 + 1);
    let msg = load_err(dir.path(), "lenbig.npz", &a);
    assert_mentions(
        &msg,
        &["lenbig.npz", "split train", "video 2", &format!("length {}", u + 1), &format!("U_max = {u}")],
    );

    // Dimension differing between splits.
    let mut a = good.clone();
    if let Some(Raw::F32(s, d)) = a.get_mut("test_video") {
        let (n, uu) = (s[0], s[1]);
        *s = vec![n, uu, 5];
        *d = vec![0.5; n * uu * 5];
    }
    let msg = load_err(dir.path(), "dims.npz", &a);
    assert_mentions(
        &msg,
        &["dims.npz", "split test", "video features are 5-dimensional", "6-dimensional in split train"],
    );

    // Video counts inconsistent between a split's arrays.
    let mut a = good.clone();
    if let Some(Raw::F32(s, d)) = a.get_mut("train_audio") {
        let per = s[1] * s[2];
        s[0] -= 1;
        d.truncate(s[0] * per);
    }
    let msg = load_err(dir.path(), "count.npz", &a);
    assert_mentions(&msg, &["count.npz", "split train", "'train_audio' has 23 videos", "train_len"]);

    // Padded size inconsistent.
    let mut a = good.clone();
    let sh = shape_of(&a, "valid_emotion");
    let (n, uu) = (sh[0], sh[1]);
    a.insert("valid_emotion".into(), Raw::F32(vec![n, uu + 1, EMOTIONS], vec![0.0; n * (uu + 1) * EMOTIONS]));
    let msg = load_err(dir.path(), "umax.npz", &a);
    assert_mentions(&msg, &["umax.npz", "split valid", "valid_emotion", "shape"]);

    // Wrong rank.
    let mut a = good.clone();
    a.insert("test_len".into(), Raw::I32(vec![1, 8], vec![1; 8]));
    let msg = load_err(dir.path(), "rank.npz", &a);
    assert_mentions(&msg, &["rank.npz", "split test", "test_len", "[N]"]);
}

#[test]
fn missing_keys_and_broken_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synth::tiny(11);
    let good = native_arrays(&ds);

    let mut a = good.clone();
    a.remove("valid_sentiment");
    let msg = load_err(dir.path(), "nosent.npz", &a);
    assert_mentions(&msg, &["nosent.npz", "split valid", "valid_sentiment", "missing"]);

    let mut a = good.clone();
    a.remove("test_text");
    let msg = load_err(dir.path(), "notext.npz", &a);
    assert_mentions(&msg, &["notext.npz", "split test", "test_text", "another split has text features"]);

    let mut a = good.clone();
    a.remove("train_emotion");
    let msg = load_err(dir.path(), "noemo.npz", &a);
    assert_mentions(&msg, &["noemo.npz", "split train", "train_emotion"]);

    let mut a = good.clone();
    for s in SplitName::ALL {
        for m in Modality::ALL {
            a.remove(&format!("{s}_{}", m.name()));
        }
    }
    let msg = load_err(dir.path(), "nofeat.npz", &a);
    assert_mentions(&msg, &["nofeat.npz", "no feature arrays"]);

    // Truncated archive.
    let path = dir.path().join("whole.npz");
    native::write(&ds, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("truncated.npz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let msg = Dataset::load(&cut).unwrap_err().to_string();
    assert_mentions(&msg, &["truncated.npz"]);
    // Not an npz at all.
    let txt = dir.path().join("notes.npz");
    std::fs::write(&txt, "just some text, not a zip archive\n").unwrap();
    let msg = Dataset::load(&txt).unwrap_err().to_string();
    assert_mentions(&msg, &["notes.npz", "npz"]);
    // Nothing there.
    let msg = Dataset::load(&dir.path().join("absent.npz")).unwrap_err().to_string();
    assert_mentions(&msg, &["absent.npz", "no such file"]);
    assert!(matches!(Dataset::load(&dir.path().join("absent.npz")), Err(DataError::NotFound(_))));
}

#[test]
fn authors_format_inconsistencies_name_the_files() {
    let ds = synth::tiny(12);
    let base = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let d = base.path().join(name);
        std::fs::create_dir(&d).unwrap();
        write_authors(&ds, &d);
        d
    };
    let rewrite = |path: &Path, edit: &dyn Fn(&mut Arrays)| {
        // Re-create the file's arrays from the dataset (as write_authors does), apply the edit, write.
        let md = Modality::ALL.into_iter().find(|m| path.ends_with(authors::file_name(*m))).unwrap();
        let mut a = Arrays::new();
        for s in SplitName::ALL {
            let lens: Vec<i32> = ds.split(s).iter().map(|v| v.len as i32).collect();
            a.insert(format!("{s}_length"), Raw::I32(vec![lens.len()], lens));
            a.insert(format!("{s}_data"), padded(&ds, s, ds.dims[md.index()], |v| v.feature(md).unwrap().to_vec()));
            if md == Modality::Video {
                a.insert(format!("{s}SentiLabel"), padded(&ds, s, 1, |v| v.sentiment.clone()));
                a.insert(format!("{s}EmoLabel"), padded(&ds, s, EMOTIONS, |v| v.emotion.clone().unwrap()));
            }
        }
        edit(&mut a);
        write_arrays(path, &a);
    };

    // Lengths disagree between text.npz and video.npz.
    let d = fresh("lens");
    rewrite(&d.join("text.npz"), &|a| {
        if let Some(Raw::I32(_, l)) = a.get_mut("valid_length") {
            l[1] += 1;
        }
    });
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert_mentions(&msg, &["text.npz", "split valid", "video 1", "video.npz"]);

    // Video counts disagree.
    let d = fresh("count");
    rewrite(&d.join("audio.npz"), &|a| {
        a.insert("test_length".into(), Raw::I32(vec![3], vec![1, 1, 1]));
    });
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert_mentions(&msg, &["audio.npz", "split test", "video counts differ"]);

    // Emotion labels for some splits only.
    let d = fresh("emo");
    rewrite(&d.join("video.npz"), &|a| {
        a.remove("testEmoLabel");
    });
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert_mentions(&msg, &["video.npz", "testEmoLabel"]);

    // Missing data of one split.
    let d = fresh("nodata");
    rewrite(&d.join("audio.npz"), &|a| {
        a.remove("valid_data");
    });
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert_mentions(&msg, &["audio.npz", "split valid", "valid_data"]);

    // Dims differ between splits of one file.
    let d = fresh("dims");
    rewrite(&d.join("text.npz"), &|a| {
        let n = ds.split(SplitName::Test).len();
        let u = ds.split(SplitName::Test).iter().map(|v| v.len).max().unwrap();
        a.insert("test_data".into(), Raw::F32(vec![n, u, 11], vec![0.0; n * u * 11]));
    });
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert_mentions(&msg, &["split test", "text features are 11-dimensional"]);

    // NaN in audio.npz names audio.npz.
    let d = fresh("nan");
    let v0 = ds.split(SplitName::Train).iter().position(|v| v.len >= 2).unwrap();
    let u = ds.split(SplitName::Train).iter().map(|v| v.len).max().unwrap();
    rewrite(&d.join("audio.npz"), &|a| set_f32(a, "train_data", (v0 * u + 1) * 8 + 3, f32::NAN));
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert_mentions(&msg, &["audio.npz", "split train", &format!("video {v0}"), "utterance 1", "audio feature 3"]);

    // No video.npz: labels are missing.
    let d = fresh("nolabels");
    std::fs::remove_file(d.join("video.npz")).unwrap();
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert_mentions(&msg, &["video.npz"]);
}

// ---------------------------------------------------------------- CLI

fn cimnet(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().unwrap();
    assert!(out.status.success(), "cimnet {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_synth_convert_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let synth_path = dir.path().join("s.npz");
    let s = synth_path.to_str().unwrap();
    cimnet(&["data", "synth", "--out", s, "--seed", "3", "--scale", "0.05"]);
    let expect = synth::generate(&synth::SynthSpec::scaled(0.05), 3).0;
    assert_same_data(&expect, &Dataset::load(&synth_path).unwrap());

    let authors_dir = dir.path().join("authors");
    std::fs::create_dir(&authors_dir).unwrap();
    write_authors(&expect, &authors_dir);
    let conv = dir.path().join("conv.npz");
    cimnet(&["data", "convert", authors_dir.to_str().unwrap(), "--out", conv.to_str().unwrap()]);
    assert_same_data(&Dataset::load(&authors_dir).unwrap(), &Dataset::load(&conv).unwrap());

    let json: serde_json::Value =
        serde_json::from_str(&cimnet(&["data", "info", s, "--json", "--batch", "8"])).unwrap();
    assert_eq!(json["dims"]["audio"], 74);
    assert_eq!(json["splits"][0]["videos"], expect.split(SplitName::Train).len());
    assert_eq!(json["train_padding"]["batch"], 8);
    let table = cimnet(&["data", "info"]);
    assert!(table.contains("bundled MOSI") && table.contains("752"), "{table}");
    let table = cimnet(&["data", "info", s]);
    assert!(table.contains("no-emotion") && table.contains("bucketed"), "{table}");
}
