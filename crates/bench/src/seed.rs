//! Bulk seeding for the history and search scenarios: messages written straight into
//! message-service's tables the way SendMessage writes them (sealed with the tenant's data key,
//! indexed with its search key, numbered 1..n), thousands per transaction, so that conversations
//! of 10^5 and 10^6 messages take seconds or minutes instead of hours of SendMessage calls.
//!
//! Texts follow a Zipf distribution (exponent 1.07, as measured for English text) over a
//! vocabulary of 20,000 words: a few hundred common English words first, then made-up words for
//! the long tail, 4 to 24 words per message.

use std::sync::Arc;

use message_service::admin::Keyring;
use message_service::admin::seeding::{
    Content, Message, index_entries, message, message_to_row, search_token, sequence,
};
use rand::Rng;
use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

const COMMON: &str = "the of and to a in is it you that he was for on are with as I his they be \
at one have this from or had by hot word but what some we can out other were all there when up \
use your how said an each she which do their time if will way about many then them write would \
like so these her long make thing see him two has look more day could go come did number sound \
no most people my over know water than call first who may down side been now find any new work \
part take get place made live where after back little only round man year came show every good \
me give our under name very through just form sentence great think say help low line differ turn \
cause much mean before move right boy old too same tell does set three want air well also play \
small end put home read hand port large spell add even land here must big high such follow act \
why ask men change went light kind off need house picture try us again animal point mother world \
near build self earth father head stand own page should country found answer school grow study \
still learn plant cover food sun four between state keep eye never last let thought city tree \
cross farm hard start might story saw far sea draw left late run while press close night real \
life few north open seem together next white children begin got walk example ease paper group \
always music those both mark often letter until mile river car feet care second book carry took \
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color \
face wood main enough plain girl usual young ready above ever red list though feel talk bird soon \
body dog family direct pose leave song measure door product black short numeral class wind \
question happen complete ship area half rock order fire south problem piece told knew pass since \
top whole king space heard best hour better true during hundred five remember step early hold \
west ground interest reach fast verb sing listen six table travel less morning ten simple several \
vowel toward war lay against pattern slow center love person money serve appear road map rain \
rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine \
note wait plan figure star box noun field rest correct able pound done beauty drive stood contain \
front teach week final gave green oh quick develop ocean warm free minute strong special mind \
behind clear tail produce fact street inch multiply nothing course stay wheel full force blue \
object decide surface deep moon island foot system busy test record boat common gold possible \
plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire \
bring yes distant fill east paint language among deploy release budget launch meeting review";

/// Words in rank order, most frequent first.
pub struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    /// The common words, then made-up ones up to `size`, weighted by Zipf's law.
    pub fn new(size: usize) -> Self {
        let mut words: Vec<String> = COMMON.split_whitespace().map(str::to_owned).collect();
        let syllables = [
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "zu", "da", "fi", "go", "hu",
            "je", "ba",
        ];
        let mut index = 0_usize;
        while words.len() < size {
            let (a, b, c) = (index % 16, (index / 16) % 16, (index / 256) % 16);
            words.push(format!(
                "{}{}{}{}",
                syllables[a],
                syllables[b],
                syllables[c],
                index / 4096
            ));
            index += 1;
        }
        words.truncate(size);
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(1.07);
                total
            })
            .collect();
        Self { words, cumulative }
    }

    /// The word of rank `rank` (0 is the most frequent).
    pub fn word(&self, rank: usize) -> &str {
        &self.words[rank.min(self.words.len() - 1)]
    }

    fn sample(&self, random: &mut impl Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = random.random::<f64>() * total;
        let rank = self.cumulative.partition_point(|value| *value < target);
        self.word(rank)
    }

    /// A message of 4 to 24 words.
    pub fn message(&self, random: &mut impl Rng) -> String {
        let length = random.random_range(4..=24);
        (0..length)
            .map(|_| self.sample(random))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

const BATCH: usize = 500;

/// Writes `count` messages by `sender` into `conversation` of the bench tenant (which has none yet), numbered
/// 1..=count, sent one second apart ending now; calls `progress` after each batch.
pub async fn messages(
    db: &DatabaseConnection,
    keys: &Keyring,
    conversation: Uuid,
    sender: &str,
    count: u64,
    vocabulary: &Arc<Vocabulary>,
    progress: &dyn Fn(u64),
) -> anyhow::Result<()> {
    let tenant = crate::setup::TENANT;
    let key = keys.current(db, tenant).await?;
    let search = keys.search(db, tenant).await?;
    let now = messaging_platform::time::now();
    let mut random = rand::rng();
    let mut written = 0_u64;
    while written < count {
        let mut rows = Vec::with_capacity(BATCH);
        let mut entries = Vec::new();
        for _ in 0..(count - written).min(BATCH as u64) {
            written += 1;
            let text = vocabulary.message(&mut random);
            let seconds = i64::try_from(count - written).unwrap_or(0);
            let message = Message {
                id: Uuid::now_v7(),
                conversation,
                sequence: i64::try_from(written).unwrap_or(i64::MAX),
                sender: sender.to_owned(),
                content: Some(Content::Text(text)),
                parent: None,
                mentions: Vec::new(),
                metadata: Default::default(),
                has_attachments: false,
                attachments: Vec::new(),
                reply_count: 0,
                last_reply_at: None,
                request_id: None,
                created_at: now - chrono::Duration::seconds(seconds),
                edited_at: None,
                deleted_at: None,
                revision_count: 0,
            };
            for (token, weight) in index_entries(&search, message.content.as_ref(), &[]) {
                entries.push(search_token::ActiveModel::from(search_token::Model {
                    tenant_id: tenant.to_owned(),
                    token,
                    conversation_id: conversation,
                    message_id: message.id,
                    weight,
                }));
            }
            let row = message_to_row(tenant, &message, "", key.as_deref())?;
            rows.push(message::ActiveModel::from(row));
        }
        let transaction = messaging_platform::db::begin_write(db).await?;
        message::Entity::insert_many(rows)
            .exec_without_returning(&transaction)
            .await?;
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let chunk: Vec<_> = entries.by_ref().take(BATCH * 8).collect();
            search_token::Entity::insert_many(chunk)
                .exec_without_returning(&transaction)
                .await?;
        }
        transaction.commit().await?;
        progress(written);
    }
    sequence::Entity::insert(sequence::ActiveModel::from(sequence::Model {
        tenant_id: tenant.to_owned(),
        conversation_id: conversation,
        last_sequence: i64::try_from(count).unwrap_or(i64::MAX),
    }))
    .exec_without_returning(db)
    .await?;
    Ok(())
}
