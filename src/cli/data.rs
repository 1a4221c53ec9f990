//! `cimnet data ...`: convert, prepare MOSI, generate synthetic data, and
//! summarise a dataset. Printing happens here; the library returns values.

use std::path::PathBuf;

use anyhow::Context;
use cimnet::config::EMOTION_NAMES;
use cimnet::data::{info, mosi, native, synth, Dataset};
use cimnet::output::refuse_existing;

#[derive(Debug, clap::Subcommand)]
pub enum DataCmd {
    /// Convert a dataset (the authors' directory, or any native .npz) to a native .npz.
    Convert {
        /// Directory with text.npz, audio.npz, video.npz (or a native .npz file).
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Build a native .npz from the CMU-MOSI CSV files, carving a seeded validation split out of train.
    PrepareMosi {
        /// Directory with transcripts.csv and the *_train0.csv / *_test0.csv files.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        /// Share of the training videos moved to validation (the test split is never touched).
        #[arg(long, default_value_t = mosi::DEFAULT_VALID_FRACTION, value_parser = super::parse::fraction)]
        valid_fraction: f64,
        /// Seed of the validation carve-out.
        #[arg(long, default_value_t = mosi::DEFAULT_SEED)]
        seed: u64,
    },
    /// Generate synthetic MOSEI-shaped data (real split sizes and video-length histograms, dims 300/74/35).
    Synth {
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Scale every split's video counts (1.0 = MOSEI's size; bounded by the memory the data takes).
        #[arg(long, default_value_t = 1.0, value_parser = super::parse::synth_scale)]
        scale: f64,
        /// Also fit per-utterance linear classifiers and compare them with the generator's ground truth.
        #[arg(long)]
        probe: bool,
    },
    /// Summarise a dataset: splits, sizes, dims, lengths, label balance, padding efficiency.
    Info {
        /// A native .npz or an authors' directory; the bundled MOSI copy if omitted.
        path: Option<PathBuf>,
        /// Summarise synthetic MOSEI-shaped data (with --seed) instead of a file.
        #[arg(long, conflicts_with = "path")]
        synthetic: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Batch size for the padding-efficiency figures.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Machine-readable JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Convert { input, out, force } => {
            refuse_existing(&out, force)?;
            let ds = Dataset::load(&input)?;
            native::write(&ds, &out)?;
            println!("wrote {} ({})", out.display(), counts(&ds));
        }
        DataCmd::PrepareMosi { dir, out, force, valid_fraction, seed } => {
            refuse_existing(&out, force)?;
            let ds = mosi::prepare(&dir, valid_fraction, seed)
                .with_context(|| format!("preparing MOSI from {} (see its README.md for the layout)", dir.display()))?;
            native::write(&ds, &out)?;
            println!("wrote {} ({})", out.display(), counts(&ds));
        }
        DataCmd::Synth { out, force, seed, scale, probe } => {
            refuse_existing(&out, force)?;
            let spec = if scale == 1.0 { synth::SynthSpec::mosei() } else { synth::SynthSpec::scaled(scale) };
            let (ds, truth) = synth::generate(&spec, seed);
            native::write(&ds, &out)?;
            println!("wrote {} ({})", out.display(), counts(&ds));
            if probe {
                let p = synth::probe(&ds, &truth);
                println!("test split, fitted on train:");
                println!(
                    "  sentiment accuracy: per-utterance linear {:.3}, linear + neighbours {:.3}, ground truth {:.3}",
                    p.linear_sentiment_acc, p.context_sentiment_acc, p.truth_sentiment_acc
                );
                println!(
                    "  emotion weighted accuracy (mean of 6): per-utterance linear {:.3}, ground truth {:.3}",
                    p.linear_emotion_wa, p.truth_emotion_wa
                );
                println!("  utterances with no emotion: {:.1}%", 100.0 * p.no_emotion_share);
            }
        }
        DataCmd::Info { path, synthetic, seed, batch, json } => {
            let ds = match (&path, synthetic) {
                (_, true) => synth::mosei_like(seed),
                (Some(p), false) => Dataset::load(p)?,
                (None, false) => Dataset::bundled_mosi()?,
            };
            let inf = info::info(&ds, batch as usize);
            if json {
                println!("{}", serde_json::to_string_pretty(&inf)?);
            } else {
                print_info(&inf);
            }
        }
    }
    Ok(())
}

fn counts(ds: &Dataset) -> String {
    use cimnet::data::SplitName;
    SplitName::ALL
        .iter()
        .map(|&s| format!("{s} {} videos / {} utterances", ds.split(s).len(), ds.utterances(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_info(inf: &info::Info) {
    println!("source: {}", inf.source);
    let d = &inf.dims;
    let dims: Vec<String> = [("text", d.text), ("audio", d.audio), ("video", d.video)]
        .iter()
        .map(|(m, d)| if *d > 0 { format!("{m} {d}") } else { format!("{m} absent") })
        .collect();
    println!("dims:   {}", dims.join(", "));
    println!("labels: sentiment{}", if inf.has_emotion { " + 6 emotions" } else { " only (no emotions)" });
    println!();
    println!(
        "{:<6} {:>7} {:>10} {:>22} {:>10} {:>9}",
        "split", "videos", "utterances", "len min/med/mean/max", "positive", "mean sent"
    );
    for s in &inf.splits {
        let lens = format!("{}/{}/{:.1}/{}", s.len_min, s.len_median, s.len_mean, s.len_max);
        println!(
            "{:<6} {:>7} {:>10} {:>22} {:>9.1}% {:>9.2}",
            s.split.as_str(),
            s.videos,
            s.utterances,
            lens,
            pct(s.positive, s.utterances),
            s.sentiment_mean
        );
    }
    if inf.has_emotion {
        println!();
        print!("{:<6}", "split");
        for name in EMOTION_NAMES {
            print!(" {name:>10}");
        }
        println!("   (share of utterances with the label)");
        for s in &inf.splits {
            print!("{:<6}", s.split.as_str());
            if let (Some(e), Some(none)) = (s.emotion_present, s.no_emotion) {
                for c in e.iter().chain(std::iter::once(&none)) {
                    print!(" {:>9.1}%", pct(*c, s.utterances));
                }
            }
            println!();
        }
    }
    let p = &inf.train_padding;
    println!();
    println!(
        "train batches of {}: {} batches; real / padded utterance slots: bucketed {:.1}%, random {:.1}%",
        p.batch,
        p.batches,
        100.0 * p.bucketed,
        100.0 * p.random
    );
}

fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}
