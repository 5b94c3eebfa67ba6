//! The front end: pipeline specs (YAML or SQL), the expression language, and plans.

pub mod expr;
pub mod plan;
pub mod redact;
pub mod spec;
pub mod sql;
