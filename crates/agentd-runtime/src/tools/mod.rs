//! Server tools: tools that run inside agentd when a model calls them. Client-side tools (executed by
//! the caller, which pauses the run) and MCP tools are resolved by the run engine; this module holds
//! the built-ins and the registry that names them.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

mod current_time;
mod http_fetch;
pub mod mcp;

pub use current_time::CurrentTime;
pub use http_fetch::{Fetched, HttpFetch, HttpFetchConfig};

/// A tool executed by the server.
#[async_trait]
pub trait ServerTool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// JSON Schema of its arguments.
    fn parameters(&self) -> Value;
    /// Runs the tool. `Err` carries a message for the model (the run goes on).
    async fn call(&self, arguments: Value) -> Result<String, String>;
}

/// The server tools an agent may list by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    by_name: BTreeMap<String, Arc<dyn ServerTool>>,
}

impl ToolRegistry {
    /// The built-in tools: `current_time` and `http_fetch`.
    pub fn builtin(fetch: HttpFetchConfig) -> Self {
        let mut registry = Self::default();
        registry.insert(Arc::new(CurrentTime));
        registry.insert(Arc::new(HttpFetch::new(fetch)));
        registry
    }

    pub fn insert(&mut self, tool: Arc<dyn ServerTool>) {
        self.by_name.insert(tool.name().to_owned(), tool);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn ServerTool>> {
        self.by_name.get(name).cloned()
    }

    /// The tool names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}
