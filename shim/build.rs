//! Links the shim as a position-dependent executable. A shim runs once per pod, so what
//! matters is memory per process: in a PIE every page holding relocated pointers (RELRO)
//! becomes a private dirty copy in each process (about 360 KiB here); without PIE the
//! linker resolves them and the pages stay shared with the page cache.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
