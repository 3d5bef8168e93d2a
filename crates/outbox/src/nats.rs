//! Publishing the outbox to NATS JetStream.

use std::time::Duration;

use prost::Message as _;

use super::{BusEvent, store};

/// Where events go for other services: a NATS JetStream stream.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct NatsSettings {
    /// `nats://host:4222`; empty disables publishing (the embedded default).
    pub url: String,
    /// The JetStream stream, created if missing; default `MESSAGING`.
    pub stream: String,
    /// First subject token; default `messaging`. Subjects are
    /// `<prefix>.<tenant>.<conversation>.<kind>`, for example
    /// `messaging.acme.0194....message.created`.
    pub subject_prefix: String,
    /// JetStream's de-duplication window for re-published events; default 2 minutes.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long the stream keeps events; default 7 days.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            stream: "MESSAGING".to_owned(),
            subject_prefix: "messaging".to_owned(),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The subject token of a tenant id: the id itself when it is made of `A-Z a-z 0-9 _ -`
/// only, else `~` and its URL-safe base64 (which never contains `.`, `*`, `>` or spaces).
pub fn tenant_token(tenant: &str) -> String {
    if !tenant.is_empty()
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        tenant.to_owned()
    } else {
        use base64::Engine as _;
        format!(
            "~{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tenant)
        )
    }
}

/// Publishes stored events to JetStream, each with its event id as `Nats-Msg-Id`.
#[derive(Debug, Clone)]
pub struct NatsPublisher {
    jetstream: async_nats::jetstream::Context,
    prefix: String,
    skipped: &'static [&'static str],
}

impl NatsPublisher {
    /// Connects and creates the stream if missing.
    pub async fn connect(settings: &NatsSettings) -> anyhow::Result<Self> {
        let client = async_nats::connect(&settings.url).await.map_err(|error| {
            anyhow::anyhow!("cannot connect to NATS at {}: {error}", settings.url)
        })?;
        let jetstream = async_nats::jetstream::new(client);
        jetstream
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: settings.stream.clone(),
                subjects: vec![format!("{}.>", settings.subject_prefix)],
                duplicate_window: settings.duplicate_window,
                max_age: settings.max_age,
                ..Default::default()
            })
            .await
            .map_err(|error| anyhow::anyhow!("JetStream stream {}: {error}", settings.stream))?;
        Ok(Self {
            jetstream,
            prefix: settings.subject_prefix.clone(),
            skipped: &[],
        })
    }

    /// Leaves out events whose kind starts with one of `prefixes`: events copied from another
    /// service's outbox, which that service publishes itself.
    pub fn skipping(mut self, prefixes: &'static [&'static str]) -> Self {
        self.skipped = prefixes;
        self
    }

    /// Publishes `rows` in order and waits until JetStream acknowledged every one.
    pub async fn publish(&self, rows: Vec<(store::EventRow, BusEvent)>) -> Result<(), String> {
        let mut acks = Vec::with_capacity(rows.len());
        for (row, event) in rows {
            if self
                .skipped
                .iter()
                .any(|prefix| row.kind.starts_with(prefix))
            {
                continue;
            }
            let subject = format!(
                "{}.{}.{}.{}",
                self.prefix,
                tenant_token(&row.tenant_id),
                row.conversation_id,
                row.kind
            );
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .message_id(row.event_id.to_string())
                .payload(event.event.encode_to_vec().into());
            let ack = self
                .jetstream
                .send_publish(subject, publish)
                .await
                .map_err(|error| error.to_string())?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|error| error.to_string())?;
        }
        Ok(())
    }
}
