//! # franz-codegen
//!
//! Reads our protocol definitions in `protocol-specs/` ([`spec`]) and writes
//! franz-protocol's message types ([`generate`]) into
//! `crates/franz-protocol/src/messages/`. The output is committed, so a
//! generator change shows up in review; a test in this crate fails when the
//! committed output is stale, and another cross-checks the specs against
//! Apache Kafka's reference JSON.

pub mod generate;
pub mod spec;

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Parses every `protocol-specs/*.spec`, sorted by API key.
pub fn load_specs(dir: &Path) -> Result<Vec<spec::ApiSpec>, String> {
    let mut apis = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("spec") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        apis.push(spec::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    apis.sort_by_key(|a| a.key);
    Ok(apis)
}

/// Where generated files go.
pub fn output_dir() -> PathBuf {
    workspace_root().join("crates/franz-protocol/src/messages")
}
