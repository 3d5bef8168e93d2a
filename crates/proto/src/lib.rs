//! Generated gRPC code for the messaging services, plus the encoded file descriptor set that
//! server reflection serves.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// `messaging.conversation.v1`: conversations, participants and permission checks.
pub mod conversation {
    pub mod v1 {
        tonic::include_proto!("messaging.conversation.v1");
    }
}

/// `messaging.message.v1`: messages, reactions, read state, search, streams and compliance.
pub mod message {
    pub mod v1 {
        tonic::include_proto!("messaging.message.v1");
    }
}

/// The file descriptor set of every proto file above and its imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("messaging_descriptor");

/// Protobuf's canonical JSON form of the generated messages (lowerCamelCase names, 64-bit
/// integers as strings, enums by name, RFC 3339 timestamps), as grpc-gateway and Envoy's
/// transcoder write it, through the descriptors of [`FILE_DESCRIPTOR_SET`].
pub mod json {
    use std::sync::LazyLock;

    use prost_reflect::{DescriptorPool, DynamicMessage};

    static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
        DescriptorPool::decode(super::FILE_DESCRIPTOR_SET).map_err(|error| error.to_string())
    });

    /// Why a message could not be converted.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct JsonError(String);

    /// Every message, enum and service of the protos and their imports.
    pub fn pool() -> Result<&'static DescriptorPool, JsonError> {
        POOL.as_ref().map_err(|error| JsonError(error.clone()))
    }

    /// `message` as a dynamic message of its descriptor.
    pub fn dynamic<M: prost::Message + prost::Name>(
        message: &M,
    ) -> Result<DynamicMessage, JsonError> {
        let name = M::full_name();
        let descriptor = pool()?
            .get_message_by_name(&name)
            .ok_or_else(|| JsonError(format!("no descriptor for {name}")))?;
        DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
            .map_err(|error| JsonError(error.to_string()))
    }

    /// `message` in canonical JSON.
    pub fn to_value<M: prost::Message + prost::Name>(
        message: &M,
    ) -> Result<serde_json::Value, JsonError> {
        serde_json::to_value(dynamic(message)?).map_err(|error| JsonError(error.to_string()))
    }
}
