//! Small helpers for writing HTML by hand: escaping, number and time formatting, URLs, and the page layout.
//!
//! There is no template engine: every page is a `String` built with `push_str`/`write!`, and every piece of text
//! that came from outside the binary (team, user, model and workflow names, error messages) goes through
//! [`esc`] first. Keeping the escaping in one function makes it easy to check that nothing bypasses it.

use std::fmt::Write as _;

use spendgate_core::money::group_thousands;
use spendgate_core::time::DAY_MS;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string component (RFC 3986 unreserved characters pass through).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Builds a query string from pairs, skipping empty values, so shared URLs stay short.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// "1,234,567".
pub fn int(n: u64) -> String {
    group_thousands(u128::from(n))
}

/// A compact count for cards and axes: "950", "12.3k", "4.5M", "1.2B". Integer maths, rounded to one decimal.
pub fn compact(n: u64) -> String {
    let (unit, suffix) = if n >= 1_000_000_000 {
        (1_000_000_000u64, "B")
    } else if n >= 1_000_000 {
        (1_000_000, "M")
    } else if n >= 10_000 {
        (1_000, "k")
    } else {
        return int(n);
    };
    let tenths = (u128::from(n) * 10 + u128::from(unit) / 2) / u128::from(unit);
    if tenths % 10 == 0 || tenths >= 1000 {
        format!("{}{suffix}", tenths / 10)
    } else {
        format!("{}.{}{suffix}", tenths / 10, tenths % 10)
    }
}

/// Civil date and time (UTC) of a millisecond timestamp.
pub fn civil(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// "14:05:09".
pub fn hms(ms: i64) -> String {
    let t = civil(ms);
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// "14:05".
pub fn hm(ms: i64) -> String {
    let t = civil(ms);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// "2026-11-28".
pub fn date(ms: i64) -> String {
    let t = civil(ms);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// "Nov 28".
pub fn short_date(ms: i64) -> String {
    let t = civil(ms);
    let m = t.month().to_string();
    format!("{} {}", m.get(..3).unwrap_or(&m), t.day())
}

/// "2026-11-28 14:05:09 UTC".
pub fn date_time(ms: i64) -> String {
    format!("{} {} UTC", date(ms), hms(ms))
}

/// "2026-11-28T14:05" for `<input type="datetime-local">`.
pub fn datetime_local(ms: i64) -> String {
    format!("{}T{}", date(ms), hm(ms))
}

/// "3d 4h", "2h 5m", "45s".
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// "12s ago", "5m ago", or a date for older times.
pub fn ago(ms: i64, now: i64) -> String {
    let d = now - ms;
    if d < 0 {
        return "just now".into();
    }
    if d > DAY_MS {
        return date_time(ms);
    }
    format!("{} ago", duration(d))
}

/// A relative change in basis points, `None` when there is nothing to compare with.
pub fn change_bp(current: i128, previous: i128) -> Option<i128> {
    if previous <= 0 {
        return None;
    }
    Some((current - previous).saturating_mul(10_000) / previous)
}

/// A trend badge: "▲ 12.3%" (up), "▼ 4.0%" (down), "new" or "—". Rising spend is drawn as a warning colour.
pub fn trend(current: i128, previous: i128, what: &str) -> String {
    match change_bp(current, previous) {
        None if current > 0 => format!(
            "<span class=\"trend up\" title=\"nothing in {}\">new</span>",
            esc(what)
        ),
        None => format!(
            "<span class=\"trend flat\" title=\"nothing in {}\">—</span>",
            esc(what)
        ),
        Some(bp) => {
            let (class, arrow) = if bp > 0 {
                ("up", "▲")
            } else if bp < 0 {
                ("down", "▼")
            } else {
                ("flat", "=")
            };
            let abs = bp.unsigned_abs();
            // Basis points to a percentage with one decimal, rounded half up.
            let tenths = (abs + 5) / 10;
            format!(
                "<span class=\"trend {class}\" title=\"vs {}\">{arrow} {}.{}%</span>",
                esc(what),
                group_thousands(tenths / 10),
                tenths % 10
            )
        }
    }
}

/// What the layout needs to know about the request.
#[derive(Debug, Clone)]
pub struct Chrome<'a> {
    pub title: &'a str,
    pub active: &'a str,
    pub gateway: &'a str,
    pub version: &'a str,
    /// The CSRF token of the session, for the logout form; `None` when pages are open (demo).
    pub csrf: Option<&'a str>,
    /// Whether the page listens for live updates.
    pub live: bool,
}

/// The whole document around `main`. `before_main` holds what must not be replaced by live updates (forms the
/// reader may be using).
pub fn layout(c: &Chrome<'_>, before_main: &str, main: &str) -> String {
    let mut s = String::with_capacity(main.len() + before_main.len() + 2048);
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · spendgate</title>\
         <link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/static/app.css?v={v}\">\
         <script src=\"/static/app.js?v={v}\" defer></script></head>\
         <body{live}><header class=\"top\"><a class=\"brand\" href=\"/overview\">spend<b>gate</b></a><nav>",
        title = esc(c.title),
        v = esc(c.version),
        live = if c.live { " data-live=\"1\"" } else { "" },
    );
    for (href, label) in [
        ("/overview", "Overview"),
        ("/usage", "Usage"),
        ("/history", "Activity"),
        ("/budgets", "Budgets"),
        ("/wallets", "Wallets"),
        ("/notifications", "Notifications"),
    ] {
        let cls = if c.active == href {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(s, "<a href=\"{href}\"{cls}>{label}</a>");
    }
    s.push_str("</nav><div class=\"top-right\">");
    if c.live {
        s.push_str("<span class=\"live-dot\" id=\"live-status\" title=\"Updates arrive on their own\">live</span>");
    }
    let _ = write!(
        s,
        "<span class=\"muted\">{} · v{}</span>",
        esc(c.gateway),
        esc(c.version)
    );
    if let Some(token) = c.csrf {
        let _ = write!(
            s,
            "<form method=\"post\" action=\"/logout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"link\">Log out</button></form>",
            esc(token)
        );
    }
    s.push_str("</div></header>");
    s.push_str(before_main);
    s.push_str("<main id=\"live\">");
    s.push_str(main);
    s.push_str("</main></body></html>");
    s
}

/// The "Updated HH:MM:SS UTC" line every live region carries, so a reader can see the data is fresh.
pub fn updated(now: i64) -> String {
    format!(
        "<p class=\"updated\" id=\"updated\" data-ms=\"{now}\">Updated <time datetime=\"{}\">{} UTC</time></p>",
        esc(&spendgate_core::time::to_rfc3339(now)),
        hms(now)
    )
}

/// A message (an alert's, a signal's) as HTML, escaped, with each path on this site it mentions ("/usage?...",
/// "/api/v1/spend-logs?...", "/explain?...") turned into a link named for what it shows, rather than printed
/// as a percent-encoded URL. Only paths on this site are linked: "//host" would leave it.
pub fn message_html(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    let mut first = true;
    for word in message.split(' ') {
        if !first {
            out.push(' ');
        }
        first = false;
        // A sentence's full stop or comma after the path is not part of it.
        let path = word.trim_end_matches(['.', ',', ';', ')']);
        let tail = &word[path.len()..];
        if path.starts_with('/') && !path.starts_with("//") && path.len() > 1 {
            let route = path.split('?').next().unwrap_or(path);
            let label = match route {
                "/usage" => "the usage view",
                "/explain" => "the explanation",
                "/api/v1/spend-logs" => "the spend logs (JSON)",
                "/history" => "the activity",
                _ => route,
            };
            let _ = write!(
                out,
                "<a href=\"{}\" title=\"{}\">{}</a>{}",
                esc(path),
                esc(path),
                esc(label),
                esc(tail)
            );
        } else {
            out.push_str(&esc(word));
        }
    }
    out
}

/// "As of 14:05:09 UTC" on pages that do not update live, with a link that reloads them.
pub fn as_of(now: i64) -> String {
    format!(
        "<p class=\"updated as-of\" id=\"as-of\" data-ms=\"{now}\">As of <time datetime=\"{}\" title=\"{}\">{} UTC</time> \
         · <a href=\"\" class=\"reload\">refresh</a></p>",
        esc(&spendgate_core::time::to_rfc3339(now)),
        esc(&date_time(now)),
        hms(now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_messages_become_links() {
        let m = message_html("Evidence: /usage?from=2026-12-07T04%3A58%3A00Z&team=a and /api/v1/spend-logs?key=1. <b> //evil.example/x");
        assert_eq!(
            m,
            "Evidence: <a href=\"/usage?from=2026-12-07T04%3A58%3A00Z&amp;team=a\" title=\"/usage?from=2026-12-07T04%3A58%3A00Z&amp;team=a\">the usage view</a> \
             and <a href=\"/api/v1/spend-logs?key=1\" title=\"/api/v1/spend-logs?key=1\">the spend logs (JSON)</a>. &lt;b&gt; //evil.example/x"
        );
    }

    #[test]
    fn escaping_neutralises_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn urls_encode_everything_but_unreserved() {
        assert_eq!(url_encode("a b&c=<d>/é"), "a%20b%26c%3D%3Cd%3E%2F%C3%A9");
        assert_eq!(
            query_string(&[("team", "@none".into()), ("user", String::new())]),
            "?team=%40none"
        );
    }

    #[test]
    fn compact_counts() {
        assert_eq!(compact(950), "950");
        assert_eq!(compact(9_999), "9,999");
        assert_eq!(compact(12_345), "12.3k");
        assert_eq!(compact(4_500_000), "4.5M");
        assert_eq!(compact(2_000_000_000), "2B");
    }

    #[test]
    fn trends_are_integer_percentages() {
        assert!(trend(1123, 1000, "x").contains("▲ 12.3%"));
        assert!(trend(960, 1000, "x").contains("▼ 4.0%"));
        assert!(trend(5, 0, "x").contains("new"));
        assert_eq!(change_bp(0, 0), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(125_000), "2m 5s");
        assert_eq!(duration(3 * 3_600_000 + 60_000), "3h 1m");
        assert_eq!(duration(DAY_MS * 2 + 3_600_000), "2d 1h");
    }
}
