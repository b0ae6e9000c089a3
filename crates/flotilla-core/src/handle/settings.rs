//! The site's saved settings, through the handle (the file format lives in [`crate::settings`]).

use flotilla_proto::api::{SettingsView, SiteSettings};

use super::EngineHandle;
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
        let view = self.settings_view(saved);
        self.record("settings.saved", actor, None, serde_json::to_value(&view.saved).unwrap_or_default()).await?;
        Ok(view)
    }

    fn settings_view(&self, saved: SiteSettings) -> SettingsView {
        let restart_required = saved != self.shared.config.settings;
        let mqtt_password_set = saved.mqtt_password.is_some();
        SettingsView {
            saved: SiteSettings { mqtt_password: None, ..saved },
            mqtt_password_set,
            restart_required,
            path: path(self.data_dir()).display().to_string(),
        }
    }
}
