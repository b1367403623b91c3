//! Field maps from each connector's raw output into the canonical columns.
//! A platform is its raw table names, the raw schema versions it reads, a map
//! from a raw batch to canonical rows (plus the attribution windows as
//! served), and the raw totals reconciliation checks against.

pub mod google_ads;
pub mod meta;
pub mod tiktok;
pub mod typed;
pub mod youtube;

use crate::fx::FxRates;
use crate::quality::Totals;
use crate::roster::Roster;
use crate::utm::Utm;
use crate::{Granularity, Result, StandardWindow, TransformConfig, TransformError};
use ahash::HashMap;
use arrow::array::{Array, ArrayRef, Decimal128Builder, RecordBatch, StringBuilder, UInt32Array};
use arrow::datatypes::Date32Type;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct Platform {
    pub name: &'static str,
    daily_report: &'static str,
    hourly_report: &'static str,
    /// `crest.schema` tags of raw files this crest reads.
    pub schema_tags: &'static [&'static str],
    pub map: fn(&mut Mapper<'_>, &RecordBatch) -> Result<Mapped>,
    pub raw_totals: fn(&RecordBatch, &StandardWindow) -> Result<Totals>,
}

impl Platform {
    pub fn raw_table(&self, granularity: Granularity) -> String {
        let report = match granularity {
            Granularity::Day => self.daily_report,
            Granularity::Hour => self.hourly_report,
        };
        crest_core::raw::raw_table(self.name, report)
    }
}

/// Every raw table crest transforms: YouTube has two (organic videos, and
/// ads from Google Ads), both under the platform `youtube`.
pub fn all() -> Vec<&'static Platform> {
    vec![
        &tiktok::PLATFORM,
        &meta::PLATFORM,
        &youtube::PLATFORM,
        &google_ads::PLATFORM,
    ]
}

/// Fails on a raw file whose schema this crest does not know.
pub fn check_schema(rel: &str, tag: &str) -> Result<()> {
    let platform = rel.split('/').nth(1).unwrap_or_default();
    let known: Vec<&Platform> = all().into_iter().filter(|p| p.name == platform).collect();
    if known.is_empty() {
        return Err(TransformError::Input(format!("{rel}: unknown platform '{platform}'")));
    }
    if known.iter().any(|p| p.schema_tags.contains(&tag)) {
        return Ok(());
    }
    let tags: Vec<&str> = known.iter().flat_map(|p| p.schema_tags.iter().copied()).collect();
    Err(TransformError::Input(format!(
        "{rel} has raw schema '{tag}', which this crest does not read (it reads {}); upgrade crest or re-extract",
        tags.join(", ")
    )))
}

/// One raw batch, mapped.
pub struct Mapped {
    pub canonical: RecordBatch,
    /// Attribution windows as served (the companion long table).
    pub windows: RecordBatch,
    /// For each window row, the index of its canonical row.
    pub window_rows: UInt32Array,
}

/// A creator resolution, cached per distinct landing URL and platform handle.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub utm: Utm,
    pub creator: Option<usize>,
}

/// Under one link text: a platform handle, how the link was read, and the resolution.
type Handled = (Box<str>, LinkKind, u32);

/// What mapping shares across batches: configuration, caches, and what the
/// summary reports (unresolved creators, missing fx rates).
pub struct Mapper<'a> {
    pub run_id: &'a str,
    pub roster: &'a Roster,
    pub fx: &'a FxRates,
    pub standard: StandardWindow,
    /// Every resolution so far, indexed by landing URL, then platform handle.
    resolved: Vec<Resolved>,
    index: HashMap<Box<str>, Vec<Handled>>,
    /// Per batch: global resolution → its slot among the batch's distinct ones.
    local: Vec<u32>,
    pub unresolved_rows: u64,
    pub unresolved: BTreeSet<String>,
    pub missing_fx: BTreeSet<(NaiveDate, String)>,
}

impl<'a> Mapper<'a> {
    pub fn new(config: &'a TransformConfig, run_id: &'a str) -> Self {
        Mapper {
            run_id,
            roster: &config.roster,
            fx: &config.fx,
            standard: config.standard,
            resolved: Vec::new(),
            index: HashMap::default(),
            local: Vec::new(),
            unresolved_rows: 0,
            unresolved: BTreeSet::new(),
            missing_fx: BTreeSet::new(),
        }
    }

    /// The resolution (UTMs and creator) behind a landing URL and platform
    /// handle, as an index into [`Mapper::resolution`]; parsed once per
    /// distinct pair, looked up without allocating.
    pub fn resolve(&mut self, landing_url: Option<&str>, handle: Option<&str>, kind: LinkKind) -> u32 {
        let (url, h) = (landing_url.unwrap_or(""), handle.unwrap_or(""));
        if let Some(found) = self
            .index
            .get(url)
            .and_then(|hs| hs.iter().find(|(k, kk, _)| &**k == h && *kk == kind))
        {
            return found.2;
        }
        let parse = match kind {
            LinkKind::Url => crate::utm::parse_url,
            LinkKind::Query => crate::utm::parse_query,
        };
        let utm = landing_url.map(parse).unwrap_or_default();
        let creator = self.roster.resolve(&utm, handle);
        if creator.is_none() && self.unresolved.len() < 50 {
            let what = utm
                .content
                .clone()
                .or(utm.source.clone())
                .or(handle.map(str::to_string));
            self.unresolved
                .insert(what.unwrap_or_else(|| "(no UTM, no handle)".into()));
        }
        let idx = self.resolved.len() as u32;
        self.resolved.push(Resolved { utm, creator });
        self.index.entry(url.into()).or_default().push((h.into(), kind, idx));
        idx
    }

    /// The batch-local slot of a global resolution, adding it to `distinct`.
    pub fn local_slot(&mut self, global: u32, distinct: &mut Vec<u32>) -> u32 {
        if self.local.len() < self.resolved.len() {
            self.local.resize(self.resolved.len(), u32::MAX);
        }
        let slot = &mut self.local[global as usize];
        if *slot == u32::MAX {
            *slot = distinct.len() as u32;
            distinct.push(global);
        }
        *slot
    }

    /// Forgets the batch-local slots (cheap: only the ones used).
    pub fn clear_local_slots(&mut self, distinct: &[u32]) {
        for g in distinct {
            self.local[*g as usize] = u32::MAX;
        }
    }

    /// A `creator_performance` batch of `rows` rows, this run's columns set.
    pub fn canonical(&self, rows: usize) -> crate::canonical::BatchBuilder {
        crate::canonical::BatchBuilder::new("creator_performance", crate::canonical::schema(), rows)
            .text("run_id", self.run_id)
            .column(
                "schema_version",
                Arc::new(arrow::array::Int32Array::from_value(
                    crate::canonical::SCHEMA_VERSION,
                    rows,
                )),
            )
    }

    pub fn resolution(&self, idx: u32) -> &Resolved {
        &self.resolved[idx as usize]
    }
}

/// How a row's link text carries its UTMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A landing URL (TikTok `landing_page_url`).
    Url,
    /// A query string (Meta `url_tags`).
    Query,
}

/// The nine columns a row's creator resolution fills, by canonical name.
pub struct CreatorColumns(pub [ArrayRef; 9]);

impl CreatorColumns {
    pub const NAMES: [&'static str; 9] = [
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "creator_id",
        "creator_handle",
        "creator_tier",
        "disclosure_status",
    ];

    pub fn creator_id(&self) -> &ArrayRef {
        &self.0[5]
    }
}

impl crate::canonical::BatchBuilder {
    /// The nine columns of a creator resolution.
    pub fn creator(self, c: CreatorColumns) -> Self {
        CreatorColumns::NAMES
            .iter()
            .zip(c.0)
            .fold(self, |b, (name, values)| b.column(name, values))
    }
}

/// The [`CreatorColumns`] for rows with these links and platform handles,
/// filled in one pass without allocating per value. The caller counts the
/// unresolved rows once its columns are final.
#[inline]
pub fn creator_columns(
    mapper: &mut Mapper<'_>,
    links: &ArrayRef,
    handles: &ArrayRef,
    kind: LinkKind,
) -> Result<CreatorColumns> {
    let n = links.len();
    let (links_s, handles_s) = (typed::string(links, "link")?, typed::string(handles, "handle")?);
    let mut distinct: Vec<u32> = Vec::new();
    let mut which = Vec::with_capacity(n);
    for i in 0..n {
        let link = links_s.is_valid(i).then(|| links_s.value(i));
        let handle = handles_s.is_valid(i).then(|| handles_s.value(i));
        let global = mapper.resolve(link, handle, kind);
        which.push(mapper.local_slot(global, &mut distinct));
    }
    mapper.clear_local_slots(&distinct);
    let distinct: Vec<&Resolved> = distinct.iter().map(|g| mapper.resolution(*g)).collect();
    let roster = mapper.roster;
    let mut cols: Vec<StringBuilder> = (0..9).map(|_| StringBuilder::with_capacity(n, n * 12)).collect();
    for &k in &which {
        let r = distinct[k as usize];
        let c = r.creator.map(|c| &roster.creators()[c]);
        let values: [Option<&str>; 9] = [
            r.utm.source.as_deref(),
            r.utm.medium.as_deref(),
            r.utm.campaign.as_deref(),
            r.utm.content.as_deref(),
            r.utm.term.as_deref(),
            c.map(|c| c.creator_id.as_str()),
            c.map(|c| c.handle.as_str()),
            c.and_then(|c| c.tier.as_deref()),
            c.and_then(|c| c.disclosure_status.as_deref()),
        ];
        for (b, v) in cols.iter_mut().zip(values) {
            b.append_option(v);
        }
    }
    Ok(CreatorColumns(std::array::from_fn(|i| {
        Arc::new(cols[i].finish()) as ArrayRef
    })))
}

/// `micros × rate`, exactly, rounded half away from zero to six places.
fn convert(micros: i128, rate: Decimal) -> Option<i128> {
    let scale = 10i128.checked_pow(rate.scale())?;
    let product = micros.checked_mul(rate.mantissa())?;
    let (q, r) = (product / scale, product % scale);
    Some(if r.abs() * 2 >= scale { q + product.signum() } else { q })
}

/// Spend in the reporting currency at the rate of (date, currency); null (and
/// listed in the summary) where no rate is known. A raw file is one account ×
/// one date, so the rate is looked up once per run of rows.
#[inline]
pub fn spend_reporting(
    mapper: &mut Mapper<'_>,
    date: &ArrayRef,
    currency: &ArrayRef,
    spend: &ArrayRef,
) -> Result<ArrayRef> {
    let (dates, currencies) = (typed::date32(date, "date")?, typed::string(currency, "currency")?);
    let spend = typed::decimal(spend, "spend")?;
    let n = spend.len();
    let mut out = Decimal128Builder::with_capacity(n);
    let mut last: Option<((i32, &str), Option<Decimal>)> = None;
    for i in 0..n {
        if spend.is_null(i) || currencies.is_null(i) {
            out.append_null();
            continue;
        }
        let key = (dates.value(i), currencies.value(i));
        let rate = match last {
            Some((k, r)) if k == key => r,
            _ => {
                let day: NaiveDate = Date32Type::to_naive_date(key.0);
                let r = mapper.fx.rate(day, key.1);
                if r.is_none() {
                    mapper.missing_fx.insert((day, key.1.to_string()));
                }
                last = Some((key, r));
                r
            }
        };
        match rate {
            Some(rate) if rate == Decimal::ONE => out.append_value(spend.value(i)),
            Some(rate) => out.append_option(convert(spend.value(i), rate)),
            None => out.append_null(),
        }
    }
    let out = out
        .finish()
        .with_precision_and_scale(38, crate::canonical::DECIMAL_SCALE)
        .map_err(|e| TransformError::Input(format!("spend_reporting: {e}")))?;
    Ok(Arc::new(out))
}

/// A raw batch's columns as a platform map reads them: required ones fail
/// with a message naming the connector that should have written them.
pub struct RawColumns<'a> {
    raw: &'a RecordBatch,
    platform: &'static str,
    connector: &'static str,
}

impl<'a> RawColumns<'a> {
    pub fn new(raw: &'a RecordBatch, platform: &'static str, connector: &'static str) -> Self {
        RawColumns {
            raw,
            platform,
            connector,
        }
    }

    pub fn missing(&self, name: &str) -> TransformError {
        Self::missing_for(self.platform, self.connector, name)
    }

    pub fn missing_for(platform: &str, connector: &str, name: &str) -> TransformError {
        TransformError::Input(format!(
            "a {platform} raw file lacks the column {name}: not written by {connector}"
        ))
    }

    pub fn required(&self, name: &str) -> Result<ArrayRef> {
        self.raw.column_by_name(name).cloned().ok_or_else(|| self.missing(name))
    }

    /// The column, or nulls of `t` where an older or narrower raw file lacks it.
    pub fn optional(&self, name: &str, t: &arrow::datatypes::DataType) -> ArrayRef {
        self.raw
            .column_by_name(name)
            .cloned()
            .unwrap_or_else(|| arrow::array::new_null_array(t, self.raw.num_rows()))
    }
}

/// Attribution windows as served, gathered by a platform map: for each, the
/// raw row it belongs to, the window's label, conversions and value (both in
/// millionths).
#[derive(Default)]
pub struct WindowRows<'a> {
    rows: Vec<u32>,
    labels: Vec<std::borrow::Cow<'a, str>>,
    conversions: Vec<Option<i128>>,
    values: Vec<Option<i128>>,
}

impl<'a> WindowRows<'a> {
    pub fn push(
        &mut self,
        row: usize,
        label: impl Into<std::borrow::Cow<'a, str>>,
        conversions: Option<i128>,
        value: Option<i128>,
    ) {
        self.rows.push(row as u32);
        self.labels.push(label.into());
        self.conversions.push(conversions);
        self.values.push(value);
    }
}

/// Where a platform's raw batch keeps the windows table's key columns.
pub struct WindowKeys<'k> {
    pub platform: &'k str,
    pub date: &'k str,
    /// The hour of hourly rows (`None`: daily rows).
    pub hour: Option<&'k str>,
    pub account: &'k str,
    pub ad: &'k str,
    pub content: Option<&'k str>,
    /// The conversion action: a raw column, or one name for every row.
    pub action: Result<&'k str, &'k str>,
}

/// A raw column, or nulls of `t` where the raw file lacks it.
fn raw_column(raw: &RecordBatch, name: &str, t: &arrow::datatypes::DataType) -> ArrayRef {
    raw.column_by_name(name)
        .cloned()
        .unwrap_or_else(|| arrow::array::new_null_array(t, raw.num_rows()))
}

/// The `attribution_windows` rows, and for each the index of its canonical row.
pub fn windows_batch(
    raw: &RecordBatch,
    keys: &WindowKeys<'_>,
    w: WindowRows<'_>,
    run_id: &str,
) -> Result<(RecordBatch, UInt32Array)> {
    use arrow::array::{new_null_array, Decimal128Array, StringArray};
    use arrow::datatypes::DataType;
    let err = |e: arrow::error::ArrowError| TransformError::Input(format!("{}: {e}", keys.platform));
    let n = raw.num_rows();
    let rows = UInt32Array::from(w.rows);
    let m = rows.len();
    let pick = |name: Option<&str>| -> Result<ArrayRef> {
        let col = name
            .and_then(|name| raw.column_by_name(name).cloned())
            .unwrap_or_else(|| new_null_array(&DataType::Utf8, n));
        arrow::compute::take(&col, &rows, None).map_err(err)
    };
    let constant = |v: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, m))) };
    let decimal = |v: Vec<Option<i128>>| -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from(v)
                .with_precision_and_scale(38, crate::canonical::DECIMAL_SCALE)
                .map_err(err)?,
        ))
    };
    let action = match keys.action {
        Ok(column) => {
            if raw.column_by_name(column).is_none() {
                return Err(TransformError::Input(format!(
                    "a {} raw file lacks the column {column}",
                    keys.platform
                )));
            }
            pick(Some(column))?
        }
        Err(name) => constant(name),
    };
    let hour = match keys.hour {
        Some(column) => arrow::compute::take(&raw_column(raw, column, &DataType::Int32), &rows, None).map_err(err)?,
        None => new_null_array(&DataType::Int32, m),
    };
    let batch =
        crate::canonical::BatchBuilder::new("attribution_windows", crate::canonical::attribution_windows_schema(), m)
            .column("date", pick(Some(keys.date))?)
            .column("hour", hour)
            .column("platform", constant(keys.platform))
            .column("account_id", pick(Some(keys.account))?)
            .column("ad_id", pick(Some(keys.ad))?)
            .column("content_id", pick(keys.content)?)
            .column("action", action)
            .column(
                "window",
                Arc::new(StringArray::from_iter_values(w.labels.iter().map(|l| l.as_ref()))),
            )
            .column("conversions", decimal(w.conversions)?)
            .column("conversion_value", decimal(w.values)?)
            .column("run_id", constant(run_id))
            .finish()?;
    Ok((batch, rows))
}
