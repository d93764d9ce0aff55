#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sup::fuzzing::process_compose(data));
