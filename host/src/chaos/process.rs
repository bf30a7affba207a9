//! The server under test as a child process: `jobhost serve` on loopback ports the system
//! picks at each start, ended only with SIGKILL.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::ChaosError;

/// Log lines kept for the report of a server that failed.
const LOG_TAIL: usize = 40;

pub(super) struct ServerProcess {
    child: Child,
    pub grpc_url: String,
    pub http_url: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts the server with the example handlers and waits, at most `bound`, until its gRPC
    /// health service says it is serving.
    pub async fn start(
        binary: &Path,
        data_dir: &Path,
        admin_key: &str,
        bound: Duration,
    ) -> Result<ServerProcess, ChaosError> {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["serve", "--examples", "--log-json", "--data-dir"])
            .arg(data_dir)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .env("JOBHOST_ADMIN_KEY", admin_key)
            // Only the line naming the addresses is needed, and warnings for a failure report.
            .env("RUST_LOG", "warn,jobhost::server=info")
            .env_remove("JOBHOST_TLS_CERT")
            .env_remove("JOBHOST_TLS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ChaosError::Spawn {
                binary: binary.display().to_string(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (addresses, found) = tokio::sync::oneshot::channel();
        let lines = Arc::clone(&log);
        // The pipe is read to its end so that a chatty server never blocks on a full pipe.
        std::thread::spawn(move || read_log(stdout, lines, addresses));
        let mut server = ServerProcess {
            child,
            grpc_url: String::new(),
            http_url: String::new(),
            log,
        };
        let (grpc, http) = match tokio::time::timeout(bound, found).await {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(_)) => return Err(server.failure("exited before serving")),
            Err(_) => return Err(server.failure("did not name its addresses in time")),
        };
        server.grpc_url = format!("http://{grpc}");
        server.http_url = format!("http://{http}");
        let left = bound.saturating_sub(started.elapsed());
        if !server.wait_until_serving(left).await {
            return Err(server.failure("did not report serving in time"));
        }
        Ok(server)
    }

    async fn wait_until_serving(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let Ok(endpoint) = Endpoint::from_shared(self.grpc_url.clone()) else {
            return false;
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2));
        let request = HealthCheckRequest {
            service: "atom.jobs.v1.JobsService".into(),
        };
        while Instant::now() < deadline {
            if let Ok(channel) = endpoint.connect().await {
                let mut health = HealthClient::new(channel);
                if let Ok(answer) = health.check(request.clone()).await
                    && answer.into_inner().status == ServingStatus::Serving as i32
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// SIGKILL. A server that had already exited on its own is an error: nothing else ends it.
    pub fn kill(mut self) -> Result<(), ChaosError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(self.failure(&format!("exited on its own ({status})")));
        }
        self.child.kill().map_err(ChaosError::Kill)?;
        self.child.wait().map_err(ChaosError::Kill)?;
        Ok(())
    }

    fn failure(&mut self, what: &str) -> ChaosError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread may still be moving the last lines out of the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let log: Vec<String> = self.log.lock().expect("log lock").iter().cloned().collect();
        ChaosError::Server {
            what: what.to_string(),
            log: log.join("\n"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps the tail of the JSON log and sends the addresses of the line that names both.
fn read_log(
    stdout: std::process::ChildStdout,
    log: Arc<Mutex<VecDeque<String>>>,
    addresses: tokio::sync::oneshot::Sender<(String, String)>,
) {
    let mut addresses = Some(addresses);
    let lines = std::io::BufReader::new(stdout).lines();
    for line in lines.map_while(Result::ok) {
        if addresses.is_some()
            && let Some(found) = serving_addresses(&line)
            && let Some(sender) = addresses.take()
        {
            let _ = sender.send(found);
        }
        let mut tail = log.lock().expect("log lock");
        if tail.len() == LOG_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

fn serving_addresses(line: &str) -> Option<(String, String)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &entry["fields"];
    Some((
        fields["grpc_addr"].as_str()?.to_string(),
        fields["http_addr"].as_str()?.to_string(),
    ))
}
