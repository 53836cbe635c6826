//! drp-provision
