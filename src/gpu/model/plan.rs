//! Where the models of an engine live in its arenas, and the problem list of
//! every site for the models taking part in a call (a training step, an
//! evaluation batch): the formulas of every launch's params in one place. The
//! engine's schedule (schedule.rs) and the tuner (src/gpu/tune.rs, a plan of one
//! model) build their launches from these.
//!
//! Arenas (one buffer per role; docs/group-notes.md):
//! - parameters, gradients, Adam m and v: model k's flat store at `w_base`;
//! - batch inputs (labels, then one block per modality) and lengths: shared by
//!   every model (the models of an engine train on the same batches);
//! - GRU tensors (xp, cache, gi, gh, carry; GRU output, its gradient, the dense
//!   input): problem p = 2 * branch + direction, numbered over the branches
//!   ((model, modality) pairs) TAKING PART in the call, in model order, each block
//!   in the batch's (B, U) layout as the GRU kernels index them;
//! - per branch (B_max, U_max, D) blocks of feat and dfeat; per model (B_max,
//!   U_max, rw) blocks of R and dR, (B_max, U_max, 9) of probabilities and logit
//!   gradients, 2 row losses and a 4-float loss slot; per (model, attention pair)
//!   blocks of the saved attention tensors.
//!
//! Offsets are the only thing that differs from a model's engine alone, so every
//! model computes bit for bit what it computes alone.

use crate::config::{AdamConfig, Block, Modality, ModelConfig};
use crate::cpu::dropout::stream;
use crate::params::Layout;

use super::super::adam::AdamProblem;
use super::super::attention::{AttentionParams, AttentionProblem};
use super::super::dropout::DropoutParams;
use super::super::gather::{GatherParams, GpuDataset, LABEL_WIDTH};
use super::super::gru::{gru_problems, GruError, GruParams, GruProblem};
use super::super::heads::{HeadsParams, HeadsProblem, CLASSES, LOSS_LEN};
use super::super::linear::{LinearParams, LinearProblem};

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
    /// Each modality's block in the shared batch inputs (None: no model uses it).
    pub x_off: [Option<usize>; 3],
    pub inputs_len: usize,
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
    /// Place `models` for batches of up to (b_max, u_max). They must share H, D
    /// and dropout, and list their common attention pairs in one order (each
    /// model's dfeat gradients then accumulate in its own order); what differs
    /// is returned as the reason they cannot share an engine.
    pub fn new(models: &[(ModelConfig, AdamConfig)], b_max: usize, u_max: usize) -> Result<Arena, String> {
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

    /// The plan of a call in which `part` (model indices, ascending) take part.
    pub fn plan<'a>(&'a self, part: &'a [usize]) -> Plan<'a> {
        let mut pos = vec![Vec::new(); self.models.len()];
        let mut next = 0;
        for &k in part {
            let n = self.models[k].mods.len();
            pos[k] = (next..next + n).collect();
            next += n;
        }
        Plan { arena: self, part, pos, branches: next }
    }
}

/// The models taking part in one call and their GRU problem positions.
pub struct Plan<'a> {
    pub arena: &'a Arena,
    pub part: &'a [usize],
    /// Per model, the position of each branch among the taking-part branches.
    pos: Vec<Vec<usize>>,
    /// Branches taking part.
    pub branches: usize,
}

impl Plan<'_> {
    fn models(&self) -> impl Iterator<Item = &Placed> {
        self.part.iter().map(|&k| &self.arena.models[k])
    }

    /// The input projection of modality md, both directions: x W_ih^T + b_ih into
    /// xp problem 2 pos + dir.
    pub fn projection(&self, md: Modality, s: Shape) -> (LinearParams, Vec<LinearProblem>) {
        let a = self.arena;
        let (h3, bu) = (3 * a.h, s.b * s.u);
        let mut list = Vec::new();
        let mut k_in = 0;
        for m in self.models() {
            let Some(mi) = m.has(md) else { continue };
            k_in = m.cfg.dim(md);
            for (dir, sfx) in ["", "_reverse"].into_iter().enumerate() {
                let w = m.off(&format!("{}.gru.weight_ih_l0{sfx}", md.name()));
                let b = m.off(&format!("{}.gru.bias_ih_l0{sfx}", md.name()));
                let p = 2 * self.pos[m.slot][mi] + dir;
                list.push(LinearProblem::new(w, b, a.x_off[md.index()].unwrap_or(0), p * bu * h3));
            }
        }
        (LinearParams::new(s.b, s.u, k_in, h3, false), list)
    }

    /// The recurrence of every branch taking part.
    pub fn gru(&self, s: Shape) -> Result<(GruParams, Vec<GruProblem>), GruError> {
        let mut list = Vec::new();
        for m in self.models() {
            list.extend(gru_problems(&m.layout, &m.mods, m.w_base)?);
        }
        Ok((GruParams::new(s.b, s.u, self.arena.h, list.len())?, list))
    }

    /// GRU-site dropout: gru output (branches, B, U, 2H) -> dense input, one
    /// segment (and stream) per branch.
    pub fn drop_gru(&self, b: &Batch) -> (DropoutParams, Vec<u32>) {
        let n = b.shape.b * b.shape.u * 2 * self.arena.h;
        let streams = self.models().flat_map(|m| m.mods.iter().map(|md| stream(md.index(), 0))).collect();
        (DropoutParams::new(n, b.seed, b.p_drop), streams)
    }

    /// The dense layer of modality md of every model with it: problems reading the
    /// branch's dense-input block (x), its feat / dfeat block (y).
    fn dense(&self, md: Modality, s: Shape, site: usize, fwd: bool) -> Vec<LinearProblem> {
        let a = self.arena;
        let h2 = 2 * a.h;
        let mut list = Vec::new();
        for m in self.models() {
            let Some(mi) = m.has(md) else { continue };
            let n = md.name();
            let (w, b) = (m.off(&format!("{n}.dense.weight")), m.off(&format!("{n}.dense.bias")));
            let x = self.pos[m.slot][mi] * s.b * s.u * h2;
            let p = LinearProblem::new(w, b, x, a.feat(m.branch[mi])).stream(stream(md.index(), site));
            list.push(match m.plain(mi) {
                Some(col) if fwd => p.repr(m.rw, m.r_base + col),
                _ => p,
            });
        }
        list
    }

    /// feat = dense-site dropout(relu(dense)), also written into R's plain block.
    pub fn dense_forward(&self, md: Modality, b: &Batch) -> (LinearParams, Vec<LinearProblem>) {
        let p = LinearParams::new(b.shape.b, b.shape.u, 2 * self.arena.h, self.arena.d, true).dropout(b.seed, b.p_drop);
        (p, self.dense(md, b.shape, 1, true))
    }

    /// g = dfeat * scale where feat > 0; d(gru out) block = GRU-site mask * (g W).
    pub fn dense_backward(&self, md: Modality, b: &Batch) -> (LinearParams, Vec<LinearProblem>) {
        let p = LinearParams::new(b.shape.b, b.shape.u, 2 * self.arena.h, self.arena.d, true).dropout(b.seed, b.p_drop);
        (p, self.dense(md, b.shape, 0, false))
    }

    /// The CIM unit (or self-attention) (x, y) of every model computing it.
    pub fn attention(&self, pair: (Modality, Modality), s: Shape) -> (AttentionParams, Vec<AttentionProblem>) {
        let a = self.arena;
        let (x, y) = pair;
        let bu = a.bu();
        let mut list = Vec::new();
        for m in self.models() {
            let Some(&(_, slot)) = m.pairs.iter().find(|(p, _)| *p == pair) else { continue };
            let (Some(xi), Some(yi)) = (m.has(x), m.has(y)) else { continue };
            let r_xy = m.col(Block::Att(x, y)).unwrap_or(0);
            let r_yx = if x == y { 0 } else { m.col(Block::Att(y, x)).unwrap_or(0) };
            let (fx, fy) = (a.feat(m.branch[xi]), a.feat(m.branch[yi]));
            let q = AttentionProblem::new(m.rw, r_xy, (x != y).then_some(r_yx)).feat(fx, fy, fx, fy).saved(
                slot * bu * a.u_max,
                slot * 2 * bu * a.u_max,
                slot * 2 * bu * a.d,
                slot * 2 * bu * a.u_max,
            );
            list.push(AttentionProblem { r_off: c32(m.r_base), ..q.batch(s.u, 0) });
        }
        (AttentionParams::new(s.b, s.u, a.d, x != y), list)
    }

    /// Both heads and the loss of every model taking part.
    pub fn heads(&self, s: Shape) -> (HeadsParams, Vec<HeadsProblem>) {
        let a = self.arena;
        let bu = a.bu();
        let mut list = Vec::new();
        for m in self.models() {
            let slots: Vec<(Option<usize>, usize)> =
                m.branch.iter().enumerate().map(|(mi, &g)| (m.plain(mi), a.feat(g))).collect();
            let q = HeadsProblem::new(&m.cfg, &m.layout, m.w_base)
                .r(m.r_base)
                .outputs(m.slot * bu * CLASSES, m.slot * bu * CLASSES, m.slot * bu * 2, m.slot * LOSS_LEN)
                .with_plain(&slots)
                .batch(s.u, 0)
                .labels(0);
            list.push(q);
        }
        (HeadsParams::new(s.b, s.u, a.d, true), list)
    }

    /// Adam over every model taking part, each at its own step count.
    pub fn adam(&self, steps: &[u32]) -> Vec<AdamProblem> {
        self.models().map(|m| AdamProblem::new(m.w_base, m.layout.len, steps[m.slot], &m.adam)).collect()
    }

    /// The batch's gather: labels (writing the lengths) into the shared inputs at
    /// 0, then each modality any model uses into its block.
    pub fn gather(&self, data: &GpuDataset, s: Shape) -> GatherParams {
        let a = self.arena;
        let mut p = GatherParams::new(s.b, s.u, true).tensor(LABEL_WIDTH, data.labels_off, 0);
        for &md in &a.mods {
            let dim = a.models.iter().map(|m| m.cfg.dim(md)).max().unwrap_or(0);
            let src = data.features_off[md.index()].unwrap_or(0);
            p = p.tensor(dim, src, a.x_off[md.index()].unwrap_or(0));
        }
        p
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
