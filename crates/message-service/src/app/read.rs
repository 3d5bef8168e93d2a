//! GetMessage, ListMessages, MarkRead, GetReadState and GetUnreadCounts.

use messaging_platform::{ApiError, ApiResult, Caller, pagination};
use uuid::Uuid;

use super::Messages;
use crate::domain::Action;
use crate::domain::{Message, MessageFilter, MessageView, ReadState, Unread};
use crate::store::SequenceRange;

/// Where a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the newest, backwards.
    Newest,
    /// From the oldest, forwards.
    Oldest,
    /// From a sequence (inclusive), backwards.
    BackwardFrom(i64),
    /// From a sequence (inclusive), forwards.
    ForwardFrom(i64),
    /// Around a message.
    Around(Uuid),
}

/// A listing request, validated.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// The conversation.
    pub conversation: Uuid,
    /// Where to start (ignored when a page token is given).
    pub start: Start,
    /// Filters.
    pub filter: MessageFilter,
    /// Page size.
    pub page_size: u64,
    /// Page token as received.
    pub page_token: String,
}

/// A page of messages.
#[derive(Debug, Clone)]
pub struct MessagePage {
    /// The messages, in the listing's order.
    pub messages: Vec<MessageView>,
    /// Continues in the listing's direction (forward for AROUND).
    pub next_page_token: String,
    /// For AROUND: continues backwards.
    pub previous_page_token: String,
}

/// The keyset position of the next page and the direction it goes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    /// Continue below (`b`) or above (`f`) this sequence.
    d: char,
    s: i64,
}

fn backward(below: Option<i64>) -> SequenceRange {
    SequenceRange {
        above: None,
        below,
        descending: true,
    }
}

fn forward(above: Option<i64>) -> SequenceRange {
    SequenceRange {
        above,
        below: None,
        descending: false,
    }
}

/// Keeps the first `size` of `messages`; whether there were more.
fn truncate(messages: &mut Vec<Message>, size: u64) -> bool {
    let more = messages.len() as u64 > size;
    messages.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    more
}

impl Messages {
    /// GetMessage.
    pub async fn get(
        &self,
        caller: &Caller,
        conversation: Uuid,
        id: Uuid,
    ) -> ApiResult<MessageView> {
        let message = self
            .permitted_message(caller, conversation, id, Action::Read)
            .await?;
        self.view(caller, message).await
    }

    /// ListMessages.
    pub async fn list(&self, caller: &Caller, request: &ListRequest) -> ApiResult<MessagePage> {
        self.gate
            .require(caller, request.conversation, Action::Read)
            .await?;
        let filter = &request.filter;
        let [sender, thread, attachments, start, end] = filter.fingerprint_parts();
        let fingerprint = pagination::fingerprint(&[
            "messages",
            &request.conversation.to_string(),
            &sender,
            &thread,
            &attachments,
            &start,
            &end,
        ]);
        let cursor: Option<Cursor> =
            pagination::decode("page_token", &request.page_token, &fingerprint)?;
        let tenant = &caller.tenant_id;
        let size = request.page_size;
        let page = |range: SequenceRange, limit: u64| {
            self.store
                .page(tenant, request.conversation, filter, range, limit)
        };
        let token = |direction: char, sequence: i64| {
            pagination::encode(
                &fingerprint,
                &Cursor {
                    d: direction,
                    s: sequence,
                },
            )
        };

        let (range, around) = match (cursor, request.start) {
            (Some(Cursor { d: 'f', s }), _) => (forward(Some(s)), None),
            (Some(Cursor { s, .. }), _) => (backward(Some(s)), None),
            (None, Start::Newest) => (backward(None), None),
            (None, Start::Oldest) => (forward(None), None),
            (None, Start::BackwardFrom(s)) => (backward(Some(s.saturating_add(1))), None),
            (None, Start::ForwardFrom(s)) => (forward(Some(s.saturating_sub(1))), None),
            (None, Start::Around(id)) => {
                let anchor = self
                    .store
                    .message(tenant, request.conversation, id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "around_message_id",
                            "no such message in this conversation",
                        )
                    })?;
                (forward(Some(anchor.sequence - 1)), Some(anchor.sequence))
            }
        };
        if let Some(anchor) = around {
            let before_count = size / 2;
            let mut before = page(backward(Some(anchor)), before_count + 1).await?;
            let more_before = truncate(&mut before, before_count);
            before.reverse();
            let after_count = size - before.len() as u64;
            let mut after = page(range, after_count + 1).await?;
            let more_after = truncate(&mut after, after_count);
            let previous_page_token = match (more_before, before.first()) {
                (true, Some(first)) => token('b', first.sequence),
                _ => String::new(),
            };
            let next_page_token = match (more_after, after.last()) {
                (true, Some(last)) => token('f', last.sequence),
                _ => String::new(),
            };
            before.extend(after);
            return Ok(MessagePage {
                messages: self.views(caller, before).await?,
                next_page_token,
                previous_page_token,
            });
        }
        let mut messages = page(range, size + 1).await?;
        let more = truncate(&mut messages, size);
        let next_page_token = match (more, messages.last()) {
            (true, Some(last)) => token(if range.descending { 'b' } else { 'f' }, last.sequence),
            _ => String::new(),
        };
        Ok(MessagePage {
            messages: self.views(caller, messages).await?,
            next_page_token,
            previous_page_token: String::new(),
        })
    }

    /// MarkRead: forward only, clamped to the latest sequence.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        conversation: Uuid,
        up_to: i64,
    ) -> ApiResult<ReadState> {
        self.limits.check_write(caller)?;
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        let (state, _moved) = self
            .store
            .mark_read(&caller.tenant_id, conversation, &caller.user_id, up_to)
            .await?;
        Ok(state)
    }

    /// GetReadState.
    pub async fn read_states(
        &self,
        caller: &Caller,
        conversation: Uuid,
    ) -> ApiResult<Vec<ReadState>> {
        self.gate
            .require(caller, conversation, Action::Read)
            .await?;
        Ok(self
            .store
            .read_states(&caller.tenant_id, conversation)
            .await?)
    }

    /// GetUnreadCounts: for the given conversations the caller may read (others are left out),
    /// or for all the caller participates in.
    pub async fn unread_counts(
        &self,
        caller: &Caller,
        conversations: Vec<Uuid>,
    ) -> ApiResult<Vec<(Uuid, Unread)>> {
        let readable = self.readable(caller, conversations).await?;
        let counts = self
            .store
            .unread(&caller.tenant_id, &caller.user_id, &readable)
            .await?;
        Ok(readable
            .into_iter()
            .map(|id| (id, counts.get(&id).copied().unwrap_or_default()))
            .collect())
    }
}
