//! The front end: pipeline specs (YAML), the expression language, and plans.

pub mod expr;
pub mod plan;
pub mod spec;
