//! CMU-MOSEI from the CMU-MultimodalSDK's computational sequences (`.csd`,
//! HDF5): the paper's utterance-level features, each the mean of a modality's
//! rows inside a labelled segment, computed by the SDK's own rule (`align`).
//!
//! Streams one video at a time: only that video's rows of each file are in
//! memory. Videos come from the standard folds (`data/mosei_folds.json`, built
//! in) in fold order; inside a video, utterances are ordered by start time.
//! What is cleaned or dropped is counted in a `Report`. See docs/data-formats.md.

pub mod align;
pub mod csd;
pub mod report;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{DataError, Dataset, SplitName, Video};
use crate::config::EMOTIONS;
use csd::{Csd, Seq};
pub use report::Report;

pub const TEXT_FILE: &str = "CMU_MOSEI_TimestampedWordVectors.csd";
pub const AUDIO_FILE: &str = "CMU_MOSEI_COVAREP.csd";
pub const FACET_FILE: &str = "CMU_MOSEI_VisualFacet42.csd";
pub const OPENFACE_FILE: &str = "CMU_MOSEI_VisualOpenFace2.csd";
pub const LABELS_FILE: &str = "CMU_MOSEI_Labels.csd";

/// Columns of "All Labels": sentiment, happy, sad, anger, surprise, disgust, fear.
pub const LABEL_COLUMNS: usize = 7;
/// For each emotion in MODEL.md's order (anger, disgust, fear, happy, sad,
/// surprise), its column in the labels file.
pub const EMOTION_COLUMN: [usize; EMOTIONS] = [3, 5, 6, 1, 2, 4];

/// The standard folds, as the SDK ships them.
static FOLDS: &str = include_str!("../../../data/mosei_folds.json");

/// Which visual features to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visual {
    Facet,
    OpenFace,
}

impl Visual {
    pub fn file(self) -> &'static str {
        match self {
            Visual::Facet => FACET_FILE,
            Visual::OpenFace => OPENFACE_FILE,
        }
    }
}

impl FromStr for Visual {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "facet" => Ok(Visual::Facet),
            "openface" => Ok(Visual::OpenFace),
            _ => Err(format!("unknown visual features '{s}': allowed are facet, openface")),
        }
    }
}

/// Everything that can be wrong with an SDK directory. Each names the file
/// and, where it applies, the video and the segment (its row in the labels file).
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("{file}: no such file (prepare-mosei needs the {role} sequence here)")]
    Missing { file: PathBuf, role: &'static str },
    #[error("{file}: not a readable HDF5 computational sequence: {msg}")]
    Hdf5 { file: PathBuf, msg: String },
    #[error("{file}: {what}")]
    Layout { file: PathBuf, what: String },
    #[error("{file}: video '{video}': {what}")]
    Video { file: PathBuf, video: String, what: String },
    #[error("{file}: video '{video}', segment {segment} [{start}, {end}] s: {what}")]
    Segment { file: PathBuf, video: String, segment: usize, start: f64, end: f64, what: String },
    #[error("the built-in folds (data/mosei_folds.json) are unreadable: {0}")]
    Folds(String),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// The SDK's standard train / valid / test video ids, in the SDK's order.
pub fn standard_folds() -> Result<[Vec<String>; 3], SdkError> {
    #[derive(serde::Deserialize)]
    struct Folds {
        train: Vec<String>,
        valid: Vec<String>,
        test: Vec<String>,
    }
    let f: Folds = serde_json::from_str(FOLDS).map_err(|e| SdkError::Folds(e.to_string()))?;
    Ok([f.train, f.valid, f.test])
}

/// Prepare the utterance-level dataset from the SDK directory `dir`.
pub fn prepare(dir: &Path, visual: Visual) -> Result<(Dataset, Report), SdkError> {
    let roles: [(&'static str, &str); 4] =
        [("text", TEXT_FILE), ("audio", AUDIO_FILE), ("video", visual.file()), ("labels", LABELS_FILE)];
    let paths = roles.map(|(role, name)| (role, dir.join(name)));
    for (role, p) in &paths {
        if !p.is_file() {
            return Err(SdkError::Missing { file: p.clone(), role });
        }
    }
    let files = paths.iter().map(|(_, p)| Csd::open(p)).collect::<Result<Vec<_>, _>>()?;
    let (features, labels) = files.split_at(3);
    let labels = &labels[0];

    let mut report = Report::default();
    for (role, p) in &paths {
        report.files.insert(role.to_string(), p.display().to_string());
    }
    let folds = standard_folds()?;
    let in_folds: HashMap<&str, SplitName> =
        SplitName::ALL.iter().flat_map(|&s| folds[s.index()].iter().map(move |id| (id.as_str(), s))).collect();
    for id in labels.videos() {
        if !in_folds.contains_key(id) {
            report.outside_folds.push(id.to_string());
        }
    }
    let labelled: BTreeSet<&str> = labels.videos().collect();
    for (m, f) in features.iter().enumerate() {
        *report.unlabelled_in_features.get_mut(m) = f.videos().filter(|v| !labelled.contains(v)).count();
    }

    let mut dims: [Option<(usize, String)>; 3] = [None, None, None];
    let mut splits: [Vec<Video>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for split in SplitName::ALL {
        for id in &folds[split.index()] {
            if !labels.has(id) {
                report.fold_videos_without_labels.push(id.clone());
                continue;
            }
            let missing: Vec<String> = features
                .iter()
                .filter(|f| !f.has(id))
                .map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
                .collect();
            if !missing.is_empty() {
                report.missing_modality.push(format!("{id} (missing in {})", missing.join(", ")));
                continue;
            }
            if let Some(v) = prepare_video(id, features, labels, &mut dims, &mut report)? {
                let c = report.split_mut(split);
                c.videos += 1;
                c.utterances += v.len;
                splits[split.index()].push(v);
            }
        }
    }
    let dims = dims.map(|d| d.map_or(0, |(n, _)| n));
    report.dims = dims;
    let ds =
        Dataset { source: format!("CMU-MultimodalSDK files in {}", dir.display()), dims, has_emotion: true, splits };
    ds.validate()?;
    Ok((ds, report))
}

/// One labelled segment that survives the SDK's length rule, with its row in the labels file.
struct Segment {
    row: usize,
    start: f64,
    end: f64,
}

/// Align one video; `None` when no segment is left. `dims` holds each
/// modality's dim and the video it was first seen in, for the error message.
fn prepare_video(
    id: &str,
    features: &[Csd],
    labels: &Csd,
    dims: &mut [Option<(usize, String)>; 3],
    report: &mut Report,
) -> Result<Option<Video>, SdkError> {
    let lab = labels.read(id)?;
    if lab.dim != LABEL_COLUMNS {
        return Err(SdkError::Video {
            file: labels.path.clone(),
            video: id.to_string(),
            what: format!(
                "labels have {} columns, expected {LABEL_COLUMNS} (sentiment, happy, sad, anger, surprise, disgust, fear)",
                lab.dim
            ),
        });
    }
    let seg_err = |row: usize, what: String| SdkError::Segment {
        file: labels.path.clone(),
        video: id.to_string(),
        segment: row,
        start: lab.intervals[row][0],
        end: lab.intervals[row][1],
        what,
    };
    let mut segments = Vec::new();
    for row in align::by_start(&lab.intervals) {
        let [start, end] = lab.intervals[row];
        if !(start.is_finite() && end.is_finite()) {
            return Err(seg_err(row, "the interval is not finite".into()));
        }
        if let Some(c) = lab.row(row).iter().position(|x| !x.is_finite()) {
            return Err(seg_err(row, format!("label column {c} is {}", lab.row(row)[c])));
        }
        if align::too_short(start, end) {
            report.zero_length_segments.push(format!("{id}[{row}]"));
            continue;
        }
        if let Some(prev) = segments.last() {
            let prev: &Segment = prev;
            if (prev.start - start).abs() < align::EPSILON && (prev.end - end).abs() < align::EPSILON {
                report.duplicate_segments.push(format!("{id}[{row}] = {id}[{}]", prev.row));
            } else if start < prev.end - align::EPSILON {
                report.overlapping_segments.push(format!("{id}[{row}] overlaps {id}[{}]", prev.row));
            }
        }
        segments.push(Segment { row, start, end });
    }
    if segments.is_empty() {
        report.videos_without_segments.push(id.to_string());
        return Ok(None);
    }
    let len = segments.len();
    let mut out: [Option<Vec<f32>>; 3] = [None, None, None];
    for (m, file) in features.iter().enumerate() {
        let seq = file.read(id)?;
        check_dim(&mut dims[m], &seq, file, id)?;
        out[m] = Some(average(&seq, &segments, m, report));
    }
    let mut sentiment = Vec::with_capacity(len);
    let mut emotion = Vec::with_capacity(len * EMOTIONS);
    for s in &segments {
        let row = lab.row(s.row);
        sentiment.push(clamp(row[0], -3.0, 3.0, &mut report.sentiment_clamped));
        for &c in &EMOTION_COLUMN {
            emotion.push(clamp(row[c], 0.0, 3.0, &mut report.emotion_clamped));
        }
    }
    Ok(Some(Video { id: id.to_string(), len, features: out, sentiment, emotion: Some(emotion) }))
}

fn check_dim(dim: &mut Option<(usize, String)>, seq: &Seq, file: &Csd, id: &str) -> Result<(), SdkError> {
    match dim {
        None => *dim = Some((seq.dim, id.to_string())),
        Some((d, first)) if *d != seq.dim => {
            return Err(SdkError::Video {
                file: file.path.clone(),
                video: id.to_string(),
                what: format!("features have {} columns, but {d} in video '{first}' of the same file", seq.dim),
            })
        }
        _ => {}
    }
    Ok(())
}

/// Each segment's mean row of `seq` (zeros when none survives), non-finite means set to 0; counted in `report`.
fn average(seq: &Seq, segments: &[Segment], m: usize, report: &mut Report) -> Vec<f32> {
    let d = seq.dim;
    report.non_finite.get_mut(m).input_values += seq.features.iter().filter(|x| !x.is_finite()).count();
    let order = align::by_start(&seq.intervals);
    let mut out = Vec::with_capacity(segments.len() * d);
    for s in segments {
        match align::mean(s.start, s.end, &seq.intervals, &order, &seq.features, d) {
            Some(row) => {
                for x in row {
                    if x.is_finite() {
                        out.push(x as f32);
                    } else {
                        report.non_finite.get_mut(m).zeroed_values += 1;
                        out.push(0.0);
                    }
                }
            }
            None => {
                *report.empty_segments.get_mut(m) += 1;
                out.extend(std::iter::repeat_n(0.0, d));
            }
        }
    }
    out
}

fn clamp(x: f64, lo: f64, hi: f64, count: &mut usize) -> f32 {
    if x < lo || x > hi {
        *count += 1;
    }
    x.clamp(lo, hi) as f32
}
