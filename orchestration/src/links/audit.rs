//! `crest links audit`: over a transform run's paid rows, per creator ×
//! platform, the ads whose landing URL carries no UTMs, carries UTMs no
//! roster entry resolves, carries a link issued for another platform, or
//! (given the issued links) a link crest did not issue; the issued links no
//! ad carries yet; and the share of spend and clicks that cannot be credited
//! to a creator. The creator behind a row is the transform's own resolution
//! (UTMs, then the platform's handle), so the audit and the tiers agree.
//! With the roster, TikTok Spark Ads are also read from the run's raw input:
//! an ad running on one creator's identity whose link names another creator
//! credits the other with this one's post, so it is counted on the creator
//! whose ad it is (`other_creator`), the one whose link must be fixed.

use super::issue::PLATFORMS;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, Int64Type};
use crest_core::storage::read_file;
use crest_core::utm_hygiene::Row;
use crest_core::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub struct AuditOptions {
    /// A transform run (its manifest, or the output folder: its newest run).
    pub input: String,
    /// The CSV `crest links issue` wrote.
    pub issued: Option<String>,
    /// Rows as JSON (one array) instead of the table.
    pub json: bool,
    /// Where the audit's rows are appended (`utm_hygiene`, read by `v_utm_hygiene`).
    pub target: String,
    /// Print only; write nothing.
    pub dry_run: bool,
    /// A `crest-ga4 extract` output: the site's sessions of the run's dates
    /// are audited too, their creators resolved with `roster`.
    pub site: Option<String>,
    /// The creator roster: resolves the site's UTMs, and the creators behind
    /// Spark Ads identities (ads carrying another creator's link).
    pub roster: Option<String>,
}

/// The site's sessions of one campaign (`--site`): a creator × medium, or
/// UTMs that name no creator (by utm_source); with `--issued`, whether the
/// creator was issued a link for that medium, and issued links no session
/// came through (`sessions` 0).
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
struct SiteRow {
    creator_id: Option<String>,
    platform: Option<String>,
    utm_source: Option<String>,
    sessions: u64,
    issued: Option<bool>,
}

/// An ad as the audit groups it: platform, creator id and handle (as the
/// transform resolved them), `account/ad`.
type AdKey = (String, Option<String>, Option<String>, String);

/// One ad's verdict, from all of its rows.
#[derive(Default)]
struct Ad {
    utm: bool,
    resolved: bool,
    wrong_platform: bool,
    issued: bool,
    spend_micros: i128,
    clicks: i64,
}

pub async fn audit(options: AuditOptions) -> Result<()> {
    let issued = match &options.issued {
        Some(spec) => Some(read_issued(spec).await?),
        None => None,
    };
    let plan = crest_core::load::plan(&options.input).await?;
    let roster = match &options.roster {
        Some(spec) => Some(crest_transforms::Roster::parse(
            spec,
            &crate::read_required("--roster", spec).await?,
        )?),
        None => None,
    };
    // None: not looked for (no roster) or not readable (said below).
    let crossed = match &roster {
        Some(roster) => crossed_links(&plan, roster).await?,
        None => None,
    };
    let files: Vec<&crest_core::raw::RawFile> = plan
        .tables
        .iter()
        .filter(|t| t.table == "creator_performance")
        .flat_map(|t| t.dates.values().flatten())
        .collect();
    let mut ads: BTreeMap<AdKey, Ad> = BTreeMap::new();
    let mut missing_spend = 0u64;
    for f in files {
        for batch in crest_core::warehouse::file_batches(&plan.input, f, 8192).await? {
            missing_spend += read_rows(&batch?, issued.as_ref().map(|i| &i.links), &mut ads)?;
        }
    }
    let (report, crossed_ads) = summarise(ads, issued.as_ref(), crossed.as_ref());
    let site = match (&options.site, roster) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(Error::Config(
                "--site needs --roster: the site's UTMs are resolved to creators as crest attribute does".into(),
            ))
        }
        (Some(site), Some(roster)) => {
            let input = crest_core::storage::Location::parse_existing(site)?;
            let campaigns = crest_transforms::attribution::run::session_campaigns(&input, plan.range, roster).await?;
            Some(site_rows(campaigns, issued.as_ref()))
        }
    };
    if missing_spend > 0 {
        tracing::warn!(rows = missing_spend, "paid rows without a reporting-currency spend (no fx rate for their day) are left out of the spend figures; transform with --fx");
    }
    if options.json {
        let value = match &site {
            None => serde_json::to_value(&report),
            Some(site) => serde_json::to_value(serde_json::json!({ "ads": &report, "site": site })),
        };
        let text = value
            .and_then(|v| serde_json::to_string_pretty(&v))
            .map_err(|e| Error::Data(format!("cannot write the audit as JSON: {e}")))?;
        println!("{text}");
    } else {
        print(&report, plan.range, issued.is_some(), missing_spend);
        match (options.roster.is_some(), &crossed) {
            (false, _) => println!("(give --roster to also find Spark Ads carrying another creator's link)"),
            (true, None) => {
                println!(
                    "(Spark Ads identities not checked: the run's raw input cannot be read; other_creator is empty)"
                )
            }
            (true, Some(_)) => print_crossed(&crossed_ads),
        }
        if let Some(site) = &site {
            print_site(site);
        }
    }
    if !options.dry_run {
        // The target must exist (the run loaded into it): the audit sits beside its rows.
        let target = crate::targets::open(&options.target, true).await.map_err(|e| {
            e.context("the audit is printed; to keep it, give --target where the run was loaded (or --dry-run)")
        })?;
        let now = chrono::Utc::now();
        let audit_id = format!(
            "{}-{}",
            now.format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        let batch = crest_core::utm_hygiene::to_batch(&report, &audit_id, now.timestamp_micros(), &plan.run_id)?;
        target.append_utm_hygiene(&batch).await?;
        tracing::info!(audit_id, rows = report.len(), target = %target.describe(), "links audit written");
    }
    Ok(())
}

/// The issued links: (creator, platform) → their (source, medium, campaign).
struct Issued {
    links: HashSet<(String, String, String)>,
    by_creator: BTreeMap<(String, String), (String, usize)>,
}

async fn read_issued(spec: &str) -> Result<Issued> {
    let bytes = read_file(spec)
        .await?
        .ok_or_else(|| Error::Config(format!("--issued {spec} does not exist")))?;
    let mut reader = csv::Reader::from_reader(bytes.as_ref());
    let headers = reader
        .headers()
        .map_err(|e| Error::Config(format!("--issued {spec}: {e}")))?
        .clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            Error::Config(format!(
                "--issued {spec} has no column {name}: give the CSV `crest links issue` wrote"
            ))
        })
    };
    let (creator, handle, platform, source, medium, campaign) = (
        col("creator_id")?,
        col("handle")?,
        col("platform")?,
        col("utm_source")?,
        col("utm_medium")?,
        col("utm_campaign")?,
    );
    let mut issued = Issued {
        links: HashSet::new(),
        by_creator: BTreeMap::new(),
    };
    for (line, record) in reader.records().enumerate() {
        let r = record.map_err(|e| Error::Config(format!("--issued {spec} line {}: {e}", line + 2)))?;
        issued.links.insert((
            r[source].to_lowercase(),
            r[medium].to_lowercase(),
            r[campaign].to_lowercase(),
        ));
        issued
            .by_creator
            .entry((r[creator].to_string(), r[platform].to_lowercase()))
            .or_insert_with(|| (r[handle].to_string(), 0))
            .1 += 1;
    }
    Ok(issued)
}

/// Ads (platform, `account/ad`) that run on one creator's identity and carry
/// another creator's link, with the creator whose ad it is.
type Crossed = HashMap<(String, String), Owner>;

#[derive(Debug, Clone, PartialEq)]
struct Owner {
    creator_id: String,
    handle: String,
}

/// Reads the TikTok ads of the run's dates from its raw input (what the
/// extracts committed) and resolves both the landing URL's UTMs and the
/// Spark Ads identity with the roster: where both name a creator and they
/// differ, the ad is crossed. A raw input that is gone is said (`None`), not
/// fatal: the rest of the audit stands on the canonical rows.
async fn crossed_links(
    plan: &crest_core::load::LoadPlan,
    roster: &crest_transforms::Roster,
) -> Result<Option<Crossed>> {
    use crest_transforms::utm::{parse_url, Utm};
    let Some(raw) = plan.source.as_deref() else {
        tracing::warn!("the run names no raw input: Spark Ads identities are not checked");
        return Ok(None);
    };
    let raw = match crest_core::storage::Location::parse_existing(raw) {
        Ok(raw) => raw,
        // A relative path is the transform's working folder's; the usual
        // layout keeps raw/ beside the run's canonical/.
        Err(_) if !plan.input.list("raw/tiktok").await?.is_empty() => plan.input.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "the run's raw input cannot be read: Spark Ads identities are not checked");
            return Ok(None);
        }
    };
    let committed = crest_core::manifest::committed_raw_files(&raw).await?;
    // `raw/tiktok/`: every TikTok report; levels above the ad are skipped below.
    let prefix = crest_core::raw::raw_table("tiktok", "");
    let mut files: Vec<&String> = committed
        .files
        .iter()
        .filter(|f| f.starts_with(&prefix) && f.ends_with(".parquet"))
        .filter(|f| {
            f.split('/')
                .find_map(|seg| seg.strip_prefix("date="))
                .and_then(|d| d.parse::<chrono::NaiveDate>().ok())
                .is_some_and(|d| plan.range.contains(d))
        })
        .collect();
    files.sort();
    let mut crossed = Crossed::new();
    // A (link, identity) pair resolves the same on every row and day.
    let mut seen: HashMap<(String, String), Option<usize>> = HashMap::new();
    for rel in files {
        let Some(bytes) = raw.get(rel).await? else { continue };
        let what = format!("{raw}/{rel}");
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| Error::Data(format!("{what} is not readable Parquet: {e}")))?;
        let wanted = ["advertiser_id", "ad_id", "landing_page_url", "identity_id"];
        let fields = builder.parquet_schema().columns();
        let indices: Vec<usize> = wanted
            .iter()
            .filter_map(|w| fields.iter().position(|c| c.path().string() == *w))
            .collect();
        // Report levels above the ad carry no identity.
        if indices.len() < wanted.len() {
            continue;
        }
        let mask = parquet::arrow::ProjectionMask::leaves(builder.parquet_schema(), indices);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| Error::Data(format!("{what}: {e}")))?;
        for batch in reader {
            let b = batch.map_err(|e| Error::Data(format!("reading {what}: {e}")))?;
            let text = |n: &str| {
                b.column_by_name(n)
                    .and_then(|c| c.as_string_opt::<i32>())
                    .ok_or_else(|| Error::Data(format!("{what}: {n} is not text")))
            };
            let (account, ad, link, identity) = (
                text("advertiser_id")?,
                text("ad_id")?,
                text("landing_page_url")?,
                text("identity_id")?,
            );
            for i in 0..b.num_rows() {
                let (Some(ad), Some(link), Some(identity)) = (value(ad, i), value(link, i), value(identity, i)) else {
                    continue;
                };
                let owner = *seen.entry((link.to_string(), identity.to_string())).or_insert_with(|| {
                    let by_link = roster.resolve(&parse_url(link), None);
                    let by_identity = roster.resolve(&Utm::default(), Some(identity));
                    match (by_link, by_identity) {
                        (Some(l), Some(o)) if l != o => Some(o),
                        _ => None,
                    }
                });
                if let Some(o) = owner {
                    let c = &roster.creators()[o];
                    crossed.insert(
                        ("tiktok".to_string(), format!("{}/{ad}", account.value(i))),
                        Owner {
                            creator_id: c.creator_id.clone(),
                            handle: c.handle.clone(),
                        },
                    );
                }
            }
        }
    }
    Ok(Some(crossed))
}

/// Adds a batch's paid rows to their ads; returns how many paid rows have
/// no reporting-currency spend.
fn read_rows(
    b: &RecordBatch,
    issued: Option<&HashSet<(String, String, String)>>,
    ads: &mut BTreeMap<AdKey, Ad>,
) -> Result<u64> {
    let mut missing_spend = 0u64;
    let text = |name: &str| {
        b.column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| Error::Data(format!("creator_performance has no text column {name}")))
    };
    let (platform, channel, account, ad_id, content_id) = (
        text("platform")?,
        text("channel")?,
        text("account_id")?,
        text("ad_id")?,
        text("content_id")?,
    );
    let (creator, handle) = (text("creator_id")?, text("creator_handle")?);
    let utm: Vec<_> = ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"]
        .iter()
        .map(|c| text(c))
        .collect::<Result<_>>()?;
    let clicks = b
        .column_by_name("clicks")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| Error::Data("creator_performance has no clicks column".into()))?;
    let spend = b
        .column_by_name("spend_reporting")
        .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
        .ok_or_else(|| Error::Data("creator_performance has no spend_reporting column".into()))?;
    for i in 0..b.num_rows() {
        // Organic posts carry the creator's own links, not the brand's.
        if channel.value(i) != "paid" {
            continue;
        }
        let p = platform.value(i).to_string();
        let ad = format!(
            "{}/{}",
            account.value(i),
            value(ad_id, i).or(value(content_id, i)).unwrap_or_default()
        );
        let who = value(creator, i).map(str::to_string);
        let key = (p.clone(), who.clone(), value(handle, i).map(str::to_string), ad);
        let a = ads.entry(key).or_default();
        let carried: Vec<Option<&str>> = utm.iter().map(|c| value(c, i)).collect();
        a.utm |= carried.iter().any(Option::is_some);
        a.resolved |= who.is_some();
        if let Some(medium) = carried[1] {
            let medium = medium.to_lowercase();
            // A link names its platform: one made for another platform's ads
            // credits the right creator on the wrong platform.
            a.wrong_platform |= PLATFORMS.contains(&medium.as_str()) && medium != p;
        }
        // An issued link counts where it was issued for: another platform's
        // link is `wrong_platform`, and this platform's link stays unseen.
        if let (Some(issued), Some(s), Some(m), Some(c)) = (issued, carried[0], carried[1], carried[2]) {
            let m = m.to_lowercase();
            a.issued |= m == p && issued.contains(&(s.to_lowercase(), m.clone(), c.to_lowercase()));
        }
        if spend.is_null(i) {
            missing_spend += 1;
        } else {
            a.spend_micros += spend.value(i);
        }
        if !clicks.is_null(i) {
            a.clicks += clicks.value(i);
        }
    }
    Ok(missing_spend)
}

/// A text cell, empty as none.
fn value(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i)).filter(|v| !v.is_empty())
}

/// An ad carrying another creator's link: platform, `account/ad`, the
/// creator whose ad it is, the creator its link credits.
type CrossedAd = (String, String, Owner, Option<String>);

fn summarise(
    ads: BTreeMap<AdKey, Ad>,
    issued: Option<&Issued>,
    crossed: Option<&Crossed>,
) -> (Vec<Row>, Vec<CrossedAd>) {
    let mut out: BTreeMap<(Option<String>, String), Row> = BTreeMap::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    // Per ad once, even where its rows were credited to more than one creator.
    let mut owners: BTreeMap<(String, String), (Owner, Option<String>)> = BTreeMap::new();
    for ((platform, creator, handle, key), ad) in ads {
        if let Some(owner) = crossed.and_then(|c| c.get(&(platform.clone(), key.clone()))) {
            owners
                .entry((platform.clone(), key))
                .or_insert_with(|| (owner.clone(), creator.clone()));
        }
        let h = out.entry((creator.clone(), platform.clone())).or_insert_with(|| Row {
            creator_id: creator.clone(),
            creator_handle: handle.clone(),
            platform: platform.clone(),
            ..Row::default()
        });
        h.ads += 1;
        h.spend_micros += ad.spend_micros;
        h.clicks += ad.clicks;
        if !ad.utm {
            h.no_utm += 1;
        } else if !ad.resolved {
            h.unresolvable += 1;
        }
        // No creator at all (neither UTMs nor the platform's handle named one):
        // nobody can be credited with this ad's spend.
        if !ad.resolved {
            h.spend_unattributable_micros += ad.spend_micros;
            h.clicks_unattributable += ad.clicks;
        }
        if ad.wrong_platform {
            h.wrong_platform += 1;
        }
        if issued.is_some() && ad.utm && ad.resolved {
            if ad.issued {
                if let Some(c) = &creator {
                    seen.insert((c.clone(), platform.clone()));
                }
            } else {
                h.not_issued += 1;
            }
        }
    }
    // A crossed ad is the fix of the creator whose ad it is; its spend stays
    // where the transform (and so the tiers) credited it.
    let mut listed = Vec::new();
    for ((platform, key), (owner, credited)) in owners {
        let h = out
            .entry((Some(owner.creator_id.clone()), platform.clone()))
            .or_insert_with(|| Row {
                creator_id: Some(owner.creator_id.clone()),
                creator_handle: Some(owner.handle.clone()),
                platform: platform.clone(),
                ..Row::default()
            });
        *h.other_creator.get_or_insert(0) += 1;
        listed.push((platform, key, owner, credited));
    }
    if let Some(issued) = issued {
        for ((creator, platform), (handle, links)) in &issued.by_creator {
            if seen.contains(&(creator.clone(), platform.clone())) {
                continue;
            }
            let h = out
                .entry((Some(creator.clone()), platform.clone()))
                .or_insert_with(|| Row {
                    creator_id: Some(creator.clone()),
                    creator_handle: Some(handle.clone()),
                    platform: platform.clone(),
                    ..Row::default()
                });
            h.issued_unseen += links;
        }
    }
    // Looked for: a creator without such ads has none, not an unknown count.
    if crossed.is_some() {
        for h in out.values_mut() {
            h.other_creator.get_or_insert(0);
        }
    }
    (out.into_values().collect(), listed)
}

fn print_crossed(ads: &[CrossedAd]) {
    if ads.is_empty() {
        println!("no Spark Ad carries another creator's link");
        return;
    }
    println!("Spark Ads carrying another creator's link (fix the link: the other creator is credited with the post)");
    println!("{:<10} {:<40} {:<16} credited to", "platform", "account/ad", "ad of");
    for (platform, ad, owner, credited) in ads {
        println!(
            "{platform:<10} {ad:<40} {:<16} {}",
            owner.creator_id,
            credited.as_deref().unwrap_or("(none)")
        );
    }
}

fn site_rows(campaigns: crest_transforms::attribution::run::SessionCampaigns, issued: Option<&Issued>) -> Vec<SiteRow> {
    let mut rows: Vec<SiteRow> = campaigns
        .into_iter()
        .map(|((creator_id, platform, utm_source), sessions)| SiteRow {
            issued: issued.and_then(|i| {
                let c = creator_id.as_ref()?;
                Some(
                    i.by_creator
                        .contains_key(&(c.clone(), platform.clone().unwrap_or_default())),
                )
            }),
            creator_id,
            platform,
            utm_source,
            sessions,
        })
        .collect();
    if let Some(i) = issued {
        for (creator, platform) in i.by_creator.keys() {
            let seen = rows
                .iter()
                .any(|r| r.creator_id.as_ref() == Some(creator) && r.platform.as_ref() == Some(platform));
            if !seen {
                rows.push(SiteRow {
                    creator_id: Some(creator.clone()),
                    platform: Some(platform.clone()),
                    utm_source: None,
                    sessions: 0,
                    issued: Some(true),
                });
            }
        }
    }
    rows
}

fn print_site(rows: &[SiteRow]) {
    let total: u64 = rows.iter().map(|r| r.sessions).sum();
    let lost: u64 = rows.iter().filter(|r| r.creator_id.is_none()).map(|r| r.sessions).sum();
    let share = if total == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / total as f64
    };
    println!(
        "site · {total} sessions through a campaign link · {lost} ({share:.1} %) through links that name no creator"
    );
    let attention: Vec<&SiteRow> = rows
        .iter()
        .filter(|r| r.creator_id.is_none() || r.issued == Some(false) || r.sessions == 0)
        .collect();
    if attention.is_empty() {
        println!("clean: every site session from a campaign link names its creator");
        return;
    }
    println!(
        "{:<16} {:<10} {:<20} {:>9}  finding",
        "creator", "medium", "utm_source", "sessions"
    );
    for r in attention {
        let finding = match (&r.creator_id, r.issued, r.sessions) {
            (None, _, _) => "UTMs that name no creator",
            (_, _, 0) => "issued link never seen on the site",
            _ => "a link crest did not issue for this medium",
        };
        println!(
            "{:<16} {:<10} {:<20} {:>9}  {finding}",
            r.creator_id.as_deref().unwrap_or("(none)"),
            r.platform.as_deref().unwrap_or("(none)"),
            r.utm_source.as_deref().unwrap_or(""),
            r.sessions
        );
    }
}

fn print(report: &[Row], range: crest_core::window::DateRange, with_issued: bool, missing_spend: u64) {
    let money = |micros: i128| format!("{:.2}", micros as f64 / 1e6);
    let share = |part: i128, whole: i128| match whole {
        0 => "-".to_string(),
        w => format!("{:.1} %", part as f64 * 100.0 / w as f64),
    };
    let dirty: Vec<&Row> = report.iter().filter(|h| !h.clean()).collect();
    let spend: i128 = report.iter().map(|h| h.spend_micros).sum();
    let lost: i128 = report.iter().map(|h| h.spend_unattributable_micros).sum();
    let ads: usize = report.iter().map(|h| h.ads).sum();
    println!(
        "links audit · {range} · {ads} paid ads · {} of {} creator × platform pairs need attention · unattributable spend {} ({})",
        dirty.len(),
        report.len(),
        money(lost),
        share(lost, spend)
    );
    if missing_spend > 0 {
        println!("{missing_spend} paid rows have no reporting-currency spend (no fx rate) and are left out of spend");
    }
    if dirty.is_empty() {
        println!("clean: every paid ad carries a link that resolves to its creator");
        return;
    }
    let mut header = format!(
        "{:<16} {:<20} {:<8} {:>5} {:>7} {:>12} {:>14} {:>13}",
        "creator", "handle", "platform", "ads", "no_utm", "unresolvable", "wrong_platform", "other_creator"
    );
    if with_issued {
        header.push_str(&format!(" {:>10} {:>13}", "not_issued", "issued_unseen"));
    }
    header.push_str(&format!(" {:>14} {:>8}", "spend_lost", "clicks_lost"));
    println!("{header}");
    for h in dirty {
        let mut line = format!(
            "{:<16} {:<20} {:<8} {:>5} {:>7} {:>12} {:>14} {:>13}",
            h.creator_id.as_deref().unwrap_or("(none)"),
            h.creator_handle.as_deref().unwrap_or(""),
            h.platform,
            h.ads,
            h.no_utm,
            h.unresolvable,
            h.wrong_platform,
            h.other_creator.map_or("-".to_string(), |n| n.to_string())
        );
        if with_issued {
            line.push_str(&format!(" {:>10} {:>13}", h.not_issued, h.issued_unseen));
        }
        line.push_str(&format!(
            " {:>14} {:>8}",
            money(h.spend_unattributable_micros),
            h.clicks_unattributable
        ));
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(utm: bool, resolved: bool, wrong_platform: bool, issued: bool, spend_micros: i128) -> Ad {
        Ad {
            utm,
            resolved,
            wrong_platform,
            issued,
            spend_micros,
            clicks: 10,
        }
    }

    #[test]
    fn each_ad_counts_once_and_issued_links_are_matched_per_creator_and_platform() {
        let key = |p: &str, c: Option<&str>, ad: &str| {
            (p.to_string(), c.map(String::from), c.map(String::from), ad.to_string())
        };
        let mut ads = BTreeMap::new();
        ads.insert(
            key("tiktok", Some("cr_1"), "a1"),
            ad(true, true, false, true, 1_000_000),
        );
        ads.insert(
            key("tiktok", Some("cr_1"), "a2"),
            ad(false, true, false, false, 2_000_000),
        );
        ads.insert(key("meta", Some("cr_1"), "a3"), ad(true, true, true, false, 3_000_000));
        ads.insert(key("meta", None, "a4"), ad(true, false, false, false, 4_000_000));
        let mut issued = Issued {
            links: HashSet::new(),
            by_creator: BTreeMap::new(),
        };
        for (c, p) in [("cr_1", "tiktok"), ("cr_1", "meta"), ("cr_2", "tiktok")] {
            issued.by_creator.insert((c.into(), p.into()), (format!("@{c}"), 1));
        }
        let mut crossed = Crossed::new();
        crossed.insert(
            ("tiktok".to_string(), "a1".to_string()),
            Owner {
                creator_id: "cr_3".into(),
                handle: "@cr_3".into(),
            },
        );
        let (report, listed) = summarise(ads, Some(&issued), Some(&crossed));
        assert_eq!(listed.len(), 1);
        let get = |c: Option<&str>, p: &str| {
            report
                .iter()
                .find(|h| h.creator_id.as_deref() == c && h.platform == p)
                .unwrap()
                .clone()
        };
        let t = get(Some("cr_1"), "tiktok");
        assert_eq!((t.ads, t.no_utm, t.not_issued, t.issued_unseen), (2, 1, 0, 0));
        // Its creator came from the platform's handle: a hygiene problem, yet creditable.
        assert_eq!(t.spend_unattributable_micros, 0);
        let m = get(Some("cr_1"), "meta");
        assert_eq!((m.wrong_platform, m.not_issued, m.issued_unseen), (1, 1, 1));
        let none = get(None, "meta");
        assert_eq!((none.unresolvable, none.spend_unattributable_micros), (1, 4_000_000));
        // The crossed ad is cr_3's to fix; its spend stays with cr_1, whose link it carries.
        let owner = get(Some("cr_3"), "tiktok");
        assert_eq!((owner.ads, owner.other_creator, owner.spend_micros), (0, Some(1), 0));
        assert!(!owner.clean());
        assert_eq!((t.other_creator, t.spend_micros), (Some(0), 3_000_000));
        let unseen = get(Some("cr_2"), "tiktok");
        assert_eq!((unseen.ads, unseen.issued_unseen), (0, 1));
        assert!(!unseen.clean() && !t.clean());
    }
}
