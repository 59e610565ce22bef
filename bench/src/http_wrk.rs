//! Runs wrk (4.1, Debian's package `wrk`) against one URL and reads its figures from a Lua
//! `done` hook that prints one JSON-like line: requests, the window, socket errors, non-2xx/3xx
//! responses and latency percentiles in µs. A script with only `done` keeps wrk's fast path
//! (no Lua per request).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::load::Report;
use crate::BoxError;

/// The `done` hook. wrk counts time in µs.
const SCRIPT: &str = r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50=%d p99=%d p999=%d max=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"#;

/// Writes the Lua script into `dir` and returns its path.
pub fn write_script(dir: &Path) -> Result<std::path::PathBuf, BoxError> {
    let path = dir.join("done.lua");
    std::fs::write(&path, SCRIPT)?;
    Ok(path)
}

/// Says clearly when wrk is missing, before any server starts.
pub fn check(wrk: &str) -> Result<(), BoxError> {
    match Command::new(wrk)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        // wrk --version prints its banner and exits with 1.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "`{wrk}` is not on PATH: install wrk (Debian: `apt-get install wrk`) or pass --wrk PATH"
        )
        .into()),
        Err(e) => Err(format!("cannot run {wrk}: {e}").into()),
    }
}

/// One load: `threads` wrk threads, `connections` keep-alive connections, for `seconds`.
pub fn run(
    wrk: &str,
    script: &Path,
    url: &str,
    threads: u16,
    connections: u16,
    seconds: u64,
) -> Result<Report, BoxError> {
    let mut child = Command::new(wrk)
        .arg("-t")
        .arg(threads.min(connections).max(1).to_string())
        .arg("-c")
        .arg(connections.to_string())
        .arg("-d")
        .arg(format!("{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {wrk}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    // wrk ends by itself after `seconds`; should it hang, it is killed past a generous bound.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = match rx.recv_timeout(Duration::from_secs(seconds + 30)) {
        Ok(out) => out,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("wrk did not finish in time: killed".into());
        }
    };
    let status = child.wait()?;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("WRK "))
        .ok_or_else(|| format!("wrk ({status}) printed no figures: {out}"))?;
    parse(line)
}

fn parse(line: &str) -> Result<Report, BoxError> {
    let field = |name: &str| -> Result<f64, BoxError> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("no {name} in wrk's line {line:?}"))?
            .parse::<f64>()
            .map_err(|e| format!("{name} in {line:?}: {e}").into())
    };
    let count = |name: &str| field(name).map(|v| v as u64);
    Ok(Report {
        requests: count("requests")?,
        seconds: field("duration_us")? / 1e6,
        // Socket errors (connect, read, write, and requests past wrk's 2 s timeout) and
        // non-2xx/3xx responses.
        errors: count("connect")?
            + count("read")?
            + count("write")?
            + count("status")?
            + count("timeout")?,
        p50_us: field("p50")?,
        p99_us: field("p99")?,
        p999_us: field("p999")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_done_line() {
        let report = super::parse(
            "requests=300 duration_us=3000000 connect=0 read=1 write=0 status=2 timeout=3 p50=100 p99=900 p999=1500 max=2000",
        )
        .expect("parses");
        assert_eq!(report.requests, 300);
        assert_eq!(report.errors, 6);
        assert!((report.rps() - 100.0).abs() < 1e-9);
        assert_eq!(report.p99_us, 900.0);
    }
}
