//! The canonical schema, version 1: one Arrow definition with a description
//! of every column (meaning, unit, source per platform). Every later stage
//! (loaders, views, BI column descriptions) reads this definition; none
//! re-declares it.
//!
//! Grain: one row per platform × account × ad (or organic video) × date
//! (× hour where hourly granularity is asked for). Natural key:
//! (`platform`, `account_id`, `ad_id` or `content_id`, `date`, `hour`).

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub const SCHEMA_VERSION: i32 = 1;
/// Money and conversions: exact decimals with six places.
pub const DECIMAL: DataType = DataType::Decimal128(38, 6);
pub const DECIMAL_SCALE: i8 = 6;
/// Arrow field metadata key holding a column's description.
pub const DESCRIPTION: &str = "description";

/// (name, type, nullable, description)
pub const COLUMNS: &[(&str, DataType, bool, &str)] = &[
    ("date", DataType::Date32, false, "Reporting date in the account's time zone. TikTok: stat_time_day/stat_time_hour."),
    ("hour", DataType::Int32, true, "Hour of day 0-23 in the account's time zone for hourly data; null for daily rows."),
    ("platform", DataType::Utf8, false, "Source platform: tiktok, meta or youtube."),
    ("placement", DataType::Utf8, true, "Surface within the platform (instagram, facebook, youtube…); null where the platform has one surface (TikTok)."),
    ("channel", DataType::Utf8, false, "paid (ads) or organic (the creator's own posts)."),
    ("account_id", DataType::Utf8, false, "Ad account (TikTok advertiser_id, Meta ad account) or, for organic data, the creator's channel (YouTube channel id). Ids are strings: some exceed 2^53."),
    ("campaign_id", DataType::Utf8, true, "Campaign id."),
    ("campaign_name", DataType::Utf8, true, "Campaign name as set in the platform."),
    ("ad_group_id", DataType::Utf8, true, "Ad group / ad set id (TikTok adgroup_id)."),
    ("ad_group_name", DataType::Utf8, true, "Ad group / ad set name."),
    ("ad_id", DataType::Utf8, true, "Ad id; null for organic content."),
    ("ad_name", DataType::Utf8, true, "Ad name."),
    ("content_id", DataType::Utf8, true, "The creator's post or video the ad promotes (TikTok tiktok_item_id, Meta Instagram permalink), or the organic video (YouTube video id)."),
    ("landing_url", DataType::Utf8, true, "Landing URL of the ad (TikTok landing_page_url), carrying the creator's UTM parameters."),
    ("utm_source", DataType::Utf8, true, "utm_source of the landing URL (percent-decoded, first non-empty value)."),
    ("utm_medium", DataType::Utf8, true, "utm_medium of the landing URL."),
    ("utm_campaign", DataType::Utf8, true, "utm_campaign of the landing URL."),
    ("utm_content", DataType::Utf8, true, "utm_content of the landing URL (usually the creator's handle)."),
    ("utm_term", DataType::Utf8, true, "utm_term of the landing URL."),
    ("creator_id", DataType::Utf8, true, "Creator from the roster, resolved from UTMs or the platform handle; null when unresolved (the row is kept and counted)."),
    ("creator_handle", DataType::Utf8, true, "The creator's handle from the roster."),
    ("creator_tier", DataType::Utf8, true, "nano (1K-10K followers), micro (10K-100K), mid (100K-500K) or macro (above); from the roster or derived from followers."),
    ("disclosure_status", DataType::Utf8, true, "The creator's ad-disclosure status from the roster (e.g. disclosed, pending)."),
    ("impressions", DataType::Int64, true, "Times the ad or content was shown."),
    ("clicks", DataType::Int64, true, "Link clicks that leave the platform (TikTok clicks: destination clicks), not all engagements. CTR = clicks / impressions; CPC = spend / clicks."),
    ("spend", DECIMAL, true, "Spend in the account currency, exact. CPM = spend / impressions x 1000."),
    ("currency", DataType::Utf8, true, "ISO 4217 currency of spend and conversion_value (the account currency)."),
    ("spend_reporting", DECIMAL, true, "Spend in the reporting currency at that date's fx rate; null when no rate was given (never guessed)."),
    ("video_views", DataType::Int64, true, "Video plays (TikTok video_play_actions)."),
    ("engagements", DataType::Int64, true, "Likes + comments + shares + follows."),
    ("conversions", DECIMAL, true, "Conversions under the row's attribution window (click_window_days / view_window_days). CVR = conversions / clicks. Null where the platform reports none."),
    ("conversion_value", DECIMAL, true, "Value of those conversions in the account currency."),
    ("click_window_days", DataType::Int32, true, "Click-through attribution window of conversions, in days."),
    ("view_window_days", DataType::Int32, true, "View-through attribution window of conversions, in days."),
    ("attribution_basis", DataType::Utf8, false, "native (the platform's window equals the standard), recomputed (crest derived the standard window), unnormalized (platform window kept as served, see the window columns)."),
    ("extracted_at", DataType::Timestamp(TimeUnit::Microsecond, None), false, "When the source row was extracted from the platform (UTC). The latest wins for a natural key."),
    ("run_id", DataType::Utf8, false, "The transform run that wrote the row (see _runs/{run_id}.json)."),
    ("schema_version", DataType::Int32, false, "Canonical schema version (1)."),
];

/// The canonical `creator_performance` schema.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = COLUMNS
                .iter()
                .map(|(name, t, nullable, doc)| {
                    // Every time stamp is UTC (a const cannot hold the zone).
                    let t = match t {
                        DataType::Timestamp(unit, None) => DataType::Timestamp(*unit, Some(Arc::from("UTC"))),
                        t => t.clone(),
                    };
                    Field::new(*name, t, *nullable)
                        .with_metadata(HashMap::from([(DESCRIPTION.to_string(), doc.to_string())]))
                })
                .collect();
            Arc::new(Schema::new(fields).with_metadata(HashMap::from([(
                "crest.schema".to_string(),
                format!("canonical.creator_performance.v{SCHEMA_VERSION}"),
            )])))
        })
        .clone()
}

/// The tables a load writes, as targets name them, with their schemas (the
/// folders they come from are `crest_core::load::TABLES`).
pub fn tables() -> Vec<(&'static str, SchemaRef)> {
    vec![
        ("creator_performance", schema()),
        ("attribution_windows", attribution_windows_schema()),
        ("quarantine", quarantine_schema()),
        ("creator_attribution", creator_attribution_schema()),
    ]
}

/// Rows that failed a check: the canonical columns plus `reason`.
pub fn quarantine_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(
                Field::new("reason", DataType::Utf8, false).with_metadata(HashMap::from([(
                    DESCRIPTION.to_string(),
                    "Why the row failed: negative_metric, clicks_above_impressions, date_out_of_range, duplicate_key."
                        .to_string(),
                )])),
            );
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The companion long table: every attribution window as served.
pub fn attribution_windows_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let col = |name: &str, t: DataType, nullable: bool, doc: &str| {
                Field::new(name, t, nullable).with_metadata(HashMap::from([(DESCRIPTION.to_string(), doc.to_string())]))
            };
            Arc::new(Schema::new(vec![
                col("date", DataType::Date32, false, "Reporting date."),
                col("hour", DataType::Int32, true, "Hour for hourly data."),
                col("platform", DataType::Utf8, false, "Source platform."),
                col("account_id", DataType::Utf8, false, "Ad account."),
                col("ad_id", DataType::Utf8, true, "Ad id (with content_id, the row's key)."),
                col("content_id", DataType::Utf8, true, "Content id."),
                col(
                    "action",
                    DataType::Utf8,
                    false,
                    "The conversion action as the platform names it.",
                ),
                col(
                    "window",
                    DataType::Utf8,
                    false,
                    "Attribution window as served, e.g. 7d_click_1d_view, 28d_click.",
                ),
                col("conversions", DECIMAL, true, "Conversions in that window."),
                col(
                    "conversion_value",
                    DECIMAL,
                    true,
                    "Their value in the account currency.",
                ),
                col("run_id", DataType::Utf8, false, "The transform run."),
            ]))
        })
        .clone()
}

/// Site conversions credited to creators (`crest attribute`): one row per
/// conversion date × property × creator × platform × model × currency.
pub fn creator_attribution_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let col = |name: &str, t: DataType, nullable: bool, doc: &str| {
                Field::new(name, t, nullable).with_metadata(HashMap::from([(DESCRIPTION.to_string(), doc.to_string())]))
            };
            Arc::new(Schema::new(vec![
                col("date", DataType::Date32, false, "The conversion's date in the GA4 property's time zone."),
                col("property_id", DataType::Utf8, false, "The GA4 property the conversion was logged in."),
                col("creator_id", DataType::Utf8, true, "The creator credited; null for the share of sessions whose UTMs resolve to no creator (platform set) or of conversions with no non-direct session in the lookback (platform null)."),
                col("platform", DataType::Utf8, true, "The touch's utm_medium, lower case (tiktok, meta, youtube as crest links issue writes it)."),
                col("model", DataType::Utf8, false, "first, last (non-direct), linear, position (40/20/40) or time_decay (7-day half-life)."),
                col("conversions", DECIMAL, false, "Conversions credited under the model: each conversion's credits sum to 1."),
                col("revenue", DECIMAL, true, "Revenue credited, in the property's currency: each conversion's shares sum to its revenue."),
                col("currency", DataType::Utf8, true, "The currency parameter of the conversions."),
                col("touchpoints", DataType::Int64, false, "Sessions of this creator × platform in the credited paths (within the lookback)."),
                col("assisted_conversions", DataType::Int64, false, "Conversions this creator touched but did not close: the last non-direct session was someone else's."),
                col("lookback_days", DataType::Int32, false, "The lookback window sessions were taken from, in days."),
                col("run_id", DataType::Utf8, false, "The attribution run that wrote the row (see _runs/{run_id}.json)."),
            ]))
        })
        .clone()
}

/// A batch of a canonical table built by column name, so that no platform map
/// depends on the schema's order: every column set exactly once, none the
/// table lacks. `finish` names what is missing, unknown or set twice.
pub struct BatchBuilder {
    table: &'static str,
    schema: SchemaRef,
    rows: usize,
    columns: Vec<Option<arrow::array::ArrayRef>>,
    problems: Vec<String>,
}

impl BatchBuilder {
    pub fn new(table: &'static str, schema: SchemaRef, rows: usize) -> Self {
        let columns = vec![None; schema.fields().len()];
        BatchBuilder {
            table,
            schema,
            rows,
            columns,
            problems: Vec::new(),
        }
    }

    fn slot(&mut self, name: &str) -> Option<usize> {
        match self.schema.index_of(name) {
            Ok(i) if self.columns[i].is_some() => {
                self.problems.push(format!("{name} is set twice"));
                None
            }
            Ok(i) => Some(i),
            Err(_) => {
                self.problems.push(format!("{name} is not a column of {}", self.table));
                None
            }
        }
    }

    pub fn column(mut self, name: &str, values: arrow::array::ArrayRef) -> Self {
        if let Some(i) = self.slot(name) {
            self.columns[i] = Some(values);
        }
        self
    }

    /// The same text on every row.
    pub fn text(self, name: &str, value: &str) -> Self {
        let values = Arc::new(arrow::array::StringArray::from_iter_values(std::iter::repeat_n(
            value, self.rows,
        )));
        self.column(name, values)
    }

    /// Columns the source has no value for: nulls of each column's type.
    pub fn nulls(mut self, names: &[&str]) -> Self {
        for name in names {
            if let Some(i) = self.slot(name) {
                let t = self.schema.field(i).data_type();
                self.columns[i] = Some(arrow::array::new_null_array(t, self.rows));
            }
        }
        self
    }

    pub fn finish(self) -> crate::Result<arrow::record_batch::RecordBatch> {
        let mut problems = self.problems;
        let missing: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .zip(&self.columns)
            .filter(|(_, c)| c.is_none())
            .map(|(f, _)| f.name().as_str())
            .collect();
        if !missing.is_empty() {
            problems.push(format!("{} not set", missing.join(", ")));
        }
        let fail = |what: String| crate::TransformError::Input(format!("a {} batch: {what}", self.table));
        if !problems.is_empty() {
            return Err(fail(problems.join("; ")));
        }
        let columns = self.columns.into_iter().flatten().collect();
        arrow::record_batch::RecordBatch::try_new(self.schema, columns).map_err(|e| fail(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_column_is_defined_once_with_a_description() {
        let s = schema();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        let design = "date hour platform placement channel account_id campaign_id campaign_name ad_group_id ad_group_name ad_id ad_name content_id landing_url utm_source utm_medium utm_campaign utm_content utm_term creator_id creator_handle creator_tier disclosure_status impressions clicks spend currency spend_reporting video_views engagements conversions conversion_value click_window_days view_window_days attribution_basis extracted_at run_id schema_version";
        assert_eq!(names, design.split(' ').collect::<Vec<_>>());
        assert!(s
            .fields()
            .iter()
            .all(|f| f.metadata().get(DESCRIPTION).is_some_and(|d| d.len() > 5)));
    }

    #[test]
    fn a_batch_is_built_by_name_and_names_what_is_wrong() {
        use arrow::array::{Array, AsArray};
        let windows = |b: BatchBuilder| b.finish().map_err(|e| e.to_string());
        let all = |b: BatchBuilder| {
            b.column("date", Arc::new(arrow::array::Date32Array::from(vec![1, 2])))
                .text("platform", "meta")
                .text("account_id", "a")
                .text("action", "purchase")
                .text("window", "7d_click")
                .text("run_id", "r")
                .nulls(&["hour", "ad_id", "content_id", "conversions", "conversion_value"])
        };
        let new = || BatchBuilder::new("attribution_windows", attribution_windows_schema(), 2);
        // Set in any order, the batch is in the schema's.
        let batch = windows(all(new())).expect("complete");
        assert_eq!(batch.schema().field(2).name(), "platform");
        assert_eq!(batch.column(2).as_string::<i32>().value(1), "meta");
        assert_eq!(batch.column(8).null_count(), 2);
        let missing = windows(new().text("platform", "meta")).unwrap_err();
        assert!(missing.contains("date, hour, account_id"), "{missing}");
        let unknown = windows(all(new()).text("clicks", "1")).unwrap_err();
        assert!(
            unknown.contains("clicks is not a column of attribution_windows"),
            "{unknown}"
        );
        let twice = windows(all(new()).text("platform", "tiktok")).unwrap_err();
        assert!(twice.contains("platform is set twice"), "{twice}");
    }
}
