//! Knowledge: what a tenant uploads to search (AgentOS's knowledge contents) and the chunks each is
//! cut into. A [`Content`] is read, chunked, embedded and indexed in the background; its chunks exist
//! only once it is `completed`, all written together.

use std::fmt;

use serde_json::{Map, Value};

use crate::{ChunkId, ContentId, TenantId, Timestamp};

/// One uploaded text, file or page.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    pub tenant_id: TenantId,
    pub id: ContentId,
    pub name: String,
    pub description: Option<String>,
    /// The client's metadata: a JSON object whose top-level values search filters compare.
    pub metadata: Map<String, Value>,
    /// How the content is read.
    pub kind: ContentKind,
    pub source: ContentSource,
    /// Bytes uploaded (or fetched).
    pub size_bytes: u64,
    /// [`content_hash`] of those bytes: an identical upload of the same tenant is found by it.
    pub content_hash: String,
    pub status: ContentStatus,
    /// Why processing failed (or a note on how it went).
    pub status_message: Option<String>,
    /// Chunks written; 0 until `completed`.
    pub chunk_count: u64,
    pub chunking: Chunking,
    /// The embedder (`provider/model`) the chunks are embedded with; `None`: keyword search only.
    pub embedder: Option<String>,
    /// The node processing (or that processed) the content, so a restarting node fails only the
    /// contents it left `processing` itself.
    pub node_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a content came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentSource {
    /// Text in the request.
    Text,
    /// An uploaded file, by its name.
    File { file_name: String },
    /// A page fetched from a URL.
    Url { url: String },
}

impl ContentSource {
    /// `text`, `file` or `url`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::File { .. } => "file",
            Self::Url { .. } => "url",
        }
    }

    /// The file name or URL, if any.
    pub fn origin(&self) -> Option<&str> {
        match self {
            Self::Text => None,
            Self::File { file_name } => Some(file_name),
            Self::Url { url } => Some(url),
        }
    }

    /// Rebuilds a source from [`as_str`](Self::as_str) and [`origin`](Self::origin).
    pub fn from_parts(kind: &str, origin: Option<String>) -> Option<Self> {
        match (kind, origin) {
            ("text", _) => Some(Self::Text),
            ("file", Some(file_name)) => Some(Self::File { file_name }),
            ("url", Some(url)) => Some(Self::Url { url }),
            _ => None,
        }
    }
}

/// How a content is read into text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentKind {
    Text,
    Markdown,
    Html,
    Json,
    Csv,
    Pdf,
}

impl ContentKind {
    pub const ALL: [ContentKind; 6] = [
        Self::Text,
        Self::Markdown,
        Self::Html,
        Self::Json,
        Self::Csv,
        Self::Pdf,
    ];

    /// The kind's name: `text`, `markdown`, `html`, `json`, `csv`, `pdf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Markdown => "markdown",
            Self::Html => "html",
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Pdf => "pdf",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

impl fmt::Display for ContentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a content is in its processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentStatus {
    /// Accepted; being read, chunked and embedded in the background.
    Processing,
    /// Chunked and indexed: searchable.
    Completed,
    /// Processing failed (the reason is in `status_message`); no chunks were written.
    Failed,
}

impl ContentStatus {
    pub const ALL: [ContentStatus; 3] = [Self::Processing, Self::Completed, Self::Failed];

    /// `processing`, `completed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw)
    }
}

impl fmt::Display for ContentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a content's text is cut into chunks. Sizes are in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    pub strategy: ChunkStrategy,
    /// The longest chunk.
    pub chunk_size: u32,
    /// Characters a chunk repeats from the end of the one before (fixed and recursive chunking).
    pub overlap: u32,
}

/// The chunkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkStrategy {
    /// Windows of `chunk_size` characters, `overlap` apart, cut at a space where one is near.
    Fixed,
    /// Split at paragraphs, then lines, sentences and words, until pieces fit; pieces are merged
    /// back up to `chunk_size`.
    Recursive,
    /// One section per heading (never across headings), long sections cut recursively, each piece
    /// headed by its section's heading.
    Markdown,
    /// Whole lines (CSV rows) up to `chunk_size`; a row is never split unless it alone is too long.
    Rows,
}

impl ChunkStrategy {
    pub const ALL: [ChunkStrategy; 4] = [Self::Fixed, Self::Recursive, Self::Markdown, Self::Rows];

    /// `fixed`, `recursive`, `markdown` or `rows`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Recursive => "recursive",
            Self::Markdown => "markdown",
            Self::Rows => "rows",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == raw)
    }
}

impl fmt::Display for ChunkStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A piece of a content's text, with its embedding when an embedder is configured.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub tenant_id: TenantId,
    pub id: ChunkId,
    pub content_id: ContentId,
    /// The chunk's place in its content, from 0.
    pub seq: u32,
    pub text: String,
    pub embedding: Option<Vec<f32>>,
}

/// The hash that identifies identical uploads: `sha256:<hex>` of the bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::sha256_hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ContentKind::ALL {
            assert_eq!(ContentKind::parse(kind.as_str()), Some(kind));
        }
        for status in ContentStatus::ALL {
            assert_eq!(ContentStatus::parse(status.as_str()), Some(status));
        }
        for strategy in ChunkStrategy::ALL {
            assert_eq!(ChunkStrategy::parse(strategy.as_str()), Some(strategy));
        }
        let source = ContentSource::File {
            file_name: "a.md".into(),
        };
        assert_eq!(
            ContentSource::from_parts(source.as_str(), source.origin().map(str::to_owned)),
            Some(source)
        );
        assert_eq!(ContentSource::from_parts("url", None), None);
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
