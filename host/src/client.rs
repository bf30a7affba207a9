//! A small REST client of a running server, used by the `jobhost jobs` and `jobhost keys`
//! commands (key management goes through the server, which owns the data directory).

use reqwest::Method;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {server}: {source}{}", tls_hint(source))]
    Unreachable {
        server: String,
        source: reqwest::Error,
    },
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("unexpected answer from the server (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
}

#[derive(Clone)]
pub struct RestClient {
    server: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl RestClient {
    pub fn new(server: &str, api_key: Option<String>) -> RestClient {
        RestClient::with_http(server, api_key, reqwest::Client::new())
    }

    /// A client over `http`, e.g. one that trusts a private CA ([`crate::tls::http_client`]).
    pub fn with_http(server: &str, api_key: Option<String>, http: reqwest::Client) -> RestClient {
        RestClient {
            server: server.trim_end_matches('/').to_string(),
            api_key,
            http,
        }
    }

    /// Sends a request and returns the `data` of a successful answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.server));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// POSTs raw bytes (a component) and returns the `data` of a successful answer.
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<Value, ClientError> {
        let request = self
            .http
            .post(format!("{}{path}", self.server))
            .header("content-type", "application/wasm")
            .body(bytes);
        self.send(request).await
    }

    /// PUTs raw bytes (a secret's value) and returns the `data` of a successful answer.
    pub async fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> Result<Value, ClientError> {
        let request = self
            .http
            .put(format!("{}{path}", self.server))
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.send(request).await
    }

    /// GETs an answer to be read as it arrives (a backup, the metrics); a refusal is an error.
    pub async fn download(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            server: self.server.clone(),
            source,
        };
        let request = self.http.get(format!("{}{path}", self.server));
        let response = self.authorized(request).send().await.map_err(unreachable)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or_default();
        Err(refusal(status, &text, &answer))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            server: self.server.clone(),
            source,
        };
        let response = self.authorized(request).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        let answer: Value = serde_json::from_str(&text).map_err(|_| ClientError::Unexpected {
            status,
            body: text.chars().take(500).collect(),
        })?;
        if answer["success"] == Value::Bool(true) {
            return Ok(answer["data"].clone());
        }
        Err(refusal(status, &text, &answer))
    }
}

/// The error of an answer that is not a success: the server's own, if it sent one.
fn refusal(status: u16, text: &str, answer: &Value) -> ClientError {
    match answer.get("error") {
        Some(error) => ClientError::Refused {
            code: error["code"].as_str().unwrap_or("ERROR").to_string(),
            message: error["message"].as_str().unwrap_or_default().to_string(),
        },
        None => ClientError::Unexpected {
            status,
            body: text.chars().take(500).collect(),
        },
    }
}

/// What to do about a server certificate that the TLS library refuses for a reason its own
/// message does not explain.
fn tls_hint(error: &reqwest::Error) -> &'static str {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(error) = cause {
        if format!("{error:?}").contains("CaUsedAsEndEntity") {
            return "\nthe server presents a CA certificate (basicConstraints CA:TRUE) as its own, \
                    which TLS clients refuse: give the server a certificate issued by that CA, \
                    or a self-signed one made with CA:FALSE (see the README's TLS section)";
        }
        cause = error.source();
    }
    ""
}
