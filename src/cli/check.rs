//! `cimnet check`: every GPU kernel, forward and backward, against the f64 CPU
//! reference on this machine's GPU (random masked batches); prints a table and
//! exits non-zero when any row fails.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use cimnet::gpu::check::{CheckRow, CHECKS, EXACT};
use cimnet::gpu::{GpuContext, GpuOptions};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// GPU adapter to check: a case-insensitive part of its name (default: $CIMNET_ADAPTER,
    /// else the best adapter: discrete > integrated > software).
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Print the adapter and the rows (with every tensor compared) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn check_cmd(a: CheckArgs) -> Result<()> {
    let ctx = GpuContext::new(&GpuOptions { adapter: a.adapter.clone(), ..Default::default() })?;
    if !a.json {
        println!("adapter: {}\n", ctx.describe());
    }
    let start = Instant::now();
    let mut rows: Vec<CheckRow> = Vec::new();
    for (family, check) in CHECKS {
        let t = Instant::now();
        match check(&ctx) {
            Ok(r) => rows.extend(r),
            // A family that cannot run is a failed row; the others still run.
            Err(e) => rows.push(CheckRow::error(*family, &e)),
        }
        eprintln!("checked {family} ({:.1} s)", t.elapsed().as_secs_f64());
    }
    let failed: Vec<&CheckRow> = rows.iter().filter(|r| !r.pass).collect();
    if a.json {
        let report = serde_json::json!({
            "adapter": ctx.describe(),
            "pass": failed.is_empty(),
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&rows));
        for r in &failed {
            println!("\nFAIL {} [{}]: {}", r.kernel, r.shape, r.detail);
        }
        println!(
            "\n{} of {} rows pass ({:.1} s); errors are relative to each reference tensor's largest magnitude",
            rows.len() - failed.len(),
            rows.len(),
            start.elapsed().as_secs_f64()
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} GPU kernel checks failed on {} (first: {}); report it with the output of `cimnet check --json`, \
             or try another adapter with --adapter NAME, or train with `--backend cpu`",
            failed.len(),
            rows.len(),
            ctx.adapter_info.name,
            failed[0].kernel
        );
    }
    Ok(())
}

/// The rows as a markdown table.
fn table(rows: &[CheckRow]) -> String {
    let sci = |v: f64| if v.is_finite() { format!("{v:.2e}") } else { format!("{v}") };
    let mut lines = vec![vec![
        "kernel".to_string(),
        "shape".into(),
        "max abs error".into(),
        "max rel error".into(),
        "tolerance".into(),
        "result".into(),
    ]];
    for r in rows {
        let tol = if r.tol == EXACT { "exact".to_string() } else { format!("{:.0e}", r.tol) };
        let result = if r.pass { "pass" } else { "FAIL" };
        lines.push(vec![r.kernel.clone(), r.shape.clone(), sci(r.max_abs), sci(r.max_rel), tol, result.to_string()]);
    }
    let widths: Vec<usize> = (0..6).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let fmt = |l: &[String]| {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(s, &w)| format!("{s:<w$}")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = fmt(&lines[0]);
    out.push_str(&format!("|{}|\n", widths.iter().map(|&w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")));
    for l in &lines[1..] {
        out.push_str(&fmt(l));
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct KernelsArgs {
    /// Write every WGSL module (what the driver compiles, with a header) into DIR.
    #[arg(long, value_name = "DIR")]
    pub dump: std::path::PathBuf,
}

pub fn kernels_cmd(a: KernelsArgs) -> Result<()> {
    for path in cimnet::gpu::dump::dump(&a.dump)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
