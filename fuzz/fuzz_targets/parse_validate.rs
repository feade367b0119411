//! Fuzz target: any bytes through the YAML and JSON parsers, the decoder and the validator.
//! A panic anywhere is a bug. Definitions that validate must also round-trip through YAML and
//! JSON and render as graphs.
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run parse_validate -- -max_total_time=600`
#![no_main]

use hilo_core::{Catalog, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let catalog = Catalog::default();
    for format in [Format::Yaml, Format::Json] {
        if let Ok(wf) = hilo_core::load(text, format, &catalog) {
            for out in [Format::Yaml, Format::Json] {
                let written = hilo_core::to_text(&wf, out).expect("a valid workflow can be written");
                let again = hilo_core::load(&written, out, &catalog).expect("written text loads");
                assert_eq!(again, wf, "round trip through {out}");
            }
            let _ = hilo_core::render::render(&wf, hilo_core::render::GraphFormat::Mermaid);
            let _ = hilo_core::render::render(&wf, hilo_core::render::GraphFormat::Dot);
        }
    }
});
