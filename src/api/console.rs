//! The web console for district staff and auditors (issue #5): one page and its assets, embedded
//! in the binary from `src/api/console/` (plain JS and CSS, no build step, nothing fetched from the
//! internet: boxes are often offline).
//!
//! Only the files named in [`ASSETS`] can be served: a request path is looked up in that table and
//! never reaches the file system, so there is no path to traverse.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("console/index.html"),
};

/// Everything under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/app.js"),
    },
    Asset {
        name: "i18n.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/i18n.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("console/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("console/icon.svg"),
    },
];

/// The page may load only what this box serves: the console must work offline, and a script
/// smuggled in through an announcement title would have nowhere to send a token. `blob:` is for
/// playing an announcement's audio and saving the CSV, both fetched with the token first.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// The file names carry no version, so the browser revalidates every time (a cheap 304 thanks to
/// the ETag): after the daemon is upgraded nobody runs yesterday's script against today's API.
const CACHE_CONTROL: &str = "no-cache";

/// A strong ETag per asset, from its content; computed once.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS.iter())
            .map(|a| {
                let digest = Sha256::digest(a.body);
                (a.name, format!("\"{}\"", hex::encode(&digest[..12])))
            })
            .collect()
    });
    tags.iter()
        .find(|(name, _)| *name == asset.name)
        .map(|(_, tag)| tag.as_str())
        .unwrap_or("\"\"")
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_static(tag));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if asset.name == INDEX.name {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    (headers, asset.body).into_response()
}

/// `GET /`: the console page.
pub async fn index(request: HeaderMap) -> Response {
    serve(&INDEX, &request)
}

/// `GET /assets/{*path}`: one of the embedded files, or 404.
pub async fn asset(Path(path): Path<String>, request: HeaderMap) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == path)
        .map(|a| serve(a, &request))
        .ok_or_else(|| ApiError::not_found("no such asset / ไม่มีไฟล์นี้"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_served() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        for name in page
            .split("/assets/")
            .skip(1)
            .map(|rest| rest.split(['"', '\'', '?', '#']).next().unwrap_or(""))
        {
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html names /assets/{name}, which is not in ASSETS"
            );
        }
    }

    #[test]
    fn etags_differ_per_file() {
        let mut tags: Vec<&str> = ASSETS.iter().map(etag).collect();
        tags.push(etag(&INDEX));
        let n = tags.len();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), n);
    }
}
