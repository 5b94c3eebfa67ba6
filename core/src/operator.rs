//! The pure logic of operators that the data plane runs: aggregate calls and their
//! accumulators, and user-written keyed processes.

pub mod agg;
pub mod process;
