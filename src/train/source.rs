//! Where a run's data comes from, recorded in config.json so that `--resume`,
//! `eval` and `predict` can load the same data again: the absolute path (a run
//! never depends on the directory it was started from) and a fingerprint of
//! the content (size and an xxh3 hash), so that data changed or replaced under
//! the same name is noticed instead of silently used.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Modality;
use crate::data::{authors, mosi, synth, DataError, Dataset};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DataSource {
    /// The real CMU-MOSI copy bundled with cimnet.
    Mosi,
    /// Synthetic MOSEI-shaped data; `scale` multiplies every split's video count.
    Synthetic { seed: u64, scale: f64 },
    /// A native .npz or an authors'-format directory.
    Path { path: PathBuf },
}

/// Size and hash of a source's content. Files: the bytes cimnet reads (for an
/// authors' directory, its three archives in T, A, V order); the bundled MOSI:
/// the embedded file; synthetic data: the generated arrays, so that the same
/// parameters under a changed generator are noticed too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub bytes: u64,
    /// xxh3-64 of the content, 16 hex digits.
    pub xxh3: String,
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes, xxh3 {}", self.bytes, self.xxh3)
    }
}

/// Streaming hasher over everything a source is made of.
struct Hasher {
    state: xxhash_rust::xxh3::Xxh3,
    bytes: u64,
}

impl Hasher {
    fn new() -> Hasher {
        Hasher { state: xxhash_rust::xxh3::Xxh3::new(), bytes: 0 }
    }
    fn update(&mut self, b: &[u8]) {
        self.state.update(b);
        self.bytes += b.len() as u64;
    }
    #[allow(clippy::result_large_err)]
    fn file(&mut self, path: &Path) -> Result<(), DataError> {
        let io = |source| DataError::Io { file: path.to_path_buf(), source };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                return Ok(());
            }
            self.update(&buf[..n]);
        }
    }
    fn finish(&self) -> Fingerprint {
        Fingerprint { bytes: self.bytes, xxh3: format!("{:016x}", self.state.digest()) }
    }
}

/// The fingerprint of loaded data (for generated sources).
fn dataset_fingerprint(ds: &Dataset) -> Fingerprint {
    let mut h = Hasher::new();
    for split in &ds.splits {
        h.update(&(split.len() as u64).to_le_bytes());
        for v in split {
            h.update(v.id.as_bytes());
            h.update(&(v.len as u64).to_le_bytes());
            for f in v.features.iter().flatten() {
                h.update(bytemuck::cast_slice(f.as_slice()));
            }
            h.update(bytemuck::cast_slice(v.sentiment.as_slice()));
            if let Some(e) = &v.emotion {
                h.update(bytemuck::cast_slice(e.as_slice()));
            }
        }
    }
    h.finish()
}

impl DataSource {
    /// A source for a path as the user typed it: made absolute (symlinks
    /// resolved where the path exists), so that it means the same from anywhere.
    pub fn from_path(path: &Path) -> DataSource {
        let abs =
            std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_path_buf());
        DataSource::Path { path: abs }
    }

    // DataError is large (a full location per error) for the same reason as in src/data.
    #[allow(clippy::result_large_err)]
    pub fn load(&self) -> Result<Dataset, DataError> {
        match self {
            DataSource::Mosi => Dataset::bundled_mosi(),
            DataSource::Synthetic { seed, scale } => Ok(synth::generate(&synth::SynthSpec::scaled(*scale), *seed).0),
            DataSource::Path { path } => Dataset::load(path),
        }
    }

    /// Load the data and fingerprint its content.
    #[allow(clippy::result_large_err)]
    pub fn load_fingerprinted(&self) -> Result<(Dataset, Fingerprint), DataError> {
        let ds = self.load()?;
        let fp = match self {
            DataSource::Mosi => {
                let mut h = Hasher::new();
                h.update(mosi::bundled_bytes());
                h.finish()
            }
            DataSource::Synthetic { .. } => dataset_fingerprint(&ds),
            DataSource::Path { path } if path.is_dir() => {
                let mut h = Hasher::new();
                for m in Modality::ALL {
                    let f = path.join(authors::file_name(m));
                    if f.is_file() {
                        h.update(authors::file_name(m).as_bytes());
                        h.file(&f)?;
                    }
                }
                h.finish()
            }
            DataSource::Path { path } => {
                let mut h = Hasher::new();
                h.file(path)?;
                h.finish()
            }
        };
        Ok((ds, fp))
    }

    pub fn describe(&self) -> String {
        match self {
            DataSource::Mosi => "CMU-MOSI (bundled copy)".to_string(),
            DataSource::Synthetic { seed, scale } => {
                format!("synthetic MOSEI-shaped data (seed {seed}, scale {scale})")
            }
            DataSource::Path { path } => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_changes_the_fingerprint_and_the_same_bytes_keep_it() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("d.npz");
        crate::data::native::write(&synth::tiny(1), &p).unwrap();
        let src = DataSource::from_path(&p);
        let (_, a) = src.load_fingerprinted().unwrap();
        assert_eq!(a.bytes, std::fs::metadata(&p).unwrap().len());
        assert_eq!(src.load_fingerprinted().unwrap().1, a);
        crate::data::native::write(&synth::tiny(2), &p).unwrap();
        assert_ne!(src.load_fingerprinted().unwrap().1, a);
    }

    #[test]
    fn synthetic_fingerprints_follow_the_parameters() {
        let fp = |seed| DataSource::Synthetic { seed, scale: 0.01 }.load_fingerprinted().unwrap().1;
        assert_eq!(fp(1), fp(1));
        assert_ne!(fp(1), fp(2));
    }

    #[test]
    fn a_relative_path_is_recorded_absolute() {
        let DataSource::Path { path } = DataSource::from_path(Path::new("some/data.npz")) else { unreachable!() };
        assert!(path.is_absolute() && path.ends_with("some/data.npz"), "{}", path.display());
    }
}
