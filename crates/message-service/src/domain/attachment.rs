//! Attachments: files uploaded to a conversation and then sent with one message. The rules
//! that need no I/O live here: what a valid upload names, which types a deployment allows,
//! what the bytes say their type is, and which attachments a message may carry.

use chrono::{DateTime, Utc};
use messaging_platform::{ApiError, FieldViolations};
use uuid::Uuid;

/// Longest file name, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Bytes of the content the type is sniffed from.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// Where an attachment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentState {
    /// Bytes are still arriving, or the upload was interrupted and may be resumed.
    Uploading,
    /// Stored and verified; the scanner has not answered yet.
    Pending,
    /// The scanner found nothing.
    Clean,
    /// The scanner found malware: never served, never sent.
    Infected,
}

impl AttachmentState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Pending => "pending",
            Self::Clean => "clean",
            Self::Infected => "infected",
        }
    }

    /// The state a stored name names.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "uploading" => Some(Self::Uploading),
            "pending" => Some(Self::Pending),
            "clean" => Some(Self::Clean),
            "infected" => Some(Self::Infected),
            _ => None,
        }
    }
}

/// An attachment's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its id (client-chosen or a UUIDv7).
    pub id: Uuid,
    /// The conversation it was uploaded to.
    pub conversation: Uuid,
    /// Who uploaded it.
    pub uploader: String,
    /// The file name given at upload.
    pub file_name: String,
    /// The type the uploader declared.
    pub declared_type: String,
    /// The type of the content: sniffed, or the declared one when the bytes say nothing.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Bytes stored so far (equal to `size` once complete).
    pub uploaded: i64,
    /// Upload and scan state.
    pub state: AttachmentState,
    /// The message that carries it.
    pub message: Option<Uuid>,
    /// When the upload started.
    pub created_at: DateTime<Utc>,
}

impl Attachment {
    /// Whether `caller` may see it: its uploader always, anyone who may read the conversation
    /// once a message carries it.
    pub fn visible_to(&self, caller: &str) -> bool {
        self.message.is_some() || self.uploader == caller
    }

    /// Why a message of `sender` in `conversation` may not carry it, if it may not.
    pub fn unsendable(&self, sender: &str, conversation: Uuid) -> Option<&'static str> {
        if self.uploader != sender || self.conversation != conversation {
            Some("no such attachment of yours in this conversation")
        } else if self.message.is_some() {
            Some("was sent with another message already")
        } else {
            match self.state {
                AttachmentState::Uploading => Some("its upload is not complete"),
                AttachmentState::Infected => Some("the scanner found malware in it"),
                AttachmentState::Pending | AttachmentState::Clean => None,
            }
        }
    }

    /// Why it cannot be downloaded, if it cannot.
    pub fn unservable(&self) -> Option<&'static str> {
        match self.state {
            AttachmentState::Uploading => Some("the attachment's upload is not complete"),
            AttachmentState::Pending => {
                Some("the attachment has not been scanned yet; retry later")
            }
            AttachmentState::Infected => Some("the scanner found malware in the attachment"),
            AttachmentState::Clean => None,
        }
    }
}

/// The first item of an upload stream, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The conversation.
    pub conversation: Uuid,
    /// The client's id for the attachment, to resume by.
    pub id: Option<Uuid>,
    /// File name.
    pub file_name: String,
    /// Declared type, lower-cased.
    pub declared_type: String,
    /// Exact size.
    pub size: i64,
    /// The client's SHA-256, lower-case hex.
    pub sha256: String,
    /// Where this stream's bytes start.
    pub offset: i64,
}

impl Upload {
    /// Validates the metadata fields (named as in `UploadAttachmentRequest`).
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        conversation: &str,
        file_name: &str,
        content_type: &str,
        size: i64,
        sha256: &str,
        id: &str,
        offset: i64,
    ) -> Result<Self, ApiError> {
        use messaging_platform::validate::resource_id;
        let mut violations = FieldViolations::new();
        let conversation = violations.check(resource_id("metadata.conversation_id", conversation));
        if let Some(problem) = file_name_problem(file_name) {
            violations.add("metadata.file_name", problem);
        }
        let declared_type = content_type.trim().to_ascii_lowercase();
        if !is_media_type(&declared_type) {
            violations.add(
                "metadata.content_type",
                "must be a media type \"type/subtype\", for example \"image/png\"",
            );
        }
        if size < 0 {
            violations.add("metadata.size_bytes", "must not be negative");
        }
        let sha256 = sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            violations.add(
                "metadata.sha256",
                "must be the content's SHA-256 as 64 hex characters",
            );
        }
        let id = if id.is_empty() {
            None
        } else {
            violations.check(resource_id("metadata.attachment_id", id))
        };
        if offset < 0 || offset > size {
            violations.add(
                "metadata.offset",
                "must be between 0 and size_bytes (the attachment's uploaded_bytes to resume)",
            );
        } else if offset > 0 && id.is_none() {
            violations.add(
                "metadata.offset",
                "resuming needs the attachment_id of the interrupted upload",
            );
        }
        violations.finish()?;
        Ok(Self {
            conversation: conversation.unwrap_or_default(),
            id,
            file_name: file_name.to_owned(),
            declared_type,
            size,
            sha256,
            offset,
        })
    }

    /// Whether `attachment`, found under this upload's id, is the same upload (so this stream
    /// may resume it).
    pub fn resumes(&self, attachment: &Attachment, uploader: &str) -> bool {
        attachment.uploader == uploader
            && attachment.conversation == self.conversation
            && attachment.file_name == self.file_name
            && attachment.declared_type == self.declared_type
            && attachment.size == self.size
            && attachment.sha256 == self.sha256
    }
}

fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("required")
    } else if name.chars().count() > MAX_FILE_NAME_CHARS {
        Some("must be at most 255 characters")
    } else if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        Some("must not contain path separators or control characters")
    } else if name == "." || name == ".." {
        Some("must be a file name")
    } else {
        None
    }
}

fn is_media_type(value: &str) -> bool {
    let token = |part: &str| {
        !part.is_empty()
            && part.len() <= 127
            && part
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&byte))
    };
    match value.split_once('/') {
        Some((kind, subtype)) => token(kind) && token(subtype),
        None => false,
    }
}

/// The type the content's first bytes say it has, if they match a known signature.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    infer::get(head).map(|kind| kind.mime_type())
}

/// The media types a deployment allows: exact types or `type/*` patterns; empty allows all.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct AllowedTypes(Vec<String>);

impl AllowedTypes {
    /// From patterns.
    pub fn new(patterns: Vec<String>) -> Self {
        Self(patterns)
    }

    /// Whether `media_type` is allowed.
    pub fn allows(&self, media_type: &str) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|pattern| {
                let pattern = pattern.to_ascii_lowercase();
                match pattern.strip_suffix("/*") {
                    Some(kind) => media_type
                        .split_once('/')
                        .is_some_and(|(candidate, _)| candidate == kind),
                    None => pattern == "*/*" || pattern == media_type,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_types_match_exactly_or_by_family() {
        let allowed = AllowedTypes::new(vec!["image/*".to_owned(), "application/pdf".to_owned()]);
        assert!(allowed.allows("image/png"));
        assert!(allowed.allows("application/pdf"));
        assert!(!allowed.allows("application/x-msdownload"));
        assert!(!allowed.allows("imagex/png"));
        assert!(AllowedTypes::default().allows("anything/at-all"));
    }

    #[test]
    fn upload_metadata_is_checked_field_by_field() {
        let sha = "a".repeat(64);
        let id = Uuid::now_v7().to_string();
        let ok = Upload::parse(&id, "cat.png", "Image/PNG", 10, &sha, "", 0).expect("valid");
        assert_eq!(ok.declared_type, "image/png");
        let Err(ApiError::InvalidArgument(violations)) =
            Upload::parse("x", "a/b", "png", -1, "zz", "nope", 5)
        else {
            panic!("expected violations");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.conversation_id",
                "metadata.file_name",
                "metadata.content_type",
                "metadata.size_bytes",
                "metadata.sha256",
                "metadata.attachment_id",
                "metadata.offset"
            ]
        );
    }

    #[test]
    fn sniffing_reads_signatures_not_names() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"just some words"), None);
    }
}
