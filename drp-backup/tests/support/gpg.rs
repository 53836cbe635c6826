//! GnuPG in a temporary home.

use std::path::PathBuf;
use std::process::Command;

/// Stops the gpg-agent of a GNUPGHOME when dropped, also when the test panics.
#[derive(Debug)]
pub struct AgentGuard(pub PathBuf);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.0)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}
