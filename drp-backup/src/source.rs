//! What gets backed up: `NAME=PATH` (a directory or a file) or `NAME=cmd:COMMAND` (a command's
//! standard output, e.g. a database dump), and how each is read as one byte stream.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::manifest::{SourceKind, validate_name};

/// Bytes of a failed command's standard error kept for the error message.
const STDERR_TAIL: usize = 2048;

/// Where a source's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOrigin {
    /// A directory (archived with tar) or a regular file.
    Path(PathBuf),
    /// A shell command (`sh -c`) whose standard output is the data; it must exit 0.
    Command(String),
}

/// One named source of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// Name in the snapshot; becomes the object's and the restored file's name.
    pub name: String,
    /// Where the bytes come from.
    pub origin: SourceOrigin,
}

impl SourceSpec {
    /// Checks the source before anything is uploaded and says how it will be stored.
    pub fn kind(&self, stack: &str) -> Result<SourceKind> {
        match &self.origin {
            SourceOrigin::Command(_) => Ok(SourceKind::Command),
            SourceOrigin::Path(path) => {
                let meta = std::fs::metadata(path)
                    .map_err(|e| self.failed(stack, format!("{}: {e}", path.display())))?;
                if meta.is_dir() {
                    Ok(SourceKind::Directory)
                } else if meta.is_file() {
                    Ok(SourceKind::File)
                } else {
                    Err(self.failed(
                        stack,
                        format!("{}: neither a directory nor a regular file", path.display()),
                    ))
                }
            }
        }
    }

    fn failed(&self, stack: &str, message: String) -> Error {
        Error::SourceFailed {
            stack: stack.to_string(),
            source_name: self.name.clone(),
            message,
        }
    }

    /// Writes the source's bytes (a tar stream for a directory) into `out`; returns how many.
    /// Errors name the source; a command's failure carries its exit status and stderr tail.
    pub(crate) fn read_into<W: Write>(&self, stack: &str, out: W) -> Result<u64> {
        let mut out = crate::pipe::CountingWriter {
            inner: out,
            count: 0,
        };
        match &self.origin {
            SourceOrigin::Path(path) if path.is_dir() => archive_directory(path, &mut out)
                .map_err(|e| self.failed(stack, format!("{}: {e}", path.display())))?,
            SourceOrigin::Path(path) => {
                let mut file = std::fs::File::open(path)
                    .map_err(|e| self.failed(stack, format!("{}: {e}", path.display())))?;
                io::copy(&mut file, &mut out)
                    .map_err(|e| self.failed(stack, format!("{}: {e}", path.display())))?;
            }
            SourceOrigin::Command(command) => {
                run_command(command, &mut out).map_err(|m| self.failed(stack, m))?
            }
        }
        Ok(out.count)
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            SourceOrigin::Path(path) => write!(f, "{}={}", self.name, path.display()),
            SourceOrigin::Command(command) => write!(f, "{}=cmd:{command}", self.name),
        }
    }
}

impl FromStr for SourceSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidSourceSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| invalid("expected NAME=PATH or NAME=cmd:COMMAND"))?;
        validate_name("source", name)?;
        let origin = match rest.strip_prefix("cmd:") {
            Some(command) if command.trim().is_empty() => {
                return Err(invalid("the command is empty"));
            }
            Some(command) => SourceOrigin::Command(command.to_string()),
            None if rest.is_empty() => return Err(invalid("the path is empty")),
            None => SourceOrigin::Path(PathBuf::from(rest)),
        };
        Ok(SourceSpec {
            name: name.to_string(),
            origin,
        })
    }
}

fn archive_directory<W: Write>(dir: &Path, out: W) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    // Symlinks are stored as links; following them could leave the tree or loop.
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()?.flush()
}

fn run_command<W: Write>(command: &str, out: &mut W) -> std::result::Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the command: {e}"))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        tail
    });
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let copied = io::copy(&mut stdout, out);
    drop(stdout);
    if copied.is_err() {
        // The pipeline stopped: do not leave the command running or a zombie behind.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the command: {e}"))?;
    let tail = stderr_reader.join().unwrap_or_default();
    copied.map_err(|e| format!("reading the command's output: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let tail = String::from_utf8_lossy(&tail[tail.len().saturating_sub(STDERR_TAIL)..])
        .trim()
        .to_string();
    let status = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("{status}"),
    };
    Err(if tail.is_empty() {
        format!("the command failed ({status})")
    } else {
        format!("the command failed ({status}): {tail}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_into_paths_and_commands() {
        let s: SourceSpec = "db=cmd:pg_dump -Fc app".parse().unwrap();
        assert_eq!(s.origin, SourceOrigin::Command("pg_dump -Fc app".into()));
        let s: SourceSpec = "files=/srv/app=data".parse().unwrap();
        assert_eq!(s.origin, SourceOrigin::Path("/srv/app=data".into()));
        assert_eq!(s.to_string(), "files=/srv/app=data");
    }

    #[test]
    fn malformed_specs_say_what_is_wrong() {
        for (spec, expected) in [
            ("/srv/app", "expected NAME=PATH"),
            ("db=cmd:  ", "the command is empty"),
            ("db=", "the path is empty"),
            ("../x=/srv", "invalid source name"),
        ] {
            let err = spec.parse::<SourceSpec>().unwrap_err().to_string();
            assert!(err.contains(expected), "{spec}: {err}");
        }
    }

    #[test]
    fn a_failing_command_reports_its_status_and_stderr() {
        let s: SourceSpec = "db=cmd:echo partial; echo 'connection refused' >&2; exit 3"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        let err = s.read_into("acme", &mut out).unwrap_err().to_string();
        assert!(err.starts_with("stack acme, source db: "), "{err}");
        assert!(
            err.contains("exit status 3") && err.contains("connection refused"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_path_is_named() {
        let s: SourceSpec = "files=/nonexistent/drp-test".parse().unwrap();
        let err = s.kind("acme").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/drp-test"), "{err}");
    }
}
