//! The creator roster (`--roster`, CSV or Parquet): who each creator is, the
//! handles and UTM values that point at them, and their tier.
//!
//! Columns: `creator_id`, `handle` (required); `tiktok_handle`,
//! `instagram_handle`, `youtube_channel_id`, `followers`, `creator_tier`,
//! `disclosure_status`, `utm_aliases` (`|`- or `;`-separated) optional.

use crate::utm::{normalize_handle, Utm};
use crate::TransformError;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creator {
    pub creator_id: String,
    pub handle: String,
    pub tier: Option<String>,
    pub disclosure_status: Option<String>,
}

#[derive(Debug, Default)]
pub struct Roster {
    creators: Vec<Creator>,
    by_key: HashMap<String, usize>,
}

pub const TIERS: &[&str] = &["nano", "micro", "mid", "macro"];

/// nano 1K–10K followers, micro 10K–100K, mid 100K–500K, macro above
/// (below 1K counts as nano: the smallest tier a program runs).
pub fn tier_for_followers(followers: u64) -> &'static str {
    match followers {
        0..=9_999 => "nano",
        10_000..=99_999 => "micro",
        100_000..=499_999 => "mid",
        _ => "macro",
    }
}

#[derive(Debug, Default)]
struct Row {
    creator_id: String,
    handle: String,
    keys: Vec<String>,
    followers: Option<u64>,
    tier: Option<String>,
    disclosure_status: Option<String>,
}

impl Roster {
    pub fn empty() -> Self {
        Roster::default()
    }

    pub fn len(&self) -> usize {
        self.creators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.creators.is_empty()
    }

    pub fn creators(&self) -> &[Creator] {
        &self.creators
    }

    /// Reads a roster from bytes; `name` decides the format (`.parquet` or CSV).
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, TransformError> {
        let rows = if name.to_ascii_lowercase().ends_with(".parquet") {
            parquet_rows(name, bytes)?
        } else {
            csv_rows(name, bytes)?
        };
        Self::from_rows(name, rows)
    }

    fn from_rows(name: &str, rows: Vec<Row>) -> Result<Self, TransformError> {
        let bad = |m: String| TransformError::Input(format!("roster {name}: {m}"));
        if rows.is_empty() {
            return Err(bad("has no creators".into()));
        }
        let mut roster = Roster::default();
        for (i, row) in rows.into_iter().enumerate() {
            let line = i + 2;
            if row.creator_id.trim().is_empty() || row.handle.trim().is_empty() {
                return Err(bad(format!("row {line} needs a creator_id and a handle")));
            }
            let tier = match row.tier.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                Some(t) => {
                    let t = t.to_lowercase();
                    if !TIERS.contains(&t.as_str()) {
                        return Err(bad(format!(
                            "row {line}: creator_tier '{t}' is not one of nano, micro, mid, macro"
                        )));
                    }
                    Some(t)
                }
                None => row.followers.map(|f| tier_for_followers(f).to_string()),
            };
            let idx = roster.creators.len();
            let mut keys = vec![row.creator_id.clone(), row.handle.clone()];
            keys.extend(row.keys);
            for key in keys.iter().map(|k| normalize_handle(k)).filter(|k| !k.is_empty()) {
                if let Some(&other) = roster.by_key.get(&key) {
                    if other != idx {
                        return Err(bad(format!(
                            "'{key}' names both {} and {} (row {line}); each handle or alias must name one creator",
                            roster.creators[other].creator_id, row.creator_id
                        )));
                    }
                }
                roster.by_key.insert(key, idx);
            }
            roster.creators.push(Creator {
                creator_id: row.creator_id.trim().to_string(),
                handle: row.handle.trim().trim_start_matches('@').to_string(),
                tier,
                disclosure_status: row
                    .disclosure_status
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty()),
            });
        }
        Ok(roster)
    }

    /// The creator behind a row: its `utm_content`, then `utm_source`, then
    /// `utm_term`, then the platform handle (e.g. a TikTok Spark Ads identity).
    pub fn resolve(&self, utm: &Utm, platform_handle: Option<&str>) -> Option<usize> {
        [
            utm.content.as_deref(),
            utm.source.as_deref(),
            utm.term.as_deref(),
            platform_handle,
        ]
        .into_iter()
        .flatten()
        .find_map(|v| self.by_key.get(&normalize_handle(v)).copied())
    }
}

fn csv_rows(name: &str, bytes: &[u8]) -> Result<Vec<Row>, TransformError> {
    let bad = |m: String| TransformError::Input(format!("roster {name}: {m}"));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| bad(format!("cannot read the header line: {e}")))?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (Some(id_col), Some(handle_col)) = (col("creator_id"), col("handle")) else {
        return Err(bad("needs the columns creator_id and handle".into()));
    };
    let optional = |n: &str| col(n);
    let key_cols: Vec<usize> = ["tiktok_handle", "instagram_handle", "youtube_channel_id"]
        .iter()
        .filter_map(|n| optional(n))
        .collect();
    let (followers_col, tier_col, disclosure_col, alias_col) = (
        optional("followers"),
        optional("creator_tier"),
        optional("disclosure_status"),
        optional("utm_aliases"),
    );
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
        let get = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let followers = match get(followers_col) {
            None => None,
            Some(f) => Some(
                f.replace([',', '_'], "")
                    .parse::<u64>()
                    .map_err(|_| bad(format!("line {}: followers '{f}' is not a whole number", i + 2)))?,
            ),
        };
        let mut keys: Vec<String> = key_cols.iter().filter_map(|c| get(Some(*c))).collect();
        if let Some(aliases) = get(alias_col) {
            keys.extend(aliases.split(['|', ';']).map(str::to_string));
        }
        rows.push(Row {
            creator_id: get(Some(id_col)).unwrap_or_default(),
            handle: get(Some(handle_col)).unwrap_or_default(),
            keys,
            followers,
            tier: get(tier_col),
            disclosure_status: get(disclosure_col),
        });
    }
    Ok(rows)
}

fn parquet_rows(name: &str, bytes: &[u8]) -> Result<Vec<Row>, TransformError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |m: String| TransformError::Input(format!("roster {name}: {m}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .and_then(|b| b.build())
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let text = |b: &RecordBatch, n: &str, i: usize| -> Result<Option<String>, TransformError> {
            let Some(c) = b.column_by_name(n) else { return Ok(None) };
            let c = arrow::compute::cast(c, &DataType::Utf8).map_err(|e| bad(format!("column {n}: {e}")))?;
            let s = c.as_string::<i32>();
            Ok(s.is_valid(i).then(|| s.value(i).to_string()).filter(|v| !v.is_empty()))
        };
        if batch.column_by_name("creator_id").is_none() || batch.column_by_name("handle").is_none() {
            return Err(bad("needs the columns creator_id and handle".into()));
        }
        for i in 0..batch.num_rows() {
            let followers = match text(&batch, "followers", i)? {
                None => None,
                Some(f) => Some(
                    f.parse::<u64>()
                        .map_err(|_| bad(format!("followers '{f}' is not a whole number")))?,
                ),
            };
            let mut keys = Vec::new();
            for n in ["tiktok_handle", "instagram_handle", "youtube_channel_id"] {
                keys.extend(text(&batch, n, i)?);
            }
            if let Some(a) = text(&batch, "utm_aliases", i)? {
                keys.extend(a.split(['|', ';']).map(str::to_string));
            }
            rows.push(Row {
                creator_id: text(&batch, "creator_id", i)?.unwrap_or_default(),
                handle: text(&batch, "handle", i)?.unwrap_or_default(),
                keys,
                followers,
                tier: text(&batch, "creator_tier", i)?,
                disclosure_status: text(&batch, "disclosure_status", i)?,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::utm::parse_url;

    const CSV: &str = "creator_id,handle,tiktok_handle,followers,creator_tier,disclosure_status,utm_aliases\n\
        cr_1,maya.makes,maya_tt,4200,,disclosed,spring_maya|maya26\n\
        cr_2,@Leo.Lifts,,250000,,pending,\n\
        cr_3,zoe,,,micro,,\n";

    #[test]
    fn resolves_by_utm_alias_and_platform_handle_with_tiers() {
        let r = Roster::parse("roster.csv", CSV.as_bytes()).unwrap();
        assert_eq!(r.len(), 3);
        let maya = r
            .resolve(&parse_url("https://x.com/?utm_content=%40Maya.Makes"), None)
            .unwrap();
        assert_eq!(r.creators()[maya].creator_id, "cr_1");
        assert_eq!(r.creators()[maya].tier.as_deref(), Some("nano"));
        assert_eq!(
            r.resolve(&parse_url("https://x.com/?utm_source=MAYA26"), None),
            Some(maya)
        );
        assert_eq!(
            r.resolve(&parse_url("https://x.com/?utm_source=tiktok"), Some("maya_tt")),
            Some(maya)
        );
        let leo = r
            .resolve(&parse_url("https://x.com/?utm_content=leo.lifts"), None)
            .unwrap();
        assert_eq!(r.creators()[leo].tier.as_deref(), Some("mid"));
        assert_eq!(r.creators()[leo].handle, "Leo.Lifts");
        assert_eq!(
            r.resolve(&parse_url("https://x.com/?utm_content=nobody"), Some("brand")),
            None
        );
    }

    #[test]
    fn malformed_rosters_are_clear_errors() {
        for (csv, says) in [
            ("id,name\n1,a\n", "creator_id and handle"),
            ("creator_id,handle,followers\ncr_1,a,lots\n", "followers"),
            ("creator_id,handle,creator_tier\ncr_1,a,giant\n", "creator_tier"),
            ("creator_id,handle\ncr_1,a\ncr_2,A\n", "names both"),
            ("creator_id,handle\n", "no creators"),
            ("creator_id,handle\ncr_1,a,extra\n", "line 2"),
        ] {
            let e = Roster::parse("r.csv", csv.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{csv:?} → {e}");
        }
    }

    #[test]
    fn tiers_follow_the_follower_bands() {
        assert_eq!(tier_for_followers(1_000), "nano");
        assert_eq!(tier_for_followers(10_000), "micro");
        assert_eq!(tier_for_followers(100_000), "mid");
        assert_eq!(tier_for_followers(500_000), "macro");
    }
}
