//! Keeps secrets out of text that leaves the process: log lines above all.
//!
//! The log writer runs every line through [`redact`], so a key pasted into a URL, a header echoed in an
//! error, or a token in a query string is masked wherever it comes from.

use std::borrow::Cow;

/// The mask that replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// Markers after which the following token is a secret. Case-sensitive on purpose: these are the
/// exact spellings clients send.
const MARKERS: [&str; 6] = [
    "agentd_",
    "Bearer ",
    "bearer ",
    "token=",
    "password=",
    "api_key=",
];

/// Masks agentd keys, bearer credentials, JWTs and `token=`/`password=`/`api_key=` values in `text`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let needs_work = MARKERS.iter().any(|m| text.contains(m)) || text.contains("eyJ");
    if !needs_work {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for marker in MARKERS {
            if let Some(after) = rest.strip_prefix(marker) {
                let secret_len = after
                    .find(|c: char| !is_token_char(c))
                    .unwrap_or(after.len());
                // `agentd_` also starts ordinary words such as `agentd_core`; real keys are long.
                let long_enough = marker != "agentd_" || secret_len >= 16;
                if secret_len > 0 && long_enough {
                    out.push_str(marker);
                    out.push_str(MASK);
                    rest = &after[secret_len..];
                    continue 'scan;
                }
            }
        }
        if rest.starts_with("eyJ") {
            let len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
            if rest[..len].matches('.').count() == 2 {
                out.push_str(MASK);
                rest = &rest[len..];
                continue 'scan;
            }
        }
        let ch = rest.chars().next().unwrap_or_default();
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    Cow::Owned(out)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '~' | '+' | '/' | '%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_kind_of_secret() {
        let key = crate::PlainKey::generate();
        let line = format!("auth failed for {} from 10.0.0.1", key.reveal());
        assert_eq!(
            redact(&line),
            "auth failed for agentd_[REDACTED] from 10.0.0.1"
        );
        assert_eq!(
            redact("header Authorization: Bearer abc.def-ghi end"),
            "header Authorization: Bearer [REDACTED] end"
        );
        assert_eq!(
            redact("GET /auth/link/verify?token=s3cr3t&x=1"),
            "GET /auth/link/verify?token=[REDACTED]&x=1"
        );
        assert_eq!(
            redact("jwt eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl done"),
            "jwt [REDACTED] done"
        );
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let text = "server started; é unicode stays";
        assert!(matches!(redact(text), Cow::Borrowed(_)));
        let text = "crate agentd_core started; é unicode stays";
        assert_eq!(redact(text), text);
        assert_eq!(redact("agentd_server::router"), "agentd_server::router");
    }
}
