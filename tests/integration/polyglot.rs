//! Handlers written in other languages than Rust: the Python and JavaScript examples in
//! `plugins/examples`, built by pinned toolchains (installed into `target/` on first use), are
//! deployed like any component and reach outbound HTTP, a secret and a key-value bucket
//! through the same WASI interfaces as the Rust SDK.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use jobhost::grants::{HttpRule, ServerHttpPolicy};
use jobhost::service::capabilities::HttpSettings;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::*;

/// The secret the examples send as a bearer token; it must never show in a job's view.
const TOKEN: &str = "tok_polyglot_5ec7e7";
/// What the endpoint answers a caller presenting the token.
const GREETING: &str = "hello, token holder";

#[derive(Clone, Copy, Debug)]
enum Language {
    Python,
    JavaScript,
}

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
        }
    }

    /// The example's directory, relative to the workspace.
    fn dir(self) -> PathBuf {
        Path::new("plugins/examples").join(self.name())
    }

    /// The example's code, in its directory.
    fn source(self) -> &'static str {
        match self {
            Language::Python => "app.py",
            Language::JavaScript => "handler.js",
        }
    }

    /// The files that pin the versions of its tools, in its directory.
    fn pins(self) -> &'static [&'static str] {
        match self {
            Language::Python => &["requirements.txt"],
            Language::JavaScript => &["package.json", "package-lock.json"],
        }
    }
}

/// The example component of `language`, built unless a build of the same inputs is cached in
/// `target/polyglot/`. A lock keeps concurrent test runs from building it together.
fn example(language: Language) -> Vec<u8> {
    let root = workspace();
    let out_dir = root.join("target/polyglot");
    std::fs::create_dir_all(&out_dir).expect("target/polyglot");
    let work = tempfile::tempdir().expect("temp dir");
    let wit = work.path().join("wit");
    assemble_wit(&wit);
    let mut hasher = Sha256::new();
    for file in [language.source()].iter().chain(language.pins()) {
        hasher.update(file.as_bytes());
        hasher.update(read(&root.join(language.dir()).join(file)));
    }
    hash_dir(&mut hasher, &wit);
    let key = &hex::encode(hasher.finalize())[..16];
    let wasm = out_dir.join(format!("{}-{key}.wasm", language.name()));
    let lock = std::fs::File::create(out_dir.join(format!("{}.lock", language.name())))
        .expect("lock file");
    lock.lock().expect("build lock");
    if !wasm.exists() {
        let partial = wasm.with_extension("partial");
        let started = Instant::now();
        // The tools run on a copy of the code: componentize-py leaves bytecode beside it.
        let sources = work.path().join(language.name());
        std::fs::create_dir_all(&sources).unwrap();
        let source = language.dir().join(language.source());
        std::fs::copy(root.join(source), sources.join(language.source())).expect("copied");
        match language {
            Language::Python => build_python(&wit, &sources, &partial),
            Language::JavaScript => build_javascript(&wit, &sources, &partial),
        }
        eprintln!(
            "built the {} example in {:?}",
            language.name(),
            started.elapsed()
        );
        std::fs::rename(&partial, &wasm).expect("built component moved in place");
        // Earlier builds of other inputs are of no more use.
        for entry in std::fs::read_dir(&out_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}-", language.name())) && path != wasm {
                std::fs::remove_file(&path).expect("old build removed");
            }
        }
    }
    read(&wasm)
}

/// Writes into `dir` a WIT directory with jobhost's world, the WASI packages it and
/// `wasi:http` need (taken from the wasmtime-wasi-http crate the host is built with), and a
/// package `jobhost:polyglot` with the examples' worlds.
fn assemble_wit(dir: &Path) {
    let root = workspace();
    let deps = dir.join("deps");
    copy_dir(&root.join("wit/deps"), &deps);
    std::fs::create_dir_all(deps.join("plugin")).unwrap();
    std::fs::copy(
        root.join("wit/job-handler.wit"),
        deps.join("plugin/job-handler.wit"),
    )
    .expect("job-handler.wit copied");
    let wasi = wasi_http_wit();
    copy_dir(&wasi, &deps);
    let http = String::from_utf8(read(&wasi.join("http.wit"))).unwrap();
    let version = http
        .lines()
        .find_map(|line| line.trim().strip_prefix("package wasi:http@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("http.wit names its version")
        .to_string();
    // Python calls wasi:http itself, so its world imports it; componentize-js brings the
    // wasi:http imports its fetch() needs on its own.
    let worlds = format!(
        "package jobhost:polyglot;\n\n\
         world python-handler {{\n    include jobhost:plugin/job-handler@0.2.0;\n    \
         import wasi:http/outgoing-handler@{version};\n}}\n\n\
         world javascript-handler {{\n    include jobhost:plugin/job-handler@0.2.0;\n}}\n"
    );
    std::fs::write(dir.join("polyglot.wit"), worlds).expect("world written");
}

/// The `wit/deps` directory of the wasmtime-wasi-http crate in cargo's registry.
fn wasi_http_wit() -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args(["metadata", "--format-version", "1", "--offline"])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{output:?}");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|package| package["name"] == "wasmtime-wasi-http")
        .and_then(|package| package["manifest_path"].as_str())
        .expect("wasmtime-wasi-http is a dependency");
    Path::new(manifest).parent().unwrap().join("wit/deps")
}

fn build_python(wit: &Path, sources: &Path, out: &Path) {
    let python = python_venv(
        "polyglot-python",
        "plugins/examples/python/requirements.txt",
    );
    let componentize = python.parent().unwrap().join("componentize-py");
    run(Command::new(componentize)
        .current_dir(wit)
        .arg("--wit-path")
        .arg(wit)
        .args(["--world", "jobhost:polyglot/python-handler", "componentize"])
        .arg("--python-path")
        .arg(sources)
        .arg("app")
        .arg("--output")
        .arg(out));
}

fn build_javascript(wit: &Path, sources: &Path, out: &Path) {
    let bin = npm_install("polyglot-node", "plugins/examples/javascript");
    run(Command::new(bin.join("componentize-js"))
        .current_dir(wit)
        .arg(sources.join(Language::JavaScript.source()))
        .arg("--wit")
        .arg(wit)
        .args(["--world-name", "jobhost:polyglot/javascript-handler"])
        .arg("--out")
        .arg(out));
}

/// The `node_modules/.bin` of `target/<name>`, where `npm ci` installed the packages locked
/// in `package` (a directory relative to the workspace with package.json and
/// package-lock.json), once per content of those files. A lock keeps tests that run at once
/// from installing together.
fn npm_install(name: &str, package: &str) -> PathBuf {
    let root = workspace();
    let dir = root.join("target").join(name);
    let bin = dir.join("node_modules/.bin");
    let files = ["package.json", "package-lock.json"];
    let wanted: Vec<u8> = files
        .iter()
        .flat_map(|file| read(&root.join(package).join(file)))
        .collect();
    let marker = dir.join("installed-packages");
    let ready = || std::fs::read(&marker).ok().as_deref() == Some(wanted.as_slice());
    if ready() {
        return bin;
    }
    std::fs::create_dir_all(&dir).expect("install dir");
    let lock =
        std::fs::File::create(root.join("target").join(format!("{name}.lock"))).expect("lock");
    lock.lock().expect("install lock");
    if ready() {
        return bin;
    }
    for file in files {
        std::fs::copy(root.join(package).join(file), dir.join(file)).expect("package copied");
    }
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"]));
    std::fs::write(&marker, wanted).expect("marker written");
    bin
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Feeds every file under `dir` to `hasher`, by path, in a stable order.
fn hash_dir(hasher: &mut Sha256, dir: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        hasher.update(path.file_name().unwrap().as_encoded_bytes());
        if path.is_dir() {
            hash_dir(hasher, &path);
        } else {
            hasher.update(read(&path));
        }
    }
}

/// A loopback API that greets callers presenting the token and refuses the others.
async fn endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/greeting",
        get(|headers: HeaderMap| async move {
            let bearer = format!("Bearer {TOKEN}");
            match headers.get(header::AUTHORIZATION) {
                Some(value) if value == bearer.as_str() => (StatusCode::OK, GREETING),
                _ => (StatusCode::UNAUTHORIZED, "who are you?"),
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{}", addr.port())
}

/// Runs one job of `job_type` (one attempt only) to its end.
async fn run_job(server: &TestServer, job_type: &str, variables: Value) -> Value {
    let body = json!({ "type": job_type, "variables": variables, "retries": 1 });
    run_rest_job(&server.rest(ADMIN_KEY), body).await
}

/// Builds the example, deploys it with the grants it uses to a server whose HTTP ceiling
/// allows a loopback endpoint, and runs two jobs: each must complete with the endpoint's
/// answer, the secret's length and the bucket's count, and show the secret nowhere.
async fn calls_http_reads_a_secret_and_counts(language: Language) {
    // Building and compiling these components keeps every core busy for a while: one
    // language at a time, so that the tests running alongside still get some of the machine.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let heavy = ONE_AT_A_TIME.lock().await;
    let component = tokio::task::spawn_blocking(move || example(language))
        .await
        .unwrap();
    let base = endpoint().await;
    let rule = HttpRule::parse(&base).unwrap();
    let server = TestServer::start_with(move |config| {
        config.http = HttpSettings {
            policy: std::sync::Arc::new(ServerHttpPolicy {
                rules: vec![rule.clone()],
            }),
            ..HttpSettings::default()
        };
    })
    .await;
    let rest = server.rest(ADMIN_KEY);
    rest.put_bytes("/api/v1/secrets/API_TOKEN", TOKEN.as_bytes().to_vec())
        .await
        .expect("secret set");
    let grant = base.replace(':', "%3A").replace('/', "%2F");
    // No memory or time limits asked for: the defaults are enough for both examples.
    let query = format!("type=greet&allow_http={grant}&secret=API_TOKEN&kv=counters");
    let started = Instant::now();
    rest.upload(&format!("/api/v1/handlers?{query}"), component.clone())
        .await
        .expect("deployed");
    eprintln!(
        "{} example: {} bytes, deployed (compiled) in {:?}",
        language.name(),
        component.len(),
        started.elapsed()
    );
    drop(heavy);
    let url = format!("{base}/greeting");
    for runs in [1, 2] {
        let job = run_job(&server, "greet", json!({ "url": url })).await;
        eprintln!(
            "{} example: attempt {runs} took {} us",
            language.name(),
            job["attempts"][0]["duration_us"]
        );
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(
            job["execution_summary"]["result_variables"],
            json!({ "status": 200, "answer": GREETING, "token_length": TOKEN.len(), "runs": runs }),
            "{job}"
        );
        assert!(!job.to_string().contains(TOKEN), "{job}");
    }
    let counter = rest
        .call(Method::GET, "/api/v1/kv/counters/runs", None)
        .await
        .unwrap();
    assert_eq!(counter["value"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_calls_http_reads_a_secret_and_counts_in_a_bucket() {
    calls_http_reads_a_secret_and_counts(Language::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_example_calls_http_reads_a_secret_and_counts_in_a_bucket() {
    calls_http_reads_a_secret_and_counts(Language::JavaScript).await;
}
