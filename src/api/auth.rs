//! Bearer tokens to callers, the one place roles are checked, and the brake on token guessing:
//! an address that sent more than [`MAX_FAILURES`] bad tokens within [`WINDOW`] gets 429 with
//! `Retry-After` for anything carrying a token until the window has passed.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::domain::Role;

/// Bad tokens an address may send within [`WINDOW`] before it is slowed down.
pub const MAX_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond this the stalest is forgotten, so memory stays bounded
/// whatever a flood of addresses does.
const MAX_TRACKED: usize = 4096;

/// Who is calling, from a verified token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Err(403) unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "ไม่มีสิทธิ์ / your role '{}' may not do this (allowed: {})",
                    self.role,
                    allowed.join(", ")
                ),
            ))
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Recent bad-token times per address (IPv6 by /64, since one host usually holds a whole /64).
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Throttle {
    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        }
    }

    /// If `ip` is being slowed down at `now`, for how much longer.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = map.get(&Self::key(ip))?;
        if times.len() < MAX_FAILURES {
            return None;
        }
        let oldest = *times.front()?;
        let until = oldest + WINDOW;
        (until > now).then(|| until - now)
    }

    /// Count one bad token from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = Self::key(ip);
        if !map.contains_key(&key) && map.len() >= MAX_TRACKED {
            map.retain(|_, t| {
                t.back()
                    .is_some_and(|last| now.duration_since(*last) < WINDOW)
            });
            if map.len() >= MAX_TRACKED {
                // Still full of live entries (a flood): forget the stalest eighth at once, so
                // the cost of making room is paid once per many new addresses.
                let mut by_age: Vec<(Option<Instant>, IpAddr)> =
                    map.iter().map(|(k, t)| (t.back().copied(), *k)).collect();
                by_age.sort_unstable();
                for (_, k) in by_age.into_iter().take(MAX_TRACKED / 8) {
                    map.remove(&k);
                }
            }
        }
        let times = map.entry(key).or_default();
        times.push_back(now);
        // Only the last MAX_FAILURES matter: the oldest of them says when the brake lifts.
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// The caller's address as the throttle sees it (put in the request by [`throttle`]).
#[derive(Clone, Copy)]
struct ClientIp(IpAddr);

/// Middleware: refuse (429) requests carrying a token from an address that is being slowed
/// down, before any token is looked at; let the rest through, telling the `Caller` extractor
/// where to count a bad token.
pub async fn throttle(
    axum::extract::State(throttle): axum::extract::State<Arc<Throttle>>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if req.headers().contains_key(header::AUTHORIZATION) {
        if let Some(wait) = throttle.blocked(ip, Instant::now()) {
            let secs = wait.as_secs().max(1);
            tracing::warn!(%ip, retry_after = secs, "too many bad tokens from this address");
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_bad_tokens",
                format!("โทเคนผิดหลายครั้งเกินไป / too many bad tokens from your address; try again in {secs} s"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    req.extensions_mut().insert(ClientIp(ip));
    req.extensions_mut().insert(throttle);
    next.run(req).await
}

/// Count a bad token against the caller's address, if the throttle is in place.
fn count_failure(parts: &Parts) {
    if let (Some(t), Some(ClientIp(ip))) = (
        parts.extensions.get::<Arc<Throttle>>(),
        parts.extensions.get::<ClientIp>(),
    ) {
        t.failed(*ip, Instant::now());
    }
}

/// A caller of any role, the `box` role included. Only the endpoints a district box needs take
/// this (reporting airtime, handing over CAP alerts, whoami); every other one takes [`Caller`],
/// which refuses box tokens, so a box's token opens nothing else even if it leaks.
pub struct AnyCaller(pub Caller);

impl<S> FromRequestParts<S> for AnyCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        authenticate(parts, AppState::from_ref(state))
            .await
            .map(AnyCaller)
    }
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, AppState::from_ref(state)).await?;
        if caller.role == Role::Box {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "ไม่มีสิทธิ์ / a box token may only report airtime and hand over CAP alerts",
            ));
        }
        Ok(caller)
    }
}

async fn authenticate(parts: &mut Parts, state: AppState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        unauthorized("ต้องใช้โทเคน / an 'Authorization: Bearer <token>' header is required")
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200)
        .map(str::to_string);
    let Some(token) = token else {
        count_failure(parts);
        return Err(unauthorized(
            "the Authorization header must be 'Bearer <token>'",
        ));
    };
    let info = state.db(move |s| s.verify_token(&token)).await?;
    let Some(info) = info else {
        count_failure(parts);
        return Err(unauthorized(
            "โทเคนไม่ถูกต้องหรือถูกยกเลิก / the token is unknown or revoked",
        ));
    };
    Ok(Caller {
        token_id: info.id,
        name: info.name,
        role: info.role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_bad_tokens_in_a_minute_slow_an_address_down_until_the_window_passes() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.blocked(ip, t0), None, "after {i} failures");
            t.failed(ip, t0 + Duration::from_secs(i as u64));
        }
        let wait = t.blocked(ip, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(t.blocked(other, t0), None, "per address");
        // The first failure leaves the window at 60 s: one more try is allowed.
        assert_eq!(t.blocked(ip, t0 + WINDOW), None);
        t.failed(ip, t0 + WINDOW);
        assert!(t.blocked(ip, t0 + WINDOW).is_some());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..MAX_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            t.failed(ip, now);
        }
        assert!(t
            .blocked("2001:db8:1:2:ffff::1".parse().unwrap(), now)
            .is_some());
        assert!(t.blocked("2001:db8:1:3::1".parse().unwrap(), now).is_none());
        for _ in 0..MAX_FAILURES {
            t.failed("::ffff:192.0.2.9".parse().unwrap(), now);
        }
        assert!(t.blocked("192.0.2.9".parse().unwrap(), now).is_some());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..50_000u32 {
            t.failed(IpAddr::V4(i.into()), now + Duration::from_millis(i as u64));
        }
        assert!(t.tracked() <= MAX_TRACKED, "{}", t.tracked());
        // The newest addresses are still counted.
        let last = IpAddr::V4(49_999u32.into());
        for _ in 0..MAX_FAILURES {
            t.failed(last, now + Duration::from_secs(60));
        }
        assert!(t.blocked(last, now + Duration::from_secs(60)).is_some());
    }
}
