//! `crest lake history | optimize | vacuum`: the tables' commit logs,
//! compaction of the small files hourly runs leave, and removal of files no
//! version needs any more.

use crate::delta::{commit_record, delta_err, COMMIT_KEY};
use crate::Lake;
use crest_core::{Error, Result};
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;

/// One commit of one table.
#[derive(Debug, Clone)]
pub struct Commit {
    pub table: String,
    pub version: i64,
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    pub operation: String,
    /// The crest load that made it, if one did.
    pub load_id: Option<String>,
    pub run_id: Option<String>,
    /// Rows the load put in (inserted + replaced) and the rows it replaced.
    pub rows_in: Option<u64>,
    pub rows_replaced: Option<u64>,
}

/// What `optimize` did to one table.
#[derive(Debug, Clone)]
pub struct Compaction {
    pub table: String,
    pub files_removed: u64,
    pub files_added: u64,
    pub partitions: u64,
}

/// What `vacuum` removed (or would) from one table.
#[derive(Debug, Clone)]
pub struct Vacuumed {
    pub table: String,
    pub files: Vec<String>,
}

/// The default retention of `crest lake vacuum`: Delta's own default and the
/// least its safety check allows.
pub const DEFAULT_RETENTION_HOURS: u64 = 7 * 24;

impl Lake {
    /// Each table's commits, newest first (`limit` per table).
    pub async fn history(&self, tables: &[&str], limit: Option<usize>) -> Result<Vec<Commit>> {
        let mut out = Vec::new();
        for table in tables {
            let Some(t) = self.open_table(table, None).await? else {
                continue;
            };
            // Each version from its own log file, newest first, down to the
            // oldest the log still holds.
            let latest = t.version().unwrap_or(0);
            let oldest = limit.map_or(0, |n| (latest - n as i64 + 1).max(0));
            for version in (oldest..=latest).rev() {
                let Some(bytes) = self.loc.get(&format!("{table}/_delta_log/{version:020}.json")).await? else {
                    break;
                };
                let info: serde_json::Value = String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find_map(|v| v.get("commitInfo").cloned())
                    .unwrap_or_default();
                let record = commit_record(info.get(COMMIT_KEY));
                out.push(Commit {
                    table: table.to_string(),
                    version,
                    at: info
                        .get("timestamp")
                        .and_then(serde_json::Value::as_i64)
                        .and_then(chrono::DateTime::from_timestamp_millis),
                    operation: info
                        .get("operation")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    load_id: record.as_ref().map(|r| r.load_id.clone()),
                    run_id: record.as_ref().map(|r| r.run_id.clone()),
                    rows_in: record.as_ref().map(|r| r.table.inserted + r.table.replaced),
                    rows_replaced: record.as_ref().map(|r| r.table.replaced_old),
                });
            }
        }
        Ok(out)
    }

    /// Compacts each table's small files into larger ones (a commit that
    /// changes no row; readers see the table before or after).
    pub async fn optimize(&self, tables: &[&str]) -> Result<Vec<Compaction>> {
        let mut out = Vec::new();
        for table in tables {
            let Some(t) = self.open_table(table, None).await? else {
                continue;
            };
            let (_, metrics) = t
                .optimize()
                .with_type(OptimizeType::Compact)
                .await
                .map_err(|e| delta_err(&format!("cannot optimize {}/{table}", self.loc), e))?;
            out.push(Compaction {
                table: table.to_string(),
                files_removed: metrics.num_files_removed,
                files_added: metrics.num_files_added,
                partitions: metrics.partitions_optimized,
            });
        }
        Ok(out)
    }

    /// Removes the files no version within `retention_hours` reads: files
    /// replaced by loads and compaction, and any a killed load left. Delta's
    /// safety check refuses a retention below the table's
    /// `delta.deletedFileRetentionDuration` (7 days by default).
    pub async fn vacuum(&self, tables: &[&str], retention_hours: u64, dry_run: bool) -> Result<Vec<Vacuumed>> {
        let hours = i64::try_from(retention_hours)
            .map_err(|_| Error::Config(format!("--retention-hours {retention_hours} is too large")))?;
        let mut out = Vec::new();
        for table in tables {
            let Some(t) = self.open_table(table, None).await? else {
                continue;
            };
            let vacuumed = t
                .vacuum()
                .with_retention_period(chrono::Duration::hours(hours))
                .with_enforce_retention_duration(true)
                .with_mode(VacuumMode::Full)
                .with_dry_run(dry_run)
                .await;
            let (_, metrics) = match vacuumed {
                Ok(v) => v,
                Err(e) if e.to_string().to_lowercase().contains("retention") => {
                    return Err(Error::Config(crest_core::error::one_line(&format!(
                        "--retention-hours {retention_hours}: {e}; a shorter retention could remove files a reader still uses"
                    ))))
                }
                Err(e) => return Err(delta_err(&format!("cannot vacuum {}/{table}", self.loc), e)),
            };
            out.push(Vacuumed {
                table: table.to_string(),
                files: metrics.files_deleted,
            });
        }
        Ok(out)
    }
}
