//! The SQL front end must never panic on any text: it parses, lowers and plans it, or returns
//! an error with a place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::frontend::plan::Plan;
use wire_core::frontend::spec::PipelineSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PipelineSpec::parse("fuzz.sql", text) {
        Ok(spec) => {
            let _ = Plan::from_spec(&spec);
        }
        Err(err) => assert!(err.pos.line >= 1, "an error without a place: {err}"),
    }
});
