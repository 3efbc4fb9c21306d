//! A `capstan` child process for the benchmarks: started with its stderr followed (warnings
//! and errors echoed), waited on for a log line, measured for CPU, and ended by pid.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CAPSTAN: &str = env!("CARGO_BIN_EXE_capstan");

pub(crate) struct Process {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts `capstan <args>` with `RUST_LOG=<log>`.
    pub(crate) fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], log: &str) -> Result<Process> {
        let mut child = Command::new(CAPSTAN)
            .args(args)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("    {line}");
                }
                let _ = send.send(line);
            }
        });
        Ok(Process { child, lines })
    }

    pub(crate) fn wait_for_line(&self, needle: &str, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no {needle:?} from capstan"))?;
            if line.contains(needle) {
                return Ok(());
            }
        }
    }

    /// User plus system CPU time the process has used so far, from `/proc/<pid>/stat`.
    #[allow(dead_code, reason = "not every benchmark reports CPU")]
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> =
            stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are the 14th and 15th fields of the line: 12th and 13th here.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// SIGTERM, then waits for the exit.
    pub(crate) fn terminate(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
