//! Generates the gRPC code and the reflection descriptor from `proto/jobs.proto` with protox, so
//! that building needs no system `protoc`, and builds the guest crates under `plugins/` (the
//! handler SDK, example handlers and test fixtures) into WebAssembly components.

use std::path::PathBuf;
use std::process::Command;

use prost::Message;

/// The crate's directory, read when the script runs: a path baked in when the script was
/// compiled would point at whichever checkout first built it into a shared target directory.
fn manifest_dir() -> Result<PathBuf, std::env::VarError> {
    std::env::var("CARGO_MANIFEST_DIR").map(PathBuf::from)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = manifest_dir()?.join("../proto");
    let proto_file = proto_dir.join("jobs.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());

    let descriptors = protox::compile([&proto_file], [&proto_dir])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("jobs_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Undecodable requests are the caller's error (INVALID_ARGUMENT), not the server's.
        .codec_path("crate::api::codec::ProtoCodec")
        .compile_fds(descriptors)?;

    let plugins_dir = build_plugins()?;
    println!(
        "cargo:rustc-env=JOBHOST_PLUGINS_DIR={}",
        plugins_dir.display()
    );
    Ok(())
}

const WASM_TARGET: &str = "wasm32-wasip2";

/// Builds every guest crate for wasm32-wasip2; returns the directory holding the `.wasm` files.
fn build_plugins() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let root = manifest_dir()?.join("..");
    let plugins = root.join("plugins");
    for watched in ["Cargo.toml", "Cargo.lock", "sdk", "examples", "fixtures"] {
        println!("cargo:rerun-if-changed={}", plugins.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    ensure_wasm_target()?;

    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("plugins"),
        None => root.join("target").join("plugins"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (clippy's wrapper, host flags, jobserver) are not the guests'.
    for inherited in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        build.env_remove(inherited);
    }
    let output = build.output()?;
    if !output.status.success() {
        return Err(format!(
            "building the guest crates in plugins/ failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(target_dir.join(WASM_TARGET).join("release"))
}

/// Installs the wasm32-wasip2 standard library with rustup when it is missing.
fn ensure_wasm_target() -> Result<(), Box<dyn std::error::Error>> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(output) = &installed
        && String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("rustup is needed to install the {WASM_TARGET} target: {e}"))?;
    if !status.success() {
        return Err(format!("`rustup target add {WASM_TARGET}` failed").into());
    }
    Ok(())
}
