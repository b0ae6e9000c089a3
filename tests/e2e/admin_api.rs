//! The admin API: every route behind the token, errors in one shape, bad input loses nothing,
//! live events.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use std::time::Duration;

use crate::support::{Server, image, next_event, stored_files};

#[tokio::test]
async fn every_route_but_health_answers_401_without_the_token() {
    let server = Server::start().await;
    let spec: Value = server.get_json("/api/v1/openapi.json").await;
    let paths = spec["paths"].as_object().expect("paths in the OpenAPI description");
    assert!(paths.len() >= 10, "the description lists the routes: {paths:?}");
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{ref}", "1")
            .replace("{mac}", "aa:bb:cc:dd:ee:ff")
            .replace("{id}", "1")
            .replace("{action}", "start");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = server.admin(&concrete);
            let without = http.request(m.clone(), &url).send().await.unwrap();
            let wrong = http.request(m.clone(), &url).bearer_auth("not-the-token").send().await.unwrap();
            if path == "/health" {
                assert_eq!(without.status(), StatusCode::OK);
                continue;
            }
            for resp in [without, wrong] {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 14, "checked {checked} routes");
    // Routes that do not exist do not reveal that without a token either.
    assert_eq!(http.get(server.admin("/api/v1/nope")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let resp = server.api(Method::GET, "/api/v1/nope").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "not_found");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let server = Server::start().await;

    // Not an image at all.
    let (status, body) = server.upload(b"<html>not firmware</html>".to_vec(), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_image");
    assert!(body["error"]["message"].as_str().unwrap().contains("offset"), "{body}");

    // A truncated image.
    let mut truncated = image("1.0.0", 100_000);
    truncated.truncate(50_000);
    let (status, body) = server.upload(truncated, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Larger than the OTA slot.
    let (status, body) = server.upload(image("1.0.0", 4_200_000), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("OTA slot"), "{body}");

    // A version that is not SemVer, unless one is given.
    let (status, body) = server.upload(image("nightly-42", 40_000), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("SemVer"), "{body}");
    assert!(stored_files(server.data_dir()).is_empty(), "nothing was stored: {:?}", stored_files(server.data_dir()));
    // Nor listed, nor recorded as imported (a row without its file would pass the check above).
    let listed: Vec<Value> = server.get_json("/api/v1/firmware").await;
    assert!(listed.is_empty(), "{listed:#?}");
    let imported: Value = server.get_json("/api/v1/events?kind=firmware.imported").await;
    assert_eq!(imported["events"], json!([]), "{imported:#}");
    let (status, body) = server.upload(image("nightly-42", 40_000), &[("version", "0.9.0")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["firmware"]["version"], "0.9.0");

    // The same bytes again: idempotent. Same version, other bytes: refused.
    let (status, body) = server.upload(image("nightly-42", 40_000), &[("version", "0.9.0")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);
    let (status, body) = server.upload(image("nightly-43", 40_001), &[("version", "0.9.0")]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("already imported"), "{body}");
    assert_eq!(stored_files(server.data_dir()).len(), 1, "exactly the one good firmware is stored");
    let listed: Vec<Value> = server.get_json("/api/v1/firmware").await;
    assert_eq!(listed.iter().map(|f| f["version"].clone()).collect::<Vec<_>>(), [json!("0.9.0")], "{listed:#?}");
    let imported: Value = server.get_json("/api/v1/events?kind=firmware.imported").await;
    assert_eq!(imported["events"].as_array().map(Vec::len), Some(1), "{imported:#}");

    // Malformed JSON and unknown fields.
    let resp = server
        .api(Method::POST, "/api/v1/firmware/import")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "bad_request");
    let resp = server
        .api(Method::POST, "/api/v1/firmware/import")
        .json(&json!({ "path": "relative.bin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = server
        .api(Method::POST, "/api/v1/firmware/import")
        .json(&json!({ "path": "/nonexistent/fw.bin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("/nonexistent/fw.bin"));
    let resp = server.api(Method::GET, "/api/v1/devices/not-a-mac").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = server.api(Method::GET, "/api/v1/events?limit=lots").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "bad_request");
}

#[tokio::test]
async fn import_by_path_inspect_block_and_delete() {
    let server = Server::start().await;
    let file = crate::support::write(server.data_dir(), "upload.bin", &image("1.2.0", 80_000));
    let resp = server
        .api(Method::POST, "/api/v1/firmware/import")
        .json(&json!({ "path": file, "channel": "beta", "notes": "line 3 pilot" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let fw: Value = resp.json::<Value>().await.unwrap()["firmware"].clone();
    assert_eq!(fw["channel"], "beta");
    assert_eq!(fw["model"], "demo");
    assert_eq!(fw["manifest"]["manifest"]["sha256"], fw["sha256"]);

    let info: Value = server
        .api(Method::POST, "/api/v1/firmware/inspect")
        .body(image("7.7.7", 30_000))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["version"], "7.7.7");
    assert_eq!(info["chip"], "esp32");
    assert_eq!(
        server.api(Method::GET, "/api/v1/firmware").send().await.unwrap().json::<Vec<Value>>().await.unwrap().len(),
        1,
        "inspect imports nothing"
    );

    // By sha256 prefix and by version.
    let sha = fw["sha256"].as_str().unwrap();
    for reference in [&sha[..10], "1.2.0", "v1.2.0"] {
        let got: Value = server.get_json(&format!("/api/v1/firmware/{reference}")).await;
        assert_eq!(got["id"], fw["id"], "{reference}");
    }
    let resp = server.api(Method::DELETE, &format!("/api/v1/firmware/{}", fw["id"])).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(stored_files(server.data_dir()).is_empty());
    assert_eq!(server.api(Method::GET, "/api/v1/firmware/1.2.0").send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn devices_are_keyed_by_mac_and_labelled() {
    let server = Server::start().await;
    let add = |body: Value| server.api(Method::POST, "/api/v1/devices").json(&body).send();
    let d: Value = add(json!({ "mac": "AA-BB-CC-00-11-22", "ip": "10.1.2.3", "family": "tasmota" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["mac"], "aa:bb:cc:00:11:22");
    // The DHCP lease changed: same device, new address.
    let d: Value = add(json!({ "mac": "aabbcc001122", "ip": "10.1.2.99" })).await.unwrap().json().await.unwrap();
    assert_eq!(d["ip"], "10.1.2.99");
    assert_eq!(d["family"], "tasmota");
    assert_eq!(add(json!({ "mac": "nope" })).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(add(json!({ "mac": "aabbcc001122", "ip": "ten.one" })).await.unwrap().status(), StatusCode::BAD_REQUEST);

    let resp = server
        .api(Method::POST, "/api/v1/devices/aa:bb:cc:00:11:22/labels")
        .json(&json!({ "add": ["line-3", "pumps"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["labels"], json!(["line-3", "pumps"]));
    let resp = server
        .api(Method::POST, "/api/v1/devices/aa:bb:cc:00:11:22/labels")
        .json(&json!({ "add": ["has space"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let list: Vec<Value> = server.get_json("/api/v1/devices").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["labels"], json!(["line-3", "pumps"]));
    let resp = server.api(Method::GET, "/api/v1/devices/00:00:00:00:00:01").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn live_events_stream_and_replay_after_reconnect() {
    let server = Server::start().await;
    let mut stream = server.api(Method::GET, "/api/v1/events/stream").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut buf = String::new();
    let (_, body) = server.upload(image("5.0.0", 20_000), &[]).await;
    let ev = next_event(&mut stream, &mut buf, "firmware.imported", Duration::from_secs(10)).await;
    assert_eq!(ev["data"]["id"], body["firmware"]["id"]);
    assert_eq!(ev["actor"], "admin-api");
    let seen = ev["id"].as_i64().unwrap();
    drop(stream);

    // Missed while disconnected, replayed on reconnect (EventSource style: token in the query).
    server.api(Method::POST, "/api/v1/devices").json(&json!({ "mac": "aa:bb:cc:00:00:01" })).send().await.unwrap();
    let url = format!("{}?token={}", server.admin("/api/v1/events/stream"), server.token);
    let mut again = reqwest::Client::new().get(url).header("Last-Event-ID", seen.to_string()).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let mut buf = String::new();
    let ev = next_event(&mut again, &mut buf, "device.discovered", Duration::from_secs(10)).await;
    assert_eq!(ev["data"]["mac"], "aa:bb:cc:00:00:01");
}
