//! Outbound HTTP for async enrichers ([`crate::export_enricher!`]).
//!
//! Plain `http://` only, and only to the hosts and ports the pipeline spec
//! grants the operator (`grants.network`); a request anywhere else stops the
//! job with an error naming the operator and the host. The host bounds each
//! call by `enricher.timeout`, so these functions have no timeout of their own.
//! Each instance keeps one connection alive between calls.

use crate::Error;
use crate::bindings::enricher::sluice::operator::http as wit;
use serde::de::DeserializeOwned;

/// A response: any status (check it), headers, and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::new(format!("the response body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON; the error quotes the start of the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let start = String::from_utf8_lossy(&self.body[..self.body.len().min(60)]).into_owned();
            Error::new(format!(
                "the response body is not the JSON expected ({e}): {start:?}"
            ))
        })
    }

    /// This response if its status is 2xx, else an error naming the status.
    pub fn ok(self) -> Result<Response, Error> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let start = String::from_utf8_lossy(&self.body[..self.body.len().min(60)]).into_owned();
        Err(Error::new(format!(
            "HTTP status {}: {start:?}",
            self.status
        )))
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a request and reads the whole response. An `Err` is a transport
/// failure (connection refused, closed, not HTTP).
pub fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, Error> {
    let request = wit::Request {
        method: method.to_owned(),
        url: url.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let r = wit::fetch(&request).map_err(Error::new)?;
    Ok(Response {
        status: r.status,
        headers: r.headers,
        body: r.body,
    })
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    fetch("GET", url, &[], &[])
}
