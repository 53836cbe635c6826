//! drp-core
