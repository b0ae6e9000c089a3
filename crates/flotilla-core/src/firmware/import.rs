//! The rules of import: what an inspected image must satisfy before it enters the library, and
//! how it stands to what the library already holds.
//!
//! One function, [`assess`], decides every import: the engine's import, the admin API's inspect
//! (the UI's drop preview) and `flotilla firmware inspect` all call it, so a preview can never
//! promise what the import then refuses. It is plain logic over data (no I/O): the library is
//! read through the [`Library`] trait (the store in the engine; nothing when offline).
//! Everything refused here is refused before a byte is stored.

use flotilla_proto::{Firmware, ImageInfo, ImportOptions, ImportPlan, InspectReport, Manifest, Verdict};

use crate::error::{CoreError, Result};

/// What the library holds, as far as the rules need to know.
pub trait Library {
    /// The firmware whose image (or, for one imported as gzip by an older version, whose file)
    /// has this SHA-256.
    fn by_sha256(&self, sha256: &str) -> Result<Option<Firmware>>;
    /// The firmware recorded as this version of this model.
    fn by_model_version(&self, model: &str, version: &str) -> Result<Option<Firmware>>;
}

/// What an import of an image does, once the rules let it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Record a new firmware.
    New(Box<ImportPlan>),
    /// The image is already in the library as `firmware`; `adds_gzip` when the file is a gzip
    /// form the firmware does not have yet.
    Duplicate { firmware: Box<Firmware>, adds_gzip: bool },
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

/// Bytes of flash an esptool flash-size name stands for: `1MB` … `128MB`, ESP8266's `512KB`,
/// `256KB` and `2MB-c1` / `4MB-c1` (the same chips with another layout). `None` for anything else.
pub fn flash_bytes(name: &str) -> Option<u64> {
    let name = name.trim();
    let size = name.strip_suffix("-c1").unwrap_or(name);
    let (digits, unit) = match (size.strip_suffix("MB"), size.strip_suffix("KB")) {
        (Some(d), _) => (d, 1u64 << 20),
        (None, Some(d)) => (d, 1u64 << 10),
        (None, None) => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit).filter(|b| *b > 0)
}

/// Decides an import: the library first (the same image again is the same firmware, whatever
/// the options), then the rules ([`plan`]), then the library again (this version of this model
/// must not exist with other bytes). `library` is `None` offline: only the rules are applied.
/// `max_size_for(model)` is the OTA slot limit.
pub fn assess(
    image: &ImageInfo,
    opts: &ImportOptions,
    max_size_for: impl Fn(&str) -> u64,
    library: Option<&dyn Library>,
) -> Result<Assessment> {
    let opts = &normalized(opts);
    if let Some(lib) = library {
        if let Some(existing) = lib.by_sha256(&image.sha256)? {
            let adds_gzip = image.gzip.is_some() && existing.image.gzip.is_none();
            return Ok(Assessment::Duplicate { firmware: Box::new(existing), adds_gzip });
        }
        // A firmware imported as gzip by an older version, still addressed by its gzip file.
        if let Some(gz) = &image.gzip
            && let Some(existing) = lib.by_sha256(&gz.sha256)?
        {
            return Ok(Assessment::Duplicate { firmware: Box::new(existing), adds_gzip: false });
        }
    }
    let plan = plan(image, opts, max_size_for)?;
    if let Some(lib) = library
        && let Some(other) = lib.by_model_version(&plan.model, &plan.version)?
    {
        return Err(CoreError::Conflict(format!(
            "version {} of model {} is already imported with different bytes (firmware {}, sha256 {}); \
             give this build another version",
            plan.version, plan.model, other.id, other.sha256
        )));
    }
    Ok(Assessment::New(Box::new(plan)))
}

/// The options as every way of giving them means them: text trimmed, a blank one not given (an
/// empty form field, `?model=` or `"model": " "` all leave the model to the image).
pub fn normalized(opts: &ImportOptions) -> ImportOptions {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    ImportOptions {
        version: text(&opts.version),
        model: text(&opts.model),
        channel: opts.channel,
        notes: text(&opts.notes),
        min_version: text(&opts.min_version),
        public: opts.public,
    }
}

/// Applies the rules that need no library to an inspected image: the OTA slot of the model, the
/// flash size the image's header declares, a SemVer version, `min_version`, notes.
pub fn plan(image: &ImageInfo, opts: &ImportOptions, max_size_for: impl Fn(&str) -> u64) -> Result<ImportPlan> {
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
    if let Some(declared) = image.flash_size.as_deref()
        && let Some(flash) = flash_bytes(declared)
        && image.image_size > flash
    {
        return Err(CoreError::Refused(format!(
            "image is {} bytes, larger than the {declared} flash ({flash} bytes) its header declares: \
             it cannot fit; rebuild it for the right flash size",
            image.image_size
        )));
    }
    let version = match (&opts.version, &image.version) {
        (Some(given), _) => semver(given, "given version")?,
        (None, Some(found)) if !found.trim().is_empty() => semver(found, "the image's version")?,
        (None, _) => {
            return Err(CoreError::Refused(
                "the image carries no version; give one with --version (SemVer, e.g. 1.4.2)".into(),
            ));
        }
    };
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
        size: image.image_size,
        sha256: image.sha256.clone(),
        chip: image.chip,
        model: model.clone(),
        min_version: min_version.clone(),
        secure_version: image.secure_version,
    };
    Ok(ImportPlan {
        version,
        model,
        channel: opts.channel.unwrap_or_default(),
        notes: opts.notes.clone(),
        min_version,
        public: opts.public.unwrap_or(false),
        manifest,
    })
}

/// The image facts a firmware keeps: those of the image itself (never of a gzip wrapper), and
/// its gzip form in `gzip`.
pub fn recorded(image: &ImageInfo) -> ImageInfo {
    let mut kept = image.clone();
    if let Some(inner) = kept.inner_format.take() {
        kept.format = inner;
    }
    kept.size = kept.image_size;
    kept
}

/// The report of an inspect: the image facts and what [`assess`] decided. A refusal is part of
/// the report (the error import would answer with); any other error (the store failing, the
/// engine stopping) is returned as an error.
pub fn report(image: ImageInfo, assessed: Result<Assessment>, library_checked: bool) -> Result<InspectReport> {
    let (verdict, would_record) = match assessed {
        Ok(Assessment::New(plan)) => (Verdict::Ready, Some(*plan)),
        Ok(Assessment::Duplicate { firmware, adds_gzip }) => (
            Verdict::Duplicate { firmware: firmware.id, version: firmware.version, model: firmware.model, adds_gzip },
            None,
        ),
        Err(e @ (CoreError::Refused(_) | CoreError::Conflict(_) | CoreError::BadRequest(_))) => {
            (Verdict::Refused { code: e.code().to_owned(), message: e.to_string() }, None)
        }
        Err(e) => return Err(e),
    };
    Ok(InspectReport { image, verdict, would_record, library_checked })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use flotilla_proto::{Channel, Chip, GzipForm, ImageFormat, SignedManifest};

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
            gzip: None,
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
        let above = plan(&image(Some("1.0.0"), 10), &opts, |_| LIMIT).unwrap_err().to_string();
        assert!(above.contains("min_version 2.0.0 is above the firmware's own version 1.0.0"), "{above}");
        let opts = ImportOptions { min_version: Some("soon".into()), ..Default::default() };
        let not_semver = plan(&image(Some("1.0.0"), 10), &opts, |_| LIMIT).unwrap_err().to_string();
        assert!(not_semver.contains("min_version"), "{not_semver}");
        let opts = ImportOptions { min_version: Some("0.9.0".into()), ..Default::default() };
        assert_eq!(
            plan(&image(Some("1.0.0"), 10), &opts, |_| LIMIT).unwrap().manifest.min_version.as_deref(),
            Some("0.9.0")
        );
    }

    /// An image whose SHA-256 is `sha` repeated.
    fn img(sha: &str, version: &str, size: u64) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Esp32,
            inner_format: None,
            esp8266_image_version: None,
            chip: Chip::Esp32,
            version: Some(version.into()),
            project: Some("pump-ctl".into()),
            idf_version: None,
            compile_time: None,
            compile_date: None,
            secure_version: None,
            app_elf_sha256: None,
            size,
            image_size: size,
            sha256: sha.repeat(64),
            gzip: None,
            flash_size: Some("4MB".into()),
            flash_mode: None,
            flash_freq: None,
            min_chip_rev: None,
            max_chip_rev: None,
            entry_addr: 0,
            hash_appended: false,
            segments: vec![],
        }
    }

    /// `image` as its gzip form would be inspected: same identity, the wrapper described.
    fn gzipped(mut i: ImageInfo, gz_sha: &str) -> ImageInfo {
        i.inner_format = Some(i.format);
        i.format = ImageFormat::Gzip;
        i.size = i.image_size / 2;
        i.gzip = Some(GzipForm { size: i.size, sha256: gz_sha.repeat(64) });
        i
    }

    fn firmware(id: i64, image: ImageInfo, model: &str, version: &str) -> Firmware {
        let manifest = Manifest {
            version: version.into(),
            size: image.image_size,
            sha256: image.sha256.clone(),
            chip: image.chip,
            model: model.into(),
            min_version: None,
            secure_version: None,
        };
        Firmware {
            id,
            sha256: image.sha256.clone(),
            version: version.into(),
            model: model.into(),
            chip: image.chip,
            format: image.format,
            project: image.project.clone(),
            idf_version: None,
            secure_version: None,
            size: image.size,
            channel: Channel::Stable,
            notes: None,
            min_version: None,
            blocked: false,
            public: false,
            archived: false,
            created_at: String::new(),
            image,
            manifest: SignedManifest { manifest, signature: String::new(), key_id: String::new() },
        }
    }

    struct Fake(Vec<Firmware>);

    impl Library for Fake {
        fn by_sha256(&self, sha256: &str) -> Result<Option<Firmware>> {
            Ok(self.0.iter().find(|f| f.sha256 == sha256).cloned())
        }
        fn by_model_version(&self, model: &str, version: &str) -> Result<Option<Firmware>> {
            Ok(self.0.iter().find(|f| f.model == model && f.version == version).cloned())
        }
    }

    fn verdict(image: &ImageInfo, opts: &ImportOptions, lib: Option<&dyn Library>) -> Verdict {
        report(image.clone(), assess(image, opts, |_| LIMIT, lib), lib.is_some()).unwrap().verdict
    }

    #[test]
    fn flash_sizes_in_esptool_spelling() {
        assert_eq!(flash_bytes("1MB"), Some(1 << 20));
        assert_eq!(flash_bytes("2MB"), Some(2 << 20));
        assert_eq!(flash_bytes("4MB"), Some(4 << 20));
        assert_eq!(flash_bytes("8MB"), Some(8 << 20));
        assert_eq!(flash_bytes("16MB"), Some(16 << 20));
        assert_eq!(flash_bytes("128MB"), Some(128 << 20));
        assert_eq!(flash_bytes("512KB"), Some(512 << 10));
        assert_eq!(flash_bytes("256KB"), Some(256 << 10));
        assert_eq!(flash_bytes("2MB-c1"), Some(2 << 20));
        assert_eq!(flash_bytes("4MB-c1"), Some(4 << 20));
        for unknown in ["", "MB", "4mb", "4 MB", "-4MB", "4MB-c2", "0MB", "4GB", "99999999999999999999MB", "detect"] {
            assert_eq!(flash_bytes(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn an_image_larger_than_its_declared_flash_is_refused_naming_both_sizes() {
        let mut i = img("a", "1.0.0", 4 << 20);
        i.flash_size = Some("1MB".into());
        let err = plan(&i, &ImportOptions::default(), |_| 8 << 20).unwrap_err();
        assert!(matches!(err, CoreError::Refused(_)));
        let msg = err.to_string();
        assert!(msg.contains("4194304 bytes") && msg.contains("1MB flash (1048576 bytes)"), "{msg}");
        // ESP8266 sizes, and the gzip form counts by its inflated size.
        let mut small = gzipped(img("b", "1.0.0", 600 << 10), "c");
        small.flash_size = Some("512KB".into());
        assert!(plan(&small, &ImportOptions::default(), |_| LIMIT).unwrap_err().to_string().contains("512KB flash"));
        // Exactly the flash size fits; no declared (or an unknown) size means no check.
        i.image_size = 1 << 20;
        assert!(plan(&i, &ImportOptions::default(), |_| LIMIT).is_ok());
        i.image_size = 4 << 20;
        i.flash_size = None;
        assert!(plan(&i, &ImportOptions::default(), |_| 8 << 20).is_ok());
    }

    #[test]
    fn offline_the_rules_alone_decide() {
        let v = verdict(&img("a", "1.0.0", 1000), &ImportOptions::default(), None);
        assert_eq!(v, Verdict::Ready);
        let r = report(
            img("a", "1.0.0", 1000),
            assess(&img("a", "1.0.0", 1000), &ImportOptions::default(), |_| LIMIT, None),
            false,
        )
        .unwrap();
        let plan = r.would_record.unwrap();
        assert_eq!((plan.version.as_str(), plan.model.as_str()), ("1.0.0", "pump-ctl"));
        assert!(!r.library_checked);
        let Verdict::Refused { code, message } =
            verdict(&img("a", "1.0.0", LIMIT + 1), &ImportOptions::default(), None)
        else {
            panic!("oversized images are refused")
        };
        assert_eq!(code, "refused");
        assert!(message.contains("OTA slot"), "{message}");
    }

    #[test]
    fn the_same_image_is_the_same_firmware_in_either_form() {
        let raw = img("a", "1.0.0", 1000);
        let lib = Fake(vec![firmware(7, recorded(&raw), "pump-ctl", "1.0.0")]);
        // Raw again, with other options: already imported, nothing changes.
        let opts = ImportOptions { version: Some("9.9.9".into()), ..Default::default() };
        assert_eq!(
            verdict(&raw, &opts, Some(&lib)),
            Verdict::Duplicate { firmware: 7, version: "1.0.0".into(), model: "pump-ctl".into(), adds_gzip: false }
        );
        // Its gzip: the same firmware, which gains the gzip form.
        let gz = gzipped(raw.clone(), "b");
        assert_eq!(
            verdict(&gz, &ImportOptions::default(), Some(&lib)),
            Verdict::Duplicate { firmware: 7, version: "1.0.0".into(), model: "pump-ctl".into(), adds_gzip: true }
        );
        // Once it has one, another gzip of the same image adds nothing.
        let lib = Fake(vec![firmware(7, recorded(&gz), "pump-ctl", "1.0.0")]);
        assert!(matches!(
            verdict(&gzipped(raw.clone(), "d"), &ImportOptions::default(), Some(&lib)),
            Verdict::Duplicate { adds_gzip: false, .. }
        ));
        assert!(matches!(
            verdict(&raw, &ImportOptions::default(), Some(&lib)),
            Verdict::Duplicate { adds_gzip: false, .. }
        ));
    }

    #[test]
    fn a_firmware_still_addressed_by_its_gzip_file_is_found_by_it() {
        let gz = gzipped(img("a", "1.0.0", 1000), "b");
        let mut legacy = firmware(3, gz.clone(), "pump-ctl", "1.0.0");
        legacy.sha256 = "b".repeat(64);
        let lib = Fake(vec![legacy]);
        assert!(matches!(verdict(&gz, &ImportOptions::default(), Some(&lib)), Verdict::Duplicate { firmware: 3, .. }));
    }

    #[test]
    fn the_same_version_with_other_bytes_is_refused_with_the_import_error() {
        let lib = Fake(vec![firmware(4, img("a", "1.0.0", 1000), "pump-ctl", "1.0.0")]);
        let other = img("e", "1.0.0", 1001);
        let err = assess(&other, &ImportOptions::default(), |_| LIMIT, Some(&lib)).unwrap_err();
        assert!(matches!(err, CoreError::Conflict(_)));
        let Verdict::Refused { code, message } = verdict(&other, &ImportOptions::default(), Some(&lib)) else {
            panic!("a conflict is a refusal")
        };
        assert_eq!(code, "conflict");
        assert_eq!(message, err.to_string());
        assert!(message.contains("already imported with different bytes (firmware 4"), "{message}");
        // Another model may have that version.
        let opts = ImportOptions { model: Some("fan-ctl".into()), ..Default::default() };
        assert_eq!(verdict(&other, &opts, Some(&lib)), Verdict::Ready);
    }

    #[test]
    fn blank_options_are_not_given_whichever_way_they_came() {
        let i = img("a", "1.0.0", 10);
        let blank = ImportOptions {
            version: Some(" ".into()),
            model: Some("".into()),
            notes: Some("  ".into()),
            min_version: Some(" ".into()),
            ..Default::default()
        };
        let Assessment::New(plan) = assess(&i, &blank, |_| LIMIT, None).unwrap() else { panic!("ready") };
        assert_eq!((plan.version.as_str(), plan.model.as_str()), ("1.0.0", "pump-ctl"));
        assert_eq!((plan.notes, plan.min_version), (None, None));
        let padded = ImportOptions { model: Some(" fan-ctl ".into()), ..Default::default() };
        let Assessment::New(plan) = assess(&i, &padded, |_| LIMIT, None).unwrap() else { panic!("ready") };
        assert_eq!(plan.model, "fan-ctl");
    }

    #[test]
    fn only_refusals_become_verdicts() {
        let i = img("a", "1.0.0", 10);
        let bad = ImportOptions { model: Some("m".repeat(65)), ..Default::default() };
        assert!(matches!(verdict(&i, &bad, None), Verdict::Refused { ref code, .. } if code == "bad_request"));
        assert!(report(i, Err(CoreError::ShuttingDown), true).is_err());
        assert!(!Verdict::Refused { code: "refused".into(), message: String::new() }.can_work());
        assert!(Verdict::Ready.can_work());
    }

    #[test]
    fn a_firmware_keeps_the_image_facts_and_the_gzip_form() {
        let raw = img("a", "1.0.0", 1000);
        let gz = gzipped(raw.clone(), "b");
        let kept = recorded(&gz);
        assert_eq!(kept.format, ImageFormat::Esp32);
        assert_eq!(kept.inner_format, None);
        assert_eq!(kept.size, 1000);
        assert_eq!(kept.sha256, raw.sha256);
        assert_eq!(kept.gzip, gz.gzip);
        assert_eq!(recorded(&raw), raw);
        // What devices are told is the raw image, whichever form was imported.
        let plan = plan(&gz, &ImportOptions::default(), |_| LIMIT).unwrap();
        assert_eq!((plan.manifest.size, plan.manifest.sha256.as_str()), (1000, raw.sha256.as_str()));
    }
}
