//! Per-job download tokens: `<job>.<expiry>.<mac>`, where `mac` is HMAC-SHA256 over the firmware's
//! sha256, the job and the expiry, keyed by `<data>/keys/download.key`.
//!
//! A token opens exactly one firmware, for one job, until its expiry; it cannot be forged or moved
//! to another firmware without the key. Tokens never contain the key or anything secret.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::Result;
use crate::secrets;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("download token is malformed")]
    Malformed,
    #[error("download token does not match this firmware")]
    BadSignature,
    #[error("download token expired")]
    Expired,
}

/// Issues and checks download tokens.
#[derive(Clone)]
pub struct DownloadTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for DownloadTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownloadTokens { .. }")
    }
}

impl DownloadTokens {
    pub fn load_or_create(keys_dir: &Path) -> Result<DownloadTokens> {
        secrets::private_dir(keys_dir)?;
        let key = secrets::load_or_create(
            &keys_dir.join("download.key"),
            || Ok(secrets::random_bytes::<32>()?.to_vec()),
            |b| b.len() == 32,
        )?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| crate::error::CoreError::Refused("download token key has the wrong length".into()))?;
        Ok(DownloadTokens { key })
    }

    pub fn from_key(key: [u8; 32]) -> DownloadTokens {
        DownloadTokens { key }
    }

    fn mac(&self, sha256: &str, job: &str, expires: u64) -> HmacSha256 {
        // HMAC zero-pads a key shorter than the hash's 64-byte block, so a 32-byte key padded by
        // hand is the same key — and `new` on a full block cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.key);
        let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
        mac.update(sha256.as_bytes());
        mac.update(b"\n");
        mac.update(job.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// A token for `job` to download the firmware `sha256` until `expires` (Unix seconds).
    /// `job` must not contain `.`, `/` or whitespace (callers pass ids).
    pub fn issue(&self, sha256: &str, job: &str, expires: u64) -> String {
        let tag = self.mac(sha256, job, expires).finalize().into_bytes();
        format!("{job}.{expires}.{}", B64URL.encode(tag))
    }

    /// Checks `token` for `sha256` at time `now` (Unix seconds); returns the job it was issued for.
    pub fn check<'t>(&self, token: &'t str, sha256: &str, now: u64) -> Result<&'t str, TokenError> {
        let mut parts = token.splitn(3, '.');
        let (Some(job), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let tag = B64URL.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(sha256, job, expires).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        if now > expires {
            return Err(TokenError::Expired);
        }
        Ok(job)
    }
}

/// Checks a job id for use in a token.
pub fn valid_job(job: &str) -> bool {
    (1..=64).contains(&job.len()) && job.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_open_one_firmware_for_one_job_until_expiry() {
        let tokens = DownloadTokens::from_key([9; 32]);
        let sha = "a".repeat(64);
        let t = tokens.issue(&sha, "job-42", 1000);
        assert_eq!(tokens.check(&t, &sha, 999), Ok("job-42"));
        assert_eq!(tokens.check(&t, &sha, 1000), Ok("job-42"));
        assert_eq!(tokens.check(&t, &sha, 1001), Err(TokenError::Expired));
        assert_eq!(tokens.check(&t, &"b".repeat(64), 999), Err(TokenError::BadSignature));
        let forged = t.replace("1000", "9999");
        assert_eq!(tokens.check(&forged, &sha, 999), Err(TokenError::BadSignature));
        let other_key = DownloadTokens::from_key([8; 32]);
        assert_eq!(other_key.check(&t, &sha, 999), Err(TokenError::BadSignature));
        for bad in ["", "x", "a.b", "a.b.c", "job.12.!!!"] {
            assert_eq!(tokens.check(bad, &sha, 0), Err(TokenError::Malformed), "{bad}");
        }
    }
}
