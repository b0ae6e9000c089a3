//! The site signing key: Ed25519, created on first run in `<data>/keys/site.ed25519` (0600).
//!
//! Every firmware gets a [`SignedManifest`]; device firmware bakes in the public key
//! (`flotilla keys export`) and refuses a manifest whose signature does not verify.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use flotilla_proto::{Manifest, PublicKey, SignedManifest};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::secrets;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The site's signing key.
pub struct SiteKey {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl SiteKey {
    /// Loads `<keys_dir>/site.ed25519`, creating the key (and the folder, 0700) on first run.
    pub fn load_or_create(keys_dir: &Path) -> Result<SiteKey> {
        secrets::private_dir(keys_dir)?;
        let seed = secrets::load_or_create(
            &keys_dir.join("site.ed25519"),
            || Ok(secrets::random_bytes::<32>()?.to_vec()),
            |b| b.len() == 32,
        )?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| CoreError::Refused("site key has the wrong length".into()))?;
        Ok(SiteKey::from_seed(&seed))
    }

    pub fn from_seed(seed: &[u8; 32]) -> SiteKey {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(&key.verifying_key());
        SiteKey { key, key_id }
    }

    /// First 16 hex digits of SHA-256 of the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs the manifest's canonical JSON.
    pub fn sign(&self, manifest: Manifest) -> Result<SignedManifest> {
        let msg = canonical(&manifest)?;
        let signature = self.key.sign(&msg);
        Ok(SignedManifest { manifest, signature: B64.encode(signature.to_bytes()), key_id: self.key_id.clone() })
    }

    /// The public half, for export.
    pub fn public(&self) -> PublicKey {
        let raw = self.key.verifying_key().to_bytes();
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        PublicKey {
            algorithm: "ed25519".into(),
            public_key_hex: hex::encode(raw),
            public_key_pem: format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(der)),
            key_id: self.key_id.clone(),
        }
    }
}

fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.to_bytes());
    hex::encode(digest).chars().take(16).collect()
}

/// The bytes a manifest signature covers: its compact JSON, fields in declaration order.
pub fn canonical(manifest: &Manifest) -> Result<Vec<u8>> {
    serde_json::to_vec(manifest).map_err(|e| CoreError::BadRequest(format!("manifest cannot be encoded: {e}")))
}

/// Checks a signed manifest against a raw 32-byte public key — what a device does.
pub fn verify(signed: &SignedManifest, public_key: &[u8; 32]) -> Result<()> {
    let bad = |why: &str| CoreError::Refused(format!("manifest signature invalid: {why}"));
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| bad("not an Ed25519 public key"))?;
    let sig = B64.decode(&signed.signature).map_err(|_| bad("signature is not base64"))?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| bad("signature is not 64 bytes"))?;
    key.verify(&canonical(&signed.manifest)?, &Signature::from_bytes(&sig))
        .map_err(|_| bad("does not match the manifest"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use flotilla_proto::Chip;

    fn manifest() -> Manifest {
        Manifest {
            version: "1.2.3".into(),
            size: 1000,
            sha256: "ab".repeat(32),
            chip: Chip::Esp32,
            model: "demo".into(),
            min_version: None,
            secure_version: Some(0),
        }
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let key = SiteKey::load_or_create(&dir.path().join("keys")).unwrap();
        let again = SiteKey::load_or_create(&dir.path().join("keys")).unwrap();
        assert_eq!(key.key_id(), again.key_id(), "the key is created once");

        let signed = key.sign(manifest()).unwrap();
        let public: [u8; 32] = hex::decode(key.public().public_key_hex).unwrap().try_into().unwrap();
        verify(&signed, &public).unwrap();

        let mut tampered = signed.clone();
        tampered.manifest.version = "9.9.9".into();
        assert!(verify(&tampered, &public).is_err());

        let other = SiteKey::from_seed(&[7; 32]);
        let other_pub: [u8; 32] = hex::decode(other.public().public_key_hex).unwrap().try_into().unwrap();
        assert!(verify(&signed, &other_pub).is_err());
    }

    #[test]
    fn public_key_pem_is_spki() {
        let key = SiteKey::from_seed(&[1; 32]);
        let pem = key.public().public_key_pem;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = B64.decode(body).unwrap();
        assert_eq!(der.len(), 44);
        assert_eq!(&der[..12], &SPKI_PREFIX);
    }
}
