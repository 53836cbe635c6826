//! Online checks.
