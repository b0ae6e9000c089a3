//! The engine's TLS as its operations see it: the status block, `https://` offers for devices
//! that declared TLS, and the embedded broker's MQTT-over-TLS listener ([`crate::tls`]).

use flotilla_proto::api::TlsStatus;
use flotilla_proto::native::Offer;

use super::EngineHandle;
use crate::config::MqttMode;
use crate::error::{CoreError, Result};

impl EngineHandle {
    /// `tls` of `GET /api/v1/status` (and `flotilla keys tls`).
    pub fn tls_status(&self) -> TlsStatus {
        let Some((t, site)) = self.shared.tls.as_ref().and_then(|t| Some((t, t.site()?))) else {
            return TlsStatus {
                enabled: false,
                fingerprint: None,
                cert_sha256: None,
                spki_sha256: None,
                spki_sha256_base64: None,
                cert_pem: None,
                names: Vec::new(),
                https_url: None,
                mqtt_tls_url: None,
            };
        };
        let mqtt_tls_url = t.mqtt_tls_addr.get().map(|a| {
            let base = self.mqtt_url().map_or_else(|| format!("mqtt://{}", super::reachable(*a)), str::to_owned);
            crate::tls::same_host(&base, "mqtts", a.port())
        });
        TlsStatus {
            enabled: t.https_url.is_some(),
            fingerprint: Some(site.cert_sha256().to_owned()),
            cert_sha256: Some(site.cert_sha256().to_owned()),
            spki_sha256: Some(site.spki_sha256().to_owned()),
            spki_sha256_base64: Some(site.spki_sha256_base64().to_owned()),
            cert_pem: Some(site.cert_pem().to_owned()),
            names: site.names().to_vec(),
            https_url: t.https_url.clone(),
            mqtt_tls_url,
        }
    }

    /// `https://…` of the device server, when HTTPS is on.
    pub fn device_https_url(&self) -> Option<&str> {
        self.shared.tls.as_ref().and_then(|t| t.https_url.as_deref())
    }

    /// `offer` for a device that declared (`tls`) whether it downloads over HTTPS: its URL on the
    /// HTTPS listener when it did and HTTPS is on; unchanged otherwise.
    pub(crate) fn offer_for(&self, mut offer: Offer, tls: Option<bool>) -> Offer {
        if tls == Some(true)
            && let Some(https) = self.device_https_url()
            && let Some(path) = offer.url.strip_prefix(self.shared.device_url.as_str())
        {
            offer.url = format!("{https}{path}");
        }
        offer
    }

    /// Makes the site certificate again (same key) when the local names changed (another
    /// network, a new address); the listeners serve it from the next handshake.
    pub(crate) async fn refresh_tls(&self) {
        let Some(shared) = self.shared.tls.is_some().then(|| std::sync::Arc::clone(&self.shared)) else { return };
        let done = tokio::task::spawn_blocking(move || shared.tls.as_ref().map(|t| t.refresh())).await;
        match done {
            Ok(Some(Ok(true))) => {
                tracing::info!("the local names changed: the TLS certificate was made again (same key)");
            }
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "the TLS certificate could not be made again for new local names");
            }
            _ => {}
        }
    }

    /// Starts the embedded broker's MQTT-over-TLS listener when one is configured.
    pub(crate) async fn start_broker_tls(&self) -> Result<()> {
        let s = &self.shared;
        let (MqttMode::Embedded { .. }, Some(addr), Some(tls)) = (&s.config.mqtt, s.config.mqtt_tls_listen, &s.tls)
        else {
            return Ok(());
        };
        let broker = self.broker.lock().await;
        let Some(broker) = broker.as_ref() else { return Ok(()) };
        let config = tls.server_config(&[])?;
        match broker.listen_tls(addr, config).await {
            Ok(bound) => {
                let _ = tls.mqtt_tls_addr.set(bound);
                Ok(())
            }
            Err(e) if s.config.mqtt_tls_optional => {
                tracing::warn!(error = %e, "MQTT over TLS is off (give --mqtt-tls-listen ADDR to choose another address)");
                Ok(())
            }
            Err(e) => Err(CoreError::io(
                format!("cannot listen for MQTT over TLS on {addr}"),
                std::io::Error::other(e.to_string()),
            )),
        }
    }
}
