//! Admin API envelopes shared by the server and its clients.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every admin API error: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `unauthorized`, `not_found`, `invalid_image`.
    pub code: String,
    /// One line for a human.
    pub message: String,
}

/// `runtime.json` in the data dir: where a running engine listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeInfo {
    pub admin_url: String,
    pub device_url: String,
    pub pid: u32,
    pub version: String,
    /// MQTT broker URL devices use (`None` when MQTT is off). The embedded broker's credentials
    /// are in `<data>/mqtt-credentials`.
    #[serde(default)]
    pub mqtt_url: Option<String>,
}

/// `GET /health` on either server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /api/v1/keys/public`: the site signing key, for baking into device firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicKey {
    /// Algorithm; always `ed25519`.
    pub algorithm: String,
    /// Raw 32-byte public key, lower-case hex.
    pub public_key_hex: String,
    /// The same key, PEM (SubjectPublicKeyInfo).
    pub public_key_pem: String,
    /// First 16 hex digits of SHA-256 of the raw key.
    pub key_id: String,
}
