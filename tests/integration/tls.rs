//! TLS on both listeners: `serve --tls-cert --tls-key`, stock gRPC clients and the command
//! line trusting a private CA, and start-up refusing files it cannot use; and handlers'
//! outbound HTTPS, verified against the roots the server trusts.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use jobhost::api::grpc::pb::jobs_service_client::JobsServiceClient;
use jobhost::tls::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::harness::*;

/// A private CA and a server certificate it signed for `localhost` and 127.0.0.1, as PEM
/// files.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    files: TlsFiles,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "jobhost test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let ca_path = write("ca.pem", ca.pem());
        let files = TlsFiles {
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
        };
        Pki {
            ca: ca_path,
            files,
            dir,
        }
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).unwrap()
    }

    /// A file in the same directory with other content.
    fn other_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

async fn tls_server(pki: &Pki) -> TestServer {
    let files = pki.files.clone();
    TestServer::start_with(move |config| config.tls = Some(files.clone())).await
}

fn https_url(server: &TestServer) -> String {
    format!("https://localhost:{}", server.running().http_addr.port())
}

fn grpcs_url(server: &TestServer) -> String {
    format!("https://{}", server.running().grpc_addr)
}

async fn tls_client(server: &TestServer, ca_pem: &[u8]) -> Client {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(grpcs_url(server))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("connects over TLS");
    JobsServiceClient::new(channel)
}

/// Runs the command line against `server` with the admin key and no TLS settings from the
/// environment but `env`.
async fn cli(server: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = tokio::process::Command::new(binary());
    command
        .args(args)
        .args(["--server", server])
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .env_remove("JOBHOST_SERVER")
        .env_remove("JOBHOST_CA_CERT");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().await.expect("jobhost runs")
}

fn stdout_last_line(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// An HTTPS client that trusts the test CA (and nothing else).
fn https_client(pki: &Pki) -> reqwest::Client {
    jobhost::tls::http_client(Some(&pki.ca)).expect("client with the test CA")
}

#[tokio::test]
async fn a_grpc_client_trusting_the_ca_creates_and_activates_a_job_over_tls() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let mut client = tls_client(&server, &pki.ca_pem()).await;
    let key = create(&mut client, "tls", r#"{"n":1}"#).await;
    let jobs = activate(&mut client, "tls", "tls-worker", 1, 0).await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].job_key.starts_with(&format!("{key}-")));
    assert_eq!(get(&mut client, &key).await.state, "activated");
}

#[tokio::test]
async fn a_plaintext_grpc_client_cannot_call_the_tls_port() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let plain = format!("http://{}", server.running().grpc_addr);
    let called = tokio::time::timeout(Duration::from_secs(10), async {
        match JobsServiceClient::connect(plain).await {
            Ok(mut client) => client
                .create_job(admin(create_request("t", "{}")))
                .await
                .ok(),
            Err(_) => None,
        }
    })
    .await
    .expect("refused promptly");
    assert!(called.is_none(), "a plaintext call succeeded: {called:?}");
}

#[tokio::test]
async fn healthz_answers_over_https() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let response = https_client(&pki)
        .get(format!("{}/healthz", https_url(&server)))
        .send()
        .await
        .expect("https answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn plain_http_to_the_https_port_gets_no_answer() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let plain = format!("http://{}/healthz", server.running().http_addr);
    let answer = tokio::time::timeout(Duration::from_secs(10), reqwest::get(plain))
        .await
        .expect("refused promptly");
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
}

#[tokio::test]
async fn a_silent_connection_does_not_hold_up_other_https_clients() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    // Connected but never starting its handshake.
    let _silent = tokio::net::TcpStream::connect(server.running().http_addr)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let request = https_client(&pki)
        .get(format!("{}/healthz", https_url(&server)))
        .send();
    let response = tokio::time::timeout(jobhost::tls::HANDSHAKE_TIMEOUT / 2, request)
        .await
        .expect("answered while the silent handshake is pending")
        .expect("https answers");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_silent_connection_does_not_hold_up_other_grpc_clients() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let _silent = tokio::net::TcpStream::connect(server.running().grpc_addr)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let call = async {
        let mut client = tls_client(&server, &pki.ca_pem()).await;
        create(&mut client, "tls", "{}").await
    };
    tokio::time::timeout(jobhost::tls::HANDSHAKE_TIMEOUT / 2, call)
        .await
        .expect("answered while the silent handshake is pending");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_pending_handshakes() {
    let pki = Pki::new();
    let mut server = tls_server(&pki).await;
    let _silent_http = tokio::net::TcpStream::connect(server.running().http_addr)
        .await
        .unwrap();
    let _silent_grpc = tokio::net::TcpStream::connect(server.running().grpc_addr)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(jobhost::tls::HANDSHAKE_TIMEOUT / 2, server.stop())
        .await
        .expect("stopped while the handshakes are pending");
}

#[tokio::test]
async fn the_cli_with_ca_cert_creates_and_gets_a_job_over_https() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let ca = pki.ca.to_str().unwrap();
    let url = https_url(&server);
    let created = cli(
        &url,
        &["jobs", "create", "--type", "tls", "--ca-cert", ca],
        &[],
    )
    .await;
    let key = stdout_last_line(&created);
    let read = cli(&url, &["jobs", "get", &key, "--ca-cert", ca], &[]).await;
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let job: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(job["job_key"], key.as_str());
    assert_eq!(job["type"], "tls");
}

#[tokio::test]
async fn the_cli_trusts_the_ca_named_by_jobhost_ca_cert() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let created = cli(
        &https_url(&server),
        &["jobs", "create", "--type", "tls"],
        &[("JOBHOST_CA_CERT", &pki.ca)],
    )
    .await;
    let key = stdout_last_line(&created);
    assert!(!key.is_empty());
}

#[tokio::test]
async fn the_cli_without_the_ca_refuses_the_server_certificate() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let output = cli(
        &https_url(&server),
        &["jobs", "create", "--type", "tls"],
        &[],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
}

#[tokio::test]
async fn the_cli_says_what_to_do_about_a_ca_certificate_served_as_the_servers_own() {
    // What `openssl req -x509` makes by default: self-signed, with CA:TRUE.
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pki = Pki::new();
    let files = TlsFiles {
        cert: pki.other_file("ca-as-server.pem", &cert.pem()),
        key: pki.other_file("ca-as-server.key", &key.serialize_pem()),
    };
    let server = TestServer::start_with(move |config| config.tls = Some(files.clone())).await;
    let ca = pki.other_file("trusted.pem", &cert.pem());
    let output = cli(
        &https_url(&server),
        &["jobs", "create", "--type", "tls"],
        &[("JOBHOST_CA_CERT", &ca)],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CA:FALSE"), "{stderr}");
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_missing_key_file_and_names_it() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let missing = pki.dir.path().join("missing.key");
    let mut command = tokio::process::Command::new(binary());
    command
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--tls-cert")
        .arg(&pki.files.cert)
        .arg("--tls-key")
        .arg(&missing)
        .env("JOBHOST_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_BACKTRACE", "0");
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("exits at once")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn start_fails_naming_a_key_file_that_holds_no_key() {
    let pki = Pki::new();
    let garbage = pki.other_file("garbage.key", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n");
    let data = tempfile::tempdir().unwrap();
    let mut config = jobhost::Config::local(data.path());
    config.tls = Some(TlsFiles {
        cert: pki.files.cert.clone(),
        key: garbage.clone(),
    });
    let error = jobhost::start(config).await.err().expect("start fails");
    let message = error.to_string();
    assert!(
        message.contains(&garbage.display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn start_fails_naming_a_certificate_file_that_holds_no_certificate() {
    let pki = Pki::new();
    let garbage = pki.other_file("garbage.pem", "not a certificate\n");
    let data = tempfile::tempdir().unwrap();
    let mut config = jobhost::Config::local(data.path());
    config.tls = Some(TlsFiles {
        cert: garbage.clone(),
        key: pki.files.key.clone(),
    });
    let error = jobhost::start(config).await.err().expect("start fails");
    let message = error.to_string();
    assert!(
        message.contains(&format!("{} holds no PEM certificate", garbage.display())),
        "{message}"
    );
}

#[tokio::test]
async fn start_fails_when_the_key_does_not_belong_to_the_certificate() {
    let pki = Pki::new();
    let other_key = pki.other_file("other.key", &KeyPair::generate().unwrap().serialize_pem());
    let data = tempfile::tempdir().unwrap();
    let mut config = jobhost::Config::local(data.path());
    config.tls = Some(TlsFiles {
        cert: pki.files.cert.clone(),
        key: other_key.clone(),
    });
    let error = jobhost::start(config).await.err().expect("start fails");
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "the key in {} does not belong",
            other_key.display()
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_python_grpc_client_completes_a_job_over_tls() {
    let (python, generated) = python_grpc_stubs().await;
    let root = workspace();

    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let mut driver = std::process::Command::new(&python);
    driver
        .arg(root.join("tests/python/tls_client.py"))
        .arg(format!("localhost:{}", server.running().grpc_addr.port()))
        .arg(&pki.ca)
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .env("PYTHONPATH", generated.path());
    let output = tokio::task::spawn_blocking(move || run(&mut driver))
        .await
        .unwrap();
    let key = output
        .lines()
        .find_map(|line| line.strip_prefix("completed "))
        .expect("the script completed a job")
        .to_string();

    let mut client = tls_client(&server, &pki.ca_pem()).await;
    assert_eq!(get(&mut client, &key).await.state, "completed");
}

/// A server whose handlers may call `https://localhost:PORT` of `endpoint`, trusting `roots`
/// for it (the system's roots when `None`), with `calls-http` deployed for type `call`.
async fn server_calling(endpoint: &TestServer, roots: Option<Vec<u8>>) -> TestServer {
    use jobhost::grants::{HttpRule, ServerHttpPolicy};
    use jobhost::service::capabilities::HttpSettings;
    let port = endpoint.running().http_addr.port();
    let rule = HttpRule::parse(&format!("https://localhost:{port}")).unwrap();
    let tls = roots.map(|pem| {
        let mut store = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(&pem) {
            store.add(cert).unwrap();
        }
        std::sync::Arc::new(jobhost::runtime::client_config(store))
    });
    let server = TestServer::start_with(move |config| {
        config.http = HttpSettings {
            policy: std::sync::Arc::new(ServerHttpPolicy {
                rules: vec![rule.clone()],
            }),
            tls: tls.clone(),
            ..HttpSettings::default()
        };
    })
    .await;
    let grant = format!("allow_http=https%3A%2F%2Flocalhost%3A{port}");
    server
        .deploy(ADMIN_KEY, "calls-http", &format!("type=call&{grant}"))
        .await
        .unwrap();
    server
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|cert| cert.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reaches_an_https_host_whose_certificate_the_server_trusts() {
    let pki = Pki::new();
    let endpoint = tls_server(&pki).await;
    let server = server_calling(&endpoint, Some(pki.ca_pem())).await;
    let url = format!(
        "https://localhost:{}/healthz",
        endpoint.running().http_addr.port()
    );
    let body = serde_json::json!({ "type": "call", "variables": { "url": url }, "retries": 1 });
    let job = run_rest_job(&server.rest(ADMIN_KEY), body).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["execution_summary"]["result_variables"]["body"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_request_to_an_https_host_with_an_untrusted_certificate_fails() {
    let pki = Pki::new();
    let endpoint = tls_server(&pki).await;
    let server = server_calling(&endpoint, None).await;
    let url = format!(
        "https://localhost:{}/healthz",
        endpoint.running().http_addr.port()
    );
    let body = serde_json::json!({ "type": "call", "variables": { "url": url }, "retries": 1 });
    let job = run_rest_job(&server.rest(ADMIN_KEY), body).await;
    assert_eq!(job["state"], "failed", "{job}");
    let output = job["attempts"][0]["output"].as_str().unwrap();
    assert!(output.contains("TLS"), "{output}");
}
