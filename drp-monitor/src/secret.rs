//! Secrets (webhook URLs, SMTP passwords) are configured only by reference — an environment
//! variable or a file — and held in a type that never prints them.

use std::fmt;
use std::path::PathBuf;

/// A secret value. `Debug` and `Display` print `***`; only [`Secret::expose`] gives it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (an HTTP request, an SMTP login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret is read from. Printing it shows the variable name or path, not the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's value.
    Env(String),
    /// A file's content, less one trailing newline.
    File(PathBuf),
}

/// A secret that could not be read. Never contains the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Neither `FIELD_env` nor `FIELD_file` was given.
    #[error("{field} is required: give {field}_env = \"VAR\" or {field}_file = \"/path\"")]
    Missing {
        /// The field (`url`, `password`).
        field: &'static str,
    },
    /// Both `FIELD_env` and `FIELD_file` were given.
    #[error("give either {field}_env or {field}_file, not both")]
    Both {
        /// The field (`url`, `password`).
        field: &'static str,
    },
    /// The environment variable is not set (or not Unicode).
    #[error("environment variable {var} is not set")]
    EnvMissing {
        /// The variable's name.
        var: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The value is empty.
    #[error("{origin} is empty")]
    Empty {
        /// `environment variable X` or `file /path`.
        origin: String,
    },
}

impl SecretSource {
    /// The source given by a pair of `FIELD_env` / `FIELD_file` config fields, if any.
    pub fn from_fields(
        field: &'static str,
        env: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<Option<SecretSource>, SecretError> {
        match (env, file) {
            (Some(_), Some(_)) => Err(SecretError::Both { field }),
            (Some(var), None) => Ok(Some(SecretSource::Env(var.to_owned()))),
            (None, Some(path)) => Ok(Some(SecretSource::File(path.to_owned()))),
            (None, None) => Ok(None),
        }
    }

    /// Like [`SecretSource::from_fields`], for a secret that must be given.
    pub fn required(
        field: &'static str,
        env: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<SecretSource, SecretError> {
        Self::from_fields(field, env, file)?.ok_or(SecretError::Missing { field })
    }

    /// Reads the secret now.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let (value, origin) = match self {
            SecretSource::Env(var) => (
                std::env::var(var).map_err(|_| SecretError::EnvMissing { var: var.clone() })?,
                format!("environment variable {var}"),
            ),
            SecretSource::File(path) => {
                let mut value =
                    std::fs::read_to_string(path).map_err(|source| SecretError::File {
                        path: path.clone(),
                        source,
                    })?;
                if value.ends_with('\n') {
                    value.pop();
                    if value.ends_with('\r') {
                        value.pop();
                    }
                }
                (value, format!("file {}", path.display()))
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty { origin });
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let secret = Secret::new("https://hooks.example/T0/B0/XYZ");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(secret.expose(), "https://hooks.example/T0/B0/XYZ");
    }

    #[test]
    fn reads_a_file_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "https://hooks.example/x\n").unwrap();
        let secret = SecretSource::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "https://hooks.example/x");
    }

    #[test]
    fn explains_missing_and_conflicting_sources() {
        let missing = SecretSource::Env("DRP_TEST_SURELY_UNSET_VARIABLE".into())
            .resolve()
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "environment variable DRP_TEST_SURELY_UNSET_VARIABLE is not set"
        );
        let both = SecretSource::from_fields("url", Some("A"), Some(std::path::Path::new("/b")))
            .unwrap_err();
        assert_eq!(
            both.to_string(),
            "give either url_env or url_file, not both"
        );
        let none = SecretSource::required("password", None, None).unwrap_err();
        assert!(none.to_string().contains("password_env"), "{none}");
    }
}
