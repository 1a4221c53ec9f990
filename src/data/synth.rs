//! Synthetic MOSEI-shaped data: the real split sizes and utterances-per-video
//! histograms of CMU-MOSEI (data/mosei_structure.json), features of 300 / 74 /
//! 35 dims, and labels that behave like MOSEI's, so that batching, training and
//! the model's ablations can be exercised without the (non-redistributable)
//! real features.
//!
//! The generative story, per video (K = 7 latent channels: sentiment, then
//! the six emotions):
//! - a video offset `nu` (K): the speaker's mood, skewed positive on channel 0;
//! - an AR(1) walk `x_i` (K) over the utterances (correlation `RHO`);
//! - the utterance's own latent `u_i = nu + x_i`: this is all the features see;
//! - the label latent `c_i = u_i + BETA * mean(x_{i-1}, x_{i+1})`: labels also
//!   depend on the neighbours, which the utterance's own features do not show,
//!   so context matters;
//! - sentiment `s_i = q(1.3 c_i[0] + 0.3 n)` clipped to [-3, 3], `q` rounding to
//!   thirds like MOSEI's three-annotator means;
//! - emotion k: `eta_k = 0.8 c_i[k+1] + ALPHA_k c_i[0] + BIAS_k`, intensity
//!   `q(eta_k + 0.3 n)` clipped to [0, 3]. ALPHA ties anger, disgust, fear and
//!   sad to negative sentiment and happy to positive; BIAS sets MOSEI-like
//!   prevalences, leaving a share of utterances with no emotion. Multi-label.
//! - features of modality m: `B_m (g u_i) + s_m eps`, then a fixed per-feature
//!   affine map (features are not standardised, like real ones). `B_m` is a
//!   fixed random (D_m, K) matrix; `s_m = NOISE_m sqrt(D_m)` makes `NOISE_m` the
//!   noise left on each latent channel after the best linear read-out of that
//!   modality alone (text cleanest, then audio, then video). With probability
//!   `DROP` one modality of an utterance loses its signal (`g = 0`), so which
//!   modality to trust varies utterance by utterance.
//!
//! The generator knows each utterance's Bayes-optimal labels given its latent
//! (`Truth`); `probe` shows that a per-utterance linear classifier stays well
//! below that, and that adding neighbours' information helps.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{Dataset, SplitName, Video};
use crate::config::{Modality, EMOTIONS};

/// Latent channels: sentiment + six emotions.
const K: usize = 1 + EMOTIONS;
/// Correlation of consecutive utterances' latents within a video.
const RHO: f64 = 0.5;
/// Weight of the neighbours' latents in an utterance's labels.
const BETA: f64 = 0.6;
/// Video mood: mean and spread of the sentiment offset; spread of the emotion offsets.
const MOOD_MEAN: f64 = 0.25;
const MOOD_STD: f64 = 0.6;
const EMO_OFFSET_STD: f64 = 0.4;
/// Label noise (in latent units) and scale of the sentiment score.
const LABEL_NOISE: f64 = 0.3;
const SENT_SCALE: f64 = 1.3;
/// Emotion ties to sentiment: anger, disgust, fear, happy, sad, surprise.
const ALPHA: [f64; EMOTIONS] = [-0.5, -0.5, -0.35, 0.8, -0.6, 0.1];
/// Emotion offsets, tuned to MOSEI-like prevalences (happy most common, fear rarest).
const BIAS: [f64; EMOTIONS] = [-0.9, -1.1, -1.6, 0.0, -0.7, -1.4];
/// Per-channel noise after a linear read-out of one modality (T, A, V).
pub const NOISE: [f64; 3] = [0.9, 1.3, 1.6];
/// Probability that an utterance loses one (random) modality's signal.
pub const DROP: f64 = 0.15;
/// MOSEI's feature dims: GloVe text, COVAREP audio, FACET video.
pub const MOSEI_DIMS: [usize; 3] = [300, 74, 35];

/// The real structure of MOSEI's standard splits (from its segment lists).
static MOSEI_STRUCTURE: &str = include_str!("../../data/mosei_structure.json");

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// Per split (train, valid, test): (utterances per video, number of videos), ascending.
    pub histograms: [Vec<(usize, usize)>; 3],
    /// Feature dims T, A, V.
    pub dims: [usize; 3],
}

#[derive(serde::Deserialize)]
struct SplitStructure {
    segments: usize,
    videos: usize,
    utterances_per_video_histogram: BTreeMap<String, usize>,
}

impl SynthSpec {
    /// The full MOSEI shape: 2,249 / 300 / 676 videos, 16,327 / 1,871 / 4,662 utterances.
    pub fn mosei() -> SynthSpec {
        let parsed: BTreeMap<String, SplitStructure> =
            serde_json::from_str(MOSEI_STRUCTURE).expect("embedded data/mosei_structure.json is valid");
        let histograms = SplitName::ALL.map(|s| {
            let st = &parsed[s.as_str()];
            let mut h: Vec<(usize, usize)> = st
                .utterances_per_video_histogram
                .iter()
                .map(|(k, &c)| (k.parse().expect("histogram keys are lengths"), c))
                .collect();
            h.sort();
            debug_assert_eq!(h.iter().map(|&(_, c)| c).sum::<usize>(), st.videos);
            debug_assert_eq!(h.iter().map(|&(l, c)| l * c).sum::<usize>(), st.segments);
            h
        });
        SynthSpec { histograms, dims: MOSEI_DIMS }
    }

    /// MOSEI's shape with every histogram count scaled by `fraction` (rounded;
    /// at least one video per split), for faster tests.
    pub fn scaled(fraction: f64) -> SynthSpec {
        let mut spec = SynthSpec::mosei();
        for h in &mut spec.histograms {
            let full = h.clone();
            h.iter_mut().for_each(|(_, c)| *c = (*c as f64 * fraction).round() as usize);
            h.retain(|&(_, c)| c > 0);
            if h.is_empty() {
                let &(len, _) = full.iter().max_by_key(|&&(_, c)| c).expect("non-empty histogram");
                h.push((len, 1));
            }
        }
        spec
    }

    /// A few short videos with small dims, for unit tests of everything downstream.
    pub fn tiny() -> SynthSpec {
        SynthSpec {
            histograms: [
                (1..=8).map(|l| (l, 3)).collect(),
                (1..=4).map(|l| (l, 2)).collect(),
                (1..=4).map(|l| (l, 2)).collect(),
            ],
            dims: [12, 8, 6],
        }
    }

    /// Number of videos of a split.
    pub fn videos(&self, s: SplitName) -> usize {
        self.histograms[s.index()].iter().map(|&(_, c)| c).sum()
    }
}

/// The generator's knowledge: for every utterance (per split, videos in
/// order, utterances in order) the Bayes-optimal labels given its latent.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub sentiment: [Vec<bool>; 3],
    pub emotion: [Vec<[bool; EMOTIONS]>; 3],
}

/// The fixed "world" shared by all splits: projections and per-feature affine maps.
struct World {
    /// Per modality (D_m, K), row-major.
    proj: [Vec<f64>; 3],
    /// Per modality (D_m): noise std, offset and scale of each feature.
    noise: [f64; 3],
    offset: [Vec<f64>; 3],
    scale: [Vec<f64>; 3],
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

impl World {
    fn new(dims: [usize; 3], seed: u64) -> World {
        let mut rng = rng_for(seed, 0);
        let proj = dims.map(|d| (0..d * K).map(|_| normal(&mut rng)).collect());
        let noise = [0, 1, 2].map(|m| NOISE[m] * (dims[m] as f64).sqrt());
        // Put raw features roughly on unit scale before the affine map.
        let unit = [0, 1, 2].map(|m| 1.0 / (noise[m] * noise[m] + K as f64).sqrt());
        let offset = dims.map(|d| (0..d).map(|_| normal(&mut rng)).collect());
        let scale: [Vec<f64>; 3] =
            [0, 1, 2].map(|m| (0..dims[m]).map(|_| unit[m] * (0.5 * normal(&mut rng)).exp()).collect());
        World { proj, noise, offset, scale }
    }
}

/// Round to thirds (MOSEI labels are means of three annotators' integers).
fn thirds(x: f64) -> f64 {
    (x * 3.0).round() / 3.0
}

/// Generate a dataset and its ground truth. Deterministic in `seed`; each split
/// has its own random stream, so changing one split's size leaves the others.
pub fn generate(spec: &SynthSpec, seed: u64) -> (Dataset, Truth) {
    let world = World::new(spec.dims, seed);
    let mut splits: [Vec<Video>; 3] = Default::default();
    let mut truth = Truth { sentiment: Default::default(), emotion: Default::default() };
    for split in SplitName::ALL {
        let mut rng = rng_for(seed, 1 + split.index() as u64);
        let mut lens: Vec<usize> =
            spec.histograms[split.index()].iter().flat_map(|&(l, c)| std::iter::repeat_n(l, c)).collect();
        lens.shuffle(&mut rng);
        for (vi, &len) in lens.iter().enumerate() {
            let id = format!("synth_{split}_{vi:05}");
            let (video, sent, emo) = video(&world, spec.dims, len, id, &mut rng);
            splits[split.index()].push(video);
            truth.sentiment[split.index()].extend(sent);
            truth.emotion[split.index()].extend(emo);
        }
    }
    let ds = Dataset {
        source: format!("synthetic MOSEI-shaped data (seed {seed})"),
        dims: spec.dims,
        has_emotion: true,
        splits,
    };
    (ds, truth)
}

type VideoTruth = (Video, Vec<bool>, Vec<[bool; EMOTIONS]>);

fn video(world: &World, dims: [usize; 3], len: usize, id: String, rng: &mut ChaCha8Rng) -> VideoTruth {
    let mut nu = [0.0f64; K];
    nu[0] = MOOD_MEAN + MOOD_STD * normal(rng);
    for o in nu.iter_mut().skip(1) {
        *o = EMO_OFFSET_STD * normal(rng);
    }
    // AR(1) walk, (len, K)
    let mut x: Vec<[f64; K]> = Vec::with_capacity(len);
    let innov = (1.0 - RHO * RHO).sqrt();
    for i in 0..len {
        let next: [f64; K] = match x.get(i.wrapping_sub(1)) {
            None => std::array::from_fn(|_| normal(rng)),
            Some(prev) => std::array::from_fn(|k| RHO * prev[k] + innov * normal(rng)),
        };
        x.push(next);
    }
    let mut features: [Vec<f32>; 3] = dims.map(|d| Vec::with_capacity(len * d));
    let mut sentiment = Vec::with_capacity(len);
    let mut emotion = Vec::with_capacity(len * EMOTIONS);
    let (mut t_sent, mut t_emo) = (Vec::with_capacity(len), Vec::with_capacity(len));
    for i in 0..len {
        let u: [f64; K] = std::array::from_fn(|k| nu[k] + x[i][k]);
        let nbrs: Vec<&[f64; K]> =
            [i.checked_sub(1), (i + 1 < len).then_some(i + 1)].into_iter().flatten().map(|j| &x[j]).collect();
        let c: [f64; K] = std::array::from_fn(|k| {
            let ctx = if nbrs.is_empty() { 0.0 } else { nbrs.iter().map(|n| n[k]).sum::<f64>() / nbrs.len() as f64 };
            u[k] + BETA * ctx
        });
        let s = (SENT_SCALE * c[0] + LABEL_NOISE * normal(rng)).clamp(-3.0, 3.0);
        sentiment.push(thirds(s) as f32);
        // Positive iff round-to-thirds(s) >= 0 iff s >= -1/6; without noise that is the Bayes rule.
        t_sent.push(SENT_SCALE * c[0] >= -1.0 / 6.0);
        let mut te = [false; EMOTIONS];
        for k in 0..EMOTIONS {
            let eta = 0.8 * c[k + 1] + ALPHA[k] * c[0] + BIAS[k];
            let r = (eta + LABEL_NOISE * normal(rng)).clamp(0.0, 3.0);
            emotion.push(thirds(r) as f32);
            te[k] = eta >= 1.0 / 6.0;
        }
        t_emo.push(te);
        let dropped = (rng.gen::<f64>() < DROP).then(|| rng.gen_range(0..3));
        for m in 0..3 {
            let gain = if dropped == Some(m) { 0.0 } else { 1.0 };
            let p = &world.proj[m];
            for j in 0..dims[m] {
                let row = &p[j * K..(j + 1) * K];
                let signal: f64 = row.iter().zip(&u).map(|(a, b)| a * b).sum();
                let raw = gain * signal + world.noise[m] * normal(rng);
                features[m].push((world.offset[m][j] + world.scale[m][j] * raw) as f32);
            }
        }
    }
    let video = Video { id, len, features: features.map(Some), sentiment, emotion: Some(emotion) };
    (video, t_sent, t_emo)
}

/// The full MOSEI-shaped dataset.
pub fn mosei_like(seed: u64) -> Dataset {
    generate(&SynthSpec::mosei(), seed).0
}

/// A small dataset for fast tests (40 short videos, dims 12 / 8 / 6).
pub fn tiny(seed: u64) -> Dataset {
    generate(&SynthSpec::tiny(), seed).0
}

/// How learnable the data is: test-split scores of a per-utterance linear
/// classifier, of the same classifier given its neighbours' scores, and of
/// the generator's own ground truth.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Probe {
    /// Sentiment accuracy of least squares on one utterance's features.
    pub linear_sentiment_acc: f64,
    /// ... after a second least-squares stage on the scores of the utterance, its neighbours and its video.
    pub context_sentiment_acc: f64,
    /// Sentiment accuracy of the Bayes rule given the generator's latent.
    pub truth_sentiment_acc: f64,
    /// Mean over the six emotions of the weighted (balanced) accuracy, per-utterance linear.
    pub linear_emotion_wa: f64,
    /// The same for the ground truth.
    pub truth_emotion_wa: f64,
    /// Share of test utterances with no emotion.
    pub no_emotion_share: f64,
}

/// Fit on train, score test (see `Probe`). Uses whichever modalities the
/// dataset has; `truth` must come from the same `generate` call.
pub fn probe(ds: &Dataset, truth: &Truth) -> Probe {
    let width: usize = ds.dims.iter().sum::<usize>() + 1;
    let rows = |split: SplitName| -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for v in ds.split(split) {
            for i in 0..v.len {
                let mut r = Vec::with_capacity(width);
                r.push(1.0);
                for m in Modality::ALL {
                    let d = ds.dims[m.index()];
                    if let Some(f) = v.feature(m) {
                        r.extend(f[i * d..(i + 1) * d].iter().map(|&x| f64::from(x)));
                    }
                }
                out.push(r);
            }
        }
        out
    };
    // Targets: +-1 for sentiment class, then for each emotion's presence. (N, 7)
    let targets = |split: SplitName| -> Vec<[f64; K]> {
        let mut out = Vec::new();
        for v in ds.split(split) {
            for i in 0..v.len {
                let mut t = [0.0; K];
                t[0] = if v.sentiment[i] >= 0.0 { 1.0 } else { -1.0 };
                if let Some(e) = &v.emotion {
                    for k in 0..EMOTIONS {
                        t[k + 1] = if e[i * EMOTIONS + k] > 0.0 { 1.0 } else { -1.0 };
                    }
                }
                out.push(t);
            }
        }
        out
    };
    let (mut xtr, ytr) = (rows(SplitName::Train), targets(SplitName::Train));
    let (mut xte, yte) = (rows(SplitName::Test), targets(SplitName::Test));
    standardise(&mut xtr, &mut xte);
    let w = least_squares(&xtr, &ytr);
    let score = |x: &[Vec<f64>], k: usize| -> Vec<f64> {
        x.iter().map(|r| r.iter().enumerate().map(|(j, v)| v * w[j][k]).sum()).collect()
    };
    let acc = |pred: &[bool], y: &[[f64; K]], k: usize| -> f64 {
        pred.iter().zip(y).filter(|(p, t)| **p == (t[k] > 0.0)).count() as f64 / pred.len().max(1) as f64
    };
    let s_tr = score(&xtr, 0);
    let s_te = score(&xte, 0);
    let linear_sentiment_acc = acc(&s_te.iter().map(|&s| s >= 0.0).collect::<Vec<_>>(), &yte, 0);

    // Second stage: the utterance's score, its neighbours' and its video's mean.
    let ctx_rows = |split: SplitName, s: &[f64]| -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        let mut at = 0;
        for v in ds.split(split) {
            let vs = &s[at..at + v.len];
            let mean = vs.iter().sum::<f64>() / v.len as f64;
            for i in 0..v.len {
                let prev = if i > 0 { vs[i - 1] } else { 0.0 };
                let next = if i + 1 < v.len { vs[i + 1] } else { 0.0 };
                out.push(vec![
                    1.0,
                    vs[i],
                    prev,
                    next,
                    mean,
                    f64::from(u8::from(i > 0)),
                    f64::from(u8::from(i + 1 < v.len)),
                ]);
            }
            at += v.len;
        }
        out
    };
    let (ctr, cte) = (ctx_rows(SplitName::Train, &s_tr), ctx_rows(SplitName::Test, &s_te));
    let w2 = least_squares(&ctr, &ytr);
    let ctx_pred: Vec<bool> =
        cte.iter().map(|r| r.iter().enumerate().map(|(j, v)| v * w2[j][0]).sum::<f64>() >= 0.0).collect();
    let context_sentiment_acc = acc(&ctx_pred, &yte, 0);
    let truth_sentiment_acc = acc(&truth.sentiment[SplitName::Test.index()], &yte, 0);

    let (mut lin_wa, mut truth_wa) = (0.0, 0.0);
    for k in 1..K {
        // Threshold halfway between the classes' mean training scores (least squares
        // on imbalanced +-1 targets is biased toward the majority).
        let tr = score(&xtr, k);
        let mean_of = |pos: bool| {
            let v: Vec<f64> = tr.iter().zip(&ytr).filter(|(_, t)| (t[k] > 0.0) == pos).map(|(s, _)| *s).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let thr = 0.5 * (mean_of(true) + mean_of(false));
        let pred: Vec<bool> = score(&xte, k).iter().map(|&s| s >= thr).collect();
        lin_wa += weighted_accuracy(&pred, &yte, k);
        let tp: Vec<bool> = truth.emotion[SplitName::Test.index()].iter().map(|e| e[k - 1]).collect();
        truth_wa += weighted_accuracy(&tp, &yte, k);
    }
    let no_emotion = yte.iter().filter(|t| t[1..].iter().all(|&x| x < 0.0)).count();
    Probe {
        linear_sentiment_acc,
        context_sentiment_acc,
        truth_sentiment_acc,
        linear_emotion_wa: lin_wa / EMOTIONS as f64,
        truth_emotion_wa: truth_wa / EMOTIONS as f64,
        no_emotion_share: no_emotion as f64 / yte.len().max(1) as f64,
    }
}

/// (TPR + TNR) / 2, the paper's weighted accuracy.
fn weighted_accuracy(pred: &[bool], y: &[[f64; K]], k: usize) -> f64 {
    let (mut tp, mut tn, mut p, mut n) = (0.0, 0.0, 0.0, 0.0);
    for (&pr, t) in pred.iter().zip(y) {
        if t[k] > 0.0 {
            p += 1.0;
            tp += f64::from(u8::from(pr));
        } else {
            n += 1.0;
            tn += f64::from(u8::from(!pr));
        }
    }
    0.5 * (tp / f64::max(p, 1.0) + tn / f64::max(n, 1.0))
}

/// Z-score every column but the first (the bias) with the training statistics.
fn standardise(train: &mut [Vec<f64>], test: &mut [Vec<f64>]) {
    let w = train.first().map_or(0, Vec::len);
    let n = train.len().max(1) as f64;
    for j in 1..w {
        let mean = train.iter().map(|r| r[j]).sum::<f64>() / n;
        let var = train.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n;
        let sd = if var > 1e-12 { var.sqrt() } else { 1.0 };
        for r in train.iter_mut().chain(test.iter_mut()) {
            r[j] = (r[j] - mean) / sd;
        }
    }
}

/// Ridge-regularised least squares for K right-hand sides via Cholesky: (W, K).
#[allow(clippy::needless_range_loop)] // index loops mirror the textbook Cholesky formulas
fn least_squares(x: &[Vec<f64>], y: &[[f64; K]]) -> Vec<[f64; K]> {
    let w = x.first().map_or(0, Vec::len);
    let mut a = vec![0.0f64; w * w];
    let mut b = vec![[0.0f64; K]; w];
    for (r, t) in x.iter().zip(y) {
        for i in 0..w {
            let ri = r[i];
            let row = &mut a[i * w..i * w + i + 1];
            for (aij, rj) in row.iter_mut().zip(&r[..=i]) {
                *aij += ri * rj;
            }
            for k in 0..K {
                b[i][k] += ri * t[k];
            }
        }
    }
    for i in 0..w {
        for j in 0..i {
            a[j * w + i] = a[i * w + j];
        }
        a[i * w + i] += 1e-3 * x.len() as f64 / w as f64; // small ridge keeps it well-posed
    }
    // Cholesky a = L L^T in place (lower triangle).
    for j in 0..w {
        let mut d = a[j * w + j];
        for k in 0..j {
            d -= a[j * w + k] * a[j * w + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * w + j] = d;
        for i in j + 1..w {
            let mut s = a[i * w + j];
            for k in 0..j {
                s -= a[i * w + k] * a[j * w + k];
            }
            a[i * w + j] = s / d;
        }
    }
    // Solve L z = b, then L^T w = z.
    for i in 0..w {
        for k in 0..K {
            let mut s = b[i][k];
            for j in 0..i {
                s -= a[i * w + j] * b[j][k];
            }
            b[i][k] = s / a[i * w + i];
        }
    }
    for i in (0..w).rev() {
        for k in 0..K {
            let mut s = b[i][k];
            for j in i + 1..w {
                s -= a[j * w + i] * b[j][k];
            }
            b[i][k] = s / a[i * w + i];
        }
    }
    b
}
