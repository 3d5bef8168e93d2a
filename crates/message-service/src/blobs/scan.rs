//! The scan hook: every completed upload is handed to a scanner, and stays `PENDING` (sendable,
//! not downloadable) until the scanner says `CLEAN` or `INFECTED`. The embedded default
//! (`none`) calls everything clean at once; `clamav` streams the content to clamd
//! (`clamav-daemon`) over its socket with the INSTREAM command.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;

/// Which scanner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// No scanner: uploads are clean as soon as they are stored.
    #[default]
    None,
    /// ClamAV's clamd.
    Clamav,
}

/// `[message_service.attachments.scanner]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ScannerSettings {
    /// `none` (default) or `clamav`.
    pub kind: ScannerKind,
    /// `clamav`: clamd's Unix socket; default `/var/run/clamav/clamd.ctl` (Debian's).
    pub socket: Option<PathBuf>,
    /// `clamav`: clamd's TCP address (`host:port`), instead of the socket.
    pub address: Option<String>,
    /// `clamav`: longest one scan may take before it is retried at the next sweep; default
    /// 5 min.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for ScannerSettings {
    fn default() -> Self {
        Self {
            kind: ScannerKind::None,
            socket: None,
            address: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What a scanner said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found.
    Clean,
    /// Malware found: the signature's name.
    Infected(String),
}

/// A configured scanner.
#[derive(Debug, Clone)]
pub struct Scanner {
    settings: ScannerSettings,
}

impl Scanner {
    /// The scanner `settings` name.
    pub fn new(settings: ScannerSettings) -> Self {
        Self { settings }
    }

    /// Whether uploads are clean at once (no scanner).
    pub fn is_none(&self) -> bool {
        self.settings.kind == ScannerKind::None
    }

    /// Scans `content`; an error (clamd unreachable, a timeout, a broken read) leaves the
    /// attachment pending for the next attempt.
    pub async fn scan<S>(&self, content: S) -> Result<Verdict, String>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        if self.is_none() {
            return Ok(Verdict::Clean);
        }
        let scanning = async {
            let response = match &self.settings.address {
                Some(address) => {
                    clamav_client::tokio::scan_stream(
                        content,
                        clamav_client::tokio::Tcp {
                            host_address: address.as_str(),
                        },
                        None,
                    )
                    .await
                }
                None => {
                    let socket = self
                        .settings
                        .socket
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("/var/run/clamav/clamd.ctl"));
                    clamav_client::tokio::scan_stream(
                        content,
                        clamav_client::tokio::Socket {
                            socket_path: socket,
                        },
                        None,
                    )
                    .await
                }
            };
            response.map_err(|error| format!("clamd: {error}"))
        };
        let response = tokio::time::timeout(self.settings.timeout, scanning)
            .await
            .map_err(|_| "clamd did not answer in time".to_owned())??;
        verdict(&response)
    }
}

/// clamd's answer to INSTREAM: `stream: OK`, `stream: <signature> FOUND`, or an error.
fn verdict(response: &[u8]) -> Result<Verdict, String> {
    let text = String::from_utf8_lossy(response);
    let text = text.trim_end_matches(['\0', '\n']).trim();
    let body = text.strip_prefix("stream:").map_or(text, str::trim);
    if body == "OK" {
        Ok(Verdict::Clean)
    } else if let Some(signature) = body.strip_suffix(" FOUND") {
        Ok(Verdict::Infected(signature.trim().to_owned()))
    } else {
        Err(format!("clamd answered {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamd_answers_become_verdicts() {
        assert_eq!(verdict(b"stream: OK\0"), Ok(Verdict::Clean));
        assert_eq!(
            verdict(b"stream: Eicar-Test-Signature FOUND\0"),
            Ok(Verdict::Infected("Eicar-Test-Signature".to_owned()))
        );
        assert!(verdict(b"INSTREAM size limit exceeded. ERROR\0").is_err());
    }
}
