//! The decision layer's views, the same on every target: each target carries
//! its dialect's statements (`sql/{datafusion,bigquery,snowflake}/views/`)
//! in this order, since later views read earlier ones.

pub struct View {
    pub name: &'static str,
    /// One row per …
    pub grain: &'static str,
    pub about: &'static str,
}

pub const VIEWS: &[View] = &[
    View {
        name: "v_creator_daily",
        grain: "creator × platform × channel × date",
        about: "the canonical metrics summed per day, CTR/CPC/CPM/CVR as ratios of sums",
    },
    View {
        name: "v_creator_performance",
        grain: "creator × platform",
        about: "paid delivery over the evaluation window: totals, CTR, CPC, CPM, CVR, CPA, first_active_at, hours_active, the benchmark in force",
    },
    View {
        name: "v_creator_tier",
        grain: "creator × platform",
        about: "the response protocol's tier (red/yellow/accelerate/green), gaps in percent, tier_reason, compliance_flag",
    },
    View {
        name: "v_budget_reallocation",
        grain: "platform × campaign × creator that gives or receives",
        about: "red creators' recent daily spend moved to accelerate creators by efficiency, the arithmetic in columns",
    },
];
