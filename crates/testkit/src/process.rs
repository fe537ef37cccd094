//! Services as separate OS processes (the `smpx` binary), for tests whose point is what
//! survives a process: several processes on one database, a SIGKILL mid-way, a restart on
//! the same data directory.
//!
//! A process is ready when it prints the line that says where it listens (servers bind port
//! 0 and print the bound address, so no port is chosen before the server holds it); waiting
//! is on that line or on the process's exit, never a fixed sleep.

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a process may take to say it is ready or to exit.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// A child process with its stderr read line by line; killed (SIGKILL) when dropped, so a
/// failing test leaves nothing behind.
pub struct Process {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    pid: u32,
    lines: mpsc::Receiver<String>,
    exited: mpsc::Receiver<std::io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
    seen: Vec<String>,
}

impl Process {
    /// Starts `program args…` with `envs` added to the environment.
    pub fn spawn<I, S>(
        program: impl Into<PathBuf>,
        args: I,
        envs: &[(&str, &str)],
    ) -> Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.into();
        let args = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let envs = envs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        Self::launch(program, args, envs)
    }

    fn launch(
        program: PathBuf,
        args: Vec<OsString>,
        envs: Vec<(OsString, OsString)>,
    ) -> Result<Process> {
        let mut child = Command::new(&program)
            .args(&args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let (tx, lines) = mpsc::channel();
        // Keeps draining stderr, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let pid = child.id();
        let (tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Ok(Process {
            program,
            args,
            envs,
            pid,
            lines,
            exited,
            status: None,
            seen: Vec::new(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for a stderr line starting with `prefix` and returns the rest of it; fails if
    /// the process exits first or `within` passes.
    pub fn wait_for_line(&mut self, prefix: &str, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let rest = line.strip_prefix(prefix).map(str::to_owned);
                    self.seen.push(line);
                    if let Some(rest) = rest {
                        return Ok(rest);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no line `{prefix}…` within {within:?}; stderr so far: {:#?}",
                        self.seen
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "the process exited before printing `{prefix}…`; stderr: {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Waits for the `<name> listening on http://…` line of an smpx service and returns
    /// its URL.
    pub fn wait_for_url(&mut self, name: &str) -> Result<String> {
        Ok(self
            .wait_for_line(&format!("{name} listening on "), READY_WITHIN)?
            .trim()
            .to_owned())
    }

    /// Every stderr line read so far (including those [`Self::wait_for_line`] passed over).
    pub fn stderr_lines(&mut self) -> &[String] {
        self.seen.extend(self.lines.try_iter());
        &self.seen
    }

    /// Sends `signal` (e.g. `"TERM"`, `"KILL"`).
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.pid);
        }
        Ok(())
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let status = self
            .exited
            .recv_timeout(within)
            .map_err(|_| anyhow!("the process did not exit within {within:?}"))??;
        self.status = Some(status);
        Ok(status)
    }

    /// SIGKILL, and waits until it is gone: nothing of the process's memory survives.
    pub fn kill(&mut self) -> Result<()> {
        if self.status.is_none() {
            // It may have exited on its own meanwhile; the wait tells.
            let _ = self.signal("KILL");
            self.wait_exit(READY_WITHIN)?;
        }
        Ok(())
    }

    /// Kills the process (SIGKILL) and starts it again with the same arguments and
    /// environment (so on the same data directory).
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        *self = Self::launch(self.program.clone(), self.args.clone(), self.envs.clone())?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A `smpx relay run` process, ready.
pub struct RelayProcess {
    pub process: Process,
    /// The relay's address as it printed it (`smpx://…@host:port`).
    pub address: String,
    /// The ops endpoint, `host:port`.
    pub ops: String,
}

/// `smpx relay init --dir dir` with the relay and its ops endpoint on ports the relay picks
/// when it starts (port 0), proxying to other test relays on loopback
/// (`--allow-private-destinations`); returns what init printed.
pub fn relay_init(smpx: &std::path::Path, dir: &std::path::Path) -> Result<String> {
    let out = Command::new(smpx)
        .args(["relay", "init", "--dir"])
        .arg(dir)
        .args(["--port", "0", "--ops-listen", "127.0.0.1:0"])
        .arg("--allow-private-destinations")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "smpx relay init failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// `smpx relay run --dir dir` (with `envs`), once it says where it listens.
pub fn relay_run(
    smpx: &std::path::Path,
    dir: &std::path::Path,
    envs: &[(&str, &str)],
) -> Result<RelayProcess> {
    let args: [&OsStr; 4] = [
        "relay".as_ref(),
        "run".as_ref(),
        "--dir".as_ref(),
        dir.as_ref(),
    ];
    let mut process = Process::spawn(smpx, args, envs)?;
    // "relay listening on <address> (<listen>), ops on http://<ops>"
    let line = process.wait_for_line("relay listening on ", READY_WITHIN)?;
    let (address, rest) = line
        .split_once(" (")
        .ok_or_else(|| anyhow!("unexpected line: {line}"))?;
    let ops = rest
        .split_once("ops on http://")
        .map(|(_, ops)| ops.trim().to_owned())
        .ok_or_else(|| anyhow!("unexpected line: {line}"))?;
    Ok(RelayProcess {
        address: address.to_owned(),
        ops,
        process,
    })
}

/// A relay initialised in `dir` and running, as [`relay_init`] then [`relay_run`].
pub fn relay(smpx: &std::path::Path, dir: &std::path::Path) -> Result<RelayProcess> {
    relay_init(smpx, dir)?;
    relay_run(smpx, dir, &[])
}
