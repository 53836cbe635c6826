//! The runbook.
