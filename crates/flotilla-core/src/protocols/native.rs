//! The native protocol: Flotilla's own device client, by HTTP pull or MQTT push
//! (`flotilla_proto::native`, `docs/device-api.md`).

use std::sync::{Arc, OnceLock};

use flotilla_proto::native::{Offer, TopicProfile, render_topic};
use flotilla_proto::{Device, Family};

use super::{Adapter, BoxFuture, Delivery, ProgressSource, Publish, VersionSource};
use crate::error::{CoreError, Result};
use crate::inventory::Transport;

/// The native adapter. Pull devices need nothing from it; push devices need an MQTT publisher,
/// which is set once the MQTT client is up.
#[derive(Debug, Default)]
pub struct Native {
    publisher: OnceLock<Arc<dyn Publish>>,
    profiles: Vec<TopicProfile>,
}

impl Native {
    pub fn new(profiles: Vec<TopicProfile>) -> Native {
        Native { publisher: OnceLock::new(), profiles }
    }

    /// Connects push delivery to an MQTT publisher.
    pub fn set_publisher(&self, p: Arc<dyn Publish>) {
        let _ = self.publisher.set(p);
    }

    pub fn profiles(&self) -> &[TopicProfile] {
        &self.profiles
    }

    fn profile(&self, name: &str) -> Option<&TopicProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

impl Adapter for Native {
    fn family(&self) -> Family {
        Family::Native
    }

    fn delivery(&self, transport: &Transport) -> Delivery {
        match transport {
            Transport::Pull => Delivery::Pull,
            Transport::Mqtt { .. } => Delivery::Push,
        }
    }

    fn progress_source(&self) -> ProgressSource {
        ProgressSource::DeviceReports
    }

    fn version_source(&self, transport: &Transport) -> VersionSource {
        match transport {
            Transport::Pull => VersionSource::CheckIn,
            Transport::Mqtt { .. } => VersionSource::Presence,
        }
    }

    fn command<'a>(
        &'a self,
        device: &'a Device,
        transport: &'a Transport,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Transport::Mqtt { profile, owner } = transport else { return Ok(()) };
            let profile = self
                .profile(profile)
                .ok_or_else(|| CoreError::BadRequest(format!("unknown MQTT topic profile {profile:?}")))?;
            let publisher = self.publisher.get().ok_or_else(|| CoreError::Refused("MQTT is not connected".into()))?;
            let id = device.device_id.as_deref().unwrap_or(&device.mac);
            let topic = render_topic(&profile.command, id, owner.as_deref());
            let payload = serde_json::to_vec(offer).map_err(|e| CoreError::BadRequest(e.to_string()))?;
            publisher.publish(&topic, payload, false).await
        })
    }
}
