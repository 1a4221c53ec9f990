//! Where the models of an engine live in its arenas, and the problem list of
//! every site for the models taking part in a call (a training step, an
//! evaluation batch): the formulas of every launch's params in one place. The
//! engine's schedule (schedule.rs) and the tuner (src/gpu/tune.rs, a plan of one
//! model) build their launches from these.
//!
//! Arenas (one buffer per role; docs/group-notes.md):
//! - parameters, gradients, Adam m and v: model k's flat store at `w_base`;
//! - batch inputs (labels, then one block per modality), video indices and
//!   lengths: one slot per batch of a step. The models of one seed train on the
//!   same batches and share a slot; models of other seeds (other batch orders)
//!   take other slots of the same step, each problem of a launch pointing at its
//!   batch (its u, its lengths, its inputs, its dropout seed);
//! - GRU tensors (xp, cache, gi, gh, carry; GRU output, its gradient, the dense
//!   input): problem p = 2 * branch + direction, numbered over the branches
//!   ((model, modality) pairs) TAKING PART in the call, in model order, each block
//!   at p * B * U (U the step's largest u), its rows in its own batch's (B, u);
//! - per branch (B_max, U_max, D) blocks of feat and dfeat; per model (B_max,
//!   U_max, rw) blocks of R and dR, (B_max, U_max, 9) of probabilities and logit
//!   gradients, 2 row losses and a 4-float loss slot; per (model, attention pair)
//!   blocks of the saved attention tensors.
//!
//! Offsets (and the block stride U) are the only things that differ from a
//! model's engine alone; every kernel computes a problem from its own batch's
//! (B, u) rows only, so every model computes bit for bit what it computes alone.

use crate::config::{AdamConfig, Block, Modality, ModelConfig};
use crate::cpu::dropout::stream;
use crate::params::Layout;

use super::super::adam::AdamProblem;
use super::super::attention::{AttentionParams, AttentionProblem};
use super::super::dropout::{DropoutParams, DropoutSegment};
use super::super::gather::{GatherParams, GatherProblem, GpuDataset, LABEL_WIDTH};
use super::super::gru::{gru_problems, GruError, GruParams, GruProblem};
use super::super::heads::{HeadsParams, HeadsProblem, CLASSES, LOSS_LEN};
use super::super::linear::{LinearParams, LinearProblem};

/// A batch's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub b: usize,
    pub u: usize,
}

/// One batch of a step: the models that take part with it (ascending), its
/// padded length (its longest video) and its dropout seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepBatch {
    pub models: Vec<usize>,
    pub u: usize,
    pub seed: u32,
}

/// What every launch of a call (a training step, an evaluation batch) is
/// re-parameterised from: its batches, B videos each, and the dropout.
#[derive(Debug, Clone)]
pub struct Step {
    pub b: usize,
    /// Dropout probability (0 in evaluation).
    pub p_drop: f64,
    pub batches: Vec<StepBatch>,
}

impl Step {
    /// One batch of shape `s` for the models `models`.
    pub fn one(models: &[usize], s: Shape, seed: u32, p_drop: f64) -> Step {
        Step { b: s.b, p_drop, batches: vec![StepBatch { models: models.to_vec(), u: s.u, seed }] }
    }

    /// The largest u of the batches: the launches' U (grid size, GRU block stride).
    pub fn u(&self) -> usize {
        self.batches.iter().map(|b| b.u).max().unwrap_or(1).max(1)
    }

    /// (B, U): the videos per batch and the largest u.
    pub fn shape(&self) -> Shape {
        Shape { b: self.b, u: self.u() }
    }
}

/// One model of an engine and its blocks in the arenas.
#[derive(Debug, Clone)]
pub struct Placed {
    pub cfg: ModelConfig,
    pub layout: Layout,
    pub adam: AdamConfig,
    /// Its modalities, in the order of its branches.
    pub mods: Vec<Modality>,
    /// Its flat store's offset in the parameter arenas.
    pub w_base: usize,
    /// Global branch index of each of its modalities (feat / dfeat blocks).
    pub branch: Vec<usize>,
    /// Its R / dR block's offset and row width.
    pub r_base: usize,
    pub rw: usize,
    /// Its attention pairs (x, y) and each one's global slot (saved tensors).
    pub pairs: Vec<((Modality, Modality), usize)>,
    /// Its model index (probabilities, row losses, loss slot).
    pub slot: usize,
}

impl Placed {
    fn off(&self, name: &str) -> usize {
        self.w_base + self.layout.get(name).map_or(0, |s| s.offset)
    }

    fn col(&self, b: Block) -> Option<usize> {
        self.cfg.representation().iter().position(|&x| x == b).map(|k| k * self.cfg.dense)
    }

    /// Column of modality mi's plain block in R, if the variant has one.
    pub fn plain(&self, mi: usize) -> Option<usize> {
        self.col(Block::Plain(self.mods[mi]))
    }

    fn has(&self, md: Modality) -> Option<usize> {
        self.mods.iter().position(|&m| m == md)
    }
}

/// The arenas' shape: sizes every buffer is allocated with.
#[derive(Debug, Clone)]
pub struct Arena {
    pub models: Vec<Placed>,
    pub b_max: usize,
    pub u_max: usize,
    pub h: usize,
    pub d: usize,
    pub dropout: f64,
    /// Each modality's block in a batch slot's inputs (None: no model uses it).
    pub x_off: [Option<usize>; 3],
    /// One batch slot's inputs (labels at 0, then the modalities' blocks).
    pub inputs_len: usize,
    /// Batch slots: the most batches one step takes.
    pub batches: usize,
    pub params_len: usize,
    pub branches: usize,
    pub r_len: usize,
    pub pairs: usize,
    /// Every (x, y) attention pair some model computes, in first-seen order.
    pub pair_kinds: Vec<(Modality, Modality)>,
    /// Every modality some model uses, in T, A, V order.
    pub mods: Vec<Modality>,
}

impl Arena {
    /// Place `models` for steps of up to `batches` batches of up to (b_max, u_max)
    /// each. They must share H, D
    /// and dropout, and list their common attention pairs in one order (each
    /// model's dfeat gradients then accumulate in its own order); what differs
    /// is returned as the reason they cannot share an engine.
    pub fn new(
        models: &[(ModelConfig, AdamConfig)],
        b_max: usize,
        u_max: usize,
        batches: usize,
    ) -> Result<Arena, String> {
        let bu = b_max * u_max;
        let (h, d, dropout) = models.first().map_or((1, 1, 0.0), |(c, _)| (c.hidden, c.dense, c.dropout));
        if let Some((c, _)) = models.iter().find(|(c, _)| (c.hidden, c.dense, c.dropout) != (h, d, dropout)) {
            return Err(format!(
                "models with H {h}, D {d}, dropout {dropout} and H {}, D {}, dropout {} cannot share an engine",
                c.hidden, c.dense, c.dropout
            ));
        }
        let pair_kinds = merge_pairs(models.iter().map(|(c, _)| c.attention_pairs()))?;
        let mods: Vec<Modality> =
            Modality::ALL.into_iter().filter(|&m| models.iter().any(|(c, _)| c.dim(m) > 0)).collect();
        let mut x_off = [None; 3];
        let mut inputs_len = (bu * LABEL_WIDTH).next_multiple_of(4);
        for &md in &mods {
            let dim = models.iter().map(|(c, _)| c.dim(md)).max().unwrap_or(0);
            x_off[md.index()] = Some(inputs_len);
            inputs_len += (bu * dim).next_multiple_of(4);
        }
        let (mut params_len, mut branches, mut r_len, mut pairs) = (0, 0, 0, 0);
        let mut placed = Vec::with_capacity(models.len());
        for (slot, (cfg, adam)) in models.iter().enumerate() {
            let layout = Layout::new(cfg);
            let ms = cfg.modalities.modalities();
            let rw = cfg.repr_width();
            let mut ps = Vec::new();
            for pair in cfg.attention_pairs() {
                ps.push((pair, pairs));
                pairs += 1;
            }
            let n = ms.len();
            placed.push(Placed {
                cfg: cfg.clone(),
                adam: *adam,
                w_base: params_len,
                branch: (branches..branches + n).collect(),
                r_base: r_len,
                rw,
                pairs: ps,
                slot,
                mods: ms,
                layout: layout.clone(),
            });
            // Each store 4-aligned, so that every model's weights keep the
            // alignment the vec4 members rely on.
            params_len += layout.len.next_multiple_of(4);
            branches += n;
            r_len += bu * rw;
        }
        Ok(Arena {
            models: placed,
            b_max,
            u_max,
            h,
            d,
            dropout,
            x_off,
            inputs_len,
            batches: batches.max(1),
            params_len,
            branches,
            r_len,
            pairs,
            pair_kinds,
            mods,
        })
    }

    pub fn bu(&self) -> usize {
        self.b_max * self.u_max
    }

    /// Element offset of branch g's feat / dfeat block.
    pub fn feat(&self, g: usize) -> usize {
        g * self.bu() * self.d
    }

    /// The plan of a call: the models of `step`'s batches take part.
    pub fn plan<'a>(&'a self, step: &'a Step) -> Result<Plan<'a>, String> {
        let k = self.models.len();
        let mut batch_of = vec![None; k];
        for (c, sb) in step.batches.iter().enumerate() {
            if sb.u == 0 || sb.u > self.u_max {
                return Err(format!("a batch of length {} in an engine built for 1..={}", sb.u, self.u_max));
            }
            for &m in &sb.models {
                match batch_of.get_mut(m) {
                    Some(slot @ None) => *slot = Some(c),
                    Some(Some(_)) => return Err(format!("model {m} is in two batches of one step")),
                    None => return Err(format!("this engine has no model {m}")),
                }
            }
        }
        if step.batches.len() > self.batches || step.b == 0 || step.b > self.b_max {
            return Err(format!(
                "a step of {} batches of {} videos in an engine built for 1..={} batches of 1..={} videos",
                step.batches.len(),
                step.b,
                self.batches,
                self.b_max
            ));
        }
        let part: Vec<usize> = (0..k).filter(|&m| batch_of[m].is_some()).collect();
        if part.is_empty() {
            return Err("a step with no model".to_string());
        }
        let mut pos = vec![Vec::new(); k];
        let mut next = 0;
        for &m in &part {
            let n = self.models[m].mods.len();
            pos[m] = (next..next + n).collect();
            next += n;
        }
        Ok(Plan { arena: self, step, part, batch_of, pos, branches: next })
    }
}

/// The models taking part in one call, their batches and GRU problem positions.
pub struct Plan<'a> {
    pub arena: &'a Arena,
    pub step: &'a Step,
    /// The models taking part, ascending.
    pub part: Vec<usize>,
    /// Per model, its batch in the step (None: not taking part).
    batch_of: Vec<Option<usize>>,
    /// Per model, the position of each branch among the taking-part branches.
    pos: Vec<Vec<usize>>,
    /// Branches taking part.
    pub branches: usize,
}

/// Where a batch sits in the step: its u, its lengths and inputs (its slot's
/// offsets) and its dropout seed.
#[derive(Debug, Clone, Copy)]
struct BatchSlot {
    u: usize,
    len_off: usize,
    inputs: usize,
    seed: u32,
}

impl Plan<'_> {
    fn models(&self) -> impl Iterator<Item = &Placed> {
        self.part.iter().map(|&k| &self.arena.models[k])
    }

    fn slot_of_batch(&self, c: usize) -> BatchSlot {
        let sb = &self.step.batches[c];
        BatchSlot { u: sb.u, len_off: c * self.arena.b_max, inputs: c * self.arena.inputs_len, seed: sb.seed }
    }

    fn slot(&self, m: &Placed) -> BatchSlot {
        self.slot_of_batch(self.batch_of[m.slot].unwrap_or(0))
    }

    /// (B, U): the videos per batch and the step's largest u.
    pub fn shape(&self) -> Shape {
        self.step.shape()
    }

    /// The input projection of modality md, both directions: x W_ih^T + b_ih into
    /// xp problem 2 pos + dir.
    pub fn projection(&self, md: Modality) -> (LinearParams, Vec<LinearProblem>) {
        let a = self.arena;
        let s = self.shape();
        let (h3, bu) = (3 * a.h, s.b * s.u);
        let mut list = Vec::new();
        let mut k_in = 0;
        for m in self.models() {
            let Some(mi) = m.has(md) else { continue };
            let at = self.slot(m);
            k_in = m.cfg.dim(md);
            for (dir, sfx) in ["", "_reverse"].into_iter().enumerate() {
                let w = m.off(&format!("{}.gru.weight_ih_l0{sfx}", md.name()));
                let b = m.off(&format!("{}.gru.bias_ih_l0{sfx}", md.name()));
                let p = 2 * self.pos[m.slot][mi] + dir;
                let x = at.inputs + a.x_off[md.index()].unwrap_or(0);
                list.push(LinearProblem::new(w, b, x, p * bu * h3).batch(at.u, at.len_off));
            }
        }
        (LinearParams::new(s.b, s.u, k_in, h3, false), list)
    }

    /// The recurrence of every branch taking part.
    pub fn gru(&self) -> Result<(GruParams, Vec<GruProblem>), GruError> {
        let s = self.shape();
        let mut list = Vec::new();
        for m in self.models() {
            let at = self.slot(m);
            list.extend(gru_problems(&m.layout, &m.mods, m.w_base)?.into_iter().map(|q| q.batch(at.u, at.len_off)));
        }
        Ok((GruParams::new(s.b, s.u, self.arena.h, list.len())?, list))
    }

    /// GRU-site dropout: gru output (branches, B, U, 2H) -> dense input, one
    /// segment (and stream) per branch, each its batch's (B, u, 2H) elements.
    pub fn drop_gru(&self) -> (DropoutParams, Vec<DropoutSegment>) {
        let (s, h2) = (self.shape(), 2 * self.arena.h);
        let mut segments = Vec::new();
        for m in self.models() {
            let at = self.slot(m);
            for md in &m.mods {
                let n = s.b * at.u * h2;
                segments.push(DropoutSegment::new(stream(md.index(), 0), at.seed, n));
            }
        }
        (DropoutParams::new(s.b * s.u * h2, self.step.p_drop), segments)
    }

    /// The dense layer of modality md of every model with it: problems reading the
    /// branch's dense-input block (x), its feat / dfeat block (y).
    fn dense(&self, md: Modality, site: usize, fwd: bool) -> (LinearParams, Vec<LinearProblem>) {
        let a = self.arena;
        let s = self.shape();
        let h2 = 2 * a.h;
        let mut list = Vec::new();
        for m in self.models() {
            let Some(mi) = m.has(md) else { continue };
            let at = self.slot(m);
            let n = md.name();
            let (w, b) = (m.off(&format!("{n}.dense.weight")), m.off(&format!("{n}.dense.bias")));
            let x = self.pos[m.slot][mi] * s.b * s.u * h2;
            let p = LinearProblem::new(w, b, x, a.feat(m.branch[mi]))
                .stream(stream(md.index(), site))
                .batch(at.u, at.len_off)
                .seed(at.seed);
            list.push(match m.plain(mi) {
                Some(col) if fwd => p.repr(m.rw, m.r_base + col),
                _ => p,
            });
        }
        (LinearParams::new(s.b, s.u, h2, a.d, true).dropout(self.step.p_drop), list)
    }

    /// feat = dense-site dropout(relu(dense)), also written into R's plain block.
    pub fn dense_forward(&self, md: Modality) -> (LinearParams, Vec<LinearProblem>) {
        self.dense(md, 1, true)
    }

    /// g = dfeat * scale where feat > 0; d(gru out) block = GRU-site mask * (g W).
    pub fn dense_backward(&self, md: Modality) -> (LinearParams, Vec<LinearProblem>) {
        self.dense(md, 0, false)
    }

    /// The CIM unit (or self-attention) (x, y) of every model computing it.
    pub fn attention(&self, pair: (Modality, Modality)) -> (AttentionParams, Vec<AttentionProblem>) {
        let a = self.arena;
        let s = self.shape();
        let (x, y) = pair;
        let bu = a.bu();
        let mut list = Vec::new();
        for m in self.models() {
            let Some(&(_, slot)) = m.pairs.iter().find(|(p, _)| *p == pair) else { continue };
            let (Some(xi), Some(yi)) = (m.has(x), m.has(y)) else { continue };
            let at = self.slot(m);
            let r_xy = m.col(Block::Att(x, y)).unwrap_or(0);
            let r_yx = if x == y { 0 } else { m.col(Block::Att(y, x)).unwrap_or(0) };
            let (fx, fy) = (a.feat(m.branch[xi]), a.feat(m.branch[yi]));
            let q = AttentionProblem::new(m.rw, r_xy, (x != y).then_some(r_yx))
                .feat(fx, fy, fx, fy)
                .saved(slot * bu * a.u_max, slot * 2 * bu * a.u_max, slot * 2 * bu * a.d, slot * 2 * bu * a.u_max)
                .batch(at.u, at.len_off);
            list.push(AttentionProblem { r_off: c32(m.r_base), ..q });
        }
        (AttentionParams::new(s.b, s.u, a.d, x != y), list)
    }

    /// Both heads and the loss of every model taking part.
    pub fn heads(&self) -> (HeadsParams, Vec<HeadsProblem>) {
        let a = self.arena;
        let s = self.shape();
        let bu = a.bu();
        let mut list = Vec::new();
        for m in self.models() {
            let at = self.slot(m);
            let slots: Vec<(Option<usize>, usize)> =
                m.branch.iter().enumerate().map(|(mi, &g)| (m.plain(mi), a.feat(g))).collect();
            let q = HeadsProblem::new(&m.cfg, &m.layout, m.w_base)
                .r(m.r_base)
                .outputs(m.slot * bu * CLASSES, m.slot * bu * CLASSES, m.slot * bu * 2, m.slot * LOSS_LEN)
                .with_plain(&slots)
                .batch(at.u, at.len_off)
                .labels(at.inputs);
            list.push(q);
        }
        (HeadsParams::new(s.b, s.u, a.d, true), list)
    }

    /// Adam over every model taking part, each at its own step count.
    pub fn adam(&self, steps: &[u32]) -> Vec<AdamProblem> {
        self.models().map(|m| AdamProblem::new(m.w_base, m.layout.len, steps[m.slot], &m.adam)).collect()
    }

    /// Every batch's gather: its labels (writing its lengths) into its slot's
    /// inputs at 0, then each modality any model uses into its block.
    pub fn gather(&self, data: &GpuDataset) -> (GatherParams, Vec<GatherProblem>) {
        let a = self.arena;
        let mut list = Vec::new();
        for c in 0..self.step.batches.len() {
            let at = self.slot_of_batch(c);
            let labels = GatherProblem::new(LABEL_WIDTH, data.labels_off, at.inputs, at.u, at.len_off);
            list.push(labels.lengths(at.len_off));
            for &md in &a.mods {
                let dim = a.models.iter().map(|m| m.cfg.dim(md)).max().unwrap_or(0);
                let src = data.features_off[md.index()].unwrap_or(0);
                let dst = at.inputs + a.x_off[md.index()].unwrap_or(0);
                list.push(GatherProblem::new(dim, src, dst, at.u, at.len_off));
            }
        }
        (GatherParams::new(self.step.b), list)
    }

    /// Each model's (B, u, 9) probabilities into its block of a split's
    /// (models, N_utt, 9) predictions.
    pub fn scatter(&self, n_utt: usize) -> (GatherParams, Vec<GatherProblem>) {
        let bu = self.arena.bu();
        let list = self
            .models()
            .map(|m| {
                let at = self.slot(m);
                GatherProblem::new(CLASSES, m.slot * bu * CLASSES, m.slot * n_utt * CLASSES, at.u, at.len_off)
            })
            .collect();
        (GatherParams::new(self.step.b), list)
    }
}

/// One order of the attention pairs of every model in which each model's pairs
/// keep their own order (the sites run in it), or why there is none: the
/// models' lists as chains of a graph, sorted topologically (Kahn's algorithm;
/// among pairs free at once, the first seen goes first).
fn merge_pairs(lists: impl Iterator<Item = Vec<(Modality, Modality)>>) -> Result<Vec<(Modality, Modality)>, String> {
    let lists: Vec<Vec<(Modality, Modality)>> = lists.collect();
    let mut nodes: Vec<(Modality, Modality)> = Vec::new();
    for p in lists.iter().flatten() {
        if !nodes.contains(p) {
            nodes.push(*p);
        }
    }
    let at = |p: &(Modality, Modality)| nodes.iter().position(|q| q == p).unwrap_or(0);
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for list in &lists {
        for w in list.windows(2) {
            let e = (at(&w[0]), at(&w[1]));
            if !edges.contains(&e) {
                edges.push(e);
            }
        }
    }
    let mut placed = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    while order.len() < nodes.len() {
        let free = (0..nodes.len()).find(|&i| !placed[i] && !edges.iter().any(|&(a, b)| b == i && !placed[a]));
        let Some(i) = free else {
            return Err("two models list their attention pairs in different orders".to_string());
        };
        placed[i] = true;
        order.push(nodes[i]);
    }
    Ok(order)
}

fn c32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::merge_pairs;
    use crate::config::Modality::{Audio as A, Text as T, Video as V};

    #[test]
    fn attention_pairs_merge_in_an_order_every_model_keeps() {
        let lists = vec![vec![(T, V)], vec![(A, V)], vec![(T, A), (A, V), (T, V)], vec![(T, T), (A, A)]];
        let order = merge_pairs(lists.clone().into_iter()).unwrap();
        assert_eq!(order.len(), 5);
        for list in &lists {
            let pos: Vec<usize> = list.iter().map(|p| order.iter().position(|q| q == p).unwrap()).collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "{list:?} out of order in {order:?}");
        }
        assert!(merge_pairs(vec![vec![(T, A), (T, V)], vec![(T, V), (T, A)]].into_iter()).is_err());
    }
}
