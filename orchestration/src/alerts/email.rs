//! E-mail: one plain-text message per evaluation over SMTP, STARTTLS by
//! default (`lettre`). Settings from the environment; the password from
//! `CREST_SMTP_PASSWORD` or `…_FILE`, never a flag.

use super::message::{self, Change};
use crest_core::{Error, Result, Secret};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub struct Email {
    host: String,
    port: u16,
    tls: TlsMode,
    ca_file: Option<String>,
    credentials: Option<(String, Secret)>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    StartTls,
    Wrapper,
    None,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Email {
    /// Reads the settings; a clear error before anything is evaluated.
    pub fn from_env() -> Result<Email> {
        let need = |name: &str, example: &str| {
            var(name).ok_or_else(|| Error::Config(format!("--email needs {name}: export {name}={example}")))
        };
        let host = need("CREST_SMTP_HOST", "smtp.example.com")?;
        let tls = match var("CREST_SMTP_TLS").as_deref().unwrap_or("starttls") {
            "starttls" => TlsMode::StartTls,
            "tls" => TlsMode::Wrapper,
            "none" => TlsMode::None,
            other => {
                return Err(Error::Config(format!(
                    "CREST_SMTP_TLS '{other}': write starttls (the default), tls or none"
                )))
            }
        };
        let port = match var("CREST_SMTP_PORT") {
            None => match tls {
                TlsMode::Wrapper => 465,
                _ => 587,
            },
            Some(p) => p
                .parse()
                .map_err(|_| Error::Config(format!("CREST_SMTP_PORT '{p}' is not a port number")))?,
        };
        let mailbox = |name: &str, v: &str| {
            v.parse::<Mailbox>()
                .map_err(|e| Error::Config(format!("{name}: '{v}' is not an e-mail address ({e})")))
        };
        let from = mailbox(
            "CREST_ALERT_EMAIL_FROM",
            &need("CREST_ALERT_EMAIL_FROM", "crest@brand.example")?,
        )?;
        let to = need("CREST_ALERT_EMAIL_TO", "pod@brand.example,lead@brand.example")?
            .split(',')
            .map(|a| mailbox("CREST_ALERT_EMAIL_TO", a.trim()))
            .collect::<Result<Vec<_>>>()?;
        let credentials = match var("CREST_SMTP_USER") {
            None => None,
            Some(user) => Some((
                user,
                Secret::from_env("CREST_SMTP_PASSWORD")
                    .map_err(|e| Error::Config(format!("CREST_SMTP_USER is set, so: {e}")))?,
            )),
        };
        Ok(Email {
            host,
            port,
            tls,
            ca_file: var("CREST_SMTP_CA_FILE"),
            credentials,
            from,
            to,
        })
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
        let bad = |e: lettre::transport::smtp::Error| Error::Config(format!("SMTP settings: {e}"));
        let mut params = TlsParameters::builder(self.host.clone());
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| Error::Config(format!("CREST_SMTP_CA_FILE {path}: {e}")))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| Error::Config(format!("CREST_SMTP_CA_FILE {path} is not a PEM certificate: {e}")))?;
            params = params.add_root_certificate(cert);
        }
        let tls = match self.tls {
            TlsMode::StartTls => Tls::Required(params.build().map_err(bad)?),
            TlsMode::Wrapper => Tls::Wrapper(params.build().map_err(bad)?),
            TlsMode::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)));
        if let Some((user, password)) = &self.credentials {
            b = b.credentials(Credentials::new(user.clone(), password.expose().to_string()));
        }
        Ok(b.build())
    }

    /// Sends the message, retrying transient failures (a refused connection,
    /// a 4xx reply) with exponential backoff; a permanent refusal stops at once.
    pub async fn send(&self, changes: &[Change], target: &str, attempts: usize, initial: Duration) -> Result<()> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(message::subject(changes, target))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            m = m.to(to.clone());
        }
        let m = m
            .body(message::text(changes, target))
            .map_err(|e| Error::Data(format!("cannot build the e-mail: {e}")))?;
        let transport = self.transport()?;
        let mut delay = initial;
        for attempt in 1..=attempts.max(1) {
            match transport.send(m.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_permanent() || attempt == attempts.max(1) => {
                    let mut text = e.to_string();
                    if let Some((_, p)) = &self.credentials {
                        text = p.scrub(&text);
                    }
                    return Err(Error::Upstream(format!(
                        "e-mail delivery to {}:{} failed after {attempt} attempt(s): {}",
                        self.host,
                        self.port,
                        crest_core::error::one_line(&text)
                    )));
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "e-mail delivery failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
        Ok(())
    }
}
