//! Asserting the rows of the comparison shared with `cimnet check`
//! (`cimnet::gpu::check`: per tensor, |got - want| <= tol * max|want|).

use cimnet::gpu::check::CheckRow;

/// Prints every row and panics naming each failing row, its failing tensor and
/// that tensor's worst element. Returns the largest relative error, for reports.
pub fn assert_rows(rows: &[CheckRow]) -> f64 {
    for r in rows {
        eprintln!("{r}");
    }
    assert!(!rows.is_empty(), "nothing was compared");
    let failed: Vec<String> = rows.iter().filter(|r| !r.pass).map(|r| r.to_string()).collect();
    assert!(failed.is_empty(), "{} of {} GPU checks failed:\n{}", failed.len(), rows.len(), failed.join("\n"));
    rows.iter().fold(0.0, |m, r| m.max(r.max_rel))
}
