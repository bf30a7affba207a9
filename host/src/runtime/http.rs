//! Outbound HTTP of attempts (`wasi:http/outgoing-handler`): every request is checked against
//! the handler's grants and the server's ceiling before it connects, connects only to
//! addresses checked after DNS, is bounded in number, bytes and time, carries the headers the
//! host injects for its host, and is recorded in the attempt's output.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::output::CapturedOutput;
use crate::grants::{HttpRefusal, HttpRule, RequestTarget, ServerHttpPolicy, authorize_request};

/// What one attempt's requests may use, together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Requests one attempt may send.
    pub max_requests: u32,
    /// Bytes of response body one request may receive.
    pub max_response_bytes: u64,
    pub connect_timeout: Duration,
    /// From the request sent to the response's headers.
    pub first_byte_timeout: Duration,
    /// Between two pieces of a response body.
    pub between_bytes_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_requests: 100,
            max_response_bytes: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
        }
    }
}

/// How a request ended, for metrics: its status code, `refused` or `error`.
pub type RequestObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// The outbound HTTP a handler version was granted, shared by its attempts.
pub struct HttpAccess {
    pub rules: Vec<HttpRule>,
    pub server: Arc<ServerHttpPolicy>,
    /// Headers added to requests to a host: (host, name, value). Values hold secrets.
    pub injected_headers: Vec<(String, String, String)>,
    pub limits: HttpLimits,
    /// Called once per request that was sent or refused.
    pub observe: RequestObserver,
    /// Certificates trusted for https; the system's roots when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAccess")
            .field("rules", &self.rules)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The hooks of one attempt's `wasi:http`: its grants, its count of requests, its deadline.
pub(super) struct AttemptHttp {
    access: Option<Arc<HttpAccess>>,
    sent: Arc<AtomicU32>,
    deadline: Instant,
    output: CapturedOutput,
}

impl AttemptHttp {
    pub(super) fn new(
        access: Option<Arc<HttpAccess>>,
        deadline: Instant,
        output: CapturedOutput,
    ) -> AttemptHttp {
        AttemptHttp {
            access,
            sent: Arc::default(),
            deadline,
            output,
        }
    }
}

impl WasiHttpHooks for AttemptHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        let request_line = RequestLine::of(&request);
        let Some(access) = self.access.clone() else {
            self.output.append(
                format!("[http] refused {request_line}: the handler is granted no outbound HTTP\n")
                    .as_bytes(),
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let sent = self.sent.clone();
        let deadline = self.deadline;
        let output = self.output.clone();
        Box::new(async move {
            let started = Instant::now();
            let result = send(&access, request, options, &sent, deadline).await;
            match result {
                Ok((response, io)) => {
                    let status = response.status().as_u16();
                    (access.observe)(&status.to_string());
                    let limits = &access.limits;
                    let between_bytes = options
                        .and_then(|o| o.between_bytes_timeout)
                        .unwrap_or(limits.between_bytes_timeout)
                        .min(limits.between_bytes_timeout);
                    let response = response.map(|body| {
                        MeteredBody {
                            inner: body,
                            received: 0,
                            limit: limits.max_response_bytes,
                            between_bytes: Box::pin(tokio::time::sleep(between_bytes)),
                            between_bytes_timeout: between_bytes,
                            deadline: Box::pin(tokio::time::sleep_until(deadline.into())),
                            record: Some(Record {
                                line: request_line,
                                status,
                                started,
                                output,
                            }),
                        }
                        .boxed_unsync()
                    });
                    Ok((response, io))
                }
                Err(Failure::Refused(why)) => {
                    (access.observe)("refused");
                    output.append(format!("[http] refused {request_line}: {why}\n").as_bytes());
                    Err(Error::HttpRequestDenied)
                }
                Err(Failure::Failed(error)) => {
                    (access.observe)("error");
                    output.append(
                        format!(
                            "[http] {request_line} failed after {} ms: {error}\n",
                            started.elapsed().as_millis()
                        )
                        .as_bytes(),
                    );
                    Err(error)
                }
            }
        })
    }
}

/// A request as the attempt's output names it: method, host and path, never the query.
struct RequestLine(String);

impl RequestLine {
    fn of<B>(request: &http::Request<B>) -> RequestLine {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https");
        // Host and port only: user information in the authority is never written down.
        let host = uri.host().unwrap_or("");
        let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
        RequestLine(format!(
            "{} {scheme}://{host}{port}{}",
            request.method(),
            uri.path()
        ))
    }
}

impl std::fmt::Display for RequestLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

enum Failure {
    /// The policy refused the request; the text says which rule and why.
    Refused(String),
    Failed(Error),
}

type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

async fn send(
    access: &HttpAccess,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    sent: &AtomicU32,
    deadline: Instant,
) -> Result<Sent, Failure> {
    let uri = request.uri().clone();
    let target = uri
        .host()
        .and_then(|host| {
            RequestTarget::new(
                request.method().as_str(),
                uri.scheme_str().unwrap_or("https"),
                host,
                uri.port_u16(),
            )
        })
        .ok_or(Failure::Failed(Error::HttpRequestUriInvalid))?;
    let names_host =
        authorize_request(&access.rules, &access.server, &target).map_err(|refusal| {
            Failure::Refused(match refusal {
                HttpRefusal::NotGranted => format!(
                    "{}; the handler may reach {}",
                    refusal,
                    describe_rules(&access.rules)
                ),
                other => other.to_string(),
            })
        })?;
    if sent.fetch_add(1, Ordering::Relaxed) >= access.limits.max_requests {
        return Err(Failure::Refused(format!(
            "the attempt already sent its {} requests",
            access.limits.max_requests
        )));
    }
    let limits = access.limits;
    let within =
        |timeout: Option<Duration>, ceiling: Duration| timeout.map_or(ceiling, |t| t.min(ceiling));
    let connect_timeout = within(
        options.and_then(|o| o.connect_timeout),
        limits.connect_timeout,
    );
    let first_byte_timeout = within(
        options.and_then(|o| o.first_byte_timeout),
        limits.first_byte_timeout,
    );
    let until = |timeout: Duration| (Instant::now() + timeout).min(deadline);

    let addresses = tokio::time::timeout_at(
        until(connect_timeout).into(),
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| Failure::Failed(Error::DnsTimeout))?
    .map_err(|_| {
        Failure::Failed(Error::DnsError {
            rcode: None,
            info_code: None,
        })
    })?
    .collect::<Vec<SocketAddr>>();
    // Only checked addresses are dialled, so a name that also resolves to an inner address
    // (DNS rebinding) cannot lead there.
    let mut refused = None;
    let checked: Vec<SocketAddr> = addresses
        .into_iter()
        .filter(
            |address| match crate::grants::check_address(address.ip(), names_host) {
                Ok(()) => true,
                Err(refusal) => {
                    refused.get_or_insert(refusal);
                    false
                }
            },
        )
        .collect();
    if checked.is_empty() {
        return Err(match refused {
            Some(refusal) => Failure::Refused(refusal.to_string()),
            None => Failure::Failed(Error::DestinationNotFound),
        });
    }
    let stream = tokio::time::timeout_at(
        until(connect_timeout).into(),
        TcpStream::connect(&checked[..]),
    )
    .await
    .map_err(|_| Failure::Failed(Error::ConnectionTimeout))?
    .map_err(|error| {
        Failure::Failed(match error.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            _ => Error::Connect(error),
        })
    })?;
    let _ = stream.set_nodelay(true);
    let stream: Box<dyn Stream> = if target.https {
        let config = access.tls.clone().unwrap_or_else(system_tls);
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| Failure::Failed(Error::HttpRequestUriInvalid))?;
        let tls = tokio::time::timeout_at(
            until(connect_timeout).into(),
            tokio_rustls::TlsConnector::from(config).connect(name, stream),
        )
        .await
        .map_err(|_| Failure::Failed(Error::ConnectionTimeout))?
        .map_err(|error| Failure::Failed(Error::Tls(error)))?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) = tokio::time::timeout_at(
        until(connect_timeout).into(),
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Failure::Failed(Error::ConnectionTimeout))?
    .map_err(|error| Failure::Failed(Error::from(error)))?;

    for (host, name, value) in &access.injected_headers {
        if *host == target.host
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(name.as_str()),
                http::HeaderValue::try_from(value.as_str()),
            )
        {
            let mut value = value;
            value.set_sensitive(true);
            request.headers_mut().insert(name, value);
        }
    }
    // On a direct connection the request names only its path (origin form).
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() =
        http::Uri::try_from(path).map_err(|_| Failure::Failed(Error::HttpRequestUriInvalid))?;

    let mut connection = Box::pin(connection);
    let response = {
        let exchange = tokio::time::timeout_at(
            until(first_byte_timeout).into(),
            sender.send_request(request),
        );
        tokio::pin!(exchange);
        // The connection is driven here until the response's headers are in; afterwards by
        // the task that reads the body.
        loop {
            tokio::select! {
                answered = &mut exchange => break answered,
                ended = &mut connection => {
                    ended.map_err(|error| Failure::Failed(Error::from(error)))?;
                }
            }
        }
    }
    .map_err(|_| Failure::Failed(Error::HttpResponseTimeout))?
    .map_err(|error| Failure::Failed(Error::from(error)))?;
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limits.max_response_bytes
    {
        return Err(Failure::Failed(Error::HttpResponseBodySize(Some(length))));
    }
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io: Box<dyn Future<Output = Result<(), Error>> + Send> =
        Box::new(async move { connection.await.map_err(Error::from) });
    Ok((response, io))
}

fn describe_rules(rules: &[HttpRule]) -> String {
    if rules.is_empty() {
        return "nothing".into();
    }
    rules
        .iter()
        .map(|rule| rule.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The system's trusted roots, loaded once.
fn system_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "a system root certificate could not be loaded");
            }
            roots.add_parsable_certificates(found.certs);
            Arc::new(client_config(roots))
        })
        .clone()
}

/// A TLS client trusting `roots`.
pub fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// What is written to the attempt's output when a response body ends or is dropped.
struct Record {
    line: RequestLine,
    status: u16,
    started: Instant,
    output: CapturedOutput,
}

/// A response body cut at the byte limit, the gap between pieces and the attempt's deadline;
/// the request is recorded with its byte count when the body is done with.
struct MeteredBody {
    inner: WasiBody,
    received: u64,
    limit: u64,
    between_bytes: Pin<Box<tokio::time::Sleep>>,
    between_bytes_timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    record: Option<Record>,
}

impl MeteredBody {
    fn finish(&mut self, note: &str) {
        if let Some(record) = self.record.take() {
            record.output.append(
                format!(
                    "[http] {} -> {}, {} bytes, {} ms{note}\n",
                    record.line,
                    record.status,
                    self.received,
                    record.started.elapsed().as_millis()
                )
                .as_bytes(),
            );
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        self.finish("");
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        let limit = this.limit;
                        this.finish(&format!(" (cut at the limit of {limit} bytes)"));
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            this.received,
                        )))));
                    }
                }
                let next = tokio::time::Instant::now() + this.between_bytes_timeout;
                this.between_bytes.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(&format!(" (failed: {error})"));
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.finish("");
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.finish(" (cut at the attempt's deadline)");
                    return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
                }
                if this.between_bytes.as_mut().poll(cx).is_ready() {
                    this.finish(" (no data within the between-bytes timeout)");
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }
}
