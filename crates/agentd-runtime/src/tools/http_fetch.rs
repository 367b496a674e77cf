//! `http_fetch`: GET a public URL, with SSRF protection. The host is resolved once, every address is
//! checked against private, loopback, link-local and other non-public ranges, and the request is pinned
//! to the checked address (so a second DNS answer cannot point it elsewhere). Redirects are followed by
//! hand, each hop checked again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ServerTool;

/// Limits of `http_fetch`, from `[tools.http_fetch]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpFetchConfig {
    /// Allow private, loopback and link-local addresses. Off by default: a model must not reach the
    /// server's own network. (Tests turn it on to fetch from a local server.)
    pub allow_private_networks: bool,
    pub timeout_ms: u64,
    /// Bytes of the body handed to the model; the rest is cut off.
    pub max_bytes: usize,
}

impl Default for HttpFetchConfig {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            timeout_ms: 10_000,
            max_bytes: 256 * 1024,
        }
    }
}

const MAX_REDIRECTS: usize = 3;

/// Fetches a URL for the model.
pub struct HttpFetch {
    config: HttpFetchConfig,
}

impl HttpFetch {
    pub fn new(config: HttpFetchConfig) -> Self {
        Self { config }
    }

    /// The address to connect to for `url`, refusing non-public ones unless allowed.
    async fn checked_address(&self, url: &url::Url) -> Result<SocketAddr, String> {
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host_for_lookup, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let first = *addresses
            .first()
            .ok_or_else(|| format!("{host} has no address"))?;
        if !self.config.allow_private_networks {
            if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "refused: {host} resolves to {}, which is not a public address",
                    private.ip()
                ));
            }
        }
        Ok(first)
    }

    async fn fetch(&self, url: url::Url) -> Result<String, String> {
        let fetched = self.get(url, self.config.max_bytes).await?;
        let mut text = String::from_utf8_lossy(&fetched.body).into_owned();
        if fetched.truncated {
            text.push_str("\n[truncated]");
        }
        Ok(format!("HTTP {}\n\n{text}", fetched.status))
    }

    /// GETs `url` with the same checks as the tool (public addresses only unless allowed, each
    /// redirect checked again), keeping at most `max_bytes` of the body.
    pub async fn get(&self, mut url: url::Url, max_bytes: usize) -> Result<Fetched, String> {
        for _ in 0..=MAX_REDIRECTS {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "refused: only http and https URLs, not {}",
                    url.scheme()
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err("refused: URLs with credentials".into());
            }
            let address = self.checked_address(&url).await?;
            let host = url.host_str().unwrap_or_default().to_owned();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_millis(self.config.timeout_ms))
                .resolve(&host, address)
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
            let mut response = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| format!("fetching {url} failed: {e}"))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{url} redirected without a Location"))?;
                url = url
                    .join(location)
                    .map_err(|e| format!("bad redirect target {location}: {e}"))?;
                continue;
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| format!("reading {url} failed: {e}"))?
            {
                let room = max_bytes.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                status: status.as_u16(),
                content_type,
                body,
                truncated,
                url,
            });
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// What [`HttpFetch::get`] got.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub status: u16,
    /// The `Content-Type` header, as sent.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Whether the body was longer than asked for (and cut).
    pub truncated: bool,
    /// The URL finally answered, after redirects.
    pub url: url::Url,
}

#[async_trait]
impl ServerTool for HttpFetch {
    fn name(&self) -> &str {
        "http_fetch"
    }

    fn description(&self) -> &str {
        "Fetches a public http(s) URL with GET and returns the status and the body as text."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": { "url": { "type": "string", "description": "The http or https URL to fetch." } },
            "required": ["url"]
        })
    }

    async fn call(&self, arguments: Value) -> Result<String, String> {
        let raw = arguments
            .get("url")
            .and_then(Value::as_str)
            .ok_or("`url` (a string) is required")?;
        let url = url::Url::parse(raw).map_err(|e| format!("`url` is not a URL: {e}"))?;
        self.fetch(url).await
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_and_metadata_urls_are_refused() {
        let tool = HttpFetch::new(HttpFetchConfig::default());
        for url in [
            "http://127.0.0.1:9/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://localhost/",
        ] {
            let error = tool.call(json!({ "url": url })).await.unwrap_err();
            assert!(error.starts_with("refused"), "{url}: {error}");
        }
        let error = tool
            .call(json!({ "url": "file:///etc/passwd" }))
            .await
            .unwrap_err();
        assert!(error.contains("only http"), "{error}");
    }
}
