//! Fills the WIT package's version, as `wit/operator.wit` declares it (the
//! one place it is written), into the bindings' `with` keys.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest);
    let wit = dir.join("../../wit/operator.wit");
    let template = dir.join("src/bindings.in.rs");
    println!("cargo:rerun-if-changed={}", wit.display());
    println!("cargo:rerun-if-changed={}", template.display());
    let text = std::fs::read_to_string(&wit).expect("wit/operator.wit is readable");
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package sluice:operator@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("wit/operator.wit declares `package sluice:operator@VERSION;`");
    let bindings = std::fs::read_to_string(&template)
        .expect("src/bindings.in.rs is readable")
        .replace("{WIT_VERSION}", version);
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("bindings.rs");
    std::fs::write(&out, bindings).expect("OUT_DIR is writable");
}
