//! `crest links issue` as a brand's onboarding runs it: a roster in, one
//! link per creator × platform out, every link resolving back to its creator
//! through the transform's own resolver; bad inputs refused in one line with
//! nothing written.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use crest_sandbox::world::{World, WorldConfig};
use crest_transforms::utm::parse_url;
use crest_transforms::Roster;

fn roster(dir: &std::path::Path, creators: usize) -> (String, Roster) {
    let csv = World::new(WorldConfig {
        creators,
        ..WorldConfig::default()
    })
    .roster_csv();
    let path = dir.join("roster.csv");
    std::fs::write(&path, &csv).unwrap();
    (
        path.display().to_string(),
        Roster::parse("roster.csv", csv.as_bytes()).unwrap(),
    )
}

/// Sandbox TikTok data from 2026-01-01 to `end` transformed with the sandbox's
/// roster: (sandbox, folder, transform output, roster file).
/// Its world has trafficking slips: some Spark Ads carry another creator's link.
async fn transformed(end: &str) -> (crest_sandbox::Sandbox, tempfile::TempDir, String, String) {
    let sb = crest_sandbox::Sandbox::start(crest_sandbox::SandboxConfig {
        world: WorldConfig {
            first_day: day("2026-01-01"),
            days: 40,
            creators: 40,
            crossed_links: true,
            ..WorldConfig::default()
        },
        ..crest_sandbox::SandboxConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-01", end).await;
    let roster_file = dir.path().join("roster.csv");
    std::fs::write(&roster_file, sb.world().roster_csv()).unwrap();
    let (out_s, roster_s) = (out.display().to_string(), roster_file.display().to_string());
    let o = crest(&[
        "transform",
        "--input",
        &out_s,
        "--start",
        "2026-01-01",
        "--end",
        end,
        "--roster",
        &roster_s,
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    (sb, dir, out_s, roster_s)
}

fn error_lines(o: &std::process::Output) -> usize {
    stderr(o).lines().filter(|l| l.starts_with("error:")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_creator_gets_a_link_per_platform_that_resolves_back_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, roster) = roster(dir.path(), 40);
    let out = dir.path().join("links.csv");
    let o = crest(&[
        "links",
        "issue",
        "--roster",
        &spec,
        "--campaign",
        "Spring Drop 26",
        "--base-url",
        "https://shop.example.com/p/42?ref=creators#reviews",
        "--content",
        "Reel",
        "--out",
        &out.display().to_string(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..3], ["long_url", "title", "creator_id"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), roster.len() * 3);
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        let (long_url, creator_id, platform) = (&r[0], &r[2], &r[4]);
        assert!(seen.insert(long_url.to_string()), "duplicate link {long_url}");
        let url = url::Url::parse(long_url).unwrap();
        assert_eq!(url.path(), "/p/42");
        assert_eq!(url.fragment(), Some("reviews"));
        assert!(url.query().unwrap().starts_with("ref=creators&"), "{long_url}");
        let utm = parse_url(long_url);
        assert_eq!(utm.medium.as_deref(), Some(platform));
        assert_eq!(utm.campaign.as_deref(), Some("spring drop 26"));
        assert_eq!(utm.content.as_deref(), Some("reel"));
        assert_eq!(utm.term, None);
        let who = roster
            .resolve(&utm, None)
            .expect("the transform resolves every issued link");
        assert_eq!(roster.creators()[who].creator_id, creator_id);
    }

    // Printed instead, for one platform.
    let o = crest(&[
        "links",
        "issue",
        "--roster",
        &spec,
        "--campaign",
        "spring26",
        "--base-url",
        "https://shop.example.com/",
        "--platforms",
        "tiktok",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8(o.stdout).unwrap();
    assert_eq!(printed.lines().count(), roster.len() + 1);
    assert!(printed.lines().skip(1).all(|l| l.contains("utm_medium=tiktok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bases_rosters_and_platforms_are_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, _) = roster(dir.path(), 5);
    let no_handles = dir.path().join("no-handles.csv");
    std::fs::write(&no_handles, "creator_id,followers\ncr_1,100\n").unwrap();
    let no_handles = no_handles.display().to_string();
    let out = dir.path().join("links.csv");
    let out_s = out.display().to_string();
    let cases: [(&str, &str, &str, &str); 6] = [
        (spec.as_str(), "ftp://shop.example.com/", "", "http:// or https://"),
        (spec.as_str(), "shop.example.com/spring", "", "is not a URL"),
        (
            spec.as_str(),
            "https://shop.example.com/?utm_source=ig",
            "",
            "utm_source",
        ),
        (
            spec.as_str(),
            "https://shop.example.com/?utm_campaign=fall",
            "",
            "conflicts",
        ),
        (spec.as_str(), "https://shop.example.com/", "snapchat", "not a platform"),
        (no_handles.as_str(), "https://shop.example.com/", "", "handle"),
    ];
    for (roster, base, platforms, expect) in cases {
        let mut args = vec![
            "links",
            "issue",
            "--roster",
            roster,
            "--campaign",
            "spring26",
            "--base-url",
            base,
            "--out",
            &out_s,
        ];
        if !platforms.is_empty() {
            args.extend(["--platforms", platforms]);
        }
        let o = crest(&args).await;
        assert_eq!(o.status.code(), Some(2), "{base}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{base}: {}", stderr(&o));
        assert_eq!(error_lines(&o), 1, "{}", stderr(&o));
        assert!(!out.exists(), "{base}: nothing is written");
    }
}

/// The audit over a real transform run of sandbox TikTok data, checked against
/// the canonical rows read independently; with the issued links, every
/// creator's link no ad carries yet is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_counts_what_the_canonical_rows_hold_and_what_was_issued_but_never_seen() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Decimal128Type;
    let (sb, dir, out_s, roster_s) = transformed("2026-01-10").await;
    let out = dir.path().join("out");

    // What the canonical rows hold, per paid ad: carries a UTM? resolved? spend.
    let mut ads: std::collections::BTreeMap<String, (bool, bool, i128)> = Default::default();
    for b in read_table(&out.join("canonical/creator_performance")) {
        let text = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (channel, ad, creator) = (text("channel"), text("ad_id"), text("creator_id"));
        let utms: Vec<_> = ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"]
            .iter()
            .map(|c| text(c))
            .collect();
        let spend = b
            .column_by_name("spend_reporting")
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .clone();
        for i in 0..b.num_rows() {
            if channel.value(i) != "paid" {
                continue;
            }
            let a = ads.entry(ad.value(i).to_string()).or_default();
            a.0 |= utms.iter().any(|u| !u.is_null(i) && !u.value(i).is_empty());
            a.1 |= !creator.is_null(i);
            a.2 += if spend.is_null(i) { 0 } else { spend.value(i) };
        }
    }
    let unresolvable = ads.values().filter(|a| a.0 && !a.1).count();
    let no_utm = ads.values().filter(|a| !a.0).count();
    let resolved = ads.values().filter(|a| a.0 && a.1).count();
    assert!(resolved > 0);

    let audit = |extra: Vec<String>| {
        let mut args: Vec<String> = ["links", "audit", "--input", &out_s, "--json", "--dry-run"]
            .map(String::from)
            .to_vec();
        args.extend(extra);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = crest(&args).await;
            assert!(o.status.success(), "{}", stderr(&o));
            serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap()
        }
    };
    let sum = |rows: &[serde_json::Value], k: &str| rows.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>() as usize;
    let rows = audit(vec![]).await;
    assert_eq!(sum(&rows, "ads"), ads.len());
    assert_eq!(sum(&rows, "unresolvable"), unresolvable);
    assert_eq!(sum(&rows, "no_utm"), no_utm);
    let lost: rust_decimal::Decimal = rows
        .iter()
        .map(|r| {
            r["spend_unattributable"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    let expected: i128 = ads.values().filter(|a| !a.1).map(|a| a.2).sum();
    assert_eq!(
        lost,
        rust_decimal::Decimal::from_i128_with_scale(expected, 6),
        "to the cent and below"
    );

    // With the roster, each Spark Ad on one creator's identity that carries
    // another creator's link is counted on the creator whose ad it is.
    let world = sb.world();
    let mut crossed: std::collections::BTreeMap<String, u64> = Default::default();
    for a in &world.ads {
        let seen = ads.contains_key(&a.ad_id.to_string());
        if seen && a.from_creator && a.link_creator.is_some_and(|l| l != a.creator) {
            *crossed.entry(world.creators[a.creator].creator_id.clone()).or_default() += 1;
        }
    }
    assert!(!crossed.is_empty(), "the world has crossed links in the range");
    assert!(
        rows.iter().all(|r| r["other_creator"].is_null()),
        "not looked for without the roster: unknown, not zero"
    );
    let rows = audit(vec!["--roster".into(), roster_s.clone()]).await;
    let found: std::collections::BTreeMap<String, u64> = rows
        .iter()
        .filter(|r| r["other_creator"].as_u64().unwrap() > 0)
        .map(|r| {
            (
                r["creator_id"].as_str().unwrap().to_string(),
                r["other_creator"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, crossed);
    // The crossed ads' spend stays with the creator whose link they carry, as in the tiers.
    assert_eq!(sum(&rows, "ads"), ads.len());
    let o = crest(&["links", "audit", "--input", &out_s, "--roster", &roster_s, "--dry-run"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(table.contains("other_creator"), "{table}");
    // Each crossed ad is listed with whose it is and who its link credits.
    let listed = table
        .lines()
        .skip_while(|l| !l.starts_with("Spark Ads carrying another creator's link"))
        .skip(2)
        .count();
    assert_eq!(listed as u64, crossed.values().sum::<u64>(), "{table}");
    let o = crest(&["links", "audit", "--input", &out_s, "--dry-run"]).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("give --roster"),
        "says what it did not check"
    );

    // Links issued for this campaign, none yet on an ad: every one unseen,
    // every attributed ad carries a link crest did not issue.
    let links = dir.path().join("links.csv");
    let o = crest(&[
        "links",
        "issue",
        "--roster",
        &roster_s,
        "--campaign",
        "spring26",
        "--base-url",
        "https://shop.example.com/",
        "--platforms",
        "tiktok",
        "--out",
        &links.display().to_string(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = audit(vec!["--issued".into(), links.display().to_string()]).await;
    assert_eq!(sum(&rows, "issued_unseen"), sb.world().creators.len());
    assert_eq!(sum(&rows, "not_issued"), resolved);

    // A file that is not the issued links: one line, exit 2.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "url\nhttps://x.com/\n").unwrap();
    let o = crest(&[
        "links",
        "audit",
        "--input",
        &out_s,
        "--issued",
        &bad.display().to_string(),
        "--dry-run",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("creator_id"), "{}", stderr(&o));
    assert_eq!(error_lines(&o), 1);

    // Without --dry-run the audit goes to the target, here the default lake,
    // which does not exist: the audit is still printed, and the error says what to do.
    let o = crest(&[
        "links",
        "audit",
        "--input",
        &out_s,
        "--target",
        &format!("lake:{}/nowhere", dir.path().display()),
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("links audit"),
        "printed first"
    );
    assert!(
        stderr(&o).contains("--target") && stderr(&o).contains("--dry-run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(error_lines(&o), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_audit_finds_links_that_name_no_creator_and_issued_links_never_seen() {
    use crest_sandbox::ga4;
    let (sb, dir, out_s, roster_s) = transformed("2026-01-20").await;
    // The brand's site over the same world: sessions through the creators'
    // links, a partner's link that names nobody, direct visits.
    let export = ga4::export(
        sb.world(),
        &ga4::Ga4Config {
            users: 240,
            ..Default::default()
        },
    );
    let files = dir.path().join("ga4-export");
    std::fs::create_dir_all(&files).unwrap();
    for day in export.days.keys() {
        std::fs::write(
            files.join(format!("events_{}.json", day.format("%Y%m%d"))),
            export.ndjson(*day),
        )
        .unwrap();
    }
    let site = dir.path().join("site");
    let o = crest_ga4(
        &[
            "extract",
            "--from",
            files.to_str().unwrap(),
            "--property-id",
            &export.property_id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-20",
            "--out",
            site.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    // What the export holds for the run's dates, from its own rows.
    let mut partner = 0u64;
    let mut creator_links = std::collections::BTreeSet::new();
    let last = day("2026-01-20");
    for (date, rows) in &export.days {
        if *date > last {
            continue;
        }
        for r in rows.iter().filter(|r| r["event_name"] == "session_start") {
            let page = r["event_params"][1]["value"]["string_value"].as_str().unwrap();
            let utm = parse_url(page);
            match (utm.source, utm.medium) {
                (Some(s), _) if s == ga4::PARTNER => partner += 1,
                (Some(s), Some(m)) => {
                    creator_links.insert((s, m));
                }
                _ => {}
            }
        }
    }
    assert!(partner > 0 && !creator_links.is_empty());
    let links = dir.path().join("links.csv");
    let o = crest(&[
        "links",
        "issue",
        "--roster",
        &roster_s,
        "--campaign",
        "spring26",
        "--base-url",
        "https://shop.example.com/spring",
        "--out",
        links.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = crest(&[
        "links",
        "audit",
        "--input",
        &out_s,
        "--issued",
        links.to_str().unwrap(),
        "--site",
        site.to_str().unwrap(),
        "--roster",
        &roster_s,
        "--json",
        "--dry-run",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["ads"].as_array().is_some_and(|a| !a.is_empty()));
    let site_rows = v["site"].as_array().unwrap();
    let nobody: u64 = site_rows
        .iter()
        .filter(|r| r["creator_id"].is_null())
        .map(|r| r["sessions"].as_u64().unwrap())
        .sum();
    assert_eq!(nobody, partner, "sessions through the partner's link");
    assert!(site_rows
        .iter()
        .filter(|r| r["creator_id"].is_null())
        .all(|r| r["utm_source"] == ga4::PARTNER));
    let seen: std::collections::BTreeSet<(String, String)> = site_rows
        .iter()
        .filter(|r| r["sessions"].as_u64().unwrap() > 0 && !r["creator_id"].is_null())
        .map(|r| {
            (
                r["creator_id"].as_str().unwrap().to_string(),
                r["platform"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seen, creator_links, "each creator × medium a session came through");
    let unseen = site_rows.iter().filter(|r| r["sessions"] == 0).count();
    assert_eq!(
        unseen,
        sb.world().creators.len() * 3 - creator_links.len(),
        "issued links never seen on the site"
    );
    assert!(
        site_rows.iter().all(|r| r["issued"] != false),
        "every creator was issued every platform"
    );

    // The table names the findings; --site without --roster is refused.
    let o = crest(&[
        "links",
        "audit",
        "--input",
        &out_s,
        "--site",
        site.to_str().unwrap(),
        "--roster",
        &roster_s,
        "--dry-run",
    ])
    .await;
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(printed.contains("through links that name no creator"), "{printed}");
    let o = crest(&[
        "links",
        "audit",
        "--input",
        &out_s,
        "--site",
        site.to_str().unwrap(),
        "--dry-run",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The audit appended to every target: `v_utm_hygiene` answers what the audit
/// printed, and a second audit replaces what the view shows, never adds to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_holds_the_audit_and_v_utm_hygiene_reads_the_latest() {
    let (_sb, dir, out_s, roster_s) = transformed("2026-01-03").await;
    for t in Target::all(&dir.path().join("lake")).await {
        let k = t.kind;
        let o = t.load(&out_s, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        if k == Kind::Lake {
            // An audit an earlier crest wrote, before utm_hygiene had other_creator.
            let row = crest_core::utm_hygiene::Row {
                creator_id: Some("cr_00001".into()),
                platform: "tiktok".into(),
                ads: 1,
                ..Default::default()
            };
            let batch = crest_core::utm_hygiene::to_batch(&[row], "20250101T000000Z-old", 1_735_689_600_000_000, "old")
                .unwrap();
            let old = batch
                .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
                .unwrap();
            let folder = dir.path().join("lake/utm_hygiene");
            std::fs::create_dir_all(&folder).unwrap();
            let file = std::fs::File::create(folder.join("20250101T000000Z-old.parquet")).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(file, old.schema(), None).unwrap();
            w.write(&old).unwrap();
            w.close().unwrap();
        }
        let mut printed = Vec::new();
        for _ in 0..2 {
            let o = t
                .crest(&[
                    "links", "audit", "--input", &out_s, "--target", &t.spec, "--json", "--roster", &roster_s,
                ])
                .await;
            assert!(o.status.success(), "{k:?}: {}", stderr(&o));
            printed = serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap();
        }
        let o = t.crest(&["views", "apply", "--target", &t.spec]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        let sum = |key: &str| printed.iter().map(|r| r[key].as_i64().unwrap()).sum::<i64>();
        let lost: rust_decimal::Decimal = printed
            .iter()
            .map(|r| {
                r["spend_unattributable"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            })
            .sum();
        let v = t
            .query(
                "SELECT COUNT(*) AS n, SUM(ads) AS ads, SUM(unresolvable) AS unresolvable, \
                 SUM(other_creator) AS other_creator, SUM(clicks_unattributable) AS clicks_lost, \
                 CAST(SUM(spend_unattributable) * 1000000 AS BIGINT) AS lost, \
                 SUM(CASE WHEN clean THEN 1 ELSE 0 END) AS clean FROM v_utm_hygiene",
            )
            .await;
        let r = &v[0];
        assert_eq!(int(&r["n"]), printed.len() as i64, "{k:?}: the latest audit only");
        assert_eq!(int(&r["ads"]), sum("ads"), "{k:?}");
        assert_eq!(int(&r["unresolvable"]), sum("unresolvable"), "{k:?}");
        assert_eq!(int(&r["other_creator"]), sum("other_creator"), "{k:?}");
        assert!(sum("other_creator") > 0, "{k:?}: the crossed links reach the target");
        assert_eq!(int(&r["clicks_lost"]), sum("clicks_unattributable"), "{k:?}");
        assert_eq!(
            rust_decimal::Decimal::from(int(&r["lost"])),
            lost * rust_decimal::Decimal::from(1_000_000),
            "{k:?}: to the micro"
        );
        let clean = printed
            .iter()
            .filter(|r| {
                r["no_utm"] == 0 && r["unresolvable"] == 0 && r["wrong_platform"] == 0 && r["other_creator"] == 0
            })
            .count();
        assert_eq!(int(&r["clean"]), clean as i64, "{k:?}");
        // Both audits are kept for history.
        let all = t
            .query("SELECT COUNT(DISTINCT audit_id) AS audits FROM utm_hygiene")
            .await;
        let earlier = if k == Kind::Lake { 1 } else { 0 };
        assert_eq!(int(&all[0]["audits"]), 2 + earlier, "{k:?}");
    }
}
