//! Long-term memory in runs: the user's memories given to the model as context, and automatic
//! memory, where after a completed run the model picks out new facts about the user, which are stored
//! as that user's memories and so reach the next run in any session.

use std::sync::Arc;

use agentd_core::memory::Memory;
use agentd_core::run::{ChatMessage, Run, Usage};
use agentd_core::TenantId;
use agentd_models::{ModelEvent, ModelProvider, ModelRequest};
use agentd_store::{MemoryFilter, MemorySort, MemoryStart, Store};
use futures::StreamExt;

use crate::memories::{MemoryService, NewMemory};
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
    pub(crate) known: Vec<String>,
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

/// The system message that gives the model what is known about the user.
pub(crate) fn context_message(memories: &[String]) -> Option<ChatMessage> {
    if memories.is_empty() {
        return None;
    }
    let mut content = String::from("What you know about the user from earlier conversations:\n");
    for memory in memories {
        content.push_str("- ");
        content.push_str(memory);
        content.push('\n');
    }
    Some(ChatMessage::System { content })
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
    let known = if plan.known.is_empty() {
        "(nothing yet)".to_owned()
    } else {
        plan.known
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
        .filter(|fact| !plan.known.contains(fact))
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
