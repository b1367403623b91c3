//! `crest alerts`: evaluates `v_creator_tier`, compares it with the last
//! delivered evaluation in `alert_log`, appends this evaluation (undelivered),
//! sends only the changes — one message per evaluation to Slack and/or
//! e-mail, retried with backoff — and only then marks it delivered. A
//! failed delivery leaves the evaluation undelivered, so the next run sends
//! its changes again; a run with nothing changed sends nothing.

pub mod email;
pub mod message;
pub mod slack;

use crate::render::json_rows;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Utc};
use crest_core::http::RetryPolicy;
use crest_core::target::Target;
use crest_core::{Error, Result};
use message::{Change, Seen};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The channels to send to, read and checked before anything is evaluated.
pub struct Channels {
    pub slack: Option<slack::Slack>,
    pub email: Option<email::Email>,
    pub attempts: usize,
    pub initial_delay: Duration,
}

/// The conversions an alert quotes are the ones the tier was judged by.
const EVALUATE: &str = "SELECT platform, creator_id, creator_handle, tier, tier_reason, compliance_flag, ctr, cpc, \
    CASE WHEN conversion_source = 'platform' THEN conversions ELSE site_conversions END AS conversions FROM v_creator_tier";
const LAST_DELIVERED: &str = "SELECT platform, creator_id, creator_handle, tier, tier_reason, compliance_flag, ctr, cpc, conversions FROM alert_log WHERE evaluation_id = (SELECT MAX(evaluation_id) FROM alert_log WHERE delivered_at IS NOT NULL)";

pub struct Outcome {
    pub evaluation_id: Option<String>,
    pub evaluated: usize,
    pub changes: Vec<Change>,
    pub sent_to: Vec<&'static str>,
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn seen(rows: Vec<serde_json::Map<String, serde_json::Value>>) -> Result<Vec<Seen>> {
    rows.into_iter()
        .map(|r| {
            let get = |k: &str| r.get(k).cloned().unwrap_or(serde_json::Value::Null);
            let (Some(platform), Some(creator_id)) = (text(&get("platform")), text(&get("creator_id"))) else {
                return Err(Error::Data(
                    "v_creator_tier gave a row without platform or creator_id".into(),
                ));
            };
            Ok(Seen {
                platform,
                creator_id,
                creator_handle: text(&get("creator_handle")),
                tier: text(&get("tier")),
                tier_reason: text(&get("tier_reason")),
                compliance_flag: matches!(get("compliance_flag"), serde_json::Value::Bool(true))
                    || text(&get("compliance_flag")).is_some_and(|s| s == "true" || s == "1"),
                ctr: number(&get("ctr")),
                cpc: number(&get("cpc")),
                conversions: number(&get("conversions")),
            })
        })
        .collect()
}

/// One evaluation's rows for `alert_log`.
fn evaluation_batch(
    id: &str,
    at: DateTime<Utc>,
    now: &[Seen],
    before: &[Seen],
    changes: &[Change],
) -> Result<RecordBatch> {
    let n = now.len();
    let previous: BTreeMap<(&str, &str), Option<&str>> = before
        .iter()
        .map(|s| ((s.platform.as_str(), s.creator_id.as_str()), s.tier.as_deref()))
        .collect();
    let mut what: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for c in changes {
        what.entry((c.now.platform.as_str(), c.now.creator_id.as_str()))
            .or_default()
            .push(c.kind.title());
    }
    let at_us = at.timestamp_micros();
    fn key(s: &Seen) -> (&str, &str) {
        (s.platform.as_str(), s.creator_id.as_str())
    }
    let strings =
        |f: &dyn Fn(&Seen) -> Option<String>| -> ArrayRef { Arc::new(now.iter().map(f).collect::<StringArray>()) };
    let floats =
        |f: &dyn Fn(&Seen) -> Option<f64>| -> ArrayRef { Arc::new(now.iter().map(f).collect::<Float64Array>()) };
    // Nothing to send: delivered as it is written.
    let delivered = if changes.is_empty() { Some(at_us) } else { None };
    let columns: Vec<ArrayRef> = vec![
        strings(&|_| Some(id.to_string())),
        Arc::new(TimestampMicrosecondArray::from(vec![at_us; n]).with_timezone("UTC")),
        strings(&|s| Some(s.platform.clone())),
        strings(&|s| Some(s.creator_id.clone())),
        strings(&|s| s.creator_handle.clone()),
        strings(&|s| s.tier.clone()),
        strings(&|s| previous.get(&key(s)).copied().flatten().map(str::to_string)),
        strings(&|s| what.get(&key(s)).map(|k| k.join("; "))),
        strings(&|s| s.tier_reason.clone()),
        Arc::new(now.iter().map(|s| Some(s.compliance_flag)).collect::<BooleanArray>()),
        floats(&|s| s.ctr),
        floats(&|s| s.cpc),
        floats(&|s| s.conversions),
        Arc::new(TimestampMicrosecondArray::from(vec![delivered; n]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(crest_core::alert_log::schema(), columns)
        .map_err(|e| Error::Data(format!("cannot build the alert log rows: {e}")))
}

pub async fn run(store: &dyn Target, channels: &Channels, dry_run: bool) -> Result<Outcome> {
    let now = seen(json_rows(store, EVALUATE).await.map_err(|e| match e {
        Error::Config(m) => Error::Config(format!(
            "{m}: run crest views apply --target {} first",
            store.describe()
        )),
        e => e,
    })?)?;
    store.ensure_alert_log().await?;
    let before = seen(json_rows(store, LAST_DELIVERED).await?)?;
    let changes = message::changes(&before, &now);
    if dry_run {
        return Ok(Outcome {
            evaluation_id: None,
            evaluated: now.len(),
            changes,
            sent_to: Vec::new(),
        });
    }
    let at = Utc::now();
    let id = format!("{}-{:08x}", at.format("%Y%m%dT%H%M%S%6fZ"), rand_suffix(at));
    store
        .append_alert_log(&id, &evaluation_batch(&id, at, &now, &before, &changes)?)
        .await?;
    let mut sent_to = Vec::new();
    if !changes.is_empty() {
        let target = store.describe();
        let policy = RetryPolicy {
            max_attempts: channels.attempts.max(1),
            initial_delay: channels.initial_delay,
            ..RetryPolicy::default()
        };
        let undelivered = |e: Error| {
            Error::Upstream(format!(
                "{e}; evaluation {id} is stored undelivered, and the next crest alerts sends its changes again"
            ))
        };
        if let Some(s) = &channels.slack {
            s.send(&changes, &target, policy.clone()).await.map_err(undelivered)?;
            sent_to.push("slack");
        }
        if let Some(m) = &channels.email {
            m.send(&changes, &target, channels.attempts, channels.initial_delay)
                .await
                .map_err(undelivered)?;
            sent_to.push("e-mail");
        }
        store.mark_alerts_delivered(&id, Utc::now()).await?;
    }
    Ok(Outcome {
        evaluation_id: Some(id),
        evaluated: now.len(),
        changes,
        sent_to,
    })
}

/// Two evaluations in the same microsecond still get distinct ids.
fn rand_suffix(at: DateTime<Utc>) -> u32 {
    let pid = std::process::id();
    (at.timestamp_subsec_nanos() ^ pid.rotate_left(16)).wrapping_mul(2_654_435_761)
}
