//! Limits that keep one caller from taking the service from the others: open streams per user
//! and tenant, write rates per user and tenant (with `google.rpc.RetryInfo`), and per-tenant
//! overrides of each.

use std::time::Duration;

use message_service::limits::{LimitSettings, Rate, TenantLimits};
use messaging_e2e::{Backend, MessagingHarness, backend_tests, create_group, text_message};
use messaging_proto::conversation::v1::Role;
use messaging_proto::message::v1 as pb;
use tokio::time::Instant;
use tonic::Code;
use tonic_types::StatusExt;

backend_tests!(
    open_streams_are_capped_per_user_and_tenant,
    writes_are_rate_limited_with_a_retry_time
);

async fn harness(backend: Backend) -> MessagingHarness {
    MessagingHarness::start_with(backend, |settings| {
        let mut limits = LimitSettings {
            streams_per_user: 2,
            writes_per_user: Rate {
                per_second: 2,
                burst: 3,
            },
            ..LimitSettings::default()
        };
        limits.tenants.insert(
            "small".to_owned(),
            TenantLimits {
                streams_per_tenant: Some(1),
                writes_per_tenant: Some(Rate {
                    per_second: 1,
                    burst: 1,
                }),
                ..TenantLimits::default()
            },
        );
        settings.message_service.limits = limits;
    })
    .await
}

async fn open(
    client: &mut messaging_e2e::MessageClient,
) -> Result<tonic::Streaming<pb::SubscribeResponse>, tonic::Status> {
    client
        .subscribe(pb::SubscribeRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

async fn open_streams_are_capped_per_user_and_tenant(backend: Backend) {
    let harness = harness(backend).await;
    let mut alice = harness.client("acme", "alice");
    let first = open(&mut alice).await.expect("first stream");
    let _second = open(&mut alice).await.expect("second stream");
    let status = open(&mut alice).await.expect_err("a third stream");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("per user"),
        "{}",
        status.message()
    );
    // Others are not affected.
    let mut bob = harness.client("acme", "bob");
    let _bobs = open(&mut bob).await.expect("bob's stream");
    // Closing a stream frees its place (once the server has seen the client go).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(15);
    let _third = loop {
        match open(&mut alice).await {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    Instant::now() < deadline,
                    "the closed stream was never released"
                );
                tokio::task::yield_now().await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    // The tenant "small" may have one stream in all.
    let mut small_one = harness.client("small", "one");
    let mut small_two = harness.client("small", "two");
    let _only = open(&mut small_one).await.expect("small's only stream");
    let status = open(&mut small_two)
        .await
        .expect_err("small's second stream");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("per tenant"),
        "{}",
        status.message()
    );
}

async fn writes_are_rate_limited_with_a_retry_time(backend: Backend) {
    let harness = harness(backend).await;
    let mut owner = harness.conversations.client("acme", "alice");
    let group = create_group(&mut owner, "limits", &[("bob", Role::Member)]).await;
    let mut alice = harness.client("acme", "alice");
    // A burst of three, then refused with the time to wait.
    for index in 0..3 {
        alice
            .send_message(text_message(&group, &format!("burst {index}")))
            .await
            .expect("within the burst");
    }
    let status = alice
        .send_message(text_message(&group, "one too many"))
        .await
        .expect_err("over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    // bob has a rate of his own.
    let mut bob = harness.client("acme", "bob");
    bob.send_message(text_message(&group, "bob is not limited by alice"))
        .await
        .expect("bob's write");
    // After the advertised wait, alice may write again.
    tokio::time::sleep(retry).await;
    alice
        .send_message(text_message(&group, "after waiting"))
        .await
        .expect("after the retry delay");

    // The tenant "small" writes once per second in all.
    let mut small_owner = harness.conversations.client("small", "one");
    let small = create_group(&mut small_owner, "small", &[("two", Role::Member)]).await;
    let mut one = harness.client("small", "one");
    let mut two = harness.client("small", "two");
    one.send_message(text_message(&small, "the tenant's one write"))
        .await
        .expect("first write");
    let status = two
        .send_message(text_message(&small, "another user, same tenant"))
        .await
        .expect_err("over the tenant's rate");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("tenant"), "{}", status.message());
}
