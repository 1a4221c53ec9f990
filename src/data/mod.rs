//! Datasets: splits of videos, each an ordered list of utterances with one
//! feature vector per modality, a sentiment score and (optionally) six emotion
//! intensities. Loaders (one file per format) validate everything before a
//! `Dataset` is returned, so a model never sees half-loaded or out-of-range
//! data. Letters: N videos in a split, U_max padded utterances, D_m a
//! modality's feature dim, E = 6 emotions.
//!
//! Formats: `native` (one .npz, our own), `authors` (the directory of
//! text/audio/video .npz files the paper's authors published), `mosi` (the
//! CSV files of ../shared/data/mosi, also bundled as `data/mosi.npz`),
//! `pickled` (MMSA's and MulT's pickles, read by the code-free reader in
//! `pickle`), and `synth` (a MOSEI-shaped generator). See docs/data-formats.md.

// `DataError` is large because every variant carries a full location (file,
// split, video, id, utterance). Errors are the cold path, loaded once; boxing
// them would only make every construction site noisier.
#![allow(clippy::result_large_err)]

pub mod authors;
pub mod batching;
pub mod info;
pub mod mosi;
pub mod native;
pub mod normalize;
pub mod pickle;
pub mod pickled;
pub mod sdk;
pub mod synth;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::batch::Batch;
use crate::config::{Modality, ModalitySet, EMOTIONS, EMOTION_NAMES};
use crate::npz::NpzError;

pub use batching::{make_batches, padding_efficiency, BatchMode};
pub use normalize::Normalizer;

/// The three standard splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    Train = 0,
    Valid = 1,
    Test = 2,
}

impl SplitName {
    pub const ALL: [SplitName; 3] = [SplitName::Train, SplitName::Valid, SplitName::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Valid => "valid",
            SplitName::Test => "test",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SplitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SplitName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(SplitName::Train),
            "valid" | "val" | "validation" | "dev" => Ok(SplitName::Valid),
            "test" => Ok(SplitName::Test),
            _ => Err(format!("unknown split '{s}': allowed are train, valid, test")),
        }
    }
}

/// One video: `len` utterances in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub id: String,
    /// Number of utterances, >= 1.
    pub len: usize,
    /// Per modality in T, A, V order, `None` when the dataset lacks it. Each (len, D_m), row-major.
    pub features: [Option<Vec<f32>>; 3],
    /// Sentiment scores in [-3, 3]; positive iff >= 0. (len)
    pub sentiment: Vec<f32>,
    /// Emotion intensities in [0, 3], order anger, disgust, fear, happy, sad, surprise. (len, 6)
    pub emotion: Option<Vec<f32>>,
}

impl Video {
    pub fn feature(&self, m: Modality) -> Option<&[f32]> {
        self.features[m.index()].as_deref()
    }
}

/// A whole dataset. Every split holds the same modalities and either all
/// videos have emotion labels or none do (checked by `validate`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where it came from (a path, "bundled MOSI", "synthetic MOSEI-shaped (seed 3)"), for messages.
    pub source: String,
    /// Feature dims in T, A, V order; 0 when a modality is absent.
    pub dims: [usize; 3],
    /// Whether the videos carry emotion intensities.
    pub has_emotion: bool,
    /// Videos of train, valid, test (indexed by `SplitName::index`).
    pub splits: [Vec<Video>; 3],
}

/// Where a problem sits: file, then (where they apply) split, video index
/// with its id, utterance index. Displayed as
/// `data.npz: split train, video 3 (id 'abc'), utterance 2`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    pub file: PathBuf,
    pub split: Option<SplitName>,
    pub video: Option<usize>,
    pub id: Option<String>,
    pub utterance: Option<usize>,
}

impl Location {
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Location { file: file.into(), ..Default::default() }
    }
    pub fn split(mut self, s: SplitName) -> Self {
        self.split = Some(s);
        self
    }
    pub fn video(mut self, v: usize, id: Option<&str>) -> Self {
        self.video = Some(v);
        self.id = id.map(str::to_string);
        self
    }
    pub fn utterance(mut self, i: usize) -> Self {
        self.utterance = Some(i);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(s) = self.split {
            write!(f, ": split {s}")?;
        }
        if let Some(v) = self.video {
            write!(f, ", video {v}")?;
            if let Some(id) = &self.id {
                write!(f, " (id '{id}')")?;
            }
        }
        if let Some(u) = self.utterance {
            write!(f, ", utterance {u}")?;
        }
        Ok(())
    }
}

/// Everything that can be wrong with data on disk or in memory. Each variant
/// carries where (file, split, video, utterance) so a user can find and fix it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Npz(#[from] NpzError),
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    #[error("{at}: array '{key}' is missing (needed because {why})")]
    Missing { at: Location, key: String, why: String },
    #[error("{at}: array '{key}' has shape {got:?}, expected {expected}")]
    Shape { at: Location, key: String, got: Vec<usize>, expected: String },
    #[error("{at}: {what}")]
    Inconsistent { at: Location, what: String },
    #[error("{at}: {modality} features are {got}-dimensional here but {expected}-dimensional in {other}")]
    Dim { at: Location, modality: &'static str, got: usize, expected: usize, other: String },
    #[error("{at}: length {len} is outside 1..={u_max} (a video needs at least one utterance and at most the padded size U_max = {u_max})")]
    Length { at: Location, len: i64, u_max: usize },
    #[error("{at}: {key} feature {feature} is {value} (features must be finite)")]
    NonFinite { at: Location, key: String, feature: usize, value: f32 },
    #[error("{at}: sentiment {value} is outside [-3, 3]")]
    Sentiment { at: Location, value: f32 },
    #[error("{at}: {emotion} intensity {value} is outside [0, 3]")]
    Emotion { at: Location, emotion: &'static str, value: f32 },
    #[error("{0}: no feature arrays at all (expected text, audio and/or video)")]
    NoFeatures(PathBuf),
    #[error("the model uses {adjective} features but {source_name} has no {modality} arrays")]
    ModalityAbsent { source_name: String, modality: &'static str, adjective: &'static str },
    #[error("the model trains the emotion head but {source_name} has no emotion labels: train sentiment only (--tasks sentiment) or use data with emotions")]
    NoEmotion { source_name: String },
    #[error("{file}: line {line}: {msg}")]
    Csv { file: PathBuf, line: usize, msg: String },
    #[error("normaliser does not fit this data: {0}")]
    Normalizer(String),
}

impl Dataset {
    /// Load a dataset: a directory is read as the authors' format
    /// (text.npz, audio.npz, video.npz), anything else as a native .npz.
    pub fn load(path: &Path) -> Result<Dataset, DataError> {
        if !path.exists() {
            return Err(DataError::NotFound(path.to_path_buf()));
        }
        if path.is_dir() {
            authors::read_dir(path)
        } else {
            native::read(path)
        }
    }

    /// The real CMU-MOSI data embedded in the crate (data/mosi.npz), so that
    /// tests and training without `--data` use real data on a fresh clone.
    pub fn bundled_mosi() -> Result<Dataset, DataError> {
        mosi::bundled()
    }

    pub fn split(&self, s: SplitName) -> &[Video] {
        &self.splits[s.index()]
    }

    pub fn split_mut(&mut self, s: SplitName) -> &mut Vec<Video> {
        &mut self.splits[s.index()]
    }

    /// Utterance counts of a split's videos, in order (what batching needs).
    pub fn lens(&self, s: SplitName) -> Vec<usize> {
        self.split(s).iter().map(|v| v.len).collect()
    }

    /// Number of utterances in a split.
    pub fn utterances(&self, s: SplitName) -> usize {
        self.split(s).iter().map(|v| v.len).sum()
    }

    pub fn has(&self, m: Modality) -> bool {
        self.dims[m.index()] > 0
    }

    /// Stop with a clear error if a model needs a modality this data lacks.
    pub fn require(&self, modalities: ModalitySet) -> Result<(), DataError> {
        for m in modalities.modalities() {
            if !self.has(m) {
                let adjective = match m {
                    Modality::Text => "textual",
                    Modality::Audio => "acoustic",
                    Modality::Video => "visual",
                };
                return Err(DataError::ModalityAbsent {
                    source_name: self.source.clone(),
                    modality: m.name(),
                    adjective,
                });
            }
        }
        Ok(())
    }

    /// Stop with a clear error if a model needs emotion labels this data lacks (e.g. MOSI).
    pub fn require_emotion(&self) -> Result<(), DataError> {
        if self.has_emotion {
            Ok(())
        } else {
            Err(DataError::NoEmotion { source_name: self.source.clone() })
        }
    }

    /// Check every invariant (dims, lengths, finiteness, label ranges) of an
    /// in-memory dataset; loaders call it before returning.
    pub fn validate(&self) -> Result<(), DataError> {
        validate::dataset(self)
    }

    /// Pad the chosen videos of a split to the longest among them (U = max len)
    /// and convert to f64: what the model consumes. Padded positions are zero.
    /// Panics if an index is out of range (indices come from `make_batches`).
    pub fn batch(&self, split: SplitName, indices: &[usize]) -> Batch {
        let videos: Vec<&Video> = indices.iter().map(|&i| &self.split(split)[i]).collect();
        let b = videos.len();
        let u = videos.iter().map(|v| v.len).max().unwrap_or(0);
        let pad = |width: usize, get: &dyn Fn(&Video) -> &[f32]| -> Vec<f64> {
            // (B, U, width)
            let mut out = vec![0.0f64; b * u * width];
            for (bi, v) in videos.iter().enumerate() {
                let src = get(v);
                let dst = &mut out[bi * u * width..(bi * u + v.len) * width];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f64::from(s);
                }
            }
            out
        };
        let features = Modality::ALL
            .map(|m| self.has(m).then(|| pad(self.dims[m.index()], &|v: &Video| v.feature(m).unwrap_or(&[]))));
        let emotion = self.has_emotion.then(|| pad(EMOTIONS, &|v: &Video| v.emotion.as_deref().unwrap_or(&[])));
        Batch {
            b,
            u,
            features,
            dims: self.dims,
            len: videos.iter().map(|v| v.len).collect(),
            sentiment: pad(1, &|v: &Video| &v.sentiment),
            emotion,
        }
    }
}

/// Emotion name for error messages and reports (index < 6).
pub(crate) fn emotion_name(k: usize) -> &'static str {
    EMOTION_NAMES[k]
}
