//! The `cimnet` command line: parse, call the library, print.

use clap::Parser;

mod cli {
    pub mod data;
}

#[derive(Debug, Parser)]
#[command(name = "cimnet", version, about = "Multi-task multimodal sentiment and emotion model (Akhtar et al., NAACL 2019)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Datasets: convert, prepare MOSI, synthesise, summarise.
    Data {
        #[command(subcommand)]
        cmd: cli::data::DataCmd,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Data { cmd } => cli::data::run(cmd),
    }
}
