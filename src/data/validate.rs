//! Checks shared by every loader: shapes of padded arrays, lengths, finite
//! features, label ranges, and dims that agree between splits. Values at
//! padded positions (beyond a video's length) are ignored, never validated.

use std::path::{Path, PathBuf};

use super::{emotion_name, DataError, Dataset, Location, SplitName, Video};
use crate::config::{Modality, EMOTIONS};
use crate::npz::Array;

/// A value read from `key` in `file`, so errors can name both.
pub(crate) struct Located<V> {
    pub file: PathBuf,
    pub key: String,
    pub value: V,
}

/// The padded arrays of one split, from one or several files.
pub(crate) struct SplitArrays {
    pub split: SplitName,
    /// (N)
    pub lens: Located<Array<i64>>,
    /// T, A, V; each (N, U_max, D_m)
    pub features: [Option<Located<Array<f32>>>; 3],
    /// (N, U_max) or (N, U_max, 1)
    pub sentiment: Located<Array<f32>>,
    /// (N, U_max, 6)
    pub emotion: Option<Located<Array<f32>>>,
    /// (N)
    pub ids: Option<Located<Vec<String>>>,
}

/// Files that hold each part of a video, for messages: T, A, V features, then labels.
pub(crate) type Files<'a> = [&'a Path; 4];
const LABELS: usize = 3;

fn shape_err(file: &Path, split: SplitName, key: &str, got: &[usize], expected: String) -> DataError {
    DataError::Shape { at: Location::file(file).split(split), key: key.to_string(), got: got.to_vec(), expected }
}

/// Turn one split's padded arrays into videos, checking shapes, counts and
/// lengths here and values through `video`. Returns the videos and the dims (T, A, V).
pub(crate) fn build_split(a: SplitArrays) -> Result<(Vec<Video>, [usize; 3]), DataError> {
    let split = a.split;
    let lens = &a.lens;
    if lens.value.shape.len() != 1 {
        return Err(shape_err(&lens.file, split, &lens.key, &lens.value.shape, "[N]".into()));
    }
    let n = lens.value.shape[0];
    let sent = &a.sentiment;
    let s_shape = &sent.value.shape;
    let ok_sent = s_shape.len() == 2 || (s_shape.len() == 3 && s_shape[2] == 1);
    if !ok_sent {
        return Err(shape_err(&sent.file, split, &sent.key, s_shape, "[N, U_max] or [N, U_max, 1]".into()));
    }
    let u_max = s_shape[1];
    let count_check = |file: &Path, key: &str, got_n: usize| -> Result<(), DataError> {
        if got_n != n {
            return Err(DataError::Inconsistent {
                at: Location::file(file).split(split),
                what: format!("'{key}' has {got_n} videos but '{}' in {} has {n}", lens.key, lens.file.display()),
            });
        }
        Ok(())
    };
    count_check(&sent.file, &sent.key, s_shape[0])?;
    let mut dims = [0usize; 3];
    for m in Modality::ALL {
        if let Some(f) = &a.features[m.index()] {
            let sh = &f.value.shape;
            if sh.len() != 3 || sh[2] == 0 {
                return Err(shape_err(&f.file, split, &f.key, sh, "[N, U_max, D] with D >= 1".into()));
            }
            count_check(&f.file, &f.key, sh[0])?;
            if sh[1] != u_max {
                return Err(DataError::Inconsistent {
                    at: Location::file(&f.file).split(split),
                    what: format!(
                        "'{}' is padded to U_max = {} but '{}' in {} to {u_max}",
                        f.key,
                        sh[1],
                        sent.key,
                        sent.file.display()
                    ),
                });
            }
            dims[m.index()] = sh[2];
        }
    }
    if let Some(e) = &a.emotion {
        let sh = &e.value.shape;
        if sh.len() != 3 || sh[1] != u_max || sh[2] != EMOTIONS {
            return Err(shape_err(&e.file, split, &e.key, sh, format!("[N, U_max = {u_max}, 6]")));
        }
        count_check(&e.file, &e.key, sh[0])?;
    }
    if let Some(ids) = &a.ids {
        count_check(&ids.file, &ids.key, ids.value.len())?;
    }
    let files: Files = [
        a.features[0].as_ref().map_or(sent.file.as_path(), |f| f.file.as_path()),
        a.features[1].as_ref().map_or(sent.file.as_path(), |f| f.file.as_path()),
        a.features[2].as_ref().map_or(sent.file.as_path(), |f| f.file.as_path()),
        sent.file.as_path(),
    ];
    let mut videos = Vec::with_capacity(n);
    for vi in 0..n {
        let id = match &a.ids {
            Some(ids) => ids.value[vi].clone(),
            None => format!("{split}_{vi}"),
        };
        let len = lens.value.data[vi];
        if len < 1 || len as usize > u_max {
            return Err(DataError::Length {
                at: Location::file(&lens.file).split(split).video(vi, Some(&id)),
                len,
                u_max,
            });
        }
        let len = len as usize;
        let rows = |arr: &Array<f32>, width: usize| -> Vec<f32> {
            arr.data[vi * u_max * width..(vi * u_max + len) * width].to_vec()
        };
        let video = Video {
            len,
            features: Modality::ALL.map(|m| a.features[m.index()].as_ref().map(|f| rows(&f.value, dims[m.index()]))),
            sentiment: rows(&sent.value, 1),
            emotion: a.emotion.as_ref().map(|e| rows(&e.value, EMOTIONS)),
            id,
        };
        self::video(&files, split, vi, &video, dims)?;
        videos.push(video);
    }
    Ok((videos, dims))
}

/// Check one video's sizes and values.
pub(crate) fn video(files: &Files, split: SplitName, vi: usize, v: &Video, dims: [usize; 3]) -> Result<(), DataError> {
    let at = |f: usize| Location::file(files[f]).split(split).video(vi, Some(&v.id));
    if v.len == 0 {
        return Err(DataError::Length { at: at(LABELS), len: 0, u_max: v.len });
    }
    let size = |what: &str, f: usize, got: usize, want: usize| -> Result<(), DataError> {
        if got != want {
            return Err(DataError::Inconsistent {
                at: at(f),
                what: format!("{what} holds {got} values, expected {want} ({} utterances)", v.len),
            });
        }
        Ok(())
    };
    for m in Modality::ALL {
        let d = dims[m.index()];
        match (&v.features[m.index()], d) {
            (None, 0) => {}
            (Some(x), d) if d > 0 => size(m.name(), m.index(), x.len(), v.len * d)?,
            (Some(_), _) => {
                return Err(DataError::Inconsistent {
                    at: at(m.index()),
                    what: format!("has {} features the dataset lacks", m.name()),
                })
            }
            (None, _) => {
                return Err(DataError::Inconsistent {
                    at: at(m.index()),
                    what: format!("lacks the dataset's {} features", m.name()),
                })
            }
        }
    }
    size("sentiment", LABELS, v.sentiment.len(), v.len)?;
    if let Some(e) = &v.emotion {
        size("emotion", LABELS, e.len(), v.len * EMOTIONS)?;
    }
    for i in 0..v.len {
        for m in Modality::ALL {
            let d = dims[m.index()];
            if let Some(x) = &v.features[m.index()] {
                if let Some((j, &value)) = x[i * d..(i + 1) * d].iter().enumerate().find(|(_, x)| !x.is_finite()) {
                    return Err(DataError::NonFinite {
                        at: at(m.index()).utterance(i),
                        key: m.name().to_string(),
                        feature: j,
                        value,
                    });
                }
            }
        }
        let s = v.sentiment[i];
        if !(-3.0..=3.0).contains(&s) {
            return Err(DataError::Sentiment { at: at(LABELS).utterance(i), value: s });
        }
        if let Some(e) = &v.emotion {
            for k in 0..EMOTIONS {
                let x = e[i * EMOTIONS + k];
                if !(0.0..=3.0).contains(&x) {
                    return Err(DataError::Emotion { at: at(LABELS).utterance(i), emotion: emotion_name(k), value: x });
                }
            }
        }
    }
    Ok(())
}

/// Dims must agree between splits: compare each split to the first.
pub(crate) fn same_dims(file: &Path, per_split: &[(SplitName, [usize; 3])]) -> Result<[usize; 3], DataError> {
    let (first, dims) = per_split[0];
    for &(split, d) in &per_split[1..] {
        for m in Modality::ALL {
            if d[m.index()] != dims[m.index()] {
                return Err(DataError::Dim {
                    at: Location::file(file).split(split),
                    modality: m.name(),
                    got: d[m.index()],
                    expected: dims[m.index()],
                    other: format!("split {first}"),
                });
            }
        }
    }
    Ok(dims)
}

/// Every invariant of an in-memory dataset.
pub(crate) fn dataset(ds: &Dataset) -> Result<(), DataError> {
    let src = PathBuf::from(&ds.source);
    let files: Files = [&src, &src, &src, &src];
    if ds.dims.iter().all(|&d| d == 0) {
        return Err(DataError::NoFeatures(src.clone()));
    }
    for split in SplitName::ALL {
        for (vi, v) in ds.split(split).iter().enumerate() {
            if v.emotion.is_some() != ds.has_emotion {
                let what = if ds.has_emotion {
                    "has no emotion labels but the others do"
                } else {
                    "has emotion labels but the others do not"
                };
                return Err(DataError::Inconsistent {
                    at: Location::file(&src).split(split).video(vi, Some(&v.id)),
                    what: what.into(),
                });
            }
            video(&files, split, vi, v, ds.dims)?;
        }
    }
    Ok(())
}
