//! Outgoing mail: over SMTP when `[smtp] host` is set, else into `<data_dir>/outbox/` as `.eml`
//! files (the log says where), so a fresh install can log in without a mail server.

use std::path::PathBuf;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::auth_config::{SmtpConfig, SmtpTls};
use crate::Error;

/// Sends mails.
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: lettre::message::Mailbox,
    },
    Outbox {
        dir: PathBuf,
        from: lettre::message::Mailbox,
    },
}

impl Mailer {
    /// The mailer the configuration asks for.
    pub fn from_config(config: &SmtpConfig, data_dir: &std::path::Path) -> Result<Self, Error> {
        let from = config
            .from
            .parse()
            .map_err(|e| Error::Config(format!("smtp.from `{}`: {e}", config.from)))?;
        let Some(host) = &config.host else {
            return Ok(Self::Outbox {
                dir: data_dir.join("outbox"),
                from,
            });
        };
        let builder = match config.tls {
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|e| Error::Config(format!("smtp.host `{host}`: {e}")))?;
        let mut builder = builder
            .port(config.port)
            .timeout(Some(std::time::Duration::from_secs(10)));
        if let Some(user) = &config.username {
            let password = match &config.password_env {
                Some(var) => std::env::var(var)
                    .map_err(|_| Error::Config(format!("smtp.password_env: `{var}` is not set")))?,
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self::Smtp {
            transport: builder.build(),
            from,
        })
    }

    /// Sends a plain-text mail.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), Error> {
        let from = match self {
            Self::Smtp { from, .. } | Self::Outbox { from, .. } => from.clone(),
        };
        let to = to
            .parse()
            .map_err(|e| Error::invalid("email", format!("cannot mail `{to}`: {e}")))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Error::Internal(format!("building a mail: {e}")))?;
        match self {
            Self::Smtp { transport, .. } => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| Error::Internal(format!("SMTP: {e}")))?;
            }
            Self::Outbox { dir, .. } => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| Error::Internal(format!("outbox {}: {e}", dir.display())))?;
                let path = dir.join(format!("{}.eml", uuid::Uuid::now_v7()));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(|e| Error::Internal(format!("outbox {}: {e}", path.display())))?;
                tracing::info!(path = %path.display(), "no SMTP server configured: mail written to the outbox");
            }
        }
        Ok(())
    }
}
