//! Compliance: erasure jobs and their steps, retention policies, audit records and export
//! cursors.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The steps of an erasure, in the order they run. Each is idempotent and made of small
/// batches, so a job interrupted anywhere resumes at its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// The user's participations (conversation-service).
    Participations,
    /// The user's messages become tombstones.
    Messages,
    /// The user's reactions.
    Reactions,
    /// Mentions of the user in others' messages.
    Mentions,
    /// Read states and the participant projection.
    ReadStates,
    /// The user's uploads and their objects.
    Attachments,
    /// Stored events the user caused.
    Events,
    /// Finished.
    Done,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 8] = [
        Self::Participations,
        Self::Messages,
        Self::Reactions,
        Self::Mentions,
        Self::ReadStates,
        Self::Attachments,
        Self::Events,
        Self::Done,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Participations => "participations",
            Self::Messages => "messages",
            Self::Reactions => "reactions",
            Self::Mentions => "mentions",
            Self::ReadStates => "read_states",
            Self::Attachments => "attachments",
            Self::Events => "events",
            Self::Done => "done",
        }
    }

    /// The step named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == name)
    }

    /// The step after this one.
    pub fn next(self) -> Self {
        Self::ALL
            .into_iter()
            .find(|step| *step > self)
            .unwrap_or(Self::Done)
    }
}

/// An erasure job: its step and what it erased so far in its latest run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The erased user.
    pub user: String,
    /// The administrator who asked last.
    pub requester: String,
    /// Where it is.
    pub step: Step,
    /// Counts.
    pub counts: ErasureCounts,
    /// When the latest run started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureCounts {
    /// Messages that became tombstones (or lost their sender).
    pub messages: i64,
    /// Reactions removed.
    pub reactions: i64,
    /// Attachments whose objects were deleted.
    pub attachments: i64,
    /// Conversations the user was removed from.
    pub participations: i64,
    /// Stored events deleted.
    pub events: i64,
}

/// A retention policy; 0 days keeps forever.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Messages older than this many days are purged to tombstones.
    pub message_days: u32,
    /// Tombstones older than this many days (since deletion) are removed.
    pub tombstone_days: u32,
    /// Who last changed it (empty: never set).
    pub updater: String,
    /// When.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Most days a policy may name (100 years).
pub const MAX_RETENTION_DAYS: i32 = 36_500;

/// A stored policy and whom it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedPolicy {
    /// The tenant.
    pub tenant: String,
    /// The conversation of an override; `None` for the tenant's policy.
    pub conversation: Option<Uuid>,
    /// The policy.
    pub policy: RetentionPolicy,
}

/// An entry of the compliance audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its id (UUID v7: sorts by time).
    pub id: Uuid,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: AuditAction,
    /// Whom it concerned; empty for policy changes.
    pub subject: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Facts without content.
    pub details: BTreeMap<String, String>,
}

/// What an audit record records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// ExportUserData was called.
    Exported,
    /// EraseUserData was called.
    ErasureRequested,
    /// An erasure finished.
    Erased,
    /// A retention policy changed.
    RetentionChanged,
}

impl AuditAction {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exported => "user.exported",
            Self::ErasureRequested => "user.erasure_requested",
            Self::Erased => "user.erased",
            Self::RetentionChanged => "retention.changed",
        }
    }

    /// The action named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Exported,
            Self::ErasureRequested,
            Self::Erased,
            Self::RetentionChanged,
        ]
        .into_iter()
        .find(|action| action.as_str() == name)
    }
}

/// The parts of an export, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Memberships, by conversation id.
    Memberships = 0,
    /// Messages the user sent, by id.
    Messages = 1,
    /// Revisions of those, by message id and revision.
    Revisions = 2,
    /// The user's reactions, by message id and emoji.
    Reactions = 3,
    /// Read states, by conversation id.
    ReadStates = 4,
    /// Mentions of the user, by conversation id and sequence.
    Mentions = 5,
}

impl Section {
    const ALL: [Section; 6] = [
        Self::Memberships,
        Self::Messages,
        Self::Revisions,
        Self::Reactions,
        Self::ReadStates,
        Self::Mentions,
    ];

    /// The section after this one, if any.
    pub fn next(self) -> Option<Self> {
        Self::ALL.into_iter().find(|section| *section > self)
    }
}

/// Where an export is: after `key` (the sort key of the last item sent) in `section`; `key`
/// empty means the section's beginning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCursor {
    /// The section.
    pub section: Section,
    /// The sort key of the last item, as strings.
    pub key: Vec<String>,
}

impl ExportCursor {
    /// The beginning of the export.
    pub fn start() -> Self {
        Self {
            section: Section::Memberships,
            key: Vec::new(),
        }
    }

    /// The opaque form clients pass back.
    pub fn encode(&self) -> String {
        let json = serde_json::json!([self.section as u8, self.key]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    }

    /// A cursor from its opaque form; `None` when this service did not issue it.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let (section, key): (u8, Vec<String>) = serde_json::from_slice(&bytes).ok()?;
        let section = Section::ALL.into_iter().find(|s| *s as u8 == section)?;
        Some(Self { section, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_order_and_end_done() {
        assert_eq!(Step::Participations.next(), Step::Messages);
        assert_eq!(Step::Events.next(), Step::Done);
        assert_eq!(Step::Done.next(), Step::Done);
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let cursor = ExportCursor {
            section: Section::Reactions,
            key: vec!["0190".to_owned(), "👍".to_owned()],
        };
        assert_eq!(ExportCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(ExportCursor::decode("not a cursor"), None);
        assert_eq!(ExportCursor::decode("WzksW11d"), None); // [9,[]]: no such section
    }
}
