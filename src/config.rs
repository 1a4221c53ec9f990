//! Model configuration (MODEL.md "Variants"): which modalities, which attention,
//! which tasks, and the sizes. Serialised as JSON in run directories and as
//! safetensors metadata in weight files.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One input modality. The discriminant is the index used everywhere a
/// per-modality array appears (`[T, A, V]` order, as in `--dims 300,74,35`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Modality {
    Text = 0,
    Audio = 1,
    Video = 2,
}

impl Modality {
    /// All modalities in storage order T, A, V.
    pub const ALL: [Modality; 3] = [Modality::Text, Modality::Audio, Modality::Video];

    pub fn index(self) -> usize {
        self as usize
    }

    /// Letter used in modality-set names ("TAV").
    pub fn letter(self) -> char {
        match self {
            Modality::Text => 'T',
            Modality::Audio => 'A',
            Modality::Video => 'V',
        }
    }

    /// Prefix of this modality's weights and the key of its features in npz files.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Audio => "audio",
            Modality::Video => "video",
        }
    }

    pub fn from_letter(c: char) -> Option<Modality> {
        match c.to_ascii_uppercase() {
            'T' => Some(Modality::Text),
            'A' => Some(Modality::Audio),
            'V' => Some(Modality::Video),
            _ => None,
        }
    }
}

/// The seven modality sets of the paper's Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModalitySet {
    T,
    A,
    V,
    TV,
    TA,
    AV,
    TAV,
}

impl ModalitySet {
    pub const ALL: [ModalitySet; 7] = [
        ModalitySet::T,
        ModalitySet::A,
        ModalitySet::V,
        ModalitySet::TV,
        ModalitySet::TA,
        ModalitySet::AV,
        ModalitySet::TAV,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModalitySet::T => "T",
            ModalitySet::A => "A",
            ModalitySet::V => "V",
            ModalitySet::TV => "TV",
            ModalitySet::TA => "TA",
            ModalitySet::AV => "AV",
            ModalitySet::TAV => "TAV",
        }
    }

    pub fn contains(self, m: Modality) -> bool {
        self.as_str().contains(m.letter())
    }

    /// The modalities used, in storage order T, A, V (order of parameters in the flat store).
    pub fn modalities(self) -> Vec<Modality> {
        Modality::ALL.iter().copied().filter(|&m| self.contains(m)).collect()
    }

    /// The modalities in representation order T, V, A (MODEL.md: "Modality order is always T, V, A").
    pub fn modalities_tva(self) -> Vec<Modality> {
        [Modality::Text, Modality::Video, Modality::Audio].iter().copied().filter(|&m| self.contains(m)).collect()
    }
}

impl fmt::Display for ModalitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModalitySet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut letters: Vec<char> = s.trim().to_ascii_uppercase().chars().collect();
        let bad = || {
            format!(
                "unknown modality set '{s}': allowed are T, A, V, TV, TA, AV, TAV (T = text, A = acoustic, V = visual)"
            )
        };
        if letters.is_empty() || letters.iter().any(|&c| Modality::from_letter(c).is_none()) {
            return Err(bad());
        }
        letters.sort_by_key(|&c| Modality::from_letter(c).map(|m| m.index()));
        letters.dedup();
        let key: String = letters.into_iter().collect();
        // Canonical names: storage order T, A, V, except the bimodal "TV" which the paper writes that way.
        Ok(match key.as_str() {
            "T" => ModalitySet::T,
            "A" => ModalitySet::A,
            "V" => ModalitySet::V,
            "TV" => ModalitySet::TV,
            "TA" => ModalitySet::TA,
            "AV" => ModalitySet::AV,
            "TAV" => ModalitySet::TAV,
            _ => return Err(bad()),
        })
    }
}

impl TryFrom<String> for ModalitySet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ModalitySet> for String {
    fn from(m: ModalitySet) -> String {
        m.as_str().to_string()
    }
}

/// Which attention builds the representation (MODEL.md "Variants").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    /// Contextual inter-modal attention over modality pairs (the paper's CIM).
    Cim,
    /// Self-attention per modality (the authors' 'ummu' ablation).
    #[serde(rename = "self")]
    SelfAttn,
    /// No attention: R = [T, V, A].
    None,
}

impl Attention {
    pub const ALL: [Attention; 3] = [Attention::Cim, Attention::SelfAttn, Attention::None];
    pub fn as_str(self) -> &'static str {
        match self {
            Attention::Cim => "cim",
            Attention::SelfAttn => "self",
            Attention::None => "none",
        }
    }
}

impl fmt::Display for Attention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Attention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cim" => Ok(Attention::Cim),
            "self" => Ok(Attention::SelfAttn),
            "none" => Ok(Attention::None),
            _ => Err(format!("unknown attention '{s}': allowed are cim, self, none")),
        }
    }
}

/// Which heads and losses the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tasks {
    /// Multi-task: both heads, both losses.
    Mtl,
    Sentiment,
    Emotion,
}

impl Tasks {
    pub const ALL: [Tasks; 3] = [Tasks::Mtl, Tasks::Sentiment, Tasks::Emotion];
    pub fn as_str(self) -> &'static str {
        match self {
            Tasks::Mtl => "mtl",
            Tasks::Sentiment => "sentiment",
            Tasks::Emotion => "emotion",
        }
    }
    pub fn has_sentiment(self) -> bool {
        matches!(self, Tasks::Mtl | Tasks::Sentiment)
    }
    pub fn has_emotion(self) -> bool {
        matches!(self, Tasks::Mtl | Tasks::Emotion)
    }
}

impl fmt::Display for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tasks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mtl" | "multi" | "multitask" | "multi-task" => Ok(Tasks::Mtl),
            "sentiment" => Ok(Tasks::Sentiment),
            "emotion" => Ok(Tasks::Emotion),
            _ => Err(format!("unknown task setup '{s}': allowed are mtl, sentiment, emotion")),
        }
    }
}

/// Number of sentiment classes (negative, positive).
pub const SENTIMENT_CLASSES: usize = 2;
/// Number of emotion labels (six emotions + no-emotion).
pub const EMOTION_LABELS: usize = 7;
/// Number of emotion intensities in the data (anger, disgust, fear, happy, sad, surprise).
pub const EMOTIONS: usize = 6;
pub const EMOTION_NAMES: [&str; EMOTION_LABELS] =
    ["anger", "disgust", "fear", "happy", "sad", "surprise", "no-emotion"];

/// Everything that fixes the model's shapes and loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub modalities: ModalitySet,
    pub attention: Attention,
    pub tasks: Tasks,
    /// Input feature dims in T, A, V order; 0 for a modality the set does not use.
    pub dims: [usize; 3],
    /// GRU hidden size per direction (H).
    pub hidden: usize,
    /// Dense width (D).
    pub dense: usize,
    /// Dropout probability after the GRU and after the dense layer (training only).
    pub dropout: f64,
    /// Weight of the sentiment cross-entropy (w_s).
    pub w_sentiment: f64,
    /// Weight of the mean emotion binary cross-entropy (w_e).
    pub w_emotion: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("modality set {set} needs the {modality} dimension, but it is 0: give --dims T,A,V with a positive value for every modality the set uses")]
    MissingDim { set: ModalitySet, modality: &'static str },
    #[error("hidden size H must be at least 1 (got {0})")]
    Hidden(usize),
    #[error("dense width D must be at least 1 (got {0})")]
    Dense(usize),
    #[error("dropout must be in [0, 1) (got {0})")]
    Dropout(f64),
    #[error("loss weight {name} must be finite and >= 0 (got {value})")]
    LossWeight { name: &'static str, value: f64 },
    #[error("--dims needs 3 comma-separated values in T,A,V order (e.g. 300,74,35), got '{0}'")]
    DimsSyntax(String),
}

impl ModelConfig {
    /// MODEL.md defaults (H 200, D 100, dropout 0.3, w_s = w_e = 1).
    pub fn new(modalities: ModalitySet, attention: Attention, tasks: Tasks, dims: [usize; 3]) -> Self {
        let mut dims = dims;
        for m in Modality::ALL {
            if !modalities.contains(m) {
                dims[m.index()] = 0;
            }
        }
        ModelConfig {
            modalities,
            attention,
            tasks,
            dims,
            hidden: 200,
            dense: 100,
            dropout: 0.3,
            w_sentiment: 1.0,
            w_emotion: 1.0,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for m in self.modalities.modalities() {
            if self.dims[m.index()] == 0 {
                return Err(ConfigError::MissingDim { set: self.modalities, modality: m.name() });
            }
        }
        if self.hidden == 0 {
            return Err(ConfigError::Hidden(self.hidden));
        }
        if self.dense == 0 {
            return Err(ConfigError::Dense(self.dense));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ConfigError::Dropout(self.dropout));
        }
        for (name, value) in [("w_sentiment", self.w_sentiment), ("w_emotion", self.w_emotion)] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::LossWeight { name, value });
            }
        }
        Ok(())
    }

    pub fn dim(&self, m: Modality) -> usize {
        self.dims[m.index()]
    }

    /// The blocks of the representation R, in order; each block is D wide.
    pub fn representation(&self) -> Vec<Block> {
        representation_blocks(self.modalities, self.attention)
    }

    /// Width of the representation R (number of blocks times D).
    pub fn repr_width(&self) -> usize {
        self.representation().len() * self.dense
    }

    /// The attention pairs `(X, Y)` whose CIM unit `[att(X,Y), att(Y,X)]` (or self-attention
    /// `att(X,X)` when X == Y) this variant computes, in representation order.
    pub fn attention_pairs(&self) -> Vec<(Modality, Modality)> {
        let mut pairs = Vec::new();
        for b in self.representation() {
            if let Block::Att(x, y) = b {
                if x == y || !pairs.contains(&(y, x)) {
                    pairs.push((x, y));
                }
            }
        }
        pairs
    }
}

/// One D-wide block of the representation R.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// att(X, Y)
    Att(Modality, Modality),
    /// The dense output of a modality itself.
    Plain(Modality),
}

/// MODEL.md items 4 and "Variants". Bimodal cim follows the formula
/// R = [att(X,Y), att(Y,X), X, Y] with (X, Y) = (T,V), (T,A), (A,V).
pub fn representation_blocks(set: ModalitySet, attention: Attention) -> Vec<Block> {
    use Block::*;
    use Modality::*;
    let tva = set.modalities_tva();
    match attention {
        Attention::None => tva.into_iter().map(Plain).collect(),
        Attention::SelfAttn => {
            let mut r: Vec<Block> = tva.iter().map(|&m| Att(m, m)).collect();
            r.extend(tva.iter().map(|&m| Plain(m)));
            r
        }
        Attention::Cim => match set {
            ModalitySet::T | ModalitySet::A | ModalitySet::V => {
                let x = tva[0];
                vec![Att(x, x), Plain(x)]
            }
            ModalitySet::TV => vec![Att(Text, Video), Att(Video, Text), Plain(Text), Plain(Video)],
            ModalitySet::TA => vec![Att(Text, Audio), Att(Audio, Text), Plain(Text), Plain(Audio)],
            ModalitySet::AV => vec![Att(Audio, Video), Att(Video, Audio), Plain(Audio), Plain(Video)],
            ModalitySet::TAV => vec![
                Att(Text, Video),
                Att(Video, Text),
                Att(Audio, Video),
                Att(Video, Audio),
                Att(Text, Audio),
                Att(Audio, Text),
                Plain(Text),
                Plain(Video),
                Plain(Audio),
            ],
        },
    }
}

/// Parse `--dims 300,74,35` (T, A, V order).
pub fn parse_dims(s: &str) -> Result<[usize; 3], ConfigError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        return Err(ConfigError::DimsSyntax(s.to_string()));
    }
    let mut dims = [0usize; 3];
    for (d, p) in dims.iter_mut().zip(parts) {
        *d = p.parse().map_err(|_| ConfigError::DimsSyntax(s.to_string()))?;
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representation_widths_match_model_md() {
        let w = |s: &str, a: Attention| representation_blocks(s.parse().unwrap(), a).len();
        assert_eq!(w("TAV", Attention::Cim), 9);
        assert_eq!(w("TV", Attention::Cim), 4);
        assert_eq!(w("T", Attention::Cim), 2);
        assert_eq!(w("TAV", Attention::SelfAttn), 6);
        assert_eq!(w("AV", Attention::None), 2);
    }

    #[test]
    fn modality_set_parsing_is_canonical_and_rejects_junk() {
        assert_eq!("vat".parse::<ModalitySet>().unwrap(), ModalitySet::TAV);
        assert_eq!("VT".parse::<ModalitySet>().unwrap(), ModalitySet::TV);
        assert!("TX".parse::<ModalitySet>().unwrap_err().contains("allowed are"));
        assert!("".parse::<ModalitySet>().is_err());
    }
}

/// Adam's settings (MODEL.md: lr 1e-3, betas 0.9 / 0.999, eps 1e-7); both engines read them.
/// Optimizer settings; `Default` is MODEL.md's (lr 1e-3, 0.9, 0.999, eps 1e-7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-7 }
    }
}
