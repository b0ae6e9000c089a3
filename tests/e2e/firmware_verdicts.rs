//! The import preview tells the truth: `POST /api/v1/firmware/inspect` (the UI's drop preview),
//! its path variant (the desktop app's drops) and `flotilla firmware inspect` give the verdict the
//! import then gives, with the same message, for every way an import can go (issue 9, finding 5).

use flotilla_imagegen::{Esp32Chip, Esp32Image, FlashSize};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, flotilla_bin, image, stored_files, write};

/// The preview of `bytes` with import `options` (as the UI sends them: raw body, options in the
/// query).
async fn preview(server: &Server, bytes: &[u8], options: &[(&str, &str)]) -> Value {
    let query: Vec<String> = options.iter().map(|(k, v)| format!("{k}={}", v.replace(' ', "%20"))).collect();
    let resp = server
        .api(Method::POST, &format!("/api/v1/firmware/inspect?{}", query.join("&")))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "a file that parses gets a report");
    resp.json().await.unwrap()
}

/// A 1.5 MB ESP32 image whose header says the flash is 1 MB.
fn bigger_than_its_flash(version: &str) -> Vec<u8> {
    Esp32Image::new()
        .chip(Esp32Chip::Esp32)
        .version(version)
        .project("demo")
        .flash_size(FlashSize::Mb1)
        .size(1_500_000)
        .build()
}

#[tokio::test]
async fn the_preview_answers_what_the_import_then_does() {
    let server = Server::start().await;
    let (status, first) = server.upload(image("1.0.0", 40_000), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = first["firmware"]["id"].clone();

    let no_version = image("nightly-42", 30_000);
    let long_model = "m".repeat(65);
    // (what, the file, the import options, the verdict expected)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("larger than the OTA slot", image("1.0.1", 4_200_000), vec![], "refused"),
        ("larger than the flash its header declares", bigger_than_its_flash("1.0.2"), vec![], "refused"),
        ("the same version with other bytes", image("1.0.0", 40_001), vec![], "refused"),
        ("no SemVer version", no_version.clone(), vec![], "refused"),
        ("a malformed model", image("1.0.3", 30_000), vec![("model", long_model.as_str())], "refused"),
        ("a blank model (the image's is used)", image("1.0.4", 30_000), vec![("model", " ")], "ready"),
        ("no SemVer version, one given", no_version, vec![("version", "0.9.0"), ("channel", "beta")], "ready"),
        ("the same bytes again", image("1.0.0", 40_000), vec![], "duplicate"),
        ("a new version", image("1.1.0", 50_000), vec![], "ready"),
    ];
    for (what, bytes, options, kind) in cases {
        let report = preview(&server, &bytes, &options).await;
        let verdict = &report["verdict"];
        assert_eq!(verdict["kind"], kind, "{what}: {report}");
        assert_eq!(report["library_checked"], true, "{what}");
        let stored_before = stored_files(server.data_dir());
        let listed_before: Vec<Value> = server.get_json("/api/v1/firmware").await;
        let (status, body) = server.upload(bytes, &options).await;
        match kind {
            "refused" => {
                assert!(status.is_client_error(), "{what}: import answered {status} {body}");
                assert_eq!(body["error"]["code"], verdict["code"], "{what}");
                assert_eq!(body["error"]["message"], verdict["message"], "{what}: the preview quotes the import");
                assert_eq!(report["would_record"], Value::Null, "{what}");
                assert_eq!(stored_files(server.data_dir()), stored_before, "{what}: a refusal stores nothing");
                let listed: Vec<Value> = server.get_json("/api/v1/firmware").await;
                assert_eq!(listed, listed_before, "{what}: and records nothing");
            }
            "ready" => {
                assert_eq!(status, StatusCode::CREATED, "{what}: {body}");
                let plan = &report["would_record"];
                let fw = &body["firmware"];
                for field in ["version", "model", "channel", "min_version", "public", "notes"] {
                    assert_eq!(fw[field], plan[field], "{what}: {field}");
                }
                assert_eq!(fw["manifest"]["manifest"], plan["manifest"], "{what}: the manifest it said it would sign");
                assert_eq!(fw["sha256"], report["sha256"], "{what}");
            }
            _ => {
                assert_eq!(status, StatusCode::OK, "{what}: {body}");
                assert_eq!(body["created"], false);
                assert_eq!(body["firmware"]["id"], verdict["firmware"], "{what}");
                assert_eq!(verdict["firmware"], first_id);
                assert_eq!((&verdict["version"], &verdict["adds_gzip"]), (&json!("1.0.0"), &json!(false)));
            }
        }
    }
    // What was just imported is now a duplicate, and its version taken.
    let again = preview(&server, &image("1.1.0", 50_000), &[]).await;
    assert_eq!(again["verdict"]["kind"], "duplicate", "{again}");
    let taken = preview(&server, &image("1.1.0", 50_001), &[]).await;
    assert_eq!(taken["verdict"]["code"], "conflict", "{taken}");
    let flash = preview(&server, &bigger_than_its_flash("1.0.2"), &[]).await;
    let message = flash["verdict"]["message"].as_str().unwrap();
    assert!(message.contains("1500000 bytes") && message.contains("1MB flash (1048576 bytes)"), "{message}");
}

#[tokio::test]
async fn the_desktop_path_preview_gives_the_same_verdicts() {
    let server = Server::start().await;
    let (status, _) = server.upload(image("2.0.0", 40_000), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    for (name, bytes, extra, kind) in [
        ("big.bin", image("2.0.1", 4_200_000), json!({}), "refused"),
        ("taken.bin", image("2.0.0", 40_001), json!({}), "refused"),
        ("flash.bin", bigger_than_its_flash("2.0.2"), json!({}), "refused"),
        ("renamed.bin", image("2.0.0", 40_001), json!({ "version": "2.0.5" }), "ready"),
        ("same.bin", image("2.0.0", 40_000), json!({}), "duplicate"),
    ] {
        let path = write(server.data_dir(), name, &bytes);
        let mut body = json!({ "path": path });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let by_path: Value = server.post_json("/api/v1/firmware/inspect", &body).await;
        assert_eq!(by_path["verdict"]["kind"], kind, "{name}: {by_path:#}");
        let options: Vec<(&str, &str)> =
            extra.as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
        let by_bytes = preview(&server, &bytes, &options).await;
        assert_eq!(by_path, by_bytes, "{name}");
        let imported = server.api(Method::POST, "/api/v1/firmware/import").json(&body).send().await.unwrap();
        let status = imported.status();
        let answer: Value = imported.json().await.unwrap();
        match by_path["verdict"]["kind"].as_str().unwrap() {
            "refused" => assert_eq!(answer["error"]["message"], by_path["verdict"]["message"], "{name}"),
            "ready" => assert_eq!(status, StatusCode::CREATED, "{name}: {answer}"),
            _ => assert_eq!(status, StatusCode::OK, "{name}: {answer}"),
        }
    }
    // Not an image: an error, as for import.
    let junk = write(server.data_dir(), "junk.bin", b"<html>");
    let resp =
        server.api(Method::POST, "/api/v1/firmware/inspect").json(&json!({ "path": junk })).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "invalid_image");
}

fn inspect_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(flotilla_bin())
        .args(["firmware", "inspect"])
        .args(args)
        .env_remove("FLOTILLA_API")
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .unwrap()
}

fn report_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn inspect_exits_2_when_the_import_would_refuse() {
    let server = Server::start().await;
    let dir = server.data_dir();
    let big = write(dir, "big.bin", &image("3.0.0", 4_200_000));
    let flash = write(dir, "flash.bin", &bigger_than_its_flash("3.0.1"));
    let good = write(dir, "good.bin", &image("3.0.2", 60_000));
    let (big, flash, good) = (big.to_str().unwrap(), flash.to_str().unwrap(), good.to_str().unwrap());

    // Offline: the rules that need no library, the same message the engine's import gives.
    let out = inspect_cli(&[big, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let offline = report_of(&out);
    assert_eq!(offline["verdict"]["kind"], "refused");
    assert_eq!(offline["library_checked"], false);
    assert_eq!(offline["version"], "3.0.0", "the image facts are at the top level, as before");
    let (_, refused) = server.upload(std::fs::read(big).unwrap(), &[]).await;
    assert_eq!(offline["verdict"]["message"], refused["error"]["message"]);
    let human = inspect_cli(&[big]);
    assert_eq!(human.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&human.stdout).contains("verdict:"), "{}", String::from_utf8_lossy(&human.stdout));
    assert!(String::from_utf8_lossy(&human.stderr).contains("OTA slot"), "{}", String::from_utf8_lossy(&human.stderr));
    let out = inspect_cli(&[flash]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1MB flash"), "{}", String::from_utf8_lossy(&out.stderr));
    // With a larger slot the 4.2 MB image still cannot work: its header says 4 MB of flash.
    let out = inspect_cli(&[big, "--max-image-size", "8000000", "--json"]);
    assert!(report_of(&out)["verdict"]["message"].as_str().unwrap().contains("4MB flash"));
    let out = inspect_cli(&[good]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready to import as demo 3.0.2"));

    // With --check the engine's library counts too: a taken version is refused, the same bytes
    // are already there (exit 0), and the JSON is the admin API's report.
    let (status, _) = server.upload(image("3.0.2", 60_000), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let taken = write(dir, "taken.bin", &image("3.0.2", 60_001));
    let taken = taken.to_str().unwrap();
    let data = dir.to_str().unwrap();
    assert_eq!(inspect_cli(&[taken]).status.code(), Some(0), "offline the library is not checked");
    let out = inspect_cli(&[taken, "--check", "--json", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let checked = report_of(&out);
    assert_eq!(checked, preview(&server, &std::fs::read(taken).unwrap(), &[]).await);
    assert_eq!(checked["verdict"]["code"], "conflict");
    let out = inspect_cli(&[good, "--check", "--json", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(report_of(&out)["verdict"]["kind"], "duplicate");
    let out = inspect_cli(&[taken, "--check", "--version", "3.0.3", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready to import as demo 3.0.3"));

    // --check with no engine to ask: exit 3, as every client command.
    let empty = tempfile::tempdir().unwrap();
    let out = inspect_cli(&[good, "--check", "--data-dir", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}
