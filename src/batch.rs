//! A padded batch of videos: what the CPU reference consumes and what the
//! `grads` command reads from an npz file. Letters: B batch, U padded
//! utterances (longest video in the batch), D_m a modality's feature dim.

use crate::config::{Modality, EMOTIONS};

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Number of videos (B).
    pub b: usize,
    /// Padded utterance count (U).
    pub u: usize,
    /// Features per modality in T, A, V order; `None` when absent. Each (B, U, D_m), row-major.
    pub features: [Option<Vec<f64>>; 3],
    /// Feature dims in T, A, V order (0 when absent).
    pub dims: [usize; 3],
    /// True lengths, 1 <= len[b] <= U. (B)
    pub len: Vec<usize>,
    /// Sentiment scores in [-3, 3]. (B, U)
    pub sentiment: Vec<f64>,
    /// Emotion intensities in [0, 3], order anger, disgust, fear, happy, sad, surprise. (B, U, 6)
    pub emotion: Option<Vec<f64>>,
}

impl Batch {
    pub fn feature(&self, m: Modality) -> Option<&[f64]> {
        self.features[m.index()].as_deref()
    }

    /// mask[b, i] = 1 for i < len[b].
    pub fn is_real(&self, b: usize, i: usize) -> bool {
        i < self.len[b]
    }

    /// Number of real utterances in the batch.
    pub fn real_count(&self) -> usize {
        self.len.iter().sum()
    }

    /// Sentiment class: positive (1) iff score >= 0 (MODEL.md "Labels").
    pub fn sentiment_class(&self, b: usize, i: usize) -> usize {
        usize::from(self.sentiment[b * self.u + i] >= 0.0)
    }

    /// The 7 binary emotion targets of one utterance: label k is 1 iff intensity k > 0;
    /// the 7th (no-emotion) is 1 iff all six are 0. `None` if the batch has no emotions.
    pub fn emotion_targets(&self, b: usize, i: usize) -> Option<[f64; 7]> {
        let e = self.emotion.as_ref()?;
        let row = &e[(b * self.u + i) * EMOTIONS..(b * self.u + i + 1) * EMOTIONS];
        let mut t = [0.0; 7];
        for k in 0..EMOTIONS {
            t[k] = if row[k] > 0.0 { 1.0 } else { 0.0 };
        }
        t[6] = if row.iter().all(|&x| x <= 0.0) { 1.0 } else { 0.0 };
        Some(t)
    }

    /// A batch holding only video `b`, padded to its own length (for batch-invariance checks).
    pub fn single(&self, b: usize) -> Batch {
        let l = self.len[b];
        let slice = |v: &Vec<f64>, w: usize| v[b * self.u * w..(b * self.u + l) * w].to_vec();
        Batch {
            b: 1,
            u: l,
            features: [0, 1, 2].map(|m| self.features[m].as_ref().map(|f| slice(f, self.dims[m]))),
            dims: self.dims,
            len: vec![l],
            sentiment: slice(&self.sentiment, 1),
            emotion: self.emotion.as_ref().map(|e| slice(e, EMOTIONS)),
        }
    }
}

/// Errors reading a batch file (`cimnet grads --batch B.npz`).
#[derive(Debug, thiserror::Error)]
pub enum BatchFileError {
    #[error(transparent)]
    Npz(#[from] crate::npz::NpzError),
    #[error("{file}: array '{name}' has shape {got:?}, expected {want}")]
    Shape { file: String, name: String, got: Vec<usize>, want: String },
    #[error("{file}: video {video} has len {len}; it must be in 1..={u} (U = padded utterances)")]
    Length { file: String, video: usize, len: i64, u: usize },
    #[error("{file}: '{name}' video {video} utterance {utterance}: {msg}")]
    Value { file: String, name: String, video: usize, utterance: usize, msg: String },
    #[error("{file}: no feature arrays: a batch needs at least one of text, audio, video")]
    NoFeatures { file: String },
}

impl Batch {
    /// Read a batch npz: `text`, `audio`, `video` float [B, U, D_m] (any subset),
    /// `len` int [B], `sentiment` float [B, U] (or [B, U, 1]), optional `emotion`
    /// float [B, U, 6]. Values at real positions are validated; padding is ignored.
    pub fn read_npz(path: &std::path::Path) -> Result<Batch, BatchFileError> {
        use crate::npz::NpzIn;
        let file = path.display().to_string();
        let mut npz = NpzIn::open(path)?;
        let len = npz.read_int("len")?;
        if len.shape.len() != 1 {
            return Err(BatchFileError::Shape { file, name: "len".into(), got: len.shape, want: "[B]".into() });
        }
        let b = len.shape[0];
        let sentiment = npz.read_float("sentiment")?;
        let mut sshape = sentiment.shape.clone();
        if sshape.len() == 3 && sshape[2] == 1 {
            sshape.pop();
        }
        if sshape.len() != 2 || sshape[0] != b {
            return Err(BatchFileError::Shape {
                file,
                name: "sentiment".into(),
                got: sentiment.shape,
                want: format!("[{b}, U]"),
            });
        }
        let u = sshape[1];
        let mut features: [Option<Vec<f64>>; 3] = Default::default();
        let mut dims = [0usize; 3];
        for m in Modality::ALL {
            if let Some(a) = npz.read_float_opt(m.name())? {
                if a.shape.len() != 3 || a.shape[0] != b || a.shape[1] != u {
                    return Err(BatchFileError::Shape {
                        file,
                        name: m.name().into(),
                        got: a.shape,
                        want: format!("[{b}, {u}, D]"),
                    });
                }
                dims[m.index()] = a.shape[2];
                features[m.index()] = Some(a.data);
            }
        }
        if features.iter().all(Option::is_none) {
            return Err(BatchFileError::NoFeatures { file });
        }
        let emotion = match npz.read_float_opt("emotion")? {
            Some(a) if a.shape != [b, u, EMOTIONS] => {
                return Err(BatchFileError::Shape {
                    file,
                    name: "emotion".into(),
                    got: a.shape,
                    want: format!("[{b}, {u}, 6]"),
                })
            }
            other => other.map(|a| a.data),
        };
        let mut lens = Vec::with_capacity(b);
        for (video, &l) in len.data.iter().enumerate() {
            if l < 1 || l as usize > u {
                return Err(BatchFileError::Length { file, video, len: l, u });
            }
            lens.push(l as usize);
        }
        let batch = Batch { b, u, features, dims, len: lens, sentiment: sentiment.data, emotion };
        batch.validate_values(&file)?;
        Ok(batch)
    }

    /// Finite features, sentiment in [-3, 3], emotions in [0, 3] at real positions.
    fn validate_values(&self, file: &str) -> Result<(), BatchFileError> {
        let err = |name: &str, video, utterance, msg: String| BatchFileError::Value {
            file: file.to_string(),
            name: name.to_string(),
            video,
            utterance,
            msg,
        };
        for b in 0..self.b {
            for i in 0..self.len[b] {
                let t = b * self.u + i;
                for m in Modality::ALL {
                    let d = self.dims[m.index()];
                    if let Some(f) = &self.features[m.index()] {
                        if let Some(c) = f[t * d..(t + 1) * d].iter().position(|v| !v.is_finite()) {
                            return Err(err(m.name(), b, i, format!("feature {c} is {}", f[t * d + c])));
                        }
                    }
                }
                let s = self.sentiment[t];
                if !(-3.0..=3.0).contains(&s) {
                    return Err(err("sentiment", b, i, format!("score {s} is outside [-3, 3]")));
                }
                if let Some(e) = &self.emotion {
                    for k in 0..EMOTIONS {
                        let v = e[t * EMOTIONS + k];
                        if !(0.0..=3.0).contains(&v) {
                            return Err(err("emotion", b, i, format!("intensity {k} is {v}, outside [0, 3]")));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Write this batch in the format `read_npz` reads (features and labels as f32).
    pub fn write_npz(&self, path: &std::path::Path) -> Result<(), crate::npz::NpzError> {
        let mut out = crate::npz::NpzOut::create(path)?;
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        for m in Modality::ALL {
            if let Some(f) = &self.features[m.index()] {
                out.write_f32(m.name(), &[self.b, self.u, self.dims[m.index()]], &f32s(f))?;
            }
        }
        let lens: Vec<i32> = self.len.iter().map(|&l| l as i32).collect();
        out.write_i32("len", &[self.b], &lens)?;
        out.write_f32("sentiment", &[self.b, self.u], &f32s(&self.sentiment))?;
        if let Some(e) = &self.emotion {
            out.write_f32("emotion", &[self.b, self.u, EMOTIONS], &f32s(e))?;
        }
        out.finish()
    }
}
