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
