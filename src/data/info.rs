//! Summary statistics of a dataset (`cimnet data info`): sizes, dims, length
//! statistics, label balance, and how much of a padded batch is real work
//! under bucketed and random batching.

use serde::Serialize;

use super::batching::{make_batches, padding_efficiency, BatchMode};
use super::{Dataset, SplitName};
use crate::config::{Modality, EMOTIONS};

/// Seed of the batch orders measured by `info` (any seed gives similar numbers).
pub const INFO_SEED: u64 = 0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Info {
    pub source: String,
    /// Feature dims; 0 for an absent modality.
    pub dims: Dims,
    pub has_emotion: bool,
    pub splits: Vec<SplitInfo>,
    /// Sums over the three splits.
    pub total: Total,
    /// Padding efficiency of the training split's batches.
    pub train_padding: Padding,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dims {
    pub text: usize,
    pub audio: usize,
    pub video: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitInfo {
    pub split: SplitName,
    pub videos: usize,
    pub utterances: usize,
    /// Utterances per video.
    pub len_min: usize,
    pub len_median: usize,
    pub len_mean: f64,
    pub len_max: usize,
    /// Utterances with sentiment >= 0 (MODEL.md's positive class).
    pub positive: usize,
    pub sentiment_mean: f64,
    /// Per emotion (anger, disgust, fear, happy, sad, surprise): utterances with intensity > 0.
    pub emotion_present: Option<[usize; EMOTIONS]>,
    /// Utterances with all six intensities 0.
    pub no_emotion: Option<usize>,
}

/// The whole dataset: every split together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Total {
    pub videos: usize,
    pub utterances: usize,
    pub len_min: usize,
    pub len_mean: f64,
    pub len_max: usize,
    /// Utterances with sentiment >= 0.
    pub positive: usize,
    pub sentiment_mean: f64,
}

impl Total {
    fn of(splits: &[SplitInfo]) -> Total {
        let nonempty = || splits.iter().filter(|s| s.videos > 0);
        let videos = splits.iter().map(|s| s.videos).sum::<usize>();
        let utterances = splits.iter().map(|s| s.utterances).sum::<usize>();
        let sentiment_sum: f64 = splits.iter().map(|s| s.sentiment_mean * s.utterances as f64).sum();
        Total {
            videos,
            utterances,
            len_min: nonempty().map(|s| s.len_min).min().unwrap_or(0),
            len_mean: utterances as f64 / videos.max(1) as f64,
            len_max: nonempty().map(|s| s.len_max).max().unwrap_or(0),
            positive: splits.iter().map(|s| s.positive).sum(),
            sentiment_mean: sentiment_sum / utterances.max(1) as f64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Padding {
    pub batch: usize,
    pub bucketed: f64,
    pub random: f64,
    pub batches: usize,
}

/// Compute the summary; `batch` must be at least 1.
pub fn info(ds: &Dataset, batch: usize) -> Info {
    let splits: Vec<SplitInfo> = SplitName::ALL.iter().map(|&s| split_info(ds, s)).collect();
    let total = Total::of(&splits);
    let lens = ds.lens(SplitName::Train);
    let bucketed = make_batches(&lens, batch, BatchMode::Bucketed, INFO_SEED);
    let random = make_batches(&lens, batch, BatchMode::Random, INFO_SEED);
    Info {
        source: ds.source.clone(),
        dims: Dims {
            text: ds.dims[Modality::Text.index()],
            audio: ds.dims[Modality::Audio.index()],
            video: ds.dims[Modality::Video.index()],
        },
        has_emotion: ds.has_emotion,
        splits,
        total,
        train_padding: Padding {
            batch,
            bucketed: padding_efficiency(&lens, &bucketed),
            random: padding_efficiency(&lens, &random),
            batches: bucketed.len(),
        },
    }
}

fn split_info(ds: &Dataset, split: SplitName) -> SplitInfo {
    let videos = ds.split(split);
    let mut lens = ds.lens(split);
    lens.sort_unstable();
    let utterances: usize = lens.iter().sum();
    let sentiments = || videos.iter().flat_map(|v| v.sentiment.iter().copied());
    let mut emotion_present = [0usize; EMOTIONS];
    let mut no_emotion = 0;
    for v in videos {
        if let Some(e) = &v.emotion {
            for row in e.chunks_exact(EMOTIONS) {
                for k in 0..EMOTIONS {
                    emotion_present[k] += usize::from(row[k] > 0.0);
                }
                no_emotion += usize::from(row.iter().all(|&x| x <= 0.0));
            }
        }
    }
    SplitInfo {
        split,
        videos: videos.len(),
        utterances,
        len_min: lens.first().copied().unwrap_or(0),
        len_median: lens.get(lens.len() / 2).copied().unwrap_or(0),
        len_mean: utterances as f64 / lens.len().max(1) as f64,
        len_max: lens.last().copied().unwrap_or(0),
        positive: sentiments().filter(|&s| s >= 0.0).count(),
        sentiment_mean: sentiments().map(f64::from).sum::<f64>() / utterances.max(1) as f64,
        emotion_present: ds.has_emotion.then_some(emotion_present),
        no_emotion: ds.has_emotion.then_some(no_emotion),
    }
}
