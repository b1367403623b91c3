//! Slack: one Block Kit message per evaluation to an incoming webhook. The
//! webhook URL is a secret (it is the credential): read from
//! `CREST_SLACK_WEBHOOK_URL` or `…_FILE`, scrubbed from every message.

use super::message::{self, Change};
use crest_core::http::{ApiClient, RetryPolicy};
use crest_core::reqwest;
use crest_core::{Error, Result, Secret};
use serde_json::{json, Value};

pub const URL_VAR: &str = "CREST_SLACK_WEBHOOK_URL";
/// Slack's limits: 50 blocks a message, 3,000 characters a section.
const MAX_BLOCKS: usize = 50;
const MAX_SECTION: usize = 2_900;

pub struct Slack {
    url: Secret,
}

impl Slack {
    /// Reads the webhook URL; a clear error before anything is evaluated.
    pub fn from_env() -> Result<Slack> {
        let url = Secret::from_env(URL_VAR).map_err(|_| {
            Error::Config(format!(
                "--slack needs the incoming webhook's URL: export {URL_VAR}=https://hooks.slack.com/services/… (or {URL_VAR}_FILE=<file holding it>)"
            ))
        })?;
        let parsed = url::Url::parse(url.expose())
            .map_err(|_| Error::Config(format!("{URL_VAR} is not a URL (its value is not shown)")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(Error::Config(format!("{URL_VAR} must be an https:// URL")));
        }
        Ok(Slack { url })
    }

    pub async fn send(&self, changes: &[Change], target: &str, policy: RetryPolicy) -> Result<()> {
        let client = ApiClient::new(policy, None)?.with_secret(self.url.clone());
        let body = serde_json::to_vec(&blocks(changes, target))
            .map_err(|e| Error::Data(format!("cannot encode the Slack message: {e}")))?;
        let url = self.url.expose().to_string();
        client
            .send(
                "POST Slack incoming webhook",
                |c: &reqwest::Client| {
                    c.post(&url)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                },
                |_body: &[u8]| Ok::<(), crest_core::http::Verdict>(()),
            )
            .await
            .map_err(|e| Error::Upstream(format!("Slack delivery failed: {e}")))
    }
}

/// The message: a header, then per kind of change a section listing them.
pub fn blocks(changes: &[Change], target: &str) -> Value {
    let title = message::subject(changes, target);
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": title}})];
    let mut left = 0usize;
    for (kind, list) in message::grouped(changes) {
        let mut text = format!("*{}* ({})", kind.title(), list.len());
        for c in list {
            let line = format!("\n• {}", escape(&message::line(c)));
            if text.len() + line.len() > MAX_SECTION {
                if blocks.len() >= MAX_BLOCKS - 1 {
                    left += 1;
                    continue;
                }
                blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
                text = String::new();
            }
            text.push_str(&line);
        }
        if blocks.len() < MAX_BLOCKS - 1 {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
        }
    }
    if left > 0 {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("… and {left} more: query v_tier_history")}]}));
    }
    json!({"text": title, "blocks": blocks})
}

/// Slack's mrkdwn control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
