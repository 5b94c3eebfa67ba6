//! The expression language of `map`, `filter` and `project` (being built).
