//! `cimnet bench`: end-to-end training throughput on the GPU.

use anyhow::Result;
use clap::Args;

use cimnet::config::{Attention, ModalitySet, ModelConfig, Tasks};
use cimnet::engine::TuneMode;
use cimnet::gpu::tune::TuneOptions;
use cimnet::gpu::GpuOptions;
use cimnet::params::ParamStore;
use cimnet::train::source::DataSource;

use super::train::DataArgs;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Data to train on (default: synthetic MOSEI-shaped data).
    #[command(flatten)]
    pub data: DataArgs,
    /// Timed training epochs.
    #[arg(long, default_value_t = 1, value_parser = super::parse::at_least_one)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16, value_parser = super::parse::at_least_one)]
    pub batch: usize,
    #[arg(long, default_value = "TAV")]
    pub modalities: ModalitySet,
    #[arg(long, default_value = "cim")]
    pub attention: Attention,
    /// Task setup (default: mtl when the data has emotion labels, else sentiment).
    #[arg(long)]
    pub tasks: Option<Tasks>,
    #[arg(long, default_value_t = 200, value_parser = super::parse::width)]
    pub hidden: usize,
    #[arg(long, default_value_t = 100, value_parser = super::parse::width)]
    pub dense: usize,
    /// Batches of the CPU reference to time for comparison (0 to skip).
    #[arg(long, default_value_t = 2)]
    pub cpu_batches: usize,
    /// GPU adapter to use, by (part of) its name.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Kernel members: auto (the cached race for this adapter, else race now), off
    /// (each family's default), fresh (race again and cache it).
    #[arg(long, default_value = "auto")]
    pub tune: TuneMode,
    /// Print the report as JSON (the race under "kernels").
    #[arg(long)]
    pub json: bool,
    /// Instead: K models side by side for each K given (e.g. 1,7,21,105), the Table 4 variants
    /// cycled (then again with the next seed), grouped vs one by one, as `cimnet grid` trains them.
    #[arg(long, value_delimiter = ',', value_parser = super::parse::at_least_one)]
    pub models: Vec<usize>,
    /// With --models: training steps timed per model, each way.
    #[arg(long, default_value_t = 3, value_parser = super::parse::at_least_one)]
    pub steps: usize,
}

pub fn bench_cmd(a: BenchArgs) -> Result<()> {
    let source = if a.data.data.is_some() || a.data.synthetic {
        a.data.source_or_mosi()
    } else {
        DataSource::Synthetic { seed: 0, scale: 1.0 }
    };
    let data = source.load()?;
    if !a.models.is_empty() {
        if !a.json {
            println!("benchmarking K models side by side on {} ...", source.describe());
        }
        let report = cimnet::bench::models::run(
            &data,
            &a.models,
            a.batch,
            a.hidden,
            a.dense,
            a.steps,
            &GpuOptions { adapter: a.adapter.clone(), ..Default::default() },
            &TuneOptions::new(a.tune),
            &mut super::print_tune,
        )?;
        return show(a.json, &report, || report.markdown());
    }
    data.require(a.modalities)?;
    let tasks = a.tasks.unwrap_or(if data.has_emotion { Tasks::Mtl } else { Tasks::Sentiment });
    let mut cfg = ModelConfig::new(a.modalities, a.attention, tasks, data.dims);
    cfg.hidden = a.hidden;
    cfg.dense = a.dense;
    cfg.validate()?;
    let params = ParamStore::init(&cfg, 1);
    if !a.json {
        println!("benchmarking {} on {} ...", source.describe(), a.adapter.as_deref().unwrap_or("the best adapter"));
    }
    let report = cimnet::bench::run(
        &data,
        &params,
        a.batch,
        a.epochs,
        a.cpu_batches,
        &GpuOptions { adapter: a.adapter.clone(), ..Default::default() },
        &TuneOptions::new(a.tune),
        &mut super::print_tune,
    )?;
    show(a.json, &report, || report.markdown())
}

/// A report as JSON (`--json`) or as its markdown tables.
fn show<T: serde::Serialize>(json: bool, report: &T, markdown: impl Fn() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", markdown());
    }
    Ok(())
}
