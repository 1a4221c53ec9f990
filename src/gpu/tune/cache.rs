//! The tuner's cache: kernels.json in the user's cache directory, one entry per
//! (adapter, driver, backend, cimnet version, kernel sources, shape class). A
//! corrupt or foreign file is ignored with a notice and replaced.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{KernelChoice, Race, TuneEvent};
use crate::gpu::context::GpuContext;
use crate::gpu::pipelines::Shader;
use crate::gpu::profile::DeviceProfile;

/// `$CIMNET_CACHE_DIR`, else the platform's user cache directory + "cimnet".
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("CIMNET_CACHE_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => dirs::cache_dir().map(|d| d.join("cimnet")),
    }
}

/// The cache file in a cache directory.
pub fn cache_file(dir: &Path) -> PathBuf {
    dir.join("kernels.json")
}

const CACHE_FORMAT: u32 = 1;

/// kernels.json: one entry per (adapter, driver, backend, cimnet version, kernel
/// sources, shape class).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    /// Kept as JSON so that an entry this version cannot read is skipped, not fatal.
    entries: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CacheEntry {
    pub(super) key: CacheKey,
    pub(super) choice: KernelChoice,
    pub(super) race: Race,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CacheKey {
    adapter: String,
    driver: String,
    backend: String,
    cimnet: String,
    /// xxh3-64 of every module's WGSL as this device compiles it: a build whose
    /// kernels differ (same version, another commit) races again.
    kernels: String,
    shape: String,
}

pub(super) fn key(ctx: &GpuContext, shape: &str) -> CacheKey {
    let p = &ctx.profile;
    CacheKey {
        adapter: p.name.clone(),
        driver: p.driver.clone(),
        backend: format!("{:?}", p.backend),
        cimnet: env!("CARGO_PKG_VERSION").to_string(),
        kernels: kernels_fingerprint(p),
        shape: shape.to_string(),
    }
}

/// xxh3-64 (16 hex digits) of every module's source as `profile`'s device compiles it.
fn kernels_fingerprint(profile: &DeviceProfile) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for shader in Shader::ALL {
        h.update(shader.source_for(profile).as_bytes());
    }
    format!("{:016x}", h.digest())
}

pub(super) fn read_cache(path: &Path, on: &mut dyn FnMut(&TuneEvent)) -> Vec<serde_json::Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            on(&TuneEvent::Notice(format!("kernel cache {}: {e}; ignored", path.display())));
            return Vec::new();
        }
    };
    match serde_json::from_str::<CacheFile>(&text) {
        Ok(f) if f.format == CACHE_FORMAT => f.entries,
        Ok(f) => {
            on(&TuneEvent::Notice(format!(
                "kernel cache {} has format {} (this cimnet writes {CACHE_FORMAT}); ignored and replaced",
                path.display(),
                f.format
            )));
            Vec::new()
        }
        Err(e) => {
            on(&TuneEvent::Notice(format!("kernel cache {} is corrupt ({e}); ignored and replaced", path.display())));
            Vec::new()
        }
    }
}

pub(super) fn lookup(entries: &[serde_json::Value], k: &CacheKey) -> Option<CacheEntry> {
    entries.iter().filter_map(|v| serde_json::from_value::<CacheEntry>(v.clone()).ok()).find(|e| &e.key == k)
}

pub(super) fn store(path: &Path, entry: CacheEntry, on: &mut dyn FnMut(&TuneEvent)) {
    let mut entries = read_cache(path, &mut |_| {});
    entries.retain(|v| serde_json::from_value::<CacheEntry>(v.clone()).map_or(true, |e| e.key != entry.key));
    match serde_json::to_value(&entry) {
        Ok(v) => entries.push(v),
        Err(e) => return on(&TuneEvent::Notice(format!("kernel cache entry not written: {e}"))),
    }
    let file = CacheFile { format: CACHE_FORMAT, entries };
    let result = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other).and_then(|bytes| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::params::write_atomic(path, &bytes)
    });
    if let Err(e) = result {
        on(&TuneEvent::Notice(format!("kernel cache {} not written: {e}", path.display())));
    }
}
