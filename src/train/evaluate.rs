//! Turning a split's predictions into the paper's metrics.

use serde::{Deserialize, Serialize};

use super::metrics::{
    choose_thresholds, emotion_metrics, sentiment_metrics, EmotionMetrics, SentimentMetrics, Thresholds,
};
use crate::config::{EMOTIONS, EMOTION_LABELS};
use crate::data::{Dataset, SplitName};
use crate::engine::{LossSums, Predictions};

/// Metrics of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    pub split: SplitName,
    /// Mean losses over real utterances.
    pub loss: f64,
    pub loss_sentiment: Option<f64>,
    pub loss_emotion: Option<f64>,
    pub sentiment: Option<SentimentMetrics>,
    /// Emotion metrics at the F1 threshold (report F1 and accuracy from here).
    pub emotion_at_f1: Option<EmotionMetrics>,
    /// Emotion metrics at the WA threshold (report WA from here).
    pub emotion_at_wa: Option<EmotionMetrics>,
    pub thresholds: Option<Thresholds>,
}

/// The 7 binary emotion targets of every real utterance of a split, in order.
pub fn emotion_targets(ds: &Dataset, split: SplitName) -> Vec<[f64; EMOTION_LABELS]> {
    let mut out = Vec::new();
    for v in ds.split(split) {
        let e = v.emotion.as_deref().unwrap_or(&[]);
        for i in 0..v.len {
            let row = &e[i * EMOTIONS..(i + 1) * EMOTIONS];
            let mut t = [0.0; EMOTION_LABELS];
            for k in 0..EMOTIONS {
                t[k] = f64::from(u8::from(row[k] > 0.0));
            }
            t[6] = f64::from(u8::from(row.iter().all(|&x| x <= 0.0)));
            out.push(t);
        }
    }
    out
}

/// Metrics of `preds` on `split`. Emotion thresholds: the given ones, or (when
/// `None`, which only validation data may use) chosen on these very predictions.
pub fn evaluate(ds: &Dataset, split: SplitName, preds: &Predictions, thresholds: Option<Thresholds>) -> SplitMetrics {
    let sentiment = preds.sentiment.as_ref().map(|s| {
        let pairs = ds.split(split).iter().zip(s).flat_map(|(v, probs)| {
            v.sentiment.iter().zip(probs).map(|(&score, p)| (score >= 0.0, p[1] >= p[0])).collect::<Vec<_>>()
        });
        sentiment_metrics(pairs)
    });
    let (mut at_f1, mut at_wa, mut chosen) = (None, None, None);
    if let Some(e) = &preds.emotion {
        let probs: Vec<[f64; EMOTION_LABELS]> = e.iter().flatten().copied().collect();
        let targets = emotion_targets(ds, split);
        let t = thresholds.unwrap_or_else(|| choose_thresholds(&probs, &targets));
        at_f1 = Some(emotion_metrics(&probs, &targets, t.f1));
        at_wa = Some(emotion_metrics(&probs, &targets, t.wa));
        chosen = Some(t);
    }
    let l: &LossSums = &preds.loss;
    let n = l.utterances.max(1) as f64;
    SplitMetrics {
        split,
        loss: l.loss / n,
        loss_sentiment: preds.sentiment.as_ref().map(|_| l.sentiment / n),
        loss_emotion: preds.emotion.as_ref().map(|_| l.emotion / n),
        sentiment,
        emotion_at_f1: at_f1,
        emotion_at_wa: at_wa,
        thresholds: chosen,
    }
}
