//! The fanout scenario: one sender, many subscribers of one conversation, latency from the
//! send's reply to each subscriber's event.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use messaging_proto::message::v1 as pb;

use crate::report::Measurement;
use crate::setup::Deployment;

/// Subscribe streams per connection.
const SUBSCRIBERS_PER_CONNECTION: usize = 100;

/// `subscribers` users subscribe to one conversation; one sender sends `rate` messages a
/// second for `duration`. Latency runs from SendMessage's reply to the event's arrival at each
/// subscriber (an event that arrives before the reply counts as 1 µs); every event that has not
/// arrived 10 s after the last send counts as lost (the errors column). Also says how long
/// after the reply the first and the last of each message's copies arrived.
pub(crate) async fn fanout(
    deployment: &Deployment,
    subscribers: usize,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<(Measurement, String)> {
    use futures::StreamExt as _;
    use std::collections::HashMap;
    let members: Vec<String> = (0..subscribers)
        .map(|index| format!("fan{index}"))
        .collect();
    let id = deployment
        .create_large_group("fanout-sender", &members)
        .await?;
    // Before anyone subscribes: the warm-up message is nobody's event.
    deployment
        .warm_up("fanout-sender", std::slice::from_ref(&id))
        .await?;
    let progress = indicatif::ProgressBar::new(subscribers as u64);
    progress.set_prefix("fanout: subscribing");
    let expected = u64::from(rate) * duration.as_secs();
    // Each subscriber reads from the start (a reader that starts late is a slow consumer, which
    // the server ends) and notes when each message arrived.
    let mut receivers = Vec::with_capacity(subscribers);
    // Subscribers share connections, a hundred each (as devices behind an edge proxy would).
    let channels = deployment
        .message_channels(subscribers.div_ceil(SUBSCRIBERS_PER_CONNECTION))
        .await?;
    for (index, member) in members.iter().enumerate() {
        let mut client = deployment
            .message_client_on(channels[index / SUBSCRIBERS_PER_CONNECTION].clone(), member);
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                resume_position: String::new(),
                conversation_ids: vec![id.clone()],
            })
            .await?
            .into_inner();
        receivers.push(tokio::spawn(async move {
            let mut arrivals: HashMap<String, Instant> = HashMap::new();
            let mut ending = None;
            while arrivals.len() < usize::try_from(expected).unwrap_or(usize::MAX) {
                let response =
                    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                        Ok(Some(Ok(response))) => response,
                        Ok(Some(Err(status))) => {
                            ending = Some(format!("{:?}: {}", status.code(), status.message()));
                            break;
                        }
                        Ok(None) => {
                            ending = Some("ended".to_owned());
                            break;
                        }
                        Err(_) => {
                            ending = Some("nothing for 10 s".to_owned());
                            break;
                        }
                    };
                if let Some(pb::subscribe_response::Item::Event(pb::Event {
                    payload: Some(pb::event::Payload::MessageCreated(created)),
                    ..
                })) = response.item
                    && let Some(message) = created.message
                {
                    arrivals.insert(message.message_id, Instant::now());
                }
            }
            (arrivals, ending)
        }));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let mut sender = deployment.message_client("fanout-sender");
    let mut replies: HashMap<String, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let started = Instant::now();
    for index in 0..expected {
        ticker.tick().await;
        let reply = sender
            .send_message(pb::SendMessageRequest {
                conversation_id: id.clone(),
                content: Some(pb::send_message_request::Content::Text(format!(
                    "fanout {index}"
                ))),
                ..Default::default()
            })
            .await?;
        if let Some(message) = reply.into_inner().message {
            replies.insert(message.message_id, Instant::now());
        }
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    // Per message: when its first and its last copy arrived, to tell the path every copy
    // shares (commit, relay, bus) from the handing out of the copies one after the other.
    let mut first_last: HashMap<String, (Instant, Instant)> = HashMap::new();
    let mut lost = 0_u64;
    let mut endings: HashMap<String, usize> = HashMap::new();
    for receiver in receivers {
        let (arrivals, ending) = receiver.await?;
        if let Some(ending) = ending {
            *endings.entry(ending).or_default() += 1;
        }
        for (message, replied) in &replies {
            match arrivals.get(message) {
                Some(arrived) => {
                    let span = first_last
                        .entry(message.clone())
                        .or_insert((*arrived, *arrived));
                    span.0 = span.0.min(*arrived);
                    span.1 = span.1.max(*arrived);
                    record(&mut histogram, *replied, *arrived)?;
                }
                None => lost += 1,
            }
        }
    }
    for (ending, count) in endings {
        println!("fanout: {count} subscriber stream(s) ended early: {ending}");
    }
    let mut first = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut last = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for (message, (earliest, latest)) in &first_last {
        let replied = replies[message];
        record(&mut first, replied, *earliest)?;
        record(&mut last, replied, *latest)?;
    }
    let quantiles = |histogram: &Histogram<u64>| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            histogram.value_at_quantile(0.5) as f64 / 1_000.0,
            histogram.value_at_quantile(0.99) as f64 / 1_000.0
        )
    };
    let copies = format!(
        "first copy of each message {}; last copy {}",
        quantiles(&first),
        quantiles(&last)
    );
    println!("fanout: {copies}");
    Ok((
        Measurement::from_histogram(
            &format!("fanout ({subscribers} subscribers, {rate}/s)"),
            &histogram,
            started.elapsed(),
            lost,
            subscribers,
        ),
        copies,
    ))
}

/// Records how long after `replied` a copy `arrived`, in µs (at least 1: a copy may arrive
/// before the reply).
fn record(
    histogram: &mut Histogram<u64>,
    replied: Instant,
    arrived: Instant,
) -> anyhow::Result<()> {
    let micros = arrived.saturating_duration_since(replied).as_micros();
    histogram.record(
        u64::try_from(micros)
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000),
    )?;
    Ok(())
}
