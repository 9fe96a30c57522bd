//! Code every service shares, one module per concern.
#![forbid(unsafe_code)]

pub mod group_commit;
