//! Attention heatmaps like the paper's Figure 3: for each attention pair of a
//! model, the two u x u weight matrices N of att(X, Y) and att(Y, X) side by
//! side (self-attention: one matrix per modality), rows = the utterance that
//! attends, columns = the utterance attended to, 1-based labels. Written as
//! PNG with the `png` crate; text drawn with the public-domain 8x8 font of
//! `font8x8`.

use std::path::Path;

use crate::batch::Batch;
use crate::config::Block;
use crate::cpu::model::{forward, ModelError};
use crate::params::ParamStore;

/// One attention matrix of one video.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMap {
    /// e.g. "att(T,V)"
    pub title: String,
    pub u: usize,
    /// (u, u) softmax weights: row i attends to column j; rows sum to 1.
    pub weights: Vec<f64>,
}

/// The attention matrices of a one-video batch, in representation order
/// (computed with the CPU reference in evaluation mode).
pub fn attention_maps(params: &ParamStore, video: &Batch) -> Result<Vec<AttentionMap>, ModelError> {
    assert_eq!(video.b, 1, "one video at a time");
    let p = params.to_f64();
    let f = forward(&params.config, &params.layout, &p, video, None)?;
    let u = video.u;
    let mut maps = Vec::new();
    for (k, block) in params.config.representation().iter().enumerate() {
        if let (Block::Att(x, y), Some(cache)) = (block, &f.attention[k]) {
            maps.push(AttentionMap {
                title: format!("att({},{})", x.letter(), y.letter()),
                u,
                weights: cache.n.clone(),
            });
        }
    }
    Ok(maps)
}

const MARGIN: usize = 40;
const GAP: usize = 48;
const TITLE: usize = 36;
const BG: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [20, 20, 20];

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas { w, h, px: BG.iter().copied().cycle().take(w * h * 3).collect() }
    }
    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }
    /// ASCII text at (x, y), 8x8 glyphs.
    fn text(&mut self, x: usize, y: usize, s: &str) {
        for (n, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[(ch as usize).min(127)];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.set(x + n * 8 + col, y + row, INK);
                    }
                }
            }
        }
    }
}

/// A perceptually ordered dark-to-light colour ramp (viridis-like stops).
fn colour(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    std::array::from_fn(|c| (STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f).round() as u8)
}

/// Lay the maps out two per row (a CIM pair side by side) and draw them.
/// Colours are scaled to each panel's largest weight, printed in its title.
pub fn render(maps: &[AttentionMap], caption: &str) -> (usize, usize, Vec<u8>) {
    let u = maps.first().map_or(1, |m| m.u);
    let cell = (360 / u.max(1)).clamp(4, 32);
    let side = cell * u;
    let per_row = 2;
    let rows = maps.len().div_ceil(per_row);
    let w = MARGIN + per_row * (side + GAP) + 8;
    let h = TITLE + rows * (side + TITLE + GAP) + 8;
    let mut cv = Canvas::new(w, h);
    cv.text(8, 4, caption);
    cv.text(8, 16, "rows: utterance attending; columns: utterance attended to");
    let tick = u.div_ceil(10).max(1);
    for (k, m) in maps.iter().enumerate() {
        let (col, row) = (k % per_row, k / per_row);
        let x0 = MARGIN + col * (side + GAP);
        let y0 = TITLE + row * (side + TITLE + GAP) + TITLE;
        let max = m.weights.iter().cloned().fold(0.0, f64::max).max(1e-12);
        cv.text(x0, y0 - 14, &format!("{}  max {:.2}", m.title, max));
        for i in 0..u {
            for j in 0..u {
                cv.rect(x0 + j * cell, y0 + i * cell, cell, cell, colour(m.weights[i * u + j] / max));
            }
        }
        for t in (0..u).step_by(tick) {
            let label = (t + 1).to_string();
            // Column labels below the panel, row labels to its left.
            cv.text(x0 + t * cell + cell / 2 - 4 * label.len().min(cell / 4 + 1), y0 + side + 4, &label);
            cv.text(x0.saturating_sub(8 * label.len() + 4), y0 + t * cell + cell / 2 - 4, &label);
        }
    }
    (w, h, cv.px)
}

/// Write an RGB image as PNG (atomically).
pub fn write_png(path: &Path, w: usize, h: usize, rgb: &[u8]) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(rgb).map_err(std::io::Error::other)?;
    }
    crate::params::write_atomic(path, &bytes)
}
