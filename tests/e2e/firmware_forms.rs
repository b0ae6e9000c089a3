//! One firmware, one identity: the SHA-256 of its image, whether it came as `app.bin` or
//! `app.bin.gz`; the gzip form kept beside the image and served on request (issue 9, finding 6).

use flotilla_imagegen::gzip;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Server, image, stored_files};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn preview(server: &Server, bytes: &[u8]) -> Value {
    let resp = server.api(Method::POST, "/api/v1/firmware/inspect").body(bytes.to_vec()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// A download link of firmware `id`: its image, or its gzip form.
async fn link(server: &Server, id: &Value, gzip: bool) -> reqwest::Response {
    server
        .api(Method::POST, &format!("/api/v1/firmware/{id}/download-link"))
        .json(&json!({ "job": "job-7", "gzip": gzip }))
        .send()
        .await
        .unwrap()
}

async fn url(server: &Server, id: &Value, gzip: bool) -> String {
    let resp = link(server, id, gzip).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned()
}

/// GET, HEAD and two ranges of `url` serve exactly `bytes`, tagged with their SHA-256.
async fn serves(url: &str, bytes: &[u8]) {
    let http = reqwest::Client::new();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    assert_eq!(resp.headers()[header::ETAG], format!("\"{}\"", sha(bytes)).as_str(), "{url}");
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], bytes.len().to_string().as_str(), "{url}");
    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none(), "the gzip form is a file, not an encoding");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes, "{url}");
    let head = http.head(url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_LENGTH], bytes.len().to_string().as_str(), "{url}");
    let len = bytes.len();
    for (range, start, end) in [("bytes=0-0".to_owned(), 0, 1), (format!("bytes={}-", len - 100), len - 100, len)] {
        let resp = http.get(url).header(header::RANGE, &range).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{url} {range}");
        assert_eq!(resp.headers()[header::CONTENT_RANGE], format!("bytes {start}-{}/{len}", end - 1).as_str());
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &bytes[start..end], "{url} {range}");
    }
}

#[tokio::test]
async fn gzip_then_raw_is_one_firmware_with_both_forms() {
    let server = Server::start().await;
    let raw = image("2.1.0", 150_000);
    let gz = gzip(&raw);
    let (image_sha, gz_sha) = (sha(&raw), sha(&gz));

    // The preview of the gzip names the image's SHA-256, the one the library will show.
    let report = preview(&server, &gz).await;
    assert_eq!(report["verdict"]["kind"], "ready");
    assert_eq!(report["sha256"], image_sha);
    assert_eq!(report["gzip"], json!({ "size": gz.len(), "sha256": gz_sha }));
    assert_eq!(report["would_record"]["manifest"]["sha256"], image_sha);
    assert_eq!(report["would_record"]["manifest"]["size"], raw.len());

    let (status, body) = server.upload(gz.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fw = body["firmware"].clone();
    assert_eq!(fw["sha256"], image_sha);
    assert_eq!(fw["size"], raw.len());
    assert_eq!(fw["format"], "esp32");
    assert_eq!(fw["image"]["gzip"], json!({ "size": gz.len(), "sha256": gz_sha }));
    assert_eq!(fw["manifest"]["manifest"]["sha256"], image_sha, "the signed manifest names the image");
    assert_eq!(stored_files(server.data_dir()), vec![image_sha.clone(), format!("{image_sha}.gz")]);

    // The raw image is the same firmware.
    let report = preview(&server, &raw).await;
    assert_eq!(
        report["verdict"],
        json!({ "kind": "duplicate", "firmware": fw["id"], "version": "2.1.0", "model": "demo", "adds_gzip": false })
    );
    let (status, body) = server.upload(raw.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["created"], &body["firmware"]["id"]), (&json!(false), &fw["id"]));
    let list: Vec<Value> = server.get_json("/api/v1/firmware").await;
    assert_eq!(list.len(), 1);

    // Both forms downloadable with the same per-job token: the image by default, the gzip form
    // at `.gz` (or `.bin.gz`).
    let image_url = url(&server, &fw["id"], false).await;
    assert!(image_url.contains(&format!("/fw/{image_sha}?t=")), "{image_url}");
    serves(&image_url, &raw).await;
    let gz_url = url(&server, &fw["id"], true).await;
    assert!(gz_url.contains(&format!("/fw/{image_sha}.gz?t=")), "{gz_url}");
    serves(&gz_url, &gz).await;
    serves(&image_url.replace(&format!("{image_sha}?"), &format!("{image_sha}.bin.gz?")), &gz).await;
    serves(&image_url.replace(&format!("{image_sha}?"), &format!("{image_sha}.bin?")), &raw).await;
    let http = reqwest::Client::new();
    let no_token = server.device(&format!("/fw/{image_sha}.gz"));
    assert_eq!(http.get(&no_token).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // Deleting the firmware deletes both forms.
    let resp = server.api(Method::DELETE, &format!("/api/v1/firmware/{}", fw["id"])).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(stored_files(server.data_dir()).is_empty(), "{:?}", stored_files(server.data_dir()));
    assert_eq!(http.get(&gz_url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn raw_then_gzip_adds_the_gzip_form_which_survives_a_restart() {
    let server = Server::start().await;
    let raw = image("2.2.0", 120_000);
    let gz = gzip(&raw);
    let (image_sha, gz_sha) = (sha(&raw), sha(&gz));
    let (status, body) = server.upload(raw.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fw = body["firmware"].clone();
    assert_eq!(fw["image"]["gzip"], Value::Null);

    // No gzip form yet: no link to one, and the device server says so.
    assert_eq!(link(&server, &fw["id"], true).await.status(), StatusCode::NOT_FOUND);
    let image_url = url(&server, &fw["id"], false).await;
    let gz_url = image_url.replace(&format!("{image_sha}?"), &format!("{image_sha}.gz?"));
    let resp = reqwest::get(&gz_url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("no .bin.gz form"));

    // The gzip of it: "already imported", and the firmware gains its gzip form.
    let report = preview(&server, &gz).await;
    assert_eq!(report["sha256"], image_sha, "the preview shows the hash the library shows");
    assert_eq!(report["verdict"]["kind"], "duplicate");
    assert_eq!(report["verdict"]["adds_gzip"], true);
    let (status, body) = server.upload(gz.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["created"], &body["gzip_added"]), (&json!(false), &json!(true)));
    assert_eq!(body["firmware"]["id"], fw["id"]);
    assert_eq!(body["firmware"]["sha256"], image_sha);
    assert_eq!(body["firmware"]["image"]["gzip"]["sha256"], gz_sha);
    assert_eq!(preview(&server, &gz).await["verdict"]["adds_gzip"], false, "only once");
    let (_, again) = server.upload(gz.clone(), &[]).await;
    assert_eq!(again["gzip_added"], false);
    serves(&gz_url, &gz).await;
    serves(&image_url, &raw).await;
    let changed: Value = server.get_json("/api/v1/events?kind=firmware.changed").await;
    assert_eq!(changed["events"][0]["data"]["change"]["gzip"]["sha256"], gz_sha, "{changed}");

    // After a restart both forms are still there and served; the start-up sweep keeps the `.gz`.
    let (status, _, dir) = server.stop();
    assert!(status.success());
    let server = Server::start_in(dir).await;
    assert_eq!(stored_files(server.data_dir()), vec![image_sha.clone(), format!("{image_sha}.gz")]);
    serves(&url(&server, &fw["id"], true).await, &gz).await;
    serves(&url(&server, &fw["id"], false).await, &raw).await;
}

#[tokio::test]
async fn a_data_dir_from_before_converts_its_gzip_firmware_at_start() {
    use flotilla_store::rusqlite::{Connection, params};

    let server = Server::start().await;
    let raw = image("2.3.0", 100_000);
    let gz = gzip(&raw);
    let (image_sha, gz_sha) = (sha(&raw), sha(&gz));
    let (status, body) = server.upload(gz.clone(), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fw = body["firmware"].clone();
    let (status, _, dir) = server.stop();
    assert!(status.success());

    // Rewrite it the way versions before the image identity stored a gzip import: under the
    // gzip file's SHA-256, the gzip file alone, the image facts of the file as given.
    let mut image_json = fw["image"].clone();
    image_json["format"] = json!("gzip");
    image_json["inner_format"] = json!("esp32");
    image_json["size"] = json!(gz.len());
    image_json["sha256"] = json!(gz_sha);
    image_json.as_object_mut().unwrap().remove("gzip");
    let mut manifest = fw["manifest"].clone();
    manifest["manifest"]["sha256"] = json!(gz_sha);
    manifest["manifest"]["size"] = json!(gz.len());
    let db = Connection::open(dir.path().join("flotilla.db")).unwrap();
    let n = db
        .execute(
            "UPDATE firmware SET sha256 = ?2, format = 'gzip', size = ?3, image_json = ?4, manifest_json = ?5 WHERE id = ?1",
            params![fw["id"].as_i64().unwrap(), gz_sha, gz.len() as i64, image_json.to_string(), manifest.to_string()],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let store = dir.path().join("firmware");
    std::fs::remove_file(store.join(&image_sha)).unwrap();
    std::fs::remove_file(store.join(format!("{image_sha}.gz"))).unwrap();
    std::fs::write(store.join(&gz_sha), &gz).unwrap();

    // Started again, the firmware goes by its image, with its gzip form, both served.
    let server = Server::start_in(dir).await;
    let now: Value = server.get_json(&format!("/api/v1/firmware/{}", fw["id"])).await;
    assert_eq!(now["sha256"], image_sha, "{now}");
    assert_eq!((&now["size"], &now["format"]), (&json!(raw.len()), &json!("esp32")));
    assert_eq!(now["image"]["gzip"], json!({ "size": gz.len(), "sha256": gz_sha }));
    assert_eq!(now["manifest"]["manifest"]["sha256"], image_sha);
    assert_eq!(now["manifest"], fw["manifest"], "signed anew: the manifest an import of the image signs");
    assert_eq!((&now["version"], &now["model"]), (&fw["version"], &fw["model"]));
    assert_eq!(stored_files(server.data_dir()), vec![image_sha.clone(), format!("{image_sha}.gz")]);
    serves(&url(&server, &fw["id"], false).await, &raw).await;
    serves(&url(&server, &fw["id"], true).await, &gz).await;
    let changed: Value = server.get_json("/api/v1/events?kind=firmware.changed").await;
    assert_eq!(changed["events"].as_array().unwrap().len(), 1, "{changed}");
    assert_eq!(changed["events"][0]["data"]["previous_sha256"], gz_sha);
    // And the raw image is that firmware, not a new one.
    assert_eq!(preview(&server, &raw).await["verdict"]["firmware"], fw["id"]);

    // A second start has nothing left to convert.
    let (status, _, dir) = server.stop();
    assert!(status.success());
    let server = Server::start_in(dir).await;
    let changed: Value = server.get_json("/api/v1/events?kind=firmware.changed").await;
    assert_eq!(changed["events"].as_array().unwrap().len(), 1);
    serves(&url(&server, &fw["id"], true).await, &gz).await;
}
