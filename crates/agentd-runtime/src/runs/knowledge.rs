//! The knowledge base in runs: a `search_knowledge` tool for the model (agentic RAG), and the chunks
//! best matching the run's message given to the model up front (classic RAG). Every search a run
//! makes is kept as a reference and reported in `RunCompleted`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use agentd_core::run::{ChatMessage, KnowledgeReference, KnowledgeReferences};
use async_trait::async_trait;
use serde_json::{json, Value};

use crate::knowledge::{KnowledgeService, SearchRequest};
use crate::tools::ServerTool;
use crate::{Error, Principal};

/// Chunks per search unless the agent says otherwise.
const DEFAULT_RESULTS: u32 = 5;
/// The most chunks one search may give a run.
const MAX_RESULTS: u32 = 20;

/// What a run does with the knowledge base, and the searches it made.
#[derive(Clone)]
pub(crate) struct KnowledgePlan {
    pub(crate) service: Arc<KnowledgeService>,
    /// Who started the run: searches are the tenant's and are metered to this principal.
    pub(crate) principal: Principal,
    pub(crate) max_results: u32,
    /// The searches so far, for `RunCompleted`.
    pub(crate) references: Arc<Mutex<Vec<KnowledgeReferences>>>,
}

impl KnowledgePlan {
    pub(crate) fn new(
        service: Arc<KnowledgeService>,
        principal: Principal,
        max_results: Option<u32>,
    ) -> Self {
        Self {
            service,
            principal,
            max_results: max_results.unwrap_or(DEFAULT_RESULTS).clamp(1, MAX_RESULTS),
            references: Arc::default(),
        }
    }

    /// Searches (hybrid) and records the search as a reference.
    async fn search(&self, query: &str) -> Result<KnowledgeReferences, Error> {
        let started = Instant::now();
        let outcome = self
            .service
            .search(
                &self.principal,
                SearchRequest {
                    query: query.to_owned(),
                    search_type: None,
                    max_results: Some(self.max_results),
                    page: None,
                    filters: Default::default(),
                },
            )
            .await?;
        let found = KnowledgeReferences {
            query: query.to_owned(),
            references: outcome
                .hits
                .into_iter()
                .map(|hit| KnowledgeReference {
                    content_id: hit.content_id.to_string(),
                    name: hit.content_name,
                    chunk_id: hit.chunk_id.to_string(),
                    content: hit.text,
                    score: hit.score,
                    meta_data: hit.metadata,
                })
                .collect(),
            time: started.elapsed().as_secs_f64(),
        };
        self.references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(found.clone());
        Ok(found)
    }

    /// The searches the run made, in order.
    pub(crate) fn take_references(&self) -> Vec<KnowledgeReferences> {
        std::mem::take(&mut *self.references.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The system message with the chunks best matching `message`, or `None` when nothing matches.
    /// A failing search leaves the run without them rather than failing it.
    pub(crate) async fn context_message(&self, message: &str) -> Option<ChatMessage> {
        if message.trim().is_empty() {
            return None;
        }
        let found = match self.search(message).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "knowledge for the context not found");
                return None;
            }
        };
        if found.references.is_empty() {
            return None;
        }
        Some(ChatMessage::System {
            content: format!(
                "Use this knowledge to answer when it is relevant:\n{}",
                render(&found)
            ),
        })
    }
}

/// The chunks as numbered passages with their source.
fn render(found: &KnowledgeReferences) -> String {
    found
        .references
        .iter()
        .enumerate()
        .map(|(i, r)| format!("[{}] ({}) {}", i + 1, r.name, r.content.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The `search_knowledge` tool of one run.
pub(crate) struct SearchKnowledge {
    pub(crate) plan: KnowledgePlan,
}

#[async_trait]
impl ServerTool for SearchKnowledge {
    fn name(&self) -> &str {
        "search_knowledge"
    }

    fn description(&self) -> &str {
        "Search the knowledge base for passages about a question; answer from what it returns."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look for."}},
            "required": ["query"]
        })
    }

    async fn call(&self, arguments: Value) -> Result<String, String> {
        let query = arguments["query"]
            .as_str()
            .filter(|q| !q.trim().is_empty())
            .ok_or("`query` must be a non-empty string")?;
        let found = self.plan.search(query).await.map_err(|e| e.to_string())?;
        if found.references.is_empty() {
            return Ok("No passages found.".to_owned());
        }
        Ok(render(&found))
    }
}
