//! The `dump` store: the standard output of a command (`pg_dump`, `mysqldump`,
//! `mongodump --archive`, ...) or cairn's own standard input, kept as one file named
//! after the component. It goes through the same chunk store as everything else, so a
//! dump that changed little costs little. A command that exits non-zero or dies fails
//! the whole backup, with its standard error in the message.

use super::{Component, Source, SourceReport, Sourced, StoreType};
use crate::config::CHUNKER_MEDIUM;
use crate::error::{Error, Result};
use crate::manifest::{Consistency, FileEntry, FileKind, FileRole, HookRun};
use crate::time::Timestamp;
use std::fs::File;
use std::io::{IsTerminal, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The command that means "cairn's standard input".
pub const STDIN: &str = "-";
/// How much of a failed command's standard error goes into the message.
const STDERR_TAIL: usize = 4096;

pub struct DumpSource {
    name: String,
    command: String,
    started: Timestamp,
    stream: Option<File>,
    child: Option<Child>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// The command's pid until it has been waited for; 0 after.
    running: Arc<AtomicU32>,
    run: Option<HookRun>,
}

/// A dump component: placed at the restore target, where its one file is.
pub fn component(name: &str, command: &str) -> Result<Component> {
    let started = Timestamp::now();
    let (stream, child, stderr) = if command == STDIN {
        if std::io::stdin().is_terminal() {
            return Err(Error::Invalid(format!(
                "dump {name}: standard input is a terminal; pipe the dump into cairn"
            )));
        }
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::Invalid(format!("dump {name}: standard input: {e}")))?;
        (File::from(fd), None, None)
    } else {
        let mut child = Command::new("/bin/sh")
            .args(["-c", command])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Invalid(format!("dump {name}: cannot run /bin/sh -c {command:?}: {e}")))?;
        let stdout = OwnedFd::from(child.stdout.take().expect("piped"));
        let mut stderr = child.stderr.take().expect("piped");
        // Read concurrently, or a chatty command blocks on a full pipe; keep the end.
        let stderr = std::thread::spawn(move || {
            let (mut tail, mut buffer) = (Vec::new(), [0u8; 8192]);
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buffer[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            tail
        });
        (File::from(stdout), Some(child), Some(stderr))
    };
    let running = Arc::new(AtomicU32::new(child.as_ref().map_or(0, Child::id)));
    let files = DumpSource {
        name: name.to_string(),
        command: command.to_string(),
        started,
        stream: Some(stream),
        child,
        stderr,
        running,
        run: None,
    };
    Ok(Component {
        name: name.into(),
        placement: Vec::new(),
        root: PathBuf::from(command),
        files: Box::new(files),
    })
}

impl DumpSource {
    fn entry(&self) -> FileEntry {
        FileEntry {
            path: self.name.as_bytes().to_vec(),
            kind: FileKind::Regular,
            mode: 0o100600,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mtime: self.started,
            ctime: self.started,
            inode: 0,
            device: 0,
            links: 1,
            size: 0,
            role: FileRole::Plain,
            log_number: None,
            chunker: CHUNKER_MEDIUM,
            chunks: Vec::new(),
        }
    }
}

impl Iterator for DumpSource {
    type Item = Result<Sourced>;

    fn next(&mut self) -> Option<Result<Sourced>> {
        let from = self.stream.take()?;
        let label = PathBuf::from(format!("dump {}", self.name));
        Some(Ok(Sourced::Stream { entry: self.entry(), from, label }))
    }
}

impl Source for DumpSource {
    fn store_type(&self) -> StoreType {
        StoreType::Dump
    }

    fn all_or_nothing(&self) -> bool {
        true
    }

    fn stopper(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        let running = self.running.clone();
        Some(Box::new(move || {
            // Only a command not yet waited for: its pid cannot be another's yet.
            let pid = running.load(Ordering::Acquire);
            if pid != 0 {
                kill(pid);
            }
        }))
    }

    fn finish(&mut self) -> Result<()> {
        let exit_code = match self.child.take() {
            None => 0,
            Some(mut child) => {
                let status = child.wait().map_err(|e| Error::Invalid(format!("dump {}: {e}", self.name)))?;
                self.running.store(0, Ordering::Release);
                let stderr = self.stderr.take().and_then(|t| t.join().ok()).unwrap_or_default();
                let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                if !status.success() {
                    let text = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(STDERR_TAIL)..]);
                    return Err(Error::Invalid(format!(
                        "dump {}: {:?} exited with status {code}: {}; no snapshot was written",
                        self.name,
                        self.command,
                        text.trim()
                    )));
                }
                code
            }
        };
        let finished = Timestamp::now();
        self.run =
            Some(HookRun { command: self.command.clone(), exit_code, started: self.started, finished });
        Ok(())
    }

    fn report(&self) -> SourceReport {
        SourceReport {
            consistency: Consistency::Unspecified,
            passes: 1,
            excluded: Vec::new(),
            contiguous_logs: false,
            command: self.run.clone(),
        }
    }
}

/// Stops a command. What it started itself may live on, but the copy stops waiting for
/// it: the producer polls its pipe and sees the backup cancelled.
fn kill(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
}

impl Drop for DumpSource {
    /// A backup that stopped early does not leave the command running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.running.store(0, Ordering::Release);
        }
    }
}
