//! What gets backed up: `NAME=PATH` (a directory or a file) or `NAME=cmd:COMMAND` (a command's
//! standard output, e.g. a database dump), and how each is read as one byte stream.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::host::{Host, HostError};
use crate::manifest::{SourceKind, validate_name};

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
    /// Checks the source on `host` before anything is uploaded and says how it is stored.
    pub fn kind(&self, host: &dyn Host, stack: &str) -> Result<SourceKind> {
        match &self.origin {
            SourceOrigin::Command(_) => Ok(SourceKind::Command),
            SourceOrigin::Path(path) => host.path_kind(path).map_err(|m| self.failed(stack, m)),
        }
    }

    /// The error for this source failing in `stack`.
    pub(crate) fn failed(&self, stack: &str, message: HostError) -> Error {
        Error::SourceFailed {
            stack: stack.to_string(),
            source_name: self.name.clone(),
            message,
        }
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
    fn a_missing_path_is_named() {
        let s: SourceSpec = "files=/nonexistent/drp-test".parse().unwrap();
        let err = s
            .kind(&crate::host::LocalHost, "acme")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/drp-test"), "{err}");
    }
}
