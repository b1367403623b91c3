//! Field maps from each connector's raw output into the canonical columns.
//! A platform is its raw table names, the raw schema versions it reads, a map
//! from a raw batch to canonical rows (plus the attribution windows as
//! served), and the raw totals reconciliation checks against.

pub mod tiktok;

use crate::fx::FxRates;
use crate::quality::Totals;
use crate::roster::Roster;
use crate::utm::Utm;
use crate::{Granularity, Result, StandardWindow, TransformConfig, TransformError};
use arrow::array::{RecordBatch, UInt32Array};
use chrono::NaiveDate;
use std::collections::{BTreeSet, HashMap};

pub struct Platform {
    pub name: &'static str,
    daily_report: &'static str,
    hourly_report: &'static str,
    /// `crest.schema` tags of raw files this crest reads.
    pub schema_tags: &'static [&'static str],
    pub map: fn(&mut Mapper<'_>, &RecordBatch) -> Result<Mapped>,
    pub raw_totals: fn(&RecordBatch) -> Result<Totals>,
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

/// Every platform crest transforms. Meta and YouTube join as their connectors land.
pub fn all() -> Vec<&'static Platform> {
    vec![&tiktok::PLATFORM]
}

/// Fails on a raw file whose schema this crest does not know.
pub fn check_schema(rel: &str, tag: &str) -> Result<()> {
    let platform = rel.split('/').nth(1).unwrap_or_default();
    let known = all().into_iter().find(|p| p.name == platform);
    match known {
        Some(p) if p.schema_tags.contains(&tag) => Ok(()),
        Some(p) => Err(TransformError::Input(format!(
            "{rel} has raw schema '{tag}', which this crest does not read (it reads {}); upgrade crest or re-extract",
            p.schema_tags.join(", ")
        ))),
        None => Err(TransformError::Input(format!("{rel}: unknown platform '{platform}'"))),
    }
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

/// What mapping shares across batches: configuration, caches, and what the
/// summary reports (unresolved creators, missing fx rates).
pub struct Mapper<'a> {
    pub run_id: &'a str,
    pub roster: &'a Roster,
    pub fx: &'a FxRates,
    pub standard: StandardWindow,
    resolved: HashMap<(String, String), Resolved>,
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
            resolved: HashMap::new(),
            unresolved_rows: 0,
            unresolved: BTreeSet::new(),
            missing_fx: BTreeSet::new(),
        }
    }

    /// The UTMs and creator behind a landing URL and platform handle.
    pub fn resolve(&mut self, landing_url: Option<&str>, handle: Option<&str>) -> &Resolved {
        let key = (landing_url.unwrap_or("").to_string(), handle.unwrap_or("").to_string());
        let roster = self.roster;
        let unresolved = &mut self.unresolved;
        self.resolved.entry(key).or_insert_with(|| {
            let utm = landing_url.map(crate::utm::parse_url).unwrap_or_default();
            let creator = roster.resolve(&utm, handle);
            if creator.is_none() && unresolved.len() < 50 {
                let what = utm
                    .content
                    .clone()
                    .or(utm.source.clone())
                    .or(handle.map(str::to_string));
                unresolved.insert(what.unwrap_or_else(|| "(no UTM, no handle)".into()));
            }
            Resolved { utm, creator }
        })
    }
}
