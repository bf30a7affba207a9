//! The peer of `jobhost bench --peer bullmq`: BullMQ on a local Redis, measured in the same run
//! as jobhost by `bench/bullmq/peer.mjs`; installing both into `target/peer/` when missing;
//! and the side-by-side figures, medians and ratios.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::ScratchDir;

/// The peer's script and its pinned packages, built into the binary so that the bench runs
/// from any directory.
const PEER_SCRIPT: &str = include_str!("../../../bench/bullmq/peer.mjs");
const PACKAGE_JSON: &str = include_str!("../../../bench/bullmq/package.json");
const PACKAGE_LOCK: &str = include_str!("../../../bench/bullmq/package-lock.json");

/// Debian packages whose files make a Redis that runs from `target/peer/redis/` without root:
/// the server, the binary it links to, and the libraries it loads.
const REDIS_PACKAGES: [&str; 4] = ["redis-server", "redis-tools", "liblzf1", "libjemalloc2"];

/// The BullMQ Worker's concurrency in the end-to-end figure.
pub const WORKER_CONCURRENCY: usize = 50;
/// Jobs per addBulk call and callers at once, as jobhost's CreateJobs figure uses.
const BULK_BATCH: usize = 1_000;
const BULK_CALLERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot run {program}: {source} (--peer bullmq needs it on PATH)")]
    Missing {
        program: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        what: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("cannot install Redis: {0}")]
    RedisInstall(String),
    #[error("Redis on port {port} did not answer PING in time; its log:\n{log}")]
    RedisStart { port: u16, log: String },
    #[error("the BullMQ {figure} figure printed no result line but: {output:?}")]
    NoResult { figure: String, output: String },
    #[error("the BullMQ {figure} figure's result line {line:?}: {source}")]
    Parse {
        figure: String,
        line: String,
        source: serde_json::Error,
    },
    #[error(
        "Redis runs with appendonly {appendonly} and appendfsync {appendfsync}; the comparison \
         needs appendonly yes and appendfsync always"
    )]
    NotDurable {
        appendonly: String,
        appendfsync: String,
    },
}

/// Where the peer's installations live: `$CARGO_TARGET_DIR/peer`, or the workspace's
/// `target/peer`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("peer"),
        None => {
            let host = Path::new(env!("CARGO_MANIFEST_DIR"));
            host.parent().unwrap_or(host).join("target").join("peer")
        }
    }
}

/// BullMQ installed, and a durable Redis of its own running for the length of the bench.
pub struct BullMq {
    script_dir: PathBuf,
    redis: RedisServer,
    /// What the first figure reported about the systems it ran on.
    about: Option<PeerLine>,
}

impl BullMq {
    /// Installs what is missing under `dir` (saying so on stderr) and starts Redis.
    pub async fn prepare(dir: &Path) -> Result<BullMq, PeerError> {
        std::fs::create_dir_all(dir)?;
        // Two benches at once install once.
        let lock = std::fs::File::create(dir.join("install.lock"))?;
        lock.lock()?;
        let redis = redis_binary(dir)?;
        let script_dir = install_bullmq(&dir.join("bullmq"))?;
        drop(lock);
        let redis = RedisServer::start(&redis).await?;
        Ok(BullMq {
            script_dir,
            redis,
            about: None,
        })
    }

    /// N no-op jobs added by `adders` at once while one Worker completes them: jobs per
    /// second from the first add to the last completion.
    pub async fn end_to_end(
        &mut self,
        queue: &str,
        jobs: usize,
        adders: usize,
    ) -> Result<f64, PeerError> {
        let line = self
            .figure(
                "e2e",
                queue,
                &[
                    ("jobs", jobs),
                    ("adders", adders),
                    ("concurrency", WORKER_CONCURRENCY),
                ],
            )
            .await?;
        Ok(line.jobs_per_second.unwrap_or(0.0))
    }

    /// `add` sent → the processor of an idle Worker started; answers (p50, p99) in ms.
    pub async fn wake(&mut self, queue: &str, samples: usize) -> Result<(f64, f64), PeerError> {
        let line = self.figure("wake", queue, &[("samples", samples)]).await?;
        Ok((line.p50_ms.unwrap_or(0.0), line.p99_ms.unwrap_or(0.0)))
    }

    /// Jobs per second added with addBulk, 1,000 per call, from two callers.
    pub async fn add_bulk(&mut self, queue: &str, jobs: usize) -> Result<f64, PeerError> {
        let line = self
            .figure(
                "add-bulk",
                queue,
                &[
                    ("jobs", jobs),
                    ("callers", BULK_CALLERS),
                    ("batch", BULK_BATCH),
                ],
            )
            .await?;
        Ok(line.jobs_per_second.unwrap_or(0.0))
    }

    /// What the peer ran on, once a figure has been taken.
    pub fn describe(&self) -> Option<PeerSystem> {
        self.about.as_ref().map(|about| PeerSystem {
            name: "BullMQ".into(),
            version: about.bullmq_version.clone(),
            store: format!("Redis {}", about.redis_version),
            runtime: format!("Node.js {}", about.node_version),
            durability: format!(
                "Redis appendonly {}, appendfsync {}: every write fsynced before its reply; \
                 the writes of one event-loop pass share one fsync",
                about.appendonly, about.appendfsync
            ),
            end_to_end: format!(
                "one Worker (concurrency {WORKER_CONCURRENCY}, no-op processor) in a Node.js \
                 process of its own; the adders share one Queue in another"
            ),
        })
    }

    async fn figure(
        &mut self,
        figure: &str,
        queue: &str,
        counts: &[(&str, usize)],
    ) -> Result<PeerLine, PeerError> {
        let mut command = tokio::process::Command::new("node");
        command
            .current_dir(&self.script_dir)
            .arg("peer.mjs")
            .args(["--port", &self.redis.port.to_string()])
            .args(["--figure", figure, "--queue", queue]);
        for (name, value) in counts {
            command.arg(format!("--{name}")).arg(value.to_string());
        }
        let output = command
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| PeerError::Missing {
                program: "node".into(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(PeerError::Command {
                what: format!("the BullMQ {figure} figure"),
                status: output.status,
                output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            });
        }
        let line = parse_line(figure, &stdout)?;
        if line.appendonly != "yes" || line.appendfsync != "always" {
            return Err(PeerError::NotDurable {
                appendonly: line.appendonly,
                appendfsync: line.appendfsync,
            });
        }
        self.about.get_or_insert_with(|| line.clone());
        Ok(line)
    }
}

/// The JSON line `peer.mjs` prints for one figure.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PeerLine {
    pub figure: String,
    #[serde(default)]
    pub jobs_per_second: Option<f64>,
    #[serde(default)]
    pub p50_ms: Option<f64>,
    #[serde(default)]
    pub p99_ms: Option<f64>,
    pub bullmq_version: String,
    pub redis_version: String,
    pub appendonly: String,
    pub appendfsync: String,
    pub node_version: String,
}

/// The last non-empty line of the script's stdout, which must be the figure asked for.
fn parse_line(figure: &str, stdout: &str) -> Result<PeerLine, PeerError> {
    let Some(line) = stdout.lines().rev().find(|line| !line.trim().is_empty()) else {
        return Err(PeerError::NoResult {
            figure: figure.into(),
            output: stdout.into(),
        });
    };
    let parsed: PeerLine = serde_json::from_str(line).map_err(|source| PeerError::Parse {
        figure: figure.into(),
        line: line.into(),
        source,
    })?;
    if parsed.figure != figure {
        return Err(PeerError::NoResult {
            figure: figure.into(),
            output: stdout.into(),
        });
    }
    Ok(parsed)
}

/// What the peer side of the comparison ran on, as it reported itself.
#[derive(Clone, Debug, Serialize)]
pub struct PeerSystem {
    pub name: String,
    pub version: String,
    pub store: String,
    pub runtime: String,
    pub durability: String,
    /// How its end-to-end figure is taken.
    pub end_to_end: String,
}

/// One system's comparable figures in one round (or their medians, or jobhost's divided by the
/// peer's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RoundFigures {
    /// jobhost: external gRPC workers (one CompleteJob per job). BullMQ: one Worker, taken
    /// right beside it.
    pub workers_jobs_per_second: f64,
    /// jobhost: the `echo` Wasm handler. BullMQ: the same Worker figure again, taken right
    /// beside it.
    pub handler_jobs_per_second: f64,
    /// jobhost: CreateJobs; BullMQ: addBulk; 1,000 jobs per call from two callers.
    pub batch_create_jobs_per_second: f64,
    /// An idle worker woken by a new job: jobhost CreateJob sent → job on a long-polling
    /// worker; BullMQ add sent → processor started.
    pub wake_p50_ms: f64,
    pub wake_p99_ms: f64,
}

impl RoundFigures {
    /// The median of each figure over `rounds`.
    pub fn median(rounds: &[RoundFigures]) -> RoundFigures {
        let of = |figure: fn(&RoundFigures) -> f64| median(rounds.iter().map(figure).collect());
        RoundFigures {
            workers_jobs_per_second: of(|r| r.workers_jobs_per_second),
            handler_jobs_per_second: of(|r| r.handler_jobs_per_second),
            batch_create_jobs_per_second: of(|r| r.batch_create_jobs_per_second),
            wake_p50_ms: of(|r| r.wake_p50_ms),
            wake_p99_ms: of(|r| r.wake_p99_ms),
        }
    }

    /// Each of these figures divided by the same figure of `other`.
    pub fn ratio_to(&self, other: &RoundFigures) -> RoundFigures {
        RoundFigures {
            workers_jobs_per_second: ratio(
                self.workers_jobs_per_second,
                other.workers_jobs_per_second,
            ),
            handler_jobs_per_second: ratio(
                self.handler_jobs_per_second,
                other.handler_jobs_per_second,
            ),
            batch_create_jobs_per_second: ratio(
                self.batch_create_jobs_per_second,
                other.batch_create_jobs_per_second,
            ),
            wake_p50_ms: ratio(self.wake_p50_ms, other.wake_p50_ms),
            wake_p99_ms: ratio(self.wake_p99_ms, other.wake_p99_ms),
        }
    }

    /// (label, value, unit, whether higher is better) of each figure, in table order.
    pub fn rows(&self) -> [(&'static str, f64, &'static str, bool); 5] {
        [
            (
                "workers end to end",
                self.workers_jobs_per_second,
                "jobs/s",
                true,
            ),
            (
                "Wasm echo end to end",
                self.handler_jobs_per_second,
                "jobs/s",
                true,
            ),
            (
                "batch creation",
                self.batch_create_jobs_per_second,
                "jobs/s",
                true,
            ),
            ("idle worker wake-up p50", self.wake_p50_ms, "ms", false),
            ("idle worker wake-up p99", self.wake_p99_ms, "ms", false),
        ]
    }
}

/// `a / b`; not a number when `b` is not positive (a figure that was skipped).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The middle value (the mean of the middle two for an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The redis-server to run, and the library path it needs.
struct RedisBinary {
    path: PathBuf,
    library_path: Option<OsString>,
}

/// `redis-server` from PATH; else the one extracted into `dir/redis` earlier; else Debian's
/// packages downloaded and extracted there now (no root needed); else, as root only, installed
/// system-wide with apt-get.
fn redis_binary(dir: &Path) -> Result<RedisBinary, PeerError> {
    if let Some(path) = on_path("redis-server") {
        eprintln!("peer: using {}", path.display());
        return Ok(RedisBinary {
            path,
            library_path: None,
        });
    }
    let root = dir.join("redis");
    let extracted = RedisBinary {
        path: root.join("usr/bin/redis-server"),
        library_path: library_path(&root),
    };
    if extracted.path.exists() && runs(&extracted) {
        return Ok(extracted);
    }
    eprintln!(
        "peer: redis-server is not on PATH; installing Debian's {} into {} \
         (apt-get download, dpkg-deb -x)",
        REDIS_PACKAGES.join(", "),
        root.display()
    );
    match download_redis(dir, &root) {
        Ok(()) => {
            let extracted = RedisBinary {
                path: root.join("usr/bin/redis-server"),
                library_path: library_path(&root),
            };
            if runs(&extracted) {
                return Ok(extracted);
            }
            Err(PeerError::RedisInstall(format!(
                "{} was extracted but does not run (a library it needs may be missing)",
                extracted.path.display()
            )))
        }
        Err(download) if is_root() => {
            eprintln!("peer: {download}; installing redis-server system-wide with apt-get");
            let status = Command::new("apt-get")
                .args(["install", "-y", "redis-server"])
                .stdout(std::io::stderr())
                .status()
                .map_err(|source| PeerError::Missing {
                    program: "apt-get".into(),
                    source,
                })?;
            match on_path("redis-server") {
                Some(path) if status.success() => Ok(RedisBinary {
                    path,
                    library_path: None,
                }),
                _ => Err(PeerError::RedisInstall(format!(
                    "apt-get install -y redis-server ended with {status}"
                ))),
            }
        }
        Err(download) => Err(PeerError::RedisInstall(format!(
            "{download}; installing it system-wide needs root. Put a redis-server on PATH \
             and run again"
        ))),
    }
}

/// Downloads the packages into a scratch directory and extracts each into `root`.
fn download_redis(dir: &Path, root: &Path) -> Result<(), String> {
    let debs = ScratchDir::under(dir, "redis-download");
    std::fs::create_dir_all(debs.path()).map_err(|e| e.to_string())?;
    let output = Command::new("apt-get")
        .arg("download")
        .args(REDIS_PACKAGES)
        .current_dir(debs.path())
        .output()
        .map_err(|e| format!("cannot run apt-get download: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "apt-get download {} failed: {}",
            REDIS_PACKAGES.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
    let entries = std::fs::read_dir(debs.path()).map_err(|e| e.to_string())?;
    for deb in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        if deb.extension().is_none_or(|ext| ext != "deb") {
            continue;
        }
        let output = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root)
            .output()
            .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "dpkg-deb -x {} failed: {}",
                deb.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// The extracted library directories (`usr/lib/<triplet>`, `lib/<triplet>`), joined for
/// LD_LIBRARY_PATH.
fn library_path(root: &Path) -> Option<OsString> {
    let mut dirs = Vec::new();
    for base in ["usr/lib", "lib"] {
        let base = root.join(base);
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        dirs.push(base);
        dirs.extend(
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.is_dir()),
        );
    }
    if dirs.is_empty() {
        return None;
    }
    std::env::join_paths(dirs).ok()
}

/// Whether `redis-server --version` succeeds.
fn runs(redis: &RedisBinary) -> bool {
    let mut command = Command::new(&redis.path);
    command.arg("--version");
    if let Some(path) = &redis.library_path {
        command.env("LD_LIBRARY_PATH", path);
    }
    command.output().is_ok_and(|output| output.status.success())
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

#[cfg(target_os = "linux")]
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(not(target_os = "linux"))]
fn is_root() -> bool {
    false
}

/// Copies the script and its pinned packages into `dir` and runs `npm ci` there, unless the
/// same package files were installed before.
fn install_bullmq(dir: &Path) -> Result<PathBuf, PeerError> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("peer.mjs"), PEER_SCRIPT)?;
    let wanted = format!("{PACKAGE_JSON}{PACKAGE_LOCK}");
    let marker = dir.join("installed-packages");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == wanted)
        && dir.join("node_modules/bullmq/package.json").exists()
    {
        return Ok(dir.to_path_buf());
    }
    eprintln!(
        "peer: installing BullMQ (bench/bullmq/package-lock.json) with npm ci into {}",
        dir.display()
    );
    std::fs::write(dir.join("package.json"), PACKAGE_JSON)?;
    std::fs::write(dir.join("package-lock.json"), PACKAGE_LOCK)?;
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        // npm's chatter goes with ours to stderr; stdout is the bench's table.
        .stdout(std::io::stderr())
        .status()
        .map_err(|source| PeerError::Missing {
            program: "npm".into(),
            source,
        })?;
    if !status.success() {
        return Err(PeerError::Command {
            what: format!("npm ci in {}", dir.display()),
            status,
            output: String::new(),
        });
    }
    std::fs::write(&marker, wanted)?;
    Ok(dir.to_path_buf())
}

/// A Redis of the bench's own on a free loopback port, every write appended and fsynced before
/// its reply, no snapshots; its data in a scratch directory. Killed and removed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    // Removed after `drop` has killed the child.
    data: ScratchDir,
}

impl RedisServer {
    async fn start(binary: &RedisBinary) -> Result<RedisServer, PeerError> {
        let data = ScratchDir::new("jobhost-bench-redis");
        std::fs::create_dir_all(data.path())?;
        let port = free_port()?;
        let log = data.path().join("redis.log");
        let mut command = Command::new(&binary.path);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(data.path())
            .arg("--logfile")
            .arg(&log)
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(path) = &binary.library_path {
            command.env("LD_LIBRARY_PATH", path);
        }
        let child = command.spawn().map_err(|source| PeerError::Missing {
            program: binary.path.display().to_string(),
            source,
        })?;
        let redis = RedisServer { child, port, data };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if answers_ping(port).await {
                eprintln!(
                    "peer: Redis on 127.0.0.1:{port} (appendonly yes, appendfsync always, \
                     no snapshots), data in {}",
                    redis.data.path().display()
                );
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(PeerError::RedisStart {
            port,
            log: std::fs::read_to_string(&log).unwrap_or_default(),
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago: bound with port 0, then released.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

async fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut answer)).await;
    matches!(read, Ok(Ok(n)) if answer[..n].starts_with(b"+PONG"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const E2E: &str = r#"{"figure":"e2e","jobs":5000,"adders":16,"concurrency":50,"worker_process":"separate","seconds":5.04,"jobs_per_second":990.6,"bullmq_version":"5.81.5","redis_version":"7.0.15","appendonly":"yes","appendfsync":"always","node_version":"20.20.2"}"#;

    #[test]
    fn the_result_is_the_last_line_of_the_figure_asked_for() {
        let stdout = format!("a warning first\n{E2E}\n\n");
        let line = parse_line("e2e", &stdout).unwrap();
        assert_eq!(line.jobs_per_second, Some(990.6));
        assert_eq!(line.p50_ms, None);
        assert_eq!(line.bullmq_version, "5.81.5");
        assert_eq!(line.appendfsync, "always");
        assert!(matches!(
            parse_line("wake", E2E),
            Err(PeerError::NoResult { .. })
        ));
        assert!(matches!(
            parse_line("e2e", ""),
            Err(PeerError::NoResult { .. })
        ));
        assert!(matches!(
            parse_line("e2e", "not json"),
            Err(PeerError::Parse { .. })
        ));
    }

    #[test]
    fn a_wake_line_carries_its_quantiles() {
        let stdout = r#"{"figure":"wake","samples":200,"p50_ms":1.5,"p99_ms":4.25,"max_ms":9,"bullmq_version":"5.81.5","redis_version":"7.0.15","appendonly":"yes","appendfsync":"always","node_version":"20.20.2"}"#;
        let line = parse_line("wake", stdout).unwrap();
        assert_eq!((line.p50_ms, line.p99_ms), (Some(1.5), Some(4.25)));
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0]), 3.0);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn ratios_divide_jobhost_by_the_peer_and_a_skipped_figure_has_none() {
        assert_eq!(ratio(3000.0, 1500.0), 2.0);
        assert!(ratio(1.0, 0.0).is_nan());
        let jobhost = RoundFigures {
            workers_jobs_per_second: 3000.0,
            handler_jobs_per_second: 4000.0,
            batch_create_jobs_per_second: 20_000.0,
            wake_p50_ms: 1.0,
            wake_p99_ms: 4.0,
        };
        let peer = RoundFigures {
            workers_jobs_per_second: 1000.0,
            handler_jobs_per_second: 0.0,
            batch_create_jobs_per_second: 10_000.0,
            wake_p50_ms: 2.0,
            wake_p99_ms: 8.0,
        };
        let ratios = jobhost.ratio_to(&peer);
        assert_eq!(ratios.workers_jobs_per_second, 3.0);
        assert!(ratios.handler_jobs_per_second.is_nan());
        assert_eq!(ratios.batch_create_jobs_per_second, 2.0);
        assert_eq!((ratios.wake_p50_ms, ratios.wake_p99_ms), (0.5, 0.5));
    }

    #[test]
    fn the_median_round_takes_each_figure_on_its_own() {
        let round = |workers, wake| RoundFigures {
            workers_jobs_per_second: workers,
            wake_p50_ms: wake,
            ..RoundFigures::default()
        };
        let median = RoundFigures::median(&[round(1.0, 9.0), round(3.0, 1.0), round(2.0, 5.0)]);
        assert_eq!(median.workers_jobs_per_second, 2.0);
        assert_eq!(median.wake_p50_ms, 5.0);
    }

    #[test]
    fn extracted_libraries_are_put_on_the_library_path() {
        let root = ScratchDir::new("jobhost-peer-libs-test");
        std::fs::create_dir_all(root.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        let path = library_path(root.path()).unwrap();
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        assert!(dirs.contains(&root.path().join("usr/lib/x86_64-linux-gnu")));
        assert_eq!(library_path(&root.path().join("missing")), None);
    }
}
