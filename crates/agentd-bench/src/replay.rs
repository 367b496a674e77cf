//! A [`ScriptedModel`]'s answers, replayed fast. [`ReplayModel::record`] asks a scripted model once
//! for its streamed and its whole answer to a request, then serves those exact bytes from a minimal
//! HTTP/1.1 server that sets `TCP_NODELAY` and writes each response in one piece.
//!
//! Why: the scripted model (axum's `serve`, no `TCP_NODELAY`) writes a stream as one small write per
//! frame, so on a kept-alive connection Nagle's algorithm holds the second frame until the client's
//! delayed ACK, about 40 ms later. Every streamed answer then takes ~44 ms however fast the script is,
//! which hides what the benchmark is after: agentd's own cost per run. `--model scripted` measures
//! against the scripted model itself, to see that effect.

use std::net::SocketAddr;

use agentd_testkit::ScriptedModel;
use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head or body accepted.
const MAX_REQUEST: usize = 1 << 20;

/// A running replay server.
pub struct ReplayModel {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// The two recorded responses, head and body, ready to write.
struct Answers {
    streamed: Vec<u8>,
    whole: Vec<u8>,
}

impl ReplayModel {
    /// Records `model`'s answers to `streamed` and `whole` (requests to `/v1/chat/completions`) and
    /// serves them: a request whose JSON has `"stream": true` gets the streamed one.
    pub async fn record(
        model: &ScriptedModel,
        streamed: &Value,
        whole: &Value,
    ) -> anyhow::Result<ReplayModel> {
        let client = reqwest::Client::new();
        let url = format!("{}/v1/chat/completions", model.url());
        let mut answers = Vec::new();
        for request in [streamed, whole] {
            let response = client.post(&url).json(request).send().await?;
            if response.status() != 200 {
                bail!("the scripted model answered {}", response.status());
            }
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let body = response.bytes().await?;
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(&body);
            answers.push(answer);
        }
        let whole = answers.pop().context("the whole answer")?;
        let streamed = answers.pop().context("the streamed answer")?;
        let answers = std::sync::Arc::new(Answers { streamed, whole });

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve_connection(socket, answers.clone()));
            }
        });
        Ok(ReplayModel { addr, task })
    }

    /// `http://127.0.0.1:PORT`, like [`ScriptedModel::url`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ReplayModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the requests of one kept-alive connection until the client closes it.
async fn serve_connection(mut socket: TcpStream, answers: std::sync::Arc<Answers>) {
    let mut buffer = Vec::with_capacity(4096);
    loop {
        let Some((head_end, content_length)) = read_head(&mut socket, &mut buffer).await else {
            return;
        };
        let body_end = head_end + content_length;
        while buffer.len() < body_end {
            if !read_more(&mut socket, &mut buffer).await {
                return;
            }
        }
        let streamed = serde_json::from_slice::<Value>(&buffer[head_end..body_end])
            .is_ok_and(|request| request["stream"] == Value::Bool(true));
        buffer.drain(..body_end);
        let answer = if streamed {
            &answers.streamed
        } else {
            &answers.whole
        };
        if socket.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads until the request head is complete; returns where the body starts and its length.
async fn read_head(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(usize, usize)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]);
            let content_length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if content_length > MAX_REQUEST {
                return None;
            }
            return Some((end + 4, content_length));
        }
        if buffer.len() > MAX_REQUEST || !read_more(socket, buffer).await {
            return None;
        }
    }
}

/// Appends what the socket has; false when it closed or failed.
async fn read_more(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match socket.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}
