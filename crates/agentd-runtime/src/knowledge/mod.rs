//! The knowledge base (AgentOS's `/knowledge`): contents a tenant uploads as text, a file or a URL,
//! processed in the background (read → chunk → embed → index) and searched by keyword, by vector or
//! both (reciprocal-rank fusion).
//!
//! An upload is checked and stored as `processing` before it is answered, so an empty body, an
//! unsupported type, a URL that cannot be fetched or an identical earlier upload (same SHA-256 in the
//! same tenant) is known at once. The rest happens on a task: the reader turns the bytes into text,
//! a chunker cuts it, the configured embedder (any `provider/model` with an embeddings API, called
//! through the gateway so it is metered) embeds the chunks, and the store writes them in one
//! transaction with the move to `completed`. Any failure marks the content `failed` with the reason
//! and leaves no chunks. Without an embedder, search is by keyword only and says so.

pub mod chunk;
mod html;
pub mod read;
mod vectors;

use std::collections::HashMap;
use std::sync::Arc;

use agentd_core::knowledge::{
    content_hash, ChunkStrategy, Chunking, Content, ContentKind, ContentSource, ContentStatus,
};
use agentd_core::{ChunkId, ContentId, TenantId};
use agentd_store::{ChunkFilter, ContentInsert, ContentStart, ScoredChunk, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::access::Principal;
use crate::gateway::GatewayService;
use crate::page::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::tools::{HttpFetch, HttpFetchConfig};
use crate::Error;

/// The longest content name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
/// Metadata: at most this many top-level keys…
pub const MAX_METADATA_KEYS: usize = 64;
/// …of at most this many characters…
pub const MAX_METADATA_KEY_CHARS: usize = 100;
/// …and at most this many bytes as JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The smallest and largest chunk, in characters.
pub const CHUNK_SIZES: std::ops::RangeInclusive<u32> = 50..=20_000;
/// The default chunk size and overlap.
pub const DEFAULT_CHUNK_SIZE: u32 = 1_000;
pub const DEFAULT_OVERLAP: u32 = 100;
/// The longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// Results per search unless asked otherwise, and the most one page may hold.
pub const DEFAULT_MAX_RESULTS: u32 = 10;
pub const MAX_RESULTS: u32 = 100;
/// How deep a search reaches: pages end here.
pub const MAX_REACH: u32 = 1_000;
/// The `k` of reciprocal-rank fusion: a result's fused score is the sum of `1 / (k + rank)`.
pub const RRF_K: f64 = 60.0;
/// Search filters compare at most this many metadata keys.
pub const MAX_FILTERS: usize = 20;
/// Keyword search uses at most this many words of the query.
const MAX_QUERY_WORDS: usize = 32;

/// `[knowledge]`: the embedder and the limits of uploads.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct KnowledgeConfig {
    /// The embedder as `provider/model` (a configured provider with an embeddings API: OpenAI-
    /// compatible or Ollama). Unset: chunks are not embedded and search is by keyword only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedder: Option<String>,
    /// The largest upload (a file, a text or a fetched URL), in bytes.
    pub max_upload_bytes: usize,
    /// Chunks per embeddings call.
    pub embed_batch_size: usize,
    /// A content that makes more chunks fails (use larger chunks or split it).
    pub max_chunks_per_content: usize,
    /// Contents processed at once on this node; more wait their turn.
    pub concurrent_processing: usize,
    /// The most memory, in MiB, this node uses to hold embeddings for vector search (0: none, every
    /// vector search scans the database). A tenant's embeddings are loaded on its first search and
    /// dropped least recently used first; 100,000 chunks of 384 dimensions take about 150 MiB.
    pub vector_cache_mb: usize,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            embedder: None,
            max_upload_bytes: 20 * 1024 * 1024,
            embed_batch_size: 64,
            max_chunks_per_content: 20_000,
            concurrent_processing: 2,
            vector_cache_mb: 1024,
        }
    }
}

impl KnowledgeConfig {
    /// Every limit must be positive; an embedder must be `provider/model`.
    pub fn check(&self) -> Result<(), Error> {
        let limits = [
            ("max_upload_bytes", self.max_upload_bytes),
            ("embed_batch_size", self.embed_batch_size),
            ("max_chunks_per_content", self.max_chunks_per_content),
            ("concurrent_processing", self.concurrent_processing),
        ];
        if let Some((name, _)) = limits.iter().find(|(_, value)| *value == 0) {
            return Err(Error::Config(format!(
                "knowledge.{name} must be greater than 0"
            )));
        }
        if let Some(embedder) = &self.embedder {
            if embedder.trim().is_empty() {
                return Err(Error::Config(
                    "knowledge.embedder: name a `provider/model`, or leave it out for keyword-only search"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// What an upload carries.
#[derive(Clone, Debug)]
pub enum ContentBody {
    /// Text in the request.
    Text(String),
    /// A file, with the name and media type the client gave.
    File {
        file_name: Option<String>,
        media_type: Option<String>,
        bytes: Vec<u8>,
    },
    /// A page to fetch.
    Url(String),
}

/// How the client asked for chunking; unset values take the defaults of the content's kind.
#[derive(Clone, Debug, Default)]
pub struct ChunkingRequest {
    /// `fixed`, `recursive`, `markdown`, `rows`, or AgentOS's chunker names.
    pub strategy: Option<String>,
    pub chunk_size: Option<u64>,
    pub overlap: Option<u64>,
}

/// A new content.
#[derive(Clone, Debug)]
pub struct NewContent {
    pub body: ContentBody,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    /// The reader to use instead of the one the name or type suggests.
    pub reader: Option<String>,
    pub chunking: ChunkingRequest,
}

/// What an upload became.
#[derive(Clone, Debug)]
pub enum Uploaded {
    /// Stored and processing in the background.
    Accepted(Content),
    /// The tenant already has these bytes (processing or completed): that content, unchanged.
    Duplicate(Content),
}

/// Changes to a content: absent fields are kept; `Some(None)` clears the description. Metadata is
/// replaced whole.
#[derive(Clone, Debug, Default)]
pub struct ContentPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Map<String, Value>>,
}

/// A page of contents.
#[derive(Clone, Debug)]
pub struct ContentList {
    pub contents: Vec<Content>,
    /// The tenant's contents, on every page.
    pub total: u64,
    pub limit: u32,
    /// The page number, when asked for by page (not by cursor).
    pub page: Option<u32>,
    pub next_cursor: Option<String>,
}

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchType {
    /// Nearest embeddings by cosine similarity.
    Vector,
    /// The full-text index.
    Keyword,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

impl SearchType {
    pub const ALL: [SearchType; 3] = [Self::Vector, Self::Keyword, Self::Hybrid];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vector => "vector",
            Self::Keyword => "keyword",
            Self::Hybrid => "hybrid",
        }
    }

    /// `vector`, `keyword` or `hybrid` (any case).
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let lower = raw.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == lower)
            .ok_or_else(|| {
                Error::invalid(
                    "search_type",
                    format!("unknown search type `{raw}`; use vector, keyword or hybrid"),
                )
            })
    }
}

/// A search.
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    pub query: String,
    /// Default: hybrid.
    pub search_type: Option<SearchType>,
    pub max_results: Option<u32>,
    /// From 1.
    pub page: Option<u32>,
    /// Metadata equality: each key must have exactly this (scalar) value.
    pub filters: Map<String, Value>,
}

/// One result.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub chunk_id: ChunkId,
    pub content_id: ContentId,
    pub content_name: String,
    /// The chunk's place in its content, from 0.
    pub seq: u32,
    pub text: String,
    /// Higher is better: cosine similarity (vector), the backend's text rank (keyword), or the
    /// fused reciprocal-rank score (hybrid).
    pub score: f64,
    /// The content's metadata.
    pub metadata: Map<String, Value>,
}

/// What a search found and how.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    pub hits: Vec<SearchHit>,
    pub requested: SearchType,
    /// What ran: keyword when vector or hybrid was asked for without an embedder.
    pub used: SearchType,
    /// Why `used` differs from `requested`.
    pub note: Option<String>,
    pub page: u32,
    pub limit: u32,
    /// Results found within the search's reach (at most [`MAX_REACH`]).
    pub total: u64,
}

/// What `/knowledge/config` shows.
#[derive(Clone, Debug)]
pub struct KnowledgeSettings {
    pub embedder: Option<String>,
    pub search_types: Vec<SearchType>,
    pub default_search_type: SearchType,
    pub note: Option<String>,
    /// `sqlite-fts5` or `postgres-tsvector`.
    pub keyword_index: &'static str,
    pub max_upload_bytes: usize,
    /// The metadata keys the tenant's contents have, for filters.
    pub metadata_keys: Vec<String>,
}

/// The note a search (and the config) gives when there is no embedder.
pub const KEYWORD_ONLY: &str = "no embedder is configured ([knowledge] embedder): search is \
     keyword-only, and vector or hybrid searches run as keyword searches";

/// Processing a content in the background: what the task needs, cheap to clone.
#[derive(Clone)]
struct Processor {
    store: Arc<dyn Store>,
    gateway: Arc<GatewayService>,
    permits: Arc<Semaphore>,
    embed_batch_size: usize,
    max_chunks: usize,
}

/// The knowledge service.
pub struct KnowledgeService {
    store: Arc<dyn Store>,
    gateway: Arc<GatewayService>,
    config: KnowledgeConfig,
    fetcher: HttpFetch,
    node_id: String,
    processor: Processor,
    vectors: vectors::VectorCache,
}

impl KnowledgeService {
    /// The service; `fetch` limits URL uploads as it limits `http_fetch` (public addresses only
    /// unless allowed, its timeout).
    pub fn new(
        store: Arc<dyn Store>,
        gateway: Arc<GatewayService>,
        config: KnowledgeConfig,
        fetch: HttpFetchConfig,
        node_id: String,
    ) -> Self {
        let processor = Processor {
            store: store.clone(),
            gateway: gateway.clone(),
            permits: Arc::new(Semaphore::new(config.concurrent_processing.max(1))),
            embed_batch_size: config.embed_batch_size.max(1),
            max_chunks: config.max_chunks_per_content,
        };
        Self {
            vectors: vectors::VectorCache::new(
                store.clone(),
                config.vector_cache_mb.saturating_mul(1024 * 1024),
            ),
            store,
            gateway,
            fetcher: HttpFetch::new(fetch),
            node_id,
            processor,
            config,
        }
    }

    /// The largest upload, in bytes.
    pub fn max_upload_bytes(&self) -> usize {
        self.config.max_upload_bytes
    }

    /// Fails the contents this node left `processing` when it stopped (their bytes are gone).
    pub async fn recover(&self) -> Result<u64, Error> {
        let failed = self
            .store
            .fail_interrupted_contents(
                &self.node_id,
                "the server restarted while this content was processing; upload it again",
                agentd_core::now(),
            )
            .await?;
        if failed > 0 {
            tracing::warn!(
                contents = failed,
                "failed knowledge contents interrupted by a restart"
            );
        }
        Ok(failed)
    }

    /// Checks an upload, stores it as `processing` and starts processing it; or finds the tenant's
    /// identical earlier upload.
    #[tracing::instrument(skip_all, fields(tenant.id = %principal.tenant_id))]
    pub async fn upload(&self, principal: &Principal, new: NewContent) -> Result<Uploaded, Error> {
        let name = checked_name(new.name)?;
        let description = checked_description(new.description)?;
        let metadata = checked_metadata(new.metadata.unwrap_or_default())?;
        let (bytes, source, media_type) = self.body_bytes(new.body).await?;
        let hints = read::Hints {
            reader: new.reader.as_deref().filter(|r| !r.trim().is_empty()),
            name: source.origin(),
            media_type: media_type.as_deref(),
        };
        let kind = read::detect(hints, &bytes)?;
        let chunking = checked_chunking(kind, &new.chunking)?;
        let now = agentd_core::now();
        let content = Content {
            tenant_id: principal.tenant_id,
            id: ContentId::new(),
            name: name.unwrap_or_else(|| default_name(&source, &bytes)),
            description,
            metadata,
            kind,
            size_bytes: bytes.len() as u64,
            content_hash: content_hash(&bytes),
            source,
            status: ContentStatus::Processing,
            status_message: None,
            chunk_count: 0,
            chunking,
            embedder: self.config.embedder.clone(),
            node_id: self.node_id.clone(),
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_content(&content).await? {
            ContentInsert::Duplicate(existing) => Ok(Uploaded::Duplicate(*existing)),
            ContentInsert::Inserted => {
                let processor = self.processor.clone();
                let task_content = content.clone();
                let principal = principal.clone();
                tokio::spawn(async move { processor.run(principal, task_content, bytes).await });
                Ok(Uploaded::Accepted(content))
            }
        }
    }

    /// The bytes of an upload, where they came from, and their declared media type.
    async fn body_bytes(
        &self,
        body: ContentBody,
    ) -> Result<(Vec<u8>, ContentSource, Option<String>), Error> {
        let max = self.config.max_upload_bytes;
        let too_large = |what: &str| {
            Error::TooLarge(format!(
                "{what} is larger than the upload limit of {max} bytes (knowledge.max_upload_bytes)"
            ))
        };
        match body {
            ContentBody::Text(text) => {
                if text.trim().is_empty() {
                    return Err(Error::invalid("text", "must not be empty"));
                }
                if text.len() > max {
                    return Err(too_large("the text"));
                }
                Ok((text.into_bytes(), ContentSource::Text, None))
            }
            ContentBody::File {
                file_name,
                media_type,
                bytes,
            } => {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Err(Error::invalid("file", "the file is empty"));
                }
                if bytes.len() > max {
                    return Err(too_large("the file"));
                }
                let file_name = file_name
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| "upload".to_owned());
                if file_name.chars().count() > MAX_NAME_CHARS
                    || file_name.chars().any(char::is_control)
                {
                    return Err(Error::invalid(
                        "file",
                        format!("the file name must be at most {MAX_NAME_CHARS} characters without control characters"),
                    ));
                }
                Ok((bytes, ContentSource::File { file_name }, media_type))
            }
            ContentBody::Url(raw) => {
                let url = url::Url::parse(raw.trim())
                    .map_err(|e| Error::invalid("url", format!("not a URL: {e}")))?;
                let fetched = self.fetcher.get(url.clone(), max).await.map_err(|reason| {
                    Error::invalid("url", format!("cannot fetch it: {reason}"))
                })?;
                if !(200..300).contains(&fetched.status) {
                    return Err(Error::invalid(
                        "url",
                        format!("fetching it answered HTTP {}", fetched.status),
                    ));
                }
                if fetched.truncated {
                    return Err(Error::invalid(
                        "url",
                        format!("the document is larger than the upload limit of {max} bytes (knowledge.max_upload_bytes)"),
                    ));
                }
                if fetched.body.iter().all(u8::is_ascii_whitespace) {
                    return Err(Error::invalid("url", "the document is empty"));
                }
                let source = ContentSource::Url {
                    url: url.to_string(),
                };
                Ok((fetched.body, source, fetched.content_type))
            }
        }
    }

    /// One content of the tenant.
    pub async fn get(&self, tenant: TenantId, id: ContentId) -> Result<Content, Error> {
        self.store
            .get_content(tenant, id)
            .await?
            .ok_or(Error::NotFound("content"))
    }

    /// The tenant's contents, newest first, by page number or cursor.
    pub async fn list(
        &self,
        tenant: TenantId,
        limit: Option<u32>,
        page: Option<u32>,
        cursor: Option<String>,
    ) -> Result<ContentList, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let cursor = cursor.filter(|cursor| !cursor.is_empty());
        let (start, number) = match (cursor, page) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "cursor",
                    "give `page` or `cursor`, not both",
                ))
            }
            (Some(cursor), None) => {
                let after = cursor
                    .parse()
                    .map_err(|_| Error::invalid("cursor", "not a cursor returned by this list"))?;
                (ContentStart::After(after), None)
            }
            (None, page) => {
                let page = page.unwrap_or(1);
                if page == 0 {
                    return Err(Error::invalid("page", "pages are numbered from 1"));
                }
                let offset = u64::from(page - 1) * u64::from(limit);
                (ContentStart::Offset(offset), Some(page))
            }
        };
        let (mut contents, total) = self.store.list_contents(tenant, start, limit + 1).await?;
        let has_more = contents.len() > limit as usize;
        contents.truncate(limit as usize);
        let next_cursor = has_more
            .then(|| contents.last().map(|last| last.id.to_string()))
            .flatten();
        Ok(ContentList {
            contents,
            total,
            limit,
            page: number,
            next_cursor,
        })
    }

    /// Changes a content's name, description or metadata.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, content.id = %id))]
    pub async fn update(
        &self,
        tenant: TenantId,
        id: ContentId,
        patch: ContentPatch,
    ) -> Result<Content, Error> {
        let mut content = self.get(tenant, id).await?;
        if let Some(name) = patch.name {
            content.name = checked_name(Some(name))?
                .ok_or_else(|| Error::invalid("name", "must not be empty"))?;
        }
        if let Some(description) = patch.description {
            content.description = checked_description(description)?;
        }
        if let Some(metadata) = patch.metadata {
            content.metadata = checked_metadata(metadata)?;
        }
        content.updated_at = agentd_core::now();
        if !self.store.update_content_details(&content).await? {
            return Err(Error::NotFound("content"));
        }
        Ok(content)
    }

    /// Deletes a content and its chunks.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, content.id = %id))]
    pub async fn delete(&self, tenant: TenantId, id: ContentId) -> Result<(), Error> {
        match self.store.delete_content(tenant, id).await? {
            true => Ok(()),
            false => Err(Error::NotFound("content")),
        }
    }

    /// Deletes every content of the tenant; how many there were.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant))]
    pub async fn delete_all(&self, tenant: TenantId) -> Result<u64, Error> {
        Ok(self.store.delete_all_contents(tenant).await?)
    }

    /// What `/knowledge/config` shows the tenant.
    pub async fn settings(&self, tenant: TenantId) -> Result<KnowledgeSettings, Error> {
        let metadata_keys = self.store.knowledge_metadata_keys(tenant).await?;
        let (search_types, default_search_type, note) = match &self.config.embedder {
            Some(_) => (SearchType::ALL.to_vec(), SearchType::Hybrid, None),
            None => (
                vec![SearchType::Keyword],
                SearchType::Keyword,
                Some(KEYWORD_ONLY.to_owned()),
            ),
        };
        Ok(KnowledgeSettings {
            embedder: self.config.embedder.clone(),
            search_types,
            default_search_type,
            note,
            keyword_index: match self.store.backend() {
                agentd_store::Backend::Sqlite => "sqlite-fts5",
                agentd_store::Backend::Postgres => "postgres-tsvector",
            },
            max_upload_bytes: self.config.max_upload_bytes,
            metadata_keys,
        })
    }

    /// Searches the tenant's chunks.
    #[tracing::instrument(skip_all, fields(tenant.id = %principal.tenant_id))]
    pub async fn search(
        &self,
        principal: &Principal,
        request: SearchRequest,
    ) -> Result<SearchOutcome, Error> {
        let tenant = principal.tenant_id;
        let query = request.query.trim();
        if query.is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::invalid(
                "query",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let limit = request.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
        if !(1..=MAX_RESULTS).contains(&limit) {
            return Err(Error::invalid(
                "max_results",
                format!("must be between 1 and {MAX_RESULTS}"),
            ));
        }
        let page = request.page.unwrap_or(1);
        if page == 0 || page.saturating_mul(limit) > MAX_REACH {
            return Err(Error::invalid(
                "page",
                format!(
                    "pages are numbered from 1, and a search reaches at most {MAX_REACH} results"
                ),
            ));
        }
        let filter = checked_filters(request.filters)?;
        let requested = request.search_type.unwrap_or(SearchType::Hybrid);
        let (used, embedder, note) = match (&self.config.embedder, requested) {
            (_, SearchType::Keyword) => (SearchType::Keyword, None, None),
            (None, _) => (SearchType::Keyword, None, Some(KEYWORD_ONLY.to_owned())),
            (Some(embedder), used) => (used, Some(embedder.as_str()), None),
        };
        let reach = (page * limit).clamp(50, MAX_REACH);
        let words = query_words(query);
        let keyword = || self.store.keyword_search(tenant, &words, &filter, reach);
        let ranked = match (used, embedder) {
            (SearchType::Keyword, _) | (_, None) => keyword().await?,
            (SearchType::Vector, Some(embedder)) => {
                let vector = self.embed_query(principal, embedder, query).await?;
                self.vectors
                    .nearest(tenant, embedder, &vector, &filter, reach)
                    .await?
            }
            (SearchType::Hybrid, Some(embedder)) => {
                let vector = self.embed_query(principal, embedder, query).await?;
                let (by_keyword, by_vector) = tokio::try_join!(
                    keyword(),
                    self.vectors
                        .nearest(tenant, embedder, &vector, &filter, reach)
                )?;
                fuse(&[by_keyword, by_vector])
            }
        };
        let total = ranked.len() as u64;
        let chosen: Vec<ScoredChunk> = ranked
            .into_iter()
            .skip(((page - 1) * limit) as usize)
            .take(limit as usize)
            .collect();
        let ids: Vec<ChunkId> = chosen.iter().map(|scored| scored.chunk_id).collect();
        let mut found: HashMap<ChunkId, agentd_store::ChunkHit> = self
            .store
            .get_chunk_hits(tenant, &ids)
            .await?
            .into_iter()
            .map(|hit| (hit.chunk_id, hit))
            .collect();
        // A chunk deleted since it was ranked is skipped.
        let hits = chosen
            .iter()
            .filter_map(|scored| {
                found.remove(&scored.chunk_id).map(|hit| SearchHit {
                    chunk_id: hit.chunk_id,
                    content_id: hit.content_id,
                    content_name: hit.content_name,
                    seq: hit.seq,
                    text: hit.text,
                    score: scored.score,
                    metadata: hit.metadata,
                })
            })
            .collect();
        Ok(SearchOutcome {
            hits,
            requested,
            used,
            note,
            page,
            limit,
            total,
        })
    }

    /// The query's embedding, metered as `knowledge.search`.
    async fn embed_query(
        &self,
        principal: &Principal,
        embedder: &str,
        query: &str,
    ) -> Result<Vec<f32>, Error> {
        let embeddings = self
            .gateway
            .embed(
                principal,
                embedder,
                "knowledge.search",
                vec![query.to_owned()],
                None,
            )
            .await?;
        embeddings.vectors.into_iter().next().ok_or_else(|| {
            Error::Provider(agentd_models::ModelError::Malformed(
                "the embedder returned no vector for the query".to_owned(),
            ))
        })
    }
}

impl Processor {
    /// Reads, chunks and embeds a content, then completes it with its chunks, or fails it with the
    /// reason. Never leaves chunks behind on failure: they are written only by the completion.
    async fn run(self, principal: Principal, content: Content, bytes: Vec<u8>) {
        let _permit = self.permits.clone().acquire_owned().await;
        let (tenant, id) = (content.tenant_id, content.id);
        let reason = match self.chunks(&principal, &content, bytes).await {
            Err(reason) => reason,
            Ok(chunks) => {
                let completed = self
                    .store
                    .complete_content(
                        tenant,
                        id,
                        &chunks,
                        content.embedder.as_deref(),
                        None,
                        agentd_core::now(),
                    )
                    .await;
                match completed {
                    Ok(true) => {
                        tracing::info!(content.id = %id, chunks = chunks.len(), "knowledge content completed");
                        return;
                    }
                    Ok(false) => {
                        // Deleted (or failed by a restart) while processing: nothing to record.
                        tracing::debug!(content.id = %id, "knowledge content gone before it completed");
                        return;
                    }
                    Err(error) => {
                        tracing::error!(content.id = %id, %error, "storing a content's chunks failed");
                        "the chunks could not be stored (a database error; see the server log)"
                            .to_owned()
                    }
                }
            }
        };
        tracing::info!(content.id = %id, %reason, "knowledge content failed");
        if let Err(error) = self
            .store
            .fail_content(tenant, id, &reason, agentd_core::now())
            .await
        {
            tracing::error!(content.id = %id, %error, "marking a content failed failed");
        }
    }

    /// The content's chunks, embedded when it has an embedder; `Err` is why it fails.
    async fn chunks(
        &self,
        principal: &Principal,
        content: &Content,
        bytes: Vec<u8>,
    ) -> Result<Vec<agentd_core::knowledge::Chunk>, String> {
        let (kind, chunking) = (content.kind, content.chunking);
        // Reading and chunking are CPU work: off the async threads.
        let texts = tokio::task::spawn_blocking(move || {
            read::read(kind, &bytes).map(|text| chunk::split(&text, &chunking))
        })
        .await
        .map_err(|_| "reading the content failed unexpectedly".to_owned())??;
        if texts.is_empty() {
            return Err(format!("no text found in this {kind} content"));
        }
        if texts.len() > self.max_chunks {
            return Err(format!(
                "the content makes {} chunks, more than the {} allowed \
                 (knowledge.max_chunks_per_content): use larger chunks or split the content",
                texts.len(),
                self.max_chunks
            ));
        }
        let embeddings = match &content.embedder {
            Some(embedder) => Some(self.embed(principal, embedder, &texts).await?),
            None => None,
        };
        let mut embeddings = embeddings.map(Vec::into_iter);
        Ok(texts
            .into_iter()
            .enumerate()
            .map(|(seq, text)| agentd_core::knowledge::Chunk {
                tenant_id: content.tenant_id,
                id: ChunkId::new(),
                content_id: content.id,
                seq: seq as u32,
                text,
                embedding: embeddings.as_mut().and_then(Iterator::next),
            })
            .collect())
    }

    /// One vector per text, in batches, metered as `knowledge.embed`.
    async fn embed(
        &self,
        principal: &Principal,
        embedder: &str,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, String> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.embed_batch_size) {
            let embeddings = self
                .gateway
                .embed(principal, embedder, "knowledge.embed", batch.to_vec(), None)
                .await
                .map_err(|error| format!("embedding with `{embedder}` failed: {error}"))?;
            if embeddings.vectors.len() != batch.len() {
                return Err(format!(
                    "embedding with `{embedder}` failed: {} vectors came back for {} chunks",
                    embeddings.vectors.len(),
                    batch.len()
                ));
            }
            vectors.extend(embeddings.vectors);
        }
        let dimensions = vectors.first().map_or(0, Vec::len);
        if dimensions == 0 || vectors.iter().any(|v| v.len() != dimensions) {
            return Err(format!(
                "embedding with `{embedder}` failed: the vectors are empty or of different lengths"
            ));
        }
        Ok(vectors)
    }
}

/// Reciprocal-rank fusion: each chunk scores the sum over the lists of `1 / (RRF_K + rank)`, rank
/// from 1; best first, ties by chunk id.
pub fn fuse(lists: &[Vec<ScoredChunk>]) -> Vec<ScoredChunk> {
    let mut scores: HashMap<ChunkId, f64> = HashMap::new();
    for list in lists {
        for (index, scored) in list.iter().enumerate() {
            *scores.entry(scored.chunk_id).or_default() += 1.0 / (RRF_K + index as f64 + 1.0);
        }
    }
    let mut fused: Vec<ScoredChunk> = scores
        .into_iter()
        .map(|(chunk_id, score)| ScoredChunk { chunk_id, score })
        .collect();
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
    fused
}

/// The words keyword search looks for: runs of letters and digits, lower-cased, each once.
pub fn query_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        let word = word.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_QUERY_WORDS {
            break;
        }
    }
    words
}

/// A name for a content that was given none: the file name, the URL's last path segment (or
/// host), or the text's first line.
fn default_name(source: &ContentSource, bytes: &[u8]) -> String {
    let name = match source {
        ContentSource::File { file_name } => file_name.clone(),
        ContentSource::Url { url } => url::Url::parse(url)
            .ok()
            .and_then(|url| {
                let segment = url
                    .path_segments()
                    .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
                    .map(str::to_owned);
                segment.or_else(|| url.host_str().map(str::to_owned))
            })
            .unwrap_or_else(|| url.clone()),
        ContentSource::Text => String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("text")
            .to_owned(),
    };
    let name: String = name.chars().filter(|c| !c.is_control()).take(80).collect();
    if name.trim().is_empty() {
        "untitled".to_owned()
    } else {
        name
    }
}

fn checked_name(name: Option<String>) -> Result<Option<String>, Error> {
    let Some(name) = name else {
        return Ok(None);
    };
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters without control characters"),
        ));
    }
    Ok(Some(name))
}

fn checked_description(description: Option<String>) -> Result<Option<String>, Error> {
    let Some(description) = description else {
        return Ok(None);
    };
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if description.contains('\0') {
        return Err(Error::invalid(
            "description",
            "must not contain NUL characters",
        ));
    }
    Ok(Some(description))
}

fn checked_metadata(metadata: Map<String, Value>) -> Result<Map<String, Value>, Error> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(Error::invalid(
            "metadata",
            format!("at most {MAX_METADATA_KEYS} keys"),
        ));
    }
    if let Some(key) = metadata.keys().find(|key| {
        key.is_empty()
            || key.chars().count() > MAX_METADATA_KEY_CHARS
            || key.chars().any(char::is_control)
    }) {
        return Err(Error::invalid(
            "metadata",
            format!("key `{key}`: a key is 1 to {MAX_METADATA_KEY_CHARS} characters without control characters"),
        ));
    }
    let size = serde_json::to_string(&metadata).map_or(0, |text| text.len());
    if size > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    Ok(metadata)
}

/// Filters compare scalar values (strings, numbers, booleans, null) of top-level metadata keys.
fn checked_filters(filters: Map<String, Value>) -> Result<ChunkFilter, Error> {
    if filters.len() > MAX_FILTERS {
        return Err(Error::invalid(
            "filters",
            format!("at most {MAX_FILTERS} keys"),
        ));
    }
    let mut metadata = Vec::with_capacity(filters.len());
    for (key, value) in filters {
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            return Err(Error::invalid(
                format!("filters.{key}"),
                "a filter compares one value: a string, number, boolean or null",
            ));
        }
        metadata.push((key, value));
    }
    Ok(ChunkFilter { metadata })
}

/// The chunking of a content of `kind`: what the client asked for, with defaults by kind (markdown
/// and HTML by heading, CSV by rows, the rest recursive; 1000 characters, 100 of overlap).
fn checked_chunking(kind: ContentKind, request: &ChunkingRequest) -> Result<Chunking, Error> {
    let strategy = match request.strategy.as_deref().map(str::trim) {
        None | Some("") => match kind {
            ContentKind::Markdown | ContentKind::Html => ChunkStrategy::Markdown,
            ContentKind::Csv => ChunkStrategy::Rows,
            ContentKind::Text | ContentKind::Json | ContentKind::Pdf => ChunkStrategy::Recursive,
        },
        Some(raw) => parse_strategy(raw)?,
    };
    let chunk_size = match request.chunk_size {
        None => DEFAULT_CHUNK_SIZE,
        Some(size) => u32::try_from(size)
            .ok()
            .filter(|size| CHUNK_SIZES.contains(size))
            .ok_or_else(|| {
                Error::invalid(
                    "chunk_size",
                    format!(
                        "must be between {} and {} characters",
                        CHUNK_SIZES.start(),
                        CHUNK_SIZES.end()
                    ),
                )
            })?,
    };
    let overlap = match request.overlap {
        None => DEFAULT_OVERLAP.min(chunk_size / 2),
        Some(overlap) => u32::try_from(overlap)
            .ok()
            .filter(|overlap| *overlap <= chunk_size / 2)
            .ok_or_else(|| {
                Error::invalid(
                    "overlap",
                    format!("must be at most half the chunk size ({})", chunk_size / 2),
                )
            })?,
    };
    Ok(Chunking {
        strategy,
        chunk_size,
        overlap,
    })
}

/// A chunker by name: ours (`recursive`) or AgentOS's (`RecursiveChunker`, `FixedSizeChunker`…).
fn parse_strategy(raw: &str) -> Result<ChunkStrategy, Error> {
    let name = raw.to_ascii_lowercase().replace(['_', '-', ' '], "");
    let name = name.strip_suffix("chunker").unwrap_or(&name);
    let strategy = match name {
        "fixed" | "fixedsize" => Some(ChunkStrategy::Fixed),
        "recursive" => Some(ChunkStrategy::Recursive),
        "markdown" | "document" => Some(ChunkStrategy::Markdown),
        "rows" | "row" => Some(ChunkStrategy::Rows),
        _ => None,
    };
    strategy.ok_or_else(|| {
        Error::invalid(
            "chunking.strategy",
            format!(
                "unknown or unsupported chunker `{raw}`; use {}",
                ChunkStrategy::ALL.map(ChunkStrategy::as_str).join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(ids: &[ChunkId]) -> Vec<ScoredChunk> {
        ids.iter()
            .map(|&chunk_id| ScoredChunk {
                chunk_id,
                score: 0.0,
            })
            .collect()
    }

    #[test]
    fn fusion_rewards_agreement() {
        let [a, b, c, d] = [
            ChunkId::new(),
            ChunkId::new(),
            ChunkId::new(),
            ChunkId::new(),
        ];
        let fused = fuse(&[scored(&[a, b, c]), scored(&[c, d, a])]);
        let order: Vec<ChunkId> = fused.iter().map(|s| s.chunk_id).collect();
        // a: 1/61 + 1/63; c: 1/63 + 1/61 (a tie, broken by id); b: 1/62; d: 1/62.
        assert_eq!(order, [a, c, b, d]);
        assert!((fused[0].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-12);
        assert!(fuse(&[vec![], vec![]]).is_empty());
    }

    #[test]
    fn query_words_are_letters_and_digits_once() {
        assert_eq!(
            query_words("What's \"Rust\" 2024? rust-lang OR (NOT) *"),
            ["what", "s", "rust", "2024", "lang", "or", "not"]
        );
        assert!(query_words("?! --").is_empty());
    }

    #[test]
    fn chunking_defaults_by_kind_and_checks_sizes() {
        let default = ChunkingRequest::default();
        assert_eq!(
            checked_chunking(ContentKind::Markdown, &default).unwrap(),
            Chunking {
                strategy: ChunkStrategy::Markdown,
                chunk_size: 1_000,
                overlap: 100
            }
        );
        assert_eq!(
            checked_chunking(ContentKind::Csv, &default)
                .unwrap()
                .strategy,
            ChunkStrategy::Rows
        );
        let agentos = ChunkingRequest {
            strategy: Some("FixedSizeChunker".into()),
            chunk_size: Some(200),
            overlap: None,
        };
        assert_eq!(
            checked_chunking(ContentKind::Text, &agentos).unwrap(),
            Chunking {
                strategy: ChunkStrategy::Fixed,
                chunk_size: 200,
                overlap: 100
            }
        );
        for bad in [
            ChunkingRequest {
                strategy: Some("SemanticChunker".into()),
                ..Default::default()
            },
            ChunkingRequest {
                chunk_size: Some(10),
                ..Default::default()
            },
            ChunkingRequest {
                chunk_size: Some(100),
                overlap: Some(60),
                ..Default::default()
            },
        ] {
            assert!(
                checked_chunking(ContentKind::Text, &bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn default_names_come_from_the_source() {
        let url = ContentSource::Url {
            url: "https://example.com/docs/guide.html?x=1".into(),
        };
        assert_eq!(default_name(&url, b""), "guide.html");
        let bare = ContentSource::Url {
            url: "https://example.com/".into(),
        };
        assert_eq!(default_name(&bare, b""), "example.com");
        assert_eq!(
            default_name(&ContentSource::Text, b"\n  First line\nsecond"),
            "First line"
        );
    }

    #[test]
    fn filters_compare_scalars_only() {
        let filters: Map<String, Value> =
            serde_json::from_str(r#"{"lang": "en", "year": 2024}"#).unwrap();
        assert_eq!(checked_filters(filters).unwrap().metadata.len(), 2);
        let nested: Map<String, Value> = serde_json::from_str(r#"{"tags": ["a"]}"#).unwrap();
        let error = checked_filters(nested).unwrap_err();
        assert_eq!(error.field(), Some("filters.tags"));
    }
}
