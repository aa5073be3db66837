//! Queue drivers, one module each.
pub mod redis;
