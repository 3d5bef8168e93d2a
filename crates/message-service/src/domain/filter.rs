//! The filters ListMessages and SearchMessages share.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Filters of a message listing or search; all that are set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Only this sender.
    pub sender: Option<String>,
    /// Only replies of this root.
    pub thread: Option<Uuid>,
    /// Only messages with attachments.
    pub has_attachments: bool,
    /// Sent at or after.
    pub start: Option<DateTime<Utc>>,
    /// Sent before.
    pub end: Option<DateTime<Utc>>,
}

impl MessageFilter {
    /// Whether any filter is set (a search then needs the messages, not just the index).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The filter as strings, for page-token fingerprints: a token is valid only with the
    /// filter it was made for.
    pub fn fingerprint_parts(&self) -> [String; 5] {
        let micros = |time: Option<DateTime<Utc>>| {
            time.map(|time| time.timestamp_micros().to_string())
                .unwrap_or_default()
        };
        [
            self.sender.clone().unwrap_or_default(),
            self.thread.map(|id| id.to_string()).unwrap_or_default(),
            if self.has_attachments { "1" } else { "0" }.to_owned(),
            micros(self.start),
            micros(self.end),
        ]
    }
}
