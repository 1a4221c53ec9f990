//! `cimnet kernels --dump DIR`: every shader module exactly as the driver
//! compiles it (`Shader::source()`: the shared prelude + the family's body), one
//! file per module, each under a header naming where it comes from.

use std::path::{Path, PathBuf};

use super::pipelines::Shader;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path} exists; dump into an empty or new directory (nothing is overwritten)")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The file `cimnet kernels --dump` writes for a module.
pub fn dumped(shader: Shader) -> String {
    format!(
        "// cimnet {}: WGSL module `{}` as the driver compiles it: the shared prelude\n\
         // (src/gpu/wgsl.rs) followed by the family body (shaders/{}{}.wgsl).\n\
         // Written by `cimnet kernels --dump`; edit those sources, not this file.\n\n{}",
        env!("CARGO_PKG_VERSION"),
        shader.name(),
        if shader.generated() { "generated/" } else { "" },
        shader.name(),
        shader.source()
    )
}

/// Write every module into `dir` (created if needed) as `<name>.wgsl`; refuses
/// before writing anything if one of the files exists. Returns the files written.
pub fn dump(dir: &Path) -> Result<Vec<PathBuf>, DumpError> {
    let files: Vec<(Shader, PathBuf)> =
        Shader::ALL.iter().map(|&s| (s, dir.join(format!("{}.wgsl", s.name())))).collect();
    if let Some((_, path)) = files.iter().find(|(_, p)| p.exists()) {
        return Err(DumpError::Exists { path: path.clone() });
    }
    std::fs::create_dir_all(dir).map_err(|source| DumpError::Io { path: dir.to_path_buf(), source })?;
    for (s, path) in &files {
        crate::params::write_atomic(path, dumped(*s).as_bytes())
            .map_err(|source| DumpError::Io { path: path.clone(), source })?;
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}
