//! The decision layer's views, the same on every target: each target carries
//! its dialect's statements (`sql/{datafusion,bigquery,snowflake}/views/`)
//! in this order, since later views read earlier ones.

pub struct View {
    pub name: &'static str,
    /// One row per …
    pub grain: &'static str,
    pub about: &'static str,
    pub columns: &'static [Column],
}

/// What a BI tool needs to know of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text or an id.
    Text,
    /// A count or amount that adds up across rows (a measure sums it).
    Additive,
    /// A ratio or a figure that does not add up (never summed).
    Ratio,
    Date,
    Time,
    YesNo,
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub about: &'static str,
}

const fn c(name: &'static str, kind: Kind, about: &'static str) -> Column {
    Column { name, kind, about }
}

use Kind::*;

const CTR: &str = "Link clicks / impressions (a fraction), as a ratio of sums.";
const CPC: &str = "Spend in the reporting currency / link clicks, as a ratio of sums.";

const SOURCE: &str = "Where the no-conversion rule, cvr and cpa take conversions from (the benchmark row's): platform, or the site under one model (site_first, site_last, site_linear, site_position, site_time_decay).";
const SITE_CONVERSIONS: &str = "Site conversions credited to the creator under that model (crest attribute) in the window; empty for platform, or before any attribution.";

const DAILY: &[Column] = &[
    c("date", Date, "Reporting date in the account's time zone."),
    c("platform", Text, "tiktok, meta or youtube."),
    c("channel", Text, "paid (ads) or organic (the creator's own posts)."),
    c(
        "creator_id",
        Text,
        "The creator, from the roster (rows with no resolved creator are left out).",
    ),
    c("creator_handle", Text, "The creator's handle from the roster."),
    c("creator_tier", Text, "nano, micro, mid or macro."),
    c("impressions", Additive, "Impressions."),
    c("clicks", Additive, "Link clicks that leave the platform."),
    c("spend_reporting", Additive, "Spend in the reporting currency."),
    c("video_views", Additive, "Video views."),
    c(
        "conversions",
        Additive,
        "Conversions under the standard attribution window (7-day click + 1-day view by default).",
    ),
    c("conversion_value", Additive, "Value of those conversions."),
    c("ctr", Ratio, CTR),
    c("cpc", Ratio, CPC),
    c("cpm", Ratio, "Spend per 1,000 impressions, as a ratio of sums."),
    c("cvr", Ratio, "Conversions / link clicks, as a ratio of sums."),
];

const PERFORMANCE: &[Column] = &[
    c("platform", Text, "tiktok, meta or youtube."),
    c("creator_id", Text, "The creator, from the roster."),
    c("creator_handle", Text, "The creator's handle."),
    c("creator_tier", Text, "nano, micro, mid or macro: picks the benchmark."),
    c(
        "disclosure_status",
        Text,
        "The creator's ad-disclosure status from the roster (e.g. disclosed, pending).",
    ),
    c(
        "as_of_date",
        Date,
        "The platform's latest date with data: the end of the evaluation window.",
    ),
    c(
        "evaluation_days",
        Ratio,
        "Trailing days judged (from the benchmark row); empty: campaign-to-date.",
    ),
    c("paid_rows", Additive, "Paid rows in the window (0: organic only)."),
    c("impressions", Additive, "Paid impressions in the window."),
    c("clicks", Additive, "Paid link clicks in the window."),
    c("spend_reporting", Additive, "Paid spend in the reporting currency."),
    c(
        "conversions",
        Additive,
        "Conversions under the standard window; empty where the platform tracks none.",
    ),
    c("conversion_value", Additive, "Value of those conversions."),
    c("video_views", Additive, "Video views, paid and organic."),
    c("ctr", Ratio, CTR),
    c("cpc", Ratio, CPC),
    c("cpm", Ratio, "Spend per 1,000 impressions."),
    c("cvr", Ratio, "Conversions of the conversion source / link clicks."),
    c("cpa", Ratio, "Spend / conversions of the conversion source."),
    c(
        "first_active_at",
        Time,
        "The first hour with paid impressions (the day's start for daily rows), UTC.",
    ),
    c(
        "hours_active",
        Ratio,
        "Hours from first_active_at to the end of the platform's latest hour with data.",
    ),
    c(
        "ctr_benchmark",
        Ratio,
        "The CTR benchmark in force for the platform and creator tier (a fraction).",
    ),
    c("cpc_ceiling", Ratio, "The CPC ceiling in force (reporting currency)."),
    c(
        "benchmark_effective_from",
        Date,
        "From when that benchmark row is in force.",
    ),
    c("conversion_source", Text, SOURCE),
    c("site_conversions", Additive, SITE_CONVERSIONS),
    c(
        "conversion_hours_active",
        Ratio,
        "Hours the conversion source has seen the creator active: hours_active for platform; for the site, up to the end of the last date crest attribute has credited. The no-conversion rule needs 72.",
    ),
];

const TIER: &[Column] = &[
    c("platform", Text, "tiktok, meta or youtube."),
    c("creator_id", Text, "The creator, from the roster."),
    c("creator_handle", Text, "The creator's handle."),
    c("creator_tier", Text, "nano, micro, mid or macro."),
    c("disclosure_status", Text, "The creator's ad-disclosure status."),
    c("as_of_date", Date, "The end of the evaluation window."),
    c("impressions", Additive, "Paid impressions in the window."),
    c("clicks", Additive, "Paid link clicks in the window."),
    c("spend_reporting", Additive, "Paid spend in the reporting currency."),
    c(
        "conversions",
        Additive,
        "Conversions under the standard window; empty where not tracked.",
    ),
    c("ctr", Ratio, CTR),
    c("cpc", Ratio, CPC),
    c("hours_active", Ratio, "Hours since the first paid impressions."),
    c("ctr_benchmark", Ratio, "The CTR benchmark used (a fraction)."),
    c("cpc_ceiling", Ratio, "The CPC ceiling used."),
    c(
        "benchmark_effective_from",
        Date,
        "From when that benchmark is in force.",
    ),
    c("ctr_gap_pct", Ratio, "(CTR / benchmark − 1) × 100, one decimal."),
    c("cpc_gap_pct", Ratio, "(CPC / ceiling − 1) × 100, one decimal."),
    c(
        "tier",
        Text,
        "red, yellow, accelerate or green; empty where the creator is not judged (tier_reason says why).",
    ),
    c(
        "tier_reason",
        Text,
        "Why, in words: the rule that decided and its numbers.",
    ),
    c(
        "compliance_flag",
        YesNo,
        "Green or accelerate while not disclosed: do not amplify until disclosed.",
    ),
    c("conversion_source", Text, SOURCE),
    c("site_conversions", Additive, SITE_CONVERSIONS),
];

const REALLOCATION: &[Column] = &[
    c("platform", Text, "tiktok, meta or youtube."),
    c("campaign_id", Text, "The campaign the spend moves within."),
    c("campaign_name", Text, "Its name."),
    c("creator_id", Text, "The creator that gives or receives."),
    c("creator_handle", Text, "The creator's handle."),
    c("tier", Text, "red (gives) or accelerate (receives)."),
    c("action", Text, "reduce or increase."),
    c(
        "recent_daily_spend",
        Ratio,
        "The creator's average daily spend in the campaign over the last 7 days.",
    ),
    c(
        "pool",
        Ratio,
        "The red creators' recent daily spend in the campaign: what moves.",
    ),
    c(
        "efficiency_basis",
        Text,
        "conversions per unit of spend, or CTR where a receiver has no conversions.",
    ),
    c("efficiency", Ratio, "The receiver's efficiency on that basis."),
    c(
        "share",
        Ratio,
        "The receiver's efficiency / the campaign's receivers' total.",
    ),
    c(
        "suggested_daily_change",
        Ratio,
        "Reporting currency a day: −recent_daily_spend to reduce, pool × share to increase.",
    ),
];

const HISTORY: &[Column] = &[
    c("evaluation_id", Text, "One crest alerts evaluation (sorts by time)."),
    c("evaluated_at", Time, "When it ran, UTC."),
    c("evaluation_date", Date, "Its date (UTC)."),
    c("platform", Text, "tiktok, meta or youtube."),
    c("creator_id", Text, "The creator."),
    c("creator_handle", Text, "The creator's handle."),
    c("tier", Text, "The tier this evaluation gave."),
    c(
        "previous_tier",
        Text,
        "The tier of the last delivered evaluation before it.",
    ),
    c(
        "change",
        Text,
        "What changed (e.g. Entered red); empty when nothing did.",
    ),
    c("tier_reason", Text, "Why."),
    c("compliance_flag", YesNo, "The compliance flag at that evaluation."),
    c("ctr", Ratio, CTR),
    c("cpc", Ratio, CPC),
    c("conversions", Ratio, "Conversions in the window at that evaluation."),
    c("delivered", YesNo, "Whether its message reached every channel."),
];

const COMPARE: &[Column] = &[
    c("creator_id", Text, "The creator, from the roster."),
    c("creator_handle", Text, "The creator's handle (from the platform rows)."),
    c("platform", Text, "tiktok, meta or youtube (the site's utm_medium)."),
    c(
        "first_date",
        Date,
        "First conversion date attributed: the platform figures are over the dates attributed.",
    ),
    c("last_date", Date, "Last conversion date compared."),
    c(
        "platform_conversions",
        Additive,
        "Conversions the platform reported under the standard attribution window.",
    ),
    c(
        "platform_conversion_value",
        Additive,
        "Their value, as the platform reported it.",
    ),
    c("site_first", Additive, "Site conversions credited by first click."),
    c(
        "site_last",
        Additive,
        "Site conversions credited by last non-direct click.",
    ),
    c(
        "site_linear",
        Additive,
        "Site conversions credited linearly over the path.",
    ),
    c(
        "site_position",
        Additive,
        "Site conversions credited 40/20/40 by position.",
    ),
    c(
        "site_time_decay",
        Additive,
        "Site conversions credited by time decay (7-day half-life by default).",
    ),
    c(
        "site_revenue_last",
        Additive,
        "Site revenue credited by last non-direct click.",
    ),
    c("site_revenue_linear", Additive, "Site revenue credited linearly."),
    c(
        "assisted_conversions",
        Additive,
        "Site conversions the creator touched but did not close: what a last-click model hides.",
    ),
    c(
        "site_touchpoints",
        Additive,
        "The creator's sessions in the paths of site conversions.",
    ),
    c(
        "site_last_to_platform",
        Ratio,
        "site_last / platform_conversions: how far the platform's own count is from the site's last click.",
    ),
];

const HYGIENE: &[Column] = &[
    c("audited_at", Time, "When the audit ran, UTC."),
    c("run_id", Text, "The transform run it read."),
    c(
        "creator_id",
        Text,
        "The creator as the transform resolved them; null for ads no creator can be credited with.",
    ),
    c("creator_handle", Text, "The creator's handle from the roster."),
    c("platform", Text, "tiktok, meta or youtube."),
    c("ads", Additive, "Paid ads of this creator on this platform."),
    c(
        "no_utm",
        Additive,
        "Ads whose landing URL carries no UTM (their creator, if any, came from the platform handle).",
    ),
    c(
        "unresolvable",
        Additive,
        "Ads whose UTMs resolve to no creator of the roster.",
    ),
    c(
        "wrong_platform",
        Additive,
        "Ads carrying a link issued for another platform.",
    ),
    c(
        "other_creator",
        Additive,
        "This creator's own Spark Ads (TikTok identity) whose link names another creator: that creator is credited with them (the ads, spend and clicks sit on that creator's row); this one must fix the link. Empty: not looked for (the audit had no roster).",
    ),
    c(
        "not_issued",
        Additive,
        "Ads carrying a link crest did not issue (when the audit was given the issued links).",
    ),
    c("issued_unseen", Additive, "Issued links no ad carries yet."),
    c("spend", Additive, "Spend in the reporting currency."),
    c(
        "spend_unattributable",
        Additive,
        "Spend of ads no creator can be credited with (neither their UTMs nor the platform handle name one).",
    ),
    c("spend_unattributable_share", Ratio, "spend_unattributable / spend."),
    c("clicks", Additive, "Link clicks."),
    c(
        "clicks_unattributable",
        Additive,
        "Link clicks of ads no creator can be credited with.",
    ),
    c("clicks_unattributable_share", Ratio, "clicks_unattributable / clicks."),
    c(
        "clean",
        YesNo,
        "Nothing to fix: every ad carries an issued link of its own platform that resolves to the creator, and none of the creator's own Spark Ads carries another creator's link.",
    ),
];

pub const VIEWS: &[View] = &[
    View {
        name: "v_creator_daily",
        grain: "creator × platform × channel × date",
        about: "the canonical metrics summed per day, CTR/CPC/CPM/CVR as ratios of sums",
        columns: DAILY,
    },
    View {
        name: "v_creator_performance",
        grain: "creator × platform",
        about: "paid delivery over the evaluation window: totals, CTR, CPC, CPM, CVR, CPA, first_active_at, hours_active, the benchmark in force",
        columns: PERFORMANCE,
    },
    View {
        name: "v_creator_tier",
        grain: "creator × platform",
        about: "the response protocol's tier (red/yellow/accelerate/green), gaps in percent, tier_reason, compliance_flag",
        columns: TIER,
    },
    View {
        name: "v_budget_reallocation",
        grain: "platform × campaign × creator that gives or receives",
        about: "red creators' recent daily spend moved to accelerate creators by efficiency, the arithmetic in columns",
        columns: REALLOCATION,
    },
    View {
        name: "v_tier_history",
        grain: "evaluation × creator × platform",
        about: "each crest alerts evaluation's tier, the previous tier and the change, from alert_log",
        columns: HISTORY,
    },
    View {
        name: "v_utm_hygiene",
        grain: "creator × platform",
        about: "the latest crest links audit: ads without UTMs, with unresolvable, wrong-platform or another creator's links, and the share of spend and clicks no creator can be credited with",
        columns: HYGIENE,
    },
    View {
        name: "v_attribution_compare",
        grain: "creator × platform",
        about: "platform-reported conversions beside the brand's site conversions credited under each model (crest attribute), and the conversions the creator assisted but did not close",
        columns: COMPARE,
    },
];
