//! Real CMU-MOSI utterance features from the CSV layout of
//! ../shared/data/mosi (bc-LSTM's data folder of declare-lab's MIT-licensed
//! multimodal-deep-learning repository), and the copy bundled in the crate.
//!
//! Layout: `transcripts.csv` has one row per utterance (row number = utterance
//! index) with `VIDEOID_K`, the transcript, a video number and the label; K is
//! the 1-based position of the utterance in its video. `text_{train,test}.csv`
//! start each row with the utterance index, and row r of `{text,audio,video}_{train,test}0.csv`
//! holds the features of that same utterance followed by its label.
//!
//! Sentiment mapping: label 1 (positive) becomes score +1.0 and label 0
//! (negative) becomes -1.0, so MODEL.md's rule (positive iff score >= 0) gives
//! back the original class, and a score is a plausible MOSEI-scale value.
//! MOSI here has no emotion labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{native, DataError, Dataset, Location, Video};
use crate::config::Modality;
use crate::npz::NpzIn;

/// Score given to label 1 (positive); label 0 gets its negation.
pub const POSITIVE_SCORE: f32 = 1.0;
/// Share of the training videos moved to the validation split by default.
pub const DEFAULT_VALID_FRACTION: f64 = 0.1;
/// Seed of the default validation carve-out (the bundled copy uses it).
pub const DEFAULT_SEED: u64 = 0;

/// The prepared data/mosi.npz (`cimnet data prepare-mosi` with the defaults), embedded.
static BUNDLED: &[u8] = include_bytes!("../../data/mosi.npz");

/// The bundled copy, read and validated like any native file.
pub fn bundled() -> Result<Dataset, DataError> {
    let mut npz = NpzIn::from_bytes("data/mosi.npz (bundled)", BUNDLED)?;
    native::read_archive(&mut npz, "bundled MOSI (data/mosi.npz)".to_string())
}

/// Size in bytes of the bundled file.
pub fn bundled_size() -> usize {
    BUNDLED.len()
}

/// The bundled file itself (its fingerprint identifies runs trained on it).
pub fn bundled_bytes() -> &'static [u8] {
    BUNDLED
}

/// One parsed CSV file: rows of numbers, with the path for messages.
struct Table {
    file: PathBuf,
    rows: Vec<Vec<f32>>,
}

fn read_table(file: &Path) -> Result<Table, DataError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(file)
        .map_err(|e| DataError::Io { file: file.to_path_buf(), source: std::io::Error::other(e) })?;
    let mut rows = Vec::new();
    let mut width = None;
    for (r, rec) in rdr.records().enumerate() {
        let line = r + 1;
        let csv_err = |msg: String| DataError::Csv { file: file.to_path_buf(), line, msg };
        let rec = rec.map_err(|e| csv_err(e.to_string()))?;
        let row: Vec<f32> = rec
            .iter()
            .enumerate()
            .map(|(c, s)| {
                s.trim().parse::<f32>().map_err(|_| csv_err(format!("column {}: '{s}' is not a number", c + 1)))
            })
            .collect::<Result<_, _>>()?;
        if let Some((c, x)) = row.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(csv_err(format!("column {}: {x} is not finite", c + 1)));
        }
        match width {
            None => width = Some(row.len()),
            Some(w) if w != row.len() => return Err(csv_err(format!("{} columns, earlier lines have {w}", row.len()))),
            _ => {}
        }
        rows.push(row);
    }
    Ok(Table { file: file.to_path_buf(), rows })
}

/// One utterance's row in transcripts.csv.
struct Transcript {
    video: String,
    position: usize,
    label: u8,
}

fn read_transcripts(file: &Path) -> Result<Vec<Transcript>, DataError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(file)
        .map_err(|e| DataError::Io { file: file.to_path_buf(), source: std::io::Error::other(e) })?;
    let mut out = Vec::new();
    for (r, rec) in rdr.records().enumerate() {
        let csv_err = |msg: String| DataError::Csv { file: file.to_path_buf(), line: r + 1, msg };
        let rec = rec.map_err(|e| csv_err(e.to_string()))?;
        if rec.len() < 4 {
            return Err(csv_err(format!("{} columns, expected 4 (id, text, video number, label)", rec.len())));
        }
        let id = &rec[0];
        let (video, k) = id.rsplit_once('_').ok_or_else(|| csv_err(format!("id '{id}' is not VIDEOID_K")))?;
        let position = k.parse().map_err(|_| csv_err(format!("id '{id}': position '{k}' is not a number")))?;
        let label = match rec[3].trim() {
            "0" => 0,
            "1" => 1,
            other => return Err(csv_err(format!("label '{other}' is not 0 or 1"))),
        };
        out.push(Transcript { video: video.to_string(), position, label });
    }
    Ok(out)
}

/// An utterance gathered from the feature files.
struct Utt {
    position: usize,
    features: [Vec<f32>; 3],
    label: u8,
}

/// Read the CSV directory into train and test, then move a seeded
/// `valid_fraction` of the training videos (at least one when the fraction is
/// positive, never all) into valid. The test split is never touched. Videos in
/// each split are ordered by id; utterances by their position in the video.
pub fn prepare(dir: &Path, valid_fraction: f64, seed: u64) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::NotFound(dir.to_path_buf()));
    }
    if !(0.0..1.0).contains(&valid_fraction) {
        return Err(DataError::Inconsistent {
            at: Location::file(dir),
            what: format!("validation fraction {valid_fraction} is outside [0, 1)"),
        });
    }
    let transcripts_file = dir.join("transcripts.csv");
    let transcripts = read_transcripts(&transcripts_file)?;
    let mut dims = [0usize; 3];
    // (split, video id) -> utterances
    let mut videos: [BTreeMap<String, Vec<Utt>>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut seen_in: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut used = vec![false; transcripts.len()];
    for (si, part) in ["train", "test"].into_iter().enumerate() {
        let index = read_table(&dir.join(format!("text_{part}.csv")))?;
        let tables: Vec<Table> = Modality::ALL
            .iter()
            .map(|m| read_table(&dir.join(format!("{}_{part}0.csv", m.name()))))
            .collect::<Result<_, _>>()?;
        for t in &tables {
            if t.rows.len() != index.rows.len() {
                return Err(DataError::Inconsistent {
                    at: Location::file(&t.file),
                    what: format!("{} rows but {} has {}", t.rows.len(), index.file.display(), index.rows.len()),
                });
            }
        }
        for m in Modality::ALL {
            let w = tables[m.index()].rows.first().map_or(0, |r| r.len().saturating_sub(1));
            if dims[m.index()] == 0 {
                dims[m.index()] = w;
            } else if dims[m.index()] != w {
                return Err(DataError::Dim {
                    at: Location::file(&tables[m.index()].file),
                    modality: m.name(),
                    got: w,
                    expected: dims[m.index()],
                    other: "the train files".to_string(),
                });
            }
        }
        for (r, idx_row) in index.rows.iter().enumerate() {
            let line_err = |file: &Path, msg: String| DataError::Csv { file: file.to_path_buf(), line: r + 1, msg };
            let idx = idx_row.first().copied().unwrap_or(-1.0);
            if idx < 0.0 || idx.fract() != 0.0 || idx as usize >= transcripts.len() {
                return Err(line_err(&index.file, format!("utterance index {idx} is not a row of transcripts.csv")));
            }
            let idx = idx as usize;
            if std::mem::replace(&mut used[idx], true) {
                return Err(line_err(&index.file, format!("utterance {idx} appears twice")));
            }
            let t = &transcripts[idx];
            let mut features: [Vec<f32>; 3] = Default::default();
            for m in Modality::ALL {
                let row = &tables[m.index()].rows[r];
                let (feat, label) = row.split_at(row.len() - 1);
                if label[0] != f32::from(t.label) {
                    return Err(line_err(
                        &tables[m.index()].file,
                        format!(
                            "label {} disagrees with transcripts.csv line {} (label {})",
                            label[0],
                            idx + 1,
                            t.label
                        ),
                    ));
                }
                features[m.index()] = feat.to_vec();
            }
            if let Some(other) = seen_in.insert(t.video.clone(), part) {
                if other != part {
                    return Err(line_err(
                        &index.file,
                        format!("video {} has utterances in both train and test", t.video),
                    ));
                }
            }
            videos[si].entry(t.video.clone()).or_default().push(Utt { position: t.position, features, label: t.label });
        }
    }
    let to_video = |id: String, mut utts: Vec<Utt>| -> Result<Video, DataError> {
        utts.sort_by_key(|u| u.position);
        if let Some(w) = utts.windows(2).find(|w| w[0].position == w[1].position) {
            return Err(DataError::Inconsistent {
                at: Location::file(&transcripts_file),
                what: format!("video {id} has two utterances at position {}", w[0].position),
            });
        }
        Ok(Video {
            len: utts.len(),
            features: Modality::ALL
                .map(|m| Some(utts.iter().flat_map(|u| u.features[m.index()].iter().copied()).collect())),
            sentiment: utts.iter().map(|u| if u.label == 1 { POSITIVE_SCORE } else { -POSITIVE_SCORE }).collect(),
            emotion: None,
            id,
        })
    };
    let [train_map, test_map] = videos;
    let mut train: Vec<Video> = train_map.into_iter().map(|(id, u)| to_video(id, u)).collect::<Result<_, _>>()?;
    let test: Vec<Video> = test_map.into_iter().map(|(id, u)| to_video(id, u)).collect::<Result<_, _>>()?;
    let valid = carve_valid(&mut train, valid_fraction, seed);
    let ds = Dataset { source: dir.display().to_string(), dims, has_emotion: false, splits: [train, valid, test] };
    ds.validate()?;
    Ok(ds)
}

/// Move round(fraction * N) training videos, chosen by a seeded shuffle of the
/// id-sorted list, into a new validation split; both stay sorted by id.
pub fn carve_valid(train: &mut Vec<Video>, fraction: f64, seed: u64) -> Vec<Video> {
    let n = train.len();
    if fraction <= 0.0 || n < 2 {
        return Vec::new();
    }
    let k = ((fraction * n as f64).round() as usize).clamp(1, n - 1);
    train.sort_by(|a, b| a.id.cmp(&b.id));
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut chosen = vec![false; n];
    for &i in &order[..k] {
        chosen[i] = true;
    }
    let (mut valid, mut keep) = (Vec::with_capacity(k), Vec::with_capacity(n - k));
    for (v, c) in std::mem::take(train).into_iter().zip(chosen) {
        if c {
            valid.push(v)
        } else {
            keep.push(v)
        }
    }
    *train = keep;
    valid
}
