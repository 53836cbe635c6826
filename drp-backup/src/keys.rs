//! OpenPGP keys: generation, listing, loading certificates and secret keys.
