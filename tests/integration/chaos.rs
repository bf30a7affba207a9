//! Crash safety under load: a `jobhost serve` process SIGKILLed at random moments while
//! creators, external gRPC workers and the `echo` Wasm handler work keeps every acknowledged
//! create and completion, completes nothing twice and leaves nothing stuck.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jobhost::chaos::{ChaosOptions, run};

use crate::harness::binary;

fn short_run(server_bin: PathBuf, data_dir: &Path, cycles: usize) -> ChaosOptions {
    let mut options = ChaosOptions::new(server_bin, data_dir.to_path_buf());
    options.cycles = cycles;
    options.seed = 7;
    options.min_run = Duration::from_millis(300);
    options.max_run = Duration::from_millis(1_500);
    // Short leases, so that jobs held back on purpose expire within a cycle.
    options.lease = Duration::from_millis(600);
    options.drain_timeout = Duration::from_secs(30);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_or_done_twice_across_random_kills() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(&short_run(binary(), dir.path(), 3))
        .await
        .expect("the run completes");
    let table = report.table();
    report
        .check()
        .unwrap_or_else(|error| panic!("{error}\n{table}"));
    let tally = &report.tally;
    assert_eq!(report.kills, 3, "{table}");
    assert!(tally.creates_acknowledged > 0, "{table}");
    assert!(tally.completions_acknowledged > 0, "{table}");
    assert!(tally.echo_completed > 0, "{table}");
}

/// The check is not vacuous: a server that loses its store at every start fails it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forgets_its_store_fails_the_check() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("forgetful-jobhost");
    // Wipes the store, not the compiled handlers (so that starts stay quick), then serves.
    let script = format!(
        "#!/bin/sh\n\
         for arg; do [ \"$previous\" = --data-dir ] && dir=$arg; previous=$arg; done\n\
         find \"$dir\" -mindepth 1 -maxdepth 1 ! -name compiled -exec rm -rf {{}} + 2>/dev/null\n\
         exec '{}' \"$@\"\n",
        binary().display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let report = run(&short_run(wrapper, &dir.path().join("data"), 1))
        .await
        .expect("the run completes");
    let table = report.table();
    assert!(report.tally.creates_acknowledged > 0, "{table}");
    assert!(report.tally.lost > 0, "{table}");
    let error = report.check().expect_err("lost jobs fail the check");
    assert!(error.to_string().contains("lost"), "{error}");
}
