//! Lists that AgentOS answers as a bare JSON array (`GET /agents`, `GET /sessions/{id}/runs`): the body
//! is the array its clients parse, and the cursor of the next page travels in headers, as `Link`
//! (RFC 8288, `rel="next"`, the same query with `cursor` replaced) and `X-Next-Cursor`. Both are absent
//! on the last page. Lists AgentOS wraps keep their `{data, …}` bodies.

use axum::http::header::LINK;
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The header that carries the next page's cursor.
pub static NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

/// One page of `items` as a JSON array, with the next page (if any) in the headers.
pub fn array_page<T: Serialize>(items: Vec<T>, next_cursor: Option<String>, uri: &Uri) -> Response {
    let mut response = axum::Json(items).into_response();
    if let Some(cursor) = next_cursor {
        let link = next_link(uri, &cursor);
        if let (Ok(link), Ok(cursor)) =
            (HeaderValue::from_str(&link), HeaderValue::from_str(&cursor))
        {
            let headers = response.headers_mut();
            headers.insert(LINK, link);
            headers.insert(NEXT_CURSOR.clone(), cursor);
        }
    }
    response
}

/// `<path?query-with-this-cursor>; rel="next"`.
fn next_link(uri: &Uri, cursor: &str) -> String {
    let mut next = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if name != "cursor" {
            next.append_pair(&name, &value);
        }
    }
    next.append_pair("cursor", cursor);
    format!("<{}?{}>; rel=\"next\"", uri.path(), next.finish())
}
