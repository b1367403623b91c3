//! YouTube organic raw (`crest-youtube`, schema `youtube.analytics.v1`) → canonical.
//!
//! Creators' organic videos: `channel` is `organic`, `account_id` is the
//! channel and `content_id` the video. A video's creator is the one its
//! description's UTM-tagged link names (what the brief asks creators to
//! post), and the channel's (roster `youtube_channel_id`) only where there is
//! no such link: a brand channel hosting several creators' videos resolves
//! each video to its own creator. YouTube Analytics serves no impressions, link
//! clicks, spend or conversions for organic videos: those columns are null,
//! never a made-up number. `video_views` are views; `engagements` are likes +
//! comments + shares. UTMs come from the link in the video's description.

use super::{creator_columns, LinkKind, Mapped, Mapper, Platform, RawColumns};
use crate::canonical;
use crate::quality::Totals;
use crate::{Result, StandardWindow};
use arrow::array::{Array, Int64Array, RecordBatch, UInt32Array};
use arrow::datatypes::DataType;
use std::sync::Arc;

pub static PLATFORM: Platform = Platform {
    name: "youtube",
    daily_report: "video_daily",
    hourly_report: "video_hourly",
    schema_tags: &["youtube.analytics.v1"],
    map,
    raw_totals,
};

pub fn raw_totals(raw: &RecordBatch, _standard: &StandardWindow) -> Result<Totals> {
    // Organic rows carry no impressions, link clicks, spend or conversions.
    Ok(Totals {
        rows: raw.num_rows() as u64,
        ..Totals::default()
    })
}

fn map(mapper: &mut Mapper<'_>, raw: &RecordBatch) -> Result<Mapped> {
    let n = raw.num_rows();
    let cols = RawColumns::new(raw, "YouTube", "crest-youtube");
    let req = |name: &str| cols.required(name);
    let opt = |name: &str, t: &DataType| cols.optional(name, t);
    let channel = req("channel_id")?;
    let link = opt("description_link", &DataType::Utf8);
    // The description's UTMs first, then the channel (see `Roster::resolve`).
    let creator = creator_columns(mapper, &link, &channel, LinkKind::Url)?;
    mapper.unresolved_rows += creator.creator_id().null_count() as u64;
    let parts: Vec<&Int64Array> = ["likes", "comments", "shares"]
        .iter()
        .filter_map(|m| raw.column_by_name(m).map(|c| super::typed::int64(c, m)))
        .collect::<Result<_>>()?;
    let engagements: Int64Array = (0..n)
        .map(|i| {
            parts
                .iter()
                .filter(|p| p.is_valid(i))
                .fold(None, |acc: Option<i64>, p| Some(acc.unwrap_or(0) + p.value(i)))
        })
        .collect();
    let canonical = mapper
        .canonical(n)
        .column("date", req("day")?)
        .nulls(&["hour"])
        .text("platform", "youtube")
        .text("placement", "youtube")
        .text("channel", "organic")
        .column("account_id", channel)
        .nulls(&["campaign_id", "campaign_name", "ad_group_id", "ad_group_name", "ad_id"])
        .column("ad_name", opt("video_title", &DataType::Utf8))
        .column("content_id", req("video_id")?)
        .column("landing_url", link)
        .creator(creator)
        .nulls(&["impressions", "clicks", "spend", "currency", "spend_reporting"])
        .column("video_views", opt("views", &DataType::Int64))
        .column("engagements", Arc::new(engagements))
        .nulls(&[
            "conversions",
            "conversion_value",
            "click_window_days",
            "view_window_days",
        ])
        // No conversions to attribute: nothing was normalized or left aside.
        .text("attribution_basis", "native")
        .column("extracted_at", req("extracted_at")?)
        .finish()?;
    let windows = RecordBatch::new_empty(canonical::attribution_windows_schema());
    Ok(Mapped {
        canonical,
        windows,
        window_rows: UInt32Array::from(Vec::<u32>::new()),
    })
}
