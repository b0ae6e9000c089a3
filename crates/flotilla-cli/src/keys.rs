//! `flotilla keys …`: the site signing key's public half and the site TLS certificate, to bake
//! into device firmware.

use clap::{Subcommand, ValueEnum};
use flotilla_proto::PublicKey;
use flotilla_proto::api::EngineStatus;

use crate::client::{Api, print_json};
use crate::output::{out, outln};
use crate::{ApiArgs, CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Print the site's public signing key, to bake into device firmware.
    Export {
        #[arg(long, value_enum, default_value_t = KeyFormat::Pem)]
        format: KeyFormat,
        /// The same as --format json.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The site TLS certificate (HTTPS, MQTT over TLS): its fingerprints and PEM. `--pem >
    /// server.pem` is what `esp_https_ota`'s `cert_pem` takes.
    Tls {
        /// The `tls` block of `GET /api/v1/status` as JSON.
        #[arg(long, conflicts_with = "pem")]
        json: bool,
        /// Only the certificate, PEM.
        #[arg(long)]
        pem: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyFormat {
    /// SubjectPublicKeyInfo PEM.
    Pem,
    /// The raw 32-byte key in hex.
    Hex,
    /// The API's `PublicKey`: algorithm, hex, PEM and key id.
    Json,
}

pub async fn run(cmd: KeysCmd) -> CliResult {
    match cmd {
        KeysCmd::Export { format, json, api } => {
            let key: PublicKey = Api::resolve(&api)?.get("/api/v1/keys/public").await?;
            match if json { KeyFormat::Json } else { format } {
                KeyFormat::Pem => out!("{}", key.public_key_pem),
                KeyFormat::Hex => outln!("{}", key.public_key_hex),
                KeyFormat::Json => print_json(&key)?,
            }
            Ok(())
        }
        KeysCmd::Tls { json, pem, api } => {
            let status: EngineStatus = Api::resolve(&api)?.get("/api/v1/status").await?;
            let tls = status.tls;
            if json {
                return print_json(&tls);
            }
            let Some(cert_pem) = &tls.cert_pem else {
                return Err(CliError::failure("the engine has no TLS certificate (see its log)"));
            };
            if pem {
                out!("{cert_pem}");
                return Ok(());
            }
            let or_off = |v: &Option<String>| v.clone().unwrap_or_else(|| "off".into());
            outln!("certificate SHA-256:  {}", tls.cert_sha256.as_deref().unwrap_or("-"));
            outln!("public key SHA-256:   {}", tls.spki_sha256.as_deref().unwrap_or("-"));
            outln!("public key (base64):  sha256//{}", tls.spki_sha256_base64.as_deref().unwrap_or("-"));
            outln!("HTTPS:                {}", or_off(&tls.https_url));
            outln!("MQTT over TLS:        {}", or_off(&tls.mqtt_tls_url));
            outln!("names:                {}", tls.names.join(" "));
            out!("{cert_pem}");
            Ok(())
        }
    }
}
