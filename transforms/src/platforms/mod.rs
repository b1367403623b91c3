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
use ahash::HashMap;
use arrow::array::{RecordBatch, UInt32Array};
use chrono::NaiveDate;
use std::collections::BTreeSet;

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
    /// Every resolution so far, indexed by landing URL, then platform handle.
    resolved: Vec<Resolved>,
    index: HashMap<Box<str>, Vec<(Box<str>, u32)>>,
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
    pub fn resolve(&mut self, landing_url: Option<&str>, handle: Option<&str>) -> u32 {
        let (url, h) = (landing_url.unwrap_or(""), handle.unwrap_or(""));
        if let Some(found) = self.index.get(url).and_then(|hs| hs.iter().find(|(k, _)| &**k == h)) {
            return found.1;
        }
        let utm = landing_url.map(crate::utm::parse_url).unwrap_or_default();
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
        self.index.entry(url.into()).or_default().push((h.into(), idx));
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

    pub fn resolution(&self, idx: u32) -> &Resolved {
        &self.resolved[idx as usize]
    }
}
