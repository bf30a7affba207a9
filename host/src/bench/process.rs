//! Scratch directories that remove themselves, and what a process (the bench's own, or the
//! server it started as a child) has used, read from `/proc`.

use std::path::{Path, PathBuf};

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
    fn this_process_reports_its_usage() {
        if cfg!(target_os = "linux") {
            let usage = usage(None).expect("/proc/self is readable");
            assert!(usage.peak_rss_bytes > 0);
        }
    }
}
