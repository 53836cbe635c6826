//! Streaming OpenPGP encryption/decryption and detached signatures.
