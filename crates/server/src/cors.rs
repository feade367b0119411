//! CORS for browser clients (a chat widget on another origin): `[server] cors_origins` lists
//! the origins allowed, exactly (`https://chat.example`, `http://localhost:3000`); none by
//! default, and never `*`. A preflight from a listed origin is answered with the methods and
//! headers the API takes; any other origin gets no `Access-Control-Allow-Origin`, so browsers
//! refuse. Authentication is by the `Authorization` header, never cookies: no credentials mode.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Checks `[server] cors_origins`: each an origin (`scheme://host[:port]`, no path).
pub fn check_origins(origins: &[String]) -> Result<(), String> {
    for o in origins {
        let ok = url::Url::parse(o).ok().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && !o.ends_with('/')
                && u.query().is_none()
                && u.username().is_empty()
                && u.origin().ascii_serialization() == *o
        });
        if !ok {
            return Err(format!(
                "`[server]`: cors_origins entry `{o}` is not an origin; write it as the browser sends it, `https://host` or `http://host:port` (no path, no trailing slash, no `*`)"
            ));
        }
    }
    Ok(())
}

/// The CORS layer of `origins`, or `None` when there are none (no CORS answers at all).
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([header::RETRY_AFTER, header::LOCATION])
            .max_age(Duration::from_secs(600)),
    )
}
