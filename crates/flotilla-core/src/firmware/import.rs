//! The rules of import: what an inspected image must satisfy before it enters the library.
//!
//! Plain functions over data (no I/O): the engine inspects the bytes, asks [`plan`] what to record,
//! then writes the file and the row. Everything refused here is refused before a byte is stored.

use flotilla_proto::{Channel, ImageInfo, ImportOptions, Manifest};

use crate::error::{CoreError, Result};

/// What an import will record, once the image passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub version: String,
    pub model: String,
    pub channel: Channel,
    pub notes: Option<String>,
    pub min_version: Option<String>,
    pub public: bool,
    pub manifest: Manifest,
}

/// Normalises a version to SemVer: trims it and drops one leading `v`. `what` names it in errors.
pub fn semver(raw: &str, what: &str) -> Result<String> {
    let trimmed = raw.trim();
    let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
    semver::Version::parse(bare).map(|v| v.to_string()).map_err(|e| {
        CoreError::Refused(format!(
            "{what} {raw:?} is not SemVer (MAJOR.MINOR.PATCH, e.g. 1.4.2): {e}; give one explicitly with --version"
        ))
    })
}

/// Applies the import rules to an inspected image. `max_size_for(model)` is the OTA slot limit.
pub fn plan(image: &ImageInfo, opts: &ImportOptions, max_size_for: impl Fn(&str) -> u64) -> Result<Plan> {
    let version = match (&opts.version, &image.version) {
        (Some(given), _) => semver(given, "given version")?,
        (None, Some(found)) if !found.trim().is_empty() => semver(found, "the image's version")?,
        (None, _) => {
            return Err(CoreError::Refused(
                "the image carries no version; give one with --version (SemVer, e.g. 1.4.2)".into(),
            ));
        }
    };
    let model = match &opts.model {
        Some(m) => {
            let m = m.trim();
            if m.is_empty() || m.len() > 64 || m.chars().any(char::is_control) {
                return Err(CoreError::BadRequest(format!("model {m:?} must be 1-64 printable characters")));
            }
            m.to_owned()
        }
        None => image.project.clone().filter(|p| !p.trim().is_empty()).unwrap_or_else(|| image.chip.to_string()),
    };
    let limit = max_size_for(&model);
    if image.image_size > limit {
        return Err(CoreError::Refused(format!(
            "image is {} bytes, larger than the {limit}-byte OTA slot of model {model}",
            image.image_size
        )));
    }
    let min_version = opts.min_version.as_deref().map(|v| semver(v, "min_version")).transpose()?;
    if let Some(min) = &min_version
        && let (Ok(min_v), Ok(v)) = (semver::Version::parse(min), semver::Version::parse(&version))
        && min_v > v
    {
        return Err(CoreError::Refused(format!("min_version {min} is above the firmware's own version {version}")));
    }
    if let Some(notes) = &opts.notes
        && notes.len() > 4096
    {
        return Err(CoreError::BadRequest("notes are limited to 4096 bytes".into()));
    }
    let manifest = Manifest {
        version: version.clone(),
        size: image.size,
        sha256: image.sha256.clone(),
        chip: image.chip,
        model: model.clone(),
        min_version: min_version.clone(),
        secure_version: image.secure_version,
    };
    Ok(Plan {
        version,
        model,
        channel: opts.channel.unwrap_or_default(),
        notes: opts.notes.clone(),
        min_version,
        public: opts.public.unwrap_or(false),
        manifest,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use flotilla_proto::{Chip, ImageFormat};

    fn image(version: Option<&str>, size: u64) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Esp32,
            inner_format: None,
            esp8266_image_version: None,
            chip: Chip::Esp32,
            version: version.map(str::to_owned),
            project: Some("pump-ctl".into()),
            idf_version: Some("v5.3".into()),
            compile_time: None,
            compile_date: None,
            secure_version: Some(0),
            app_elf_sha256: None,
            size,
            image_size: size,
            sha256: "a".repeat(64),
            flash_size: Some("4MB".into()),
            flash_mode: None,
            flash_freq: None,
            min_chip_rev: None,
            max_chip_rev: None,
            entry_addr: 0,
            hash_appended: true,
            segments: vec![],
        }
    }

    const LIMIT: u64 = 4_089_446;

    #[test]
    fn a_good_image_takes_its_version_and_project() {
        let p = plan(&image(Some("v1.2.3"), 1000), &ImportOptions::default(), |_| LIMIT).unwrap();
        assert_eq!(p.version, "1.2.3");
        assert_eq!(p.model, "pump-ctl");
        assert_eq!(p.manifest.size, 1000);
        assert_eq!(p.channel, Channel::Stable);
    }

    #[test]
    fn non_semver_is_refused_unless_a_version_is_given() {
        let err = plan(&image(Some("14.3.0(release-tasmota)"), 1000), &ImportOptions::default(), |_| LIMIT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not SemVer"), "{err}");
        let opts = ImportOptions { version: Some("14.3.0".into()), ..Default::default() };
        assert_eq!(plan(&image(Some("14.3.0(release-tasmota)"), 1000), &opts, |_| LIMIT).unwrap().version, "14.3.0");
        assert!(plan(&image(None, 1000), &ImportOptions::default(), |_| LIMIT).is_err());
        let bad = ImportOptions { version: Some("latest".into()), ..Default::default() };
        assert!(plan(&image(None, 1000), &bad, |_| LIMIT).is_err());
    }

    #[test]
    fn oversized_images_are_refused_per_model() {
        let err = plan(&image(Some("1.0.0"), LIMIT + 1), &ImportOptions::default(), |_| LIMIT).unwrap_err();
        assert!(err.to_string().contains("OTA slot"), "{err}");
        let big_slot = |m: &str| if m == "pump-ctl" { 8 << 20 } else { LIMIT };
        assert!(plan(&image(Some("1.0.0"), LIMIT + 1), &ImportOptions::default(), big_slot).is_ok());
    }

    #[test]
    fn min_version_must_be_semver_and_not_above_the_version() {
        let opts = ImportOptions { min_version: Some("2.0.0".into()), ..Default::default() };
        assert!(plan(&image(Some("1.0.0"), 10), &opts, |_| LIMIT).is_err());
        let opts = ImportOptions { min_version: Some("0.9.0".into()), ..Default::default() };
        assert_eq!(
            plan(&image(Some("1.0.0"), 10), &opts, |_| LIMIT).unwrap().manifest.min_version.as_deref(),
            Some("0.9.0")
        );
    }
}
