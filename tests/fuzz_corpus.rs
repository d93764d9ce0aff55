//! Every input kept under `fuzz/corpus/<target>/` replayed through the same entry points the
//! fuzz targets call, on the stable toolchain: what the fuzzer once explored (and any crash it
//! found, kept there once fixed) must still go through without a panic.

use std::path::Path;
use std::time::{Duration, Instant};

/// The daemon parses on its main thread, whose stack is 8 MiB; a test thread has 2 MiB.
const STACK: usize = 8 << 20;

#[test]
fn every_corpus_file_goes_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for &(name, target) in sup::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("read corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus", dir.display());
        let worker = std::thread::Builder::new()
            .name(name.into())
            .stack_size(STACK)
            .spawn(move || {
                let mut slowest = (Duration::ZERO, None);
                for file in &files {
                    let data = std::fs::read(file).expect("read corpus file");
                    // Captured output, shown only when the test fails: the last name printed is
                    // the input that broke it.
                    eprintln!("{}", file.display());
                    let started = Instant::now();
                    target(&data);
                    let took = started.elapsed();
                    if took > slowest.0 {
                        slowest = (took, Some(file.clone()));
                    }
                }
                (files.len(), slowest)
            })
            .expect("spawn");
        match worker.join() {
            Ok((n, (took, file))) => {
                eprintln!("{name}: {n} inputs, slowest {took:?} ({file:?})");
            }
            Err(_) => panic!("{name}: the last input named above panicked"),
        }
    }
}
