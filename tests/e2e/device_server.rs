//! The device server: token-gated downloads with ranges, HEAD, errors devices understand, metrics.

use reqwest::{Method, StatusCode, header};

use crate::support::{Server, image};

fn sha256_hex(firmware: &serde_json::Value) -> String {
    firmware["sha256"].as_str().unwrap().to_owned()
}

async fn link(server: &Server, id: i64, job: &str, ttl: u64) -> String {
    let body = serde_json::json!({ "job": job, "ttl_secs": ttl });
    let resp =
        server.api(Method::POST, &format!("/api/v1/firmware/{id}/download-link")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<serde_json::Value>().await.unwrap()["url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn downloads_need_a_token_and_support_ranges_and_head() {
    let server = Server::start().await;
    let bytes = image("2.0.0", 300_000);
    let (status, body) = server.upload(bytes.clone(), &[]).await;
    assert_eq!(status, 201, "{body}");
    let fw = &body["firmware"];
    let id = fw["id"].as_i64().unwrap();
    let sha = sha256_hex(fw);
    let url = link(&server, id, "job-1", 600).await;
    assert!(url.starts_with(&server.info.device_url), "{url}");
    let http = reqwest::Client::new();

    // Full download.
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], bytes.len().to_string().as_str());
    assert_eq!(resp.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(resp.headers()[header::ETAG], format!("\"{sha}\"").as_str());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // HEAD: the length, no body (ESP-IDF's partial download starts with it).
    let resp = http.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], bytes.len().to_string().as_str());

    // Ranges: the probe ESP-IDF sends, a middle slice, resumption, a suffix.
    let len = bytes.len();
    for (range, start, end) in [
        ("bytes=0-0".to_string(), 0, 1),
        ("bytes=1000-1999".to_string(), 1000, 2000),
        (format!("bytes={}-", len - 500), len - 500, len),
        ("bytes=-100".to_string(), len - 100, len),
    ] {
        let resp = http.get(&url).header(header::RANGE, &range).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            resp.headers()[header::CONTENT_RANGE],
            format!("bytes {start}-{}/{len}", end - 1).as_str(),
            "{range}"
        );
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &bytes[start..end], "{range}");
    }
    let resp = http.get(&url).header(header::RANGE, format!("bytes={len}-")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()[header::CONTENT_RANGE], format!("bytes */{len}").as_str());

    // Refusals.
    let no_token = server.device(&format!("/fw/{sha}"));
    assert_eq!(http.get(&no_token).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let forged = url.replace("job-1.", "job-2.");
    assert_eq!(http.get(&forged).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let unknown = server.device(&format!("/fw/{}", "0".repeat(64)));
    assert_eq!(http.get(&unknown).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    for escape in ["/fw/..%2F..%2Fadmin-token", "/fw/%2e%2e", "/fw/flotilla.db", "/admin-token", "/api/v1/firmware"] {
        let status = http.get(server.device(escape)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{escape}");
    }

    // A token for another firmware does not open this one.
    let (_, other) = server.upload(image("2.0.1", 70_000), &[]).await;
    let other_url = link(&server, other["firmware"]["id"].as_i64().unwrap(), "job-1", 600).await;
    let token = other_url.split("?t=").nth(1).unwrap();
    let swapped = format!("{}?t={token}", server.device(&format!("/fw/{sha}")));
    assert_eq!(http.get(&swapped).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // Metrics saw all of it.
    let metrics = http.get(server.device("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
    };
    assert_eq!(value("flotilla_downloads_total"), 5, "1 full + 4 ranges");
    assert_eq!(value("flotilla_downloads_completed_total"), 5);
    assert_eq!(value("flotilla_download_bytes_total"), (len + 1 + 1000 + 500 + 100) as u64);
    assert_eq!(value("flotilla_active_transfers"), 0);
    assert_eq!(value("flotilla_download_errors_total{status=\"403\"}"), 3);
    assert_eq!(value("flotilla_download_errors_total{status=\"416\"}"), 1);
}

#[tokio::test]
async fn expired_tokens_blocked_and_public_firmware() {
    let server = Server::start().await;
    let (_, body) = server.upload(image("3.0.0", 50_000), &[]).await;
    let id = body["firmware"]["id"].as_i64().unwrap();
    let sha = sha256_hex(&body["firmware"]);
    let http = reqwest::Client::new();

    let expired = link(&server, id, "job-x", 0).await;
    // A zero TTL expires at the current second; the next second it is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let resp = http.get(&expired).send().await.unwrap();
        if resp.status() == StatusCode::FORBIDDEN {
            assert!(resp.text().await.unwrap().contains("expired"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "token never expired");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let url = link(&server, id, "job-y", 600).await;
    let patch = |v: serde_json::Value| server.api(Method::PATCH, &format!("/api/v1/firmware/{id}")).json(&v).send();
    assert_eq!(patch(serde_json::json!({ "blocked": true })).await.unwrap().status(), 200);
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("blocked"));
    assert_eq!(patch(serde_json::json!({ "blocked": false, "public": true })).await.unwrap().status(), 200);
    assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);
    let open = server.device(&format!("/fw/{sha}.bin"));
    assert_eq!(http.get(&open).send().await.unwrap().status(), StatusCode::OK, "public firmware needs no token");
}
