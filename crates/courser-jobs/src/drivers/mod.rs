//! Queue drivers, one module each.
