//! One computational sequence (.csd): an HDF5 file laid out by the SDK's
//! `writeCSD` as `/<root>/data/<video>/features` (m, n), `/<root>/data/<video>/intervals`
//! (m, 2) in seconds, and `/<root>/metadata/<key>` (vlen strings). Read with
//! the pure-Rust `hdf5-pure` crate, one video's datasets at a time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::SdkError;

/// An opened .csd file and its video ids.
pub struct Csd {
    pub path: PathBuf,
    /// Name of the root group ("COVAREP", "All Labels", ...).
    pub root: String,
    /// The `/<root>/data` group, so each video is looked up from there.
    data: hdf5_pure::Group,
    videos: BTreeSet<String>,
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
        let file = hdf5_pure::File::open_streaming(path).map_err(h5)?;
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
        let videos = data.groups().map_err(h5)?.into_iter().collect();
        Ok(Csd { path: path.to_path_buf(), root, data, videos })
    }

    pub fn videos(&self) -> impl Iterator<Item = &str> {
        self.videos.iter().map(String::as_str)
    }

    pub fn has(&self, video: &str) -> bool {
        self.videos.contains(video)
    }

    /// Read one video's intervals and features, checking their shapes.
    pub fn read(&self, video: &str) -> Result<Seq, SdkError> {
        let err = |what: String| SdkError::Video { file: self.path.clone(), video: video.to_string(), what };
        let read = |key: &str| -> Result<(Vec<usize>, Vec<f64>), SdkError> {
            let ds = self
                .data
                .dataset(&format!("{video}/{key}"))
                .map_err(|e| err(format!("no readable '{key}' dataset: {e}")))?;
            let shape: Vec<usize> = ds
                .shape()
                .map_err(|e| err(format!("'{key}': {e}")))?
                .into_iter()
                .map(|d| d as usize)
                .collect();
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

fn layout(path: &Path, what: String) -> SdkError {
    SdkError::Layout { file: path.to_path_buf(), what }
}
