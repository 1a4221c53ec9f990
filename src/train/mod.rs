//! Training, evaluation, model selection, checkpoints and reports.

pub mod curve;
pub mod engine;
pub mod evaluate;
pub mod grid;
pub mod group;
pub mod heatmap;
pub mod metrics;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod source;
