//! What the harness's report-writing tools (revive-bench, revive-conformance) share: where
//! a report goes and what their exit status says.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Writes `tool`'s `report` to `path`, creating its directory, and says where on stderr.
pub fn write_report(tool: &str, path: &Path, report: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("{tool}: report written to {}", path.display());
    Ok(())
}

/// The exit status of `tool`'s run: 0 when its report is complete and clean (`Ok(true)`), 2
/// when complete but showing a shortfall it names (`Ok(false)`), 1 when the run itself
/// failed (said on stderr).
pub fn exit_code(tool: &str, outcome: Result<bool>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(err) => {
            eprintln!("{tool}: {err:#}");
            ExitCode::FAILURE
        }
    }
}
