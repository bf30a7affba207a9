//! `jobhost bench` in miniature, with the server in the bench process and in a child process, so
//! that every figure it reports keeps being produced. Only that each figure is there (and
//! positive) is checked: speed is measured, never asserted.

use std::process::Command;

use crate::harness::*;

/// The smallest counts that still take every figure.
const SMALLEST: [(&str, &str); 11] = [
    ("--jobs", "300"),
    ("--creators", "4"),
    ("--workers", "2"),
    ("--wake-samples", "10"),
    ("--wasm-jobs", "100"),
    ("--sandbox-samples", "20"),
    ("--batch-jobs", "2000"),
    ("--trigger-fires", "0"),
    ("--idle-triggers", "0"),
    ("--hostile-good-jobs", "10"),
    ("--hostile-backlog", "20"),
];

/// Runs `jobhost bench` with the smallest counts and `extra` flags; answers its JSON report.
fn small_bench(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut bench = Command::new(binary());
    bench.arg("bench").arg("--json").arg(&json).args(extra);
    for (flag, value) in SMALLEST {
        bench.args([flag, value]);
    }
    run(&mut bench);
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn assert_every_figure(report: &serde_json::Value) {
    for figure in [
        "jobs_per_second",
        "batched_acks_jobs_per_second",
        "wake_p99_ms",
        "wasm_jobs_per_second",
        "sandbox_p50_us",
        "batch_create_jobs_per_second",
        "peak_rss_mib",
    ] {
        let value = report[figure].as_f64().unwrap_or(0.0);
        assert!(value > 0.0, "{figure} is {value} in {report}");
    }
}

#[test]
fn a_small_bench_run_reports_every_figure() {
    let report = small_bench(&["--stored", "1500"]);
    assert_every_figure(&report);
    assert_eq!(report["stored_before"], 1500);
    assert_eq!(report["server"], "in-process");
    assert_eq!(report["rounds"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_bench_against_a_server_process_reports_its_cpu_per_figure() {
    let report = small_bench(&["--server-process", "--rounds", "2"]);
    assert_every_figure(&report);
    assert_eq!(report["server"], "child-process");
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{report}");
    assert!(rounds.iter().all(|round| round["peer"].is_null()));
    let usage = report["server_usage"].as_array().unwrap();
    // Four figures in each of the two rounds, and the batched acknowledgements once.
    assert_eq!(usage.len(), 9, "{report}");
    for figure in usage {
        assert!(
            figure["peak_rss_mib"].as_f64().unwrap_or(0.0) > 0.0,
            "{figure}"
        );
        assert!(figure["cpu_us_per_job"].as_f64().is_some(), "{figure}");
    }
    let busiest = usage
        .iter()
        .filter_map(|figure| figure["cpu_seconds"].as_f64())
        .fold(0.0, f64::max);
    assert!(busiest > 0.0, "the server process used no CPU: {report}");
}

#[test]
fn a_short_retention_run_samples_jobs_stored_disk_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("retention.json");
    run(Command::new(binary())
        .args([
            "bench-retention",
            "--seconds",
            "3",
            "--retain",
            "1s",
            "--every",
            "1",
        ])
        .arg("--json")
        .arg(&json));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let samples = report["samples"].as_array().expect("samples");
    assert!(samples.len() >= 2, "{report}");
    let last = samples.last().unwrap();
    for figure in ["completed", "disk_bytes", "rss_bytes"] {
        assert!(
            last[figure].as_u64().unwrap_or(0) > 0,
            "{figure} in {report}"
        );
    }
}
