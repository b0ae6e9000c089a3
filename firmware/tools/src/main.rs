//! `flotilla-imagegen`: writes a synthetic firmware image to a file, for benchmark scripts and
//! demos. Run with `--help` for the options.

use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_imagegen::{
    Corruption, Esp32Chip, Esp32Image, Esp8266Image, Esp8266Layout, FlashMode, FlashSize, gzip, gzip_bomb,
    tasmota_version,
};

const USAGE: &str = "\
flotilla-imagegen: write a synthetic ESP32/ESP8266 firmware image

USAGE:
    flotilla-imagegen --out FILE [OPTIONS]

OPTIONS:
    --out FILE               where to write the image (required)
    --chip NAME|ID           esp32 (default), esp32s2, esp32s3, esp32c2, esp32c3, esp32c5,
                             esp32c6, esp32c61, esp32h2, esp32p4, or a raw chip id (0x00ff)
    --esp8266 v1|v2|arduino  build an ESP8266 image of that layout instead
    --version STR            app descriptor version (default 1.0.0)
    --project STR            app descriptor project name (default flotilla-demo)
    --idf-version STR        app descriptor IDF version (default v5.3.1)
    --secure-version N       app descriptor secure_version (default 0)
    --size BYTES             exact file size before --gzip (default 48 KiB ESP32, 32 KiB ESP8266)
    --segments N             number of segments (ESP32 1-16, default 4; ESP8266 besides IROM)
    --flash-size SIZE        ESP32 flash size, 1MB..128MB (default 4MB)
    --flash-mode MODE        qio, qout, dio, dout, fast-read, slow-read
    --tasmota-version X.Y.Z[.B]  ESP8266: embed Tasmota's version marker
    --no-hash                ESP32: no SHA-256 digest after the checksum
    --no-app-desc            ESP32: no esp_app_desc_t in the first segment
    --seed N                 payload seed (default 1)
    --corrupt KIND           bad-magic, bad-checksum, bad-digest, segment-past-end,
                             too-many-segments, bad-app-desc, truncate:N, trailing-garbage:N
    --gzip                   gzip the image
    --gzip-bomb BYTES        write a gzip bomb inflating to BYTES instead of an image
    -h, --help               print this help

Exit status: 0 written, 1 I/O error, 2 bad arguments.";

/// Validated command line.
#[derive(Debug)]
struct Args {
    out: PathBuf,
    esp32: Esp32Image,
    esp8266: Option<Esp8266Image>,
    size: Option<usize>,
    corruption: Option<Corruption>,
    gzip: bool,
    bomb: Option<usize>,
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(&raw) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("flotilla-imagegen: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let bytes = match render(&args) {
        Ok(bytes) => bytes,
        Err(msg) => {
            eprintln!("flotilla-imagegen: {msg}");
            return ExitCode::from(2);
        }
    };
    match std::fs::write(&args.out, &bytes) {
        Ok(()) => {
            println!("{} bytes written to {}", bytes.len(), args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flotilla-imagegen: cannot write {}: {e}", args.out.display());
            ExitCode::from(1)
        }
    }
}

fn render(args: &Args) -> Result<Vec<u8>, String> {
    if let Some(len) = args.bomb {
        return Ok(gzip_bomb(len));
    }
    let (min, bytes) = match &args.esp8266 {
        Some(image) => (
            image.min_size(),
            match &args.corruption {
                Some(c) => image.build_corrupted(c),
                None => image.build(),
            },
        ),
        None => (
            args.esp32.min_size(),
            match &args.corruption {
                Some(c) => args.esp32.build_corrupted(c),
                None => args.esp32.build(),
            },
        ),
    };
    if let Some(size) = args.size
        && size < min
    {
        return Err(format!("--size {size} is below the smallest image with these settings ({min} bytes)"));
    }
    Ok(if args.gzip { gzip(&bytes) } else { bytes })
}

fn parse(raw: &[String]) -> Result<Args, String> {
    let mut out = None;
    let mut esp32 = Esp32Image::new();
    let mut layout = None;
    let mut size = None;
    let mut segments = None;
    let mut seed = None;
    let mut tasmota = None;
    let mut corruption = None;
    let mut gzip = false;
    let mut bomb = None;
    let mut it = raw.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().map(String::as_str).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--chip" => {
                let v = value()?;
                esp32 = match Esp32Chip::parse(v) {
                    Some(chip) => esp32.chip(chip),
                    None => esp32.chip_id(parse_u16(v).ok_or_else(|| format!("unknown chip {v:?}"))?),
                };
            }
            "--esp8266" => {
                layout = Some(match value()? {
                    "v1" => Esp8266Layout::V1,
                    "v2" => Esp8266Layout::V2,
                    "arduino" => Esp8266Layout::Arduino,
                    other => {
                        return Err(format!("--esp8266 takes v1, v2 or arduino, not {other:?}"));
                    }
                });
            }
            "--version" => esp32 = esp32.version(value()?),
            "--project" => esp32 = esp32.project(value()?),
            "--idf-version" => esp32 = esp32.idf_version(value()?),
            "--secure-version" => esp32 = esp32.secure_version(number(flag, value()?)?),
            "--size" => size = Some(number(flag, value()?)?),
            "--segments" => {
                let n: usize = number(flag, value()?)?;
                if !(1..=16).contains(&n) {
                    return Err(format!("--segments must be 1..=16, not {n}"));
                }
                segments = Some(n);
            }
            "--flash-size" => {
                let v = value()?;
                esp32 = esp32.flash_size(FlashSize::parse(v).ok_or_else(|| format!("unknown flash size {v:?}"))?);
            }
            "--flash-mode" => {
                let v = value()?;
                esp32 = esp32.flash_mode(FlashMode::parse(v).ok_or_else(|| format!("unknown flash mode {v:?}"))?);
            }
            "--tasmota-version" => tasmota = Some(parse_tasmota(value()?)?),
            "--no-hash" => esp32 = esp32.hash_appended(false),
            "--no-app-desc" => esp32 = esp32.app_desc(false),
            "--seed" => seed = Some(number(flag, value()?)?),
            "--corrupt" => corruption = Some(parse_corruption(value()?)?),
            "--gzip" => gzip = true,
            "--gzip-bomb" => bomb = Some(number(flag, value()?)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let out = out.ok_or("--out FILE is required")?;
    if let Some(n) = segments {
        esp32 = esp32.segments(n);
    }
    if let Some(s) = size {
        esp32 = esp32.size(s);
    }
    if let Some(s) = seed {
        esp32 = esp32.seed(s);
    }
    let esp8266 = layout.map(|layout| {
        let mut image = Esp8266Image::new().layout(layout);
        if let Some(n) = segments {
            image = image.segments(n);
        }
        if let Some(s) = size {
            image = image.size(s);
        }
        if let Some(s) = seed {
            image = image.seed(s);
        }
        if let Some(v) = tasmota {
            image = image.tasmota_version(v);
        }
        image
    });
    if esp8266.is_none() && tasmota.is_some() {
        return Err("--tasmota-version needs --esp8266".into());
    }
    Ok(Args { out, esp32, esp8266, size, corruption, gzip, bomb })
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    let clean = v.replace('_', "");
    clean.parse().map_err(|_| format!("{flag} takes a non-negative number, not {v:?}"))
}

fn parse_u16(v: &str) -> Option<u16> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn parse_tasmota(v: &str) -> Result<u32, String> {
    let parts: Vec<&str> = v.split('.').collect();
    let nums: Option<Vec<u8>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some([a, b, c]) => Ok(tasmota_version(*a, *b, *c, 0)),
        Some([a, b, c, d]) => Ok(tasmota_version(*a, *b, *c, *d)),
        _ => Err(format!("--tasmota-version takes X.Y.Z or X.Y.Z.B (each 0-255), not {v:?}")),
    }
}

fn parse_corruption(v: &str) -> Result<Corruption, String> {
    let (kind, arg) = match v.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (v, None),
    };
    let n = |flag: &str| -> Result<usize, String> {
        arg.ok_or_else(|| format!("--corrupt {flag} needs :N")).and_then(|a| number("--corrupt", a))
    };
    Ok(match kind {
        "bad-magic" => Corruption::BadMagic,
        "bad-checksum" => Corruption::BadChecksum,
        "bad-digest" => Corruption::BadDigest,
        "segment-past-end" => Corruption::SegmentLenPastEnd,
        "too-many-segments" => Corruption::TooManySegments(40),
        "bad-app-desc" => Corruption::BadAppDescMagic,
        "truncate" => Corruption::TruncateAt(n("truncate")?),
        "trailing-garbage" => Corruption::TrailingGarbage(n("trailing-garbage")?),
        other => return Err(format!("unknown corruption {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_a_full_command_line() {
        let a = args(&[
            "--chip",
            "esp32-s3",
            "--version",
            "1.2.3",
            "--project",
            "demo",
            "--size",
            "4089446",
            "--out",
            "fw.bin",
            "--gzip",
        ]);
        assert!(matches!(a, Ok(Args { gzip: true, size: Some(4_089_446), .. })));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(args(&["--size", "12"]).is_err(), "no --out");
        assert!(args(&["--out", "x", "--chip", "esp33"]).is_err());
        assert!(args(&["--out", "x", "--size", "-5"]).is_err());
        assert!(args(&["--out", "x", "--segments", "17"]).is_err());
        assert!(args(&["--out", "x", "--esp8266", "v3"]).is_err());
        assert!(args(&["--out", "x", "--version"]).is_err());
        assert!(args(&["--out", "x", "--tasmota-version", "1.2.3"]).is_err());
        assert!(args(&["--out", "x", "--corrupt", "truncate"]).is_err());
        assert!(args(&["--out", "x", "--frobnicate"]).is_err());
    }

    #[test]
    fn raw_chip_ids_and_esp8266() {
        assert!(args(&["--out", "x", "--chip", "0x00ff"]).is_ok());
        let a = args(&["--out", "x", "--esp8266", "arduino", "--tasmota-version", "14.3.0"]);
        assert!(matches!(a, Ok(Args { esp8266: Some(_), .. })));
    }

    #[test]
    fn too_small_size_is_an_argument_error() {
        let a = args(&["--out", "x", "--size", "10"]);
        assert!(a.is_ok_and(|a| render(&a).is_err()));
    }
}
