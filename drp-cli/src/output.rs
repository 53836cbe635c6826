//! What the CLI prints: errors with exit statuses, sizes, times, logging setup.

use std::fmt;

use drp_core::backup;

/// An error of a command, with the exit status it maps to.
#[derive(Debug)]
pub enum CommandError {
    /// From the library.
    Backup(backup::Error),
    /// A plain failure message from the CLI itself.
    Message(String),
    /// Verification found snapshots it refused (already reported one by one).
    Refused(usize),
}

impl CommandError {
    pub fn message(message: impl Into<String>) -> Self {
        CommandError::Message(message.into())
    }

    pub fn exit_status(&self) -> u8 {
        match self {
            CommandError::Backup(e) => drp_core::exit_status_for(e),
            CommandError::Message(_) => drp_core::exit::FAILURE,
            CommandError::Refused(_) => drp_core::exit::INTEGRITY,
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Backup(e) => write!(f, "{e}"),
            CommandError::Message(m) => f.write_str(m),
            CommandError::Refused(n) => write!(f, "{n} snapshot(s) failed verification"),
        }
    }
}

impl From<backup::Error> for CommandError {
    fn from(e: backup::Error) -> Self {
        CommandError::Backup(e)
    }
}

impl From<backup::KeyError> for CommandError {
    fn from(e: backup::KeyError) -> Self {
        CommandError::Backup(e.into())
    }
}

impl From<backup::StoreError> for CommandError {
    fn from(e: backup::StoreError) -> Self {
        CommandError::Backup(e.into())
    }
}

/// Logs go to stderr; stdout stays for results.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

/// Writes `text` to `path` whole or not at all (drp-core's
/// [`write_atomically`](drp_core::files::write_atomically)); errors name the file.
pub fn write_file(path: &std::path::Path, text: &str) -> Result<(), CommandError> {
    drp_core::files::write_atomically(path, text)
        .map_err(|e| CommandError::message(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(super::human_bytes(0), "0 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
