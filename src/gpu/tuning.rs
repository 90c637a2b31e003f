//! Which of several correct kernel paths runs where more than one could (the scalar kernel
//! or the cooperative-matrix one, say): a choice per adapter, settled by a short timing run
//! (`tessera tune`, `crate::suite::tune`) and cached on disk, never guessed. A kernel's
//! `Auto` path asks [`super::Gpu::tuned_choice`]; with no measurement it takes its portable
//! path.
//!
//! The cache is one JSON file: `$TESSERA_TUNE_CACHE`, else `$XDG_CACHE_HOME/tessera/tuning.json`,
//! else `$HOME/.cache/tessera/tuning.json`. Entries are keyed by adapter, driver and tessera
//! version, so a driver update or a new release measures again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::AdapterReport;
use crate::error::{Error, Result};

/// A choice between kernel paths that a timing run settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tunable {
    /// f16 products that fill a 128 × 128 tile: `wide` or `coop`.
    MatmulF16,
    /// f16 prefill attention: `scalar` or `coop`.
    FlashAttentionF16,
    /// f16 convolutions: `scalar` or `coop`.
    Conv2dF16,
}

impl Tunable {
    pub const ALL: [Tunable; 3] = [
        Tunable::MatmulF16,
        Tunable::FlashAttentionF16,
        Tunable::Conv2dF16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tunable::MatmulF16 => "matmul f16",
            Tunable::FlashAttentionF16 => "flash attention f16",
            Tunable::Conv2dF16 => "conv2d f16",
        }
    }
}

/// One settled choice and the measurements behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedChoice {
    /// The path that won: `wide`, `scalar`, `coop`.
    pub choice: String,
    /// The case that was timed (a `tessera check` case name, without the path).
    pub case: String,
    /// Each candidate path and its median seconds per call.
    pub seconds: BTreeMap<String, f64>,
}

/// The choices for one adapter.
pub type Tuning = BTreeMap<Tunable, TunedChoice>;

/// Where the cache lives, if anywhere (no HOME and no override: nowhere).
pub fn cache_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TESSERA_TUNE_CACHE") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tessera").join("tuning.json"))
}

/// The cache key of an adapter: name, backend, driver and tessera's version.
pub fn cache_key(report: &AdapterReport) -> String {
    format!(
        "{} | {} | {} {} | tessera {}",
        report.name,
        report.backend,
        report.driver,
        report.driver_info,
        env!("CARGO_PKG_VERSION")
    )
}

type CacheFile = BTreeMap<String, Tuning>;

/// Cache files larger than this are not read (the file holds a few lines per adapter).
const MAX_CACHE_BYTES: u64 = 1 << 20;

fn read_cache() -> CacheFile {
    let Some(path) = cache_path() else {
        return CacheFile::new();
    };
    // A missing, unreadable, oversized or malformed cache is as good as none: the paths it
    // would choose are all correct, and `tessera tune` rewrites it.
    let small_file =
        std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= MAX_CACHE_BYTES);
    if !small_file {
        return CacheFile::new();
    }
    std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The cached choices for `report`'s adapter (empty when it was never tuned).
pub fn load(report: &AdapterReport) -> Tuning {
    read_cache().remove(&cache_key(report)).unwrap_or_default()
}

/// Stores `tuning` as the choices for `report`'s adapter, keeping other adapters' entries;
/// returns the file written.
pub fn save(report: &AdapterReport, tuning: &Tuning) -> Result<PathBuf> {
    let path = cache_path().ok_or_else(|| Error::Tuning {
        message: "no cache location: set TESSERA_TUNE_CACHE, XDG_CACHE_HOME or HOME".into(),
    })?;
    let mut cache = read_cache();
    cache.insert(cache_key(report), tuning.clone());
    let io = |what: &str, e: std::io::Error| Error::Tuning {
        message: format!("{what} {}: {e}", path.display()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the folder of", e))?;
    }
    let text = serde_json::to_string_pretty(&cache).map_err(|e| Error::Tuning {
        message: e.to_string(),
    })?;
    // Written beside (under a name of this process's own, as tuners may run side by side)
    // and renamed, so a reader never sees half a file.
    let partial = path.with_extension(format!("json.{}.partial", std::process::id()));
    std::fs::write(&partial, text).map_err(|e| io("writing", e))?;
    std::fs::rename(&partial, &path).map_err(|e| io("replacing", e))?;
    Ok(path)
}
