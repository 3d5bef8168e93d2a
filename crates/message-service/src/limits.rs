//! Per-user and per-tenant limits, so that one caller cannot take the service from the others:
//! how many Subscribe streams may be open, and how fast writes (send, edit, delete, react,
//! mark read) may come. Deployment defaults with per-tenant overrides; a refused stream is
//! `RESOURCE_EXHAUSTED`, a refused write `RESOURCE_EXHAUSTED` with `google.rpc.RetryInfo`
//! saying when to retry. Write rates use GCRA (the `governor` crate): a steady rate plus a
//! burst.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use messaging_platform::{ApiError, ApiResult, Caller};
use serde::Deserialize;

/// A steady rate with a burst; `per_second = 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Rate {
    /// Sustained writes per second.
    pub per_second: u32,
    /// Writes allowed at once after a quiet period.
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Option<Quota> {
        let per_second = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(per_second);
        Some(Quota::per_second(per_second).allow_burst(burst))
    }
}

/// `[message_service.limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Subscribe streams one user may have open at once; default 32.
    pub streams_per_user: u32,
    /// Subscribe streams one tenant may have open at once; default 20,000.
    pub streams_per_tenant: u32,
    /// Writes per user; default 30 per second, bursts of 60.
    pub writes_per_user: Rate,
    /// Writes per tenant; default 3,000 per second, bursts of 6,000.
    pub writes_per_tenant: Rate,
    /// Searches one tenant may run at once (each holds a database connection); default 4.
    pub searches_per_tenant: u32,
    /// Longest a search may run in the database, whatever the client's deadline; default 5 s.
    #[serde(with = "humantime_serde")]
    pub search_timeout: std::time::Duration,
    /// Overrides by tenant id (`[message_service.limits.tenants.acme]`): any of the four.
    pub tenants: HashMap<String, TenantLimits>,
}

/// The limits of one tenant that differ from the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TenantLimits {
    /// Overrides `streams_per_user`.
    pub streams_per_user: Option<u32>,
    /// Overrides `streams_per_tenant`.
    pub streams_per_tenant: Option<u32>,
    /// Overrides `writes_per_user`.
    pub writes_per_user: Option<Rate>,
    /// Overrides `writes_per_tenant`.
    pub writes_per_tenant: Option<Rate>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            streams_per_user: 32,
            streams_per_tenant: 20_000,
            writes_per_user: Rate {
                per_second: 30,
                burst: 60,
            },
            writes_per_tenant: Rate {
                per_second: 3_000,
                burst: 6_000,
            },
            searches_per_tenant: 4,
            search_timeout: std::time::Duration::from_secs(5),
            tenants: HashMap::new(),
        }
    }
}

impl LimitSettings {
    /// No limit at all (tests and benchmarks of other things).
    pub fn unlimited() -> Self {
        let none = Rate {
            per_second: 0,
            burst: 0,
        };
        Self {
            streams_per_user: u32::MAX,
            streams_per_tenant: u32::MAX,
            writes_per_user: none,
            writes_per_tenant: none,
            searches_per_tenant: u32::MAX >> 3,
            search_timeout: std::time::Duration::from_secs(5),
            tenants: HashMap::new(),
        }
    }
}

/// The write rate limiters of one set of quotas.
struct WriteLimiters {
    per_user:
        Option<DefaultKeyedRateLimiter<(messaging_platform::TenantId, messaging_platform::UserId)>>,
    per_tenant: Option<DefaultKeyedRateLimiter<messaging_platform::TenantId>>,
}

impl WriteLimiters {
    fn new(per_user: Rate, per_tenant: Rate) -> Self {
        Self {
            per_user: per_user.quota().map(RateLimiter::keyed),
            per_tenant: per_tenant.quota().map(RateLimiter::keyed),
        }
    }
}

/// Keys kept by a keyed limiter before idle ones are dropped.
const FORGET_ABOVE: usize = 100_000;

/// The limits in force, shared by every request.
pub struct Limits {
    settings: LimitSettings,
    defaults: WriteLimiters,
    overridden: HashMap<String, WriteLimiters>,
    open: Mutex<OpenStreams>,
    searches: moka::sync::Cache<String, Arc<tokio::sync::Semaphore>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Limits")
            .field("settings", &self.settings)
            .finish()
    }
}

#[derive(Debug, Default)]
struct OpenStreams {
    by_user: HashMap<(String, String), u32>,
    by_tenant: HashMap<String, u32>,
}

impl Limits {
    /// The limits of `settings`.
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        let defaults = WriteLimiters::new(settings.writes_per_user, settings.writes_per_tenant);
        let overridden = settings
            .tenants
            .iter()
            .map(|(tenant, limits)| {
                (
                    tenant.clone(),
                    WriteLimiters::new(
                        limits.writes_per_user.unwrap_or(settings.writes_per_user),
                        limits
                            .writes_per_tenant
                            .unwrap_or(settings.writes_per_tenant),
                    ),
                )
            })
            .collect();
        Arc::new(Self {
            settings,
            defaults,
            overridden,
            open: Mutex::default(),
            searches: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
        })
    }

    /// A place for one search of `tenant`, held until dropped, or RESOURCE_EXHAUSTED when the
    /// tenant runs `searches_per_tenant` already.
    pub fn search_permit(&self, tenant: &str) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        let places = self.settings.searches_per_tenant as usize;
        let semaphore = self.searches.get_with(tenant.to_owned(), || {
            Arc::new(tokio::sync::Semaphore::new(places))
        });
        semaphore
            .try_acquire_owned()
            .map_err(|_| ApiError::RateLimited {
                message: format!("at most {places} searches of one tenant run at once"),
                retry_after: std::time::Duration::from_millis(100),
            })
    }

    /// Longest a search may run in the database.
    pub fn search_timeout(&self) -> std::time::Duration {
        self.settings.search_timeout
    }

    /// Counts one write of `caller`, or refuses it with the time to wait.
    pub fn check_write(&self, caller: &Caller) -> ApiResult<()> {
        let limiters = self
            .overridden
            .get(caller.tenant_id.as_str())
            .unwrap_or(&self.defaults);
        if let Some(per_tenant) = &limiters.per_tenant {
            if per_tenant.len() > FORGET_ABOVE {
                per_tenant.retain_recent();
            }
            per_tenant
                .check_key(&caller.tenant_id)
                .map_err(|not_until| refused("the tenant's write rate", &not_until))?;
        }
        if let Some(per_user) = &limiters.per_user {
            if per_user.len() > FORGET_ABOVE {
                per_user.retain_recent();
            }
            per_user
                .check_key(&(caller.tenant_id.clone(), caller.user_id.clone()))
                .map_err(|not_until| refused("your write rate", &not_until))?;
        }
        Ok(())
    }

    /// Counts an opening stream of `caller` until the permit is dropped, or refuses it.
    pub fn open_stream(self: &Arc<Self>, caller: &Caller) -> ApiResult<StreamPermit> {
        let overrides = self.settings.tenants.get(caller.tenant_id.as_str());
        let per_user = overrides
            .and_then(|limits| limits.streams_per_user)
            .unwrap_or(self.settings.streams_per_user);
        let per_tenant = overrides
            .and_then(|limits| limits.streams_per_tenant)
            .unwrap_or(self.settings.streams_per_tenant);
        let user_key = (caller.tenant_id.to_string(), caller.user_id.to_string());
        let mut open = self
            .open
            .lock()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("stream counter lock poisoned")))?;
        let user_count = open.by_user.get(&user_key).copied().unwrap_or(0);
        let tenant_count = open
            .by_tenant
            .get(caller.tenant_id.as_str())
            .copied()
            .unwrap_or(0);
        if user_count >= per_user {
            return Err(ApiError::ResourceExhausted(format!(
                "at most {per_user} open streams per user: close one first"
            )));
        }
        if tenant_count >= per_tenant {
            return Err(ApiError::ResourceExhausted(format!(
                "at most {per_tenant} open streams per tenant"
            )));
        }
        open.by_user.insert(user_key.clone(), user_count + 1);
        open.by_tenant
            .insert(caller.tenant_id.to_string(), tenant_count + 1);
        Ok(StreamPermit {
            limits: Arc::clone(self),
            user: user_key,
        })
    }

    fn close_stream(&self, user: &(String, String)) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        decrement(&mut open.by_user, user);
        decrement(&mut open.by_tenant, &user.0);
    }
}

fn decrement<K: std::hash::Hash + Eq + Clone>(counts: &mut HashMap<K, u32>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

fn refused(what: &str, not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
    ApiError::RateLimited {
        message: format!("{what} is exceeded"),
        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
    }
}

/// One open stream, counted until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    limits: Arc<Limits>,
    user: (String, String),
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.limits.close_stream(&self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_runs_at_most_its_searches_at_once() {
        let limits = Limits::new(LimitSettings {
            searches_per_tenant: 2,
            ..LimitSettings::default()
        });
        let first = limits.search_permit("acme").expect("first");
        let _second = limits.search_permit("acme").expect("second");
        assert!(matches!(
            limits.search_permit("acme"),
            Err(ApiError::RateLimited { .. })
        ));
        // Other tenants keep their places.
        let _other = limits.search_permit("globex").expect("another tenant");
        drop(first);
        let _third = limits.search_permit("acme").expect("a place was freed");
    }
}
