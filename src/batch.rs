//! A padded batch of videos: what the CPU reference consumes and what the
//! `grads` command reads from an npz file. Letters: B batch, U padded
//! utterances (longest video in the batch), D_m a modality's feature dim.

use crate::config::{Modality, EMOTIONS};

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Number of videos (B).
    pub b: usize,
    /// Padded utterance count (U).
    pub u: usize,
    /// Features per modality in T, A, V order; `None` when absent. Each (B, U, D_m), row-major.
    pub features: [Option<Vec<f64>>; 3],
    /// Feature dims in T, A, V order (0 when absent).
    pub dims: [usize; 3],
    /// True lengths, 1 <= len[b] <= U. (B)
    pub len: Vec<usize>,
    /// Sentiment scores in [-3, 3]. (B, U)
    pub sentiment: Vec<f64>,
    /// Emotion intensities in [0, 3], order anger, disgust, fear, happy, sad, surprise. (B, U, 6)
    pub emotion: Option<Vec<f64>>,
}

impl Batch {
    pub fn feature(&self, m: Modality) -> Option<&[f64]> {
        self.features[m.index()].as_deref()
    }

    /// mask[b, i] = 1 for i < len[b].
    pub fn is_real(&self, b: usize, i: usize) -> bool {
        i < self.len[b]
    }

    /// Number of real utterances in the batch.
    pub fn real_count(&self) -> usize {
        self.len.iter().sum()
    }

    /// Sentiment class: positive (1) iff score >= 0 (MODEL.md "Labels").
    pub fn sentiment_class(&self, b: usize, i: usize) -> usize {
        usize::from(self.sentiment[b * self.u + i] >= 0.0)
    }

    /// The 7 binary emotion targets of one utterance: label k is 1 iff intensity k > 0;
    /// the 7th (no-emotion) is 1 iff all six are 0. `None` if the batch has no emotions.
    pub fn emotion_targets(&self, b: usize, i: usize) -> Option<[f64; 7]> {
        let e = self.emotion.as_ref()?;
        let row = &e[(b * self.u + i) * EMOTIONS..(b * self.u + i + 1) * EMOTIONS];
        let mut t = [0.0; 7];
        for k in 0..EMOTIONS {
            t[k] = if row[k] > 0.0 { 1.0 } else { 0.0 };
        }
        t[6] = if row.iter().all(|&x| x <= 0.0) { 1.0 } else { 0.0 };
        Some(t)
    }

    /// A batch holding only video `b`, padded to its own length (for batch-invariance checks).
    pub fn single(&self, b: usize) -> Batch {
        let l = self.len[b];
        let slice = |v: &Vec<f64>, w: usize| v[b * self.u * w..(b * self.u + l) * w].to_vec();
        Batch {
            b: 1,
            u: l,
            features: [0, 1, 2].map(|m| self.features[m].as_ref().map(|f| slice(f, self.dims[m]))),
            dims: self.dims,
            len: vec![l],
            sentiment: slice(&self.sentiment, 1),
            emotion: self.emotion.as_ref().map(|e| slice(e, EMOTIONS)),
        }
    }
}
