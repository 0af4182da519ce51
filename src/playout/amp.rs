//! Amplifier power for one output: its `amp_on` / `amp_off` commands, run one after the other on
//! a helper thread so that a slow or hung command never holds up the player (which must start the
//! next slot on the second, or an emergency within 250 ms, whatever the amplifier's relay does).
//!
//! Each command is an argv array run without a shell, stdin closed, with a time limit; its exit
//! status, stdout and stderr are logged. A failure is a warning: playout carries on regardless.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::AmpControl;

/// A command still running after this is killed.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a command's stdout and stderr is kept for the log.
const OUTPUT_CAP: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    On,
    Off,
}

impl Switch {
    fn name(self) -> &'static str {
        match self {
            Switch::On => "amp_on",
            Switch::Off => "amp_off",
        }
    }
}

/// An output's amplifier as the player sees it: what it last asked for, and the helper thread
/// that does it. Player thread only.
pub(super) struct Amp {
    output: String,
    control: AmpControl,
    tasks: Option<Sender<Switch>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    /// True once `on` has been asked for and `off` has not since (whether or not it worked).
    on: bool,
}

impl Amp {
    /// Start the helper thread `amp-<output>`. `None` (logged) if the OS refuses a thread: the
    /// output then plays without amplifier control.
    pub(super) fn spawn(output: &str, control: AmpControl) -> Option<Amp> {
        let (tasks, receiver) = mpsc::channel::<Switch>();
        let (done_tx, done) = mpsc::channel();
        let name = output.to_owned();
        let commands = control.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("amp-{output}"))
            .spawn(move || {
                for switch in receiver {
                    let argv = match switch {
                        Switch::On => &commands.on,
                        Switch::Off => &commands.off,
                    };
                    run(&name, switch, argv, COMMAND_TIMEOUT);
                }
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(thread) => Some(Amp {
                output: output.to_owned(),
                control,
                tasks: Some(tasks),
                done,
                thread: Some(thread),
                on: false,
            }),
            Err(error) => {
                tracing::error!(output, %error, "cannot start the amplifier thread; playing without amplifier control");
                None
            }
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.on
    }

    pub(super) fn preroll(&self) -> Duration {
        self.control.preroll
    }

    /// Ask for power on (once; again only after an `off`). Returns at once.
    pub(super) fn switch_on(&mut self) {
        if !self.on {
            self.on = true;
            self.send(Switch::On);
        }
    }

    /// Ask for power off if it is on. Returns at once.
    pub(super) fn switch_off(&mut self) {
        if self.on {
            self.on = false;
            self.send(Switch::Off);
        }
    }

    fn send(&self, switch: Switch) {
        if let Some(tasks) = &self.tasks {
            if tasks.send(switch).is_err() {
                tracing::warn!(output = %self.output, command = switch.name(), "the amplifier thread has stopped; command not run");
            }
        }
    }

    /// Let the commands already asked for finish, waiting at most `wait`; a command still running
    /// then is left to its time limit on its own thread.
    pub(super) fn finish(mut self, wait: Duration) {
        self.tasks = None;
        match self.done.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(output = %self.output, "amplifier command still running at shutdown; not waiting for it");
            }
        }
    }
}

/// Run one command with a time limit and log what happened.
fn run(output: &str, switch: Switch, argv: &[String], timeout: Duration) {
    let Some((program, args)) = argv.split_first() else {
        return; // Only the other switch is configured.
    };
    let began = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(output, command = switch.name(), ?argv, %error, "amplifier command could not start; playing on");
            return;
        }
    };
    let stdout = child.stdout.take().map(capture);
    let stderr = child.stderr.take().map(capture);
    let status = wait(&mut child, timeout);
    // A grandchild (a script's `sleep &`) may keep the pipes open after the command ended or
    // was killed: take what has been read by then rather than wait for it.
    let text = |reader: Option<Receiver<String>>| {
        reader
            .and_then(|r| r.recv_timeout(Duration::from_millis(200)).ok())
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let (stdout, stderr) = (text(stdout), text(stderr));
    let took_ms = began.elapsed().as_millis() as u64;
    match status {
        Ok(status) if status.success() => {
            tracing::info!(output, command = switch.name(), ?argv, took_ms, %stdout, %stderr, "amplifier command done");
        }
        Ok(status) => {
            tracing::warn!(output, command = switch.name(), ?argv, took_ms, %status, %stdout, %stderr, "amplifier command failed; playing on");
        }
        Err(why) => {
            tracing::warn!(output, command = switch.name(), ?argv, took_ms, %stdout, %stderr, "amplifier command {why}; playing on");
        }
    }
}

/// Wait for `child` up to `timeout`; kill it after that.
fn wait(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus, String> {
    let until = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?} and was killed"));
            }
            Err(error) => return Err(format!("could not be waited for: {error}")),
        }
    }
}

/// Read a pipe to its end on a thread of its own (so a chatty command never blocks on a full
/// pipe), keeping the first `OUTPUT_CAP` bytes; the text arrives on the channel at the end.
fn capture(mut pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new().spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0_u8; 1024];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let room = OUTPUT_CAP.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..n.min(room)]);
        }
        let _ = tx.send(String::from_utf8_lossy(&kept).into_owned());
    });
    rx
}
