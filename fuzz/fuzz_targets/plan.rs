//! The plan loader and validator (`drp plan check`): any text gives a plan or problems, never
//! a panic. A plan that loads is also compiled into its run and rendered as a runbook, as
//! `drp recover --dry-run` and `drp plan doc` do.
#![no_main]

use std::path::Path;

use drp_core::plan::{CheckOptions, check_str, compile, doc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No file is opened: the fuzzer must not depend on (or touch) the filesystem.
    let checked = check_str(
        text,
        Path::new("fuzz.toml"),
        Path::new("/nonexistent-drp-fuzz"),
        CheckOptions { files: false },
    );
    for problem in &checked.problems {
        let _ = problem.to_string();
    }
    assert_eq!(checked.plan.is_some(), checked.is_valid());
    if let Some(plan) = checked.plan {
        let _ = compile::compile(&plan, &[]);
        let _ = doc::render(&plan);
    }
});
