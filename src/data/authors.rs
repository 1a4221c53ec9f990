//! The format of the paper's authors: a directory with `text.npz`,
//! `audio.npz` and `video.npz`, each holding `{train,valid,test}_data`
//! (N, U_max, D) and `{train,valid,test}_length` (N); `video.npz` also holds
//! the labels `{train,valid,test}SentiLabel` (N, U_max) or (N, U_max, 1) and,
//! optionally, `{train,valid,test}EmoLabel` (N, U_max, 6) in the order anger,
//! disgust, fear, happy, sad, surprise.
//!
//! A missing text.npz or audio.npz (or a video.npz without `*_data`) means that
//! modality is absent; video.npz itself is required because it carries the
//! labels. Lengths must agree between the files, video by video. Videos get
//! ids `{split}_{index}` since the files carry none.

use std::path::{Path, PathBuf};

use super::validate::{self, Located, SplitArrays};
use super::{DataError, Dataset, Location, SplitName};
use crate::config::Modality;
use crate::npz::{Array, NpzIn};

/// File of a modality inside the directory.
pub fn file_name(m: Modality) -> &'static str {
    match m {
        Modality::Text => "text.npz",
        Modality::Audio => "audio.npz",
        Modality::Video => "video.npz",
    }
}

fn senti_key(s: SplitName) -> String {
    format!("{s}SentiLabel")
}

fn emo_key(s: SplitName) -> String {
    format!("{s}EmoLabel")
}

/// Read the authors' directory.
pub fn read_dir(dir: &Path) -> Result<Dataset, DataError> {
    let label_path = dir.join(file_name(Modality::Video));
    if !label_path.is_file() {
        return Err(DataError::NotFound(label_path));
    }
    // T, A, V archives; `None` when the file is absent.
    let mut archives: Vec<Option<NpzIn>> = Vec::new();
    for m in Modality::ALL {
        let p = dir.join(file_name(m));
        archives.push(if p.is_file() { Some(NpzIn::open(&p)?) } else { None });
    }
    let has_feat =
        |a: &Option<NpzIn>| a.as_ref().is_some_and(|a| SplitName::ALL.iter().any(|s| a.has(&format!("{s}_data"))));
    let has_mod: Vec<bool> = archives.iter().map(has_feat).collect();
    if !has_mod.iter().any(|&h| h) {
        return Err(DataError::NoFeatures(dir.to_path_buf()));
    }
    let has_emotion =
        archives[Modality::Video.index()].as_ref().is_some_and(|a| SplitName::ALL.iter().any(|&s| a.has(&emo_key(s))));

    let mut splits = Vec::new();
    let mut dims = Vec::new();
    for split in SplitName::ALL {
        let mut features: [Option<Located<Array<f32>>>; 3] = [None, None, None];
        let mut lens: Vec<Located<Array<i64>>> = Vec::new();
        for m in Modality::ALL {
            if !has_mod[m.index()] {
                continue;
            }
            let Some(npz) = archives[m.index()].as_mut() else { continue };
            let file = npz.path().to_path_buf();
            let (dk, lk) = (format!("{split}_data"), format!("{split}_length"));
            for k in [&dk, &lk] {
                if !npz.has(k) {
                    return Err(DataError::Missing {
                        at: Location::file(&file).split(split),
                        key: k.clone(),
                        why: format!("the file holds {} features for other splits", m.name()),
                    });
                }
            }
            features[m.index()] = Some(Located { file: file.clone(), value: npz.read_f32(&dk)?, key: dk });
            lens.push(Located { file, value: npz.read_int(&lk)?, key: lk });
        }
        let labels =
            archives[Modality::Video.index()].as_mut().ok_or_else(|| DataError::NotFound(label_path.clone()))?;
        let sentiment =
            Located { file: label_path.clone(), value: labels.read_f32(&senti_key(split))?, key: senti_key(split) };
        let emotion = if has_emotion {
            let k = emo_key(split);
            Some(Located { file: label_path.clone(), value: labels.read_f32(&k)?, key: k })
        } else {
            None
        };
        // video.npz (the labels' file) is the reference when it has features.
        if has_mod[Modality::Video.index()] {
            lens.rotate_right(1);
        }
        let lens = agree(split, lens)?;
        let arrays = SplitArrays { split, lens, features, sentiment, emotion, ids: None };
        let (videos, d) = validate::build_split(arrays)?;
        splits.push(videos);
        dims.push((split, d));
    }
    let dims = validate::same_dims(dir, &dims)?;
    let mut it = splits.into_iter();
    let mut next = || it.next().unwrap_or_default();
    let ds = Dataset { source: dir.display().to_string(), dims, has_emotion, splits: [next(), next(), next()] };
    ds.validate()?;
    Ok(ds)
}

/// The `*_length` arrays of all files must agree; return the first.
fn agree(split: SplitName, mut lens: Vec<Located<Array<i64>>>) -> Result<Located<Array<i64>>, DataError> {
    let first = lens.remove(0);
    for other in &lens {
        if other.value.shape != first.value.shape {
            return Err(DataError::Inconsistent {
                at: Location::file(&other.file).split(split),
                what: format!(
                    "'{}' has shape {:?} but '{}' in {} has shape {:?} (video counts differ between files)",
                    other.key,
                    other.value.shape,
                    first.key,
                    first.file.display(),
                    first.value.shape
                ),
            });
        }
        if let Some(vi) = (0..first.value.data.len()).find(|&i| first.value.data[i] != other.value.data[i]) {
            return Err(DataError::Inconsistent {
                at: Location::file(&other.file).split(split).video(vi, None),
                what: format!(
                    "length {} here but {} in {}",
                    other.value.data[vi],
                    first.value.data[vi],
                    first.file.display()
                ),
            });
        }
    }
    Ok(first)
}

/// Where the files of a directory would be, T, A, V order (for messages and tests).
pub fn paths(dir: &Path) -> [PathBuf; 3] {
    Modality::ALL.map(|m| dir.join(file_name(m)))
}
