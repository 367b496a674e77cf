//! Long-term memory in runs: the user's memories given to the model as context; automatic memory,
//! where after a completed run the model picks out new facts about the user, which are stored as that
//! user's memories and so reach the next run in any session; and agentic memory, where the model gets
//! tools to add, change and delete the user's memories itself.

use std::sync::Arc;

use agentd_core::memory::Memory;
use agentd_core::run::{ChatMessage, Run, Usage};
use agentd_core::{AgentId, MemoryId, TenantId};
use agentd_models::{ModelEvent, ModelProvider, ModelRequest};
use agentd_store::{MemoryFilter, MemorySort, MemoryStart, Store};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::memories::{MemoryPatch, MemoryService, NewMemory};
use crate::tools::ServerTool;
use crate::Error;

/// How many of a user's memories (the most recently updated) a run sees.
const CONTEXT_MEMORIES: u32 = 50;
/// How many new memories one run may store.
const MAX_NEW_MEMORIES: usize = 10;

/// What a run does with its user's memories.
#[derive(Clone)]
pub(crate) struct MemoryPlan {
    pub(crate) service: Arc<MemoryService>,
    pub(crate) tenant: TenantId,
    pub(crate) user_id: String,
    /// Whether to store new facts after the run.
    pub(crate) automatic: bool,
    /// The memories the run started with (to tell the model what is known already).
    pub(crate) known: Vec<Memory>,
}

impl MemoryPlan {
    fn known_texts(&self) -> Vec<String> {
        self.known.iter().map(|m| m.memory.clone()).collect()
    }
}

/// The user's most recently updated memories.
pub(crate) async fn recall(
    store: &dyn Store,
    tenant: TenantId,
    user_id: &str,
) -> Result<Vec<Memory>, Error> {
    let filter = MemoryFilter {
        user_id: Some(user_id.to_owned()),
        ..Default::default()
    };
    let (memories, _) = store
        .list_memories(
            tenant,
            &filter,
            MemorySort::default(),
            &MemoryStart::Offset(0),
            CONTEXT_MEMORIES,
        )
        .await?;
    Ok(memories)
}

/// The system message that gives the model what is known about the user; `with_ids` shows each
/// memory's id, for the memory tools.
pub(crate) fn context_message(memories: &[Memory], with_ids: bool) -> Option<ChatMessage> {
    if memories.is_empty() && !with_ids {
        return None;
    }
    let mut content = String::from("What you know about the user from earlier conversations:\n");
    if memories.is_empty() {
        content.push_str("(nothing yet)\n");
    }
    for memory in memories {
        content.push_str("- ");
        if with_ids {
            content.push_str(&format!("[{}] ", memory.id));
        }
        content.push_str(&memory.memory);
        content.push('\n');
    }
    if with_ids {
        content.push_str(
            "Keep these up to date with the add_memory, update_memory and delete_memory tools when \
             the user tells you something lasting about themselves.\n",
        );
    }
    Some(ChatMessage::System { content })
}

/// What a memory tool does.
#[derive(Clone, Copy)]
enum MemoryOp {
    Add,
    Update,
    Delete,
}

/// One of the tools agentic memory gives the model, bound to the run's tenant, user and agent.
pub(crate) struct MemoryTool {
    op: MemoryOp,
    plan: MemoryPlan,
    agent_id: AgentId,
}

/// The three memory tools for a run.
pub(crate) fn memory_tools(plan: &MemoryPlan, agent_id: AgentId) -> Vec<Arc<dyn ServerTool>> {
    [MemoryOp::Add, MemoryOp::Update, MemoryOp::Delete]
        .into_iter()
        .map(|op| {
            Arc::new(MemoryTool {
                op,
                plan: plan.clone(),
                agent_id,
            }) as Arc<dyn ServerTool>
        })
        .collect()
}

impl MemoryTool {
    /// One of this user's memories, by the id the model gives.
    async fn own_memory(&self, arguments: &Value) -> Result<Memory, String> {
        let id: MemoryId = arguments["memory_id"]
            .as_str()
            .and_then(|id| id.trim().trim_matches(['[', ']']).parse().ok())
            .ok_or("`memory_id` must be the id of one of the user's memories")?;
        match self.plan.service.get(self.plan.tenant, id).await {
            Ok(memory) if memory.user_id == self.plan.user_id => Ok(memory),
            _ => Err(format!("the user has no memory {id}")),
        }
    }
}

#[async_trait]
impl ServerTool for MemoryTool {
    fn name(&self) -> &str {
        match self.op {
            MemoryOp::Add => "add_memory",
            MemoryOp::Update => "update_memory",
            MemoryOp::Delete => "delete_memory",
        }
    }

    fn description(&self) -> &str {
        match self.op {
            MemoryOp::Add => "Remember a lasting fact about the user (one short sentence).",
            MemoryOp::Update => "Change one of the user's memories, named by its id.",
            MemoryOp::Delete => "Forget one of the user's memories, named by its id.",
        }
    }

    fn parameters(&self) -> Value {
        match self.op {
            MemoryOp::Add => json!({
                "type": "object",
                "properties": {
                    "memory": {"type": "string", "description": "The fact, in the third person."},
                    "topics": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["memory"]
            }),
            MemoryOp::Update => json!({
                "type": "object",
                "properties": {
                    "memory_id": {"type": "string"},
                    "memory": {"type": "string", "description": "The new text."}
                },
                "required": ["memory_id", "memory"]
            }),
            MemoryOp::Delete => json!({
                "type": "object",
                "properties": {"memory_id": {"type": "string"}},
                "required": ["memory_id"]
            }),
        }
    }

    async fn call(&self, arguments: Value) -> Result<String, String> {
        let text = || {
            arguments["memory"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "`memory` must be a string".to_owned())
        };
        match self.op {
            MemoryOp::Add => {
                let topics = arguments["topics"]
                    .as_array()
                    .map(|topics| {
                        topics
                            .iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let memory = self
                    .plan
                    .service
                    .create(
                        self.plan.tenant,
                        NewMemory {
                            memory: text()?,
                            user_id: Some(self.plan.user_id.clone()),
                            agent_id: Some(self.agent_id.to_string()),
                            team_id: None,
                            topics,
                            input: None,
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("Stored memory {}.", memory.id))
            }
            MemoryOp::Update => {
                let memory = self.own_memory(&arguments).await?;
                let patch = MemoryPatch {
                    memory: Some(text()?),
                    ..Default::default()
                };
                self.plan
                    .service
                    .update(self.plan.tenant, memory.id, patch)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("Updated memory {}.", memory.id))
            }
            MemoryOp::Delete => {
                let memory = self.own_memory(&arguments).await?;
                self.plan
                    .service
                    .delete(self.plan.tenant, memory.id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("Deleted memory {}.", memory.id))
            }
        }
    }
}

/// Asks the model which new facts about the user the run revealed and stores them. Returns the new
/// memories' texts and the tokens the request used.
pub(crate) async fn extract_and_store(
    plan: &MemoryPlan,
    provider: &Arc<dyn ModelProvider>,
    model: &str,
    run: &Run,
) -> Result<(Vec<String>, Usage), Error> {
    let mut transcript = String::new();
    for message in &run.messages {
        let (who, text) = match message {
            ChatMessage::User { content } => ("user", Some(content.as_str())),
            ChatMessage::Assistant { content, .. } => ("assistant", content.as_deref()),
            _ => continue,
        };
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            transcript.push_str(&format!("{who}: {text}\n"));
        }
    }
    let known_texts = plan.known_texts();
    let known = if known_texts.is_empty() {
        "(nothing yet)".to_owned()
    } else {
        known_texts
            .iter()
            .map(|m| format!("- {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let instructions = format!(
        "You maintain long-term memories about a user. From the conversation below, list the \
         durable facts it reveals about the user (name, preferences, circumstances, plans) that are \
         not already known. Answer with a JSON array of short sentences in the third person, such as \
         [\"The user's name is Ann.\"], and nothing else; answer [] if there is nothing new.\n\n\
         Already known:\n{known}"
    );
    let request = ModelRequest {
        model: model.to_owned(),
        messages: vec![
            ChatMessage::System {
                content: instructions,
            },
            ChatMessage::User {
                content: transcript,
            },
        ],
        ..Default::default()
    };
    let mut stream = provider.stream(request).await.map_err(Error::Provider)?;
    let mut text = String::new();
    let mut usage = Usage::default();
    while let Some(event) = stream.next().await {
        match event.map_err(Error::Provider)? {
            ModelEvent::Text(delta) => text.push_str(&delta),
            ModelEvent::Usage(reported) => usage += reported,
            _ => {}
        }
    }
    let mut stored = Vec::new();
    for fact in parse_facts(&text)
        .into_iter()
        .filter(|fact| !known_texts.contains(fact))
        .take(MAX_NEW_MEMORIES)
    {
        let memory = plan
            .service
            .create(
                plan.tenant,
                NewMemory {
                    memory: fact,
                    user_id: Some(plan.user_id.clone()),
                    agent_id: Some(run.agent_id.to_string()),
                    team_id: None,
                    topics: Vec::new(),
                    input: Some(run.input.chars().take(2000).collect()),
                },
            )
            .await?;
        stored.push(memory.memory);
    }
    Ok((stored, usage))
}

/// The facts in the model's answer: the first JSON array of strings in it (models like to wrap it in
/// a code fence or a sentence). Anything else is no facts.
fn parse_facts(answer: &str) -> Vec<String> {
    let (Some(start), Some(end)) = (answer.find('['), answer.rfind(']')) else {
        return Vec::new();
    };
    if end < start {
        return Vec::new();
    }
    serde_json::from_str::<Vec<String>>(&answer[start..=end])
        .unwrap_or_default()
        .into_iter()
        .map(|fact| fact.trim().to_owned())
        .filter(|fact| !fact.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_facts;

    #[test]
    fn facts_are_read_from_the_first_json_array_in_the_answer() {
        assert_eq!(
            parse_facts("```json\n[\"The user is Ann.\", \" \"]\n```"),
            ["The user is Ann."]
        );
        assert!(parse_facts("nothing new").is_empty());
        assert!(parse_facts("[1, 2]").is_empty());
        assert!(parse_facts("] [").is_empty());
    }
}
