//! Command probe: `sh -c COMMAND` on this machine. Remote commands are composed in drp-core
//! (over a provisioning transport) with [`Attempt::evaluate`](super::Attempt::evaluate).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    Attempt, CommandProbeSpec, HealthProbe, MAX_BODY_BYTES, Observation, ProbeError, ProbeKind,
    ProbeResult, after, excerpt, parse_conditions, timed,
};
use crate::condition::Condition;
use crate::duration::HumanDuration;

/// How much of standard error a result keeps (its end: that is where the reason usually is).
const STDERR_TAIL_CHARS: usize = 400;

/// A local shell command. Build it from a [`CommandProbeSpec`].
#[derive(Debug)]
pub struct CommandProbe {
    command: String,
    target: String,
    timeout: Duration,
    conditions: Vec<Condition>,
}

impl CommandProbe {
    /// Checks the spec.
    pub fn new(spec: &CommandProbeSpec) -> Result<CommandProbe, ProbeError> {
        if spec.command.trim().is_empty() {
            return Err(ProbeError::invalid("command", "it is empty"));
        }
        Ok(CommandProbe {
            target: format!("`{}`", spec.command),
            command: spec.command.clone(),
            timeout: spec.timeout.unwrap_or(super::DEFAULT_TIMEOUT),
            conditions: parse_conditions(
                ProbeKind::Command,
                &spec.conditions,
                Some(CommandProbeSpec::DEFAULT_CONDITION),
            )?,
        })
    }

    async fn run(&self) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A command that outlives its timeout is killed when this future is dropped.
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (stdout, stderr, status) =
            tokio::try_join!(read_bounded(stdout), read_bounded(stderr), child.wait())?;
        Ok((status, stdout, stderr))
    }
}

/// Reads everything (so the command never blocks on a full pipe), keeps the first
/// [`MAX_BODY_BYTES`].
async fn read_bounded(mut reader: impl AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = MAX_BODY_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..n.min(room)]);
    }
}

#[async_trait]
impl HealthProbe for CommandProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Command
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> ProbeResult {
        let time = Timestamp::now();
        let (outcome, elapsed) = timed(self.timeout, self.run()).await;
        let mut observation = Observation {
            response_time: elapsed,
            ..Observation::default()
        };
        let (headline, error) = match outcome {
            Some(Ok((status, stdout, stderr))) => {
                observation.exit_code = status.code();
                observation.body = Some(String::from_utf8_lossy(&stdout).into_owned());
                let stderr = String::from_utf8_lossy(&stderr);
                let stderr = stderr.trim();
                if !stderr.is_empty() {
                    let tail_start = stderr
                        .char_indices()
                        .rev()
                        .nth(STDERR_TAIL_CHARS)
                        .map_or(0, |(i, _)| i);
                    observation.stderr = Some(stderr[tail_start..].to_owned());
                }
                let headline = match status.code() {
                    Some(code) => format!(
                        "{} exited with status {code} {}",
                        self.target,
                        after(elapsed)
                    ),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        let signal = status.signal().map_or("?".into(), |s| s.to_string());
                        format!(
                            "{} was killed by signal {signal} {}",
                            self.target,
                            after(elapsed)
                        )
                    }
                };
                (headline, None)
            }
            Some(Err(error)) => (
                String::new(),
                Some(format!("cannot run {}: {error}", self.target)),
            ),
            None => (
                String::new(),
                Some(format!(
                    "{} did not finish within {} and was killed",
                    self.target,
                    HumanDuration(self.timeout)
                )),
            ),
        };
        let stderr = observation.stderr.clone();
        let mut result = Attempt {
            kind: ProbeKind::Command,
            target: self.target.clone(),
            time,
            observation,
            headline,
            error,
        }
        .evaluate(&self.conditions);
        // What the command said about its failure explains it best.
        if !result.healthy
            && let Some(stderr) = stderr
        {
            let last_line = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            result.message = format!("{}; stderr: {}", result.message, excerpt(last_line, 200));
        }
        result
    }
}
