//! HTML → text, small and forgiving: what a reader would see of a page. Scripts, styles and the
//! `<head>` are dropped; block elements end lines; headings become markdown headings (so the
//! markdown chunker cuts a page by its sections) and list items `- ` lines; `<pre>` keeps its
//! spacing; character references are decoded. No DOM is built: a tag soup reads as well as it can.

/// Elements whose content is never text.
const SKIPPED: &[&str] = &[
    "script", "style", "head", "noscript", "template", "svg", "iframe", "object", "canvas",
];

/// Elements that end a line (before and after).
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "section",
    "summary",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "tr",
    "ul",
];

/// The text of an HTML document.
pub fn to_text(html: &str) -> String {
    let mut out = Output::default();
    let mut skipping: Option<String> = None;
    let mut pre_depth = 0usize;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            if skipping.is_none() {
                out.text(rest, pre_depth > 0);
            }
            break;
        };
        if skipping.is_none() {
            out.text(&rest[..open], pre_depth > 0);
        }
        rest = &rest[open..];
        // A `<` that does not start a tag (`1 < 2`) is text.
        let after = rest[1..].strip_prefix('/').unwrap_or(&rest[1..]);
        let starts_tag = after.starts_with(|c: char| c.is_ascii_alphabetic())
            || rest[1..].starts_with(['!', '?']);
        if !starts_tag {
            if skipping.is_none() {
                out.text("<", pre_depth > 0);
            }
            rest = &rest[1..];
            continue;
        }
        // Comments, doctype, CDATA and processing instructions: no text.
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
            continue;
        }
        let Some(close) = rest.find('>') else {
            // A `<` that opens no tag is text.
            if skipping.is_none() {
                out.text(rest, pre_depth > 0);
            }
            break;
        };
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        let (closing, name) = match tag.strip_prefix('/') {
            Some(name) => (true, name),
            None => (false, tag),
        };
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(skipped) = &skipping {
            if closing && *skipped == name {
                skipping = None;
            }
            continue;
        }
        let self_closing = tag.trim_end().ends_with('/');
        if SKIPPED.contains(&name.as_str()) {
            if !closing && !self_closing {
                skipping = Some(name);
            }
            continue;
        }
        match name.as_str() {
            "br" => out.line_break(),
            "pre" if closing => {
                pre_depth = pre_depth.saturating_sub(1);
                out.block();
            }
            "pre" => {
                pre_depth += 1;
                out.block();
            }
            "li" if !closing => {
                out.newline();
                out.raw("- ");
            }
            "li" => out.newline(),
            "td" | "th" if closing => out.raw(" "),
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                out.block();
                if !closing {
                    let level = usize::from(name.as_bytes()[1] - b'0');
                    out.raw(&"#".repeat(level));
                    out.raw(" ");
                }
            }
            other if BLOCKS.contains(&other) => out.block(),
            _ => {}
        }
    }
    out.finish()
}

/// The text being written: runs of whitespace collapse to one space outside `<pre>`, and at most
/// one blank line separates blocks.
#[derive(Default)]
struct Output {
    text: String,
}

impl Output {
    fn text(&mut self, raw: &str, preformatted: bool) {
        let decoded = decode_entities(raw);
        if preformatted {
            self.text.push_str(&decoded);
            return;
        }
        // Whitespace collapses to one space; a space between two inline elements is kept.
        let mut collapsed = String::with_capacity(decoded.len());
        if decoded.starts_with(char::is_whitespace) {
            collapsed.push(' ');
        }
        collapsed.push_str(&decoded.split_whitespace().collect::<Vec<_>>().join(" "));
        if decoded.ends_with(char::is_whitespace) && !collapsed.ends_with(' ') {
            collapsed.push(' ');
        }
        let collapsed = if self.at_line_start() || self.text.ends_with(' ') {
            collapsed.trim_start()
        } else {
            collapsed.as_str()
        };
        self.text.push_str(collapsed);
    }

    fn raw(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn at_line_start(&self) -> bool {
        self.text.is_empty() || self.text.ends_with('\n')
    }

    fn trim_trailing_spaces(&mut self) {
        let kept = self.text.trim_end_matches(' ').len();
        self.text.truncate(kept);
    }

    /// Ends the line (once: an empty line stays for `<br><br>` only).
    fn newline(&mut self) {
        self.trim_trailing_spaces();
        if !self.at_line_start() {
            self.text.push('\n');
        }
    }

    /// A `<br>`: always a line break.
    fn line_break(&mut self) {
        self.trim_trailing_spaces();
        self.text.push('\n');
    }

    /// Ends the line and leaves one blank line (once, however many blocks end here).
    fn block(&mut self) {
        self.trim_trailing_spaces();
        if self.text.is_empty() || self.text.ends_with("\n\n") {
            return;
        }
        if self.text.ends_with('\n') {
            self.text.push('\n');
        } else {
            self.text.push_str("\n\n");
        }
    }

    fn finish(self) -> String {
        let mut lines: Vec<&str> = Vec::new();
        let mut blank = false;
        for line in self.text.lines() {
            let line = line.trim_end();
            if line.trim().is_empty() {
                blank = !lines.is_empty();
                continue;
            }
            if blank {
                lines.push("");
                blank = false;
            }
            lines.push(line);
        }
        lines.join("\n")
    }
}

/// Decodes character references: numeric ones and the common named ones (others stay as written).
fn decode_entities(raw: &str) -> String {
    if !raw.contains('&') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|i| i + 1);
        let decoded = end.and_then(|end| {
            if !rest[end..].starts_with(';') {
                return None;
            }
            entity(&rest[1..end]).map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "deg" => '°',
        "euro" => '€',
        "middot" => '·',
        "bull" => '•',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_as_text_with_markdown_headings() {
        let html = r#"<!DOCTYPE html>
<html><head><title>Ignored</title><style>p { color: red }</style></head>
<body>
  <!-- a comment -->
  <h1>Main   title</h1>
  <p>First <b>bold</b> paragraph,
     on two lines.</p>
  <script>var x = "<p>not text</p>";</script>
  <ul><li>one</li><li>two &amp; three</li></ul>
  <h2 class="x">Sub</h2>
  <p>Caf&eacute; costs &#8364;3 &lt;cheap&gt;<br>next line</p>
  <pre>  keep
    spacing</pre>
  <p>1 < 2 and AT&T, <b>bold</b> <i>italic</i></p>
</body></html>"#;
        assert_eq!(
            to_text(html),
            "# Main title\n\nFirst bold paragraph, on two lines.\n\n- one\n- two & three\n\n\
             ## Sub\n\nCaf&eacute; costs €3 <cheap>\nnext line\n\n  keep\n    spacing\n\n\
             1 < 2 and AT&T, bold italic"
        );
    }

    #[test]
    fn nothing_but_markup_is_empty() {
        assert_eq!(
            to_text("<html><head><title>t</title></head><body> </body></html>"),
            ""
        );
    }
}
