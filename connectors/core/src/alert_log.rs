//! `alert_log`: one row per evaluation × creator × platform, appended by
//! `crest alerts`. An evaluation's rows are written before anything is sent,
//! with `delivered_at` empty, and marked delivered only once every channel
//! took the message; the next evaluation compares with the last delivered
//! one, so changes of an undelivered evaluation are sent again, never lost.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

pub const TABLE: &str = "alert_log";

pub fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("evaluation_id", DataType::Utf8, false),
        Field::new("evaluated_at", ts(), false),
        Field::new("platform", DataType::Utf8, false),
        Field::new("creator_id", DataType::Utf8, false),
        Field::new("creator_handle", DataType::Utf8, true),
        Field::new("tier", DataType::Utf8, true),
        Field::new("previous_tier", DataType::Utf8, true),
        Field::new("change", DataType::Utf8, true),
        Field::new("tier_reason", DataType::Utf8, true),
        Field::new("compliance_flag", DataType::Boolean, false),
        Field::new("ctr", DataType::Float64, true),
        Field::new("cpc", DataType::Float64, true),
        Field::new("conversions", DataType::Float64, true),
        Field::new("delivered_at", ts(), true),
    ]))
}

/// The columns in order, for INSERT statements.
pub fn columns() -> Vec<String> {
    schema().fields().iter().map(|f| f.name().clone()).collect()
}
