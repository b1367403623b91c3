//! `crest attribute`: the site's conversions of a date range credited to
//! creators under each model, from what `crest-ga4 extract` wrote
//! (`{input}/raw/ga4/events/`), into `{out}/canonical/creator_attribution/`
//! with its manifest last — the same contract as the transform's output, so
//! `crest load` loads it into every target.
//!
//! Per conversion, the user's sessions in the lookback window before it are
//! its touches: a session's campaign is what GA4 collected for it, else the
//! UTMs of its landing page; a session with neither and no referrer is
//! direct. Creators are resolved from the UTMs with the transform's roster
//! resolver. A transaction logged twice in a property is counted once, the
//! first logged standing (as [`super::dedup_transactions`] does per user); events the extract
//! quarantined are left out and counted.

use super::{attribute_user, Conversion, Credit, Model, Rules, Touch};
use crate::canonical::{creator_attribution_schema, DECIMAL_SCALE};
use crate::roster::Roster;
use crate::utm::{self, Utm};
use crate::{Result, TransformError};
use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{Date32Type, Decimal128Type, TimestampMicrosecondType};
use chrono::{DateTime, Days, NaiveDate, SecondsFormat, Utc};
use crest_core::raw::{FileIdentity, RawFile, SliceWriter, META_ACCOUNT, META_EXTRACTED_AT};
use crest_core::storage::Location;
use crest_core::window::DateRange;
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Where `crest-ga4 extract` writes.
pub const GA4_TABLE: &str = "raw/ga4/events";
/// Where `crest attribute` writes.
pub const ATTRIBUTION_TABLE: &str = "canonical/creator_attribution";
const SESSION_START: &str = "session_start";

pub struct AttributeConfig {
    pub input: Location,
    pub output: Location,
    /// Conversion dates to attribute.
    pub range: DateRange,
    pub roster: Roster,
    pub models: Vec<Model>,
    pub rules: Rules,
    pub wait_for_lease: std::time::Duration,
    /// Events held in memory at once: users are attributed in as many groups
    /// (by a hash of the user) as keep each group below this, so memory stays
    /// flat however many sessions the range holds.
    pub max_events_in_memory: u64,
}

/// The default bound on events held at once (about 200 MB of journeys).
pub const DEFAULT_MAX_EVENTS_IN_MEMORY: u64 = 2_000_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct AttributeSummary {
    pub run_id: String,
    pub sessions: u64,
    pub direct_sessions: u64,
    /// Sessions whose UTMs resolve to no creator.
    pub unresolved_sessions: u64,
    pub conversions: u64,
    /// Conversions with a transaction id already counted.
    pub duplicate_transactions: u64,
    /// Conversions with no non-direct session in the lookback.
    pub unattributed_conversions: u64,
    pub revenue: Decimal,
    /// Events left out, by reason (as the extract quarantined them).
    pub quarantined: BTreeMap<String, u64>,
    /// Conversions credited to a creator, per model.
    pub creator_conversions: BTreeMap<String, Decimal>,
    pub rows_out: u64,
    pub raw_files: u64,
    /// Days of the lookback before the range with no GA4 events read.
    pub missing_session_days: u64,
    /// Groups of users attributed one after the other (memory is one group's).
    pub user_groups: u64,
    pub elapsed_ms: u64,
    pub manifest: String,
}

#[derive(Serialize)]
struct AttributeManifest<'a> {
    run_id: &'a str,
    stage: &'static str,
    status: &'static str,
    crest_version: &'static str,
    started_at: String,
    finished_at: String,
    elapsed_ms: u64,
    inputs: serde_json::Value,
    /// The tables this run restates over its range (for `crest load`).
    tables: [&'static str; 1],
    files: Vec<RawFile>,
    input_files: Vec<String>,
    summary: &'a AttributeSummary,
    superseded: Vec<String>,
}

/// One user's journey as read: their sessions and conversions.
#[derive(Default)]
struct Journey {
    touches: Vec<Touch>,
    conversions: Vec<(Conversion, NaiveDate, Option<String>)>,
}

/// (property, user_pseudo_id)
type User = (String, String);

/// (date, property, creator, platform, model, currency)
type Key = (NaiveDate, String, Option<String>, Option<String>, Model, Option<String>);

#[derive(Default)]
struct Sum {
    conversions: Decimal,
    revenue: Decimal,
    touchpoints: i64,
    assisted: i64,
}

/// Runs an attribution holding the output's lease.
pub async fn run_attribution(config: AttributeConfig) -> Result<AttributeSummary> {
    let lease =
        crest_core::lease::Lease::acquire(&config.output, "attribute", "crest attribute", config.wait_for_lease)
            .await?;
    let result = attribute_leased(&config, &lease).await;
    lease.release().await;
    result
}

/// `crest load --input DIR` loads a folder's newest run: a transform's and an
/// attribution's runs must not share one.
async fn refuse_transform_folder(out: &Location) -> Result<()> {
    for meta in out.list("_runs").await? {
        let rel = out.relative(&meta.location);
        if !rel.ends_with(".json") || rel.contains("_inflight") {
            continue;
        }
        let Some(bytes) = out.get(&rel).await? else { continue };
        let stage = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["stage"].as_str().map(String::from));
        if stage.as_deref() == Some("transform") {
            return Err(TransformError::Input(format!(
                "--out {out} holds transform runs: give attribution a folder of its own (the default is {{input}}/attribution), so crest load --input picks the right run"
            )));
        }
    }
    Ok(())
}

async fn attribute_leased(config: &AttributeConfig, lease: &crest_core::lease::Lease) -> Result<AttributeSummary> {
    refuse_transform_folder(&config.output).await?;
    let started = std::time::Instant::now();
    let started_at = Utc::now();
    let run_id = format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let mut summary = AttributeSummary {
        run_id: run_id.clone(),
        ..AttributeSummary::default()
    };
    let lookback_days = config.rules.lookback.num_days().max(0) as u64;
    let first_session_day = config
        .range
        .start
        .checked_sub_days(Days::new(lookback_days))
        .unwrap_or(config.range.start);
    let files = newest_files(&config.input, first_session_day, config.range.end).await?;
    if !files.iter().any(|(d, _, _)| config.range.contains(*d)) {
        return Err(TransformError::Input(format!(
            "no GA4 events in {} for {}: run crest-ga4 extract for that range first, or check --input",
            config.input, config.range
        )));
    }
    summary.raw_files = files.len() as u64;
    // Days of the lookback before --start the extract never read: their
    // sessions are missing from the paths of the first conversions.
    let read: std::collections::BTreeSet<NaiveDate> = files.iter().map(|(d, _, _)| *d).collect();
    if let Ok(before) = DateRange::new(
        first_session_day,
        config.range.start.pred_opt().unwrap_or(config.range.start),
    ) {
        if first_session_day < config.range.start {
            summary.missing_session_days = before.dates().filter(|d| !read.contains(d)).count() as u64;
        }
    }
    if summary.missing_session_days > 0 {
        tracing::warn!(
            days = summary.missing_session_days, from = %first_session_day, to = %config.range.start,
            "lookback days before --start have no GA4 events: extract them, or the first conversions' paths are shorter"
        );
    }

    // Each transaction once per property, across users: the first logged
    // stands. Conversions only, so this pass holds no sessions.
    let mut logged: Vec<(i64, u128, u128)> = Vec::new();
    let mut creators_seen: HashMap<String, Option<String>> = HashMap::new();
    for (_, rel, _) in &files {
        let mut pass = Pass::Transactions(&mut logged);
        read_events(config, rel, &mut pass, &mut creators_seen, &mut summary).await?;
    }
    logged.sort();
    let mut standing: HashMap<u128, (i64, u128)> = HashMap::new();
    for (at, transaction, user) in logged {
        standing.entry(transaction).or_insert((at, user));
    }

    // Users in groups by a hash of their id, each group's journeys whole:
    // memory is one group's events, however large the range.
    let events: u64 = files.iter().map(|(_, _, rows)| rows).sum();
    let groups = events.div_ceil(config.max_events_in_memory.max(1)).max(1);
    summary.user_groups = groups;
    let mut sums: BTreeMap<Key, Sum> = BTreeMap::new();
    let mut counted: std::collections::HashSet<u128> = std::collections::HashSet::new();
    for group in 0..groups {
        let mut journeys: HashMap<User, Journey> = HashMap::new();
        for (_, rel, _) in &files {
            let mut pass = Pass::Journeys {
                group,
                groups,
                journeys: &mut journeys,
                standing: &standing,
                counted: &mut counted,
            };
            read_events(config, rel, &mut pass, &mut creators_seen, &mut summary).await?;
        }
        attribute_group(config, journeys, &mut sums, &mut summary);
    }
    let batch = rows(&sums, lookback_days as i32, &run_id)?;
    summary.rows_out = batch.num_rows() as u64;
    // Write, manifest last, then what these dates held before goes.
    let out = &config.output;
    let extracted_at = started_at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let next_n = AtomicU64::new(0);
    let mut writer = SliceWriter::new(
        out,
        FileIdentity {
            table: ATTRIBUTION_TABLE.into(),
            platform: "ga4",
            report: "creator_attribution",
            run_id: &run_id,
            account_id: None,
            extracted_at: &extracted_at,
        },
        creator_attribution_schema(),
        "date",
        &next_n,
    )?;
    if let Err(e) = writer.write(&batch).await {
        writer.abort().await;
        return Err(e.into());
    }
    let written = writer.finish().await?;
    let mut superseded = Vec::new();
    for date in config.range.dates() {
        let dir = crest_core::raw::partition_dir(ATTRIBUTION_TABLE, date);
        for meta in out.list(&dir).await? {
            let rel = out.relative(&meta.location);
            if !written.iter().any(|f| f.path == rel) {
                superseded.push(rel);
            }
        }
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    summary.manifest = format!("{out}/_runs/{run_id}.json");
    let manifest = AttributeManifest {
        run_id: &run_id,
        stage: "attribute",
        status: "succeeded",
        crest_version: env!("CARGO_PKG_VERSION"),
        started_at: started_at.to_rfc3339(),
        finished_at: Utc::now().to_rfc3339(),
        elapsed_ms: summary.elapsed_ms,
        inputs: serde_json::json!({
            "input": config.input.to_string(),
            "range": config.range,
            "models": config.models.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "lookback_days": lookback_days,
            "half_life_days": config.rules.half_life.num_seconds() as f64 / 86_400.0,
            "roster_creators": config.roster.len(),
        }),
        tables: ["creator_attribution"],
        files: written,
        input_files: files.iter().map(|(_, f, _)| f.clone()).collect(),
        summary: &summary,
        superseded,
    };
    if let Err(e) = lease.check() {
        for f in &manifest.files {
            out.delete(&f.path).await?;
        }
        return Err(e.into());
    }
    out.put_json(&format!("_runs/{run_id}.json"), &manifest).await?;
    for rel in &manifest.superseded {
        out.delete(rel).await?;
    }
    Ok(summary)
}

/// The site's non-direct sessions of `range` in a `crest-ga4 extract` output,
/// by the campaign they came from, creators resolved with `roster` as
/// `crest attribute` resolves them (for `crest links audit --site`).
pub async fn session_campaigns(input: &Location, range: DateRange, roster: Roster) -> Result<SessionCampaigns> {
    let files = newest_files(input, range.start, range.end).await?;
    if files.is_empty() {
        return Err(TransformError::Input(format!(
            "no GA4 events in {input} for {range}: run crest-ga4 extract for the run's dates, or check --site"
        )));
    }
    let config = AttributeConfig {
        input: input.clone(),
        output: input.clone(),
        range,
        roster,
        models: Vec::new(),
        rules: Rules::default(),
        wait_for_lease: std::time::Duration::ZERO,
        max_events_in_memory: DEFAULT_MAX_EVENTS_IN_MEMORY,
    };
    let mut campaigns = SessionCampaigns::new();
    let mut creators_seen = HashMap::new();
    let mut summary = AttributeSummary::default();
    for (_, rel, _) in &files {
        read_events(
            &config,
            rel,
            &mut Pass::Sessions(&mut campaigns),
            &mut creators_seen,
            &mut summary,
        )
        .await?;
    }
    Ok(campaigns)
}

/// Attributes one group of users' conversions into `sums`.
fn attribute_group(
    config: &AttributeConfig,
    journeys: HashMap<User, Journey>,
    sums: &mut BTreeMap<Key, Sum>,
    summary: &mut AttributeSummary,
) {
    for ((property, _), mut j) in journeys {
        if j.conversions.is_empty() {
            continue;
        }
        j.conversions.sort_by_key(|(c, _, _)| c.at);
        let convs: Vec<Conversion> = j.conversions.iter().map(|(c, _, _)| c.clone()).collect();
        let credited = attribute_user(&mut j.touches, &convs, &config.models, config.rules);
        let mut attributed = vec![false; convs.len()];
        for (i, model, credits) in credited {
            let (_, date, currency) = &j.conversions[i];
            if credits.is_empty() {
                continue;
            }
            attributed[i] = true;
            for Credit {
                creator,
                platform,
                conversions,
                revenue,
                touchpoints,
                assisted,
            } in credits
            {
                if creator.is_some() {
                    *summary.creator_conversions.entry(model.name().to_string()).or_default() += conversions;
                }
                let s = sums
                    .entry((*date, property.clone(), creator, platform, model, currency.clone()))
                    .or_default();
                s.conversions += conversions;
                s.revenue += revenue;
                s.touchpoints += i64::from(touchpoints);
                s.assisted += i64::from(assisted);
            }
        }
        for (i, (conv, date, currency)) in j.conversions.iter().enumerate() {
            summary.conversions += 1;
            summary.revenue += conv.revenue;
            if !attributed[i] {
                // No non-direct session in the lookback: the whole conversion
                // is unattributed under every model, and said so in the table.
                summary.unattributed_conversions += 1;
                for &model in &config.models {
                    let s = sums
                        .entry((*date, property.clone(), None, None, model, currency.clone()))
                        .or_default();
                    s.conversions += Decimal::ONE;
                    s.revenue += conv.revenue;
                }
            }
        }
    }
}

/// Non-direct sessions counted by (creator, medium, and for sessions that
/// resolve to no creator, their utm_source), for the links audit.
pub type SessionCampaigns = BTreeMap<(Option<String>, Option<String>, Option<String>), u64>;

/// What a read of the events collects.
enum Pass<'a> {
    /// Non-direct sessions by campaign.
    Sessions(&'a mut SessionCampaigns),
    /// Every conversion with a transaction id in the range: (µs, the
    /// property's transaction, the property's user), as [`fingerprint`]s so
    /// this pass stays small however many conversions there are.
    Transactions(&'a mut Vec<(i64, u128, u128)>),
    /// The journeys of the users of one group, each transaction counted once.
    Journeys {
        group: u64,
        groups: u64,
        journeys: &'a mut HashMap<User, Journey>,
        /// (property, transaction) → the log that stands: (µs, user).
        standing: &'a HashMap<u128, (i64, u128)>,
        /// Transactions already counted.
        counted: &'a mut std::collections::HashSet<u128>,
    },
}

/// A 128-bit fingerprint of a property's transaction or user: two SipHash
/// digests under different keys, so two ids collide with a chance far below
/// 1 in 10^20 even over billions of them.
fn fingerprint(property: &str, id: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let digest = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        (property, id).hash(&mut h);
        h.finish()
    };
    (u128::from(digest(1)) << 64) | u128::from(digest(2))
}

/// A user's group: a hash that is the same on every read.
fn group_of(property: &str, user: &str, groups: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (property, user).hash(&mut h);
    h.finish() % groups.max(1)
}

/// The raw GA4 files of `from..=to` that stand: per date and property, the
/// newest extract's (an extract re-reading a day restates it whole). Only
/// files an extract manifest names count.
/// Each file with its row count.
async fn newest_files(input: &Location, from: NaiveDate, to: NaiveDate) -> Result<Vec<(NaiveDate, String, u64)>> {
    let committed = crest_core::manifest::committed_raw_files(input).await?;
    let mut out = Vec::new();
    let Ok(range) = DateRange::new(from, to) else {
        return Ok(out);
    };
    for date in range.dates() {
        let dir = crest_core::raw::partition_dir(GA4_TABLE, date);
        // property → (extracted_at, files)
        let mut newest: BTreeMap<String, (String, Vec<(String, u64)>)> = BTreeMap::new();
        for meta in input.list(&dir).await? {
            let rel = input.relative(&meta.location);
            if !rel.ends_with(".parquet") || !committed.files.contains(&rel) {
                continue;
            }
            let (property, extracted, rows) = footer(input, &rel).await?;
            let entry = newest
                .entry(property)
                .or_insert_with(|| (extracted.clone(), Vec::new()));
            if extracted > entry.0 {
                *entry = (extracted, vec![(rel, rows)]);
            } else if extracted == entry.0 {
                entry.1.push((rel, rows));
            }
        }
        for (_, (_, files)) in newest {
            out.extend(files.into_iter().map(|(f, rows)| (date, f, rows)));
        }
    }
    Ok(out)
}

/// A raw file's property, extraction time and rows.
async fn footer(input: &Location, rel: &str) -> Result<(String, String, u64)> {
    let reader = ParquetObjectReader::new(input.store().clone(), input.path(rel));
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| TransformError::Input(format!("{input}/{rel} is not a readable Parquet file: {e}")))?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let meta = |k: &str| kv.iter().find(|x| x.key == k).and_then(|x| x.value.clone());
    match (meta(META_ACCOUNT), meta(META_EXTRACTED_AT)) {
        (Some(p), Some(at)) => Ok((
            p,
            at,
            u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0),
        )),
        _ => Err(TransformError::Input(format!(
            "{input}/{rel} has no crest.account_id or crest.extracted_at: not written by crest-ga4"
        ))),
    }
}

/// The columns attribution reads, in this order.
const READ: &[&str] = &[
    "event_date",
    "event_timestamp",
    "event_name",
    "property_id",
    "user_pseudo_id",
    "manual_source",
    "manual_medium",
    "manual_campaign_name",
    "manual_content",
    "manual_term",
    "page_location",
    "page_referrer",
    "transaction_id",
    "revenue",
    "currency",
    "quarantine_reason",
];

async fn read_events(
    config: &AttributeConfig,
    rel: &str,
    pass: &mut Pass<'_>,
    creators_seen: &mut HashMap<String, Option<String>>,
    summary: &mut AttributeSummary,
) -> Result<()> {
    let input = &config.input;
    let reader = ParquetObjectReader::new(input.store().clone(), input.path(rel));
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| TransformError::Input(format!("{input}/{rel} is not a readable Parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let mut indices = Vec::new();
    for c in READ {
        indices.push(schema.index_of(c).map_err(|_| {
            TransformError::Input(format!("{input}/{rel} has no column {c}: not a crest-ga4 events file"))
        })?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| TransformError::Input(format!("cannot read {input}/{rel}: {e}")))?;
    let bad = |c: &str| TransformError::Input(format!("{input}/{rel}: column {c} has an unexpected type"));
    while let Some(b) = stream
        .try_next()
        .await
        .map_err(|e| TransformError::Input(format!("cannot read {input}/{rel}: {e}")))?
    {
        let col = |c: &str| b.column_by_name(c).ok_or_else(|| bad(c));
        let text = |c: &str| -> Result<arrow::array::StringArray> {
            col(c)?.as_string_opt::<i32>().cloned().ok_or_else(|| bad(c))
        };
        let date = col("event_date")?
            .as_primitive_opt::<Date32Type>()
            .cloned()
            .ok_or_else(|| bad("event_date"))?;
        let at = col("event_timestamp")?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .cloned()
            .ok_or_else(|| bad("event_timestamp"))?;
        let revenue = col("revenue")?
            .as_primitive_opt::<Decimal128Type>()
            .cloned()
            .ok_or_else(|| bad("revenue"))?;
        let revenue_scale = match col("revenue")?.data_type() {
            arrow::datatypes::DataType::Decimal128(_, s) => *s as u32,
            _ => return Err(bad("revenue")),
        };
        let (name, property, user) = (text("event_name")?, text("property_id")?, text("user_pseudo_id")?);
        let manual: Vec<arrow::array::StringArray> = [
            "manual_source",
            "manual_medium",
            "manual_campaign_name",
            "manual_content",
            "manual_term",
        ]
        .iter()
        .map(|c| text(c))
        .collect::<Result<_>>()?;
        let (page, referrer, transaction, currency, reason) = (
            text("page_location")?,
            text("page_referrer")?,
            text("transaction_id")?,
            text("currency")?,
            text("quarantine_reason")?,
        );
        let opt = |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        for i in 0..b.num_rows() {
            let day = Date32Type::to_naive_date(date.value(i));
            let user_id = opt(&user, i);
            let prop = property.value(i);
            let session = name.value(i) == SESSION_START;
            let journey = match pass {
                Pass::Sessions(_) if !session || reason.is_valid(i) || !config.range.contains(day) => continue,
                Pass::Sessions(_) => None,
                Pass::Transactions(logged) => {
                    // Over the whole window read, not only the range: a
                    // transaction first logged before --start was counted by
                    // the run that covered its day, and is not counted again.
                    if !session && !reason.is_valid(i) {
                        if let (Some(u), Some(t)) = (&user_id, opt(&transaction, i)) {
                            logged.push((at.value(i), fingerprint(prop, &t), fingerprint(prop, u)));
                        }
                    }
                    continue;
                }
                Pass::Journeys {
                    group,
                    groups,
                    journeys,
                    standing,
                    counted,
                } => {
                    // Every event is seen by exactly one group: its user's.
                    if group_of(prop, user_id.as_deref().unwrap_or(""), *groups) != *group {
                        continue;
                    }
                    if reason.is_valid(i) {
                        *summary.quarantined.entry(reason.value(i).to_string()).or_default() += 1;
                        continue;
                    }
                    let Some(u) = user_id else { continue };
                    if !session && config.range.contains(day) {
                        if let Some(t) = opt(&transaction, i) {
                            let key = fingerprint(prop, &t);
                            let stands = standing.get(&key) == Some(&(at.value(i), fingerprint(prop, &u)));
                            if !stands || !counted.insert(key) {
                                summary.duplicate_transactions += 1;
                                continue;
                            }
                        }
                    }
                    Some(journeys.entry((prop.to_string(), u)).or_default())
                }
            };
            let Some(when) = DateTime::<Utc>::from_timestamp_micros(at.value(i)) else {
                continue;
            };
            if session {
                summary.sessions += 1;
                let mut u = Utm {
                    source: opt(&manual[0], i),
                    medium: opt(&manual[1], i),
                    campaign: opt(&manual[2], i),
                    content: opt(&manual[3], i),
                    term: opt(&manual[4], i),
                };
                if u.is_empty() {
                    if let Some(p) = opt(&page, i) {
                        u = utm::parse_url(&p);
                    }
                }
                // A referrer on the site's own host (a session restarted on
                // the site, a return from checkout) is no campaign: direct.
                let referral = opt(&referrer, i).filter(|r| !same_host(r, opt(&page, i).as_deref()));
                let direct = u.is_empty() && referral.is_none();
                if direct {
                    summary.direct_sessions += 1;
                }
                let creator = if direct {
                    None
                } else {
                    resolve(&config.roster, &u, creators_seen)
                };
                if !direct && creator.is_none() {
                    summary.unresolved_sessions += 1;
                }
                // A referral without campaign parameters keeps its share
                // apart from conversions with no touch at all.
                let platform = match (&u.medium, u.is_empty() && !direct) {
                    (Some(m), _) => Some(m.trim().to_lowercase()),
                    (None, true) => Some("referral".to_string()),
                    (None, false) => None,
                };
                match journey {
                    Some(journey) => journey.touches.push(Touch {
                        at: when,
                        direct,
                        creator,
                        platform,
                    }),
                    None => {
                        if let (false, Pass::Sessions(campaigns)) = (direct, &mut *pass) {
                            let source = creator.is_none().then(|| u.source.clone()).flatten();
                            *campaigns.entry((creator, platform, source)).or_default() += 1;
                        }
                    }
                }
            } else if let Some(journey) = journey.filter(|_| config.range.contains(day)) {
                let rev = if revenue.is_valid(i) {
                    Decimal::from_i128_with_scale(revenue.value(i), revenue_scale)
                } else {
                    Decimal::ZERO
                };
                journey.conversions.push((
                    Conversion {
                        at: when,
                        transaction_id: opt(&transaction, i),
                        revenue: rev,
                    },
                    day,
                    opt(&currency, i),
                ));
            }
        }
    }
    Ok(())
}

/// Whether a referrer is the landing page's own site.
fn same_host(referrer: &str, page: Option<&str>) -> bool {
    let host = |u: &str| {
        url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_start_matches("www.").to_ascii_lowercase()))
    };
    match (host(referrer), page.and_then(host)) {
        (Some(r), Some(p)) => r == p,
        _ => false,
    }
}

/// A session's creator by the roster, remembered per distinct UTM set.
fn resolve(roster: &Roster, u: &Utm, seen: &mut HashMap<String, Option<String>>) -> Option<String> {
    let key = format!("{:?}\u{1f}{:?}\u{1f}{:?}", u.content, u.source, u.term);
    seen.entry(key)
        .or_insert_with(|| roster.resolve(u, None).map(|i| roster.creators()[i].creator_id.clone()))
        .clone()
}

/// The summed credits as rows; per date × property × model × currency the
/// conversions are rounded to the table's scale with the residue on the
/// largest share, so they still sum to the exact count.
fn rows(sums: &BTreeMap<Key, Sum>, lookback_days: i32, run_id: &str) -> Result<RecordBatch> {
    let scale = DECIMAL_SCALE as u32;
    let mut rounded: Vec<Decimal> = sums.values().map(|s| s.conversions.round_dp(scale)).collect();
    let keys: Vec<&Key> = sums.keys().collect();
    let mut groups: BTreeMap<(NaiveDate, &str, Model, Option<&str>), Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        groups
            .entry((k.0, k.1.as_str(), k.4, k.5.as_deref()))
            .or_default()
            .push(i);
    }
    let values: Vec<&Sum> = sums.values().collect();
    for idx in groups.values() {
        let exact: Decimal = idx.iter().map(|&i| values[i].conversions).sum();
        let got: Decimal = idx.iter().map(|&i| rounded[i]).sum();
        let target = exact.round_dp(scale);
        if got != target {
            if let Some(&big) = idx.iter().max_by_key(|&&i| values[i].conversions) {
                rounded[big] += target - got;
            }
        }
    }
    let n = sums.len();
    let mut date = Date32Builder::with_capacity(n);
    let (mut property, mut creator, mut platform, mut model, mut currency, mut run) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut conversions, mut revenue) = (Decimal128Builder::with_capacity(n), Decimal128Builder::with_capacity(n));
    let (mut touchpoints, mut assisted) = (Int64Builder::with_capacity(n), Int64Builder::with_capacity(n));
    let mut lookback = Int32Builder::with_capacity(n);
    let mantissa = |d: Decimal| {
        let mut d = d;
        d.rescale(scale);
        d.mantissa()
    };
    for (i, (k, s)) in sums.iter().enumerate() {
        date.append_value(Date32Type::from_naive_date(k.0));
        property.append_value(&k.1);
        creator.append_option(k.2.as_deref());
        platform.append_option(k.3.as_deref());
        model.append_value(k.4.name());
        conversions.append_value(mantissa(rounded[i]));
        revenue.append_value(mantissa(s.revenue));
        currency.append_option(k.5.as_deref());
        touchpoints.append_value(s.touchpoints);
        assisted.append_value(s.assisted);
        lookback.append_value(lookback_days);
        run.append_value(run_id);
    }
    let decimal = |b: &mut Decimal128Builder| -> Result<ArrayRef> {
        Ok(Arc::new(
            b.finish()
                .with_precision_and_scale(38, DECIMAL_SCALE)
                .map_err(|e| TransformError::Input(format!("creator_attribution: {e}")))?,
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(date.finish()),
        Arc::new(property.finish()),
        Arc::new(creator.finish()),
        Arc::new(platform.finish()),
        Arc::new(model.finish()),
        decimal(&mut conversions)?,
        decimal(&mut revenue)?,
        Arc::new(currency.finish()),
        Arc::new(touchpoints.finish()),
        Arc::new(assisted.finish()),
        Arc::new(lookback.finish()),
        Arc::new(run.finish()),
    ];
    RecordBatch::try_new(creator_attribution_schema(), columns)
        .map_err(|e| TransformError::Input(format!("cannot build creator_attribution rows: {e}")))
}
