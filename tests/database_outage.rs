//! PostgreSQL going away and coming back, through a TCP proxy the test cuts: calls answer
//! UNAVAILABLE promptly (never INTERNAL, never after minutes), health says NOT_SERVING while the
//! database is gone, and everything recovers by itself. (SQLite is a file of the process: it
//! cannot become unreachable this way.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use messaging_e2e::{MessagingHarness, TestDatabase, create_group, eventually, text_message};
use messaging_platform::config::Secret;
use messaging_proto::message::v1 as pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Forwards connections to PostgreSQL while up; when cut, drops every open connection and
/// refuses new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let up = Arc::new(AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_pipes) = (Arc::clone(&up), Arc::clone(&pipes));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                accept_pipes.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, up, pipes }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().await.drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn through(database: &mut TestDatabase, proxy: &Proxy) {
    let url = database
        .settings
        .url
        .expose()
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert!(url.contains(&proxy.port.to_string()), "{url}");
    database.settings.url = Secret::new(url);
}

async fn health(harness: &MessagingHarness) -> i32 {
    let mut client =
        tonic_health::pb::health_client::HealthClient::new(harness.messages.channel().await);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: "messaging.message.v1.MessageService".to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_unavailable_then_recovers() {
    if !messaging_e2e::postgres_or_skip().await {
        return;
    }
    let target = "127.0.0.1:5432".to_owned();
    let proxy = Proxy::start(target).await;
    let harness =
        MessagingHarness::start_with_database(messaging_e2e::Backend::Postgres, |database| {
            through(database, &proxy);
        })
        .await;
    let mut owner = harness.conversations.client("acme", "alice");
    let group = create_group(&mut owner, "Outage", &[]).await;
    let mut alice = harness.client("acme", "alice");
    alice
        .send_message(text_message(&group, "before"))
        .await
        .expect("send");
    assert_eq!(health(&harness).await, ServingStatus::Serving as i32);

    proxy.cut().await;
    let started = Instant::now();
    let status = alice
        .list_messages(pb::ListMessagesRequest {
            conversation_id: group.clone(),
            ..Default::default()
        })
        .await
        .expect_err("the database is gone");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered after {:?}",
        started.elapsed()
    );
    eventually(
        Duration::from_secs(20),
        "health says NOT_SERVING",
        || async { health(&harness).await == ServingStatus::NotServing as i32 },
    )
    .await;

    proxy.restore();
    eventually(Duration::from_secs(20), "calls succeed again", || {
        let mut alice = alice.clone();
        let group = group.clone();
        async move {
            alice
                .send_message(text_message(&group, "after"))
                .await
                .is_ok()
        }
    })
    .await;
    eventually(Duration::from_secs(20), "health says SERVING", || async {
        health(&harness).await == ServingStatus::Serving as i32
    })
    .await;
}
