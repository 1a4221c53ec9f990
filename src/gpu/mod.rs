//! The GPU engine: a context (device, queue, pipeline cache), buffer helpers with
//! one readback path, and one launcher file per shader of `shaders/`. Each launcher
//! builds a [`Launch`] (kernel + cached bind group + params uniform) that records
//! its dispatch into any compute pass, so a whole training step can be one command
//! buffer with no readback. Only this module talks to wgpu.
//! Letters: B batch, U padded utterances, K input width, O / D output width,
//! H hidden, R representation width.

pub mod adam;
pub mod attention;
pub mod buffers;
pub mod check;
pub mod context;
pub mod dropout;
pub mod dump;
pub mod gather;
pub mod gru;
pub mod heads;
pub mod launch;
pub mod linear;
pub mod model;
pub mod pipelines;
pub mod profile;
pub mod texture;
pub mod timing;
pub mod tune;
pub mod wgsl;

pub use context::{GpuContext, GpuError, GpuOptions};
pub use launch::{run, Launch, Recordable};
pub use pipelines::{Bind, PipelineCache, Recorder, Shader};
