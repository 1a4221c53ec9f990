//! Pickled, word-aligned datasets as researchers hold them, turned into the
//! paper's utterance-level features: MMSA's `aligned_50.pkl` /
//! `unaligned_50.pkl` and the MulT authors' `mosei_senti_data.pkl`. Both are
//! `{train, valid, test: {...}}` with one row per utterance (segment):
//!
//! - MMSA: `text`, `audio`, `vision` (N, L_m, D_m), `regression_labels` (N),
//!   `id` (N) as `video$_$clip`, and for unaligned files `audio_lengths` /
//!   `vision_lengths` (N); `raw_text`, `text_bert`, `*_labels` are not used.
//! - MulT: `text`, `audio`, `vision` (N, L, D_m), `labels` (N, 1, 1),
//!   `id` (N, 3) as (video, start, end) strings.
//!
//! Each utterance's vector is the mean of its real rows: the first
//! `{key}_lengths[i]` rows where the file stores lengths, otherwise the rows
//! that are not all zero (padding). Non-finite values count as 0 (both
//! projects' own loaders zero `-inf` audio). Utterances are regrouped into
//! videos by id and ordered by clip number (MMSA) or start time (MulT).
//! The file is read by the restricted reader in `pickle`, which runs no code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::pickle::{self, ArrayData, Id, NdArray, Node, ParseError, Pickle};
use super::{DataError, Dataset, SplitName, Video};
use crate::config::Modality;

/// The pickle keys of the modalities, in T, A, V order.
pub const FEATURE_KEYS: [&str; 3] = ["text", "audio", "vision"];

#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{file}: not a pickle this reader accepts: {source}")]
    Parse { file: PathBuf, source: ParseError },
    #[error("{file}: at '{path}': {what}")]
    Layout { file: PathBuf, path: String, what: String },
    #[error("{file}: at '{path}', utterance {index}{}: {what}", id.as_ref().map(|i| format!(" (id '{i}')")).unwrap_or_default())]
    Utterance { file: PathBuf, path: String, index: usize, id: Option<String>, what: String },
    #[error(transparent)]
    Data(#[from] DataError),
}

/// What the conversion did, per split and modality; printed and stored as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PickleReport {
    pub file: String,
    /// "mmsa" (regression_labels) or "mult" (labels).
    pub layout: String,
    pub splits: Vec<SplitReport>,
    /// Why the result has no emotion labels.
    pub emotions: String,
    /// Split keys that were present but not used (e.g. raw_text, text_bert).
    pub ignored_keys: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitReport {
    pub split: SplitName,
    pub utterances: usize,
    pub videos: usize,
    pub modalities: Vec<ModalityReport>,
    /// Sentiment scores outside [-3, 3], clamped.
    pub sentiment_clamped: usize,
    /// Utterances sharing a video and clip key with another (kept, in file order).
    pub duplicate_clips: usize,
    /// Ids without a clip part (`$_$`, `[k]`, `_k` or a start time): ordered by file position.
    pub ids_without_clip: usize,
    /// Videos of this split whose id also occurs in an earlier split.
    pub videos_in_earlier_split: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModalityReport {
    pub modality: &'static str,
    pub key: &'static str,
    pub dim: usize,
    /// Padded sequence length L in the file.
    pub seq_len: usize,
    /// "stored audio_lengths" or "non-padding rows".
    pub rows: String,
    /// Real rows averaged, summed over utterances.
    pub rows_averaged: usize,
    /// Utterances with no real row: their vector is zeros.
    pub empty_utterances: usize,
    /// NaN / +-inf values counted as 0.
    pub non_finite_zeroed: usize,
}

/// Read a pickle file and convert it.
pub fn prepare(path: &Path) -> Result<(Dataset, PickleReport), PickleError> {
    let bytes = std::fs::read(path).map_err(|source| PickleError::Io { file: path.to_path_buf(), source })?;
    from_bytes(&bytes, path)
}

/// Convert pickle bytes; `file` names them in messages.
pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<(Dataset, PickleReport), PickleError> {
    let p = pickle::parse(bytes).map_err(|source| PickleError::Parse { file: file.to_path_buf(), source })?;
    Converter { p: &p, file }.run()
}

struct Converter<'a> {
    p: &'a Pickle,
    file: &'a Path,
}

/// An utterance's place in its video: clip number, start time, or file position.
struct Key {
    video: String,
    order: f64,
    has_clip: bool,
}

impl Converter<'_> {
    fn layout(&self, path: &str, what: impl Into<String>) -> PickleError {
        PickleError::Layout { file: self.file.to_path_buf(), path: path.to_string(), what: what.into() }
    }

    fn utt(&self, path: &str, index: usize, id: Option<&str>, what: impl Into<String>) -> PickleError {
        PickleError::Utterance {
            file: self.file.to_path_buf(),
            path: path.to_string(),
            index,
            id: id.map(str::to_string),
            what: what.into(),
        }
    }

    fn array(&self, id: Id, path: &str) -> Result<&NdArray, PickleError> {
        match self.p.node(id) {
            Node::Array(Some(a)) => Ok(a),
            _ => Err(self.layout(path, format!("expected a numpy array, found {}", self.p.describe(id)))),
        }
    }

    fn run(&self) -> Result<(Dataset, PickleReport), PickleError> {
        let root = self.p.root;
        if !matches!(self.p.node(root), Node::Dict(_)) {
            return Err(self.layout("", format!("expected a dict of splits, found {}", self.p.describe(root))));
        }
        let has = FEATURE_KEYS
            .map(|k| SplitName::ALL.iter().any(|s| self.split_dict(*s).is_ok_and(|d| self.p.get(d, k).is_some())));
        if !has.iter().any(|&h| h) {
            return Err(self.layout("", "no feature arrays (text, audio, vision) in any split"));
        }
        let mut splits: [Vec<Video>; 3] = Default::default();
        let mut reports = Vec::new();
        let mut dims = [0usize; 3];
        let mut layout = String::new();
        let mut ignored = Vec::new();
        let mut seen: HashMap<String, SplitName> = HashMap::new();
        for split in SplitName::ALL {
            let d = self.split_dict(split)?;
            let (videos, mut rep, split_dims, lay, used) = self.split(split, d, has)?;
            for (m, &dim) in split_dims.iter().enumerate() {
                if split != SplitName::Train && dim != dims[m] {
                    let what =
                        format!("{} features are {dim}-dimensional here but {} in train", FEATURE_KEYS[m], dims[m]);
                    return Err(self.layout(&format!("{split}/{}", FEATURE_KEYS[m]), what));
                }
            }
            dims = split_dims;
            layout = lay.to_string();
            for k in self.p.keys(d) {
                if !used.contains(&k.as_str()) && !ignored.contains(&k) {
                    ignored.push(k);
                }
            }
            rep.videos_in_earlier_split = videos.iter().filter(|v| seen.contains_key(&v.id)).count();
            for v in &videos {
                seen.entry(v.id.clone()).or_insert(split);
            }
            splits[split.index()] = videos;
            reports.push(rep);
        }
        let ds = Dataset { source: self.file.display().to_string(), dims, has_emotion: false, splits };
        ds.validate()?;
        let report = PickleReport {
            file: self.file.display().to_string(),
            layout,
            splits: reports,
            emotions: "absent: these pickles carry sentiment only; train with --tasks sentiment".into(),
            ignored_keys: ignored,
        };
        Ok((ds, report))
    }

    fn split_dict(&self, split: SplitName) -> Result<Id, PickleError> {
        let d = self.p.get(self.p.root, split.as_str()).ok_or_else(|| {
            self.layout(
                split.as_str(),
                format!("split missing (the file has keys: {})", self.p.keys(self.p.root).join(", ")),
            )
        })?;
        match self.p.node(d) {
            Node::Dict(_) => Ok(d),
            _ => Err(self.layout(split.as_str(), format!("expected a dict, found {}", self.p.describe(d)))),
        }
    }

    #[allow(clippy::type_complexity)]
    fn split(
        &self,
        split: SplitName,
        d: Id,
        has: [bool; 3],
    ) -> Result<(Vec<Video>, SplitReport, [usize; 3], &'static str, Vec<&'static str>), PickleError> {
        let sp = split.as_str();
        let (label_key, layout) = match (self.p.get(d, "regression_labels"), self.p.get(d, "labels")) {
            (Some(_), _) => ("regression_labels", "mmsa"),
            (None, Some(_)) => ("labels", "mult"),
            (None, None) => return Err(self.layout(sp, "no sentiment labels ('regression_labels' or 'labels')")),
        };
        let mut used = vec![label_key, "id"];
        let sentiment = self.labels(d, &format!("{sp}/{label_key}"), label_key)?;
        let n = sentiment.len();
        let keys = self.ids(d, &format!("{sp}/id"), n)?;
        let mut features: [Option<Vec<f32>>; 3] = [None, None, None];
        let mut dims = [0usize; 3];
        let mut mods = Vec::new();
        for m in Modality::ALL {
            let key = FEATURE_KEYS[m.index()];
            if !has[m.index()] {
                continue;
            }
            used.push(key);
            let path = format!("{sp}/{key}");
            let id =
                self.p.get(d, key).ok_or_else(|| self.layout(&path, "missing here but present in another split"))?;
            let a = self.array(id, &path)?;
            if a.shape.len() != 3 || a.shape[0] != n || a.shape[2] == 0 || !matches!(a.dtype.kind, 'f' | 'i' | 'u') {
                let what =
                    format!("expected a numeric array of shape [{n}, L, D] with D >= 1, found {}", self.p.describe(id));
                return Err(self.layout(&path, what));
            }
            let lengths = match self.p.get(d, LENGTH_KEYS[m.index()]) {
                Some(lid) => {
                    used.push(LENGTH_KEYS[m.index()]);
                    Some(self.lengths(lid, &format!("{sp}/{}", LENGTH_KEYS[m.index()]), n, a.shape[1])?)
                }
                None => None,
            };
            let (avg, rep) = average(a, lengths.as_deref(), m, key);
            dims[m.index()] = a.shape[2];
            features[m.index()] = Some(avg);
            mods.push(rep);
        }
        let mut rep = SplitReport {
            split,
            utterances: n,
            videos: 0,
            modalities: mods,
            sentiment_clamped: 0,
            duplicate_clips: 0,
            ids_without_clip: keys.iter().filter(|k| !k.has_clip).count(),
            videos_in_earlier_split: 0,
        };
        // Group by video id (videos sorted by id), utterances by clip order then file position.
        let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            groups.entry(&k.video).or_default().push(i);
        }
        let mut names: Vec<&str> = groups.keys().copied().collect();
        names.sort_unstable();
        let mut videos = Vec::with_capacity(names.len());
        for name in names {
            let mut idx = groups.remove(name).unwrap_or_default();
            idx.sort_by(|&a, &b| keys[a].order.total_cmp(&keys[b].order).then(a.cmp(&b)));
            rep.duplicate_clips +=
                idx.windows(2).filter(|w| keys[w[0]].has_clip && keys[w[0]].order == keys[w[1]].order).count();
            let mut sent = Vec::with_capacity(idx.len());
            for &i in &idx {
                let s = sentiment[i];
                if !s.is_finite() {
                    return Err(self.utt(
                        &format!("{sp}/{label_key}"),
                        i,
                        Some(&keys[i].video),
                        format!("sentiment is {s}"),
                    ));
                }
                if s.abs() > 3.0 {
                    rep.sentiment_clamped += 1;
                }
                sent.push(s.clamp(-3.0, 3.0) as f32);
            }
            let feats = Modality::ALL.map(|m| {
                features[m.index()].as_ref().map(|f| {
                    let dm = dims[m.index()];
                    idx.iter().flat_map(|&i| f[i * dm..(i + 1) * dm].iter().copied()).collect()
                })
            });
            videos.push(Video {
                id: name.to_string(),
                len: idx.len(),
                features: feats,
                sentiment: sent,
                emotion: None,
            });
        }
        rep.videos = videos.len();
        Ok((videos, rep, dims, layout, used))
    }

    /// Sentiment per utterance: (N), (N, 1) or (N, 1, 1), as an array or a list of numbers.
    fn labels(&self, d: Id, path: &str, key: &str) -> Result<Vec<f64>, PickleError> {
        let id = self.p.get(d, key).ok_or_else(|| self.layout(path, "missing"))?;
        match self.p.node(id) {
            Node::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    self.p.as_number(v).ok_or_else(|| self.utt(path, i, None, format!("expected a number, found {}", self.p.describe(v))))
                })
                .collect(),
            Node::Array(Some(a)) if !a.shape.is_empty() && a.shape[1..].iter().all(|&s| s == 1) => {
                (0..a.len()).map(|i| a.number(i).ok_or_else(|| self.layout(path, "labels must be numeric"))).collect()
            }
            _ => Err(self.layout(
                path,
                format!(
                    "expected sentiment scores of shape [N], [N, 1] or [N, 1, 1], found {} (emotion pickles are not supported)",
                    self.p.describe(id)
                ),
            )),
        }
    }

    /// Stored sequence lengths (N), each in 0..=L.
    fn lengths(&self, id: Id, path: &str, n: usize, l: usize) -> Result<Vec<usize>, PickleError> {
        let values: Vec<Option<f64>> = match self.p.node(id) {
            Node::List(items) => items.iter().map(|&v| self.p.as_number(v)).collect(),
            Node::Array(Some(a)) if a.shape.len() == 1 => (0..a.len()).map(|i| a.number(i)).collect(),
            _ => return Err(self.layout(path, format!("expected {n} lengths, found {}", self.p.describe(id)))),
        };
        if values.len() != n {
            return Err(self.layout(path, format!("{} lengths for {n} utterances", values.len())));
        }
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(x) if x >= 0.0 && x <= l as f64 && x.fract() == 0.0 => Ok(x as usize),
                _ => {
                    let shown = v.map_or_else(|| "missing or not a number".to_string(), |x| x.to_string());
                    Err(self.utt(
                        path,
                        i,
                        None,
                        format!("length {shown} is not a whole number in 0..={l} (the padded length)"),
                    ))
                }
            })
            .collect()
    }

    /// Video id and order key of every utterance.
    fn ids(&self, d: Id, path: &str, n: usize) -> Result<Vec<Key>, PickleError> {
        let id = self
            .p
            .get(d, "id")
            .ok_or_else(|| self.layout(path, "missing: utterances cannot be grouped into videos without ids"))?;
        // Rows of one or more strings: MMSA's list of 'video$_$clip', MulT's (N, 3) (video, start, end).
        let rows: Vec<Vec<Option<String>>> = match self.p.node(id) {
            Node::List(items) => items
                .iter()
                .map(|&v| match self.p.node(v) {
                    Node::Tuple(t) | Node::List(t) => t.iter().map(|&x| self.p.as_str(x)).collect(),
                    _ => vec![self.p.as_str(v)],
                })
                .collect(),
            Node::Array(Some(a)) if (1..=2).contains(&a.shape.len()) => {
                let w = a.shape.get(1).copied().unwrap_or(1);
                if w == 0 {
                    return Err(self.layout(path, "an id array with no columns"));
                }
                (0..a.shape[0]).map(|r| (0..w).map(|c| self.element_str(a, r * w + c)).collect()).collect()
            }
            _ => {
                return Err(self.layout(path, format!("expected a list or array of ids, found {}", self.p.describe(id))))
            }
        };
        if rows.len() != n {
            return Err(self.layout(path, format!("{} ids for {n} utterances", rows.len())));
        }
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                let video = row.first().cloned().flatten().filter(|v| !v.is_empty());
                let Some(video) = video else {
                    return Err(self.utt(path, i, None, "the id is not a non-empty string"));
                };
                let start =
                    row.get(1).cloned().flatten().and_then(|s| s.trim().parse::<f64>().ok()).filter(|x| x.is_finite());
                Ok(match start {
                    Some(t) => Key { video, order: t, has_clip: true },
                    None => split_clip(&video, i),
                })
            })
            .collect()
    }

    fn element_str(&self, a: &NdArray, i: usize) -> Option<String> {
        match &a.data {
            ArrayData::Objects(ids) => ids.get(i).and_then(|&x| self.p.as_str(x)),
            ArrayData::Raw(_) => a.string(i),
        }
    }
}

const LENGTH_KEYS: [&str; 3] = ["text_lengths", "audio_lengths", "vision_lengths"];

/// 'video$_$clip', 'video[k]' or 'video_k' (k a number); otherwise the whole id is the video, ordered by position.
fn split_clip(id: &str, position: usize) -> Key {
    let num = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
    let parts = [id.rsplit_once("$_$"), id.strip_suffix(']').and_then(|s| s.rsplit_once('[')), id.rsplit_once('_')];
    for (video, clip) in parts.into_iter().flatten() {
        if let (false, Some(k)) = (video.is_empty(), num(clip)) {
            return Key { video: video.to_string(), order: k, has_clip: true };
        }
    }
    Key { video: id.to_string(), order: position as f64, has_clip: false }
}

/// Mean of each utterance's real rows: (N, L, D) -> (N, D).
fn average(a: &NdArray, lengths: Option<&[usize]>, m: Modality, key: &'static str) -> (Vec<f32>, ModalityReport) {
    let (n, l, d) = (a.shape[0], a.shape[1], a.shape[2]);
    let mut out = vec![0f32; n * d];
    let mut rep = ModalityReport {
        modality: m.name(),
        key,
        dim: d,
        seq_len: l,
        rows: match lengths {
            Some(_) => format!("stored {}", LENGTH_KEYS[m.index()]),
            None => "non-padding rows".into(),
        },
        rows_averaged: 0,
        empty_utterances: 0,
        non_finite_zeroed: 0,
    };
    let mut sum = vec![0f64; d];
    let mut row = vec![0f64; d];
    for i in 0..n {
        sum.iter_mut().for_each(|s| *s = 0.0);
        let mut count = 0usize;
        for r in 0..l {
            let base = (i * l + r) * d;
            for (k, x) in row.iter_mut().enumerate() {
                *x = a.number(base + k).unwrap_or(0.0);
            }
            let real = match lengths {
                Some(len) => r < len[i],
                None => row.iter().any(|&x| x != 0.0),
            };
            if !real {
                continue;
            }
            count += 1;
            for (s, &x) in sum.iter_mut().zip(&row) {
                if x.is_finite() {
                    *s += x;
                } else {
                    rep.non_finite_zeroed += 1;
                }
            }
        }
        rep.rows_averaged += count;
        if count == 0 {
            rep.empty_utterances += 1;
            continue;
        }
        for (o, s) in out[i * d..(i + 1) * d].iter_mut().zip(&sum) {
            *o = (s / count as f64) as f32;
        }
    }
    (out, rep)
}
