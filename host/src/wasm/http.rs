//! The `http` import of async enrichers: plain HTTP/1.1 to the hosts and
//! ports the spec grants (`grants.network`), nothing else.
//!
//! Each instance keeps one connection alive (an instance runs one call at a
//! time, so it never needs two). A request to an address outside the grant
//! traps; the enricher then fails the job with [`NetworkDenied`]'s message,
//! which names the operator and the host.

use super::sluice::operator::http::{Request, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// The largest response body a guest may receive.
const MAX_BODY: usize = 16 << 20;

/// One `grants.network` entry: a host name or IP, and a port or any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    host: String,
    port: Option<u16>,
}

impl NetRule {
    /// `host:port`, `host:*` or `host` (any port); IPv6 as `[::1]:8080`.
    pub fn parse(s: &str) -> Result<NetRule, String> {
        let bad = |why: &str| format!("grants.network entry `{s}`: {why}");
        if s.contains("://") || s.contains('/') {
            return Err(bad(
                "write host:port (or host:* for any port), without a scheme or path",
            ));
        }
        let (host, port) = split_host_port(s.trim()).ok_or_else(|| bad("not host[:port]"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None | Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
        };
        Ok(NetRule {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

/// `host` and the text after its `:`; brackets around an IPv6 host are
/// removed.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            a => Some((host, Some(a.strip_prefix(':')?))),
        };
    }
    match s.split_once(':') {
        Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// A request outside the operator's grant. The trap carries it, so the
/// enricher can tell it from other traps.
#[derive(Debug)]
pub struct NetworkDenied {
    pub uid: String,
    pub host: String,
    pub port: u16,
    pub allowed: Vec<String>,
}

impl std::fmt::Display for NetworkDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "operator `{}` may not connect to {}:{}: the host is not in its grants.network ({})",
            self.uid,
            self.host,
            self.port,
            if self.allowed.is_empty() {
                "which is empty: the operator has no network access".to_owned()
            } else {
                format!("allowed: {}", self.allowed.join(", "))
            }
        )
    }
}

impl std::error::Error for NetworkDenied {}

/// An `http://` URL, split.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
    /// `host[:port]` as the Host header wants it.
    authority: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{url}: only http:// URLs are supported (not {scheme}://)"
            ));
        }
        None => return Err(format!("{url}: not an absolute http:// URL")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(format!("{url}: credentials in the URL are not supported"));
    }
    let (host, port) =
        split_host_port(authority).ok_or_else(|| format!("{url}: malformed host and port"))?;
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{url}: malformed port `{p}`"))?,
    };
    Ok(Target {
        host: host.to_ascii_lowercase(),
        port,
        path,
        authority: authority.to_owned(),
    })
}

/// The kept-alive connection of one instance.
pub struct Connection {
    host: String,
    port: u16,
    sender: SendRequest<Full<Bytes>>,
}

/// What one instance may reach, and its kept-alive connection.
pub struct Network {
    uid: Arc<str>,
    rules: Vec<NetRule>,
    /// The rules as the spec wrote them, for messages.
    text: Vec<String>,
    connection: Option<Connection>,
}

impl Network {
    /// The network of operator `uid`, from its `grants.network` entries.
    pub fn new(uid: Arc<str>, granted: &[String]) -> Result<Network, String> {
        Ok(Network {
            uid,
            rules: granted
                .iter()
                .map(|r| NetRule::parse(r))
                .collect::<Result<_, _>>()?,
            text: granted.to_vec(),
            connection: None,
        })
    }

    /// Checks the grant, then sends the request (reusing the connection when
    /// it goes to the same address and is still open).
    pub async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, String>> {
        let target = match parse_url(&request.url) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if !self
            .rules
            .iter()
            .any(|r| r.allows(&target.host, target.port))
        {
            return Err(wasmtime::Error::new(NetworkDenied {
                uid: self.uid.to_string(),
                host: target.host,
                port: target.port,
                allowed: self.text.clone(),
            }));
        }
        let reuse = self
            .connection
            .take()
            .filter(|c| c.host == target.host && c.port == target.port && !c.sender.is_closed());
        let mut conn = match reuse {
            Some(c) => c,
            None => match connect(&target).await {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            },
        };
        let method = match hyper::Method::from_bytes(request.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return Ok(Err(format!("`{}` is not an HTTP method", request.method))),
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(&target.path)
            .header(hyper::header::HOST, &target.authority);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let req = match builder.body(Full::new(Bytes::from(request.body))) {
            Ok(r) => r,
            Err(e) => return Ok(Err(format!("{}: malformed request: {e}", request.url))),
        };
        if let Err(e) = conn.sender.ready().await {
            return Ok(Err(format!("{}: connection lost: {e}", request.url)));
        }
        let response = match conn.sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(format!("{}: {e}", request.url))),
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(e) => {
                return Ok(Err(format!(
                    "{}: reading the response body failed: {e}",
                    request.url
                )));
            }
        };
        self.connection = Some(conn);
        Ok(Ok(Response {
            status,
            headers,
            body,
        }))
    }
}

async fn connect(target: &Target) -> Result<Connection, String> {
    let address = format!("{}:{}", target.host, target.port);
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{address}: HTTP handshake failed: {e}"))?;
    // The connection task ends when the sender is dropped (with the
    // instance) or the peer closes it.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection {
        host: target.host.clone(),
        port: target.port,
        sender,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_host_and_port() {
        let r = NetRule::parse("Tier.Example:8080").unwrap();
        assert!(r.allows("tier.example", 8080));
        assert!(!r.allows("tier.example", 80));
        assert!(!r.allows("other.example", 8080));
        let any = NetRule::parse("127.0.0.1:*").unwrap();
        assert!(any.allows("127.0.0.1", 1) && any.allows("127.0.0.1", 65535));
        assert_eq!(any, NetRule::parse("127.0.0.1").unwrap());
        let v6 = NetRule::parse("[::1]:9000").unwrap();
        assert!(v6.allows("::1", 9000));
        for bad in ["http://x:1", "x:port", ":80", "x:1:2"] {
            assert!(NetRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_split_into_host_port_and_path() {
        let t = parse_url("http://127.0.0.1:8080/customers/c-1?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.path, "/customers/c-1?x=1");
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = parse_url("HTTP://Example.COM").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.com", 80, "/")
        );
        assert_eq!(parse_url("http://h?q").unwrap().path, "/?q");
        assert!(
            parse_url("https://h/")
                .unwrap_err()
                .contains("only http://")
        );
        assert!(parse_url("h/x").is_err());
        assert!(parse_url("http://u:p@h/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
    }
}
