//! `agentd knowledge add PATH…`: uploads files (folders are walked) to a running server's knowledge
//! base, shows the progress on standard error, and waits until each is processed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Client, ServerArgs};

#[derive(Subcommand)]
pub enum KnowledgeCommand {
    /// Upload files or folders (walked, hidden entries skipped) and wait for them to be processed.
    Add {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Metadata for every upload, as a JSON object.
        #[arg(long)]
        metadata: Option<String>,
        /// Return once uploaded, without waiting for processing.
        #[arg(long)]
        no_wait: bool,
    },
}

/// The content type of a file, by its extension (the server reads it by the same rule).
fn media_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("md" | "markdown") => "text/markdown",
        Some("html" | "htm") => "text/html",
        Some("json" | "jsonl") => "application/json",
        Some("csv") => "text/csv",
        Some("pdf") => "application/pdf",
        _ => "text/plain",
    }
}

/// Every file under `paths`, in a stable order.
fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_file() {
            found.push(path.clone());
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        entries.sort();
        found.extend(files(&entries)?);
    }
    Ok(found)
}

/// A multipart body with the file (and metadata); returns its content type and bytes.
fn multipart(path: &Path, bytes: &[u8], metadata: Option<&str>) -> (String, Vec<u8>) {
    // 32 random hex characters: no file holds them by chance.
    let boundary = format!(
        "agentd-{}",
        &agentd_core::OneTimeToken::generate().reveal()[..32]
    );
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("upload")
        .replace('"', "");
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: {}\r\n\r\n",
            media_type(path)
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n");
    if let Some(metadata) = metadata {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{metadata}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A one-line progress bar on standard error.
fn progress(done: usize, total: usize, what: &str) {
    let width = 24;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
    let mut err = std::io::stderr();
    let _ = write!(err, "\r[{bar}] {done}/{total} {what:<40.40}");
    let _ = err.flush();
}

/// Runs a `knowledge` command. Fails (after trying every file) if any upload or processing failed.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(server: ServerArgs, command: KnowledgeCommand) -> anyhow::Result<()> {
    let KnowledgeCommand::Add {
        paths,
        metadata,
        no_wait,
    } = command;
    if let Some(metadata) = &metadata {
        let parsed: Value = serde_json::from_str(metadata).context("--metadata is not JSON")?;
        anyhow::ensure!(parsed.is_object(), "--metadata must be a JSON object");
    }
    let client = Client::new(server);
    let files = files(&paths)?;
    let total = files.len();
    let mut uploaded = Vec::new();
    let mut failures = 0;
    for (index, path) in files.iter().enumerate() {
        progress(index, total, &format!("uploading {}", path.display()));
        let outcome = async {
            let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            let (content_type, body) = multipart(path, &bytes, metadata.as_deref());
            client
                .send(
                    client
                        .http
                        .post(client.url("/knowledge/content"))
                        .header("content-type", content_type)
                        .body(body),
                )
                .await
        }
        .await;
        match outcome {
            Ok(content) => uploaded.push((path.clone(), content)),
            Err(error) => {
                failures += 1;
                eprintln!("\r{}: {error:#}", path.display());
            }
        }
    }
    progress(total, total, "uploaded");
    eprintln!();
    for (done, (path, content)) in uploaded.into_iter().enumerate() {
        let id = content["id"].as_str().unwrap_or_default().to_owned();
        let mut status = content.clone();
        if !no_wait {
            while status["status"] == "processing" {
                progress(done, total, &format!("processing {}", path.display()));
                tokio::time::sleep(Duration::from_millis(200)).await;
                status = client
                    .send(
                        client
                            .http
                            .get(client.url(&format!("/knowledge/content/{id}/status"))),
                    )
                    .await?;
            }
        }
        let state = status["status"].as_str().unwrap_or("unknown");
        if state == "failed" {
            failures += 1;
        }
        let detail = match state {
            "failed" => format!(
                ": {}",
                status["status_message"]
                    .as_str()
                    .unwrap_or("no reason given")
            ),
            "completed" => format!(" ({} chunks)", status["chunk_count"]),
            _ => String::new(),
        };
        let duplicate = if content["duplicate"] == true {
            " (already there)"
        } else {
            ""
        };
        println!("{id}  {state}{detail}{duplicate}  {}", path.display());
    }
    if !no_wait {
        progress(total, total, "done");
        eprintln!();
    }
    anyhow::ensure!(failures == 0, "{failures} of {total} files failed");
    Ok(())
}
