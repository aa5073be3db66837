//! Queue drivers, one module each.
pub mod beanstalk;
pub mod redis;
