//! Per-modality, per-feature z-score normalisation. Fitted on the training
//! split only (valid/test statistics must not leak into training) and stored
//! with the model as JSON, so evaluation applies the same transform.

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, SplitName};
use crate::config::Modality;

/// Smallest standard deviation divided by; a constant feature is only centred.
const MIN_STD: f64 = 1e-6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Per modality in T, A, V order, (D_m) each; empty when the modality is absent.
    pub mean: [Vec<f32>; 3],
    /// Same layout; every entry > 0.
    pub std: [Vec<f32>; 3],
}

impl Normalizer {
    /// Mean and standard deviation of every feature over the real utterances
    /// of the training split (accumulated in f64).
    pub fn fit(ds: &Dataset) -> Normalizer {
        let videos = ds.split(SplitName::Train);
        let count: usize = videos.iter().map(|v| v.len).sum();
        let stats = Modality::ALL.map(|m| {
            let d = ds.dims[m.index()];
            let mut sum = vec![0.0f64; d];
            let mut sq = vec![0.0f64; d];
            for v in videos {
                if let Some(x) = v.feature(m) {
                    for row in x.chunks_exact(d.max(1)) {
                        for j in 0..d {
                            sum[j] += f64::from(row[j]);
                            sq[j] += f64::from(row[j]) * f64::from(row[j]);
                        }
                    }
                }
            }
            let n = count.max(1) as f64;
            let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
            let std: Vec<f64> = sq.iter().zip(&mean).map(|(q, mu)| (q / n - mu * mu).max(0.0).sqrt()).collect();
            (mean, std)
        });
        Normalizer {
            mean: [0, 1, 2].map(|m| stats[m].0.iter().map(|&x| x as f32).collect()),
            std: [0, 1, 2].map(|m| stats[m].1.iter().map(|&s| if s < MIN_STD { 1.0 } else { s as f32 }).collect()),
        }
    }

    /// Normalise every split in place. Errors if the dims differ from those it was fitted on.
    pub fn apply(&self, ds: &mut Dataset) -> Result<(), DataError> {
        for m in Modality::ALL {
            let (d, fitted) = (ds.dims[m.index()], self.mean[m.index()].len());
            if d != fitted || self.std[m.index()].len() != fitted {
                return Err(DataError::Normalizer(format!(
                    "it was fitted on {fitted}-dimensional {} features, {} has {d}",
                    m.name(),
                    ds.source
                )));
            }
        }
        for split in &mut ds.splits {
            for v in split.iter_mut() {
                for m in Modality::ALL {
                    let (mean, std) = (&self.mean[m.index()], &self.std[m.index()]);
                    if let Some(x) = v.features[m.index()].as_mut() {
                        for row in x.chunks_exact_mut(mean.len().max(1)) {
                            for j in 0..mean.len() {
                                row[j] = (row[j] - mean[j]) / std[j];
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
