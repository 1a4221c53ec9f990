//! Both heads fused with the masked loss (MODEL.md layer 5 and "Loss"):
//!     sentiment = softmax(W_s R + b_s) over 2 classes, CE against s >= 0
//!     emotion   = sigmoid(W_e R + b_e) over 7 labels, mean_k BCE
//!     L = w_s * mean CE + w_e * mean(mean_k BCE), means over real utterances.
//! Letters: B, U, R representation width.

use super::dot;
use crate::batch::Batch;
use crate::config::{EMOTION_LABELS as E, SENTIMENT_CLASSES as S};

/// One head's weight (C, R) and bias (C).
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub w: &'a [f64],
    pub b: &'a [f64],
}

/// Gradients of one head, accumulated.
pub struct HeadGrads<'a> {
    pub w: &'a mut [f64],
    pub b: &'a mut [f64],
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeadsOutput {
    pub sentiment_prob: Option<Vec<f64>>, // (B, U, 2), zero at padding
    pub emotion_prob: Option<Vec<f64>>,   // (B, U, 7), zero at padding
    /// w_s * loss_sentiment + w_e * loss_emotion (absent terms are 0).
    pub loss: f64,
    pub loss_sentiment: Option<f64>,
    pub loss_emotion: Option<f64>,
}

fn logits(w: &[f64], b: &[f64], r: &[f64], classes: usize) -> Vec<f64> {
    let rw = r.len();
    (0..classes).map(|c| dot(&w[c * rw..(c + 1) * rw], r) + b[c]).collect()
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Forward of the heads present (`None` = that task is off) and the masked loss.
/// The batch must carry emotions when the emotion head is present.
#[allow(clippy::too_many_arguments)]
pub fn heads_forward(
    r: &[f64],
    sentiment: Option<Head>,
    emotion: Option<Head>,
    batch: &Batch,
    rw: usize,
    w_s: f64,
    w_e: f64,
) -> HeadsOutput {
    let (bsz, u) = (batch.b, batch.u);
    let count = batch.real_count() as f64;
    let mut sp = sentiment.map(|_| vec![0.0; bsz * u * S]);
    let mut ep = emotion.map(|_| vec![0.0; bsz * u * E]);
    let (mut ls, mut le) = (0.0, 0.0);
    for b in 0..bsz {
        for i in 0..batch.len[b] {
            let t = b * u + i;
            let rrow = &r[t * rw..(t + 1) * rw];
            if let (Some(h), Some(p)) = (sentiment, sp.as_mut()) {
                let z = logits(h.w, h.b, rrow, S);
                let mx = z[0].max(z[1]);
                let lse = mx + ((z[0] - mx).exp() + (z[1] - mx).exp()).ln();
                for c in 0..S {
                    p[t * S + c] = (z[c] - lse).exp();
                }
                ls += lse - z[batch.sentiment_class(b, i)];
            }
            if let (Some(h), Some(p)) = (emotion, ep.as_mut()) {
                let target = batch.emotion_targets(b, i).expect("emotion head needs emotion labels");
                let z = logits(h.w, h.b, rrow, E);
                let mut bce = 0.0;
                for k in 0..E {
                    p[t * E + k] = super::sigmoid(z[k]);
                    bce += softplus(z[k]) - target[k] * z[k];
                }
                le += bce / E as f64;
            }
        }
    }
    let loss_sentiment = sentiment.map(|_| ls / count);
    let loss_emotion = emotion.map(|_| le / count);
    let loss = w_s * loss_sentiment.unwrap_or(0.0) + w_e * loss_emotion.unwrap_or(0.0);
    HeadsOutput { sentiment_prob: sp, emotion_prob: ep, loss, loss_sentiment, loss_emotion }
}

/// Writes dr (B, U, R) (zero at padding); accumulates the heads' gradients.
#[allow(clippy::too_many_arguments)]
pub fn heads_backward(
    dr: &mut [f64],
    mut d_sentiment: Option<HeadGrads>,
    mut d_emotion: Option<HeadGrads>,
    r: &[f64],
    sentiment: Option<Head>,
    emotion: Option<Head>,
    out: &HeadsOutput,
    batch: &Batch,
    rw: usize,
    w_s: f64,
    w_e: f64,
) {
    let (bsz, u) = (batch.b, batch.u);
    let count = batch.real_count() as f64;
    dr.iter_mut().for_each(|v| *v = 0.0);
    for b in 0..bsz {
        for i in 0..batch.len[b] {
            let t = b * u + i;
            let rrow = &r[t * rw..(t + 1) * rw];
            let mut apply = |dz: &[f64], head: Head, g: &mut HeadGrads| {
                for (c, &dzc) in dz.iter().enumerate() {
                    g.b[c] += dzc;
                    for j in 0..rw {
                        g.w[c * rw + j] += dzc * rrow[j];
                        dr[t * rw + j] += dzc * head.w[c * rw + j];
                    }
                }
            };
            if let (Some(h), Some(g), Some(p)) = (sentiment, d_sentiment.as_mut(), out.sentiment_prob.as_ref()) {
                let y = batch.sentiment_class(b, i);
                let dz: Vec<f64> = (0..S).map(|c| (p[t * S + c] - f64::from(u8::from(c == y))) * w_s / count).collect();
                apply(&dz, h, g);
            }
            if let (Some(h), Some(g), Some(p)) = (emotion, d_emotion.as_mut(), out.emotion_prob.as_ref()) {
                let target = batch.emotion_targets(b, i).expect("emotion head needs emotion labels");
                let dz: Vec<f64> = (0..E).map(|k| (p[t * E + k] - target[k]) * w_e / (E as f64 * count)).collect();
                apply(&dz, h, g);
            }
        }
    }
}
