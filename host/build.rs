//! Records the wasmtime version from Cargo.lock for `sluice version`, and
//! the WIT package's version from `wit/operator.wit`: the one place it is
//! written (`SLUICE_WIT_VERSION`; the host derives every WIT name from it).
fn main() {
    // The manifest folder of this build, not of the one that compiled this
    // script (`env!` would bake in the first checkout's path, and a build
    // script binary is reused across checkouts sharing a target folder).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let lock = std::path::Path::new(&manifest).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let version = text
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SLUICE_WASMTIME_VERSION={version}");
    let wit = std::path::Path::new(&manifest).join("../wit/operator.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit).expect("wit/operator.wit is readable");
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package sluice:operator@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("wit/operator.wit declares `package sluice:operator@VERSION;`");
    println!("cargo:rustc-env=SLUICE_WIT_VERSION={version}");
}
