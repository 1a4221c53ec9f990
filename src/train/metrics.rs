//! The paper's metrics (MODEL.md "Metrics"), over real utterances only:
//! sentiment accuracy and support-weighted F1; per emotion label (7) after
//! thresholding the sigmoid at t: accuracy, support-weighted F1 and weighted
//! accuracy WA = (TP * N/P + TN) / (2N), and their means over labels.

use serde::{Deserialize, Serialize};

use crate::config::{EMOTION_LABELS, EMOTION_NAMES};

/// Counts of one binary decision problem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fn_: u64,
}

impl Confusion {
    pub fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }
    pub fn positives(&self) -> u64 {
        self.tp + self.fn_
    }
    pub fn negatives(&self) -> u64 {
        self.tn + self.fp
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    /// F1 of the positive class (0 when it is undefined, as scikit-learn does).
    fn f1_pos(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
    /// F1 of the negative class.
    fn f1_neg(&self) -> f64 {
        ratio(2 * self.tn, 2 * self.tn + self.fn_ + self.fp)
    }
    /// Support-weighted F1 over the two classes (scikit-learn's average='weighted').
    pub fn weighted_f1(&self) -> f64 {
        let (p, n) = (self.positives() as f64, self.negatives() as f64);
        if p + n == 0.0 {
            return 0.0;
        }
        (p * self.f1_pos() + n * self.f1_neg()) / (p + n)
    }
    /// WA = (TP * N / P + TN) / (2N); `None` when the split has no positives or no negatives.
    pub fn weighted_accuracy(&self) -> Option<f64> {
        let (p, n) = (self.positives() as f64, self.negatives() as f64);
        if p == 0.0 || n == 0.0 {
            return None;
        }
        Some((self.tp as f64 * n / p + self.tn as f64) / (2.0 * n))
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Sentiment metrics (class 1 = positive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SentimentMetrics {
    pub accuracy: f64,
    pub weighted_f1: f64,
    pub utterances: u64,
}

/// Sentiment from (truth, predicted) classes of real utterances.
pub fn sentiment_metrics(pairs: impl IntoIterator<Item = (bool, bool)>) -> SentimentMetrics {
    let mut c = Confusion::default();
    for (t, p) in pairs {
        c.add(t, p);
    }
    SentimentMetrics { accuracy: c.accuracy(), weighted_f1: c.weighted_f1(), utterances: c.total() }
}

/// One emotion label's metrics at a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    pub label: String,
    pub accuracy: f64,
    pub weighted_f1: f64,
    /// None when the split has no positives or no negatives for this label.
    pub weighted_accuracy: Option<f64>,
    pub positives: u64,
    pub negatives: u64,
}

/// Emotion metrics at one threshold, per label and averaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmotionMetrics {
    pub threshold: f64,
    pub labels: Vec<LabelMetrics>,
    pub mean_accuracy: f64,
    pub mean_weighted_f1: f64,
    /// Mean WA over the labels that have one.
    pub mean_weighted_accuracy: Option<f64>,
    /// Labels left out of the WA mean (no positives or no negatives in the split).
    pub wa_excluded: Vec<String>,
}

/// Emotion metrics from per-utterance probabilities (7 each) and targets (7 each, 0/1),
/// a label predicted iff its probability >= t.
pub fn emotion_metrics(probs: &[[f64; EMOTION_LABELS]], targets: &[[f64; EMOTION_LABELS]], t: f64) -> EmotionMetrics {
    let mut conf = [Confusion::default(); EMOTION_LABELS];
    for (p, y) in probs.iter().zip(targets) {
        for k in 0..EMOTION_LABELS {
            conf[k].add(y[k] > 0.5, p[k] >= t);
        }
    }
    let labels: Vec<LabelMetrics> = conf
        .iter()
        .enumerate()
        .map(|(k, c)| LabelMetrics {
            label: EMOTION_NAMES[k].to_string(),
            accuracy: c.accuracy(),
            weighted_f1: c.weighted_f1(),
            weighted_accuracy: c.weighted_accuracy(),
            positives: c.positives(),
            negatives: c.negatives(),
        })
        .collect();
    let mean = |f: &dyn Fn(&LabelMetrics) -> f64| labels.iter().map(f).sum::<f64>() / labels.len() as f64;
    let was: Vec<f64> = labels.iter().filter_map(|l| l.weighted_accuracy).collect();
    EmotionMetrics {
        threshold: t,
        mean_accuracy: mean(&|l| l.accuracy),
        mean_weighted_f1: mean(&|l| l.weighted_f1),
        mean_weighted_accuracy: (!was.is_empty()).then(|| was.iter().sum::<f64>() / was.len() as f64),
        wa_excluded: labels.iter().filter(|l| l.weighted_accuracy.is_none()).map(|l| l.label.clone()).collect(),
        labels,
    }
}

/// Candidate thresholds: 0.05, 0.10, ..., 0.95.
pub fn threshold_grid() -> Vec<f64> {
    (1..20).map(|i| i as f64 * 0.05).collect()
}

/// Thresholds chosen on validation data: one for mean F1, one for mean WA
/// (MODEL.md: the paper reports F1 at t = 0.4 and WA at t = 0.2, each chosen separately).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub f1: f64,
    pub wa: f64,
}

impl Default for Thresholds {
    /// The paper's values, used until validation data has chosen.
    fn default() -> Self {
        Thresholds { f1: 0.4, wa: 0.2 }
    }
}

/// Choose the thresholds on validation predictions (ties go to the smaller t).
pub fn choose_thresholds(probs: &[[f64; EMOTION_LABELS]], targets: &[[f64; EMOTION_LABELS]]) -> Thresholds {
    let mut best_f1 = (f64::NEG_INFINITY, 0.5);
    let mut best_wa = (f64::NEG_INFINITY, 0.5);
    for t in threshold_grid() {
        let m = emotion_metrics(probs, targets, t);
        if m.mean_weighted_f1 > best_f1.0 {
            best_f1 = (m.mean_weighted_f1, t);
        }
        if let Some(wa) = m.mean_weighted_accuracy {
            if wa > best_wa.0 {
                best_wa = (wa, t);
            }
        }
    }
    Thresholds { f1: best_f1.1, wa: best_wa.1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_metrics_match_hand_computation() {
        // truth:     1 1 1 0 0 0 0 0
        // predicted: 1 0 1 1 0 0 0 0
        let mut c = Confusion::default();
        for (t, p) in [(1, 1), (1, 0), (1, 1), (0, 1), (0, 0), (0, 0), (0, 0), (0, 0)] {
            c.add(t == 1, p == 1);
        }
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 4, 1));
        assert!((c.accuracy() - 6.0 / 8.0).abs() < 1e-15);
        // F1 pos = 4/6, F1 neg = 8/10; weighted = (3 * 4/6 + 5 * 0.8) / 8 = 0.75
        assert!((c.weighted_f1() - 0.75).abs() < 1e-15);
        // WA = (2 * 5/3 + 4) / 10 = 0.7333...
        assert!((c.weighted_accuracy().unwrap() - (2.0 * 5.0 / 3.0 + 4.0) / 10.0).abs() < 1e-15);
    }

    #[test]
    fn wa_is_undefined_without_positives_and_left_out_of_the_mean() {
        let probs = vec![[0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9]];
        let targets = vec![[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]];
        let m = emotion_metrics(&probs, &targets, 0.5);
        assert_eq!(m.wa_excluded, vec!["disgust", "fear", "happy", "sad", "surprise"]);
        assert_eq!(m.labels[0].weighted_accuracy, Some(1.0));
        assert_eq!(m.mean_weighted_accuracy, Some(1.0));
        assert_eq!(m.mean_accuracy, 1.0);
    }

    #[test]
    fn thresholds_are_chosen_on_the_given_data() {
        // Positives have probability 0.3, negatives 0.1: only t in (0.1, 0.3] separates them.
        let mut probs = Vec::new();
        let mut targets = Vec::new();
        for i in 0..20 {
            let pos = i % 3 == 0;
            probs.push([if pos { 0.3 } else { 0.1 }; 7]);
            targets.push([if pos { 1.0 } else { 0.0 }; 7]);
        }
        let t = choose_thresholds(&probs, &targets);
        assert!(t.f1 > 0.1 && t.f1 <= 0.3, "{t:?}");
        assert!(t.wa > 0.1 && t.wa <= 0.3, "{t:?}");
        assert_eq!(emotion_metrics(&probs, &targets, t.f1).mean_accuracy, 1.0);
    }
}
