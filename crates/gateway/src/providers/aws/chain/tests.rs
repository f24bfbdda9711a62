use super::*;
use std::collections::HashMap;
use std::time::Duration;

/// [`CredentialChain::resolve`] in `us-east-1` with the instance metadata source off, so that a test never
/// depends on the machine it runs on.
fn resolve(
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CredentialChain, CredentialsError> {
    let off = |k: &str| match k {
        "AWS_EC2_METADATA_DISABLED" => env(k).or_else(|| Some("true".to_string())),
        _ => env(k),
    };
    CredentialChain::resolve(profile, "us-east-1", &off)
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[tokio::test]
async fn the_environment_comes_first_with_its_session_token() {
    let c = resolve(
        None,
        &env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secretenv"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ]),
    )
    .unwrap();
    let now = c.current().await.unwrap();
    assert_eq!(
        (
            now.access_key_id(),
            now.secret_access_key(),
            now.session_token()
        ),
        ("AKIDENV", "secretenv", Some("tok"))
    );
    assert_eq!(c.source(), &Source::Environment);
    // Half a pair is a mistake worth naming, not a reason to look elsewhere.
    let e = resolve(None, &env(&[("AWS_ACCESS_KEY_ID", "AKIDENV")])).unwrap_err();
    assert!(matches!(e, CredentialsError::HalfSet { .. }), "{e}");
}

#[tokio::test]
async fn the_shared_file_gives_the_named_profile_and_is_read_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(
        &path,
        "# a comment\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n\
         [work]\naws_access_key_id=AKIDWORK\naws_secret_access_key= s2 \naws_session_token = t2\n",
    )
    .unwrap();
    let file = path.display().to_string();
    let default = resolve(None, &env(&[("AWS_SHARED_CREDENTIALS_FILE", &file)])).unwrap();
    assert_eq!(
        default.current().await.unwrap().access_key_id(),
        "AKIDDEFAULT"
    );
    assert_eq!(default.current().await.unwrap().session_token(), None);
    let by_env = resolve(
        None,
        &env(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ("AWS_PROFILE", "work"),
        ]),
    )
    .unwrap();
    let c = by_env.current().await.unwrap();
    assert_eq!(
        (c.access_key_id(), c.secret_access_key(), c.session_token()),
        ("AKIDWORK", "s2", Some("t2"))
    );
    // A profile the configuration names wins over keys in the environment.
    let named = resolve(
        Some("work"),
        &env(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secretenv"),
        ]),
    )
    .unwrap();
    assert_eq!(named.current().await.unwrap().access_key_id(), "AKIDWORK");

    // Renewed temporary credentials are picked up once the file's time changed and the recheck is due.
    std::fs::write(
        &path,
        "[work]\naws_access_key_id=AKIDNEW\naws_secret_access_key=s3\n",
    )
    .unwrap();
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    named.recheck_now();
    assert_eq!(named.current().await.unwrap().access_key_id(), "AKIDNEW");
    assert_eq!(named.current().await.unwrap().session_token(), None);
}

#[test]
fn mistakes_name_the_place_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, "[default]\naws_access_key_id = AKIDONLY\n").unwrap();
    let file = path.display().to_string();
    let e = resolve(None, &env(&[("AWS_SHARED_CREDENTIALS_FILE", &file)]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("aws_secret_access_key") && e.contains(&file),
        "{e}"
    );
    assert!(!e.contains("AKIDONLY"), "{e}");
    let e = resolve(
        Some("missing"),
        &env(&[("AWS_SHARED_CREDENTIALS_FILE", &file)]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("[missing]") && e.contains("AWS_ACCESS_KEY_ID"),
        "{e}"
    );
    let e = resolve(None, &env(&[("HOME", "/nonexistent-home")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent-home/.aws/credentials"), "{e}");
    let c = Credentials::new("AKIDSECRETLOOKING", "topsecret", Some("tok".into()));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("AKID") && !shown.contains("topsecret") && !shown.contains("tok\""),
        "{shown}"
    );
}

/// Each source is taken only when every source before it in the SDKs' order is absent: the environment's keys,
/// web identity, the shared file's `default` profile, container credentials, then instance metadata; with
/// instance metadata off as well, the error lists what to set.
#[test]
fn the_first_configured_source_in_the_sdks_order_is_taken() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(
        &path,
        "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s\n",
    )
    .unwrap();
    let file = path.display().to_string();
    let mut vars: Vec<(&str, &str)> = vec![
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "secretenv"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
        ("AWS_SHARED_CREDENTIALS_FILE", &file),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/x",
        ),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9"),
    ];
    let expected = [
        Source::Environment,
        Source::WebIdentity {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        },
        Source::SharedFile {
            path: path.clone(),
            profile: "default".into(),
        },
        Source::Container {
            url: "http://169.254.170.2/v2/credentials/x".into(),
        },
        Source::InstanceMetadata {
            endpoint: "http://127.0.0.1:9".into(),
        },
    ];
    // What to take away to reach the next source.
    let removals: [&[&str]; 4] = [
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        &["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"],
        &["AWS_SHARED_CREDENTIALS_FILE"],
        &["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
    ];
    for (i, want) in expected.iter().enumerate() {
        let mut now = vars.clone();
        if !now.iter().any(|(k, _)| *k == "AWS_SHARED_CREDENTIALS_FILE") {
            now.push(("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"));
        }
        let chain = CredentialChain::resolve(None, "us-east-1", &env(&now)).unwrap();
        assert_eq!(chain.source(), want, "step {i}");
        if let Some(gone) = removals.get(i) {
            vars.retain(|(k, _)| !gone.contains(k));
        }
    }
    vars.push(("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"));
    vars.push(("AWS_EC2_METADATA_DISABLED", "TRUE"));
    let e = CredentialChain::resolve(None, "us-east-1", &env(&vars))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("AWS_WEB_IDENTITY_TOKEN_FILE")
            && e.contains("AWS_CONTAINER_CREDENTIALS")
            && e.contains("AWS_EC2_METADATA_DISABLED"),
        "{e}"
    );
    // A profile the environment names must exist, rather than silently falling through to a role.
    let e = CredentialChain::resolve(
        None,
        "us-east-1",
        &env(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ("AWS_PROFILE", "missing"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[missing]"), "{e}");
    // A token file without a role is a mistake worth naming.
    let e = CredentialChain::resolve(
        None,
        "us-east-1",
        &env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("AWS_ROLE_ARN"), "{e}");
}
