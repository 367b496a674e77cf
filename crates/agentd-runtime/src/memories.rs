//! User memories: facts about a user kept across sessions, scoped to the tenant and the user (and
//! optionally to the agent or team that learned them). Created, listed with filters and pages,
//! changed and deleted over the API; runs will read and write them through this service too.

use std::sync::Arc;

use agentd_core::memory::Memory;
use agentd_core::{MemoryId, TenantId};
use agentd_store::{
    MemoryFilter, MemorySort, MemorySortField, MemoryStart, Store, UserMemoryStats,
};

use crate::page::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::{Error, Principal};

/// The longest memory text, in characters (AgentOS's limit).
pub const MAX_MEMORY_CHARS: usize = 5_000;
/// The longest `input` a memory keeps, in characters.
pub const MAX_INPUT_CHARS: usize = 20_000;
/// The longest feedback, in characters.
pub const MAX_FEEDBACK_CHARS: usize = 5_000;
/// The longest user, agent or team id, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// The longest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 100;
/// The most topics one memory has.
pub const MAX_TOPICS: usize = 50;
/// The longest text search, in characters.
pub const MAX_SEARCH_CHARS: usize = 1_000;

/// The most memories of one user that one optimization merges.
const MAX_OPTIMIZED: u32 = 1_000;

/// What merging a user's memories did (or, without `apply`, would do).
#[derive(Clone, Debug)]
pub struct OptimizeReport {
    /// The user's memories after: the merged one (unsaved without `apply`), or the unchanged ones
    /// when there was nothing to merge.
    pub memories: Vec<Memory>,
    pub memories_before: u64,
    pub memories_after: u64,
    /// Estimated tokens of the memories' texts (about four characters a token).
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// Whether the merged memory replaced the old ones.
    pub applied: bool,
}

/// A token estimate for text: about four characters a token, as OpenAI's guidance has it.
fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// A new memory.
#[derive(Clone, Debug, Default)]
pub struct NewMemory {
    pub memory: String,
    /// Required: whom the memory is about.
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub team_id: Option<String>,
    pub topics: Vec<String>,
    pub input: Option<String>,
}

/// Changes to a memory: absent fields are kept; `Some(None)` clears an optional one. A memory's user
/// never changes.
#[derive(Clone, Debug, Default)]
pub struct MemoryPatch {
    pub memory: Option<String>,
    pub topics: Option<Vec<String>>,
    pub agent_id: Option<Option<String>>,
    pub team_id: Option<Option<String>>,
    pub input: Option<Option<String>>,
    pub feedback: Option<Option<String>>,
}

/// Which page of a list: AgentOS's page numbers (from 1), or a cursor from a previous page.
#[derive(Clone, Debug, Default)]
pub struct MemoryPageRequest {
    pub limit: Option<u32>,
    pub page: Option<u32>,
    pub cursor: Option<String>,
}

/// A page of memories.
#[derive(Clone, Debug)]
pub struct MemoryList {
    pub memories: Vec<Memory>,
    /// Memories matching the filter, on every page.
    pub total: u64,
    pub limit: u32,
    /// The page number, when the list was asked for by page (not by cursor).
    pub page: Option<u32>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// A page of per-user memory figures.
#[derive(Clone, Debug)]
pub struct MemoryStatsList {
    pub users: Vec<UserMemoryStats>,
    /// Users with memories, on every page.
    pub total: u64,
    pub limit: u32,
    pub page: u32,
}

/// The memory service.
pub struct MemoryService {
    store: Arc<dyn Store>,
}

impl MemoryService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Stores a new memory about a user.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant))]
    pub async fn create(&self, tenant: TenantId, new: NewMemory) -> Result<Memory, Error> {
        let user_id = new
            .user_id
            .ok_or_else(|| Error::invalid("user_id", "required: the user the memory is about"))?;
        check_id("user_id", &user_id)?;
        let now = agentd_core::now();
        let memory = Memory {
            tenant_id: tenant,
            id: MemoryId::new(),
            user_id,
            agent_id: checked_id("agent_id", new.agent_id)?,
            team_id: checked_id("team_id", new.team_id)?,
            memory: checked_memory(new.memory)?,
            topics: checked_topics(new.topics)?,
            input: checked_text("input", new.input, MAX_INPUT_CHARS)?,
            feedback: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_memory(&memory).await?;
        Ok(memory)
    }

    /// One memory of the tenant.
    pub async fn get(&self, tenant: TenantId, id: MemoryId) -> Result<Memory, Error> {
        self.store
            .get_memory(tenant, id)
            .await?
            .ok_or(Error::NotFound("memory"))
    }

    /// One memory `principal` reaches (see [`Principal::acting_user`]): another user's is not
    /// found, as another tenant's is.
    pub async fn get_for(&self, principal: &Principal, id: MemoryId) -> Result<Memory, Error> {
        let memory = self.get(principal.tenant_id, id).await?;
        match principal.own_user() {
            Some(own) if own != memory.user_id => Err(Error::NotFound("memory")),
            _ => Ok(memory),
        }
    }

    /// Memories matching `filter`, in `sort` order, by page number or by cursor.
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: MemoryFilter,
        sort: MemorySort,
        page: MemoryPageRequest,
    ) -> Result<MemoryList, Error> {
        let filter = checked_filter(filter)?;
        let limit = checked_limit(page.limit)?;
        let cursor = page.cursor.filter(|cursor| !cursor.is_empty());
        let (start, number) = match (cursor, page.page) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "cursor",
                    "give `page` or `cursor`, not both",
                ))
            }
            (Some(cursor), None) => (decode_cursor(&cursor, sort)?, None),
            (None, number) => {
                let number = checked_page(number)?;
                let offset = u64::from(number - 1) * u64::from(limit);
                (MemoryStart::Offset(offset), Some(number))
            }
        };
        let (mut memories, total) = self
            .store
            .list_memories(tenant, &filter, sort, &start, limit + 1)
            .await?;
        let has_more = memories.len() > limit as usize;
        memories.truncate(limit as usize);
        let next_cursor = has_more
            .then(|| memories.last().map(|last| encode_cursor(last, sort)))
            .flatten();
        Ok(MemoryList {
            memories,
            total,
            limit,
            page: number,
            next_cursor,
        })
    }

    /// Applies `patch`.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, memory.id = %id))]
    pub async fn update(
        &self,
        tenant: TenantId,
        id: MemoryId,
        patch: MemoryPatch,
    ) -> Result<Memory, Error> {
        let mut memory = self.get(tenant, id).await?;
        if let Some(text) = patch.memory {
            memory.memory = checked_memory(text)?;
        }
        if let Some(topics) = patch.topics {
            memory.topics = checked_topics(topics)?;
        }
        if let Some(agent_id) = patch.agent_id {
            memory.agent_id = checked_id("agent_id", agent_id)?;
        }
        if let Some(team_id) = patch.team_id {
            memory.team_id = checked_id("team_id", team_id)?;
        }
        if let Some(input) = patch.input {
            memory.input = checked_text("input", input, MAX_INPUT_CHARS)?;
        }
        if let Some(feedback) = patch.feedback {
            memory.feedback = checked_text("feedback", feedback, MAX_FEEDBACK_CHARS)?;
        }
        memory.updated_at = agentd_core::now();
        if !self.store.update_memory(&memory).await? {
            return Err(Error::NotFound("memory"));
        }
        Ok(memory)
    }

    /// Merges all of a user's memories into one with the model (AgentOS's `summarize` strategy). With
    /// `apply`, the merged memory replaces them: it is stored first and the old ones deleted after,
    /// so an interruption leaves a duplicate, never a loss. Without, nothing changes and the report
    /// shows what would be stored.
    #[tracing::instrument(skip_all, fields(tenant.id = %principal.tenant_id))]
    pub async fn optimize(
        &self,
        principal: &Principal,
        gateway: &crate::GatewayService,
        user_id: String,
        model: &str,
        apply: bool,
    ) -> Result<OptimizeReport, Error> {
        let tenant = principal.tenant_id;
        check_id("user_id", &user_id)?;
        if let crate::Target::Agent(_) = gateway.target(tenant, model).await? {
            return Err(Error::invalid(
                "model",
                "name a provider/model: an agent cannot merge memories",
            ));
        }
        let filter = MemoryFilter {
            user_id: Some(user_id.clone()),
            ..Default::default()
        };
        let (before, _) = self
            .store
            .list_memories(
                tenant,
                &filter,
                MemorySort::default(),
                &MemoryStart::Offset(0),
                MAX_OPTIMIZED,
            )
            .await?;
        let tokens_before = before.iter().map(|m| estimate_tokens(&m.memory)).sum();
        if before.len() <= 1 {
            return Ok(OptimizeReport {
                memories_before: before.len() as u64,
                memories_after: before.len() as u64,
                tokens_before,
                tokens_after: tokens_before,
                memories: before,
                applied: false,
            });
        }
        let listed = before
            .iter()
            .map(|m| format!("- {}", m.memory))
            .collect::<Vec<_>>()
            .join("\n");
        let request = agentd_models::ModelRequest {
            messages: vec![
                agentd_core::run::ChatMessage::System {
                    content: "Merge these memories about one user into a single concise \
                              paragraph in the third person. Keep every distinct fact, drop \
                              repetitions, and answer with the paragraph only."
                        .to_owned(),
                },
                agentd_core::run::ChatMessage::User { content: listed },
            ],
            ..Default::default()
        };
        let mut stream = gateway
            .stream(principal, model, "optimize-memories", request)
            .await?;
        let mut merged = String::new();
        while let Some(event) = futures::StreamExt::next(&mut stream).await {
            if let agentd_models::ModelEvent::Text(delta) = event.map_err(Error::Provider)? {
                merged.push_str(&delta);
            }
        }
        let merged = merged.trim().to_owned();
        if merged.is_empty() {
            return Err(Error::Provider(agentd_models::ModelError::Malformed(
                "the model answered no merged memory".to_owned(),
            )));
        }
        let mut topics: Vec<String> = Vec::new();
        for topic in before.iter().flat_map(|m| m.topics.iter()) {
            if !topics.contains(topic) && topics.len() < MAX_TOPICS {
                topics.push(topic.clone());
            }
        }
        let now = agentd_core::now();
        let memory = Memory {
            tenant_id: tenant,
            id: MemoryId::new(),
            user_id,
            agent_id: None,
            team_id: None,
            memory: checked_memory(merged)?,
            topics,
            input: None,
            feedback: None,
            created_at: now,
            updated_at: now,
        };
        if apply {
            self.store.insert_memory(&memory).await?;
            let ids: Vec<MemoryId> = before.iter().map(|m| m.id).collect();
            self.store
                .delete_memories(tenant, &ids, Some(&memory.user_id))
                .await?;
        }
        let tokens_after = estimate_tokens(&memory.memory);
        Ok(OptimizeReport {
            memories_before: before.len() as u64,
            memories_after: 1,
            tokens_before,
            tokens_after,
            memories: vec![memory],
            applied: apply,
        })
    }

    /// Deletes one memory.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, memory.id = %id))]
    pub async fn delete(&self, tenant: TenantId, id: MemoryId) -> Result<(), Error> {
        match self.store.delete_memories(tenant, &[id], None).await? {
            0 => Err(Error::NotFound("memory")),
            _ => Ok(()),
        }
    }

    /// Deletes the memories with these ids (only `user_id`'s, when given); how many existed. Ids the
    /// tenant does not have are skipped.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, memories = ids.len()))]
    pub async fn delete_many(
        &self,
        tenant: TenantId,
        ids: &[MemoryId],
        user_id: Option<String>,
    ) -> Result<u64, Error> {
        if ids.is_empty() {
            return Err(Error::invalid(
                "memory_ids",
                "name at least one memory to delete",
            ));
        }
        let user_id = checked_id("user_id", user_id)?;
        Ok(self
            .store
            .delete_memories(tenant, ids, user_id.as_deref())
            .await?)
    }

    /// The distinct topics of the tenant's memories (of one user's, when given), sorted.
    pub async fn topics(
        &self,
        tenant: TenantId,
        user_id: Option<String>,
    ) -> Result<Vec<String>, Error> {
        let user_id = checked_id("user_id", user_id)?;
        Ok(self.store.memory_topics(tenant, user_id.as_deref()).await?)
    }

    /// Per user: how many memories and when they last changed, most recently changed first.
    pub async fn user_stats(
        &self,
        tenant: TenantId,
        user_id: Option<String>,
        limit: Option<u32>,
        page: Option<u32>,
    ) -> Result<MemoryStatsList, Error> {
        let user_id = checked_id("user_id", user_id)?;
        let limit = checked_limit(limit)?;
        let page = checked_page(page)?;
        let offset = u64::from(page - 1) * u64::from(limit);
        let (users, total) = self
            .store
            .user_memory_stats(tenant, user_id.as_deref(), offset, limit)
            .await?;
        Ok(MemoryStatsList {
            users,
            total,
            limit,
            page,
        })
    }
}

/// Reads AgentOS's `sort_by` (`created_at`, `updated_at`: the default) and `sort_order` (`asc`,
/// `desc`: the default).
pub fn parse_sort(sort_by: Option<&str>, sort_order: Option<&str>) -> Result<MemorySort, Error> {
    let by = match sort_by.filter(|s| !s.is_empty()) {
        None | Some("updated_at") => MemorySortField::UpdatedAt,
        Some("created_at") => MemorySortField::CreatedAt,
        Some(other) => {
            return Err(Error::invalid(
                "sort_by",
                format!("cannot sort by `{other}`; use `created_at` or `updated_at`"),
            ))
        }
    };
    let descending = match sort_order.filter(|s| !s.is_empty()) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(Error::invalid(
                "sort_order",
                format!("unknown order `{other}`; use `asc` or `desc`"),
            ))
        }
    };
    Ok(MemorySort { by, descending })
}

/// Reads AgentOS's `topics` query value: topics separated by commas.
pub fn parse_topics(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|topic| !topic.is_empty())
        .map(str::to_owned)
        .collect()
}

fn checked_limit(limit: Option<u32>) -> Result<u32, Error> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(limit)
}

fn checked_page(page: Option<u32>) -> Result<u32, Error> {
    match page.unwrap_or(1) {
        0 => Err(Error::invalid("page", "pages are numbered from 1")),
        page => Ok(page),
    }
}

fn checked_filter(filter: MemoryFilter) -> Result<MemoryFilter, Error> {
    let text_contains = checked_text("search_content", filter.text_contains, MAX_SEARCH_CHARS)?;
    Ok(MemoryFilter {
        user_id: checked_id("user_id", filter.user_id)?,
        agent_id: checked_id("agent_id", filter.agent_id)?,
        team_id: checked_id("team_id", filter.team_id)?,
        topics: checked_topics(filter.topics)?,
        text_contains,
    })
}

/// The memory's text: not blank, at most [`MAX_MEMORY_CHARS`], no NUL (which PostgreSQL cannot store).
fn checked_memory(text: String) -> Result<String, Error> {
    if text.trim().is_empty() {
        return Err(Error::invalid("memory", "must not be empty"));
    }
    Ok(checked_text("memory", Some(text), MAX_MEMORY_CHARS)?.unwrap_or_default())
}

/// Free text of at most `max` characters, without NUL.
fn checked_text(field: &str, text: Option<String>, max: usize) -> Result<Option<String>, Error> {
    let Some(text) = text else {
        return Ok(None);
    };
    if text.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if text.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(Some(text))
}

fn check_id(field: &str, id: &str) -> Result<(), Error> {
    let valid = !id.trim().is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && !id.chars().any(char::is_control);
    if !valid {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {MAX_ID_CHARS} characters without control characters"),
        ));
    }
    Ok(())
}

fn checked_id(field: &str, id: Option<String>) -> Result<Option<String>, Error> {
    if let Some(id) = &id {
        check_id(field, id)?;
    }
    Ok(id)
}

/// Topics trimmed, each 1 to [`MAX_TOPIC_CHARS`] characters without control characters, duplicates
/// dropped (the first kept), at most [`MAX_TOPICS`].
fn checked_topics(topics: Vec<String>) -> Result<Vec<String>, Error> {
    let mut kept: Vec<String> = Vec::with_capacity(topics.len());
    for topic in topics {
        let topic = topic.trim();
        let valid = !topic.is_empty()
            && topic.chars().count() <= MAX_TOPIC_CHARS
            && !topic.chars().any(char::is_control);
        if !valid {
            return Err(Error::invalid(
                "topics",
                format!(
                    "`{topic}`: a topic is 1 to {MAX_TOPIC_CHARS} characters without control characters"
                ),
            ));
        }
        if !kept.iter().any(|seen| seen == topic) {
            kept.push(topic.to_owned());
        }
    }
    if kept.len() > MAX_TOPICS {
        return Err(Error::invalid(
            "topics",
            format!("at most {MAX_TOPICS} topics"),
        ));
    }
    Ok(kept)
}

/// `<sort>.<millis>.<memory id>`, where `<sort>` names the order (`ud`: updated_at descending…), so
/// a cursor is not read under another order.
fn encode_cursor(memory: &Memory, sort: MemorySort) -> String {
    let at = match sort.by {
        MemorySortField::CreatedAt => memory.created_at,
        MemorySortField::UpdatedAt => memory.updated_at,
    };
    format!("{}.{}.{}", sort_tag(sort), at.timestamp_millis(), memory.id)
}

fn sort_tag(sort: MemorySort) -> &'static str {
    match (sort.by, sort.descending) {
        (MemorySortField::CreatedAt, false) => "ca",
        (MemorySortField::CreatedAt, true) => "cd",
        (MemorySortField::UpdatedAt, false) => "ua",
        (MemorySortField::UpdatedAt, true) => "ud",
    }
}

fn decode_cursor(raw: &str, sort: MemorySort) -> Result<MemoryStart, Error> {
    let invalid = || {
        Error::invalid(
            "cursor",
            "not a cursor returned by this list (with the same sort_by and sort_order)",
        )
    };
    let mut parts = raw.splitn(3, '.');
    let (Some(tag), Some(millis), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if tag != sort_tag(sort) {
        return Err(invalid());
    }
    let at = millis
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .ok_or_else(invalid)?;
    let id = id.parse().map_err(|_| invalid())?;
    Ok(MemoryStart::After { at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_trimmed_deduplicated_and_bounded() {
        let topics = checked_topics(vec![" food ".into(), "work".into(), "food".into()]).unwrap();
        assert_eq!(topics, ["food", "work"]);
        assert!(checked_topics(vec!["  ".into()]).is_err());
        assert!(checked_topics(vec!["a\nb".into()]).is_err());
        let many = (0..=MAX_TOPICS).map(|n| n.to_string()).collect();
        assert!(checked_topics(many).is_err());
        assert_eq!(parse_topics(Some(" a, b ,,c")), ["a", "b", "c"]);
        assert!(parse_topics(None).is_empty());
    }

    #[test]
    fn cursors_round_trip_only_under_their_own_order() {
        let now = agentd_core::now();
        let memory = Memory {
            tenant_id: TenantId::new(),
            id: MemoryId::new(),
            user_id: "ann".into(),
            agent_id: None,
            team_id: None,
            memory: "likes tea".into(),
            topics: vec![],
            input: None,
            feedback: None,
            created_at: now,
            updated_at: now,
        };
        let sort = MemorySort::default();
        let cursor = encode_cursor(&memory, sort);
        assert_eq!(
            decode_cursor(&cursor, sort).unwrap(),
            MemoryStart::After {
                at: now,
                id: memory.id
            }
        );
        let other = MemorySort {
            descending: false,
            ..sort
        };
        assert!(decode_cursor(&cursor, other).is_err());
        assert!(decode_cursor("ud.x.y", sort).is_err());
    }

    #[test]
    fn sorts_parse_with_agentos_defaults() {
        assert_eq!(
            parse_sort(None, None).unwrap(),
            MemorySort {
                by: MemorySortField::UpdatedAt,
                descending: true
            }
        );
        assert_eq!(
            parse_sort(Some("created_at"), Some("asc")).unwrap(),
            MemorySort {
                by: MemorySortField::CreatedAt,
                descending: false
            }
        );
        assert!(parse_sort(Some("memory"), None).is_err());
        assert!(parse_sort(None, Some("up")).is_err());
    }
}
