//! `cimnet data ...`: convert, prepare MOSI, generate synthetic data, and
//! summarise a dataset. Printing happens here; the library returns values.

use std::path::PathBuf;

use anyhow::Context;
use cimnet::config::EMOTION_NAMES;
use cimnet::data::{info, mosi, native, pickled, sdk, synth, Dataset};
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
    /// Build a native .npz of CMU-MOSEI from the CMU-MultimodalSDK's .csd files: each utterance's
    /// features are the mean of each modality's rows inside its labelled segment (the SDK's align rule).
    /// A cleaning report is printed and written beside the output as OUT.report.json.
    PrepareMosei {
        /// Directory with CMU_MOSEI_TimestampedWordVectors.csd, CMU_MOSEI_COVAREP.csd,
        /// CMU_MOSEI_VisualFacet42.csd (or CMU_MOSEI_VisualOpenFace2.csd) and CMU_MOSEI_Labels.csd.
        #[arg(long)]
        sdk: PathBuf,
        /// Visual features: facet (FACET 4.2, 35-d) or openface (OpenFace 2).
        #[arg(long, default_value = "facet", value_parser = clap::value_parser!(String))]
        visual: String,
        #[arg(long)]
        out: PathBuf,
        /// Replace OUT (and its report) if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Build a native .npz from a pickled word-aligned dataset (MMSA's aligned_50.pkl / unaligned_50.pkl,
    /// MulT's mosei_senti_data.pkl), averaging each utterance's real rows. The pickle is read without running code.
    PreparePickle {
        /// The .pkl file: {train, valid, test: {text, audio, vision, ids, labels...}}.
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Replace OUT (and its report) if they exist.
        #[arg(long)]
        force: bool,
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
        DataCmd::PrepareMosei { sdk: dir, visual, out, force } => prepare_mosei(&dir, &visual, &out, force)?,
        DataCmd::PreparePickle { file, out, force } => prepare_pickle(&file, &out, force)?,
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

/// Where the cleaning report of `out` goes: `mosei.npz` -> `mosei.report.json`.
pub fn report_path(out: &std::path::Path) -> PathBuf {
    out.with_extension("report.json")
}

/// A conversion's cleaning report, as JSON, written atomically beside its output.
fn write_report(path: &std::path::Path, report: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    cimnet::output::write_atomic(path, (json + "\n").as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn prepare_mosei(dir: &std::path::Path, visual: &str, out: &std::path::Path, force: bool) -> anyhow::Result<()> {
    let visual: sdk::Visual = visual.parse().map_err(anyhow::Error::msg)?;
    let report_file = report_path(out);
    refuse_existing(out, force)?;
    refuse_existing(&report_file, force)?;
    let (ds, report) = sdk::prepare(dir, visual).with_context(|| {
        format!(
            "preparing CMU-MOSEI from {} (see README, 'Training on CMU-MOSEI', for the files needed)",
            dir.display()
        )
    })?;
    native::write(&ds, out)?;
    write_report(&report_file, &report)?;
    print_sdk_report(&report);
    println!("wrote {} ({})", out.display(), counts(&ds));
    println!("wrote {} (the cleaning report)", report_file.display());
    Ok(())
}

fn print_sdk_report(r: &sdk::Report) {
    let listed = |name: &str, l: &sdk::report::Listed| {
        if l.count > 0 {
            let more = if l.count > l.examples.len() { ", ..." } else { "" };
            println!("  {name}: {} ({}{more})", l.count, l.examples.join(", "));
        } else {
            println!("  {name}: 0");
        }
    };
    println!("dims: text {}, audio {}, video {}", r.dims[0], r.dims[1], r.dims[2]);
    println!("videos not used:");
    listed("labelled but outside the standard folds", &r.outside_folds);
    listed("in the folds but without labels", &r.fold_videos_without_labels);
    listed("missing a modality", &r.missing_modality);
    listed("no segment left", &r.videos_without_segments);
    let u = &r.unlabelled_in_features;
    println!("  unlabelled videos in the feature files: text {}, audio {}, video {}", u.text, u.audio, u.video);
    println!("segments:");
    listed("zero-length (dropped, as the SDK does)", &r.zero_length_segments);
    listed("duplicates (kept)", &r.duplicate_segments);
    listed("overlapping the one before (kept)", &r.overlapping_segments);
    let e = &r.empty_segments;
    println!("  with no rows in a modality (features set to 0): text {}, audio {}, video {}", e.text, e.audio, e.video);
    println!("cleaning:");
    for (name, n) in [("text", &r.non_finite.text), ("audio", &r.non_finite.audio), ("video", &r.non_finite.video)] {
        println!(
            "  {name}: {} non-finite input values, {} utterance feature values non-finite after averaging, set to 0",
            n.input_values, n.zeroed_values
        );
    }
    println!("  sentiment scores clamped to [-3, 3]: {}", r.sentiment_clamped);
    println!("  emotion intensities clamped to [0, 3]: {}", r.emotion_clamped);
}

fn prepare_pickle(file: &std::path::Path, out: &std::path::Path, force: bool) -> anyhow::Result<()> {
    let report_path = report_path(out);
    refuse_existing(out, force)?;
    refuse_existing(&report_path, force)?;
    let (ds, report) = pickled::prepare(file).with_context(|| {
        format!("preparing {} (expected MMSA's or MulT's pickle layout; see docs/data-formats.md)", file.display())
    })?;
    native::write(&ds, out)?;
    write_report(&report_path, &report)?;
    println!("wrote {} ({})", out.display(), counts(&ds));
    print_pickle_report(&report);
    println!("report: {}", report_path.display());
    Ok(())
}

fn print_pickle_report(r: &pickled::PickleReport) {
    println!("layout: {}", r.layout);
    for s in &r.splits {
        println!(
            "{:<6} {} utterances -> {} videos; sentiment clamped to [-3, 3]: {}; duplicate clips: {}; ids without clip: {}; videos also in an earlier split: {}",
            s.split.as_str(),
            s.utterances,
            s.videos,
            s.sentiment_clamped,
            s.duplicate_clips,
            s.ids_without_clip,
            s.videos_in_earlier_split
        );
        for m in &s.modalities {
            println!(
                "         {:<5} ('{}', L = {}, D = {}): averaged {} over {} rows; empty utterances (zeros): {}; non-finite values zeroed: {}",
                m.modality, m.key, m.seq_len, m.dim, m.rows, m.rows_averaged, m.empty_utterances, m.non_finite_zeroed
            );
        }
    }
    println!("emotions: {}", r.emotions);
    if !r.ignored_keys.is_empty() {
        println!("not used: {}", r.ignored_keys.join(", "));
    }
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
    let t = &inf.total;
    let lens = format!("{}/-/{:.1}/{}", t.len_min, t.len_mean, t.len_max);
    println!(
        "{:<6} {:>7} {:>10} {:>22} {:>9.1}% {:>9.2}",
        "total",
        t.videos,
        t.utterances,
        lens,
        pct(t.positive, t.utterances),
        t.sentiment_mean
    );
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
