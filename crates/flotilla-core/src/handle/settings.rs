//! The site's saved settings, through the handle (the file format lives in [`crate::settings`]).

use flotilla_proto::api::{SettingsView, SiteSettings};

use super::EngineHandle;
use super::audit::{DEFAULT_RETENTION_DAYS, DEFAULT_RETENTION_MAX};
use crate::config::MqttMode;
use crate::error::Result;
use crate::settings::{load, path, save};

impl EngineHandle {
    /// The saved settings, without the password.
    pub fn settings(&self) -> Result<SettingsView> {
        let saved = load(self.data_dir())?;
        Ok(self.settings_view(saved))
    }

    /// Validates and saves settings for the next start.
    pub async fn save_settings(&self, new: SiteSettings, actor: &str) -> Result<SettingsView> {
        let saved = save(self.data_dir(), new)?;
        self.shared.admission.apply(&saved);
        if let Ok(mut fleet) = self.fleet() {
            fleet.auth.approve_new = saved.approve_new_devices.unwrap_or(false);
            fleet.auth.refuse_unauthenticated = saved.refuse_unauthenticated.unwrap_or(false);
        }
        let view = self.settings_view(saved);
        self.record("settings.saved", actor, None, serde_json::to_value(&view.saved).unwrap_or_default()).await?;
        Ok(view)
    }

    fn settings_view(&self, saved: SiteSettings) -> SettingsView {
        // The retention, the device caps and the device identity policy apply without a restart:
        // they do not make one necessary.
        let live = |s: &SiteSettings| SiteSettings {
            event_retention_days: None,
            event_retention_max: None,
            new_devices_per_minute: None,
            max_devices: None,
            approve_new_devices: None,
            refuse_unauthenticated: None,
            ..s.clone()
        };
        let restart_required = live(&saved) != live(&self.shared.config.settings);
        let mqtt_password_set = saved.mqtt_password.is_some();
        let effective = self.effective_settings(&saved);
        SettingsView {
            saved: SiteSettings { mqtt_password: None, ..saved },
            effective,
            mqtt_password_set,
            restart_required,
            path: path(self.data_dir()).display().to_string(),
        }
    }

    /// What the running engine uses, every field filled in (flags given at start override the
    /// saved file, and show here as they are).
    fn effective_settings(&self, saved: &SiteSettings) -> SiteSettings {
        let c = &self.shared.config;
        let (mqtt, mqtt_listen, mqtt_user) = match &c.mqtt {
            MqttMode::Off => ("off".to_owned(), None, None),
            MqttMode::Embedded { listen } => ("embedded".to_owned(), Some(listen.to_string()), None),
            MqttMode::External { url, username, .. } => {
                let shown = crate::mqtt::parse_url(url).map(|u| u.to_string()).unwrap_or_default();
                (shown, None, username.clone())
            }
        };
        SiteSettings {
            device_listen: Some(self.shared.device_addr.to_string()),
            public_url: Some(self.shared.device_url.clone()),
            admin_listen: Some(self.shared.admin_addr.to_string()),
            mqtt: Some(mqtt),
            mqtt_listen,
            mqtt_user,
            mqtt_password: None,
            mdns: Some(self.advertiser.lock().map(|a| a.is_some()).unwrap_or(false)),
            event_retention_days: Some(saved.event_retention_days.unwrap_or(DEFAULT_RETENTION_DAYS)),
            event_retention_max: Some(saved.event_retention_max.unwrap_or(DEFAULT_RETENTION_MAX)),
            new_devices_per_minute: Some(self.shared.admission.caps().0),
            max_devices: Some(self.shared.admission.caps().1),
            approve_new_devices: Some(saved.approve_new_devices.unwrap_or(false)),
            refuse_unauthenticated: Some(saved.refuse_unauthenticated.unwrap_or(false)),
        }
    }
}
