//! `agentd agents …`: a thin command-line client of a running server's registry API.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

/// Where the server is and how to authenticate.
#[derive(Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, env = "AGENTD_URL", default_value = "http://127.0.0.1:7777")]
    server: String,
    /// An API key with the scopes the command needs.
    #[arg(long, env = "AGENTD_KEY", hide_env_values = true)]
    key: String,
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Create an agent from flags, a JSON spec file, or both (flags win).
    Create {
        #[arg(long)]
        name: Option<String>,
        /// `provider/model`, e.g. `openai/gpt-4o-mini`.
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        instructions: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated tags.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// A JSON file with the agent spec (as `POST /agents` takes it).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List agents (a page; `--all` follows every page).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        health: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        name_prefix: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Follow the pages (`X-Next-Cursor`) to the end.
        #[arg(long)]
        all: bool,
        /// Print the JSON pages instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one agent as JSON.
    Get { id: String },
    /// Pause an agent.
    Pause { id: String },
    /// Resume a paused agent.
    Resume { id: String },
    /// Terminate an agent (its history is kept).
    Terminate { id: String },
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    /// A client of the server named by `server`.
    pub(crate) fn new(server: ServerArgs) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.server,
            key: server.key,
        }
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        Ok(self.send_reading_headers(request).await?.0)
    }

    /// Like `send`, with the answer's headers (a list's next page is in them).
    pub(crate) async fn send_reading_headers(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(Value, reqwest::header::HeaderMap)> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .context("reaching the server")?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or(Value::String(body))
        };
        if !status.is_success() {
            let detail = value["detail"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            let code = value["code"].as_str().unwrap_or("error");
            bail!("{} {code}: {detail}", status.as_u16());
        }
        Ok((value, headers))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }
}

/// Runs an `agents` command and prints its result on standard output.
#[allow(clippy::print_stdout)]
pub async fn run(server: ServerArgs, command: AgentsCommand) -> anyhow::Result<()> {
    let client = Client::new(server);
    match command {
        AgentsCommand::Create {
            name,
            model,
            instructions,
            description,
            tags,
            file,
        } => {
            let mut spec: Map<String, Value> = match file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a JSON object", path.display()))?
                }
                None => Map::new(),
            };
            for (field, value) in [
                ("name", name),
                ("model", model),
                ("instructions", instructions),
                ("description", description),
            ] {
                if let Some(value) = value {
                    spec.insert(field.to_owned(), json!(value));
                }
            }
            if !tags.is_empty() {
                spec.insert("tags".to_owned(), json!(tags));
            }
            let agent = client
                .send(client.http.post(client.url("/agents")).json(&spec))
                .await?;
            println!("{}", serde_json::to_string_pretty(&agent)?);
        }
        AgentsCommand::List {
            status,
            health,
            tag,
            name_prefix,
            limit,
            all,
            json,
        } => {
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (name, value) in [
                ("status", status),
                ("health", health),
                ("tag", tag),
                ("name_prefix", name_prefix),
            ] {
                if let Some(value) = value {
                    query.push((name, value));
                }
            }
            if !json {
                println!(
                    "{:<36}  {:<24}  {:<12}  {:<9}  version",
                    "id", "name", "status", "health"
                );
            }
            let mut cursor: Option<String> = None;
            loop {
                let mut page_query = query.clone();
                if let Some(cursor) = &cursor {
                    page_query.push(("cursor", cursor.clone()));
                }
                let (page, headers) = client
                    .send_reading_headers(client.http.get(client.url("/agents")).query(&page_query))
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&page)?);
                } else {
                    for agent in page.as_array().into_iter().flatten() {
                        println!(
                            "{:<36}  {:<24}  {:<12}  {:<9}  {}",
                            agent["id"].as_str().unwrap_or_default(),
                            agent["name"].as_str().unwrap_or_default(),
                            agent["status"].as_str().unwrap_or_default(),
                            agent["health"].as_str().unwrap_or_default(),
                            agent["version"],
                        );
                    }
                }
                cursor = headers
                    .get("x-next-cursor")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                if !all || cursor.is_none() {
                    break;
                }
            }
        }
        AgentsCommand::Get { id } => {
            let agent = client
                .send(client.http.get(client.url(&format!("/agents/{id}"))))
                .await?;
            println!("{}", serde_json::to_string_pretty(&agent)?);
        }
        AgentsCommand::Pause { id } => act(&client, &id, "pause").await?,
        AgentsCommand::Resume { id } => act(&client, &id, "resume").await?,
        AgentsCommand::Terminate { id } => act(&client, &id, "terminate").await?,
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn act(client: &Client, id: &str, action: &str) -> anyhow::Result<()> {
    let agent = client
        .send(
            client
                .http
                .post(client.url(&format!("/agents/{id}/{action}"))),
        )
        .await?;
    println!(
        "{} {}: {}",
        agent["id"].as_str().unwrap_or(id),
        action,
        agent["status"].as_str().unwrap_or_default()
    );
    Ok(())
}
