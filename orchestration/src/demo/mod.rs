//! `crest demo`: the whole pipeline with no credentials. The platform sandbox
//! runs in this process on a loopback port; a program of creators on TikTok,
//! Meta and YouTube is extracted, transformed, loaded into an embedded lake,
//! judged by the tier views, and shown as a tier board: printed, and written
//! as one self-contained HTML page (no network, no CDN).

mod board;

use crate::run::{self, Alerts, Granularity, RunConfig};
use chrono::{Datelike, Days, NaiveDate, Utc};
use crest_core::{Error, Result};
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};

pub struct DemoOptions {
    pub out: PathBuf,
    pub creators: usize,
    pub days: u32,
    pub seed: u64,
    /// The loopback port the sandbox serves on, chosen (and the connectors
    /// pointed at it) before the runtime started.
    pub port: u16,
}

/// Points every connector at the sandbox on `port`, with the sandbox's
/// credentials. Called before any thread reads the environment.
pub fn sandbox_environment(port: u16) -> Vec<(&'static str, String)> {
    let base = format!("http://127.0.0.1:{port}");
    vec![
        ("TIKTOK_ACCESS_TOKEN", "sandbox-token".into()),
        ("CREST_TIKTOK_BASE_URL", base.clone()),
        ("META_ACCESS_TOKEN", "sandbox-meta-token".into()),
        ("CREST_META_BASE_URL", base.clone()),
        ("GOOGLE_CLIENT_ID", "sandbox-client".into()),
        ("GOOGLE_CLIENT_SECRET", "sandbox-client-secret".into()),
        ("GOOGLE_REFRESH_TOKEN", "sandbox-refresh-token".into()),
        ("GOOGLE_ADS_DEVELOPER_TOKEN", "sandbox-developer-token".into()),
        ("CREST_GOOGLE_OAUTH_URL", format!("{base}/token")),
        ("CREST_YOUTUBE_ANALYTICS_BASE_URL", base.clone()),
        ("CREST_YOUTUBE_DATA_BASE_URL", base.clone()),
        ("CREST_GOOGLE_ADS_BASE_URL", base),
    ]
}

pub async fn demo(options: DemoOptions) -> Result<()> {
    if options.creators == 0 || options.creators > 5000 {
        return Err(Error::Config("--creators must be between 1 and 5000".into()));
    }
    if !(7..=365).contains(&options.days) {
        return Err(Error::Config(
            "--days must be between 7 and 365 (tiers need a few days of delivery)".into(),
        ));
    }
    let started = std::time::Instant::now();
    let today = Utc::now().date_naive();
    let first_day = today - Days::new(options.days as u64);
    let sandbox = Sandbox::start(SandboxConfig {
        world: WorldConfig {
            seed: options.seed,
            creators: options.creators,
            days: options.days,
            first_day,
            spread: true,
            ..WorldConfig::default()
        },
        meta_job_polls: 1,
        port: options.port,
        ..SandboxConfig::default()
    })
    .await
    .map_err(|e| Error::Config(format!("cannot start the sandbox on 127.0.0.1:{}: {e}", options.port)))?;
    let world = sandbox.world();
    let last_day = world.date(world.config.days - 1);
    println!(
        "crest demo: {} creators over {} days ({first_day}..{last_day}) on TikTok, Meta and YouTube, from the sandbox at {}",
        world.creators.len(),
        options.days,
        sandbox.base_url()
    );

    // The program's inputs, written where a team would keep its own.
    let out = absolute(&options.out)?;
    // Each demo starts over: another seed or length must not mix with the last.
    for own in ["data", "lake", "site"] {
        let dir = out.join(own);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::storage(dir.display(), e))?;
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::storage(out.display(), e))?;
    let write = |name: &str, text: &str| -> Result<String> {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::storage(path.display(), e))?;
        Ok(path.display().to_string())
    };
    let roster = write("roster.csv", &world.roster_csv())?;
    let fx = write("fx.csv", &fx_csv(first_day, last_day))?;
    let benchmarks = write("benchmarks.csv", crest_core::benchmarks::DEFAULT_CSV)?;
    let youtube = sandbox.youtube();
    // A handful of creators' own channels and the brand's (organic rows are
    // reported, not tiered); paid YouTube comes from Google Ads.
    let mut channels: Vec<String> = youtube.channels.iter().take(5).cloned().collect();
    channels.push(youtube.brand_channel.clone());
    // The sandbox's accounts as a config's platform tables would name them.
    let ids = |v: Vec<String>| v.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ");
    // The brand's own site over the same program: its GA4 export as files.
    let site = out.join("site");
    std::fs::create_dir_all(&site).map_err(|e| Error::storage(site.display(), e))?;
    let export = crest_sandbox::ga4::export(
        world,
        &crest_sandbox::ga4::Ga4Config {
            users: world.creators.len() * 20,
            ..Default::default()
        },
    );
    for day in export.days.keys() {
        let path = site.join(format!("events_{}.json", day.format("%Y%m%d")));
        std::fs::write(&path, export.ndjson(*day)).map_err(|e| Error::storage(path.display(), e))?;
    }
    let tables = format!(
        "[tiktok]\nadvertiser_ids = [{}]\n[meta]\naccount_ids = [{}]\npoll_initial_ms = 50\n[youtube]\nchannel_ids = [{}]\nads_customer_ids = [{}]\n",
        ids(world.advertisers.iter().map(|a| a.advertiser_id.clone()).collect()),
        ids(sandbox.meta().accounts.iter().map(|a| a.account_id.clone()).collect()),
        ids(channels),
        ids(sandbox.ads().customers.iter().map(|c| c.id.clone()).collect()),
    );
    let lake = out.join("lake");
    let config = RunConfig {
        out: out.join("data").display().to_string(),
        target: format!("lake:{}", lake.display()),
        start: Some(first_day.to_string()),
        end: Some(last_day.to_string()),
        roster: Some(roster),
        fx: Some(fx),
        reporting_currency: "USD".into(),
        standard_window: "7d_click,1d_view".into(),
        granularity: Granularity::Day,
        benchmarks: Some(benchmarks),
        platforms: run::platform_tables(
            "crest demo",
            &format!(
                "{tables}[ga4]\nproperty_ids = [{:?}]\nfrom = {:?}\n",
                export.property_id,
                site.display().to_string()
            ),
        )?,
        alerts: Alerts::default(),
        attribution: run::Attribution::default(),
        wait_for_lease: 0,
    };
    run::run_with(config, "crest demo", (first_day, last_day)).await?;

    let lake_target = crate::targets::open(&format!("lake:{}", lake.display()), true).await?;
    let rows = |sql: &'static str| crate::render::json_rows(lake_target.as_ref(), sql);
    let tiers = rows(board::TIERS_SQL).await?;
    let moves = rows(board::REALLOCATION_SQL).await?;
    let board = board::Board::new(tiers, moves);
    board.print();
    let page = out.join("tier-board.html");
    let html = board.html(&format!(
        "{} creators · {first_day} to {last_day} · seed {}",
        world.creators.len(),
        options.seed
    ));
    std::fs::write(&page, html).map_err(|e| Error::storage(page.display(), e))?;
    // Paths as the user gave them: the commands below work from here.
    let shown = options.out.display().to_string();
    let shown = shown.trim_end_matches('/');
    println!();
    println!(
        "done in {:.1}s. Everything is in {shown}/:",
        started.elapsed().as_secs_f64()
    );
    println!("  {shown}/tier-board.html   the tier board, scatter and reallocation: open it in a browser");
    println!("  {shown}/lake/             the embedded lake (Parquet tables; the views in views/)");
    println!("  {shown}/data/             raw reports, canonical tables, run manifests (_runs/)");
    println!("  {shown}/roster.csv, fx.csv, benchmarks.csv   the program's inputs");
    println!("Ask it anything with SQL:");
    println!("  crest query --target lake:{shown}/lake \"SELECT tier, COUNT(*) FROM v_creator_tier GROUP BY tier\"");
    println!("  crest query --target lake:{shown}/lake \"SELECT * FROM v_budget_reallocation\"");
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::storage("the current directory", e))?;
    Ok(cwd.join(path.strip_prefix(".").unwrap_or(path)))
}

/// EUR and GBP rates into USD for every day (the sandbox's second advertiser
/// and ad account report in them).
fn fx_csv(first: NaiveDate, last: NaiveDate) -> String {
    let mut out = String::from("date,currency,rate\n");
    let mut d = first;
    while d <= last {
        let wobble = (d.ordinal() % 7) as f64 / 100.0;
        out.push_str(&format!("{d},EUR,{:.2}\n{d},GBP,{:.2}\n", 1.05 + wobble, 1.24 + wobble));
        d = d + Days::new(1);
    }
    out
}
