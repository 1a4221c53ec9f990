//! report.md and report.json of a run: the paper's metrics as tables.

use serde::{Deserialize, Serialize};

use super::curve::{protocols_markdown, PublishedProtocol};
use super::evaluate::SplitMetrics;
use super::run::{FinalMetrics, RunConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub variant: String,
    pub data: String,
    pub engine: String,
    pub select: String,
    pub result: FinalMetrics,
    /// With --test-curve: the best test value per metric over the epochs
    /// (the published protocol, optimistic); never used for a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_protocol: Option<PublishedProtocol>,
}

impl Report {
    pub fn new(run: &RunConfig, engine: &str, result: FinalMetrics) -> Report {
        let m = &run.model;
        Report {
            variant: format!("{}/{}/{}", m.modalities, m.attention, m.tasks),
            data: run.data.describe(),
            engine: engine.to_string(),
            select: run.train.select.as_str().to_string(),
            result,
            published_protocol: None,
        }
    }

    pub fn markdown(&self) -> String {
        let r = &self.result;
        let mut s = String::new();
        s.push_str(&format!("# cimnet report: {}\n\n", self.variant));
        s.push_str(&format!("- data: {}\n- engine: {}\n", self.data, self.engine));
        s.push_str(&format!(
            "- epochs trained: {}; kept checkpoint: epoch {} (selected by validation {})\n",
            r.epochs_trained,
            r.best_epoch.map_or("none".to_string(), |e| (e + 1).to_string()),
            self.select
        ));
        if let Some(t) = r.thresholds {
            s.push_str(&format!(
                "- emotion thresholds chosen on validation: {:.2} for F1 and accuracy, {:.2} for weighted accuracy; applied unchanged to test\n",
                t.f1, t.wa
            ));
        }
        s.push('\n');
        s.push_str("## Loss\n\n| split | loss | sentiment CE | emotion BCE |\n|---|---|---|---|\n");
        for m in [&r.valid, &r.test] {
            s.push_str(&format!(
                "| {} | {:.4} | {} | {} |\n",
                m.split,
                m.loss,
                opt(m.loss_sentiment, 4),
                opt(m.loss_emotion, 4)
            ));
        }
        if r.test.sentiment.is_some() {
            s.push_str(
                "\n## Sentiment (2 classes)\n\n| split | utterances | accuracy | weighted F1 |\n|---|---|---|---|\n",
            );
            for m in [&r.valid, &r.test] {
                if let Some(x) = m.sentiment {
                    s.push_str(&format!(
                        "| {} | {} | {:.2} | {:.2} |\n",
                        m.split,
                        x.utterances,
                        100.0 * x.accuracy,
                        100.0 * x.weighted_f1
                    ));
                }
            }
        }
        if let Some(p) = &self.published_protocol {
            s.push_str(&protocols_markdown(&r.test, r.best_epoch, p));
        }
        if r.test.emotion_at_f1.is_some() {
            s.push_str(&emotion_table(&r.test));
            s.push_str(&emotion_table(&r.valid));
        }
        s
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn emotion_table(m: &SplitMetrics) -> String {
    let (Some(f1), Some(wa)) = (&m.emotion_at_f1, &m.emotion_at_wa) else { return String::new() };
    let mut s = format!(
        "\n## Emotion, {} split (F1 and accuracy at t = {:.2}, WA at t = {:.2})\n\n| label | positives | weighted F1 | accuracy | WA |\n|---|---|---|---|---|\n",
        m.split, f1.threshold, wa.threshold
    );
    for (a, b) in f1.labels.iter().zip(&wa.labels) {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} |\n",
            a.label,
            a.positives,
            100.0 * a.weighted_f1,
            100.0 * a.accuracy,
            b.weighted_accuracy.map_or("n/a".to_string(), |v| format!("{:.2}", 100.0 * v))
        ));
    }
    s.push_str(&format!(
        "| **mean** | | **{:.2}** | **{:.2}** | **{}** |\n",
        100.0 * f1.mean_weighted_f1,
        100.0 * f1.mean_accuracy,
        wa.mean_weighted_accuracy.map_or("n/a".to_string(), |v| format!("{:.2}", 100.0 * v))
    ));
    if !wa.wa_excluded.is_empty() {
        s.push_str(&format!(
            "\nWA is undefined for {} (no positives or no negatives in this split) and left out of the mean.\n",
            wa.wa_excluded.join(", ")
        ));
    }
    s
}
