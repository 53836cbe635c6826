//! `drp.keys_generate`, `drp.keys_list`.

use drp_core::backup::Passphrase;
use drp_core::backup::keys::{generate_key, list_keys};
use pyo3::prelude::*;

use crate::{Failure, PathArg, run_blocking};

/// A secret key's passphrase, by reference only: the name of an environment variable or a
/// file (never the passphrase itself). Both at once is an error.
pub(crate) fn passphrase(
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<Passphrase>, Failure> {
    Ok(match (env, file) {
        (Some(_), Some(_)) => {
            return Err(Failure::invalid(
                "give the passphrase by passphrase_env or passphrase_file, not both",
            ));
        }
        (Some(var), None) => Some(Passphrase::from_env(var)?),
        (None, Some(file)) => Some(Passphrase::from_file(file)?),
        (None, None) => None,
    })
}

/// Generates a key pair `DIR/NAME.pub.asc` (certificate) and `DIR/NAME.sec.asc` (secret
/// key), like `drp keys generate`; the secret key is protected by the passphrase read from
/// `passphrase_env` (a variable name) or `passphrase_file`, if given. Existing files are
/// never overwritten. Returns `{"fingerprint", "public_path", "secret_path"}`.
#[pyfunction]
#[pyo3(signature = (name, dir, *, passphrase_env=None, passphrase_file=None))]
pub fn keys_generate(
    py: Python<'_>,
    name: String,
    dir: PathArg,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathArg>,
) -> PyResult<Py<PyAny>> {
    run_blocking(py, move || {
        let passphrase = passphrase(passphrase_env.as_deref(), passphrase_file.as_deref())?;
        Ok(generate_key(&name, &dir, passphrase.as_ref())?)
    })
}

/// The certificates and keys in `dir`, like `drp keys list --json`: one dict per key with
/// `name`, `fingerprint`, `created`, `expires`, `has_secret`, `user_ids`, `path`.
#[pyfunction]
pub fn keys_list(py: Python<'_>, dir: PathArg) -> PyResult<Py<PyAny>> {
    run_blocking(py, move || Ok(list_keys(&dir)?))
}
