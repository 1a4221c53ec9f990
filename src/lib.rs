//! cimnet: the multi-task multimodal sentiment and emotion model of Akhtar et al.
//! (NAACL 2019), with a plain f64 CPU reference (src/cpu) and a WGSL GPU engine.
//! The contract every part follows is MODEL.md (summarised in the README).

pub mod batch;
pub mod bench;
pub mod config;
pub mod cpu;
pub mod data;
pub mod engine;
pub mod gpu;
pub mod grads;
pub mod npy;
pub mod npz;
pub mod output;
pub mod params;
pub mod train;
