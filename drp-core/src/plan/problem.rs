//! What `drp plan check` reports: [`Problem`]s, each with its position in the plan file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A 1-based position in the plan file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` of `text`.
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// Maps byte offsets of one text to [`Location`]s in O(log lines), for texts that are asked
/// many times (a plan of a thousand stacks has tens of thousands of positions).
#[derive(Debug, Clone)]
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> LineIndex<'t> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    pub(crate) fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        Location {
            line,
            column: self.text[start..offset].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// How bad a problem is: errors make the plan invalid, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The plan cannot be used as it is.
    Error,
    /// Worth knowing, not blocking (e.g. an environment variable that is not set here).
    Warning,
}

/// What kind of problem it is (stable names, used in `--json` output and by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Not valid TOML.
    Syntax,
    /// A key the format does not have (a typo, or a key in the wrong table).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong type or form (a bad duration, address, name, ...).
    InvalidValue,
    /// A name that refers to nothing (a stack, host, datacenter, customer, notifier,
    /// provisioner, source).
    UndefinedReference,
    /// Stacks that depend on each other in a circle.
    DependencyCycle,
    /// Two things with the same name.
    Duplicate,
    /// A key, certificate, SSH key, known_hosts or passphrase file that is missing,
    /// unreadable or not what it should be.
    KeyFile,
    /// Another file the plan refers to (a playbook, a provisioner script) is missing.
    MissingFile,
    /// A secret written into the plan instead of referenced (`*_env`, `*_file`).
    LiteralSecret,
    /// A probe condition that does not parse.
    Condition,
    /// Something the plan needs is not available where drp runs (e.g. an environment
    /// variable that is not set).
    Environment,
    /// `--online`: the store, a host or a notifier did not answer.
    Unreachable,
}

impl ProblemKind {
    /// The stable name (`unknown_key`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Syntax => "syntax",
            ProblemKind::UnknownKey => "unknown_key",
            ProblemKind::MissingKey => "missing_key",
            ProblemKind::InvalidValue => "invalid_value",
            ProblemKind::UndefinedReference => "undefined_reference",
            ProblemKind::DependencyCycle => "dependency_cycle",
            ProblemKind::Duplicate => "duplicate",
            ProblemKind::KeyFile => "key_file",
            ProblemKind::MissingFile => "missing_file",
            ProblemKind::LiteralSecret => "literal_secret",
            ProblemKind::Condition => "condition",
            ProblemKind::Environment => "environment",
            ProblemKind::Unreachable => "unreachable",
        }
    }
}

/// One problem found in a plan.
///
/// `Display` is `FILE:LINE:COLUMN: error: MESSAGE` (or `FILE: error: MESSAGE` when the
/// problem has no position, e.g. an unreadable file). Messages never contain secrets: the
/// plan holds none, and online checks report what failed, not what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The plan file, as it was named.
    pub file: PathBuf,
    /// Where in it, when known.
    #[serde(flatten)]
    pub location: Option<Location>,
    /// What is wrong, and where useful how to fix it.
    pub message: String,
}

impl Problem {
    /// An error at `location`.
    pub fn error(
        file: &Path,
        kind: ProblemKind,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            severity: Severity::Error,
            kind,
            file: file.to_path_buf(),
            location,
            message: message.into(),
        }
    }

    /// A warning at `location`.
    pub fn warning(
        file: &Path,
        kind: ProblemKind,
        location: Option<Location>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, kind, location, message)
        }
    }

    /// Whether it makes the plan invalid.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(location) = self.location {
            write!(f, ":{location}")?;
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: {}", self.message)
    }
}

/// Sorts problems by position (those without one first), then kind and message, so that
/// output does not depend on the order checks ran in.
pub(crate) fn sort(problems: &mut [Problem]) {
    problems
        .sort_by(|a, b| (a.location, a.kind, &a.message).cmp(&(b.location, b.kind, &b.message)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_character_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(
            Location::of_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::of_offset(text, 6),
            Location { line: 2, column: 1 }
        );
        // 'é' is two bytes but one column.
        let eq = text.find('=').unwrap();
        let second_eq = text[eq + 1..].find('=').unwrap() + eq + 1;
        assert_eq!(
            Location::of_offset(text, second_eq),
            Location { line: 2, column: 4 }
        );
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                index.location(offset),
                Location::of_offset(text, offset),
                "{offset}"
            );
        }
    }

    #[test]
    fn problems_read_like_compiler_diagnostics() {
        let p = Problem::error(
            Path::new("plan.toml"),
            ProblemKind::UnknownKey,
            Some(Location { line: 3, column: 5 }),
            "unknown key `prot`",
        );
        assert_eq!(p.to_string(), "plan.toml:3:5: error: unknown key `prot`");
        let p = Problem::warning(
            Path::new("plan.toml"),
            ProblemKind::Environment,
            None,
            "X is not set",
        );
        assert_eq!(p.to_string(), "plan.toml: warning: X is not set");
    }
}
