//! Where a run's data comes from, recorded in config.json so that `--resume`,
//! `eval` and `predict` can load the same data again.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{synth, DataError, Dataset};

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

impl DataSource {
    // DataError is large (a full location per error) for the same reason as in src/data.
    #[allow(clippy::result_large_err)]
    pub fn load(&self) -> Result<Dataset, DataError> {
        match self {
            DataSource::Mosi => Dataset::bundled_mosi(),
            DataSource::Synthetic { seed, scale } => Ok(synth::generate(&synth::SynthSpec::scaled(*scale), *seed).0),
            DataSource::Path { path } => Dataset::load(path),
        }
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
