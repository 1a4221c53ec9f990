//! The native format: one .npz holding, for each split S in train, valid, test,
//!
//! | key           | dtype   | shape             | note                         |
//! |---------------|---------|-------------------|------------------------------|
//! | `S_len`       | int32   | (N)               | utterances per video, >= 1   |
//! | `S_text`      | float32 | (N, U_max, D_T)   | optional, zero-padded        |
//! | `S_audio`     | float32 | (N, U_max, D_A)   | optional, zero-padded        |
//! | `S_video`     | float32 | (N, U_max, D_V)   | optional, zero-padded        |
//! | `S_sentiment` | float32 | (N, U_max)        | in [-3, 3]                   |
//! | `S_emotion`   | float32 | (N, U_max, 6)     | optional, in [0, 3]          |
//! | `S_ids`       | unicode | (N)               | optional video ids           |
//!
//! U_max may differ between splits; a modality (or the emotions) is either in
//! every split or in none. Readers accept any float/int width.

use std::path::Path;

use super::validate::{self, Located, SplitArrays};
use super::{DataError, Dataset, Location, SplitName};
use crate::config::{Modality, EMOTIONS};
use crate::npz::{NpzIn, NpzOut};

/// The arrays of one split, `S_<suffix>`.
const SUFFIXES: [&str; 7] = ["len", "text", "audio", "video", "sentiment", "emotion", "ids"];

/// Read a native .npz file.
pub fn read(path: &Path) -> Result<Dataset, DataError> {
    let mut npz = NpzIn::open(path)?;
    read_archive(&mut npz, path.display().to_string())
}

/// Read a native .npz held in memory; `name` stands in for the path in messages.
pub fn read_bytes(name: &str, bytes: Vec<u8>) -> Result<Dataset, DataError> {
    let mut npz = NpzIn::from_bytes(name, bytes)?;
    read_archive(&mut npz, name.to_string())
}

/// Read from an opened archive (a file or embedded bytes); `source` names it in messages.
pub(crate) fn read_archive(npz: &mut NpzIn, source: String) -> Result<Dataset, DataError> {
    let file = npz.path().to_path_buf();
    // A modality or the emotions count as present if any split has them; then all must.
    let present = |npz: &NpzIn, suffix: &str| SplitName::ALL.iter().any(|s| npz.has(&format!("{s}_{suffix}")));
    let has_mod = Modality::ALL.map(|m| present(npz, m.name()));
    let has_emotion = present(npz, "emotion");
    if !has_mod.iter().any(|&h| h) {
        return Err(DataError::NoFeatures(file));
    }
    let need = |npz: &NpzIn, split: SplitName, key: String, why: &str| -> Result<(), DataError> {
        if npz.has(&key) {
            Ok(())
        } else {
            Err(DataError::Missing { at: Location::file(&file).split(split), key, why: why.to_string() })
        }
    };
    let mut splits = Vec::new();
    let mut dims = Vec::new();
    for split in SplitName::ALL {
        let key = |suffix: &str| format!("{split}_{suffix}");
        need(npz, split, key("len"), "every split needs its lengths")?;
        need(npz, split, key("sentiment"), "every split needs its sentiment labels")?;
        let mut features = [None, None, None];
        for m in Modality::ALL {
            if has_mod[m.index()] {
                need(npz, split, key(m.name()), &format!("another split has {} features", m.name()))?;
                let k = key(m.name());
                features[m.index()] = Some(Located { file: file.clone(), value: npz.read_f32(&k)?, key: k });
            }
        }
        let emotion = if has_emotion {
            need(npz, split, key("emotion"), "another split has emotion labels")?;
            let k = key("emotion");
            Some(Located { file: file.clone(), value: npz.read_f32(&k)?, key: k })
        } else {
            None
        };
        let ids = npz.read_strings_opt(&key("ids"))?.map(|v| Located { file: file.clone(), key: key("ids"), value: v });
        let arrays = SplitArrays {
            split,
            lens: Located { file: file.clone(), key: key("len"), value: npz.read_int(&key("len"))? },
            sentiment: Located { file: file.clone(), key: key("sentiment"), value: npz.read_f32(&key("sentiment"))? },
            features,
            emotion,
            ids,
        };
        let (videos, d) = validate::build_split(arrays)?;
        splits.push(videos);
        dims.push((split, d));
    }
    let dims = validate::same_dims(&file, &dims)?;
    // An array of no known name is refused: it is a typo, or a corrupt member
    // name (an optional array such as S_ids would otherwise vanish silently).
    let known: Vec<String> =
        SplitName::ALL.iter().flat_map(|s| SUFFIXES.iter().map(move |x| format!("{s}_{x}.npy"))).collect();
    if let Some(name) = npz.member_names().into_iter().find(|n| !known.contains(n)) {
        return Err(DataError::Inconsistent {
            at: Location::file(&file),
            what: format!("unexpected member '{name}': a native file holds, per split S, S_{}", SUFFIXES.join(", S_")),
        });
    }
    let mut it = splits.into_iter();
    let mut next = || it.next().unwrap_or_default();
    let ds = Dataset { source, dims, has_emotion, splits: [next(), next(), next()] };
    ds.validate()?;
    Ok(ds)
}

/// Write a dataset as a native .npz (deflate-compressed, float32, atomic).
/// The dataset is validated first, so a written file always reads back.
pub fn write(ds: &Dataset, path: &Path) -> Result<(), DataError> {
    ds.validate()?;
    let mut out = NpzOut::create(path)?;
    for split in SplitName::ALL {
        let videos = ds.split(split);
        let n = videos.len();
        let u = videos.iter().map(|v| v.len).max().unwrap_or(0);
        let key = |suffix: &str| format!("{split}_{suffix}");
        let pad = |width: usize, get: &dyn Fn(&super::Video) -> Option<&[f32]>| -> Vec<f32> {
            // (N, U_max, width)
            let mut a = vec![0.0f32; n * u * width];
            for (vi, v) in videos.iter().enumerate() {
                if let Some(src) = get(v) {
                    a[vi * u * width..vi * u * width + src.len()].copy_from_slice(src);
                }
            }
            a
        };
        let lens: Vec<i32> = videos.iter().map(|v| v.len as i32).collect();
        out.write_i32(&key("len"), &[n], &lens)?;
        for m in Modality::ALL {
            let d = ds.dims[m.index()];
            if d > 0 {
                out.write_f32(&key(m.name()), &[n, u, d], &pad(d, &|v| v.feature(m)))?;
            }
        }
        out.write_f32(&key("sentiment"), &[n, u], &pad(1, &|v| Some(&v.sentiment)))?;
        if ds.has_emotion {
            out.write_f32(&key("emotion"), &[n, u, EMOTIONS], &pad(EMOTIONS, &|v| v.emotion.as_deref()))?;
        }
        let ids: Vec<String> = videos.iter().map(|v| v.id.clone()).collect();
        out.write_strings(&key("ids"), &ids)?;
    }
    out.finish()?;
    Ok(())
}
