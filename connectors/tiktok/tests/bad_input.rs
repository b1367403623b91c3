//! Bad input: one clear line, the documented exit code, nothing left behind.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::Path;

fn assert_clean_failure(o: &std::process::Output, code: i32, must_say: &str, out: &Path) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    // One error line; anything else on stderr is a log line (e.g. a retry warning).
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains(" WARN ") && !l.contains(" INFO "))
        .collect();
    assert_eq!(errors.len(), 1, "one line: {err}");
    assert!(err.contains(must_say), "'{must_say}' in: {err}");
    assert!(!err.contains("panicked") && !err.contains(TOKEN));
    assert!(files_under(out, "parquet").is_empty(), "no data files left");
    assert!(files_under(out, "json").is_empty(), "no manifest left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_gives_its_error_and_leaves_nothing_behind() {
    let sb = sandbox(config()).await;
    let id = advertisers(&sb).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();

    let r = run(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-13-01",
            "--end",
            "2026-01-31",
            "--out",
            o,
        ],
    )
    .await;
    assert_clean_failure(&r, 2, "YYYY-MM-DD", &out);

    let r = run(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-02-01",
            "--end",
            "2026-01-01",
            "--out",
            o,
        ],
    )
    .await;
    assert_clean_failure(&r, 2, "before --start", &out);

    let r = run(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            o,
            "--bogus",
        ],
    )
    .await;
    assert_clean_failure(&r, 2, "--bogus", &out);

    let r = run(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            "12ab",
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            o,
        ],
    )
    .await;
    assert_clean_failure(&r, 2, "advertiser id", &out);

    let mut cmd = command(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            o,
        ],
    );
    cmd.env_remove("TIKTOK_ACCESS_TOKEN");
    let r = run_cmd(cmd).await;
    assert_clean_failure(&r, 3, "TIKTOK_ACCESS_TOKEN is not set", &out);

    let mut cmd = command(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            o,
        ],
    );
    cmd.env("TIKTOK_ACCESS_TOKEN", "not-the-token");
    let r = run_cmd(cmd).await;
    assert_clean_failure(&r, 3, "40105", &out);

    let r = run(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            "123456",
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            o,
        ],
    )
    .await;
    assert_clean_failure(&r, 3, "40001", &out);

    let mut cmd = command(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            o,
            "--retry-initial-ms",
            "10",
        ],
    );
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cmd.env("CREST_TIKTOK_BASE_URL", format!("http://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    let r = run_cmd(cmd).await;
    assert_clean_failure(&r, 4, "cannot connect", &out);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "an unreachable URL fails fast"
    );

    let mut cmd = command(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            o,
        ],
    );
    cmd.env("CREST_TIKTOK_BASE_URL", "not a url");
    assert_clean_failure(&run_cmd(cmd).await, 2, "CREST_TIKTOK_BASE_URL", &out);

    // --out below a regular file cannot be created.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let bad_out = file.join("out");
    let r = run(
        &sb,
        &[
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            bad_out.to_str().unwrap(),
        ],
    )
    .await;
    assert_clean_failure(&r, 5, "cannot create", &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_the_token_and_every_advertiser() {
    let sb = sandbox(config()).await;
    let ids = advertisers(&sb);
    let r = run(&sb, &["check", "--advertiser-id", &ids.join(",")]).await;
    assert_ok(&r);
    let stdout = String::from_utf8_lossy(&r.stdout);
    for id in &ids {
        assert!(stdout.contains(id.as_str()), "{stdout}");
    }
    let r = run(&sb, &["check", "--advertiser-id", &format!("{},999", ids[0])]).await;
    assert_eq!(r.status.code(), Some(3), "{}", stderr(&r));
    let mut cmd = command(&sb, &["check", "--advertiser-id", &ids[0]]);
    cmd.env("TIKTOK_ACCESS_TOKEN", "expired");
    assert_eq!(run_cmd(cmd).await.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_shows_examples_and_exit_codes() {
    let sb = sandbox(config()).await;
    let r = run(&sb, &["--help"]).await;
    assert_ok(&r);
    let help = String::from_utf8_lossy(&r.stdout);
    assert!(
        help.contains("Examples:") && help.contains("Exit codes") && help.contains("TIKTOK_ACCESS_TOKEN"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_for_airflow() {
    let sb = sandbox(with_faults("server_error@4")).await;
    let id = advertisers(&sb).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let r = run(
        &sb,
        &[
            "--log-format",
            "json",
            "extract",
            "--advertiser-id",
            &id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-03",
            "--out",
            out.to_str().unwrap(),
            "--retry-initial-ms",
            "10",
        ],
    )
    .await;
    assert_ok(&r);
    let err = stderr(&r);
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "WARN" && e["message"] == "retrying request"),
        "{err}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "extract finished" && e["rows"].as_u64().unwrap() > 0),
        "{err}"
    );

    // A failure in JSON mode is one JSON line too.
    let mut cmd = command(&sb, &["--log-format", "json", "check", "--advertiser-id", &id]);
    cmd.env("TIKTOK_ACCESS_TOKEN", "wrong");
    let r = run_cmd(cmd).await;
    assert_eq!(r.status.code(), Some(3));
    let last: serde_json::Value = serde_json::from_str(stderr(&r).lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["exit_code"], 3);
}
