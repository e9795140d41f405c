//! The `gatehouse` binary as an operator uses it: help, configuration errors,
//! `migrate`, `create-admin`, and `serve` stopping cleanly on SIGTERM.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{json, new_client};

fn gatehouse(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    cmd
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = gatehouse(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "migrate", "create-admin"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn a_bad_setting_stops_startup_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = gatehouse(dir.path())
        .env("SESSION_LIFETIME", "forever")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("SESSION_LIFETIME"), "{err}");

    let out = gatehouse(dir.path())
        .env("APP_ENV", "production")
        .env("MAIL_SERVER", "smtp.example.com")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SECRET_KEY"));

    // The .env file is read too.
    std::fs::write(dir.path().join(".env"), "BIND_ADDR=nonsense\n").unwrap();
    let out = gatehouse(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BIND_ADDR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_create_admin_serve_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let out = gatehouse(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/gatehouse.db").exists());
    assert!(dir.path().join("data/secret.key").exists());
    // Twice is fine.
    assert!(gatehouse(dir.path())
        .arg("migrate")
        .status()
        .unwrap()
        .success());

    let mut serve = gatehouse(dir.path());
    serve.stderr(Stdio::piped());
    let (server, base) = start(serve).await;
    let client = new_client();

    let out = gatehouse(dir.path())
        .args([
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.com",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .unwrap()
        .to_owned();
    let res = client
        .post(format!("{base}/login"))
        .json(&json!({"username_or_email": "root", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["user"]["roles"], json!(["Super Admin"]));
    assert!(body["user"]["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("manage_billing")));

    let out = gatehouse(dir.path())
        .args([
            "create-admin",
            "--username",
            "root",
            "--email",
            "x@example.com",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let out = stop(server).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("create-admin"),
        "first start explains how to create a Super Admin: {stderr}"
    );
}

/// `gatehouse serve`, as `cmd` sets it up, on a free loopback port; returns once it
/// answers, with its base URL.
async fn start(mut cmd: Command) -> (Child, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let server = cmd.env("BIND_ADDR", &addr).spawn().unwrap();
    let client = new_client();
    let base = format!("http://{addr}");
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        // Waiting on another process to listen: nothing to be told by, so poll.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server did not come up");
    (server, base)
}

/// Stops the server with SIGTERM, as an operator does, and asserts that it exits
/// cleanly; returns what it wrote to piped streams.
async fn stop(server: Child) -> Output {
    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || server.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
    out
}

/// With `LOG_FORMAT=json`, standard error holds JSON objects only, one a line (the
/// first start's hint to create a Super Admin among them), and by the time the
/// process has stopped on SIGTERM every request's `served` line, naming the request id
/// its answer carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_log_holds_json_lines_only_and_every_request() {
    let dir = tempfile::tempdir().unwrap();
    // A file, not a pipe: nobody reads a pipe until the process has ended.
    let log_path = dir.path().join("stderr.log");
    let mut serve = gatehouse(dir.path());
    serve
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log_path).unwrap());
    let (server, base) = start(serve).await;
    let client = new_client();

    let mut ids = Vec::new();
    for round in 0..500 {
        let path = if round % 2 == 0 {
            "/healthz"
        } else {
            "/no-such-page"
        };
        let res = client.get(format!("{base}{path}")).send().await.unwrap();
        ids.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    stop(server).await;

    let log = std::fs::read_to_string(&log_path).unwrap();
    let mut served = std::collections::HashSet::new();
    let mut hint = false;
    for line in log.lines() {
        let line: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if line["message"] == "served" {
            served.insert(line["span"]["id"].as_str().unwrap().to_owned());
        }
        hint |= line["level"] == "WARN"
            && line["message"]
                .as_str()
                .is_some_and(|m| m.contains("gatehouse create-admin"));
    }
    assert!(hint, "no hint to create a Super Admin: {log}");
    for id in &ids {
        assert!(served.contains(id), "no served line for request {id}");
    }
    // Written after the last request, while the process was stopping.
    assert!(log.contains("server stopped"), "{log}");
}
