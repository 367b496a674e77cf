//! Readers: what kind a content is (from the reader the client names, the file name or URL, the
//! media type, or a look at the bytes) and how its bytes become text. Detection happens when the
//! upload arrives, so an unsupported type is refused at once; reading happens in the background, so
//! a broken document fails its content with the reader's reason.

use agentd_core::knowledge::ContentKind;
use serde_json::Value;

use super::html;
use crate::Error;

/// What the client said about an upload, for [`detect`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints<'a> {
    /// The reader the client named (`markdown`, AgentOS's `MarkdownReader`…).
    pub reader: Option<&'a str>,
    /// The file name, or the URL's path.
    pub name: Option<&'a str>,
    /// The declared media type (a part's `Content-Type`, a response's).
    pub media_type: Option<&'a str>,
}

/// The kinds each reader accepts, by name, for errors and `/knowledge/config`.
pub const EXTENSIONS: &[(ContentKind, &[&str])] = &[
    (ContentKind::Text, &["txt", "text", "log"]),
    (ContentKind::Markdown, &["md", "markdown", "mdx"]),
    (ContentKind::Html, &["html", "htm", "xhtml"]),
    (ContentKind::Json, &["json", "jsonl", "ndjson"]),
    (ContentKind::Csv, &["csv"]),
    (ContentKind::Pdf, &["pdf"]),
];

/// The media types each reader accepts.
pub const MEDIA_TYPES: &[(ContentKind, &[&str])] = &[
    (ContentKind::Text, &["text/plain"]),
    (ContentKind::Markdown, &["text/markdown", "text/x-markdown"]),
    (ContentKind::Html, &["text/html", "application/xhtml+xml"]),
    (
        ContentKind::Json,
        &[
            "application/json",
            "application/x-ndjson",
            "application/jsonl",
        ],
    ),
    (ContentKind::Csv, &["text/csv", "application/csv"]),
    (ContentKind::Pdf, &["application/pdf"]),
];

/// The readers, with a line each for `/knowledge/config`.
pub const READERS: &[(ContentKind, &str)] = &[
    (ContentKind::Text, "Plain text (UTF-8)."),
    (ContentKind::Markdown, "Markdown; chunked by heading."),
    (
        ContentKind::Html,
        "HTML, turned into text (scripts and styles dropped, headings kept as markdown headings).",
    ),
    (
        ContentKind::Json,
        "JSON or JSON lines, flattened to `path: value` lines; the items of a top-level array stay together.",
    ),
    (
        ContentKind::Csv,
        "CSV with a header row; each row becomes one `column: value; …` line.",
    ),
    (
        ContentKind::Pdf,
        "PDF: the text of each page, in page order (no OCR: scanned pages have no text).",
    ),
];

/// The most bytes one page's content streams may decompress to: a guard against compression bombs.
const PDF_MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// Decides the kind of an upload: the named reader first, then the extension of `name`, then the
/// media type; failing those, bytes that are UTF-8 text without NUL are read as text. Anything else
/// is an [`Error::UnsupportedType`] naming what is supported.
pub fn detect(hints: Hints<'_>, bytes: &[u8]) -> Result<ContentKind, Error> {
    if let Some(reader) = hints.reader {
        return parse_reader(reader);
    }
    let extension = hints
        .name
        .and_then(|name| name.rsplit('/').next())
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, extension)| extension.to_ascii_lowercase());
    if let Some(extension) = &extension {
        if let Some((kind, _)) = EXTENSIONS
            .iter()
            .find(|(_, extensions)| extensions.contains(&extension.as_str()))
        {
            return Ok(*kind);
        }
    }
    let media_type = hints
        .media_type
        .and_then(|raw| raw.split(';').next())
        .map(|raw| raw.trim().to_ascii_lowercase())
        .filter(|raw| !raw.is_empty());
    if let Some(media_type) = &media_type {
        if let Some((kind, _)) = MEDIA_TYPES
            .iter()
            .find(|(_, types)| types.contains(&media_type.as_str()))
        {
            return Ok(*kind);
        }
        if media_type.ends_with("+json") {
            return Ok(ContentKind::Json);
        }
        if media_type.starts_with("text/") {
            return Ok(ContentKind::Text);
        }
        let binary = ["image/", "audio/", "video/", "font/", "model/"];
        if binary.iter().any(|prefix| media_type.starts_with(prefix)) {
            return Err(unsupported(hints.name, Some(media_type)));
        }
    }
    if looks_like_text(bytes) {
        return Ok(ContentKind::Text);
    }
    Err(unsupported(hints.name, media_type.as_deref()))
}

/// A reader by name: ours (`markdown`) or AgentOS's (`MarkdownReader`, `pdf_reader`…).
pub fn parse_reader(raw: &str) -> Result<ContentKind, Error> {
    let name = raw.trim().to_ascii_lowercase().replace(['_', '-'], "");
    let name = name.strip_suffix("reader").unwrap_or(&name);
    let kind = match name {
        "text" | "txt" => Some(ContentKind::Text),
        "markdown" | "md" => Some(ContentKind::Markdown),
        "html" | "website" | "web" => Some(ContentKind::Html),
        "json" => Some(ContentKind::Json),
        "csv" | "fieldlabeledcsv" => Some(ContentKind::Csv),
        "pdf" => Some(ContentKind::Pdf),
        _ => None,
    };
    kind.ok_or_else(|| {
        Error::invalid(
            "reader",
            format!(
                "unknown reader `{raw}`; the readers are {}",
                ContentKind::ALL.map(ContentKind::as_str).join(", ")
            ),
        )
    })
}

fn unsupported(name: Option<&str>, media_type: Option<&str>) -> Error {
    let what = match (name, media_type) {
        (Some(name), Some(media_type)) => format!("`{name}` ({media_type})"),
        (Some(name), None) => format!("`{name}`"),
        (None, Some(media_type)) => format!("content of type {media_type}"),
        (None, None) => "this content".to_owned(),
    };
    let extensions: Vec<String> = EXTENSIONS
        .iter()
        .flat_map(|(_, extensions)| extensions.iter().map(|e| format!(".{e}")))
        .collect();
    Error::UnsupportedType(format!(
        "cannot read {what}: the knowledge base reads text, markdown, HTML, JSON and CSV \
         ({}), or name a `reader`",
        extensions.join(", ")
    ))
}

/// UTF-8 (after an optional byte-order mark) without NUL characters.
fn looks_like_text(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).is_ok_and(|text| !text.contains('\0'))
}

/// Reads `bytes` as `kind` into text for the chunkers; `Err` is the reason the content fails.
pub fn read(kind: ContentKind, bytes: &[u8]) -> Result<String, String> {
    let text = match kind {
        ContentKind::Pdf => pdf(bytes)?,
        ContentKind::Text | ContentKind::Markdown => utf8(bytes)?,
        ContentKind::Html => html::to_text(&utf8(bytes)?),
        ContentKind::Json => json(&utf8(bytes)?)?,
        ContentKind::Csv => csv(&utf8(bytes)?)?,
    };
    if text.trim().is_empty() {
        return Err(format!("no text found in this {kind} content"));
    }
    Ok(text)
}

/// The text of a PDF's pages, pages separated by blank lines.
fn pdf(bytes: &[u8]) -> Result<String, String> {
    // A malformed file must fail the content, never take the processing task down with it.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pdf_pages(bytes)))
        .unwrap_or_else(|_| Err("the PDF cannot be read: it is malformed".to_owned()))
}

fn pdf_pages(bytes: &[u8]) -> Result<String, String> {
    let document = lopdf::Document::load_mem(bytes)
        .map_err(|error| format!("the PDF cannot be read: {error}"))?;
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err("the PDF has no pages".to_owned());
    }
    let mut text = String::new();
    for page in pages {
        let page_text = document
            .extract_text_with_limit(&[page], PDF_MAX_DECOMPRESSED)
            .map_err(|error| format!("page {page} of the PDF cannot be read: {error}"))?;
        let page_text = page_text.trim();
        if !page_text.is_empty() {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(page_text);
        }
    }
    if text.is_empty() {
        return Err(
            "no text found in this PDF: its pages may be scanned images, and agentd does \
                    no OCR"
                .to_owned(),
        );
    }
    Ok(text)
}

/// The bytes as text: UTF-8 without a byte-order mark or NUL, line ends as `\n`.
fn utf8(bytes: &[u8]) -> Result<String, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|error| {
        format!(
            "the content is not UTF-8 text (invalid byte at offset {})",
            error.valid_up_to()
        )
    })?;
    if text.contains('\0') {
        return Err("the content contains NUL characters: is it a binary file?".to_owned());
    }
    Ok(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// JSON (or JSON lines) flattened into `path: value` lines. The items of a top-level array are
/// blocks separated by blank lines, so a record's lines stay in one chunk when they fit.
fn json(text: &str) -> Result<String, String> {
    let values = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(value) => vec![value],
        Err(whole) => {
            // JSON lines: one document per non-empty line.
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let parsed: Result<Vec<Value>, _> = lines
                .iter()
                .map(|line| serde_json::from_str(line))
                .collect();
            match parsed {
                Ok(values) if lines.len() > 1 => values,
                _ => return Err(format!("invalid JSON: {whole}")),
            }
        }
    };
    let blocks: Vec<String> = values
        .iter()
        .map(|value| {
            let mut lines = Vec::new();
            flatten(value, "", &mut lines);
            lines.join("\n")
        })
        .filter(|block| !block.is_empty())
        .collect();
    Ok(blocks.join("\n\n"))
}

fn flatten(value: &Value, path: &str, lines: &mut Vec<String>) {
    let line = |text: String| {
        if path.is_empty() {
            text
        } else {
            format!("{path}: {text}")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(value, &path, lines);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(item, &format!("{path}[{index}]"), lines);
            }
        }
        Value::String(text) => lines.push(line(text.replace('\n', " "))),
        Value::Null => {}
        other => lines.push(line(other.to_string())),
    }
}

/// CSV (RFC 4180: commas, `"` quotes with `""` inside, fields across lines) with a header row; each
/// row becomes one `column: value; column: value` line.
fn csv(text: &str) -> Result<String, String> {
    let rows = parse_csv(text)?;
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err("the CSV has no header row".to_owned());
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    let mut lines = Vec::new();
    for (line, row) in rows {
        if row.len() != header.len() {
            return Err(format!(
                "CSV row on line {line} has {} fields, but the header has {}",
                row.len(),
                header.len()
            ));
        }
        let fields: Vec<String> = header
            .iter()
            .zip(&row)
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(name, value)| format!("{name}: {}", value.trim().replace('\n', " ")))
            .collect();
        if !fields.is_empty() {
            lines.push(fields.join("; "));
        }
    }
    if lines.is_empty() {
        return Err("the CSV has a header but no rows".to_owned());
    }
    Ok(lines.join("\n"))
}

/// The non-empty records of a CSV text, each with the line it starts on.
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut record_line = 1;
    let mut quoted_since: Option<usize> = None;
    let mut chars = text.chars().peekable();
    let mut finish = |record: &mut Vec<String>, field: &mut String, start: usize| {
        record.push(std::mem::take(field));
        let record = std::mem::take(record);
        if !(record.len() == 1 && record[0].trim().is_empty()) {
            records.push((start, record));
        }
    };
    while let Some(c) = chars.next() {
        if quoted_since.is_some() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted_since = None,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted_since = Some(line);
            }
            ',' => record.push(std::mem::take(&mut field)),
            '\n' => {
                finish(&mut record, &mut field, record_line);
                line += 1;
                record_line = line;
            }
            c => field.push(c),
        }
    }
    if let Some(opened) = quoted_since {
        return Err(format!(
            "the CSV's quoted field opened on line {opened} is never closed"
        ));
    }
    if !field.is_empty() || !record.is_empty() {
        finish(&mut record, &mut field, record_line);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints<'a>(name: Option<&'a str>, media_type: Option<&'a str>) -> Hints<'a> {
        Hints {
            reader: None,
            name,
            media_type,
        }
    }

    #[test]
    fn kinds_come_from_reader_name_type_or_bytes() {
        let named = Hints {
            reader: Some("MarkdownReader"),
            ..hints(Some("a.txt"), None)
        };
        assert_eq!(detect(named, b"x").unwrap(), ContentKind::Markdown);
        assert_eq!(
            detect(
                hints(Some("notes.MD"), Some("application/octet-stream")),
                b"x"
            )
            .unwrap(),
            ContentKind::Markdown
        );
        assert_eq!(
            detect(hints(Some("/docs/page.html"), None), b"x").unwrap(),
            ContentKind::Html
        );
        assert_eq!(
            detect(hints(None, Some("application/json; charset=utf-8")), b"{}").unwrap(),
            ContentKind::Json
        );
        assert_eq!(
            detect(hints(Some("README"), None), b"plain words").unwrap(),
            ContentKind::Text
        );
        assert_eq!(
            detect(hints(Some("x.pdf"), None), b"%PDF").unwrap(),
            ContentKind::Pdf
        );
        for (name, media_type, bytes) in [
            (Some("photo.png"), Some("image/png"), &b"\x89PNG"[..]),
            (
                Some("data.bin"),
                Some("application/octet-stream"),
                b"\x00\x01",
            ),
            (Some("doc.docx"), None, b"PK\x03\x04\x00"),
        ] {
            let error = detect(hints(name, media_type), bytes).unwrap_err();
            assert!(
                matches!(&error, Error::UnsupportedType(m) if m.contains("cannot read")),
                "{error}"
            );
        }
        assert!(parse_reader("SemanticReader").is_err());
    }

    #[test]
    fn readers_turn_bytes_into_text_or_say_why_not() {
        assert_eq!(
            read(ContentKind::Text, b"\xEF\xBB\xBFa\r\nb").unwrap(),
            "a\nb"
        );
        assert!(read(ContentKind::Text, b"\xff\xfe")
            .unwrap_err()
            .contains("not UTF-8"));
        assert!(read(ContentKind::Text, b"a\0b")
            .unwrap_err()
            .contains("NUL"));
        assert!(read(ContentKind::Text, b"  \n ")
            .unwrap_err()
            .contains("no text"));
        assert!(read(ContentKind::Pdf, b"%PDF-1.4")
            .unwrap_err()
            .contains("PDF"));
        let pdf = agentd_testkit::pdf::pdf(&["Quarterly report\nRevenue (net) grew", "Page two"]);
        let text = read(ContentKind::Pdf, &pdf).unwrap();
        assert!(text.contains("Quarterly report"), "{text:?}");
        assert!(text.contains("Revenue (net) grew"), "{text:?}");
        assert!(
            text.find("Quarterly").unwrap() < text.find("Page two").unwrap(),
            "{text:?}"
        );
        let blank = agentd_testkit::pdf::pdf(&[""]);
        assert!(read(ContentKind::Pdf, &blank)
            .unwrap_err()
            .contains("no text found in this PDF"));
        assert!(
            read(ContentKind::Pdf, &pdf[..40]).is_err(),
            "a PDF cut off before its first page is refused"
        );

        let json = read(
            ContentKind::Json,
            br#"[{"name": "Ann", "tags": ["a", "b"], "address": {"city": "Oslo"}}, {"name": "Bob"}]"#,
        )
        .unwrap();
        assert_eq!(
            json,
            // (keys in sorted order: serde_json's maps are sorted)
            "address.city: Oslo\nname: Ann\ntags[0]: a\ntags[1]: b\n\nname: Bob"
        );
        assert_eq!(
            read(ContentKind::Json, b"{\"a\": 1}\n{\"a\": 2}\n").unwrap(),
            "a: 1\n\na: 2"
        );
        assert!(read(ContentKind::Json, b"{\"a\": ")
            .unwrap_err()
            .starts_with("invalid JSON"));

        let csv = read(
            ContentKind::Csv,
            b"name,city,note\nAnn,Oslo,\"likes \"\"tea\"\", a lot\"\n\nBob,\"Ber\ngen\",\n",
        )
        .unwrap();
        assert_eq!(
            csv,
            "name: Ann; city: Oslo; note: likes \"tea\", a lot\nname: Bob; city: Ber gen"
        );
        assert!(read(ContentKind::Csv, b"a,b\n1,2,3\n")
            .unwrap_err()
            .contains("line 2 has 3 fields"));
        assert!(read(ContentKind::Csv, b"a,b\n\"1,2\n")
            .unwrap_err()
            .contains("never closed"));
        assert!(read(ContentKind::Csv, b"a,b\n")
            .unwrap_err()
            .contains("no rows"));
    }
}
