//! `cimnet init` and `cimnet grads`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use cimnet::batch::Batch;
use cimnet::config::{parse_dims, Attention, ModalitySet, ModelConfig, Tasks};
use cimnet::grads::{cpu_grads, restrict_to_model, write_grads};
use cimnet::params::ParamStore;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Modality set: T, A, V, TV, TA, AV or TAV (T text, A acoustic, V visual).
    #[arg(long, default_value = "TAV")]
    pub modalities: ModalitySet,
    /// Attention: cim (the paper's), self, or none.
    #[arg(long, default_value = "cim")]
    pub attention: Attention,
    /// Tasks: mtl (both heads), sentiment, or emotion.
    #[arg(long, default_value = "mtl")]
    pub tasks: Tasks,
    /// Input feature dims in T,A,V order (only the set's modalities are used), e.g. 300,74,35.
    #[arg(long)]
    pub dims: String,
    /// GRU hidden size per direction (H).
    #[arg(long, default_value_t = 200, value_parser = super::parse::width)]
    pub hidden: usize,
    /// Dense width (D).
    #[arg(long, default_value_t = 100, value_parser = super::parse::width)]
    pub dense: usize,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output weights file (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

pub fn init(a: InitArgs) -> Result<()> {
    let dims = parse_dims(&a.dims)?;
    let mut cfg = ModelConfig::new(a.modalities, a.attention, a.tasks, dims);
    cfg.hidden = a.hidden;
    cfg.dense = a.dense;
    cfg.validate()?;
    cimnet::output::refuse_existing(&a.out, a.force)?;
    let p = ParamStore::init(&cfg, a.seed);
    p.save(&a.out)?;
    println!(
        "wrote {} ({}/{}/{}, dims T,A,V = {:?}, H {}, D {}, {} parameters, seed {})",
        a.out.display(),
        cfg.modalities,
        cfg.attention,
        cfg.tasks,
        cfg.dims,
        cfg.hidden,
        cfg.dense,
        p.layout.count(),
        a.seed
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct GradsArgs {
    /// Weights file (safetensors written by `cimnet init` or `cimnet train`).
    #[arg(long)]
    pub weights: PathBuf,
    /// Batch npz: text/audio/video [B,U,D], len [B], sentiment [B,U], emotion [B,U,6].
    #[arg(long)]
    pub batch: PathBuf,
    /// Output npz of losses, probabilities and gradients (float64).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Engine: cpu (the f64 reference) or gpu (the WGSL kernels, f32).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    pub backend: String,
    /// GPU adapter to use, by (part of) its name.
    #[arg(long)]
    pub adapter: Option<String>,
}

pub fn grads(a: GradsArgs) -> Result<()> {
    cimnet::output::refuse_existing(&a.out, a.force)?;
    let params = ParamStore::load(&a.weights)?;
    let mut batch = Batch::read_npz(&a.batch)?;
    restrict_to_model(&mut batch, &params);
    let report = if a.backend == "gpu" {
        let opts = cimnet::engine::EngineOptions { adapter: a.adapter.clone(), ..Default::default() };
        cimnet::grads::gpu_grads(&params, &batch, &opts).with_context(|| format!("batch {}", a.batch.display()))?
    } else {
        cpu_grads(&params, &batch).with_context(|| format!("batch {}", a.batch.display()))?
    };
    write_grads(&a.out, &report, &params, &batch)?;
    println!(
        "loss {:.6}{}{} on {} videos / {} utterances -> {}",
        report.loss,
        report.loss_sentiment.map(|l| format!(", sentiment {l:.6}")).unwrap_or_default(),
        report.loss_emotion.map(|l| format!(", emotion {l:.6}")).unwrap_or_default(),
        batch.b,
        batch.real_count(),
        a.out.display()
    );
    Ok(())
}
