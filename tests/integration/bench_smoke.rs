//! `jobhost bench` in miniature, so that every figure it reports keeps being produced. Only
//! that each figure is there and positive is checked: speed is measured, never asserted.

use std::process::Command;

use crate::harness::*;

#[test]
fn a_small_bench_run_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let smallest = [
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
    let mut bench = Command::new(binary());
    bench.arg("bench").arg("--json").arg(&json);
    for (flag, value) in smallest {
        bench.args([flag, value]);
    }
    run(&mut bench);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for figure in [
        "jobs_per_second",
        "batched_acks_jobs_per_second",
        "wake_p99_ms",
        "wasm_jobs_per_second",
        "sandbox_p50_us",
        "batch_create_jobs_per_second",
    ] {
        let value = report[figure].as_f64().unwrap_or(0.0);
        assert!(value > 0.0, "{figure} is {value} in {report}");
    }
}
