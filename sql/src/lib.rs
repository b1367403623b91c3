//! crest's SQL as text, one module per dialect: the files live next to this
//! crate (`sql/{dialect}/…`) where reviewers and DBAs read them, and are
//! embedded here so a target's crate never reaches outside itself for them.
//! Templates take `{{name}}` parameters (`crest_core::warehouse::render`).

/// The decision layer's views of a dialect, in the order of
/// `crest_core::views::VIEWS`: (view name, its SQL).
macro_rules! views {
    ($dialect:literal) => {
        &[
            (
                "v_creator_daily",
                include_str!(concat!("../", $dialect, "/views/v_creator_daily.sql")),
            ),
            (
                "v_creator_performance",
                include_str!(concat!("../", $dialect, "/views/v_creator_performance.sql")),
            ),
            (
                "v_creator_tier",
                include_str!(concat!("../", $dialect, "/views/v_creator_tier.sql")),
            ),
            (
                "v_budget_reallocation",
                include_str!(concat!("../", $dialect, "/views/v_budget_reallocation.sql")),
            ),
            (
                "v_tier_history",
                include_str!(concat!("../", $dialect, "/views/v_tier_history.sql")),
            ),
            (
                "v_utm_hygiene",
                include_str!(concat!("../", $dialect, "/views/v_utm_hygiene.sql")),
            ),
            (
                "v_attribution_compare",
                include_str!(concat!("../", $dialect, "/views/v_attribution_compare.sql")),
            ),
        ]
    };
}

/// BigQuery (GoogleSQL); `{{dataset}}` qualifies every name, as BigQuery views must.
pub mod bigquery {
    pub const MERGE: &str = include_str!("../bigquery/merge.sql");
    pub const COUNTS: &str = include_str!("../bigquery/counts.sql");
    pub const LOADED: &str = include_str!("../bigquery/loaded.sql");
    pub const ADD_COLUMN: &str = include_str!("../bigquery/add_column.sql");
    pub const BENCHMARKS_CREATE: &str = include_str!("../bigquery/benchmarks_create.sql");
    pub const BENCHMARKS_REPLACE: &str = include_str!("../bigquery/benchmarks_replace.sql");
    pub const BENCHMARKS_EVOLVE: &str = include_str!("../bigquery/benchmarks_evolve.sql");
    pub const ALERT_LOG_CREATE: &str = include_str!("../bigquery/alert_log_create.sql");
    pub const APPEND: &str = include_str!("../bigquery/append.sql");
    pub const UTM_HYGIENE_CREATE: &str = include_str!("../bigquery/utm_hygiene_create.sql");
    pub const UTM_HYGIENE_EVOLVE: &str = include_str!("../bigquery/utm_hygiene_evolve.sql");
    pub const ALERT_LOG_DELIVERED: &str = include_str!("../bigquery/alert_log_delivered.sql");
    pub const VIEWS: &[(&str, &str)] = views!("bigquery");
}

/// Snowflake; names resolve in the target's schema.
pub mod snowflake {
    pub const CREATE_TABLE: &str = include_str!("../snowflake/create_table.sql");
    pub const ADD_COLUMN: &str = include_str!("../snowflake/add_column.sql");
    pub const CREATE_STAGING: &str = include_str!("../snowflake/create_staging.sql");
    pub const MERGE: &str = include_str!("../snowflake/merge.sql");
    pub const REPLACE: &str = include_str!("../snowflake/replace.sql");
    pub const COUNTS: &str = include_str!("../snowflake/counts.sql");
    pub const LOADED: &str = include_str!("../snowflake/loaded.sql");
    pub const COPY: &str = include_str!("../snowflake/copy.sql");
    pub const BENCHMARKS_CREATE: &str = include_str!("../snowflake/benchmarks_create.sql");
    pub const BENCHMARKS_REPLACE: &str = include_str!("../snowflake/benchmarks_replace.sql");
    pub const BENCHMARKS_EVOLVE: &str = include_str!("../snowflake/benchmarks_evolve.sql");
    pub const ALERT_LOG_CREATE: &str = include_str!("../snowflake/alert_log_create.sql");
    pub const APPEND: &str = include_str!("../snowflake/append.sql");
    pub const UTM_HYGIENE_CREATE: &str = include_str!("../snowflake/utm_hygiene_create.sql");
    pub const UTM_HYGIENE_EVOLVE: &str = include_str!("../snowflake/utm_hygiene_evolve.sql");
    pub const ALERT_LOG_DELIVERED: &str = include_str!("../snowflake/alert_log_delivered.sql");
    pub const VIEWS: &[(&str, &str)] = views!("snowflake");
}

/// DataFusion, the lake's engine: the views over the lake's tables.
pub mod datafusion {
    pub const VIEWS: &[(&str, &str)] = views!("datafusion");
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_dialect_has_every_view_and_each_names_itself() {
        for views in [
            super::bigquery::VIEWS,
            super::snowflake::VIEWS,
            super::datafusion::VIEWS,
        ] {
            let names: Vec<&str> = views.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                names,
                [
                    "v_creator_daily",
                    "v_creator_performance",
                    "v_creator_tier",
                    "v_budget_reallocation",
                    "v_tier_history",
                    "v_utm_hygiene",
                    "v_attribution_compare"
                ]
            );
            for (name, sql) in views {
                assert!(sql.contains(name), "{name}'s SQL does not create {name}");
            }
        }
    }
}
