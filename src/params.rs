//! The flat parameter store: one `Vec<f32>` with a table of named slices whose
//! names and shapes are MODEL.md's (PyTorch `nn.GRU` / `nn.Linear` state_dict
//! names), initialisation from a seed, and safetensors save / load.
//!
//! Every slice starts at a multiple of [`SLICE_ALIGN`] elements so that a GPU
//! kernel may bind one slice on its own (storage-buffer offsets must be
//! 256-byte aligned on most adapters). The gaps are zero and stay zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use safetensors::{Dtype, SafeTensors};

use crate::config::{Attention, Modality, ModalitySet, ModelConfig, Tasks, EMOTION_LABELS, SENTIMENT_CLASSES};

/// Slice alignment in elements (64 f32 = 256 bytes).
pub const SLICE_ALIGN: usize = 64;

/// The eight tensors of one bidirectional GRU layer, in state_dict order.
pub const GRU_TENSORS: [&str; 8] = [
    "weight_ih_l0",
    "weight_hh_l0",
    "bias_ih_l0",
    "bias_hh_l0",
    "weight_ih_l0_reverse",
    "weight_hh_l0_reverse",
    "bias_ih_l0_reverse",
    "bias_hh_l0_reverse",
];

/// One named tensor inside the flat store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in elements from the start of the flat store.
    pub offset: usize,
}

impl Slice {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The table of named slices for one model configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub slices: Vec<Slice>,
    /// Total elements including alignment gaps.
    pub len: usize,
}

impl Layout {
    /// MODEL.md's tensors for `cfg`, modalities in T, A, V order, then the heads.
    pub fn new(cfg: &ModelConfig) -> Layout {
        let (h, d, r) = (cfg.hidden, cfg.dense, cfg.repr_width());
        let mut named: Vec<(String, Vec<usize>)> = Vec::new();
        for m in cfg.modalities.modalities() {
            let p = m.name();
            for dir in ["", "_reverse"] {
                named.push((format!("{p}.gru.weight_ih_l0{dir}"), vec![3 * h, cfg.dim(m)]));
                named.push((format!("{p}.gru.weight_hh_l0{dir}"), vec![3 * h, h]));
                named.push((format!("{p}.gru.bias_ih_l0{dir}"), vec![3 * h]));
                named.push((format!("{p}.gru.bias_hh_l0{dir}"), vec![3 * h]));
            }
            named.push((format!("{p}.dense.weight"), vec![d, 2 * h]));
            named.push((format!("{p}.dense.bias"), vec![d]));
        }
        if cfg.tasks.has_sentiment() {
            named.push(("sentiment.weight".into(), vec![SENTIMENT_CLASSES, r]));
            named.push(("sentiment.bias".into(), vec![SENTIMENT_CLASSES]));
        }
        if cfg.tasks.has_emotion() {
            named.push(("emotion.weight".into(), vec![EMOTION_LABELS, r]));
            named.push(("emotion.bias".into(), vec![EMOTION_LABELS]));
        }
        let mut offset = 0;
        let mut slices = Vec::with_capacity(named.len());
        for (name, shape) in named {
            let s = Slice { name, shape, offset };
            offset = (offset + s.len()).div_ceil(SLICE_ALIGN) * SLICE_ALIGN;
            slices.push(s);
        }
        Layout { slices, len: offset }
    }

    pub fn get(&self, name: &str) -> Option<&Slice> {
        self.slices.iter().find(|s| s.name == name)
    }

    /// The slice called `name`; panics if the layout has none (a programming error,
    /// since every name asked for comes from the same configuration).
    pub fn slice(&self, name: &str) -> &Slice {
        self.get(name).unwrap_or_else(|| panic!("parameter layout has no tensor '{name}'"))
    }

    /// Number of real parameters (without alignment gaps).
    pub fn count(&self) -> usize {
        self.slices.iter().map(Slice::len).sum()
    }
}

/// Parameters of one model: its configuration, layout and flat f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamStore {
    pub config: ModelConfig,
    pub layout: Layout,
    /// (layout.len)
    pub values: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{file}: not a valid safetensors file: {msg}")]
    Format { file: PathBuf, msg: String },
    #[error("{file}: metadata key '{key}' is missing or invalid ({msg}); cimnet weight files carry modalities (e.g. \"TAV\"), attention (cim, self, none) and tasks (mtl, sentiment, emotion)")]
    Metadata { file: PathBuf, key: &'static str, msg: String },
    #[error("{file}: tensor '{name}' is missing (the {variant} model needs it)")]
    Missing { file: PathBuf, name: String, variant: String },
    #[error("{file}: unexpected tensor '{name}' (shape {shape:?}); the {variant} model has no such parameter")]
    Extra { file: PathBuf, name: String, shape: Vec<usize>, variant: String },
    #[error("{file}: tensor '{name}' has shape {got:?}, but the {variant} model needs {want:?}")]
    Shape { file: PathBuf, name: String, got: Vec<usize>, want: Vec<usize>, variant: String },
    #[error("{file}: tensor '{name}' has dtype {dtype}; supported are F32, F16, BF16 and F64")]
    Dtype { file: PathBuf, name: String, dtype: String },
    #[error("{file}: tensor '{name}' holds a non-finite value at element {index}")]
    NonFinite { file: PathBuf, name: String, index: usize },
    #[error("{file}: {source}")]
    Config { file: PathBuf, source: crate::config::ConfigError },
    #[error("{file}: these weights are not the run's model: {diffs}")]
    Mismatch { file: PathBuf, diffs: String },
}

impl ParamStore {
    pub fn zeros(config: &ModelConfig) -> ParamStore {
        let layout = Layout::new(config);
        let values = vec![0.0; layout.len];
        ParamStore { config: config.clone(), layout, values }
    }

    /// MODEL.md's initialisation, deterministic from `seed`: Glorot-uniform for
    /// input, dense and head weights, orthogonal for each whole W_hh, zero biases.
    pub fn init(config: &ModelConfig, seed: u64) -> ParamStore {
        let mut p = ParamStore::zeros(config);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for s in p.layout.slices.clone() {
            let out = &mut p.values[s.range()];
            if s.name.contains("weight_hh") {
                orthogonal(out, s.shape[0], s.shape[1], &mut rng);
            } else if s.name.contains("weight") {
                let limit = (6.0 / (s.shape[0] + s.shape[1]) as f64).sqrt();
                for v in out.iter_mut() {
                    *v = rng.gen_range(-limit..limit) as f32;
                }
            }
        }
        p
    }

    pub fn get(&self, name: &str) -> &[f32] {
        &self.values[self.layout.slice(name).range()]
    }

    pub fn get_mut(&mut self, name: &str) -> &mut [f32] {
        let r = self.layout.slice(name).range();
        &mut self.values[r]
    }

    /// The values as f64 (what the CPU reference computes with).
    pub fn to_f64(&self) -> Vec<f64> {
        self.values.iter().map(|&v| f64::from(v)).collect()
    }

    /// The safetensors metadata that lets a file rebuild its model on its own,
    /// sorted by key (a `BTreeMap`), so identical runs write identical bytes.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        BTreeMap::from([
            ("format".to_string(), "pt".to_string()),
            ("modalities".to_string(), c.modalities.to_string()),
            ("attention".to_string(), c.attention.to_string()),
            ("tasks".to_string(), c.tasks.to_string()),
            ("dropout".to_string(), c.dropout.to_string()),
            ("w_sentiment".to_string(), c.w_sentiment.to_string()),
            ("w_emotion".to_string(), c.w_emotion.to_string()),
            ("producer".to_string(), format!("cimnet {}", env!("CARGO_PKG_VERSION"))),
        ])
    }

    /// Serialise as safetensors (f32, MODEL.md names) into bytes. The header is
    /// written here rather than by `safetensors::serialize`, whose metadata map
    /// is a `HashMap` and comes out in a different order in every process:
    /// metadata sorted by key, then the tensors in layout order.
    pub fn to_safetensors(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let meta: serde_json::Map<String, serde_json::Value> =
            self.metadata().into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        header.insert("__metadata__".to_string(), serde_json::Value::Object(meta));
        let mut offset = 0usize;
        for s in &self.layout.slices {
            let end = offset + 4 * s.len();
            header.insert(
                s.name.clone(),
                serde_json::json!({ "dtype": "F32", "shape": s.shape, "data_offsets": [offset, end] }),
            );
            offset = end;
        }
        let mut text = serde_json::Value::Object(header).to_string().into_bytes();
        text.resize(text.len().next_multiple_of(8), b' ');
        let mut out = Vec::with_capacity(8 + text.len() + offset);
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(&text);
        for s in &self.layout.slices {
            for v in &self.values[s.range()] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Save atomically (temporary file in the same directory, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), ParamError> {
        write_atomic(path, &self.to_safetensors()).map_err(|source| ParamError::Io { file: path.to_path_buf(), source })
    }

    pub fn load(path: &Path) -> Result<ParamStore, ParamError> {
        let bytes = std::fs::read(path).map_err(|source| ParamError::Io { file: path.to_path_buf(), source })?;
        ParamStore::from_safetensors(&bytes, path)
    }

    /// Rebuild the model from a weights file alone: the variant from the metadata,
    /// input dims, H and D from the tensor shapes. Rejects missing, extra and
    /// mis-shaped tensors. `file` is only used in error messages.
    pub fn from_safetensors(bytes: &[u8], file: &Path) -> Result<ParamStore, ParamError> {
        let file_buf = file.to_path_buf();
        let fmt_err = |msg: String| ParamError::Format { file: file_buf.clone(), msg };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| fmt_err(e.to_string()))?;
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| fmt_err(e.to_string()))?;
        let md = meta.metadata().clone().unwrap_or_default();
        let meta_err = |key: &'static str, msg: String| ParamError::Metadata { file: file_buf.clone(), key, msg };
        let get = |key: &'static str| md.get(key).cloned().ok_or_else(|| meta_err(key, "absent".into()));
        let modalities: ModalitySet = get("modalities")?.parse().map_err(|e| meta_err("modalities", e))?;
        let attention: Attention = get("attention")?.parse().map_err(|e| meta_err("attention", e))?;
        let tasks: Tasks = get("tasks")?.parse().map_err(|e| meta_err("tasks", e))?;

        let shape_of = |name: &str| tensors.tensor(name).ok().map(|t| t.shape().to_vec());
        let first = modalities.modalities()[0].name();
        let variant = format!("{modalities}/{attention}/{tasks}");
        let missing = |name: String| ParamError::Missing { file: file_buf.clone(), name, variant: variant.clone() };
        let hh_name = format!("{first}.gru.weight_hh_l0");
        let hh = shape_of(&hh_name).ok_or_else(|| missing(hh_name.clone()))?;
        let dense_name = format!("{first}.dense.weight");
        let dense = shape_of(&dense_name).ok_or_else(|| missing(dense_name.clone()))?;
        let mut dims = [0usize; 3];
        for m in modalities.modalities() {
            let name = format!("{}.gru.weight_ih_l0", m.name());
            let s = shape_of(&name).ok_or_else(|| missing(name.clone()))?;
            dims[m.index()] = s.get(1).copied().unwrap_or(0);
        }
        let mut config = ModelConfig::new(modalities, attention, tasks, dims);
        config.hidden = hh.get(1).copied().unwrap_or(0);
        config.dense = dense.first().copied().unwrap_or(0);
        // A size read from a shape can be huge when another axis is 0 (the tensor
        // is then empty and safetensors accepts it); every real tensor of the
        // model holds at least that many values, so a size beyond the file's
        // byte count is refused before the layout's arithmetic sees it.
        for (what, n) in [("hidden size H", config.hidden), ("dense width D", config.dense)]
            .into_iter()
            .chain(modalities.modalities().into_iter().map(|m| ("input dim", config.dim(m))))
        {
            if n > bytes.len() {
                return Err(fmt_err(format!("{what} {n} from the tensor shapes is larger than the file")));
            }
        }
        let parse_f = |key: &str, default: f64| md.get(key).and_then(|s| s.parse::<f64>().ok()).unwrap_or(default);
        config.dropout = parse_f("dropout", config.dropout);
        config.w_sentiment = parse_f("w_sentiment", config.w_sentiment);
        config.w_emotion = parse_f("w_emotion", config.w_emotion);
        config.validate().map_err(|source| ParamError::Config { file: file_buf.clone(), source })?;

        let layout = Layout::new(&config);
        // Sorted, so that with several unexpected tensors the error always names the same one.
        let mut names: Vec<&str> = tensors.names();
        names.sort_unstable();
        for name in names {
            if layout.get(name).is_none() {
                let shape = shape_of(name).unwrap_or_default();
                return Err(ParamError::Extra { file: file_buf.clone(), name: name.to_string(), shape, variant });
            }
        }
        // Every shape is checked before the store is allocated.
        for s in &layout.slices {
            let t = tensors.tensor(&s.name).map_err(|_| missing(s.name.clone()))?;
            if t.shape() != s.shape.as_slice() {
                return Err(ParamError::Shape {
                    file: file_buf.clone(),
                    name: s.name.clone(),
                    got: t.shape().to_vec(),
                    want: s.shape.clone(),
                    variant,
                });
            }
        }
        let mut store = ParamStore::zeros(&config);
        for s in &layout.slices {
            let t = tensors.tensor(&s.name).map_err(|_| missing(s.name.clone()))?;
            let values = decode(t.dtype(), t.data()).ok_or_else(|| ParamError::Dtype {
                file: file_buf.clone(),
                name: s.name.clone(),
                dtype: format!("{:?}", t.dtype()),
            })?;
            if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                return Err(ParamError::NonFinite { file: file_buf.clone(), name: s.name.clone(), index });
            }
            store.values[s.range()].copy_from_slice(&values);
        }
        Ok(store)
    }

    /// Refuse weights whose model is not `want` (a run's config): modalities,
    /// attention, tasks, the input dims of the modalities used, H and D. Both
    /// engines and every command that loads a run's weights go through this.
    pub fn check_matches(&self, want: &ModelConfig, file: &Path) -> Result<(), ParamError> {
        let have = &self.config;
        let mut diffs = Vec::new();
        let mut cmp = |what: &str, got: String, expected: String| {
            if got != expected {
                diffs.push(format!("{what} {got} (the run's config says {expected})"));
            }
        };
        cmp("modalities", have.modalities.to_string(), want.modalities.to_string());
        cmp("attention", have.attention.to_string(), want.attention.to_string());
        cmp("tasks", have.tasks.to_string(), want.tasks.to_string());
        cmp("input dims T,A,V", format!("{:?}", have.dims), format!("{:?}", want.dims));
        cmp("hidden size H", have.hidden.to_string(), want.hidden.to_string());
        cmp("dense width D", have.dense.to_string(), want.dense.to_string());
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(ParamError::Mismatch { file: file.to_path_buf(), diffs: diffs.join(", ") })
        }
    }

    /// Load a run's weights and check them against the run's model config.
    pub fn load_for(path: &Path, want: &ModelConfig) -> Result<ParamStore, ParamError> {
        let p = ParamStore::load(path)?;
        p.check_matches(want, path)?;
        Ok(p)
    }
}

/// Little-endian tensor bytes to f32 values (F32, F16, BF16, F64).
fn decode(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let le2 = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    Some(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_bits(le2(c)).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_bits(le2(c)).to_f32()).collect(),
        Dtype::F64 => {
            data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32).collect()
        }
        _ => return None,
    })
}

/// A rows x cols matrix (rows >= cols) with orthonormal columns, from the QR
/// decomposition of a Gaussian matrix (modified Gram-Schmidt in f64, which
/// gives R a positive diagonal, so Q is uniformly distributed).
fn orthogonal(out: &mut [f32], rows: usize, cols: usize, rng: &mut ChaCha8Rng) {
    assert!(rows >= cols, "orthogonal init needs rows >= cols");
    // Column-major work matrix: q[c][r].
    let mut q: Vec<Vec<f64>> = (0..cols).map(|_| (0..rows).map(|_| rng.sample(StandardNormal)).collect()).collect();
    for c in 0..cols {
        for k in 0..c {
            let (done, rest) = q.split_at_mut(c);
            let (qk, qc) = (&done[k], &mut rest[0]);
            let dot: f64 = qc.iter().zip(qk).map(|(a, b)| a * b).sum();
            for (x, y) in qc.iter_mut().zip(qk) {
                *x -= dot * y;
            }
        }
        let norm = q[c].iter().map(|x| x * x).sum::<f64>().sqrt();
        for x in q[c].iter_mut() {
            *x /= norm;
        }
    }
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = q[c][r] as f32;
        }
    }
}

/// Atomic writes live in src/output.rs with the rest of the no-loss rules.
pub use crate::output::write_atomic;

/// Parameter name prefix of a modality's layers ("text", "audio", "video").
pub fn prefix(m: Modality) -> &'static str {
    m.name()
}
