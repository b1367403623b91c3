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
}

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

async fn attribute_leased(config: &AttributeConfig, lease: &crest_core::lease::Lease) -> Result<AttributeSummary> {
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
    if !files.iter().any(|(d, _)| config.range.contains(*d)) {
        return Err(TransformError::Input(format!(
            "no GA4 events in {} for {}: run crest-ga4 extract for that range first, or check --input",
            config.input, config.range
        )));
    }
    summary.raw_files = files.len() as u64;

    // Journeys by property × user. Memory is the window's sessions and
    // conversions, in compact form.
    let mut journeys: HashMap<User, Journey> = HashMap::new();
    let mut creators_seen: HashMap<String, Option<String>> = HashMap::new();
    for (_, rel) in &files {
        read_events(config, rel, &mut journeys, &mut creators_seen, &mut summary).await?;
    }

    // Each transaction once per property, across users: the first logged stands.
    let mut logged: Vec<(DateTime<Utc>, &str, &str, &User, usize)> = Vec::new();
    for (key, j) in &journeys {
        for (i, (c, _, _)) in j.conversions.iter().enumerate() {
            if let Some(t) = &c.transaction_id {
                logged.push((c.at, key.0.as_str(), t.as_str(), key, i));
            }
        }
    }
    logged.sort();
    let mut seen = std::collections::HashSet::new();
    let mut twice: std::collections::HashSet<(User, usize)> = std::collections::HashSet::new();
    for (_, property, transaction, key, i) in logged {
        if !seen.insert((property, transaction)) {
            twice.insert((key.clone(), i));
        }
    }
    summary.duplicate_transactions = twice.len() as u64;

    let mut sums: BTreeMap<Key, Sum> = BTreeMap::new();
    for ((property, user), mut j) in journeys {
        let key = (property, user);
        let kept: Vec<(Conversion, NaiveDate, Option<String>)> = std::mem::take(&mut j.conversions)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !twice.contains(&(key.clone(), *i)))
            .map(|(_, c)| c)
            .collect();
        if kept.is_empty() {
            continue;
        }
        let property = key.0;
        let convs: Vec<Conversion> = kept.iter().map(|(c, _, _)| c.clone()).collect();
        let credited = attribute_user(&mut j.touches, &convs, &config.models, config.rules);
        let mut attributed = vec![false; convs.len()];
        for (i, model, credits) in credited {
            let (_, date, currency) = &kept[i];
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
        for (i, (conv, date, currency)) in kept.iter().enumerate() {
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
        input_files: files.iter().map(|(_, f)| f.clone()).collect(),
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

/// The raw GA4 files of `from..=to` that stand: per date and property, the
/// newest extract's (an extract re-reading a day restates it whole). Only
/// files an extract manifest names count.
async fn newest_files(input: &Location, from: NaiveDate, to: NaiveDate) -> Result<Vec<(NaiveDate, String)>> {
    let committed = crest_core::manifest::committed_raw_files(input).await?;
    let mut out = Vec::new();
    let Ok(range) = DateRange::new(from, to) else {
        return Ok(out);
    };
    for date in range.dates() {
        let dir = crest_core::raw::partition_dir(GA4_TABLE, date);
        // property → (extracted_at, files)
        let mut newest: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for meta in input.list(&dir).await? {
            let rel = input.relative(&meta.location);
            if !rel.ends_with(".parquet") || !committed.files.contains(&rel) {
                continue;
            }
            let (property, extracted) = footer(input, &rel).await?;
            let entry = newest
                .entry(property)
                .or_insert_with(|| (extracted.clone(), Vec::new()));
            if extracted > entry.0 {
                *entry = (extracted, vec![rel]);
            } else if extracted == entry.0 {
                entry.1.push(rel);
            }
        }
        for (_, (_, files)) in newest {
            out.extend(files.into_iter().map(|f| (date, f)));
        }
    }
    Ok(out)
}

async fn footer(input: &Location, rel: &str) -> Result<(String, String)> {
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
        (Some(p), Some(at)) => Ok((p, at)),
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
    journeys: &mut HashMap<User, Journey>,
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
            if reason.is_valid(i) {
                *summary.quarantined.entry(reason.value(i).to_string()).or_default() += 1;
                continue;
            }
            let (day, Some(user)) = (Date32Type::to_naive_date(date.value(i)), opt(&user, i)) else {
                continue;
            };
            let Some(when) = DateTime::<Utc>::from_timestamp_micros(at.value(i)) else {
                continue;
            };
            let property = property.value(i).to_string();
            let journey = journeys.entry((property, user)).or_default();
            if name.value(i) == SESSION_START {
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
                let direct = u.is_empty() && opt(&referrer, i).is_none();
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
                journey.touches.push(Touch {
                    at: when,
                    direct,
                    creator,
                    platform: u.medium.map(|m| m.trim().to_lowercase()),
                });
            } else if config.range.contains(day) {
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
