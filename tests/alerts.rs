//! `crest alerts` against a real HTTP server receiving the Slack webhook and
//! a real SMTP server (aiosmtpd, STARTTLS with a certificate made for the
//! test) receiving the mail, both on loopback: a change sends one message, a
//! repeat sends none, a failing webhook is retried and the evaluation stays
//! undelivered until a later run delivers it.
#![allow(clippy::unwrap_used)]

mod common;
use common::scenario::{scenario, write_run, BENCHMARKS};
use common::targets::Target;
use common::*;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The webhook: records every body; answers 500 while `fail` is above zero.
#[derive(Default)]
struct Hook {
    bodies: Mutex<Vec<String>>,
    requests: AtomicUsize,
    fail: AtomicUsize,
}

async fn hook(State(h): State<Arc<Hook>>, body: String) -> (StatusCode, &'static str) {
    h.requests.fetch_add(1, Ordering::SeqCst);
    if h.fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    }
    h.bodies.lock().unwrap().push(body);
    (StatusCode::OK, "ok")
}

async fn start_hook() -> (Arc<Hook>, String) {
    let h = Arc::new(Hook::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/services/T000/B000/{secret}", post(hook))
        .with_state(h.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        h,
        format!("http://127.0.0.1:{port}/services/T000/B000/s3cr3tw3bh00kt0k3n"),
    )
}

/// aiosmtpd with STARTTLS required, delivering into a Maildir.
struct Smtp {
    child: std::process::Child,
    port: u16,
    /// The CA crest is told to trust (CREST_SMTP_CA_FILE).
    ca: PathBuf,
    maildir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn start_smtp(dir: &Path) -> Smtp {
    let python = emulator("CREST_TEST_SMTPD_PYTHON");
    // A test CA and a server certificate it signs (webpki refuses a
    // self-signed CA used as the server's own certificate).
    let (ca, cert, key, maildir) = (
        dir.join("ca.pem"),
        dir.join("smtp.pem"),
        dir.join("smtp.key"),
        dir.join("mail"),
    );
    let ext = dir.join("smtp.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=crest test CA",
            "-keyout",
            &d("ca.key"),
            "-out",
            &d("ca.pem"),
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &d("smtp.key"),
            "-out",
            &d("smtp.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &d("smtp.csr"),
            "-CA",
            &d("ca.pem"),
            "-CAkey",
            &d("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &d("smtp.pem"),
            "-extfile",
            &d("smtp.ext"),
        ],
    ] {
        let o = std::process::Command::new("openssl").args(&args).output().unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "--tlscert"])
        .arg(&cert)
        .arg("--tlskey")
        .arg(&key)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(cert.exists() && key.exists());
    Smtp {
        child,
        port,
        ca,
        maildir,
    }
}

impl Smtp {
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in rd {
                    out.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
                }
            }
        }
        out
    }
}

fn alert_env(webhook: &str, smtp: &Smtp) -> Vec<(String, String)> {
    vec![
        ("CREST_SLACK_WEBHOOK_URL".into(), webhook.into()),
        ("CREST_SMTP_HOST".into(), "localhost".into()),
        ("CREST_SMTP_PORT".into(), smtp.port.to_string()),
        ("CREST_SMTP_CA_FILE".into(), smtp.ca.to_string_lossy().into()),
        ("CREST_ALERT_EMAIL_FROM".into(), "crest <crest@brand.example>".into()),
        ("CREST_ALERT_EMAIL_TO".into(), "pod@brand.example".into()),
    ]
}

async fn alerts(t: &Target, env: &[(String, String)], extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "alerts",
        "--target",
        &t.spec,
        "--retry-initial-ms",
        "10",
        "--delivery-attempts",
        "4",
    ];
    args.extend_from_slice(extra);
    let mut all = t.env().to_vec();
    all.extend_from_slice(env);
    crest_env(&args, &all).await
}

async fn prepare(t: &Target, dir: &Path) {
    let manifest = write_run(&dir.join("out"), &scenario());
    let bench = dir.join("benchmarks.csv");
    std::fs::write(&bench, BENCHMARKS).unwrap();
    for args in [
        vec!["load", "--input", manifest.as_str(), "--target", &t.spec, "--create"],
        vec!["benchmarks", "load", bench.to_str().unwrap(), "--target", &t.spec],
        vec!["views", "apply", "--target", &t.spec],
    ] {
        let o = t.crest(&args).await;
        assert!(o.status.success(), "{:?} {args:?}: {}", t.kind, stderr(&o));
    }
}

fn evaluations(v: &serde_json::Value) -> Vec<(String, bool)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["evaluation_id"].as_str().unwrap().to_string(),
                matches!(&r["delivered"], serde_json::Value::Bool(true)) || r["delivered"].as_str() == Some("true"),
            )
        })
        .collect()
}

const HISTORY: &str = "SELECT evaluation_id, MAX(CASE WHEN delivered THEN 1 ELSE 0 END) = 1 AS delivered FROM v_tier_history GROUP BY evaluation_id ORDER BY evaluation_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_sent_once_to_slack_and_email_and_a_failed_delivery_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Target::lake(&dir.path().join("lake"));
    prepare(&lake, dir.path()).await;
    let (hook, url) = start_hook().await;
    let smtp = start_smtp(dir.path());
    let env = alert_env(&url, &smtp);

    // Bad settings stop before anything is evaluated or stored.
    let o = alerts(&lake, &env, &[]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = alerts(&lake, &[], &["--slack"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("CREST_SLACK_WEBHOOK_URL"), "{}", stderr(&o));
    let o = alerts(&lake, &env[..1], &["--email"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("CREST_SMTP_HOST"), "{}", stderr(&o));
    // A dry run prints and stores nothing.
    let o = alerts(&lake, &env, &["--slack", "--dry-run"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let dry = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(dry.contains("Entered red") && dry.contains("gap_minus_25"), "{dry}");
    assert!(evaluations(&lake.query(HISTORY).await).is_empty());
    assert_eq!(hook.requests.load(Ordering::SeqCst), 0);

    // The first evaluation: every judged creator entered a tier. The webhook
    // fails twice and is retried; one message reaches each channel.
    hook.fail.store(2, Ordering::SeqCst);
    let o = alerts(&lake, &env, &["--slack", "--email"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(hook.requests.load(Ordering::SeqCst), 3);
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let slack: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(slack["blocks"][0]["type"], "header");
    let text = bodies[0].as_str();
    assert!(
        text.contains("Entered red")
            && text.contains("gap_minus_25 (TikTok): none → red — CTR 25 % below the 1.20 % TikTok nano benchmark"),
        "{text}"
    );
    assert!(
        text.contains("Compliance flag raised") && text.contains("undisclosed_accelerate"),
        "{text}"
    );
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert!(
        mail[0].contains("Subject: crest: ") && mail[0].contains("Entered red"),
        "{}",
        mail[0]
    );
    let history = evaluations(&lake.query(HISTORY).await);
    assert_eq!(history.len(), 1);
    assert!(history[0].1, "delivered");

    // Nothing changed: nothing sent, the evaluation kept.
    let o = alerts(&lake, &env, &["--slack", "--email"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing sent"));
    assert_eq!(hook.requests.load(Ordering::SeqCst), 3);
    assert_eq!(smtp.messages().len(), 1);

    // A recalibration moves creators; the webhook is down for the whole run:
    // exit 4, the evaluation stays undelivered, nothing is lost.
    let bench = dir.path().join("recalibrated.csv");
    std::fs::write(
        &bench,
        BENCHMARKS.replace("tiktok,nano,0.012,1.00,", "tiktok,nano,0.0105,1.00,"),
    )
    .unwrap();
    let o = lake
        .crest(&["benchmarks", "load", bench.to_str().unwrap(), "--target", &lake.spec])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    hook.fail.store(100, Ordering::SeqCst);
    let o = alerts(&lake, &env, &["--slack", "--email"]).await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("undelivered"), "{}", stderr(&o));
    assert_eq!(hook.requests.load(Ordering::SeqCst), 3 + 4, "four attempts");
    let history = evaluations(&lake.query(HISTORY).await);
    assert_eq!(history.iter().map(|h| h.1).collect::<Vec<_>>(), [true, true, false]);

    // The webhook is back: the next run sends the same changes and is delivered.
    hook.fail.store(0, Ordering::SeqCst);
    let o = alerts(&lake, &env, &["--slack", "--email"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies[1].contains("gap_minus_10 (TikTok): yellow → green"),
        "{}",
        bodies[1]
    );
    assert!(
        bodies[1].contains("gap_minus_25 (TikTok): red → yellow"),
        "{}",
        bodies[1]
    );
    assert_eq!(smtp.messages().len(), 2);
    let history = evaluations(&lake.query(HISTORY).await);
    assert_eq!(
        history.iter().map(|h| h.1).collect::<Vec<_>>(),
        [true, true, false, true]
    );
    for out in [&o.stdout, &o.stderr] {
        assert!(!String::from_utf8_lossy(out).contains("s3cr3tw3bh00kt0k3n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_keep_their_log_in_bigquery_and_snowflake_too() {
    for t in [Target::bigquery(), Target::snowflake().await] {
        let dir = tempfile::tempdir().unwrap();
        prepare(&t, dir.path()).await;
        let (hook, url) = start_hook().await;
        let env = vec![("CREST_SLACK_WEBHOOK_URL".to_string(), url)];
        let o = alerts(&t, &env, &["--slack"]).await;
        assert!(o.status.success(), "{:?}: {}", t.kind, stderr(&o));
        let o = alerts(&t, &env, &["--slack"]).await;
        assert!(o.status.success(), "{:?}: {}", t.kind, stderr(&o));
        assert_eq!(
            hook.bodies.lock().unwrap().len(),
            1,
            "{:?}: one message, then none",
            t.kind
        );
        let history = evaluations(&t.query(HISTORY).await);
        assert_eq!(
            history.iter().map(|h| h.1).collect::<Vec<_>>(),
            [true, true],
            "{:?}",
            t.kind
        );
    }
}
