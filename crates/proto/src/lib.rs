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
