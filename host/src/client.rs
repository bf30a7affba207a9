//! A small REST client of a running server, used by the `jobhost jobs` and `jobhost keys`
//! commands (key management goes through the server, which owns the data directory).

use reqwest::Method;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {server}: {source}")]
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
        RestClient {
            server: server.trim_end_matches('/').to_string(),
            api_key,
            http: reqwest::Client::new(),
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

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key);
        }
        let unreachable = |source| ClientError::Unreachable {
            server: self.server.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        let answer: Value = serde_json::from_str(&text).map_err(|_| ClientError::Unexpected {
            status,
            body: text.chars().take(500).collect(),
        })?;
        if answer["success"] == Value::Bool(true) {
            return Ok(answer["data"].clone());
        }
        match answer.get("error") {
            Some(error) => Err(ClientError::Refused {
                code: error["code"].as_str().unwrap_or("ERROR").to_string(),
                message: error["message"].as_str().unwrap_or_default().to_string(),
            }),
            None => Err(ClientError::Unexpected {
                status,
                body: text.chars().take(500).collect(),
            }),
        }
    }
}
