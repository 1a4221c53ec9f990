//! What a grid is: grid.json marks a directory as a grid's and records what
//! makes two grids the same grid (the data, and every option that changes a
//! result), which slice of it the directory holds (`--shard I/N`), and the
//! wall-clock time spent on it. A rerun resumes only the same grid and slice;
//! a merge accepts only shards of one grid.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::super::run::{SelectMetric, TrainConfig, TrainError};
use super::super::source::{DataSource, Fingerprint};
use crate::config::{Attention, ModalitySet};
use crate::data::BatchMode;

/// The I-th of N slices of a grid's runs (1-based, as `--array=1-N` numbers SLURM's tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ShardFields")]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// A shard as grid.json spells it, before its range is checked.
#[derive(Deserialize)]
struct ShardFields {
    index: usize,
    count: usize,
}

impl TryFrom<ShardFields> for Shard {
    type Error = String;
    fn try_from(f: ShardFields) -> Result<Shard, String> {
        Shard::new(f.index, f.count)
    }
}

impl Shard {
    /// Shard `index` of `count`, if 1 <= index <= count.
    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 {
            return Err("the count of shards must be at least 1".into());
        }
        if !(1..=count).contains(&index) {
            return Err(format!("the index must be in 1..={count}, not {index}"));
        }
        Ok(Shard { index, count })
    }

    /// Round-robin: the runs at positions p (0-based, in `grid_runs` order) with
    /// p % count == index - 1, so that every shard gets its share of each cell.
    pub fn holds(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// This shard's slice of `items` (in their order).
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().enumerate().filter(|(p, _)| self.holds(*p)).map(|(_, x)| x.clone()).collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let form = "give it as I/N: the I-th of N slices, 1 <= I <= N (1-based: with `--array=0-...` pass \
                    $((SLURM_ARRAY_TASK_ID + 1))/N)";
        let Some((i, n)) = s.trim().split_once('/') else {
            return Err(format!("'{s}' is not a shard; {form}"));
        };
        let num = |x: &str, what: &str| {
            x.trim().parse::<usize>().map_err(|_| format!("'{s}': the {what} '{x}' is not a whole number; {form}"))
        };
        Shard::new(num(i, "index")?, num(n, "count")?).map_err(|e| format!("'{s}': {e}; {form}"))
    }
}

/// The options that make two grids the same grid: the cells, the seeds and
/// every setting that changes a run's result. Not how the runs are computed
/// (--backend, --adapter, --tune), and not where they are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridConfig {
    pub modalities: Vec<ModalitySet>,
    pub attentions: Vec<Attention>,
    /// Seeds 1..=seeds.
    pub seeds: u64,
    pub hidden: usize,
    pub dense: usize,
    pub dropout: f64,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub patience: usize,
    pub select: SelectMetric,
    pub batching: BatchMode,
    pub normalize: bool,
    pub test_curve: bool,
}

impl GridConfig {
    /// The grid of these cells and widths trained with `train` (whose seed and backend it ignores).
    pub fn new(
        modalities: &[ModalitySet],
        attentions: &[Attention],
        seeds: u64,
        (hidden, dense, dropout): (usize, usize, f64),
        train: &TrainConfig,
    ) -> GridConfig {
        // No `..`: a new training option does not compile until it is placed in or out of the identity.
        let TrainConfig { epochs, batch, lr, patience, seed: _, select, batching, normalize, backend: _, test_curve } =
            train.clone();
        GridConfig {
            modalities: modalities.to_vec(),
            attentions: attentions.to_vec(),
            seeds,
            hidden,
            dense,
            dropout,
            epochs,
            batch,
            lr,
            patience,
            select,
            batching,
            normalize,
            test_curve,
        }
    }
}

/// grid.json of a grid (or shard) directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridMarker {
    pub data: DataSource,
    pub fingerprint: Fingerprint,
    /// Absent in grid.json written before shards existed: such a grid resumes
    /// under the options it is rerun with, and records them from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<GridConfig>,
    /// The slice this directory holds; absent: the whole grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Wall-clock seconds of every `cimnet grid` on this directory, summed (a
    /// killed invocation's time is lost; its runs' training time is not).
    #[serde(default)]
    pub wall_seconds: f64,
}

/// The marker file of a grid directory.
pub fn marker_path(out: &Path) -> PathBuf {
    out.join("grid.json")
}

/// The grid.json in `dir`, or None if there is none.
pub fn read_marker(dir: &Path) -> Result<Option<GridMarker>, TrainError> {
    let path = marker_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TrainError::Io { path, source }),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| TrainError::Corrupt { path, msg: e.to_string() })
}

/// How `shard` reads in a message.
pub fn shard_name(shard: Option<Shard>) -> String {
    shard.map_or("the whole grid (no --shard)".to_string(), |s| format!("shard {s}"))
}

impl GridMarker {
    /// What differs between this (recorded) grid and `asked`, one "what: recorded vs asked" per
    /// difference; the wall time never differs, and a recorded grid without options matches any.
    /// Generic over the JSON form, so that a field added to the identity is compared too.
    pub fn differences(&self, asked: &GridMarker) -> Vec<String> {
        let identity = |m: &GridMarker, grid: Option<&GridConfig>| serde_json::json!({ "data": m.data, "fingerprint": m.fingerprint, "grid": grid });
        let asked_grid = asked.grid.as_ref();
        let recorded = identity(self, self.grid.as_ref().or(asked_grid));
        let mut out = Vec::new();
        json_differences("", &recorded, &identity(asked, asked_grid), &mut out);
        if self.shard != asked.shard {
            out.push(format!("{} vs {}", shard_name(self.shard), shard_name(asked.shard)));
        }
        out
    }
}

/// Leaf-wise differences of two JSON values, named by their path (`grid.epochs: 2 vs 1`).
fn json_differences(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                json_differences(&sub, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> GridMarker {
        let train = TrainConfig { epochs: 2, ..TrainConfig::default() };
        GridMarker {
            data: DataSource::Synthetic { seed: 0, scale: 0.1 },
            fingerprint: Fingerprint { bytes: 10, xxh3: "00000000000000ff".into() },
            grid: Some(GridConfig::new(&[ModalitySet::T], &[Attention::Cim], 2, (4, 3, 0.3), &train)),
            shard: None,
            wall_seconds: 0.0,
        }
    }

    #[test]
    fn shards_parse_one_based_and_refuse_what_is_not_a_slice() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(" 1 / 1 ".parse::<Shard>(), Ok(Shard { index: 1, count: 1 }));
        for (bad, says) in [("0/2", "1..=2"), ("3/2", "1..=2"), ("1/0", "at least 1"), ("x/2", "'x'"), ("2", "I/N")] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn round_robin_slices_cover_every_position_exactly_once() {
        let items: Vec<usize> = (0..11).collect();
        let slices: Vec<Vec<usize>> = (1..=3).map(|i| Shard { index: i, count: 3 }.select(&items)).collect();
        assert_eq!(slices[0], vec![0, 3, 6, 9]);
        assert_eq!(slices[1], vec![1, 4, 7, 10]);
        assert_eq!(slices[2], vec![2, 5, 8]);
    }

    #[test]
    fn differences_name_each_changed_option_and_ignore_the_wall_time() {
        let a = marker();
        let mut b = marker();
        b.wall_seconds = 99.0;
        assert!(a.differences(&b).is_empty());
        b.grid.as_mut().unwrap().epochs = 3;
        b.grid.as_mut().unwrap().modalities.push(ModalitySet::TA);
        b.shard = Some(Shard { index: 1, count: 2 });
        let d = a.differences(&b);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.contains(&"grid.epochs: 2 vs 3".to_string()), "{d:?}");
        assert!(d.contains(&r#"grid.modalities: ["T"] vs ["T","TA"]"#.to_string()), "{d:?}");
        assert!(d.contains(&"the whole grid (no --shard) vs shard 1/2".to_string()), "{d:?}");
    }

    #[test]
    fn a_grid_json_from_before_shards_still_reads_and_matches_any_options() {
        let old = r#"{"data":{"kind":"synthetic","seed":0,"scale":0.1},"fingerprint":{"bytes":10,"xxh3":"00000000000000ff"}}"#;
        let m: GridMarker = serde_json::from_str(old).unwrap();
        assert_eq!((m.grid.is_none(), m.shard, m.wall_seconds), (true, None, 0.0));
        assert!(m.differences(&marker()).is_empty());
        for bad in [r#"{"index":0,"count":2}"#, r#"{"index":3,"count":2}"#, r#"{"index":1,"count":0}"#] {
            assert!(serde_json::from_str::<Shard>(bad).is_err(), "{bad} is no shard");
        }
        let mut other_data = marker();
        other_data.fingerprint.bytes = 11;
        assert_eq!(m.differences(&other_data), vec!["fingerprint.bytes: 10 vs 11".to_string()]);
    }
}
