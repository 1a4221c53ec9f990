//! Training, evaluation, model selection, checkpoints and reports.

pub mod metrics;
