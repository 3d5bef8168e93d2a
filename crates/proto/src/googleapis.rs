//! Finds the googleapis `.proto` files that come with the `google-cloud-googleapis` crate.
//!
//! The crate is a (build-)dependency only so that Cargo downloads it; its proto tree is read
//! from the Cargo registry. Shared by `build.rs` (protoc include path) and the `proto-deps`
//! binary (the import folder that `buf lint` resolves against).

use std::path::PathBuf;

/// The environment variable that overrides the search, for vendored or offline builds.
pub const OVERRIDE_VAR: &str = "MESSAGING_GOOGLEAPIS_DIR";

const CRATE_PREFIX: &str = "google-cloud-googleapis-0.16.";

/// Returns the folder that contains `google/api/annotations.proto`.
pub fn proto_root() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(OVERRIDE_VAR) {
        return Ok(PathBuf::from(dir));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry_src = cargo_home.join("registry").join("src");
    let mut candidates = Vec::new();
    for index in std::fs::read_dir(&registry_src)
        .map_err(|err| format!("cannot read {}: {err}", registry_src.display()))?
        .flatten()
    {
        for package in std::fs::read_dir(index.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = package.file_name().to_string_lossy().into_owned();
            let root = package.path().join("googleapis");
            if name.starts_with(CRATE_PREFIX) && root.join("google/api/annotations.proto").exists()
            {
                candidates.push(root);
            }
        }
    }
    candidates.sort();
    candidates.pop().ok_or_else(|| {
        format!(
            "google-cloud-googleapis 0.16 not found under {}; run `cargo fetch` or set {OVERRIDE_VAR}",
            registry_src.display()
        )
    })
}

/// The third-party files our protos import, relative to [`proto_root`].
pub const IMPORTED_FILES: &[&str] = &[
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/field_behavior.proto",
];
