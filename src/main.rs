//! The `cimnet` command line: parse, call the library, print.

mod cli;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cimnet",
    version,
    about = "Multi-task multimodal sentiment and emotion analysis (Akhtar et al., NAACL 2019) on the GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write freshly initialised weights (MODEL.md init) to a safetensors file.
    Init(cli::model::InitArgs),
    /// Forward, loss and backward on one batch; write losses, probabilities and all gradients as npz.
    Grads(cli::model::GradsArgs),
    /// Train a model (default: TAV / cim on the bundled CMU-MOSI) and write a run directory with its report.
    Train(cli::train::TrainArgs),
    /// Evaluate a finished run on a split (thresholds from its validation split).
    Eval(cli::train::EvalArgs),
    /// Write per-utterance predictions of a finished run as JSON lines or CSV.
    Predict(cli::train::PredictArgs),
    /// Draw a run's attention matrices for one video as a PNG heatmap (the paper's Figure 3).
    Attention(cli::train::AttentionArgs),
    /// The paper's Table 4: every modality set, single-task vs multi-task, several seeds, with t-tests.
    Grid(cli::train::GridArgs),
    /// Time end-to-end GPU training (default: synthetic MOSEI-shaped data) and compare with the CPU reference.
    Bench(cli::bench::BenchArgs),
    /// Check every GPU kernel against the CPU reference on this machine's GPU (non-zero exit on any failure).
    Check(cli::check::CheckArgs),
    /// The WGSL kernels: `--dump DIR` writes every module as the driver compiles it.
    Kernels(cli::check::KernelsArgs),
    /// Datasets: convert, prepare MOSI, synthesise, summarise.
    Data {
        #[command(subcommand)]
        cmd: cli::data::DataCmd,
    },
}

/// The ids of the options typed on the command line (not defaulted) of the
/// subcommand `name`, so that `train --resume` and `grid --merge` can refuse
/// the ones they would otherwise ignore.
fn given_options<A: Args>(matches: &clap::ArgMatches, name: &'static str) -> Vec<String> {
    let Some(m) = matches.subcommand_matches(name) else { return Vec::new() };
    let args = A::augment_args(clap::Command::new(name));
    args.get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(str::to_string)
        .collect()
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Init(a) => cli::model::init(a),
        Command::Grads(a) => cli::model::grads(a),
        Command::Train(a) => cli::train::train_cmd(a, &given_options::<cli::train::TrainArgs>(&matches, "train")),
        Command::Eval(a) => cli::train::eval_cmd(a),
        Command::Predict(a) => cli::train::predict_cmd(a),
        Command::Attention(a) => cli::train::attention_cmd(a),
        Command::Grid(a) => cli::train::grid_cmd(a, &given_options::<cli::train::GridArgs>(&matches, "grid")),
        Command::Bench(a) => cli::bench::bench_cmd(a),
        Command::Check(a) => cli::check::check_cmd(a),
        Command::Kernels(a) => cli::check::kernels_cmd(a),
        Command::Data { cmd } => cli::data::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {}", cli::error::error_text(&e));
        std::process::exit(1);
    }
}
