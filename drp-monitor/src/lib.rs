//! drp-monitor
