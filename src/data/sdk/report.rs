//! What `prepare-mosei` changed, dropped or found odd, counted. Printed by
//! the CLI and stored beside the output as JSON (docs/data-formats.md explains
//! every field).

use std::collections::BTreeMap;

use serde::Serialize;

/// How many examples a list in the report keeps (the counts are always complete).
pub const EXAMPLES: usize = 20;

/// A count with its first few examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Listed {
    pub count: usize,
    pub examples: Vec<String>,
}

impl Listed {
    pub fn push(&mut self, what: String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }
}

/// Per modality, in the order text, audio, video.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PerModality<T> {
    pub text: T,
    pub audio: T,
    pub video: T,
}

impl<T> PerModality<T> {
    pub fn get_mut(&mut self, m: usize) -> &mut T {
        match m {
            0 => &mut self.text,
            1 => &mut self.audio,
            _ => &mut self.video,
        }
    }
    pub fn get(&self, m: usize) -> &T {
        match m {
            0 => &self.text,
            1 => &self.audio,
            _ => &self.video,
        }
    }
}

/// Counts of non-finite values of one modality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct NonFinite {
    /// Non-finite values among the input rows of the videos used (-inf, +inf, NaN).
    pub input_values: usize,
    /// Utterance feature values that averaged to a non-finite number and were set to 0.
    pub zeroed_values: usize,
}

/// One split's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SplitCount {
    pub videos: usize,
    pub utterances: usize,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The files read, by role (text, audio, video, labels).
    pub files: BTreeMap<String, String>,
    /// Feature dims: text, audio, video.
    pub dims: [usize; 3],
    pub train: SplitCount,
    pub valid: SplitCount,
    pub test: SplitCount,
    /// Labelled videos not in any standard fold: not used.
    pub outside_folds: Listed,
    /// Fold videos the labels file lacks: not used.
    pub fold_videos_without_labels: Listed,
    /// Labelled fold videos absent from a feature file: not used ("video (missing in FILE)").
    pub missing_modality: Listed,
    /// Videos of each feature file that have no labels (ignored).
    pub unlabelled_in_features: PerModality<usize>,
    /// Labelled segments shorter than the SDK's epsilon (0.001 s): dropped, as the SDK's align drops them.
    pub zero_length_segments: Listed,
    /// Videos left without any segment after that: not used.
    pub videos_without_segments: Listed,
    /// Segments with the same start and end as the one before (kept).
    pub duplicate_segments: Listed,
    /// Segments starting before the one before ends (kept).
    pub overlapping_segments: Listed,
    /// Segments with no surviving row in a modality: features set to 0.
    pub empty_segments: PerModality<usize>,
    /// Non-finite feature values per modality.
    pub non_finite: PerModality<NonFinite>,
    /// Sentiment scores outside [-3, 3], clamped.
    pub sentiment_clamped: usize,
    /// Emotion intensities outside [0, 3], clamped.
    pub emotion_clamped: usize,
}

impl Report {
    pub fn split_mut(&mut self, s: crate::data::SplitName) -> &mut SplitCount {
        match s {
            crate::data::SplitName::Train => &mut self.train,
            crate::data::SplitName::Valid => &mut self.valid,
            crate::data::SplitName::Test => &mut self.test,
        }
    }
}
