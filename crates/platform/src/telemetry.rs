//! Tracing setup. SQL statements are logged by sqlx at INFO; they are filtered to WARN unless
//! the filter names `sqlx` explicitly.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the global subscriber; a second call (as in tests) leaves the first in place.
pub fn init(settings: &TelemetrySettings) {
    let mut filter = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.log_filter.clone());
    if !filter.contains("sqlx") {
        filter.push_str(",sqlx=warn,sea_orm=warn");
    }
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
