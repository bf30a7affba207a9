//! `jobhost serve` as a child process on loopback ports the system picks: its start (until its
//! log names the addresses it bound), the tail of its log for a failure's message, and its end
//! by SIGTERM (a clean stop) or SIGKILL (a crash). The bench and the chaos run drive it.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Log lines kept for the message of a server that failed.
const LOG_TAIL: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ChildServerError {
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

/// How to start the child.
pub struct ServeCommand<'a> {
    /// The `jobhost` binary.
    pub binary: &'a Path,
    pub data_dir: &'a Path,
    /// Passed in `JOBHOST_ADMIN_KEY`, never on the command line.
    pub admin_key: &'a str,
    /// More `serve` arguments.
    pub args: Vec<String>,
    /// Whether the child's stderr goes to this process's (its log is read from stdout).
    pub show_stderr: bool,
}

/// The running child; killed when dropped unless stopped first.
pub struct ChildServer {
    child: Child,
    pub grpc_addr: String,
    pub http_addr: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ChildServer {
    /// Starts the child and waits, at most `bound`, until its log names the addresses it bound.
    pub async fn start(
        command: ServeCommand<'_>,
        bound: Duration,
    ) -> Result<ChildServer, ChildServerError> {
        let mut child = Command::new(command.binary)
            .args(["serve", "--log-json", "--data-dir"])
            .arg(command.data_dir)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(&command.args)
            .env("JOBHOST_ADMIN_KEY", command.admin_key)
            // The line naming the addresses, and warnings for a failure's message.
            .env("RUST_LOG", "warn,jobhost::server=info")
            .env_remove("JOBHOST_TLS_CERT")
            .env_remove("JOBHOST_TLS_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if command.show_stderr {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|source| ChildServerError::Spawn {
                binary: command.binary.display().to_string(),
                source,
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (addresses, named) = tokio::sync::oneshot::channel();
        let tail = Arc::clone(&log);
        // Read to the end, so that a chatty child never blocks on a full pipe.
        std::thread::spawn(move || read_log(stdout, tail, addresses));
        let mut server = ChildServer {
            child,
            grpc_addr: String::new(),
            http_addr: String::new(),
            log,
        };
        match tokio::time::timeout(bound, named).await {
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

    /// SIGTERM, then waits at most `bound` for a clean exit.
    pub async fn stop(mut self, bound: Duration) -> Result<(), ChildServerError> {
        terminate(&mut self.child)?;
        let deadline = Instant::now() + bound;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(self.failure(&format!("exited with {status} after SIGTERM")));
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None) => return Err(self.failure("did not exit in time after SIGTERM")),
                Err(error) => return Err(ChildServerError::Signal(error)),
            }
        }
    }

    /// SIGKILL. A child that had already exited is an error: nothing else ends it.
    pub fn kill(mut self) -> Result<(), ChildServerError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(self.failure(&format!("exited on its own ({status})")));
        }
        self.child.kill().map_err(ChildServerError::Signal)?;
        self.child.wait().map_err(ChildServerError::Signal)?;
        Ok(())
    }

    /// Ends the child and says what went wrong, with the tail of its log.
    pub fn failure(&mut self, what: &str) -> ChildServerError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread may still be moving the last lines out of the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let log: Vec<String> = self.log.lock().expect("log lock").iter().cloned().collect();
        ChildServerError::Server {
            what: what.to_string(),
            log: log.join("\n"),
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(target_os = "linux")]
fn terminate(child: &mut Child) -> Result<(), ChildServerError> {
    use rustix::process::{Pid, Signal, kill_process};
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| ChildServerError::Signal(std::io::Error::other("no such pid")))?;
    kill_process(pid, Signal::TERM).map_err(|e| ChildServerError::Signal(e.into()))
}

/// Elsewhere there is no graceful stop to ask for.
#[cfg(not(target_os = "linux"))]
fn terminate(child: &mut Child) -> Result<(), ChildServerError> {
    child.kill().map_err(ChildServerError::Signal)
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

/// The gRPC and HTTP addresses of the server's JSON log line that names both.
fn serving_addresses(line: &str) -> Option<(String, String)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &entry["fields"];
    Some((
        fields["grpc_addr"].as_str()?.to_string(),
        fields["http_addr"].as_str()?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_names_both_addresses() {
        let line = r#"{"level":"INFO","fields":{"message":"jobhost is serving","grpc_addr":"127.0.0.1:4100","http_addr":"127.0.0.1:4101"}}"#;
        assert_eq!(
            serving_addresses(line),
            Some(("127.0.0.1:4100".into(), "127.0.0.1:4101".into()))
        );
        assert_eq!(serving_addresses(r#"{"fields":{"message":"x"}}"#), None);
    }
}
