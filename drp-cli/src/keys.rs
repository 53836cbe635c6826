//! `drp keys`.

use drp_core::backup::Passphrase;
use drp_core::backup::keys::{generate_key, list_keys};

use crate::cli::{KeysCommand, PassphraseArgs};
use crate::output::{CommandError, print_json};

pub fn run(command: KeysCommand) -> Result<(), CommandError> {
    match command {
        KeysCommand::Generate {
            name,
            dir,
            passphrase,
        } => {
            let passphrase = passphrase.load()?;
            let key = generate_key(&name, &dir, passphrase.as_ref())?;
            println!("{}", key.fingerprint);
            eprintln!(
                "wrote {} (certificate) and {} (secret key{})",
                key.public_path.display(),
                key.secret_path.display(),
                if passphrase.is_some() {
                    ", passphrase-protected"
                } else {
                    ", NOT passphrase-protected"
                }
            );
            Ok(())
        }
        KeysCommand::List { dir, json } => {
            let keys = list_keys(&dir)?;
            if json {
                print_json(&keys);
                return Ok(());
            }
            if keys.is_empty() {
                eprintln!("no keys in {}", dir.display());
                return Ok(());
            }
            println!(
                "{:<20} {:<40} {:<20} {:<20} KIND",
                "NAME", "FINGERPRINT", "CREATED", "EXPIRES"
            );
            for key in keys {
                println!(
                    "{:<20} {:<40} {:<20} {:<20} {}",
                    key.name,
                    key.fingerprint,
                    key.created.strftime("%Y-%m-%d %H:%M:%S"),
                    key.expires.map_or("never".to_string(), |t| t
                        .strftime("%Y-%m-%d %H:%M:%S")
                        .to_string()),
                    if key.has_secret { "secret" } else { "public" }
                );
            }
            Ok(())
        }
    }
}

impl PassphraseArgs {
    /// The passphrase, if one was pointed to.
    pub fn load(&self) -> Result<Option<Passphrase>, CommandError> {
        Ok(match (&self.passphrase_env, &self.passphrase_file) {
            (Some(var), _) => Some(Passphrase::from_env(var)?),
            (None, Some(file)) => Some(Passphrase::from_file(file)?),
            (None, None) => None,
        })
    }
}
