//! `flotilla firmware edit|block|unblock|delete|suggest` and `keys export --json` against a real
//! engine: every change lands in the API's object, refusals carry the engine's words, and a
//! suggestion prints a command that works as printed.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{fails, json, ok};
use crate::support::{Server, image};

async fn add_device(server: &Server, mac: &str, model: &str, version: &str) {
    let body = json!({ "mac": mac, "family": "native", "model": model, "chip": "esp32", "version": version });
    let resp = server.api(Method::POST, "/api/v1/devices").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn firmware_is_edited_blocked_and_deleted_only_when_unused() {
    let server = Server::start().await;
    let (code, _) = server.upload(image("2.0.0", 70_000), &[]).await;
    assert_eq!(code, 201);

    let f = json(
        &server,
        &[
            "firmware",
            "edit",
            "2.0.0",
            "--channel",
            "beta",
            "--notes",
            "for line 3, then the rest",
            "--public",
            "--min-version",
            "1.5.0",
            "--json",
        ],
    );
    assert_eq!(
        (&f["channel"], &f["notes"], &f["public"], &f["min_version"]),
        (&json!("beta"), &json!("for line 3, then the rest"), &json!(true), &json!("1.5.0"))
    );
    assert_eq!(f, server.get_json::<Value>("/api/v1/firmware/2.0.0").await, "the API's own object");

    let text = ok(&server, &["firmware", "edit", "2.0.0", "--no-min-version", "--private", "--archive"]);
    assert!(text.starts_with("Changed firmware 1 (demo 2.0.0)."), "{text}");
    for line in ["min_version:    -", "public:         false", "archived:       true", "channel:        beta"] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let list = ok(&server, &["firmware", "list"]);
    assert!(list.lines().nth(1).unwrap().ends_with("archived"), "{list}");
    let f = json(&server, &["firmware", "edit", "2.0.0", "--unarchive", "--channel", "stable", "--json"]);
    assert_eq!((&f["archived"], &f["channel"], &f["min_version"]), (&json!(false), &json!("stable"), &Value::Null));

    let err = fails(&server, &["firmware", "edit", "2.0.0"], 2);
    assert!(err.contains("nothing to change"), "{err}");
    fails(&server, &["firmware", "edit", "2.0.0", "--block", "--unblock"], 2);
    fails(&server, &["firmware", "edit", "2.0.0", "--public", "--private"], 2);
    fails(&server, &["firmware", "edit", "2.0.0", "--channel", "nightly"], 2);
    let err = fails(&server, &["firmware", "edit", "9.9.9", "--block"], 2);
    assert!(err.contains("not found"), "{err}");

    assert_eq!(json(&server, &["firmware", "block", "2.0.0", "--json"])["blocked"], true);
    assert_eq!(json(&server, &["firmware", "unblock", "2.0.0", "--json"])["blocked"], false);
    assert!(ok(&server, &["firmware", "block", "2.0.0"]).contains("is blocked"));
    assert!(ok(&server, &["firmware", "edit", "2.0.0", "--unblock"]).contains("blocked:        false"));

    // A rollout uses it: deleting is refused with the engine's reason.
    add_device(&server, "02:00:00:00:0d:01", "demo", "1.0.0").await;
    ok(&server, &["rollout", "create", "--firmware", "2.0.0", "--target", "all"]);
    let err = fails(&server, &["firmware", "delete", "2.0.0"], 2);
    assert!(err.contains("is used by rollout 1") && err.contains("archive it"), "{err}");

    let (code, _) = server.upload(image("2.1.0", 71_000), &[]).await;
    assert_eq!(code, 201);
    let gone = json(&server, &["firmware", "delete", "2.1.0", "--json"]);
    assert_eq!(gone["version"], "2.1.0");
    let left = json(&server, &["firmware", "list", "--json"]);
    assert_eq!(left.as_array().unwrap().iter().map(|f| f["version"].clone()).collect::<Vec<_>>(), [json!("2.0.0")]);

    let key = json(&server, &["keys", "export", "--json"]);
    assert_eq!(key, json(&server, &["keys", "export", "--format", "json"]));
    assert_eq!(key["key_id"], left[0]["manifest"]["key_id"]);
}

#[tokio::test]
async fn suggestions_name_the_newest_firmware_per_channel_and_a_command_that_works() {
    let server = Server::start().await;
    let text = ok(&server, &["firmware", "suggest"]);
    assert!(text.starts_with("Nothing to roll out"), "{text}");

    let (code, stable) = server.upload(image("2.0.0", 72_000), &[]).await;
    assert_eq!(code, 201);
    let (code, beta) = server.upload(image("2.1.0", 73_000), &[("channel", "beta")]).await;
    assert_eq!(code, 201);
    let (stable_id, beta_id) = (stable["firmware"]["id"].as_i64().unwrap(), beta["firmware"]["id"].as_i64().unwrap());
    for (mac, version) in
        [("02:00:00:00:0e:01", "1.0.0"), ("02:00:00:00:0e:02", "1.0.0"), ("02:00:00:00:0e:03", "1.0.0")]
    {
        add_device(&server, mac, "demo", version).await;
    }
    add_device(&server, "02:00:00:00:0e:04", "demo", "2.0.0").await;
    add_device(&server, "02:00:00:00:0e:05", "other", "1.0.0").await;
    ok(&server, &["devices", "channel", "02:00:00:00:0e:03", "beta"]);
    ok(&server, &["devices", "label", "02:00:00:00:0e:01", "--add", "line-3"]);

    let list = json(&server, &["firmware", "suggest", "--json"]);
    assert_eq!(list, server.get_json::<Value>("/api/v1/firmware/suggestions").await, "the API's own objects");
    let by_channel = |c: &str| list.as_array().unwrap().iter().find(|s| s["channel"] == c).cloned().unwrap();
    let (s, b) = (by_channel("stable"), by_channel("beta"));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!((&s["model"], &s["firmware_id"], &s["outdated"]), (&json!("demo"), &json!(stable_id), &json!(2)));
    assert_eq!(
        (&b["firmware_id"], &b["firmware_version"], &b["outdated"]),
        (&json!(beta_id), &json!("2.1.0"), &json!(1))
    );

    let text = ok(&server, &["firmware", "suggest"]);
    assert!(text.contains("demo: 2.0.0 (stable, firmware 1) for 2 outdated devices, 2 online"), "{text}");
    let target = s["target"].as_str().unwrap();
    let command = format!("flotilla rollout create --firmware {stable_id} --target '{target}' --start");
    assert!(text.lines().any(|l| l.trim() == command), "{command:?} missing from:\n{text}");
    // The printed target is one the rollout planner takes, and picks exactly those devices.
    let preview =
        json(&server, &["rollout", "preview", "--firmware", &stable_id.to_string(), "--target", target, "--json"]);
    let mut macs: Vec<&str> =
        preview["devices"].as_array().unwrap().iter().map(|d| d["mac"].as_str().unwrap()).collect();
    macs.sort_unstable();
    assert_eq!(macs, ["02:00:00:00:0e:01", "02:00:00:00:0e:02"], "{preview}");

    let scoped = json(&server, &["firmware", "suggest", "--target", "label:line-3", "--json"]);
    assert_eq!(scoped.as_array().unwrap().len(), 1, "{scoped}");
    assert!(scoped[0]["target"].as_str().unwrap().starts_with("label:line-3 and "), "{scoped}");
    let text = ok(&server, &["firmware", "suggest", "--target", "label:nowhere"]);
    assert!(text.starts_with("Nothing to roll out"), "{text}");
    let err = fails(&server, &["firmware", "suggest", "--target", "colour:red"], 2);
    assert!(err.contains("unknown term"), "{err}");
}
