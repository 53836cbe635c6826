//! drp-py
