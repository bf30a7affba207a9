//! Shared test set-up: real servers on loopback ephemeral ports, real gRPC clients.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jobhost::api::grpc::pb;
use jobhost::api::grpc::pb::jobs_service_client::JobsServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub use pb::*;

pub const ADMIN_KEY: &str = "test-admin-key";

pub type Client = JobsServiceClient<Channel>;

/// A server running inside the test process.
pub struct TestServer {
    pub server: Option<jobhost::RunningServer>,
    pub dir: tempfile::TempDir,
    adjust: Adjust,
}

/// A change to a test server's configuration, applied at every start.
type Adjust = Arc<dyn Fn(&mut jobhost::Config) + Send + Sync>;

/// The bytes of a component built from `plugins/` (examples and fixtures).
pub fn plugin(name: &str) -> Vec<u8> {
    let path = plugin_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Where a component built from `plugins/` is (cargo names the file with underscores).
pub fn plugin_path(name: &str) -> PathBuf {
    Path::new(env!("JOBHOST_PLUGINS_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server whose configuration `adjust` changes first.
    pub async fn start_with(
        adjust: impl Fn(&mut jobhost::Config) + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::start_on(tempfile::tempdir().expect("temp dir"), adjust).await
    }

    /// Starts a server on the data already in `dir` (a restored one, say).
    pub async fn start_on(
        dir: tempfile::TempDir,
        adjust: impl Fn(&mut jobhost::Config) + Send + Sync + 'static,
    ) -> TestServer {
        let adjust: Adjust = Arc::new(adjust);
        let server = start_in(dir.path(), &adjust).await;
        TestServer {
            server: Some(server),
            dir,
            adjust,
        }
    }

    /// A REST client calling with `key`.
    pub fn rest(&self, key: &str) -> jobhost::client::RestClient {
        jobhost::client::RestClient::new(&self.http_url(), Some(key.into()))
    }

    /// Deploys a component from `plugins/` (e.g. "echo") through REST; returns the handler.
    pub async fn deploy(
        &self,
        key: &str,
        plugin_name: &str,
        query: &str,
    ) -> Result<serde_json::Value, jobhost::client::ClientError> {
        let path = format!("/api/v1/handlers?{query}");
        self.rest(key).upload(&path, plugin(plugin_name)).await
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.running().grpc_addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.running().http_addr)
    }

    pub fn running(&self) -> &jobhost::RunningServer {
        self.server.as_ref().expect("server is running")
    }

    pub async fn client(&self) -> Client {
        connect(&self.grpc_url()).await
    }

    /// A plain channel, for the services other than JobsService.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc_url())
            .expect("valid url")
            .connect()
            .await
            .expect("connects")
    }

    /// Shuts down gracefully and starts again on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.server = Some(start_in(self.dir.path(), &self.adjust).await);
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    /// Creates an API key through the admin key; returns the key.
    pub async fn key(&self, permissions: &[&str], tenants: &[&str]) -> String {
        let body = serde_json::json!({ "permissions": permissions, "tenants": tenants });
        let client = jobhost::client::RestClient::new(&self.http_url(), Some(ADMIN_KEY.into()));
        let data = client
            .call(reqwest::Method::POST, "/api/v1/keys", Some(body))
            .await
            .expect("key created");
        data["key"].as_str().unwrap().to_string()
    }
}

async fn start_in(dir: &Path, adjust: &Adjust) -> jobhost::RunningServer {
    let mut config = jobhost::Config::local(dir);
    config.admin_key = Some(ADMIN_KEY.into());
    config.max_attempts = 8;
    adjust(&mut config);
    jobhost::start(config).await.expect("server starts")
}

pub async fn connect(url: &str) -> Client {
    JobsServiceClient::connect(url.to_string())
        .await
        .expect("connects")
}

/// Wraps a message with an API key.
pub fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ascii key"));
    request
}

pub fn admin<T>(message: T) -> Request<T> {
    with_key(message, ADMIN_KEY)
}

pub fn create_request(job_type: &str, variables: &str) -> CreateJobRequest {
    CreateJobRequest {
        r#type: job_type.into(),
        variables: variables.into(),
        ..Default::default()
    }
}

/// Creates a job over gRPC in a tenant, as the admin; returns its key.
pub async fn create_in(
    client: &mut Client,
    tenant: &str,
    job_type: &str,
    variables: &str,
) -> String {
    let mut request = create_request(job_type, variables);
    request.tenant_id = tenant.into();
    client
        .create_job(admin(request))
        .await
        .unwrap()
        .into_inner()
        .job_key
}

pub async fn create(client: &mut Client, job_type: &str, variables: &str) -> String {
    let response = client
        .create_job(admin(create_request(job_type, variables)))
        .await
        .expect("job created")
        .into_inner();
    assert!(response.success);
    response.job_key
}

pub fn activate_request(job_type: &str, worker: &str) -> ActivateJobsRequest {
    ActivateJobsRequest {
        r#type: job_type.into(),
        worker: worker.into(),
        request_timeout: Some(-1),
        ..Default::default()
    }
}

/// Collects every job of an ActivateJobs call, however many responses carry them.
pub async fn activate_with(
    client: &mut Client,
    request: Request<ActivateJobsRequest>,
) -> Result<Vec<ActivatedJob>, Status> {
    let mut stream = client.activate_jobs(request).await?.into_inner();
    let mut jobs = Vec::new();
    while let Some(response) = stream.message().await? {
        assert!(response.success, "{}", response.error_message);
        jobs.extend(response.jobs);
    }
    Ok(jobs)
}

/// Creates a job and leases it to `worker`; returns the bare key and the leased key.
pub async fn create_and_activate(
    client: &mut Client,
    job_type: &str,
    worker: &str,
) -> (String, String) {
    let key = create(client, job_type, "{}").await;
    let leased = activate(client, job_type, worker, 1, 0)
        .await
        .remove(0)
        .job_key;
    (key, leased)
}

/// Activates without waiting, as the admin.
pub async fn activate(
    client: &mut Client,
    job_type: &str,
    worker: &str,
    max: i32,
    timeout_ms: i32,
) -> Vec<ActivatedJob> {
    let mut request = activate_request(job_type, worker);
    request.max_jobs_to_activate = max;
    request.timeout = timeout_ms;
    activate_with(client, admin(request))
        .await
        .expect("activation")
}

pub async fn get(client: &mut Client, key: &str) -> Job {
    client
        .get_job(admin(GetJobRequest {
            job_key: key.into(),
        }))
        .await
        .expect("job read")
        .into_inner()
        .job
        .expect("job present")
}

pub async fn complete(client: &mut Client, key: &str) -> Result<CompleteJobResponse, Status> {
    let request = CompleteJobRequest {
        job_key: key.into(),
        variables: Default::default(),
    };
    client
        .complete_job(admin(request))
        .await
        .map(|r| r.into_inner())
}

/// Polls until the job is in `state` (timers act within milliseconds; the bound is generous
/// for loaded machines).
pub async fn wait_for_state(client: &mut Client, key: &str, state: &str) -> Job {
    for _ in 0..500 {
        let job = get(client, key).await;
        if job.state == state {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "job {key} never became {state}: {:?}",
        get(client, key).await
    );
}

pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    needle: &str,
) -> Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} does not mention {needle:?}",
        status.message()
    );
    status
}

/// The `jobhost` binary, run as its own process.
pub struct ServerProcess {
    pub child: Child,
    pub grpc_url: String,
    pub http_url: String,
    /// Every JSON log line the server has written so far.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jobhost"))
}

/// What `jobhost serve` with `args` says on stderr when it refuses to start (on a fresh data
/// directory); panics if it starts.
pub fn serve_refusal(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(binary())
        .arg("serve")
        .args(args)
        .env("JOBHOST_DATA_DIR", data.path())
        .output()
        .expect("jobhost runs");
    assert!(!output.status.success(), "serve {args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

impl ServerProcess {
    /// Starts `jobhost serve` on ephemeral ports and waits until /healthz answers.
    pub fn start(data_dir: &Path) -> ServerProcess {
        let mut child = Command::new(binary())
            .args([
                "serve",
                "--log-json",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("JOBHOST_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("jobhost starts");
        let stdout = child.stdout.take().expect("stdout");
        let log = Arc::default();
        let (grpc_url, http_url) = read_addresses(stdout, Arc::clone(&log));
        ServerProcess {
            child,
            grpc_url,
            http_url,
            log,
        }
    }

    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the JSON log until the "serving" line, which names both addresses; the rest of the
/// log is collected in the background.
fn read_addresses(
    stdout: std::process::ChildStdout,
    log: Arc<std::sync::Mutex<Vec<String>>>,
) -> (String, String) {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("log line");
        log.lock().unwrap().push(line.clone());
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let fields = &entry["fields"];
        if let (Some(grpc), Some(http)) =
            (fields["grpc_addr"].as_str(), fields["http_addr"].as_str())
        {
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
            return (format!("http://{grpc}"), format!("http://{http}"));
        }
    }
    panic!("jobhost exited before serving");
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a command to success; returns its stdout and stderr.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// The python of `target/<name>`, a venv with the pinned `requirements` (relative to the
/// workspace) installed, once per content of that file. A lock keeps tests that run at once
/// from installing into the same venv together.
pub fn python_venv(name: &str, requirements: &str) -> PathBuf {
    let root = workspace();
    let venv = root.join("target").join(name);
    let python = venv.join("bin/python");
    let requirements = root.join(requirements);
    let wanted = std::fs::read_to_string(&requirements).expect("requirements");
    let marker = venv.join("installed-requirements.txt");
    let ready = || {
        std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && python.exists()
    };
    if ready() {
        return python;
    }
    std::fs::create_dir_all(root.join("target")).expect("target dir");
    let lock =
        std::fs::File::create(root.join("target").join(format!("{name}.lock"))).expect("lock file");
    lock.lock().expect("venv lock");
    if ready() {
        return python;
    }
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(&requirements));
    std::fs::write(&marker, wanted).expect("marker written");
    python
}

/// The test venv's Python with grpcio, and a directory of stubs generated from
/// `proto/jobs.proto` for it (`jobs_pb2`, `jobs_pb2_grpc`).
pub async fn python_grpc_stubs() -> (PathBuf, tempfile::TempDir) {
    let python =
        tokio::task::spawn_blocking(|| python_venv("python-venv", "tests/python/requirements.txt"))
            .await
            .unwrap();
    let generated = tempfile::tempdir().unwrap();
    run(Command::new(&python)
        .current_dir(workspace())
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", generated.path().display()))
        .arg(format!("--grpc_python_out={}", generated.path().display()))
        .arg("proto/jobs.proto"));
    (python, generated)
}

/// Creates a job over REST from `body` (`type`, `variables`, `tenant_id`, `retries`…) and
/// waits until it is completed or failed; answers its REST view with its attempts.
pub async fn run_rest_job(
    rest: &jobhost::client::RestClient,
    body: serde_json::Value,
) -> serde_json::Value {
    let created = rest
        .call(reqwest::Method::POST, "/api/v1/jobs", Some(body))
        .await
        .expect("job created");
    let key = created["job_key"].as_str().expect("a job key").to_string();
    for _ in 0..1500 {
        let job = rest
            .call(reqwest::Method::GET, &format!("/api/v1/jobs/{key}"), None)
            .await
            .expect("job read");
        if matches!(job["state"].as_str(), Some("completed" | "failed")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {key} did not finish");
}
