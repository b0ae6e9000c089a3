//! `flotilla keys …`: the site signing key's public half, to bake into device firmware.

use clap::{Subcommand, ValueEnum};
use flotilla_proto::PublicKey;

use crate::client::{Api, print_json};
use crate::output::{out, outln};
use crate::{ApiArgs, CliResult};

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
    }
}
