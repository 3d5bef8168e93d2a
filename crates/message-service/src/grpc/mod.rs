//! The gRPC adapters. Every RPC of the v1 contract is declared; until each is implemented it
//! answers UNIMPLEMENTED (after authentication, so a bad token is still UNAUTHENTICATED).

use messaging_proto::message::v1::compliance_service_server::ComplianceService;
use messaging_proto::message::v1::message_service_server::MessageService;

/// `messaging.message.v1.MessageService`.
#[derive(Debug, Clone, Default)]
pub struct MessageGrpc;

#[tonic::async_trait]
impl MessageService for MessageGrpc {}

/// `messaging.message.v1.ComplianceService`.
#[derive(Debug, Clone, Default)]
pub struct ComplianceGrpc;

#[tonic::async_trait]
impl ComplianceService for ComplianceGrpc {}
