//! The platforms `crest run` drives, by their table in the config: one line
//! each. A connector describes itself in its `command::SOURCE`.

use crest_core::source::Source;

pub const SOURCES: &[Source] = &[
    crest_tiktok::command::SOURCE,
    crest_meta::command::SOURCE,
    crest_youtube::command::SOURCE,
    crest_ga4::command::SOURCE,
];
