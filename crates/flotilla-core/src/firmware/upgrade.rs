//! Brings a library written by an older Flotilla up to today's identity rule: one firmware, one
//! identity, the SHA-256 of its image. Older versions recorded a `.bin.gz` import under the
//! SHA-256 of the gzip file and stored only that file, so the same build imported as `app.bin`
//! and as `app.bin.gz` were two firmware (or one refused as "different bytes"). At start-up each
//! such firmware gets its image's SHA-256, its image stored beside its gzip form, and a manifest
//! signed for the image.
//!
//! It runs before anything reads the library (the serve catalog, the rollouts), so the rest of
//! the engine only ever sees firmware addressed by image. It is idempotent and crash-safe: the
//! files are written before the row changes, and the old file goes with the orphan sweep only
//! after the row committed. A firmware it cannot convert (its file missing or corrupt, or its
//! image already another firmware's) stays exactly as it was, served at its old address, and a
//! warning says why.

use bytes::Bytes;
use flotilla_proto::{Firmware, ImageFormat};
use flotilla_store::Store;
use flotilla_store::events::{self, NewEvent};
use flotilla_store::firmware as fw_table;
use serde_json::json;

use crate::error::Result;
use crate::firmware::blobs::{Blobs, Form};
use crate::firmware::signing::SiteKey;
use crate::firmware::{image, import};

/// Converts every firmware still addressed by its gzip file. Returns how many were converted.
pub fn gzip_identities(store: &mut Store, blobs: &Blobs, key: &SiteKey) -> Result<usize> {
    let legacy: Vec<Firmware> =
        fw_table::list(store.conn())?.into_iter().filter(|f| f.format == ImageFormat::Gzip).collect();
    let mut converted = 0;
    for fw in legacy {
        match convert(store, blobs, key, &fw) {
            Ok(Some(why_not)) => {
                tracing::warn!(
                    firmware = fw.id,
                    sha256 = fw.sha256,
                    "firmware imported as gzip keeps its old address: {why_not}"
                );
            }
            Ok(None) => converted += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(converted)
}

/// Converts one firmware; `Ok(Some(reason))` when it is left as it was.
fn convert(store: &mut Store, blobs: &Blobs, key: &SiteKey, fw: &Firmware) -> Result<Option<String>> {
    let gz = match blobs.load(&fw.sha256, Form::Image, &fw.sha256) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Some(e.to_string())),
    };
    let parsed = match image::read(Bytes::from(gz)) {
        Ok(p) if p.gzip.is_some() => p,
        Ok(_) => return Ok(Some("its file is not gzip".into())),
        Err(e) => return Ok(Some(format!("its file no longer parses: {e}"))),
    };
    let sha = parsed.info.sha256.clone();
    if let Some(other) = fw_table::by_sha256(store.conn(), &sha)? {
        return Ok(Some(format!("its image is firmware {} ({} {}) too", other.id, other.model, other.version)));
    }
    blobs.write(&sha, Form::Image, &parsed.image)?;
    if let Some(gz) = &parsed.gzip {
        blobs.write(&sha, Form::Gzip, gz)?;
    }
    let image = import::recorded(&parsed.info);
    let mut manifest = fw.manifest.manifest.clone();
    manifest.sha256 = sha;
    manifest.size = image.size;
    let manifest = key.sign(manifest)?;
    store.write(|tx| {
        let updated = fw_table::set_identity(tx, fw.id, &image, &manifest)?;
        events::append(
            tx,
            &NewEvent::new(
                "firmware.changed",
                "engine",
                Some(format!("firmware:{}", fw.id)),
                json!({
                    "id": fw.id,
                    "change": { "sha256": updated.sha256, "size": updated.size, "gzip": updated.image.gzip },
                    "previous_sha256": fw.sha256,
                    "reason": "a firmware is identified by its image's SHA-256; the gzip file it was imported as is kept as its gzip form",
                }),
            ),
        )
    })?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashSet;

    use flotilla_imagegen::{Esp8266Image, Esp8266Layout, gzip};
    use flotilla_proto::{Channel, ImportOptions};
    use sha2::{Digest, Sha256};

    use super::*;

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    /// Records `file` the way versions before the image identity did: the file's own SHA-256,
    /// its ImageInfo as parsed then (no `gzip` field), the manifest signed for the file.
    fn import_as_before(store: &mut Store, blobs: &Blobs, key: &SiteKey, file: &[u8], version: &str) -> Firmware {
        let mut info = image::inspect(file).unwrap();
        info.sha256 = sha(file);
        info.gzip = None;
        let mut plan =
            import::plan(&info, &ImportOptions { version: Some(version.into()), ..Default::default() }, |_| 1 << 24)
                .unwrap();
        plan.manifest.sha256 = info.sha256.clone();
        plan.manifest.size = info.size;
        blobs.write(&info.sha256, Form::Image, file).unwrap();
        let new = fw_table::NewFirmware {
            version: plan.version,
            model: plan.model,
            channel: Channel::Stable,
            notes: None,
            min_version: None,
            public: false,
            image: info,
            manifest: key.sign(plan.manifest).unwrap(),
        };
        store.write(|tx| fw_table::insert(tx, &new)).unwrap()
    }

    #[test]
    fn a_gzip_import_of_old_takes_its_image_identity_and_keeps_its_gzip_form() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("flotilla.db")).unwrap();
        let blobs = Blobs::open(&dir.path().join("firmware"), 1 << 20).unwrap();
        let key = SiteKey::from_seed(&[7; 32]);
        let raw = Esp8266Image::new().layout(Esp8266Layout::V1).size(40_000).build();
        let gz = gzip(&raw);
        let old = import_as_before(&mut store, &blobs, &key, &gz, "1.0.0");
        assert_eq!(old.sha256, sha(&gz));
        assert_eq!(old.format, ImageFormat::Gzip);

        assert_eq!(gzip_identities(&mut store, &blobs, &key).unwrap(), 1);
        let fw = fw_table::get(store.conn(), old.id).unwrap().unwrap();
        assert_eq!(fw.sha256, sha(&raw));
        assert_eq!(fw.format, ImageFormat::Esp8266);
        assert_eq!(fw.size, raw.len() as u64);
        assert_eq!(fw.image.gzip.as_ref().map(|g| (g.size, g.sha256.clone())), Some((gz.len() as u64, sha(&gz))));
        assert_eq!((fw.manifest.manifest.sha256.as_str(), fw.manifest.manifest.size), (fw.sha256.as_str(), fw.size));
        let public: [u8; 32] = hex::decode(key.public().public_key_hex).unwrap().try_into().unwrap();
        crate::firmware::signing::verify(&fw.manifest, &public).unwrap();
        assert_eq!((fw.version.as_str(), fw.model.as_str()), (old.version.as_str(), old.model.as_str()));
        assert_eq!(blobs.load(&fw.sha256, Form::Image, &fw.sha256).unwrap(), raw);
        assert_eq!(blobs.load(&fw.sha256, Form::Gzip, &sha(&gz)).unwrap(), gz);
        // The gzip file under its old name goes with the orphan sweep; a second start converts nothing.
        let known: HashSet<String> = [fw.sha256.clone(), format!("{}.gz", fw.sha256)].into_iter().collect();
        assert_eq!(blobs.sweep_orphans(&known).unwrap(), 1);
        assert_eq!(gzip_identities(&mut store, &blobs, &key).unwrap(), 0);
        let changed = events::page(
            store.conn(),
            events::Filter { kind_prefix: Some("firmware.changed"), ..Default::default() },
            10,
        )
        .unwrap()
        .events;
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].data["previous_sha256"], sha(&gz));
    }

    #[test]
    fn a_firmware_that_cannot_be_converted_stays_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("flotilla.db")).unwrap();
        let blobs = Blobs::open(&dir.path().join("firmware"), 1 << 20).unwrap();
        let key = SiteKey::from_seed(&[7; 32]);
        let raw = Esp8266Image::new().layout(Esp8266Layout::V1).size(40_000).build();
        let gz = gzip(&raw);
        // The same build imported raw as another version, and as gzip: both stay.
        let plain = import_as_before(&mut store, &blobs, &key, &raw, "1.0.0");
        let old_gz = import_as_before(&mut store, &blobs, &key, &gz, "1.0.1");
        // Another gzip whose file went missing.
        let other = gzip(&Esp8266Image::new().layout(Esp8266Layout::V1).size(30_000).seed(9).build());
        let missing = import_as_before(&mut store, &blobs, &key, &other, "1.0.2");
        blobs.remove(&missing.sha256, Form::Image).unwrap();

        assert_eq!(gzip_identities(&mut store, &blobs, &key).unwrap(), 0);
        for before in [plain, old_gz, missing] {
            assert_eq!(fw_table::get(store.conn(), before.id).unwrap().unwrap(), before);
        }
    }
}
