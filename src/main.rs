//! The `cimnet` command line: parse, call the library, print.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cimnet", version, about = "Multi-task multimodal sentiment and emotion analysis (Akhtar et al., NAACL 2019) on the GPU")]
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => cli::model::init(a),
        Command::Grads(a) => cli::model::grads(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
