//! Outbound HTTP from a handler, through `wasi:http/outgoing-handler`. A request goes out
//! only if the handler was granted a matching `--allow-http` rule; otherwise it fails with
//! `HttpRequestDenied` and the attempt's log says which URL and why.
//!
//! ```ignore
//! let answer = jobhost_plugin::http::get("https://api.example.com/status")?;
//! let created = jobhost_plugin::http::post_json("https://api.example.com/items", &item)?;
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use super::Result;

/// Redirects followed by [`Request::send`] before the last answer is returned as it is.
const MAX_REDIRECTS: usize = 5;
/// The largest piece written to a request body at once.
const WRITE_CHUNK: usize = 4096;

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    pub fn text(&self) -> Result<String> {
        Ok(String::from_utf8(self.body.clone())?)
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response itself when its status is 2xx; otherwise an error naming the status.
    pub fn error_for_status(self) -> Result<Response> {
        if self.is_success() {
            Ok(self)
        } else {
            let preview: String = String::from_utf8_lossy(&self.body)
                .chars()
                .take(200)
                .collect();
            Err(format!("HTTP {}: {preview}", self.status).into())
        }
    }
}

/// A request to build up and send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    follow_redirects: bool,
}

/// GETs `url`, following redirects.
pub fn get(url: &str) -> Result<Response> {
    Request::new("GET", url).send()
}

/// POSTs `value` as JSON to `url`.
pub fn post_json(url: &str, value: &impl Serialize) -> Result<Response> {
    Request::new("POST", url).json(value)?.send()
}

impl Request {
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            follow_redirects: true,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, with its content type.
    pub fn json(self, value: &impl Serialize) -> Result<Request> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Returns a 3xx answer as it is instead of following it.
    pub fn no_redirects(mut self) -> Request {
        self.follow_redirects = false;
        self
    }

    /// Sends the request and reads the whole answer. GET and HEAD follow redirects (each
    /// hop is checked against the grants like any request).
    pub fn send(self) -> Result<Response> {
        let follow = self.follow_redirects && matches!(self.method.as_str(), "GET" | "HEAD");
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let response = send_once(&self.method, &url, &self.headers, &self.body)?;
            let location = response.header("location").map(str::to_string);
            match location {
                Some(location) if follow && (300..400).contains(&response.status) => {
                    url = resolve(&url, &location)?;
                }
                _ => return Ok(response),
            }
        }
        Err(format!("more than {MAX_REDIRECTS} redirects from {}", self.url).into())
    }
}

/// The parts of an absolute URL.
struct Url<'a> {
    https: bool,
    authority: &'a str,
    path_and_query: &'a str,
}

fn parse(url: &str) -> Result<Url<'_>> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("'{url}' is not an http:// or https:// URL").into());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("'{url}' names no host").into());
    }
    let tail = tail.split('#').next().unwrap_or("");
    let path_and_query = if tail.is_empty() { "/" } else { tail };
    Ok(Url {
        https,
        authority,
        path_and_query,
    })
}

/// The URL a `Location` header points to, from the URL that answered with it.
fn resolve(base: &str, location: &str) -> Result<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let base = parse(base)?;
    let scheme = if base.https { "https" } else { "http" };
    if let Some(path) = location.strip_prefix('/') {
        return Ok(format!("{scheme}://{}/{path}", base.authority));
    }
    let directory = base
        .path_and_query
        .split('?')
        .next()
        .and_then(|path| path.rsplit_once('/'))
        .map_or("", |(directory, _)| directory);
    Ok(format!(
        "{scheme}://{}{directory}/{location}",
        base.authority
    ))
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    }
}

fn send_once(
    method_name: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response> {
    let parsed = parse(url)?;
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
        .collect();
    let fields =
        Fields::from_list(&fields).map_err(|e| format!("invalid request header: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let refused = |what: &str| format!("{what} of {url} refused by the HTTP client");
    request
        .set_method(&method(method_name))
        .map_err(|()| refused("the method"))?;
    let scheme = if parsed.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("the scheme"))?;
    request
        .set_authority(Some(parsed.authority))
        .map_err(|()| refused("the host"))?;
    request
        .set_path_with_query(Some(parsed.path_and_query))
        .map_err(|()| refused("the path"))?;
    let outgoing = request.body().map_err(|()| refused("the body"))?;
    let pending = outgoing_handler::handle(request, None)
        .map_err(|code| format!("{method_name} {url}: {code:?}"))?;
    {
        let stream = outgoing.write().map_err(|()| refused("the body"))?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("{method_name} {url}: writing the body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None)
        .map_err(|code| format!("{method_name} {url}: {code:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("the response was not ready after waiting for it")?
        .map_err(|()| "the response was taken twice")?
        .map_err(|code| format!("{method_name} {url}: {code:?}"))?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| "the body was taken twice")?;
    let mut bytes = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| "the body was taken twice")?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(error)) => {
                    return Err(format!(
                        "{method_name} {url}: reading the body: {}",
                        error.to_debug_string()
                    )
                    .into());
                }
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}
