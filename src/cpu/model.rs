//! The whole model of MODEL.md composed from the layers: forward, then the
//! backward that walks the same schedule in reverse, for all 63 variants.

use super::attention::{attention_backward, attention_forward, AttentionCache};
use super::dense::{dense_backward, dense_forward};
use super::dropout::{dropout_backward, dropout_forward, dropout_mask, stream};
use super::gru::{bigru_concat, bigru_split, gru_backward, gru_forward, GruCache, GruGrads, GruShape, GruWeights};
use super::heads::{heads_backward, heads_forward, Head, HeadGrads, HeadsOutput};
use crate::batch::Batch;
use crate::config::{Block, Modality, ModelConfig};
use crate::params::Layout;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("the {set} model uses {modality} features, but the batch has none")]
    MissingModality { set: String, modality: &'static str },
    #[error("{modality} features have dimension {batch} in the batch but {model} in the model")]
    Dim { modality: &'static str, batch: usize, model: usize },
    #[error("the model has an emotion head, but the batch carries no emotion labels: train with --tasks sentiment, or give data with emotions")]
    MissingEmotion,
    #[error("video {video} has length {len}; lengths must be in 1..={u}")]
    Length { video: usize, len: usize, u: usize },
}

/// Explicit dropout masks (0 or 1/(1-p)) for the two sites of each modality.
#[derive(Debug, Clone, PartialEq)]
pub struct DropoutMasks {
    pub gru: [Option<Vec<f64>>; 3],   // (B, U, 2H) on the bi-GRU output
    pub dense: [Option<Vec<f64>>; 3], // (B, U, D) on the dense output
}

impl DropoutMasks {
    /// The masks the GPU generates for step seed `seed` (see cpu::dropout).
    pub fn generate(cfg: &ModelConfig, b: usize, u: usize, seed: u32) -> DropoutMasks {
        let mut masks = DropoutMasks { gru: Default::default(), dense: Default::default() };
        for m in cfg.modalities.modalities() {
            let i = m.index();
            masks.gru[i] = Some(dropout_mask(seed, stream(i, 0), b * u * 2 * cfg.hidden, cfg.dropout));
            masks.dense[i] = Some(dropout_mask(seed, stream(i, 1), b * u * cfg.dense, cfg.dropout));
        }
        masks
    }
}

/// Saved activations of one modality's branch.
#[derive(Debug, Clone, PartialEq)]
pub struct ModalityCache {
    pub fwd: GruCache,
    pub rev: GruCache,
    pub gru_out: Vec<f64>,   // (B, U, 2H) bi-GRU output
    pub dense_in: Vec<f64>,  // (B, U, 2H) after dropout
    pub dense_out: Vec<f64>, // (B, U, D) relu output
    pub out: Vec<f64>,       // (B, U, D) after dropout: the matrix T, A or V
}

/// Everything the forward computed and the backward needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub modal: [Option<ModalityCache>; 3],
    /// One cache per attention block of R, in representation order (None for plain blocks).
    pub attention: Vec<Option<AttentionCache>>,
    pub repr: Vec<f64>, // (B, U, R)
    pub heads: HeadsOutput,
    pub dropout: Option<DropoutMasks>,
}

/// Gradients of the loss: one flat vector in the parameter layout, and the inputs'.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    pub params: Vec<f64>,              // (layout.len)
    pub inputs: [Option<Vec<f64>>; 3], // (B, U, D_m), zero at padding
}

fn gru_weights<'a>(layout: &Layout, p: &'a [f64], m: Modality, dir: &str) -> GruWeights<'a> {
    let get = |t: &str| &p[layout.slice(&format!("{}.gru.{t}_l0{dir}", m.name())).range()];
    GruWeights { w_ih: get("weight_ih"), w_hh: get("weight_hh"), b_ih: get("bias_ih"), b_hh: get("bias_hh") }
}

fn head<'a>(layout: &Layout, p: &'a [f64], name: &str) -> Option<Head<'a>> {
    let w = layout.get(&format!("{name}.weight"))?;
    let b = layout.get(&format!("{name}.bias"))?;
    Some(Head { w: &p[w.range()], b: &p[b.range()] })
}

/// Check that the batch fits the model (modalities, dims, labels, lengths).
pub fn check_batch(cfg: &ModelConfig, batch: &Batch) -> Result<(), ModelError> {
    for m in cfg.modalities.modalities() {
        if batch.feature(m).is_none() {
            return Err(ModelError::MissingModality { set: cfg.modalities.to_string(), modality: m.name() });
        }
        if batch.dims[m.index()] != cfg.dim(m) {
            return Err(ModelError::Dim { modality: m.name(), batch: batch.dims[m.index()], model: cfg.dim(m) });
        }
    }
    if cfg.tasks.has_emotion() && batch.emotion.is_none() {
        return Err(ModelError::MissingEmotion);
    }
    if let Some((video, &len)) = batch.len.iter().enumerate().find(|(_, &l)| l == 0 || l > batch.u) {
        return Err(ModelError::Length { video, len, u: batch.u });
    }
    Ok(())
}

/// Forward pass and loss. `dropout: None` is evaluation mode.
pub fn forward(
    cfg: &ModelConfig,
    layout: &Layout,
    params: &[f64],
    batch: &Batch,
    dropout: Option<&DropoutMasks>,
) -> Result<Forward, ModelError> {
    check_batch(cfg, batch)?;
    let (bsz, u, h, d) = (batch.b, batch.u, cfg.hidden, cfg.dense);
    let mut modal: [Option<ModalityCache>; 3] = Default::default();
    for m in cfg.modalities.modalities() {
        let x = batch.feature(m).expect("checked");
        let s = GruShape { b: bsz, u, k: cfg.dim(m), h };
        let fwd = gru_forward(x, &gru_weights(layout, params, m, ""), &batch.len, s, false);
        let rev = gru_forward(x, &gru_weights(layout, params, m, "_reverse"), &batch.len, s, true);
        let gru_out = bigru_concat(&fwd.h, &rev.h, s);
        let dense_in = match dropout {
            Some(masks) => dropout_forward(&gru_out, masks.gru[m.index()].as_ref().expect("mask per modality")),
            None => gru_out.clone(),
        };
        let p = |n: &str| &params[layout.slice(&format!("{}.dense.{n}", m.name())).range()];
        let dense_out = dense_forward(&dense_in, p("weight"), p("bias"), &batch.len, bsz, u, 2 * h, d);
        let out = match dropout {
            Some(masks) => dropout_forward(&dense_out, masks.dense[m.index()].as_ref().expect("mask per modality")),
            None => dense_out.clone(),
        };
        modal[m.index()] = Some(ModalityCache { fwd, rev, gru_out, dense_in, dense_out, out });
    }
    let of = |m: Modality| &modal[m.index()].as_ref().expect("modality computed").out;

    let blocks = cfg.representation();
    let rw = blocks.len() * d;
    let mut repr = vec![0.0; bsz * u * rw];
    let mut attention = Vec::with_capacity(blocks.len());
    for (k, block) in blocks.iter().enumerate() {
        let (values, cache) = match *block {
            Block::Att(x, y) => {
                let (out, cache) = attention_forward(of(x), of(y), &batch.len, bsz, u, d);
                (out, Some(cache))
            }
            Block::Plain(x) => (of(x).clone(), None),
        };
        for t in 0..bsz * u {
            repr[t * rw + k * d..t * rw + (k + 1) * d].copy_from_slice(&values[t * d..(t + 1) * d]);
        }
        attention.push(cache);
    }

    let heads = heads_forward(
        &repr,
        head(layout, params, "sentiment"),
        head(layout, params, "emotion"),
        batch,
        rw,
        cfg.w_sentiment,
        cfg.w_emotion,
    );
    Ok(Forward { modal, attention, repr, heads, dropout: dropout.cloned() })
}

/// Backward pass: the forward schedule reversed. Parameter gradients in the
/// flat layout, input gradients per modality.
pub fn backward(cfg: &ModelConfig, layout: &Layout, params: &[f64], batch: &Batch, fwd: &Forward) -> Gradients {
    let (bsz, u, h, d) = (batch.b, batch.u, cfg.hidden, cfg.dense);
    let mut grads = vec![0.0; layout.len];
    let blocks = cfg.representation();
    let rw = blocks.len() * d;

    // Heads and loss.
    let mut drepr = vec![0.0; bsz * u * rw];
    {
        // Temporary copies of the heads' gradient slices (absent heads stay None).
        let range = |n: &str| layout.get(n).map(|s| s.range());
        let tmp = |w: &str, b: &str| {
            range(w).zip(range(b)).map(|(w, b)| (w.clone(), b.clone(), vec![0.0; w.len()], vec![0.0; b.len()]))
        };
        let mut hs = tmp("sentiment.weight", "sentiment.bias");
        let mut he = tmp("emotion.weight", "emotion.bias");
        heads_backward(
            &mut drepr,
            hs.as_mut().map(|(_, _, w, b)| HeadGrads { w, b }),
            he.as_mut().map(|(_, _, w, b)| HeadGrads { w, b }),
            &fwd.repr,
            head(layout, params, "sentiment"),
            head(layout, params, "emotion"),
            &fwd.heads,
            batch,
            rw,
            cfg.w_sentiment,
            cfg.w_emotion,
        );
        for (wr, br, w, b) in [hs, he].into_iter().flatten() {
            grads[wr].copy_from_slice(&w);
            grads[br].copy_from_slice(&b);
        }
    }

    // Representation blocks -> gradients of T, A, V.
    let mut dmod: [Vec<f64>; 3] = Default::default();
    for m in cfg.modalities.modalities() {
        dmod[m.index()] = vec![0.0; bsz * u * d];
    }
    let of = |m: Modality| &fwd.modal[m.index()].as_ref().expect("modality computed").out;
    for (k, block) in blocks.iter().enumerate() {
        let mut dblock = vec![0.0; bsz * u * d];
        for t in 0..bsz * u {
            dblock[t * d..(t + 1) * d].copy_from_slice(&drepr[t * rw + k * d..t * rw + (k + 1) * d]);
        }
        match *block {
            Block::Plain(x) => add(&mut dmod[x.index()], &dblock),
            Block::Att(x, y) => {
                let cache = fwd.attention[k].as_ref().expect("attention cache");
                let mut dx = vec![0.0; bsz * u * d];
                let mut dy = vec![0.0; bsz * u * d];
                attention_backward(&mut dx, &mut dy, &dblock, of(x), of(y), cache, &batch.len, bsz, u, d);
                add(&mut dmod[x.index()], &dx);
                add(&mut dmod[y.index()], &dy);
            }
        }
    }

    // Each modality's branch, reversed: dropout, dense, dropout, bi-GRU.
    let mut inputs: [Option<Vec<f64>>; 3] = Default::default();
    for m in cfg.modalities.modalities() {
        let c = fwd.modal[m.index()].as_ref().expect("modality computed");
        let mut ddense = vec![0.0; bsz * u * d];
        match &fwd.dropout {
            Some(masks) => {
                dropout_backward(&mut ddense, &dmod[m.index()], masks.dense[m.index()].as_ref().expect("mask"))
            }
            None => ddense.copy_from_slice(&dmod[m.index()]),
        }
        let mut ddense_in = vec![0.0; bsz * u * 2 * h];
        {
            let wname = format!("{}.dense.weight", m.name());
            let bname = format!("{}.dense.bias", m.name());
            let (wr, br) = (layout.slice(&wname).range(), layout.slice(&bname).range());
            let mut dw = grads[wr.clone()].to_vec();
            let mut db = grads[br.clone()].to_vec();
            dense_backward(
                &mut ddense_in,
                &mut dw,
                &mut db,
                &ddense,
                &c.dense_in,
                &c.dense_out,
                &params[wr.clone()],
                &batch.len,
                bsz,
                u,
                2 * h,
                d,
            );
            grads[wr].copy_from_slice(&dw);
            grads[br].copy_from_slice(&db);
        }
        let mut dgru = vec![0.0; bsz * u * 2 * h];
        match &fwd.dropout {
            Some(masks) => dropout_backward(&mut dgru, &ddense_in, masks.gru[m.index()].as_ref().expect("mask")),
            None => dgru.copy_from_slice(&ddense_in),
        }
        let s = GruShape { b: bsz, u, k: cfg.dim(m), h };
        let (dfwd, drev) = bigru_split(&dgru, s);
        let x = batch.feature(m).expect("checked in forward");
        let mut dx = vec![0.0; bsz * u * s.k];
        for (dir, dh, cache, reverse) in [("", &dfwd, &c.fwd, false), ("_reverse", &drev, &c.rev, true)] {
            let names: Vec<std::ops::Range<usize>> = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
                .iter()
                .map(|t| layout.slice(&format!("{}.gru.{t}_l0{dir}", m.name())).range())
                .collect();
            let mut bufs: Vec<Vec<f64>> = names.iter().map(|r| grads[r.clone()].to_vec()).collect();
            {
                let [w_ih, w_hh, b_ih, b_hh] = &mut bufs[..] else { unreachable!() };
                let mut g = GruGrads { w_ih, w_hh, b_ih, b_hh };
                let w = gru_weights(layout, params, m, dir);
                gru_backward(&mut dx, &mut g, dh, x, &w, cache, &batch.len, s, reverse);
            }
            for (r, buf) in names.iter().zip(bufs) {
                grads[r.clone()].copy_from_slice(&buf);
            }
        }
        inputs[m.index()] = Some(dx);
    }
    Gradients { params: grads, inputs }
}

fn add(acc: &mut [f64], v: &[f64]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

/// Forward and backward in one call (evaluation mode unless masks are given).
pub fn loss_and_grads(
    cfg: &ModelConfig,
    layout: &Layout,
    params: &[f64],
    batch: &Batch,
    dropout: Option<&DropoutMasks>,
) -> Result<(Forward, Gradients), ModelError> {
    let f = forward(cfg, layout, params, batch, dropout)?;
    let g = backward(cfg, layout, params, batch, &f);
    Ok((f, g))
}
