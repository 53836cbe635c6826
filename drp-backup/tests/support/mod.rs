//! Helpers shared by the integration tests of drp-backup (`mod support;` in each test file).
#![allow(dead_code)]

pub mod fault_proxy;
pub mod gpg;
pub mod s3;
