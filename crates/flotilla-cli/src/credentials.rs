//! `flotilla credentials …`: the logins Flotilla uses for vendor devices (Tasmota web password,
//! Shelly login, ArduinoOTA and ESPHome OTA passwords), per family or per device. A password is
//! read from standard input, never from the command line (where `ps` would show it), and never
//! printed.

use std::io::{BufRead, IsTerminal, Write};

use clap::Subcommand;
use flotilla_proto::device::{CredentialInfo, CredentialRequest};
use reqwest::Method;

use crate::client::{Api, encode, print_json, print_list};
use crate::output::{opt, outln};
use crate::{ApiArgs, CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum CredentialsCmd {
    /// Set the login of a family (tasmota, shelly, arduino, esphome) or of
    /// one device (its MAC); the password is read from standard input.
    Set {
        /// A family or a MAC.
        scope: String,
        /// The username, for families that have one (Tasmota: admin when left out).
        #[arg(long)]
        username: Option<String>,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The credentials set (scopes and usernames; never a password).
    List {
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a credential.
    Remove {
        /// A family or a MAC.
        scope: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn read_password() -> CliResult<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (shown as you type; or pipe it in): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::failure(format!("cannot read the password from standard input: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::failure(
            "no password on standard input (e.g. `printf %s \"$PW\" | flotilla credentials set tasmota`)",
        ));
    }
    Ok(password)
}

pub async fn run(cmd: CredentialsCmd) -> CliResult {
    match cmd {
        CredentialsCmd::Set { scope, username, json, api } => {
            let api = Api::resolve(&api)?;
            let body = CredentialRequest { username, password: read_password()? };
            let c: CredentialInfo = api
                .send(api.request(Method::PUT, &format!("/api/v1/credentials/{}", encode(&scope))).json(&body))
                .await?;
            if json {
                return print_json(&c);
            }
            outln!("Credential of {} saved (user {}).", c.scope, opt(c.username.as_deref()));
            Ok(())
        }
        CredentialsCmd::List { json, api } => {
            print_list(
                &api,
                "/api/v1/credentials",
                json,
                "No credentials set.",
                &["SCOPE", "USERNAME", "PASSWORD"],
                |c: &CredentialInfo| vec![c.scope.clone(), opt(c.username.as_deref()), "set (never shown)".into()],
            )
            .await
        }
        CredentialsCmd::Remove { scope, api } => {
            let api = Api::resolve(&api)?;
            api.send_empty(api.request(Method::DELETE, &format!("/api/v1/credentials/{}", encode(&scope)))).await?;
            outln!("Credential of {scope} removed.");
            Ok(())
        }
    }
}
