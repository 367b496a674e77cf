//! The reference MCP server `@modelcontextprotocol/server-everything`, for tests of MCP tools.
//!
//! It is installed once, pinned, with `npm install --prefix <target>/mcp-everything`, and run from
//! there (`npx -y` would ask the registry on every start). `AGENTD_TEST_MCP_EVERYTHING` may name an
//! installed `mcp-server-everything` instead. Without Node.js and npm the tests that need the server
//! are skipped with a note, except under `CI=true`, where they fail.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Instant;

/// The cargo target directory (where the server, and the Python venvs, are installed).
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

const PACKAGE: &str = "@modelcontextprotocol/server-everything@2026.8.31";

static EVERYTHING: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The `mcp-server-everything` executable, installed on first use; `None` (with a note) when it
/// cannot be had outside CI.
pub fn everything() -> Option<PathBuf> {
    match EVERYTHING.get_or_init(find_or_install) {
        Ok(bin) => Some(bin.clone()),
        Err(reason) => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            if in_ci {
                panic!("CI=true but {PACKAGE} is unavailable ({reason}); the MCP suite is required in CI");
            }
            eprintln!("note: {PACKAGE} is unavailable ({reason}); skipping this MCP test");
            None
        }
    }
}

fn find_or_install() -> Result<PathBuf, String> {
    // The server is a Node.js script, wherever it comes from.
    runs("node")?;
    if let Some(bin) = std::env::var_os("AGENTD_TEST_MCP_EVERYTHING") {
        return Ok(PathBuf::from(bin));
    }
    let target = target_dir();
    let prefix = target.join("mcp-everything");
    let bin = prefix.join("node_modules/.bin/mcp-server-everything");
    if bin.exists() {
        return Ok(bin);
    }
    runs("npm")?;
    // Installed beside, then renamed into place, so concurrent test runs never see half of it.
    let partial = target.join(format!("mcp-everything.partial-{}", std::process::id()));
    let started = Instant::now();
    let output = std::process::Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&partial)
        .arg(PACKAGE)
        .output()
        .map_err(|error| format!("npm install: {error}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(format!(
            "npm install {PACKAGE} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    if std::fs::rename(&partial, &prefix).is_err() {
        // Another run got there first.
        let _ = std::fs::remove_dir_all(&partial);
    }
    eprintln!(
        "installed {PACKAGE} into {} in {:?}",
        prefix.display(),
        started.elapsed()
    );
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} is missing after npm install", bin.display()))
    }
}

fn runs(tool: &str) -> Result<(), String> {
    let status = std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!("`{tool} --version` does not run")),
    }
}
