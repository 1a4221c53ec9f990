//! One computational sequence (.csd): an HDF5 file laid out by the SDK's
//! `writeCSD` as `/<root>/data/<video>/features` (m, n), `/<root>/data/<video>/intervals`
//! (m, 2) in seconds, and `/<root>/metadata/<key>` (vlen strings). Read with
//! the pure-Rust `hdf5-pure` crate, one video's datasets at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::SdkError;

/// An opened .csd file and its video ids.
pub struct Csd {
    pub path: PathBuf,
    /// Name of the root group ("COVAREP", "All Labels", ...).
    pub root: String,
    /// Each video's group under `/<root>/data`, opened once (a lookup by
    /// name would walk the data group's symbol table for every video).
    videos: BTreeMap<String, hdf5_pure::Group>,
}

/// One video's rows: intervals and features, features as f64 (any stored float width).
pub struct Seq {
    pub intervals: Vec<[f64; 2]>,
    /// (m, dim), row-major.
    pub features: Vec<f64>,
    pub dim: usize,
}

impl Seq {
    pub fn row(&self, r: usize) -> &[f64] {
        &self.features[r * self.dim..(r + 1) * self.dim]
    }
}

impl Csd {
    /// Open `path` and list its videos; the file is read lazily, video by video.
    pub fn open(path: &Path) -> Result<Csd, SdkError> {
        let h5 = |e: hdf5_pure::Error| SdkError::Hdf5 { file: path.to_path_buf(), msg: e.to_string() };
        let file = open_file(path).map_err(h5)?;
        // A cut-off file can still parse up to its cut: compare with the size the superblock records.
        let len = std::fs::metadata(path).map_err(|e| h5(hdf5_pure::Error::Io(e)))?.len();
        let eof = file.superblock().eof_address;
        if len < eof {
            return Err(SdkError::Hdf5 {
                file: path.to_path_buf(),
                msg: format!("truncated: the file has {len} bytes, its superblock says {eof}"),
            });
        }
        let roots = file.root().groups().map_err(h5)?;
        let root = match roots.as_slice() {
            [one] => one.clone(),
            [] => return Err(layout(path, "no root group (expected one group holding data/ and metadata/)".into())),
            many => return Err(layout(path, format!("{} root groups {many:?}, expected one", many.len()))),
        };
        let data = file
            .group(&format!("{root}/data"))
            .map_err(|e| layout(path, format!("root group '{root}' has no readable 'data' group: {e}")))?;
        let videos = data.iter_groups().map_err(h5)?.collect();
        Ok(Csd { path: path.to_path_buf(), root, videos })
    }

    pub fn videos(&self) -> impl Iterator<Item = &str> {
        self.videos.keys().map(String::as_str)
    }

    pub fn has(&self, video: &str) -> bool {
        self.videos.contains_key(video)
    }

    /// Read one video's intervals and features, checking their shapes.
    pub fn read(&self, video: &str) -> Result<Seq, SdkError> {
        let err = |what: String| SdkError::Video { file: self.path.clone(), video: video.to_string(), what };
        let group = self.videos.get(video).ok_or_else(|| err("no such video".into()))?;
        let read = |key: &str| -> Result<(Vec<usize>, Vec<f64>), SdkError> {
            let ds = group.dataset(key).map_err(|e| err(format!("no readable '{key}' dataset: {e}")))?;
            let shape: Vec<usize> =
                ds.shape().map_err(|e| err(format!("'{key}': {e}")))?.into_iter().map(|d| d as usize).collect();
            let values = ds.read_f64().map_err(|e| err(format!("reading '{key}' failed: {e}")))?;
            let n: usize = shape.iter().product();
            if values.len() != n {
                return Err(err(format!("'{key}' has shape {shape:?} but {} values", values.len())));
            }
            Ok((shape, values))
        };
        let (ishape, ivals) = read("intervals")?;
        if ishape.len() != 2 || ishape[1] != 2 {
            return Err(err(format!("intervals have shape {ishape:?}, expected [m, 2]")));
        }
        let (fshape, features) = read("features")?;
        if fshape.len() < 2 {
            return Err(err(format!("features have shape {fshape:?}, expected [m, n]")));
        }
        if fshape[0] != ishape[0] {
            return Err(err(format!("{} feature rows but {} intervals", fshape[0], ishape[0])));
        }
        let dim = fshape[1..].iter().product();
        let intervals = ivals.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
        Ok(Seq { intervals, features, dim })
    }
}

/// Positioned reads (one syscall each, no lock), where the platform has them.
#[cfg(unix)]
struct PreadSource {
    file: std::fs::File,
    len: u64,
}

#[cfg(unix)]
impl hdf5_pure::Source for PreadSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), hdf5_pure::FormatError> {
        use std::os::unix::fs::FileExt;
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(hdf5_pure::FormatError::Source(format!(
                "read of {} bytes at {offset} runs past the end of the file ({} bytes)",
                buf.len(),
                self.len
            )));
        }
        self.file.read_exact_at(buf, offset).map_err(|e| hdf5_pure::FormatError::Source(e.to_string()))
    }
}

#[cfg(unix)]
fn open_file(path: &Path) -> Result<hdf5_pure::File, hdf5_pure::Error> {
    let file = std::fs::File::open(path).map_err(hdf5_pure::Error::Io)?;
    let len = file.metadata().map_err(hdf5_pure::Error::Io)?.len();
    hdf5_pure::File::from_source(PreadSource { file, len })
}

#[cfg(not(unix))]
fn open_file(path: &Path) -> Result<hdf5_pure::File, hdf5_pure::Error> {
    hdf5_pure::File::open_streaming(path)
}

fn layout(path: &Path, what: String) -> SdkError {
    SdkError::Layout { file: path.to_path_buf(), what }
}
