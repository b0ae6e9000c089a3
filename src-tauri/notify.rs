//! Desktop notifications for what a technician must not miss while looking elsewhere: a rollout
//! completed, or paused itself (a gate tripped). Pauses by a person are not announced — they
//! know.
//!
//! A notification that cannot be shown (no notification daemon, e.g. under Xvfb) is logged and
//! forgotten; it must never stop the app.

use flotilla_core::EngineHandle;
use flotilla_proto::Event;
use tauri::{AppHandle, Runtime};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::broadcast::error::RecvError;

/// What to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub body: String,
}

/// The rollout an event is about, when it deserves a notification.
pub fn rollout_of_interest(event: &Event) -> Option<i64> {
    let interesting = match event.kind.as_str() {
        "rollout.completed" => true,
        "rollout.paused" => event.actor == "engine",
        _ => false,
    };
    if !interesting {
        return None;
    }
    event
        .data
        .get("id")
        .and_then(serde_json::Value::as_i64)
        .or_else(|| event.subject.as_deref().and_then(|s| s.strip_prefix("rollout:")).and_then(|id| id.parse().ok()))
}

/// The notification for `event` about the rollout `name` (`summary`: its device counts).
pub fn notice(event: &Event, name: &str, summary: &str) -> Option<Notice> {
    match event.kind.as_str() {
        "rollout.completed" => {
            Some(Notice { title: format!("Rollout “{name}” completed"), body: summary.to_owned() })
        }
        "rollout.paused" => {
            let reason = event.data.get("reason").and_then(serde_json::Value::as_str).unwrap_or("a gate tripped");
            Some(Notice { title: format!("Rollout “{name}” paused itself"), body: format!("{reason}. {summary}") })
        }
        _ => None,
    }
}

/// Follows the engine's events until it stops, notifying as it goes.
pub async fn follow<R: Runtime>(app: AppHandle<R>, engine: EngineHandle) {
    let mut events = engine.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "notifications fell behind the event stream");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(id) = rollout_of_interest(&event) else { continue };
        let (name, summary) = match engine.get_rollout(id).await {
            Ok(d) => {
                let c = &d.rollout.counts;
                let failed = c.failed + c.timed_out;
                (d.rollout.name, format!("{} of {} devices updated, {failed} failed.", c.succeeded, c.total))
            }
            Err(_) => (format!("#{id}"), String::new()),
        };
        let Some(n) = notice(&event, &name, &summary) else { continue };
        tracing::info!(title = %n.title, body = %n.body, "notification");
        if let Err(e) = app.notification().builder().title(&n.title).body(n.body.trim()).show() {
            tracing::warn!(error = %e, "cannot show a desktop notification");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn event(kind: &str, actor: &str, data: serde_json::Value) -> Event {
        Event {
            id: 1,
            at: "2026-01-01T00:00:00Z".into(),
            kind: kind.into(),
            actor: actor.into(),
            subject: Some("rollout:7".into()),
            data,
        }
    }

    #[test]
    fn completed_and_self_paused_rollouts_are_announced() {
        let done = event("rollout.completed", "engine", json!({"id": 7, "state": "completed"}));
        assert_eq!(rollout_of_interest(&done), Some(7));
        assert_eq!(
            notice(&done, "lobby", "48 of 48 devices updated, 0 failed.").unwrap(),
            Notice {
                title: "Rollout “lobby” completed".into(), body: "48 of 48 devices updated, 0 failed.".into()
            }
        );
        let gate = event(
            "rollout.paused",
            "engine",
            json!({"id": 7, "reason": "wave 2 of 4: 2 of 5 devices failed (threshold 10%)"}),
        );
        assert_eq!(rollout_of_interest(&gate), Some(7));
        let n = notice(&gate, "lobby", "3 of 48 devices updated, 2 failed.").unwrap();
        assert_eq!(n.title, "Rollout “lobby” paused itself");
        assert!(n.body.starts_with("wave 2 of 4: 2 of 5 devices failed"), "{}", n.body);
    }

    #[test]
    fn people_and_other_events_are_not_announced() {
        assert_eq!(rollout_of_interest(&event("rollout.paused", "admin-api", json!({"id": 7}))), None);
        assert_eq!(rollout_of_interest(&event("rollout.running", "engine", json!({"id": 7}))), None);
        assert_eq!(rollout_of_interest(&event("job.failed", "engine", json!({"rollout": 7}))), None);
        // The id comes from the subject when the data lacks it.
        assert_eq!(rollout_of_interest(&event("rollout.completed", "engine", json!({}))), Some(7));
    }
}
