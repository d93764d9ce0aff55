//! How the `sup` binary is linked: as a position-dependent executable, unless `SUP_PIE=1`.
//!
//! A PIE is relocated at every start: the dynamic loader reads the whole relocation table
//! (about 0.9 MB, mostly the pointers of chrono-tz's compiled-in zones) and writes every page
//! of `.data.rel.ro` (1.1 MB), which then stays private, dirty memory for the daemon's life.
//! Linked at a fixed address there is nothing to relocate: those pages stay clean, backed by
//! the file, and only the few the daemon reads are ever mapped. The price is that the image
//! (code and static data, not the heap, the stack or the libraries) is no longer at a random
//! address; `SECURITY.md` weighs it. `SUP_PIE=1 cargo build --release` (or `make build
//! SUP_PIE=1`) links a PIE again. Only the binaries take the flag: the library, the tests'
//! harnesses, build scripts, proc-macros and the fuzz targets are linked as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SUP_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let pie = std::env::var("SUP_PIE").is_ok_and(|v| !v.is_empty() && v != "0");
    if linux && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
