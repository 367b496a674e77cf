//! `/knowledge…`: AgentOS's knowledge API and the Open Agent API's knowledge search. Uploads come as
//! JSON or as a multipart form (a file, or AgentOS's form fields) up to `knowledge.max_upload_bytes`,
//! which this route enforces itself instead of the server-wide body limit. Lists use AgentOS's
//! `{data, meta}` shape; search answers both faces at once (`results` for the Open Agent API, `data`
//! and `meta` for AgentOS).

use std::sync::Arc;

use agentd_core::knowledge::Content;
use agentd_core::{ContentId, ErrorCode};
use agentd_runtime::knowledge::{
    ChunkingRequest, ContentBody, ContentPatch, NewContent, SearchOutcome, SearchRequest,
    SearchType, Uploaded,
};
use agentd_runtime::KnowledgeService;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{parse_json, Json, Path, Query};
use crate::form::Fields;
use crate::problem::ApiError;
use crate::routes::PageMeta;
use crate::state::AppState;

/// Room for an upload's other fields (name, metadata…) beyond `knowledge.max_upload_bytes`.
const FIELDS_ALLOWANCE: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // Uploads are limited by `knowledge.max_upload_bytes` in the handler, not by the server's
        // `max_body_bytes`.
        .routes(routes!(upload_content, list_contents, delete_all_contents))
        .layer(DefaultBodyLimit::disable())
        .merge(
            OpenApiRouter::new()
                .routes(routes!(get_content, update_content, delete_content))
                .routes(routes!(content_status))
                .routes(routes!(search_knowledge))
                .routes(routes!(knowledge_config)),
        )
}

/// Path of one content.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ContentPath {
    #[param(value_type = uuid::Uuid)]
    pub content_id: ContentId,
}

/// How a content is chunked.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChunkingView {
    /// `fixed`, `recursive`, `markdown` or `rows`.
    pub strategy: String,
    /// The longest chunk, in characters.
    pub chunk_size: u32,
    /// Characters a chunk repeats from the one before.
    pub overlap: u32,
}

/// A knowledge content, in the shape of AgentOS's `ContentResponseSchema` with agentd's additions.
#[derive(Serialize, ToSchema)]
pub struct ContentView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// The reader: `text`, `markdown`, `html`, `json`, `csv` or `pdf`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `text`, `file` or `url`.
    pub source: String,
    pub file_name: Option<String>,
    pub url: Option<String>,
    /// Bytes uploaded (or fetched), as a decimal string: AgentOS's type for it, which its clients
    /// validate.
    #[schema(example = "2048")]
    pub size: String,
    /// `sha256:<hex>` of those bytes; an identical upload is answered with this content.
    pub content_hash: String,
    pub metadata: Map<String, Value>,
    /// `processing`, `completed` or `failed`.
    pub status: String,
    /// Why it failed.
    pub status_message: Option<String>,
    pub chunk_count: u64,
    pub chunking: ChunkingView,
    /// The embedder of its chunks (`provider/model`); `null`: keyword search only.
    pub embedder: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Content> for ContentView {
    fn from(content: Content) -> Self {
        use agentd_core::knowledge::ContentSource;
        let (file_name, url) = match &content.source {
            ContentSource::Text => (None, None),
            ContentSource::File { file_name } => (Some(file_name.clone()), None),
            ContentSource::Url { url } => (None, Some(url.clone())),
        };
        Self {
            id: content.id.to_string(),
            name: content.name,
            description: content.description,
            kind: content.kind.as_str().to_owned(),
            source: content.source.as_str().to_owned(),
            file_name,
            url,
            size: content.size_bytes.to_string(),
            content_hash: content.content_hash,
            metadata: content.metadata,
            status: content.status.as_str().to_owned(),
            status_message: content.status_message,
            chunk_count: content.chunk_count,
            chunking: ChunkingView {
                strategy: content.chunking.strategy.as_str().to_owned(),
                chunk_size: content.chunking.chunk_size,
                overlap: content.chunking.overlap,
            },
            embedder: content.embedder,
            created_at: content.created_at,
            updated_at: content.updated_at,
        }
    }
}

/// An accepted upload (202, `processing`), or the identical content the tenant already has (200,
/// `duplicate: true`).
#[derive(Serialize, ToSchema)]
pub struct UploadView {
    #[serde(flatten)]
    pub content: ContentView,
    /// Whether these bytes were uploaded before: the content is that earlier one.
    pub duplicate: bool,
}

/// Chunking options; unset ones take the defaults of the content's type.
#[derive(Deserialize, ToSchema)]
pub struct ChunkingOptions {
    /// `fixed`, `recursive`, `markdown` or `rows` (AgentOS's `FixedSizeChunker`,
    /// `RecursiveChunker`, `MarkdownChunker`, `RowChunker` too). Default: `markdown` for markdown
    /// and HTML, `rows` for CSV, `recursive` otherwise.
    pub strategy: Option<String>,
    /// Characters, 50 to 20000 (default 1000).
    pub chunk_size: Option<u64>,
    /// Characters, at most half the chunk size (default 100).
    #[serde(alias = "chunk_overlap")]
    pub overlap: Option<u64>,
}

/// An upload as JSON: exactly one of `text` and `url`.
#[derive(Deserialize, ToSchema)]
pub struct UploadContentJson {
    /// The text to add (AgentOS's form calls it `text_content`).
    pub text: Option<String>,
    /// A page to fetch now and add.
    pub url: Option<String>,
    /// Default: the file name, the URL's last segment, or the text's first line.
    pub name: Option<String>,
    pub description: Option<String>,
    /// Top-level values are what search filters compare.
    pub metadata: Option<Map<String, Value>>,
    /// `text`, `markdown`, `html`, `json`, `csv` (or AgentOS's `MarkdownReader`…): how to read
    /// the content, instead of what its name or type suggests.
    pub reader: Option<String>,
    pub chunking: Option<ChunkingOptions>,
}

/// An upload as a multipart form (AgentOS's fields): exactly one of `file`, `text_content` and
/// `url`.
#[derive(Deserialize, ToSchema)]
pub struct UploadContentForm {
    /// The file; its name and `Content-Type` pick the reader.
    #[schema(value_type = Option<String>, format = Binary)]
    pub file: Option<Vec<u8>>,
    pub text_content: Option<String>,
    pub url: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// A JSON object, as text.
    pub metadata: Option<String>,
    /// Or `reader`.
    pub reader_id: Option<String>,
    /// The chunker (or `chunking` as JSON text, like the JSON body's).
    pub chunker: Option<String>,
    pub chunk_size: Option<u64>,
    pub chunk_overlap: Option<u64>,
}

/// Adds a content: a file, a text or a URL. It is stored at once and processed in the background
/// (read → chunk → embed → index): poll `/knowledge/content/{content_id}/status`. Identical bytes
/// the tenant uploaded before (and that did not fail) answer 200 with that content instead.
#[utoipa::path(
    post,
    path = "/knowledge/content",
    tag = "knowledge",
    request_body(content(
        (UploadContentJson = "application/json"),
        (UploadContentForm = "multipart/form-data"),
    )),
    security(("bearer" = ["knowledge:write"])),
    responses(
        (status = 202, description = "Accepted: processing", body = UploadView),
        (status = 200, description = "A duplicate of an earlier upload: that content", body = UploadView),
    )
)]
async fn upload_content(
    auth: Auth<scopes::KnowledgeWrite>,
    State(knowledge): State<Arc<KnowledgeService>>,
    request: Request,
) -> Result<(StatusCode, axum::Json<UploadView>), ApiError> {
    let upload = read_upload(request, knowledge.max_upload_bytes()).await?;
    let new = upload.into_new_content()?;
    let (status, content, duplicate) = match knowledge.upload(&auth.principal, new).await? {
        Uploaded::Accepted(content) => (StatusCode::ACCEPTED, content, false),
        Uploaded::Duplicate(content) => (StatusCode::OK, content, true),
    };
    Ok((
        status,
        axum::Json(UploadView {
            content: ContentView::from(content),
            duplicate,
        }),
    ))
}

/// An upload's fields (JSON values, or a form's text) and its file.
struct Upload {
    fields: Map<String, Value>,
    file: Option<UploadedFile>,
}

struct UploadedFile {
    file_name: Option<String>,
    media_type: Option<String>,
    bytes: Vec<u8>,
}

fn too_large(max: usize) -> ApiError {
    ApiError::field(
        ErrorCode::PayloadTooLarge,
        "file",
        format!("the upload exceeds the limit of {max} bytes (knowledge.max_upload_bytes)"),
    )
}

/// Reads an upload body of any accepted type, refusing more than `max` bytes of content (plus
/// [`FIELDS_ALLOWANCE`] for the other fields) with a 413 before reading it all.
async fn read_upload(request: Request, max: usize) -> Result<Upload, ApiError> {
    let limit = max.saturating_add(FIELDS_ALLOWANCE);
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(max));
    }
    match crate::form::media_type(request.headers()).as_str() {
        "multipart/form-data" => read_multipart(request, max, limit).await,
        "application/x-www-form-urlencoded" => {
            let bytes = body_bytes(request, limit, max).await?;
            let fields = crate::form::urlencoded_fields(&bytes);
            Ok(Upload { fields, file: None })
        }
        "application/json" | "" => {
            let bytes = body_bytes(request, limit, max).await?;
            let fields = parse_json::<Map<String, Value>>(&bytes)?;
            Ok(Upload { fields, file: None })
        }
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "`{other}` bodies are not accepted here: send JSON, or a file in multipart/form-data"
            ),
        )),
    }
}

/// The whole body, refused with a 413 past `limit`.
async fn body_bytes(request: Request, limit: usize, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = request.into_body().into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("reading the body failed: {error}"),
            )
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn read_multipart(request: Request, max: usize, limit: usize) -> Result<Upload, ApiError> {
    let bad = |error: axum::extract::multipart::MultipartError| {
        ApiError::new(ErrorCode::InvalidJson, error.body_text())
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|rejection| ApiError::new(ErrorCode::InvalidJson, rejection.body_text()))?;
    let mut fields = Map::new();
    let mut file: Option<UploadedFile> = None;
    let mut total = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.file_name().is_some() || name == "file";
        if is_file && file.is_some() {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "file",
                "send one file per upload",
            ));
        }
        let file_name = field.file_name().map(str::to_owned);
        let media_type = field.content_type().map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            total += chunk.len();
            if total > limit || (is_file && bytes.len() + chunk.len() > max) {
                return Err(too_large(max));
            }
            bytes.extend_from_slice(&chunk);
        }
        if is_file {
            file = Some(UploadedFile {
                file_name,
                media_type,
                bytes,
            });
            continue;
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            ApiError::field(ErrorCode::InvalidField, name.as_str(), "must be UTF-8 text")
        })?;
        fields.insert(name, Value::String(text));
    }
    Ok(Upload { fields, file })
}

impl Upload {
    /// The upload as the service takes it: exactly one of a file, a text and a URL.
    fn into_new_content(self) -> Result<NewContent, ApiError> {
        let raw = &self.fields;
        let fields = Fields(self.fields.clone());
        // A text that is there but empty is refused as empty, not as missing.
        let text = match (raw.get("text"), raw.get("text_content")) {
            (Some(Value::String(text)), _) | (None, Some(Value::String(text))) => {
                Some(text.clone())
            }
            (Some(Value::Null) | None, Some(Value::Null) | None) => None,
            (Some(_), _) => return Err(not_a_string("text")),
            (None, Some(_)) => return Err(not_a_string("text_content")),
        };
        let url = fields.string("url")?;
        let chunking_object: Option<ChunkingOptions> = fields.structured("chunking")?;
        let (strategy, chunk_size, overlap) = match chunking_object {
            Some(options) => (options.strategy, options.chunk_size, options.overlap),
            None => (None, None, None),
        };
        let chunking = ChunkingRequest {
            strategy: strategy.or(fields.string("chunker")?),
            chunk_size: chunk_size.or(fields.number("chunk_size")?),
            overlap: overlap
                .or(fields.number("chunk_overlap")?)
                .or(fields.number("overlap")?),
        };
        let sources = usize::from(self.file.is_some())
            + usize::from(text.is_some())
            + usize::from(url.is_some());
        if sources > 1 {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "text",
                "send only one of a file, `text` (or `text_content`) and `url`",
            ));
        }
        let body = match (self.file, text, url) {
            (Some(file), _, _) => ContentBody::File {
                file_name: file.file_name,
                media_type: file.media_type,
                bytes: file.bytes,
            },
            (None, Some(text), _) => ContentBody::Text(text),
            (None, None, Some(url)) => ContentBody::Url(url),
            (None, None, None) => {
                return Err(ApiError::field(
                    ErrorCode::InvalidField,
                    "text",
                    "send a file (multipart/form-data), a `text` or a `url`",
                ))
            }
        };
        Ok(NewContent {
            body,
            name: fields.string("name")?,
            description: fields.string("description")?,
            metadata: fields.structured("metadata")?,
            reader: fields.string("reader")?.or(fields.string("reader_id")?),
            chunking,
        })
    }
}

fn not_a_string(field: &str) -> ApiError {
    ApiError::field(ErrorCode::InvalidField, field, "must be a string")
}

/// A page of contents, newest first.
#[derive(Serialize, ToSchema)]
pub struct ContentList {
    pub data: Vec<ContentView>,
    pub meta: PageMeta,
}

/// Which page of contents.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentListQuery {
    /// Contents per page (1 to 500, default 50).
    pub limit: Option<u32>,
    /// The page, from 1 (the default); not with `cursor`.
    pub page: Option<u32>,
    /// `next_cursor` of the previous page; not with `page`.
    pub cursor: Option<String>,
}

/// The tenant's contents, newest first.
#[utoipa::path(
    get,
    path = "/knowledge/content",
    tag = "knowledge",
    params(ContentListQuery),
    security(("bearer" = ["knowledge:read"])),
    responses((status = 200, body = ContentList))
)]
async fn list_contents(
    auth: Auth<scopes::KnowledgeRead>,
    State(knowledge): State<Arc<KnowledgeService>>,
    Query(query): Query<ContentListQuery>,
) -> Result<axum::Json<ContentList>, ApiError> {
    let listed = knowledge
        .list(
            auth.principal.tenant_id,
            query.limit,
            query.page,
            query.cursor,
        )
        .await?;
    Ok(axum::Json(ContentList {
        meta: PageMeta::new(listed.page, listed.limit, listed.total, listed.next_cursor),
        data: listed.contents.into_iter().map(ContentView::from).collect(),
    }))
}

/// How many contents were deleted.
#[derive(Serialize, ToSchema)]
pub struct DeletedContents {
    pub deleted: u64,
}

/// Deletes every content of the tenant, with their chunks.
#[utoipa::path(
    delete,
    path = "/knowledge/content",
    tag = "knowledge",
    security(("bearer" = ["knowledge:delete"])),
    responses((status = 200, body = DeletedContents))
)]
async fn delete_all_contents(
    auth: Auth<scopes::KnowledgeDelete>,
    State(knowledge): State<Arc<KnowledgeService>>,
) -> Result<axum::Json<DeletedContents>, ApiError> {
    let deleted = knowledge.delete_all(auth.principal.tenant_id).await?;
    Ok(axum::Json(DeletedContents { deleted }))
}

/// One content.
#[utoipa::path(
    get,
    path = "/knowledge/content/{content_id}",
    tag = "knowledge",
    params(ContentPath),
    security(("bearer" = ["knowledge:read"])),
    responses((status = 200, body = ContentView))
)]
async fn get_content(
    auth: Auth<scopes::KnowledgeRead>,
    State(knowledge): State<Arc<KnowledgeService>>,
    Path(path): Path<ContentPath>,
) -> Result<axum::Json<ContentView>, ApiError> {
    let content = knowledge
        .get(auth.principal.tenant_id, path.content_id)
        .await?;
    Ok(axum::Json(ContentView::from(content)))
}

/// Changes to a content: absent fields are kept; `description: null` clears it; `metadata`
/// replaces the metadata whole. As JSON or as AgentOS's form (metadata as JSON text).
#[derive(Deserialize, ToSchema)]
pub struct UpdateContentRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

/// Changes a content's name, description or metadata (its text stays; upload again to change it).
#[utoipa::path(
    patch,
    path = "/knowledge/content/{content_id}",
    tag = "knowledge",
    params(ContentPath),
    request_body(content(
        (UpdateContentRequest = "application/json"),
        (UpdateContentRequest = "multipart/form-data"),
        (UpdateContentRequest = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = ["knowledge:write"])),
    responses((status = 200, body = ContentView))
)]
async fn update_content(
    auth: Auth<scopes::KnowledgeWrite>,
    State(knowledge): State<Arc<KnowledgeService>>,
    Path(path): Path<ContentPath>,
    fields: Fields,
) -> Result<axum::Json<ContentView>, ApiError> {
    let description = match fields.0.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) if text.is_empty() => Some(None),
        Some(Value::String(text)) => Some(Some(text.clone())),
        Some(_) => return Err(not_a_string("description")),
    };
    let name = match fields.0.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err(not_a_string("name")),
    };
    let patch = ContentPatch {
        name,
        description,
        metadata: fields.structured("metadata")?,
    };
    let content = knowledge
        .update(auth.principal.tenant_id, path.content_id, patch)
        .await?;
    Ok(axum::Json(ContentView::from(content)))
}

/// Deletes a content and its chunks.
#[utoipa::path(
    delete,
    path = "/knowledge/content/{content_id}",
    tag = "knowledge",
    params(ContentPath),
    security(("bearer" = ["knowledge:delete"])),
    responses((status = 204))
)]
async fn delete_content(
    auth: Auth<scopes::KnowledgeDelete>,
    State(knowledge): State<Arc<KnowledgeService>>,
    Path(path): Path<ContentPath>,
) -> Result<StatusCode, ApiError> {
    knowledge
        .delete(auth.principal.tenant_id, path.content_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a content is in its processing.
#[derive(Serialize, ToSchema)]
pub struct ContentStatusView {
    pub id: String,
    /// `processing`, `completed` or `failed`.
    pub status: String,
    /// Why it failed; empty otherwise (AgentOS's clients expect a string here).
    pub status_message: String,
    pub chunk_count: u64,
}

/// A content's processing status.
#[utoipa::path(
    get,
    path = "/knowledge/content/{content_id}/status",
    tag = "knowledge",
    params(ContentPath),
    security(("bearer" = ["knowledge:read"])),
    responses((status = 200, body = ContentStatusView))
)]
async fn content_status(
    auth: Auth<scopes::KnowledgeRead>,
    State(knowledge): State<Arc<KnowledgeService>>,
    Path(path): Path<ContentPath>,
) -> Result<axum::Json<ContentStatusView>, ApiError> {
    let content = knowledge
        .get(auth.principal.tenant_id, path.content_id)
        .await?;
    Ok(axum::Json(ContentStatusView {
        id: content.id.to_string(),
        status: content.status.as_str().to_owned(),
        status_message: content.status_message.unwrap_or_default(),
        chunk_count: content.chunk_count,
    }))
}

/// AgentOS's paging of search results.
#[derive(Deserialize, ToSchema)]
pub struct SearchMeta {
    pub limit: Option<u32>,
    pub page: Option<u32>,
}

/// A search, in AgentOS's shape (`search_type`, `max_results`, `filters`, `meta`) or the Open Agent
/// API's (`query`, `filters`, `limit`). AgentOS's `knowledge_id`, `db_id` and `vector_db_ids` are
/// accepted and ignored: a tenant has one knowledge base.
#[derive(Deserialize, ToSchema)]
pub struct SearchKnowledgeRequest {
    pub query: String,
    /// `vector`, `keyword` or `hybrid` (the default). Without an embedder every search is keyword.
    pub search_type: Option<String>,
    /// Results per page, 1 to 100 (default 10); also `limit` or `meta.limit`.
    pub max_results: Option<u32>,
    pub limit: Option<u32>,
    /// Metadata equality: `{"key": value}`, each value a string, number, boolean or null.
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    pub meta: Option<SearchMeta>,
}

/// One search result.
#[derive(Clone, Serialize, ToSchema)]
pub struct SearchResultView {
    /// The chunk's id.
    pub id: String,
    pub content_id: String,
    /// The content's name.
    pub name: String,
    /// The chunk's text (Open Agent API).
    pub text: String,
    /// The same text (AgentOS).
    pub content: String,
    /// Higher is better: cosine similarity (vector), text rank (keyword) or fused reciprocal-rank
    /// score (hybrid).
    pub score: f64,
    /// The content's metadata.
    pub metadata: Map<String, Value>,
    /// The chunk's place in its content, from 0.
    pub chunk: u32,
}

/// Paging facts of a search.
#[derive(Serialize, ToSchema)]
pub struct SearchPageMeta {
    pub page: u32,
    pub limit: u32,
    pub total_pages: u64,
    /// Results found, up to the search's reach of 1000.
    pub total_count: u64,
}

/// Search results, for both faces: `results` (Open Agent API) and `data` with `meta` (AgentOS) hold
/// the same results, best first.
#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchResultView>,
    pub data: Vec<SearchResultView>,
    pub meta: SearchPageMeta,
    /// The search that ran: `keyword` when vector or hybrid was asked for without an embedder.
    pub search_type: String,
    pub requested_search_type: String,
    /// Why `search_type` differs from what was asked for.
    pub note: Option<String>,
}

impl From<SearchOutcome> for SearchResponse {
    fn from(outcome: SearchOutcome) -> Self {
        let results: Vec<SearchResultView> = outcome
            .hits
            .into_iter()
            .map(|hit| SearchResultView {
                id: hit.chunk_id.to_string(),
                content_id: hit.content_id.to_string(),
                name: hit.content_name,
                content: hit.text.clone(),
                text: hit.text,
                score: hit.score,
                metadata: hit.metadata,
                chunk: hit.seq,
            })
            .collect();
        let data = results.clone();
        Self {
            results,
            data,
            meta: SearchPageMeta {
                page: outcome.page,
                limit: outcome.limit,
                total_pages: outcome.total.div_ceil(u64::from(outcome.limit)),
                total_count: outcome.total,
            },
            search_type: outcome.used.as_str().to_owned(),
            requested_search_type: outcome.requested.as_str().to_owned(),
            note: outcome.note,
        }
    }
}

/// Searches the tenant's knowledge by keyword, by vector or both (reciprocal-rank fusion).
#[utoipa::path(
    post,
    path = "/knowledge/search",
    tag = "knowledge",
    request_body = SearchKnowledgeRequest,
    security(("bearer" = ["knowledge:read"])),
    responses((status = 200, body = SearchResponse))
)]
async fn search_knowledge(
    auth: Auth<scopes::KnowledgeRead>,
    State(knowledge): State<Arc<KnowledgeService>>,
    Json(request): Json<SearchKnowledgeRequest>,
) -> Result<axum::Json<SearchResponse>, ApiError> {
    let filters = match request.filters {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(filters)) => filters,
        Some(_) => {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "filters",
                "an object of metadata keys and the values they must equal",
            ))
        }
    };
    let (meta_limit, page) = match request.meta {
        Some(meta) => (meta.limit, meta.page),
        None => (None, None),
    };
    let search = SearchRequest {
        query: request.query,
        search_type: request
            .search_type
            .as_deref()
            .filter(|kind| !kind.trim().is_empty())
            .map(SearchType::parse)
            .transpose()?,
        max_results: request.max_results.or(request.limit).or(meta_limit),
        page,
        filters,
    };
    let outcome = knowledge.search(&auth.principal, search).await?;
    Ok(axum::Json(SearchResponse::from(outcome)))
}

/// A reader and what it takes.
#[derive(Serialize, ToSchema)]
pub struct ReaderView {
    /// `text`, `markdown`, `html`, `json`, `csv` or `pdf`.
    pub id: String,
    pub description: String,
    pub extensions: Vec<String>,
    pub media_types: Vec<String>,
}

/// A chunker.
#[derive(Serialize, ToSchema)]
pub struct ChunkerView {
    /// `fixed`, `recursive`, `markdown` or `rows` (AgentOS calls the id `key`).
    pub key: String,
    pub description: String,
}

/// The search index, as AgentOS lists its vector databases.
#[derive(Serialize, ToSchema)]
pub struct VectorDbView {
    pub id: String,
    pub name: String,
    /// The search types it answers (`keyword`, and `vector` and `hybrid` with an embedder).
    pub search_types: Vec<String>,
}

/// The knowledge base's configuration for this tenant.
#[derive(Serialize, ToSchema)]
pub struct KnowledgeConfigView {
    /// The embedder (`provider/model`); `null`: no embedder, search is keyword-only.
    pub embedder: Option<String>,
    pub keyword_only: bool,
    pub search_types: Vec<String>,
    pub default_search_type: String,
    /// Says that search is keyword-only, when it is.
    pub note: Option<String>,
    /// The full-text index: `sqlite-fts5` or `postgres-tsvector`.
    pub keyword_index: String,
    pub max_upload_bytes: usize,
    /// The readers by id (AgentOS's shape: an object keyed by reader id).
    pub readers: std::collections::BTreeMap<String, ReaderView>,
    /// The chunkers by key.
    pub chunkers: std::collections::BTreeMap<String, ChunkerView>,
    /// The one search index, with its search types.
    pub vector_dbs: Vec<VectorDbView>,
    pub default_chunk_size: u32,
    pub default_overlap: u32,
    /// The metadata keys of the tenant's contents: what search `filters` can compare.
    pub filters: Vec<String>,
}

/// Which embedder (or that search is keyword-only), the readers, chunkers, limits and filterable
/// metadata keys.
#[utoipa::path(
    get,
    path = "/knowledge/config",
    tag = "knowledge",
    security(("bearer" = ["knowledge:read"])),
    responses((status = 200, body = KnowledgeConfigView))
)]
async fn knowledge_config(
    auth: Auth<scopes::KnowledgeRead>,
    State(knowledge): State<Arc<KnowledgeService>>,
) -> Result<axum::Json<KnowledgeConfigView>, ApiError> {
    use agentd_core::knowledge::ChunkStrategy;
    use agentd_runtime::knowledge::read;
    let settings = knowledge.settings(auth.principal.tenant_id).await?;
    let list = |table: &[(agentd_core::knowledge::ContentKind, &[&str])], kind| {
        table
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, items)| items.iter().map(|item| (*item).to_owned()))
            .collect::<Vec<_>>()
    };
    let readers = read::READERS
        .iter()
        .map(|(kind, description)| {
            let reader = ReaderView {
                id: kind.as_str().to_owned(),
                description: (*description).to_owned(),
                extensions: list(read::EXTENSIONS, *kind),
                media_types: list(read::MEDIA_TYPES, *kind),
            };
            (reader.id.clone(), reader)
        })
        .collect();
    let chunkers = ChunkStrategy::ALL
        .iter()
        .map(|strategy| {
            let chunker = ChunkerView {
            key: strategy.as_str().to_owned(),
            description: match strategy {
                ChunkStrategy::Fixed => "Windows of chunk_size characters, overlapping by overlap, cut at a space where one is near.",
                ChunkStrategy::Recursive => "Split at paragraphs, lines, sentences, then words until pieces fit; merged back up to chunk_size, overlapping by overlap.",
                ChunkStrategy::Markdown => "One section per heading, long sections cut recursively with the heading repeated; the default for markdown and HTML.",
                ChunkStrategy::Rows => "Whole lines (CSV rows) up to chunk_size; the default for CSV.",
            }
            .to_owned(),
            };
            (chunker.key.clone(), chunker)
        })
        .collect();
    let search_types: Vec<String> = settings
        .search_types
        .iter()
        .map(|kind| kind.as_str().to_owned())
        .collect();
    Ok(axum::Json(KnowledgeConfigView {
        keyword_only: settings.embedder.is_none(),
        embedder: settings.embedder,
        vector_dbs: vec![VectorDbView {
            id: "agentd".to_owned(),
            name: settings.keyword_index.to_owned(),
            search_types: search_types.clone(),
        }],
        search_types,
        default_search_type: settings.default_search_type.as_str().to_owned(),
        note: settings.note,
        keyword_index: settings.keyword_index.to_owned(),
        max_upload_bytes: settings.max_upload_bytes,
        readers,
        chunkers,
        default_chunk_size: agentd_runtime::knowledge::DEFAULT_CHUNK_SIZE,
        default_overlap: agentd_runtime::knowledge::DEFAULT_OVERLAP,
        filters: settings.metadata_keys,
    }))
}
