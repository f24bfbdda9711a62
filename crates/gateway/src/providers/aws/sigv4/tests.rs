use super::*;

/// One case of the AWS signing test suite (`tests/fixtures/sigv4/<name>/`).
struct Case {
    name: String,
    context: serde_json::Value,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigv4")
}

/// Reads `request.txt` as the suite writes it: the request line, headers (a line starting with whitespace
/// continues the previous value), a blank line and the body.
fn case(name: &str) -> Case {
    let dir = fixtures().join(name);
    let context =
        serde_json::from_slice(&std::fs::read(dir.join("context.json")).unwrap()).unwrap();
    let raw = std::fs::read_to_string(dir.join("request.txt")).unwrap();
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let (method, rest) = request_line.split_once(' ').unwrap();
    let path = rest.strip_suffix(" HTTP/1.1").unwrap();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.to_string(), v.to_string()));
        }
    }
    Case {
        name: name.to_string(),
        context,
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn expected(name: &str, file: &str) -> String {
    std::fs::read_to_string(fixtures().join(name).join(file)).unwrap()
}

fn sign_case(c: &Case) -> Signed {
    let creds = &c.context["credentials"];
    // "omit_session_token": the token is added to the request after signing, so it is not signed.
    let token = creds["token"]
        .as_str()
        .filter(|_| c.context["omit_session_token"] != true)
        .map(str::to_string);
    let credentials = Credentials::new(
        creds["access_key_id"].as_str().unwrap(),
        creds["secret_access_key"].as_str().unwrap(),
        token,
    );
    let at = time::OffsetDateTime::parse(
        c.context["timestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sign(
        &Request {
            method: &c.method,
            path: &c.path,
            headers: &headers,
            body: &c.body,
        },
        &credentials,
        Scope {
            region: c.context["region"].as_str().unwrap(),
            service: c.context["service"].as_str().unwrap(),
        },
        &SigningTime::at(at.unix_timestamp()),
        Options {
            content_sha256_header: c.context["sign_body"] == true,
            normalize_path: c.context["normalize"] != false,
        },
    )
}

#[test]
fn signs_every_case_of_the_aws_test_suite() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 30,
        "the suite's cases are all there: {}",
        names.len()
    );
    let mut failed = Vec::new();
    for name in &names {
        let c = case(name);
        let s = sign_case(&c);
        let ok = s.canonical_request == expected(name, "header-canonical-request.txt")
            && s.string_to_sign == expected(name, "header-string-to-sign.txt")
            && s.signature == expected(name, "header-signature.txt").trim();
        if !ok {
            failed.push(format!(
                "{}:\n--- canonical request\n{}\n--- expected\n{}",
                c.name,
                s.canonical_request,
                expected(name, "header-canonical-request.txt")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn the_authorization_header_names_the_key_scope_headers_and_signature() {
    let c = case("get-vanilla-with-session-token");
    let s = sign_case(&c);
    let header = |n: &str| {
        s.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-amz-date").as_deref(), Some("20150830T123600Z"));
    assert_eq!(
        header("x-amz-security-token").as_deref(),
        c.context["credentials"]["token"].as_str()
    );
    assert_eq!(
        header("authorization").unwrap(),
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, Signature={}",
            expected("get-vanilla-with-session-token", "header-signature.txt").trim()
        )
    );
    assert_eq!(header("x-amz-content-sha256"), None);
}

/// A Bedrock model id's colon goes on the wire as `%3A` and is signed as `%253A`: every service but S3 signs the
/// path encoded once more (botocore's `SigV4Auth._normalize_url_path`, aws-sdk-rust's `double_uri_encode`).
#[test]
fn a_path_already_encoded_is_signed_encoded_again() {
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    let s = sign(
        &Request {
            method: "POST",
            path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            headers: &[("host", "bedrock-runtime.us-east-1.amazonaws.com")],
            body: b"{}",
        },
        &credentials,
        Scope {
            region: "us-east-1",
            service: "bedrock",
        },
        &SigningTime::at(1_440_938_160),
        Options::default(),
    );
    assert!(
        s.canonical_request
            .starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"),
        "{}",
        s.canonical_request
    );
}

/// RFC 4231's test cases 1 (a short key) and 6 (a key longer than the block, hashed first).
#[test]
fn hmac_sha256_matches_rfc_4231() {
    assert_eq!(
        hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn the_signing_time_is_utc() {
    assert_eq!(
        SigningTime::at(1_440_938_160),
        SigningTime {
            date: "20150830".into(),
            stamp: "20150830T123600Z".into()
        }
    );
}
