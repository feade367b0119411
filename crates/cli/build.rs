//! Release links of the `hilo` binary place the functions its common commands run (`run`,
//! `bench`, `validate`) next to each other: lld's `--symbol-ordering-file` with the list in
//! `link/hot-symbols.txt` (made by `bench/order/generate`, checked by `bench/order/check`). The kernel maps a binary's code in 64 KiB runs around each page a
//! process touches, so code spread over the 29 MB of text made most of a short command's
//! memory: `hilo bench` touched ~13 MiB of it, ~3.5 MiB with the list (peak RSS 28 → 17.5 MiB).
//!
//! Only for x86_64 Linux release builds, whose default linker is lld. A symbol the list names
//! that a build does not have is skipped, so a stale list costs memory, never a failed build.
//! `HILO_NO_SYMBOL_ORDER=1` turns it and the packing below off (for a linker other than lld).
//!
//! The same builds pack their relative relocations (`-z pack-relative-relocs`, DT_RELR, read by
//! glibc 2.36 and later): the loader reads every relocation at start-up, and the 0.84 MB
//! `.rela.dyn` table was resident in every `hilo` process; packed, it is 10 KB.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link/hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=HILO_NO_SYMBOL_ORDER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if target != "x86_64-unknown-linux-gnu"
        || !release
        || std::env::var_os("HILO_NO_SYMBOL_ORDER").is_some()
    {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let list = Path::new(&dir).join("link").join("hot-symbols.txt");
    if list.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
