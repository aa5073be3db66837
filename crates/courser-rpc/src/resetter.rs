//! The `resetter` service (spec 4.2): `resetter.List` takes `true` and returns
//! plugin names; `resetter.Reset` takes a plugin name (`"http"`) as JSON and
//! returns `true` once that plugin's workers were replaced (an error otherwise).

/// `resetter.List`: names of the plugins that can be reset.
pub const LIST: &str = "resetter.List";
/// `resetter.Reset`: replace every worker of one plugin.
pub const RESET: &str = "resetter.Reset";
