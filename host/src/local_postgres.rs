//! A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` (installed
//! with apt-get when missing, saying so), a cluster initialized in a directory of its own,
//! started on loopback on a free port, as an unprivileged user when this process is root
//! (PostgreSQL refuses to run as root), with its durability settings left on. Dropping it
//! stops the server (fast shutdown) and removes the directory; so does the end of this process
//! however it ends, since a watcher beside the server stops it when this process is gone (a
//! server kept in a static for a whole test run is never dropped).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The user that owns the cluster when this process runs as root.
const UNPRIVILEGED_USER: &str = "nobody";
/// The cluster's superuser, and its database.
pub const SUPERUSER: &str = "jobhost";

#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "PostgreSQL is not installed and could not be installed with apt-get ({0}); install Debian's package postgresql"
    )]
    NotInstalled(String),
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("PostgreSQL did not accept connections within {0:?}; its log: {1}")]
    NotReady(Duration, String),
}

fn step(step: &'static str) -> impl Fn(std::io::Error) -> LocalPostgresError {
    move |error| LocalPostgresError::Step {
        step,
        detail: error.to_string(),
    }
}

/// A PostgreSQL server running for as long as this value lives.
#[derive(Debug)]
pub struct LocalPostgres {
    server: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LocalPostgres {
    /// Initializes a cluster in a fresh directory and starts it; answers once it accepts
    /// connections.
    pub fn start() -> Result<LocalPostgres, LocalPostgresError> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("jobhost-postgres-")
            .tempdir()
            .map_err(step("creating the cluster's directory"))?;
        let owner = cluster_owner()?;
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir(&sockets).map_err(step("creating the socket directory"))?;
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), sockets.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(step("handing the cluster's directory to its user"))?;
            }
        }
        let initdb = as_owner(Command::new(bin.join("initdb")), owner)
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
            ])
            .arg("--no-sync")
            .stdin(Stdio::null())
            .output()
            .map_err(step("running initdb"))?;
        if !initdb.status.success() {
            return Err(LocalPostgresError::Step {
                step: "initdb",
                detail: String::from_utf8_lossy(&initdb.stderr).into_owned(),
            });
        }
        let port = free_port().map_err(step("finding a free port"))?;
        let log = dir.path().join("server.log");
        let server = as_owner(Command::new("sh"), owner)
            .args(["-c", WATCHED_SERVER])
            .env("PG_BIN", &bin)
            .env("PG_DATA", &data)
            .env("PG_PORT", port.to_string())
            .env("PG_SOCKETS", &sockets)
            .env("PG_LOG", &log)
            .env("PG_DIR", dir.path())
            .env("PG_WATCHED", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(step("starting postgres"))?;
        let mut running = LocalPostgres {
            server,
            port,
            log,
            _dir: dir,
        };
        running.wait_until_ready()?;
        Ok(running)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for a database of this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a fresh database; answers its URL.
    pub fn create_database(&self, name: &str) -> Result<String, LocalPostgresError> {
        let created = Command::new(psql()?)
            .arg(self.url("postgres"))
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .map_err(step("running psql"))?;
        if !created.status.success() {
            return Err(LocalPostgresError::Step {
                step: "creating a database",
                detail: String::from_utf8_lossy(&created.stderr).into_owned(),
            });
        }
        Ok(self.url(name))
    }

    fn wait_until_ready(&mut self) -> Result<(), LocalPostgresError> {
        let started = Instant::now();
        let psql = psql()?;
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.server.try_wait() {
                return Err(LocalPostgresError::Step {
                    step: "postgres",
                    detail: format!("exited with {status}: {}", self.log_text()),
                });
            }
            let probe = Command::new(&psql)
                .arg(self.url("postgres"))
                .args(["-q", "-c", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if probe.is_ok_and(|status| status.success()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LocalPostgresError::NotReady(START_TIMEOUT, self.log_text()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        // The watcher sees the file, stops the server and removes the directory.
        let asked = std::fs::write(self._dir.path().join("stop"), b"");
        if asked.is_err() {
            let _ = self.server.kill();
        }
        let _ = self.server.wait();
    }
}

/// The server and its watcher, run by `sh` as the cluster's owner: the watcher stops the
/// server with a fast shutdown (SIGINT) once the watched process is gone or a `stop` file
/// appears, then removes the cluster's directory.
const WATCHED_SERVER: &str = r#"
"$PG_BIN/postgres" -D "$PG_DATA" -p "$PG_PORT" -k "$PG_SOCKETS" \
    -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
    -c max_connections=300 >>"$PG_LOG" 2>&1 &
server=$!
while [ -d "/proc/$PG_WATCHED" ] && [ ! -e "$PG_DIR/stop" ] && kill -0 "$server" 2>/dev/null; do
    sleep 0.2
done
kill -INT "$server" 2>/dev/null
wait "$server"
rm -rf "$PG_DIR"
"#;

/// Where PostgreSQL's server programs are, installing Debian's package when none are.
fn binaries() -> Result<PathBuf, LocalPostgresError> {
    if let Some(found) = installed_binaries() {
        return Ok(found);
    }
    eprintln!("PostgreSQL is not installed; installing Debian's postgresql with apt-get");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| LocalPostgresError::NotInstalled(e.to_string()))?;
    if !installed.status.success() {
        // The package lists may be missing on a fresh machine.
        let _ = Command::new("apt-get").arg("update").output();
        let again = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| LocalPostgresError::NotInstalled(e.to_string()))?;
        if !again.status.success() {
            return Err(LocalPostgresError::NotInstalled(
                String::from_utf8_lossy(&again.stderr).into_owned(),
            ));
        }
    }
    installed_binaries().ok_or_else(|| {
        LocalPostgresError::NotInstalled("no initdb under /usr/lib/postgresql".into())
    })
}

/// The newest `/usr/lib/postgresql/<version>/bin` that holds initdb and postgres.
fn installed_binaries() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn psql() -> Result<PathBuf, LocalPostgresError> {
    let bin = binaries()?;
    let beside = bin.join("psql");
    Ok(if beside.is_file() {
        beside
    } else {
        PathBuf::from("psql")
    })
}

/// The user and group to run the cluster as: `nobody` when this process is root, else this
/// process's own (`None`).
fn cluster_owner() -> Result<Option<(u32, u32)>, LocalPostgresError> {
    if !rustix::process::getuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(step("reading /etc/passwd"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&UNPRIVILEGED_USER))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .map(Some)
        .ok_or(LocalPostgresError::Step {
            step: "finding an unprivileged user",
            detail: format!("no user {UNPRIVILEGED_USER} in /etc/passwd"),
        })
}

fn as_owner(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
        // The owner cannot read root's working directory.
        command.current_dir("/");
    }
    command
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The URL of a database of one server shared by the whole test run, created on first use of
/// its name.
#[cfg(test)]
pub(crate) fn test_database(name: &str) -> String {
    use std::collections::HashSet;
    use std::sync::{LazyLock, Mutex};
    static SERVER: LazyLock<LocalPostgres> =
        LazyLock::new(|| LocalPostgres::start().expect("a local PostgreSQL starts"));
    static CREATED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);
    let mut created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    if created.insert(name.to_string()) {
        SERVER.create_database(name).expect("database created")
    } else {
        SERVER.url(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_server_accepts_connections_and_creates_databases() {
        let server = LocalPostgres::start().expect("PostgreSQL starts");
        let url = server.create_database("probe").expect("database created");
        let answer = Command::new(psql().expect("psql"))
            .arg(&url)
            .args(["-At", "-c", "SHOW synchronous_commit"])
            .output()
            .expect("psql runs");
        assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "on");
    }
}
