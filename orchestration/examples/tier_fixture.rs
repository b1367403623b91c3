//! Writes a synthetic transform run for the tier benchmark
//! (`scripts/bench-tiers.sh`): CREATORS creators on TikTok, Meta and YouTube,
//! DAYS days of hourly paid rows each, with a spread of CTRs, CPCs and
//! conversions so every tier occurs. Output: canonical Parquet by date and a
//! transform manifest, as `crest transform` writes them, ready for `crest load`.
//!
//!   cargo run --release --example tier_fixture -- OUT [CREATORS] [DAYS]

use arrow::array::{
    new_null_array, ArrayRef, Date32Array, Decimal128Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Date32Type;
use chrono::{Days, NaiveDate};
use parquet::arrow::ArrowWriter;
use sha2::{Digest, Sha256};
use std::sync::Arc;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).ok_or("usage: tier_fixture OUT [CREATORS] [DAYS]")?);
    let creators: u64 = args.get(2).map_or(Ok(500), |s| s.parse())?;
    let days: u64 = args.get(3).map_or(Ok(90), |s| s.parse())?;
    let first = NaiveDate::from_ymd_opt(2026, 1, 1).ok_or("date")?;
    let last = first + Days::new(days - 1);
    let schema = crest_transforms::canonical::schema();
    let run_id = "20260401T000000Z-b3c4d5e6";
    let platforms = ["tiktok", "meta", "youtube"];
    let tiers = ["nano", "micro", "mid", "macro"];
    let mut files = Vec::new();
    let mut total = 0u64;
    for d in 0..days {
        let date = first + Days::new(d);
        let n = (creators as usize) * platforms.len() * 24;
        let (mut platform, mut creator, mut handle, mut tier, mut disclosure, mut ad) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut hour, mut impressions, mut clicks, mut spend, mut conversions) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for c in 0..creators {
            // Each creator has a character: its CTR and CPC relative to the benchmark.
            let r = mix(c);
            let ctr_per_mille = 6 + r % 14; // 0.6 %–2.0 %
            for (p, name) in platforms.iter().enumerate() {
                for h in 0..24i32 {
                    let x = mix(r ^ (d << 8) ^ ((p as u64) << 40) ^ h as u64);
                    let imps = 200 + x % 600;
                    let cl = imps * ctr_per_mille / 1000;
                    platform.push(*name);
                    creator.push(format!("cr_{c:04}"));
                    handle.push(format!("creator{c:04}"));
                    tier.push(tiers[(r >> 8) as usize % 4]);
                    disclosure.push(if r.is_multiple_of(9) { "pending" } else { "disclosed" });
                    ad.push(format!("ad_{c}_{p}"));
                    hour.push(Some(h));
                    impressions.push(Some(imps as i64));
                    clicks.push(Some(cl as i64));
                    // Cents per click 40–140, as micros.
                    spend.push(Some((cl * (40 + (r >> 16) % 100) * 10_000) as i128));
                    conversions.push(Some(if (r >> 24).is_multiple_of(5) {
                        0
                    } else {
                        ((x >> 20) % 3) as i128 * 1_000_000
                    }));
                }
            }
        }
        let strings = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        let owned = |v: &[String]| -> ArrayRef { Arc::new(StringArray::from_iter_values(v.iter())) };
        let dec = |v: &[Option<i128>]| -> Result<ArrayRef, arrow::error::ArrowError> {
            Ok(Arc::new(
                Decimal128Array::from(v.to_vec()).with_precision_and_scale(38, 6)?,
            ))
        };
        let mut columns: Vec<ArrayRef> = Vec::new();
        for field in schema.fields() {
            columns.push(match field.name().as_str() {
                "date" => Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(date); n])),
                "hour" => Arc::new(Int32Array::from(hour.clone())),
                "platform" => strings(&platform),
                "channel" => strings(&vec!["paid"; n]),
                "account_id" => strings(
                    &platform
                        .iter()
                        .map(|p| {
                            if *p == "tiktok" {
                                "acct_tiktok"
                            } else if *p == "meta" {
                                "acct_meta"
                            } else {
                                "acct_youtube"
                            }
                        })
                        .collect::<Vec<_>>(),
                ),
                "campaign_id" | "campaign_name" => strings(&vec!["spring_launch"; n]),
                "ad_id" => owned(&ad),
                "creator_id" => owned(&creator),
                "creator_handle" => owned(&handle),
                "creator_tier" => strings(&tier),
                "disclosure_status" => strings(&disclosure),
                "currency" => strings(&vec!["USD"; n]),
                "impressions" => Arc::new(arrow::array::Int64Array::from(impressions.clone())),
                "clicks" => Arc::new(arrow::array::Int64Array::from(clicks.clone())),
                "spend" | "spend_reporting" => dec(&spend)?,
                "conversions" => dec(&conversions)?,
                "attribution_basis" => strings(&vec!["native"; n]),
                "extracted_at" => {
                    Arc::new(TimestampMicrosecondArray::from(vec![1_775_000_000_000_000; n]).with_timezone("UTC"))
                }
                "run_id" => strings(&vec![run_id; n]),
                "schema_version" => Arc::new(Int32Array::from(vec![1; n])),
                _ => new_null_array(field.data_type(), n),
            });
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let rel = format!("canonical/creator_performance/date={date}/{run_id}-0.parquet");
        let path = out.join(&rel);
        std::fs::create_dir_all(path.parent().ok_or("path")?)?;
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), None)?;
        w.write(&batch)?;
        w.close()?;
        std::fs::write(&path, &buf)?;
        files.push(serde_json::json!({"path": rel, "date": date, "rows": n, "bytes": buf.len(), "sha256": hex::encode(Sha256::digest(&buf))}));
        total += n as u64;
    }
    let pairs: serde_json::Map<String, serde_json::Value> = (0..days)
        .map(|d| {
            (
                (first + Days::new(d)).to_string(),
                serde_json::json!(["meta/acct_meta", "tiktok/acct_tiktok", "youtube/acct_youtube"]),
            )
        })
        .collect();
    let manifest = serde_json::json!({
        "run_id": run_id, "stage": "transform", "status": "succeeded",
        "inputs": {"range": {"start": first, "end": last}},
        "files": files, "pairs": pairs, "finished_at": "2026-04-01T00:00:00Z",
    });
    std::fs::create_dir_all(out.join("_runs"))?;
    std::fs::write(
        out.join(format!("_runs/{run_id}.json")),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    println!(
        "{total} canonical rows ({creators} creators × 3 platforms × {days} days × 24 hours) in {}",
        out.display()
    );
    Ok(())
}
