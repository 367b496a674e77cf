//! Chunkers: a content's text → the pieces that are embedded and searched. Sizes are characters.
//! Every chunk is trimmed and non-empty; chunks come in text order.

use agentd_core::knowledge::{ChunkStrategy, Chunking};

/// Where the recursive chunker splits, coarsest first: paragraphs, lines, sentences, words.
const SEPARATORS: &[&str] = &["\n\n", "\n", ". ", " "];

/// Cuts `text` as `chunking` says.
pub fn split(text: &str, chunking: &Chunking) -> Vec<String> {
    let size = chunking.chunk_size.max(1) as usize;
    let overlap = (chunking.overlap as usize).min(size / 2);
    match chunking.strategy {
        ChunkStrategy::Fixed => fixed(text, size, overlap),
        ChunkStrategy::Recursive => recursive(text, size, overlap),
        ChunkStrategy::Markdown => markdown(text, size, overlap),
        ChunkStrategy::Rows => rows(text, size),
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// The byte offset `count` characters into `text` (its length when shorter).
fn offset_after(text: &str, count: usize) -> usize {
    text.char_indices()
        .nth(count)
        .map_or(text.len(), |(i, _)| i)
}

fn push_trimmed(chunks: &mut Vec<String>, piece: &str) {
    let piece = piece.trim();
    if !piece.is_empty() {
        chunks.push(piece.to_owned());
    }
}

/// Windows of `size` characters, each starting `overlap` characters before the previous one ended.
/// A window ends at its last whitespace when that is in its last fifth, so words are rarely cut.
fn fixed(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let window = &text[start..];
        let mut end = start + offset_after(window, size);
        if end < text.len() {
            let piece = &text[start..end];
            if let Some(space) = piece.rfind(char::is_whitespace) {
                if chars(&piece[..space]) >= size * 4 / 5 {
                    end = start + space;
                }
            }
        }
        push_trimmed(&mut chunks, &text[start..end]);
        if end >= text.len() {
            break;
        }
        let piece = &text[start..end];
        let next = match overlap {
            0 => end,
            overlap => piece
                .char_indices()
                .rev()
                .nth(overlap - 1)
                .map_or(start, |(i, _)| start + i),
        };
        // Always move forward, whatever the overlap.
        start = if next > start { next } else { end };
    }
    chunks
}

/// Pieces of at most `size` characters, split at the coarsest separator that makes them fit,
/// merged back in order up to `size`; a new chunk starts with the last pieces of the previous one,
/// up to `overlap` characters.
fn recursive(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    split_pieces(text, size, 0, &mut pieces);
    merge(&pieces, size, overlap)
}

/// Splits `text` into pieces that fit, each keeping its separator at its end.
fn split_pieces<'a>(text: &'a str, size: usize, level: usize, pieces: &mut Vec<&'a str>) {
    if chars(text) <= size {
        pieces.push(text);
        return;
    }
    let Some(separator) = SEPARATORS.get(level) else {
        // No separator left (one very long word): hard windows.
        let mut rest = text;
        while !rest.is_empty() {
            let end = offset_after(rest, size);
            pieces.push(&rest[..end]);
            rest = &rest[end..];
        }
        return;
    };
    for piece in text.split_inclusive(separator) {
        split_pieces(piece, size, level + 1, pieces);
    }
}

fn merge(pieces: &[&str], size: usize, overlap: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current: std::collections::VecDeque<(&str, usize)> = Default::default();
    let mut length = 0;
    for piece in pieces {
        let piece_length = chars(piece);
        if length + piece_length > size && !current.is_empty() {
            let text: String = current.iter().map(|(p, _)| *p).collect();
            push_trimmed(&mut chunks, &text);
            // Keep the tail that overlaps and still leaves room for this piece.
            while let Some((_, first)) = current.front() {
                if length > overlap || length + piece_length > size {
                    length -= first;
                    current.pop_front();
                } else {
                    break;
                }
            }
        }
        current.push_back((piece, piece_length));
        length += piece_length;
    }
    let text: String = current.iter().map(|(p, _)| *p).collect();
    push_trimmed(&mut chunks, &text);
    chunks
}

/// One section per heading (`#` to `######` at the start of a line, outside code fences); a
/// section that is too long is cut recursively, each piece starting with the section's heading.
fn markdown(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    for (heading, body) in sections(text) {
        // Blank lines between a heading and its text are not kept.
        let body = body.trim_start_matches('\n');
        let section = match heading {
            Some(heading) => format!("{heading}\n{body}"),
            None => body.to_owned(),
        };
        if chars(section.trim()) <= size {
            push_trimmed(&mut chunks, &section);
            continue;
        }
        let Some(heading) = heading else {
            chunks.extend(recursive(body, size, overlap));
            continue;
        };
        // Room for the heading line in each piece (at least half a chunk is left for the text).
        let room = size.saturating_sub(chars(heading) + 1).max(size / 2);
        for piece in recursive(body, room, overlap.min(room / 2)) {
            chunks.push(format!("{heading}\n{piece}"));
        }
    }
    chunks
}

/// The sections of a markdown text: the heading line (if any) and the text under it.
fn sections(text: &str) -> Vec<(Option<&str>, &str)> {
    let mut sections = Vec::new();
    let mut heading: Option<&str> = None;
    let mut body_start = 0;
    let mut in_fence = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed.trim_start().starts_with("```") || trimmed.trim_start().starts_with("~~~") {
            in_fence = !in_fence;
        } else if !in_fence && is_heading(trimmed) {
            sections.push((heading, &text[body_start..offset]));
            heading = Some(trimmed);
            body_start = offset + line.len();
        }
        offset += line.len();
    }
    sections.push((heading, &text[body_start..]));
    sections
        .into_iter()
        .filter(|(heading, body)| heading.is_some() || !body.trim().is_empty())
        .collect()
}

fn is_heading(line: &str) -> bool {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    (1..=6).contains(&hashes)
        && line[hashes..].starts_with(' ')
        && !line[hashes..].trim().is_empty()
}

/// Whole lines up to `size` characters per chunk; a line longer than that is cut recursively.
fn rows(text: &str, size: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut length = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let line_length = chars(line);
        if line_length > size {
            push_trimmed(&mut chunks, &current);
            current.clear();
            length = 0;
            chunks.extend(recursive(line, size, 0));
            continue;
        }
        if length + line_length + 1 > size && !current.is_empty() {
            push_trimmed(&mut chunks, &current);
            current.clear();
            length = 0;
        }
        current.push_str(line);
        current.push('\n');
        length += line_length + 1;
    }
    push_trimmed(&mut chunks, &current);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunking(strategy: ChunkStrategy, chunk_size: u32, overlap: u32) -> Chunking {
        Chunking {
            strategy,
            chunk_size,
            overlap,
        }
    }

    #[test]
    fn fixed_windows_overlap_and_prefer_spaces() {
        let text = "aaaa bbbb cccc dddd eeee";
        let chunks = split(text, &chunking(ChunkStrategy::Fixed, 10, 0));
        assert_eq!(chunks, ["aaaa bbbb", "cccc dddd", "eeee"]);
        let chunks = split(text, &chunking(ChunkStrategy::Fixed, 10, 4));
        assert_eq!(chunks, ["aaaa bbbb", "bbbb cccc", "cccc dddd", "dddd eeee"]);
        // Multi-byte characters are counted as characters and never cut.
        let chunks = split("ééééé", &chunking(ChunkStrategy::Fixed, 2, 0));
        assert_eq!(chunks, ["éé", "éé", "é"]);
        assert!(split("   ", &chunking(ChunkStrategy::Fixed, 10, 0)).is_empty());
    }

    #[test]
    fn recursive_keeps_paragraphs_then_sentences_together() {
        let text = "First paragraph here.\n\nSecond one. It has two sentences.\n\nThird.";
        let chunks = split(text, &chunking(ChunkStrategy::Recursive, 40, 0));
        assert_eq!(
            chunks,
            [
                "First paragraph here.",
                "Second one. It has two sentences.",
                "Third."
            ]
        );
        let chunks = split(text, &chunking(ChunkStrategy::Recursive, 1000, 0));
        assert_eq!(chunks, [text]);
        for chunk in split(
            &"word ".repeat(500),
            &chunking(ChunkStrategy::Recursive, 100, 20),
        ) {
            assert!(chars(&chunk) <= 100, "{chunk}");
        }
        // Overlap repeats the end of the previous chunk (pieces count with their separators).
        let chunks = split("a b c d e f", &chunking(ChunkStrategy::Recursive, 5, 2));
        assert_eq!(chunks, ["a b", "b c", "c d", "d e f"]);
        // One word longer than a chunk is cut hard.
        assert_eq!(
            split("abcdefgh", &chunking(ChunkStrategy::Recursive, 3, 0)),
            ["abc", "def", "gh"]
        );
    }

    #[test]
    fn markdown_cuts_at_headings_and_heads_every_piece() {
        let text = "Intro text.\n\n# One\nAlpha.\n\n```\n# not a heading\n```\n## Two\nBeta beta beta beta beta beta.\n";
        let chunks = split(text, &chunking(ChunkStrategy::Markdown, 60, 0));
        assert_eq!(
            chunks,
            [
                "Intro text.",
                "# One\nAlpha.\n\n```\n# not a heading\n```",
                "## Two\nBeta beta beta beta beta beta."
            ]
        );
        let chunks = split(text, &chunking(ChunkStrategy::Markdown, 20, 0));
        assert!(
            chunks.iter().filter(|c| c.starts_with("## Two\n")).count() >= 2,
            "{chunks:?}"
        );
        assert!(chunks.iter().all(|c| chars(c) <= 20 + 7), "{chunks:?}");
    }

    #[test]
    fn rows_never_split_a_line_that_fits() {
        let text = "a: 1; b: 2\nc: 3; d: 4\ne: 5\n";
        assert_eq!(
            split(text, &chunking(ChunkStrategy::Rows, 22, 0)),
            ["a: 1; b: 2\nc: 3; d: 4", "e: 5"]
        );
        assert_eq!(
            split("x".repeat(7).as_str(), &chunking(ChunkStrategy::Rows, 3, 0)),
            ["xxx", "xxx", "x"]
        );
    }
}
