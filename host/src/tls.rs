//! TLS: the server's certificate and key from PEM files, the HTTP listener that completes
//! handshakes beside its accept loop, and the trust of the command-line client.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ParsedCertificate;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once on one listener; further connections wait in the backlog,
/// so a flood of silent clients costs bounded memory.
const MAX_HANDSHAKES: usize = 1024;

/// Where the server's certificate chain and private key are, both PEM.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// The private key of that certificate: PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} does not hold a valid certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} does not hold a usable PEM private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in {} does not belong to the certificate in {}: {reason}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(#[source] rustls::Error),
    #[error("cannot set up the HTTPS client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The crypto of every TLS endpoint here. Tonic builds its configuration from the process
/// default, so that default is set to the same provider.
fn provider() -> Arc<CryptoProvider> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Fails only when a default is installed already, which is then left as it is.
    let _ = CryptoProvider::install_default(provider.as_ref().clone());
    provider
}

/// A loaded and checked server identity, ready for both listeners.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the files: each error names the file at fault.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsError> {
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let chain = certificates(&files.cert, &cert_pem)?;
        ParsedCertificate::try_from(&chain[0]).map_err(|e| TlsError::BadCertificate {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
        let bad_key = |reason: String| TlsError::BadKey {
            path: files.key.clone(),
            reason,
        };
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
        let provider = provider();
        provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| bad_key(e.to_string()))?;
        let mut http = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                reason: e.to_string(),
            })?;
        // The HTTP server speaks HTTP/1.1 only.
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            cert_pem,
            key_pem,
            http: Arc::new(http),
        })
    }

    /// The gRPC listener's configuration: tonic runs each handshake in its own task too.
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        tonic::transport::ServerTlsConfig::new()
            .identity(identity)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// Serves `tcp` over TLS.
    pub fn listener(&self, tcp: TcpListener) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(self.http.clone()),
            handshakes: JoinSet::new(),
        }
    }
}

/// A TLS listener for `axum::serve`. Each handshake runs in its own task with
/// [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up no other connection.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    fn start_handshake(&mut self, tcp: TcpStream, addr: SocketAddr) {
        // Small replies must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some((stream, addr)),
                Ok(Err(error)) => {
                    tracing::debug!(%addr, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Cancel safe, as axum needs at shutdown: the accept and the join are, and handshakes
    // in progress stay in `self`.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let can_accept = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                accepted = self.tcp.accept(), if can_accept => match accepted {
                    Ok((tcp, addr)) => self.start_handshake(tcp, addr),
                    Err(error) => accept_failed(error).await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A failed accept: a connection reset before it was taken costs nothing; anything else (out
/// of file descriptors) is logged and waited out rather than spun on.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting an HTTPS connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The command-line client's HTTP client: it trusts the system's roots and, when given,
/// the PEM certificates in `ca_cert` (a private CA or a self-signed server certificate).
pub fn http_client(ca_cert: Option<&Path>) -> Result<reqwest::Client, TlsError> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_cert {
        let pem = read(path)?;
        for der in certificates(path, &pem)? {
            let certificate =
                reqwest::Certificate::from_der(&der).map_err(|e| TlsError::BadCertificate {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(TlsError::Client)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}
