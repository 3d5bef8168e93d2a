//! Copies the third-party proto files that `proto/` imports into a folder (default
//! `target/proto-deps`), so `buf lint` and `buf build` resolve imports without a registry.

#[path = "../googleapis.rs"]
mod googleapis;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/proto-deps".to_owned());
    let root = googleapis::proto_root()?;
    for file in googleapis::IMPORTED_FILES {
        let destination = std::path::Path::new(&target).join(file);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(root.join(file), &destination)?;
    }
    println!("{target}");
    Ok(())
}
