//! Generates Rust code and the reflection descriptor set from the workspace's `proto/` folder.

use std::path::PathBuf;

#[path = "src/googleapis.rs"]
#[allow(dead_code)] // IMPORTED_FILES is for the proto-deps binary
mod googleapis;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("../../proto").canonicalize()?;
    let googleapis_dir = googleapis::proto_root()?;
    let well_known_dir = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let files = [
        "messaging/conversation/v1/conversation.proto",
        "messaging/conversation/v1/conversation_service.proto",
        "messaging/message/v1/message.proto",
        "messaging/message/v1/event.proto",
        "messaging/message/v1/message_service.proto",
        "messaging/message/v1/compliance_service.proto",
    ]
    .map(|file| proto_dir.join(file))
    .into_iter()
    // google.rpc's Status and error details: in the descriptor set (not in the generated
    // modules), so that the REST edge writes error details in JSON by their type.
    .chain(
        ["google/rpc/status.proto", "google/rpc/error_details.proto"]
            .map(|file| googleapis_dir.join(file)),
    )
    .collect::<Vec<_>>();

    let mut prost_config = prost_build::Config::new();
    prost_config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Attachment content passes through without a copy.
    prost_config.bytes([
        ".messaging.message.v1.UploadAttachmentRequest.chunk",
        ".messaging.message.v1.DownloadAttachmentResponse.chunk",
    ]);
    // `prost::Name` for every message: its full name finds its descriptor (`crate::json`).
    prost_config.enable_type_names();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("messaging_descriptor.bin"))
        // RPCs that a later release implements answer UNIMPLEMENTED until then.
        .generate_default_stubs(true)
        .compile_with_config(
            prost_config,
            &files,
            &[proto_dir.clone(), googleapis_dir, well_known_dir],
        )?;
    // The protos live outside this package: without this, edits to them would not rebuild.
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    println!("cargo:rerun-if-env-changed={}", googleapis::OVERRIDE_VAR);
    Ok(())
}
