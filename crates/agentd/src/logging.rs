//! Log set-up. Every line goes through [`agentd_core::redact::redact`] on its way out, so a secret
//! that reaches a log message (a key in a URL, a token in an error) is masked, whoever logged it.

use std::io::{self, IsTerminal, Write};

use agentd_runtime::config::{LogConfig, LogFormat};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` wins over the configured level.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(RedactingStderr);
    let installed = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// Makes [`RedactingWriter`]s over standard error.
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(io::stderr())
    }
}

/// Redacts each formatted line before writing it. The formatter hands over one whole event per write.
struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(agentd_core::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_masks_keys() {
        let key = agentd_core::PlainKey::generate();
        let mut writer = RedactingWriter(Vec::new());
        let line = format!(
            "GET /x?api_key={} Authorization: Bearer {}\n",
            key.reveal(),
            key.reveal()
        );
        writer.write_all(line.as_bytes()).unwrap();
        let written = String::from_utf8(writer.0).unwrap();
        assert!(!written.contains(key.reveal()), "{written}");
        assert!(written.contains("[REDACTED]"));
    }
}
