//! The bench's server as a child process (`jobhost serve` of this binary on loopback ports the
//! system picks), so that the server and the measuring clients share no runtime; scratch
//! directories that remove themselves; and what a process has used, read from `/proc`.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the child may take from spawn to serving, and from SIGTERM to exit.
const START_BOUND: Duration = Duration::from_secs(60);
const STOP_BOUND: Duration = Duration::from_secs(30);
/// Log lines kept for the message of a child that failed.
const LOG_TAIL: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {binary} serve: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("the jobhost server process {what}; its last log lines:\n{log}")]
    Server { what: String, log: String },
    #[error("cannot signal the jobhost server process: {0}")]
    Signal(std::io::Error),
}

/// A directory removed with everything in it when dropped, on success and on error alike.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `<temp>/<name>-<pid>`, emptied first.
    pub fn new(name: &str) -> ScratchDir {
        ScratchDir::under(&std::env::temp_dir(), name)
    }

    /// `<parent>/<name>-<pid>`, emptied first.
    pub fn under(parent: &Path, name: &str) -> ScratchDir {
        let path = parent.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `jobhost serve` running as a child; killed when dropped unless stopped first.
pub struct ServerProcess {
    child: Child,
    pub grpc_addr: String,
    pub http_addr: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts `binary serve` with its data in `data_dir`, `admin_key`, and room for
    /// `triggers_per_tenant` triggers, and waits until it names the addresses it bound.
    pub async fn start(
        binary: &Path,
        data_dir: &Path,
        admin_key: &str,
        triggers_per_tenant: usize,
    ) -> Result<ServerProcess, ProcessError> {
        let mut child = Command::new(binary)
            .args(["serve", "--log-json", "--data-dir"])
            .arg(data_dir)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .arg("--max-triggers-per-tenant")
            .arg(triggers_per_tenant.to_string())
            .env("JOBHOST_ADMIN_KEY", admin_key)
            // The line naming the addresses, and warnings for a failure's message.
            .env("RUST_LOG", "warn,jobhost::server=info")
            .env_remove("JOBHOST_TLS_CERT")
            .env_remove("JOBHOST_TLS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                binary: binary.display().to_string(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (addresses, named) = tokio::sync::oneshot::channel();
        let tail = Arc::clone(&log);
        // Read to the end, so that the child never blocks on a full pipe.
        std::thread::spawn(move || read_log(stdout, tail, addresses));
        let mut server = ServerProcess {
            child,
            grpc_addr: String::new(),
            http_addr: String::new(),
            log,
        };
        match tokio::time::timeout(START_BOUND, named).await {
            Ok(Ok((grpc, http))) => {
                server.grpc_addr = grpc;
                server.http_addr = http;
                Ok(server)
            }
            Ok(Err(_)) => Err(server.failure("exited before serving")),
            Err(_) => Err(server.failure("did not name its addresses in time")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(mut self) -> Result<(), ProcessError> {
        terminate(&mut self.child)?;
        let deadline = Instant::now() + STOP_BOUND;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(self.failure(&exited(status))),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None) => return Err(self.failure("did not exit in time after SIGTERM")),
                Err(error) => return Err(ProcessError::Signal(error)),
            }
        }
    }

    fn failure(&mut self, what: &str) -> ProcessError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread may still be moving the last lines out of the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let log: Vec<String> = self.log.lock().expect("log lock").iter().cloned().collect();
        ProcessError::Server {
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

fn exited(status: ExitStatus) -> String {
    format!("exited with {status} after SIGTERM")
}

#[cfg(target_os = "linux")]
fn terminate(child: &mut Child) -> Result<(), ProcessError> {
    use rustix::process::{Pid, Signal, kill_process};
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| ProcessError::Signal(std::io::Error::other("no such pid")))?;
    kill_process(pid, Signal::TERM).map_err(|e| ProcessError::Signal(e.into()))
}

/// Elsewhere there is no graceful stop to ask for.
#[cfg(not(target_os = "linux"))]
fn terminate(child: &mut Child) -> Result<(), ProcessError> {
    child.kill().map_err(ProcessError::Signal)
}

/// Keeps the tail of the JSON log and sends the addresses of the line that names both.
fn read_log(
    stdout: std::process::ChildStdout,
    log: Arc<Mutex<VecDeque<String>>>,
    addresses: tokio::sync::oneshot::Sender<(String, String)>,
) {
    let mut addresses = Some(addresses);
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        if let Some(found) = serving_addresses(&line)
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

/// The gRPC and HTTP addresses of the server's JSON log line that names both.
fn serving_addresses(line: &str) -> Option<(String, String)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &entry["fields"];
    Some((
        fields["grpc_addr"].as_str()?.to_string(),
        fields["http_addr"].as_str()?.to_string(),
    ))
}

/// What a process has used so far: user plus system CPU seconds, and its peak resident memory.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

/// The usage of process `pid`, or of this process (Linux; `None` elsewhere or once it is gone).
pub fn usage(pid: Option<u32>) -> Option<Usage> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(Usage {
        cpu_seconds: cpu_seconds_of_stat(&stat)?,
        peak_rss_bytes: peak_rss_of_status(&status).unwrap_or(0),
    })
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds.
fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    // Fields after the parenthesized command name (which may hold spaces); utime and stime are
    // the 12th and 13th of them.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks / 100.0)
}

/// `VmHWM` of a `/proc/<pid>/status`, in bytes.
fn peak_rss_of_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_even_with_spaces_in_the_command_name() {
        let stat = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 \
                    9 0 1000 123456 789 18446744073709551615";
        assert_eq!(cpu_seconds_of_stat(stat), Some(3.0));
        assert_eq!(cpu_seconds_of_stat("garbage"), None);
    }

    #[test]
    fn peak_memory_is_vm_hwm_in_bytes() {
        let status =
            "Name:\tjobhost\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(peak_rss_of_status(status), Some(51200 * 1024));
        assert_eq!(peak_rss_of_status("Name:\tx\n"), None);
    }

    #[test]
    fn the_serving_line_names_both_addresses() {
        let line = r#"{"level":"INFO","fields":{"message":"jobhost is serving","grpc_addr":"127.0.0.1:4100","http_addr":"127.0.0.1:4101"}}"#;
        assert_eq!(
            serving_addresses(line),
            Some(("127.0.0.1:4100".into(), "127.0.0.1:4101".into()))
        );
        assert_eq!(serving_addresses(r#"{"fields":{"message":"x"}}"#), None);
    }

    #[test]
    fn this_process_reports_its_usage() {
        if cfg!(target_os = "linux") {
            let usage = usage(None).expect("/proc/self is readable");
            assert!(usage.peak_rss_bytes > 0);
        }
    }
}
