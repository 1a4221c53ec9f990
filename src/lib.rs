//! cimnet: the multi-task multimodal sentiment and emotion model of Akhtar et al.
//! (NAACL 2019), with a plain f64 CPU reference (src/cpu) and a WGSL GPU engine.
//! The contract every part follows is MODEL.md (summarised in the README).

pub mod batch;
pub mod config;
pub mod npz;
pub mod cpu;
pub mod gpu;
pub mod params;
