//! The bundle's OCI spec (`config.json`) as containerd wrote it, read and rewritten as JSON
//! so that fields revive does not know survive a rewrite untouched.

use std::path::Path;

use crate::error::{Error, Result};

/// The spec's file in a bundle.
pub const CONFIG_FILE: &str = "config.json";

pub fn read_spec(bundle: &Path) -> Result<serde_json::Value> {
    let config = bundle.join(CONFIG_FILE);
    let text =
        std::fs::read(&config).map_err(Error::io(format!("reading {}", config.display())))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::InvalidArgument(format!("invalid {}: {e}", config.display())))
}

/// Replaces the bundle's spec atomically (a new file renamed over the old).
pub fn write_spec(bundle: &Path, spec: &serde_json::Value) -> Result<()> {
    let config = bundle.join(CONFIG_FILE);
    let tmp = bundle.join(".config.json.revive");
    let data = serde_json::to_vec(spec).expect("a JSON value serializes");
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &config))
        .map_err(Error::io(format!("rewriting {}", config.display())))
}

/// Whether the spec gives the container a namespace of `kind` of its own (an entry without a
/// path; one with a path is joined).
pub fn has_own_namespace(spec: &serde_json::Value, kind: &str) -> bool {
    spec["linux"]["namespaces"].as_array().is_some_and(|nss| {
        nss.iter()
            .any(|ns| ns["type"] == kind && ns["path"].as_str().unwrap_or("").is_empty())
    })
}
