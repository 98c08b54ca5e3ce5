//! What keeps a web page out of the API. A browser on the same machine can
//! reach a loopback server, so loopback is not a trust boundary: a page the
//! user visits may send requests to `127.0.0.1:8081` (a "simple" POST needs
//! no CORS preflight), and a DNS-rebinding page may even read the answers.
//! A job spec reads and writes files as the server's user, so each of these
//! checks stops that on its own:
//!
//! - the `Host` header must name this server: an IP address (a browser
//!   sending one is on a page of that address, which is ours), `localhost`,
//!   the name it was told to listen on, or one given with `--allow-host` —
//!   a rebinding page's name is none of these;
//! - an `Origin` header, when a browser sends one, must be this server's
//!   own (`http://` and the `Host` it was sent to);
//! - a POST must carry `Content-Type: application/json`, which a page can
//!   only send after a preflight that this server never answers;
//! - and, by default, a token (generated at start, kept in a file only the
//!   user can read, which the CLI reads; the dashboard gets it in its URL).

use axum::http::{HeaderMap, Method, header};
use std::path::{Path, PathBuf};

/// The names a `Host` header may carry, besides IP addresses.
#[derive(Debug, Clone)]
pub struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// `localhost`, and the host part of `listen` when it is a name.
    pub fn for_listen(listen: &str) -> Hosts {
        let (host, _) = split_host_port(listen);
        Hosts {
            names: vec!["localhost".to_owned()],
        }
        .with(host)
    }

    /// Allows another name (`--allow-host`: the name a reverse proxy or a
    /// container network gives the server).
    pub fn with(mut self, name: &str) -> Hosts {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty()
            && name.parse::<std::net::IpAddr>().is_err()
            && !self.names.contains(&name)
        {
            self.names.push(name);
        }
        self
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host.parse::<std::net::IpAddr>().is_ok() || self.names.contains(&host)
    }
}

/// `host[:port]`, `[v6]:port` or `[v6]` into host (without brackets) and
/// port.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

/// Why a request is refused before it reaches the API: a status and a
/// message.
pub type Refusal = (axum::http::StatusCode, String);

/// Checks the `Host`, `Origin` and (for a POST) `Content-Type` headers.
pub fn check(method: &Method, headers: &HeaderMap, hosts: &Hosts) -> Result<(), Refusal> {
    use axum::http::StatusCode;
    let text = |name: header::HeaderName| {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| format!("the {name} header is not text"))
            })
            .transpose()
    };
    let bad = |m: String| (StatusCode::FORBIDDEN, m);
    let host = text(header::HOST).map_err(bad)?.unwrap_or_default();
    let (host_name, _) = split_host_port(host);
    if !hosts.allows(host_name) {
        return Err(bad(format!(
            "refused: the request is for host `{host}`, which is not this server (a page of another site, through DNS rebinding?); use http://localhost or an IP address"
        )));
    }
    if let Some(origin) = text(header::ORIGIN).map_err(bad)? {
        let ours = [format!("http://{host}"), format!("https://{host}")];
        if !ours.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Err(bad(format!(
                "refused: a request from the web page at `{origin}`, which is not this server's dashboard (cross-site requests are not allowed)"
            )));
        }
    }
    if method == Method::POST {
        let content_type = text(header::CONTENT_TYPE)
            .map_err(|m| (StatusCode::UNSUPPORTED_MEDIA_TYPE, m))?
            .unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            let given = if content_type.is_empty() {
                "none".to_owned()
            } else {
                format!("`{content_type}`")
            };
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a POST must have `Content-Type: application/json` (this one has {given}), even with an empty body"
                ),
            ));
        }
    }
    Ok(())
}

/// A new random token: 32 bytes from the operating system, in hex.
pub fn new_token() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read random bytes for a token from /dev/urandom: {e}"))?;
    Ok(crate::wasm::hex(&bytes))
}

/// Where `sluice serve` on `port` keeps its token, and where the CLI looks
/// for it: `$SLUICE_HOME/serve-<port>.token`, else
/// `~/.local/share/sluice/serve-<port>.token`.
pub fn token_file(port: u16) -> PathBuf {
    crate::home_dir().join(format!("serve-{port}.token"))
}

/// Writes `token` to `path`, readable and writable by the user alone (the
/// file is created with that mode, so it is never readable by others, even
/// for a moment).
pub fn write_token(path: &Path, token: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| format!("cannot write the token to {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    // A file left by an earlier server may have other permissions: replace it.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    f.write_all(token.as_bytes()).map_err(fail)
}

/// The token in `path`, if the file exists and is the user's alone.
pub fn read_token(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            "ignoring {}: others may read it (it should be mode 600)",
            path.display()
        );
        return None;
    }
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn status(method: Method, pairs: &[(header::HeaderName, &str)]) -> Option<StatusCode> {
        check(
            &method,
            &headers(pairs),
            &Hosts::for_listen("127.0.0.1:8081"),
        )
        .err()
        .map(|e| e.0)
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_the_listen_name() {
        let h = Hosts::for_listen("127.0.0.1:8081");
        for ok in ["127.0.0.1", "localhost", "LOCALHOST", "::1", "10.1.2.3"] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
        let h = Hosts::for_listen("myhost.internal:9000");
        assert!(h.allows("myhost.internal") && h.allows("localhost"));
        let h = Hosts::for_listen("0.0.0.0:8081").with("sluice");
        assert!(h.allows("sluice") && h.allows("SLUICE.") && !h.allows("other"));
        assert_eq!(split_host_port("[::1]:8081"), ("::1", Some("8081")));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("a:1"), ("a", Some("1")));
    }

    #[test]
    fn foreign_hosts_origins_and_simple_posts_are_refused() {
        use header::{CONTENT_TYPE, HOST, ORIGIN};
        let json = "application/json";
        assert_eq!(status(Method::GET, &[(HOST, "127.0.0.1:8081")]), None);
        assert_eq!(status(Method::GET, &[]), Some(StatusCode::FORBIDDEN));
        assert_eq!(
            status(Method::GET, &[(HOST, "evil.example:8081")]),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(
                Method::POST,
                &[
                    (HOST, "localhost:8081"),
                    (CONTENT_TYPE, "application/json; charset=utf-8")
                ]
            ),
            None
        );
        assert_eq!(
            status(
                Method::POST,
                &[
                    (HOST, "localhost:8081"),
                    (ORIGIN, "http://localhost:8081"),
                    (CONTENT_TYPE, json)
                ]
            ),
            None
        );
        for origin in [
            "http://evil.example",
            "null",
            "http://localhost:9999",
            "http://127.0.0.1:8081",
        ] {
            assert_eq!(
                status(
                    Method::POST,
                    &[
                        (HOST, "localhost:8081"),
                        (ORIGIN, origin),
                        (CONTENT_TYPE, json)
                    ]
                ),
                Some(StatusCode::FORBIDDEN),
                "{origin}"
            );
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "",
        ] {
            let mut h = vec![(HOST, "localhost:8081")];
            if !ct.is_empty() {
                h.push((CONTENT_TYPE, ct));
            }
            assert_eq!(
                status(Method::POST, &h),
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{ct}"
            );
        }
    }

    #[test]
    fn the_token_file_is_the_users_alone() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/serve-1.token");
        let t = new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token().unwrap());
        write_token(&path, &t).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read_token(&path).as_deref(), Some(t.as_str()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_token(&path), None);
        // Rewriting fixes the mode.
        write_token(&path, "x").unwrap();
        assert_eq!(read_token(&path).as_deref(), Some("x"));
    }
}
