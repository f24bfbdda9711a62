//! AWS Signature Version 4: how every request to an AWS service (here Bedrock) is signed.
//!
//! From AWS's documentation ("Create a signed AWS API request", docs.aws.amazon.com/IAM/latest/UserGuide/
//! create-signed-request.html) and checked against the published test suite (`tests/fixtures/sigv4/`):
//!
//! 1. the canonical request: the method, the URI path (every byte outside the unreserved set percent-encoded, so
//!    a path sent with `%3A` is signed as `%253A`, which is what every service but S3 expects), the query
//!    parameters sorted and encoded the same way, the signed headers (lower-cased names, values trimmed with
//!    inner runs of spaces collapsed, repeated names joined by commas), their names, and the hex SHA-256 of the body;
//! 2. the string to sign: `AWS4-HMAC-SHA256`, the time, the scope `date/region/service/aws4_request` and the hex
//!    SHA-256 of the canonical request;
//! 3. the signing key: HMAC-SHA256 of the date under `"AWS4" + secret`, then of the region, the service and
//!    `aws4_request`, each under the previous result;
//! 4. the `Authorization` header: `AWS4-HMAC-SHA256 Credential=<key id>/<scope>, SignedHeaders=<names>,
//!    Signature=<hex HMAC of the string to sign>`, beside `x-amz-date`, `x-amz-security-token` for session
//!    credentials and, where the service asks for it, `x-amz-content-sha256`.

use sha2::{Digest, Sha256};

use super::credentials::Credentials;

/// The algorithm's name, first in the string to sign and in the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// SHA-256 works on 64-byte blocks; an HMAC key is padded (or first hashed) to that length.
const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104) of `data` under `key`. Written here rather than taken from the `hmac` crate: the
/// version in the tree is built on `sha2` 0.11, the gateway on 0.10, and HMAC is two hashes.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The moment a request is signed, in the two forms SigV4 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningTime {
    /// `YYYYMMDD`, in the scope.
    pub date: String,
    /// `YYYYMMDDTHHMMSSZ`, in `x-amz-date` and the string to sign.
    pub stamp: String,
}

impl SigningTime {
    /// The UTC time of `unix_secs`.
    pub fn at(unix_secs: i64) -> SigningTime {
        let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
        let stamp = format!("{date}T{:02}{:02}{:02}Z", t.hour(), t.minute(), t.second());
        SigningTime { date, stamp }
    }

    pub fn now() -> SigningTime {
        SigningTime::at(spendgate_core::time::now_ms().div_euclid(1000))
    }
}

/// Where a signature is valid: a region and a service (`bedrock` for Bedrock's runtime).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

/// A request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as it goes on the wire, with its query, if any (`/model/x%3A0/converse?a=b`).
    pub path: &'a str,
    /// The headers to sign, `host` among them; the signature's own headers are added by [`sign`].
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// How a service wants its requests signed.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Send and sign `x-amz-content-sha256` (S3 needs it; Bedrock does not).
    pub content_sha256_header: bool,
    /// Remove `.` and `..` segments and empty segments from the path before it is signed (every service but S3).
    pub normalize_path: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            content_sha256_header: false,
            normalize_path: true,
        }
    }
}

/// A request's signature and the headers that carry it.
#[derive(Debug, Clone)]
pub struct Signed {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
    /// To add to the request as they are: `x-amz-date`, `x-amz-content-sha256` when asked for,
    /// `x-amz-security-token` for session credentials, and `authorization`. The token and the authorization are
    /// secrets.
    pub headers: Vec<(&'static str, String)>,
}

/// Signs `request` with `credentials` for `scope` at `time`.
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    scope: Scope<'_>,
    time: &SigningTime,
    options: Options,
) -> Signed {
    let payload_hash = sha256_hex(request.body);
    let mut added: Vec<(&'static str, String)> = vec![("x-amz-date", time.stamp.clone())];
    if options.content_sha256_header {
        added.push(("x-amz-content-sha256", payload_hash.clone()));
    }
    if let Some(token) = credentials.session_token() {
        added.push(("x-amz-security-token", token.to_string()));
    }
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), trim_all(v)))
        .chain(added.iter().map(|(k, v)| ((*k).to_string(), v.clone())))
        .collect();
    // A stable sort keeps the values of a repeated name in the order they were given, as they are joined.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut signed_headers = String::new();
    let mut i = 0;
    while i < headers.len() {
        let name = &headers[i].0;
        let mut value = headers[i].1.clone();
        let mut j = i + 1;
        while j < headers.len() && headers[j].0 == *name {
            value.push(',');
            value.push_str(&headers[j].1);
            j += 1;
        }
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&value);
        canonical_headers.push('\n');
        if !signed_headers.is_empty() {
            signed_headers.push(';');
        }
        signed_headers.push_str(name);
        i = j;
    }
    let (path, query) = request.path.split_once('?').unwrap_or((request.path, ""));
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        request.method,
        canonical_uri(path, options.normalize_path),
        canonical_query(query),
    );
    let credential_scope = format!(
        "{}/{}/{}/aws4_request",
        time.date, scope.region, scope.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{}",
        time.stamp,
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(credentials.secret_access_key(), &time.date, scope);
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    added.push((
        "authorization",
        format!(
            "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id()
        ),
    ));
    Signed {
        canonical_request,
        string_to_sign,
        signature,
        headers: added,
    }
}

/// The key that signs requests of one day, region and service.
fn signing_key(secret: &str, date: &str, scope: Scope<'_>) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// A header value as SigV4 signs it: leading and trailing whitespace removed, inner runs of spaces as one.
fn trim_all(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_ascii_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Percent-encodes every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`), and `/` when `keep_slash`.
pub fn uri_encode(text: &[u8], keep_slash: bool) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 15)]));
        }
    }
    out
}

/// The canonical URI: the path normalized when asked (no `.`, `..` or empty segments; a trailing `/` kept), then
/// encoded again whole.
fn canonical_uri(path: &str, normalize: bool) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    if !normalize {
        return uri_encode(path.as_bytes(), true);
    }
    let mut segments: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), true)
}

/// The canonical query: each name and value decoded, encoded the SigV4 way, sorted by name and then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `%XX` escapes replaced by their bytes; anything else (a stray `%` included) kept as it is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
