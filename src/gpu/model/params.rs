//! The formulas of every launch's params for a batch shape, in one place: the
//! engine's schedule (schedule.rs) and the tuner (src/gpu/tune.rs) both build
//! their launches from these.

use crate::config::{Modality, ModelConfig};
use crate::cpu::dropout::stream;
use crate::params::Layout;

use super::super::attention::{AttentionParams, AttentionProblem};
use super::super::dropout::DropoutParams;
use super::super::gather::{GatherParams, GpuDataset, LABEL_WIDTH};
use super::super::gru::{GruError, GruParams};
use super::super::heads::{HeadsParams, HeadsProblem};
use super::super::linear::LinearParams;

/// A batch's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub b: usize,
    pub u: usize,
}

/// What every launch of a step is re-parameterised from: the batch shape and its dropout.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub shape: Shape,
    /// The step's dropout seed.
    pub seed: u32,
    /// Dropout probability (0 in evaluation).
    pub p_drop: f64,
}

/// Builds each launch's params for a batch shape (one place for the formulas).
pub struct ParamsFor {
    pub cfg: ModelConfig,
    pub layout: Layout,
    pub mods: Vec<Modality>,
    /// Each modality's features in the batch inputs (labels (B, U, 7) at 0, then
    /// one 4-aligned block per modality, so that the vec4 kernels can read them).
    pub x_off: Vec<usize>,
    /// Elements of the batch inputs buffer.
    pub inputs_len: usize,
}

impl ParamsFor {
    /// The formulas for `cfg` with batch inputs sized for B*U = `bu` rows.
    pub fn new(cfg: &ModelConfig, bu: usize) -> ParamsFor {
        let mods = cfg.modalities.modalities();
        let mut x_off = Vec::with_capacity(mods.len());
        let mut inputs_len = (bu * LABEL_WIDTH).next_multiple_of(4);
        for &md in &mods {
            x_off.push(inputs_len);
            inputs_len += (bu * cfg.dim(md)).next_multiple_of(4);
        }
        ParamsFor { cfg: cfg.clone(), layout: Layout::new(cfg), mods, x_off, inputs_len }
    }

    fn off(&self, name: &str) -> usize {
        self.layout.slice(name).offset
    }

    /// xp blocks of problems 2 mi + dir, both directions in one launch (z = dir):
    /// x W_ih^T + b_ih.
    pub fn projection(&self, mi: usize, s: Shape) -> LinearParams {
        let md = self.mods[mi];
        let h3 = 3 * self.cfg.hidden;
        let mut p = LinearParams::new(s.b, s.u, self.cfg.dim(md), h3, false, 0, 0);
        for (dir, sfx) in ["", "_reverse"].into_iter().enumerate() {
            let w = self.off(&format!("{}.gru.weight_ih_l0{sfx}", md.name()));
            let b = self.off(&format!("{}.gru.bias_ih_l0{sfx}", md.name()));
            p = p.problem(dir, w, b, self.x_off[mi], (2 * mi + dir) * s.b * s.u * h3);
        }
        p
    }

    pub fn gru(&self, s: Shape) -> Result<GruParams, GruError> {
        GruParams::new(&self.layout, &self.mods, s.b, s.u, self.cfg.hidden)
    }

    /// GRU-site dropout of every modality: gru output (M, B, U, 2H) -> dense input, same layout.
    pub fn drop_gru(&self, b: &Batch) -> DropoutParams {
        let n = b.shape.b * b.shape.u * 2 * self.cfg.hidden;
        let streams: Vec<u32> = self.mods.iter().map(|m| stream(m.index(), 0)).collect();
        DropoutParams::new(n, b.seed, 0, b.p_drop).segments(&streams)
    }

    /// The dense layer of modality mi reading its block of the dense input.
    fn dense(&self, mi: usize, s: Shape) -> LinearParams {
        let n = self.mods[mi].name();
        let (w, b) = (self.off(&format!("{n}.dense.weight")), self.off(&format!("{n}.dense.bias")));
        let h2 = 2 * self.cfg.hidden;
        LinearParams::new(s.b, s.u, h2, self.cfg.dense, true, w, b).problem(
            0,
            w,
            b,
            mi * s.b * s.u * h2,
            self.feat_off(mi, s),
        )
    }

    /// Modality mi's block (B, U, D) in the feat and dfeat arenas ((M, B, U, D), packed
    /// like the dense input).
    pub fn feat_off(&self, mi: usize, s: Shape) -> usize {
        mi * s.b * s.u * self.cfg.dense
    }

    /// The attention launch of the pair of modalities (xi, yi) (xi == yi:
    /// self-attention) with att(X, Y) at column r_xy of R and att(Y, X) at r_yx, and
    /// its one problem: this model's blocks of feat / dfeat, R at 0, the saved
    /// tensors at 0 of the pair's own buffers.
    pub fn attention(
        &self,
        xi: usize,
        yi: usize,
        r_xy: usize,
        r_yx: Option<usize>,
        s: Shape,
    ) -> (AttentionParams, AttentionProblem) {
        let (x, y) = (self.feat_off(xi, s), self.feat_off(yi, s));
        let p = AttentionParams::new(s.b, s.u, self.cfg.dense, xi != yi);
        (p, AttentionProblem::new(self.cfg.repr_width(), r_xy, r_yx).feat(x, y, x, y))
    }

    /// feat = dense-site dropout(relu(dense)), also written into R's plain block.
    pub fn dense_forward(&self, mi: usize, b: &Batch, plain: Option<usize>) -> LinearParams {
        let p = self.dense(mi, b.shape).dropout(b.seed, b.p_drop, [stream(self.mods[mi].index(), 1), 0, 0, 0]);
        match plain {
            Some(off) => p.repr(self.cfg.repr_width(), [off, 0, 0, 0]),
            None => p,
        }
    }

    /// g = dfeat * scale where feat > 0; d(gru out) block = GRU-site mask * (g W).
    pub fn dense_backward(&self, mi: usize, b: &Batch) -> LinearParams {
        self.dense(mi, b.shape).dropout(b.seed, b.p_drop, [stream(self.mods[mi].index(), 0), 0, 0, 0])
    }

    /// The heads launch (losses accumulated into the loss slot).
    pub fn heads(&self, s: Shape) -> HeadsParams {
        HeadsParams::new(s.b, s.u, self.cfg.dense, true)
    }

    /// This model's heads problem: parameters at 0, R, outputs and loss slot at 0,
    /// modality mi's plain block at column plain[mi] of R, its gradient in dfeat.
    pub fn heads_problem(&self, s: Shape, plain: &[Option<usize>]) -> HeadsProblem {
        let slots: Vec<(Option<usize>, usize)> =
            plain.iter().enumerate().map(|(mi, &col)| (col, self.feat_off(mi, s))).collect();
        HeadsProblem::new(&self.cfg, &self.layout, 0).with_plain(&slots)
    }

    /// The batch's gather: labels (tensor 0, writing the lengths) into the batch
    /// inputs at 0, then each modality's features into its block at `x_off`.
    pub fn gather(&self, data: &GpuDataset, s: Shape) -> GatherParams {
        let mut p = GatherParams::new(s.b, s.u, true).tensor(LABEL_WIDTH, data.labels_off, 0);
        for (mi, &md) in self.mods.iter().enumerate() {
            p = p.tensor(self.cfg.dim(md), data.features_off[md.index()].unwrap_or(0), self.x_off[mi]);
        }
        p
    }
}
