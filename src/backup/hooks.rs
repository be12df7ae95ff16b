//! `--pre-exec` and `--post-exec`: commands that quiesce the application before the
//! copy and resume it after. The post command runs whenever the pre command was tried,
//! even when it or the copy failed: an application left paused is worse than a failed
//! backup. Their output goes to standard error, so that `--json` output stays clean.

use crate::error::{Error, Result};
use crate::manifest::{self, HookRun};
use crate::time::Timestamp;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

pub struct Hooks<'a> {
    pre_command: Option<&'a str>,
    post_command: Option<&'a str>,
    pre: Option<HookRun>,
    post: Option<HookRun>,
    window_start: Timestamp,
    window_end: Timestamp,
}

impl<'a> Hooks<'a> {
    pub fn new(pre_command: Option<&'a str>, post_command: Option<&'a str>) -> Hooks<'a> {
        let now = Timestamp::now();
        Hooks { pre_command, post_command, pre: None, post: None, window_start: now, window_end: now }
    }

    /// Runs the pre command; the quiesce window starts when it ends.
    pub fn run_pre(&mut self) -> Result<()> {
        let Some(command) = self.pre_command else {
            self.window_start = Timestamp::now();
            return Ok(());
        };
        let run = run(command)?;
        self.window_start = run.finished;
        let failed = run.exit_code != 0;
        self.pre = Some(run);
        if failed {
            return Err(Error::Invalid(format!(
                "pre-exec hook failed: {}; nothing was copied",
                describe(self.pre.as_ref().expect("just set"))
            )));
        }
        Ok(())
    }

    /// Runs the post command; returns what went wrong with it, if anything.
    pub fn run_post(&mut self) -> Option<String> {
        self.window_end = Timestamp::now();
        let command = self.post_command?;
        match run(command) {
            Ok(run) => {
                let failure =
                    (run.exit_code != 0).then(|| format!("post-exec hook failed: {}", describe(&run)));
                self.post = Some(run);
                failure
            }
            Err(e) => Some(format!("post-exec hook could not run: {e}")),
        }
    }

    /// What the manifest records: nothing when no command was given.
    pub fn record(self) -> Option<manifest::Hooks> {
        if self.pre_command.is_none() && self.post_command.is_none() {
            return None;
        }
        Some(manifest::Hooks {
            pre: self.pre,
            post: self.post,
            window_start: self.window_start,
            window_end: self.window_end,
        })
    }
}

fn run(command: &str) -> Result<HookRun> {
    let started = Timestamp::now();
    let status = Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| Error::Invalid(format!("cannot run /bin/sh -c {command:?}: {e}")))?;
    let exit_code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(HookRun { command: command.to_string(), exit_code, started, finished: Timestamp::now() })
}

fn describe(run: &HookRun) -> String {
    format!("{:?} exited with status {}", run.command, run.exit_code)
}
