//! Secrets and logs (issue 10, §4): a broker password is never shown, the admin token is not
//! printed where no person reads it, `RUST_LOG` is honoured, refused tokens are logged without
//! the secret.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::limits::{serve_with, serve_with_env, whole_log};

/// Waits until the collected log contains `needle`; returns the log.
async fn wait_log(log: &Arc<Mutex<String>>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = log.lock().unwrap().clone();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{needle:?} was not logged:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_broker_password_is_never_shown() {
    const PASSWORD: &str = "pw-Zq81x-never-shown";
    // A site broker that is not there: the engine runs and keeps trying.
    let url = format!("mqtt://flo:{PASSWORD}@127.0.0.1:9");
    let (server, log) = serve_with(&[], &["--http", "127.0.0.1:0", "--mqtt", &url]).await;
    // The line that names the broker is logged (so the check below reads it), without the password.
    let text = wait_log(&log, "cannot connect to the MQTT broker").await;
    let line = text.lines().find(|l| l.contains("cannot connect to the MQTT broker")).unwrap_or_default();
    assert!(line.contains("mqtt://flo@127.0.0.1:9"), "the broker is named without its password: {line}");
    let runtime = std::fs::read_to_string(server.data_dir().join("runtime.json")).unwrap();
    assert!(!runtime.contains(PASSWORD), "runtime.json: {runtime}");
    assert!(runtime.contains("mqtt://flo@127.0.0.1:9"), "the URL is there without its password: {runtime}");
    for path in ["/api/v1/info", "/api/v1/status", "/api/v1/settings"] {
        let body = server.api(Method::GET, path).send().await.unwrap().text().await.unwrap();
        assert!(!body.contains(PASSWORD), "{path}: {body}");
    }
    let (status, stdout, _dir) = server.stop();
    assert!(status.success());
    assert!(stdout.contains("mqtt://flo@127.0.0.1:9"), "{stdout}");
    assert!(!stdout.contains(PASSWORD), "stdout: {stdout}");
    let log = whole_log(&log).await;
    assert!(!log.contains(PASSWORD), "stderr: {log}");
}

#[tokio::test]
async fn the_admin_token_is_not_printed_when_stdout_is_not_a_terminal() {
    let (server, _log) = serve_with(&[], &["--http", "127.0.0.1:0"]).await;
    let token = server.token.clone();
    let (status, stdout, dir) = server.stop();
    assert!(status.success());
    assert!(!stdout.contains(&token), "the token was printed to a pipe: {stdout}");
    let path = dir.path().join("admin-token");
    assert!(stdout.contains(&path.display().to_string()), "the token file is named instead: {stdout}");
}

#[tokio::test]
async fn rust_log_is_honoured_and_refused_tokens_are_logged_without_the_secret() {
    // --log warn alone: no info lines.
    let (server, log) = serve_with(&[], &["--http", "127.0.0.1:0"]).await;
    let wrong = "wrong-token-Xy7-not-logged";
    let resp = server.http.get(server.admin("/api/v1/info")).bearer_auth(wrong).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let text = wait_log(&log, "admin API request refused: wrong token").await;
    assert!(!text.contains(wrong), "the refused token itself is never logged:\n{text}");
    assert!(!text.contains(&server.token), "nor the real one:\n{text}");
    assert!(!text.contains("device server connection limit"), "--log warn hides info lines:\n{text}");
    drop(server);

    // RUST_LOG wins over --log.
    let (server, log) = serve_with_env(&[], &["--http", "127.0.0.1:0"], &[("RUST_LOG", "info")]).await;
    wait_log(&log, "device server connection limit").await;
    drop(server);
}
