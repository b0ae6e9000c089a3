//! The connection to a running engine's admin API, shared by every client command: where it is,
//! its token, and how its answers and refusals map to exit codes.

use flotilla_core::DataDir;
use flotilla_core::config::default_data_dir;
use flotilla_proto::{ErrorBody, RuntimeInfo};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::output::outln;
use crate::{ApiArgs, CliError, CliResult};

/// A connection to one engine's admin API.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// Finds the API from flags, environment, or the data dir of a running `flotilla serve`.
    pub fn resolve(args: &ApiArgs) -> CliResult<Api> {
        let dir = DataDir::new(args.data_dir.clone().unwrap_or_else(default_data_dir));
        let base = match &args.api {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let path = dir.runtime_json();
                let text = std::fs::read_to_string(&path).map_err(|_| {
                    CliError::unreachable(format!(
                        "no running engine found ({} is missing); start `flotilla serve` or pass --api",
                        path.display()
                    ))
                })?;
                let info: RuntimeInfo = serde_json::from_str(&text)
                    .map_err(|e| CliError::failure(format!("{} is unreadable: {e}", path.display())))?;
                info.admin_url
            }
        };
        let token = match &args.token {
            Some(t) => t.trim().to_owned(),
            None => {
                let path = dir.admin_token();
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        CliError::failure(format!("cannot read the admin token {}: {e}; pass --token", path.display()))
                    })?
                    .trim()
                    .to_owned()
            }
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("flotilla-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::failure(format!("cannot build HTTP client: {e}")))?;
        Ok(Api { base, token, http })
    }

    /// Sends `req` with the token and reads the answer as JSON; a refusal becomes the engine's
    /// own message with its exit code.
    pub async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> CliResult<T> {
        let body = self.answer(req).await?;
        serde_json::from_slice(&body)
            .map_err(|e| CliError::failure(format!("unexpected answer from the admin API: {e}")))
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.send(self.request(Method::GET, path)).await
    }

    /// A request whose success carries no body (204).
    pub async fn send_empty(&self, req: reqwest::RequestBuilder) -> CliResult {
        self.answer(req).await.map(drop)
    }

    /// A GET whose answer is text (CSV, Prometheus), as it came.
    pub async fn text(&self, path: &str) -> CliResult<String> {
        let body = self.answer(self.request(Method::GET, path)).await?;
        String::from_utf8(body).map_err(|_| CliError::failure("the admin API answered with text that is not UTF-8"))
    }

    /// The body of a successful answer; any other answer as the error it means.
    async fn answer(&self, req: reqwest::RequestBuilder) -> CliResult<Vec<u8>> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CliError::unreachable(format!("cannot reach the admin API at {}: {e}", self.base)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| CliError::unreachable(format!("admin API answer broke off: {e}")))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
        Err(match status {
            s if s.is_server_error() => CliError::failure(message),
            StatusCode::UNAUTHORIZED => CliError::failure(format!("{message} (check --token / FLOTILLA_TOKEN)")),
            _ => CliError::refused(message),
        })
    }
}

/// Prints `v` as pretty JSON: the stable output of `--json`.
pub fn print_json<T: Serialize>(v: &T) -> CliResult {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::failure(e.to_string()))?;
    outln!("{text}");
    Ok(())
}

/// A list command: `GET path`, printed as the API's JSON with `--json`, else as a table with one
/// row per item (`empty` when there is none).
pub async fn print_list<T: DeserializeOwned + Serialize>(
    api: &crate::ApiArgs,
    path: &str,
    json: bool,
    empty: &str,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> CliResult {
    let list: Vec<T> = Api::resolve(api)?.get(path).await?;
    if json {
        return print_json(&list);
    }
    if list.is_empty() {
        outln!("{empty}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
    crate::output::table(headers, &rows);
    Ok(())
}

/// `path?k=v&…` with every key and value percent-encoded; pairs whose value is `None` are left out.
pub fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let query: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{}={}", encode(k), encode(v)))).collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}

/// `segment` percent-encoded for a URL path or query (a MAC, a label, a firmware reference).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_percent_encoded() {
        assert_eq!(encode("line 3/a"), "line%203%2Fa");
        assert_eq!(
            with_query("/api/v1/events", &[("since", Some("2026-12-01T00:00:00+01:00".into())), ("kind", None)]),
            "/api/v1/events?since=2026-12-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(with_query("/x", &[("a", None)]), "/x");
    }
}
