//! Conversions between stored times and `google.protobuf.Timestamp`.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// A stored time as a protobuf timestamp.
pub fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// An optional stored time as an optional protobuf timestamp.
pub fn to_optional_timestamp(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(to_timestamp)
}

/// The current time, truncated to microseconds: what both databases store, so that a value
/// returned right after a write equals the one read back later.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// A protobuf timestamp as a stored time; `None` when it is out of range.
pub fn from_timestamp(timestamp: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
}
