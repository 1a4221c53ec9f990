//! The WGSL GPU engine: one launcher module per shader in shaders/.

pub mod gru;
