//! The configuration file's parsing, defaults and checks.

use super::*;

#[test]
fn example_config_parses_and_builds_a_catalog() {
    let c = Config::parse(include_str!("../../../../spendgate.example.toml")).unwrap();
    assert!(!c.providers.is_empty());
    c.catalog().unwrap();
}

/// The commented provider and route examples of the example file parse, once uncommented.
#[test]
fn the_example_providers_and_routes_parse() {
    // The commented examples run from the first commented `[[providers]]` to the next real section other than
    // a provider.
    let text: String = include_str!("../../../../spendgate.example.toml")
        .lines()
        .skip_while(|l| !l.starts_with("# [[providers]]"))
        .take_while(|l| !l.starts_with('[') || l.starts_with("[[providers]]"))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.starts_with('[')
                || l.trim_start().starts_with('#')
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::parse(&text).unwrap();
    let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "anthropic",
            "bedrock",
            "gemini",
            "mistral",
            "deepseek",
            "xai",
            "groq",
            "together",
            "fireworks",
            "azure",
            "openrouter",
            "local",
            "ollama"
        ]
    );
    for p in &c.providers {
        p.preset().unwrap();
    }
    let azure = &c.providers[9];
    assert_eq!(azure.kind, "azure");
    assert_eq!(azure.query["api-version"], "preview");
    assert_eq!(azure.model_map["gpt-4o-mini"], "my-gpt-4o-mini-deployment");
    let price = azure.price_of("gpt-4o-mini").unwrap();
    assert_eq!(price.provider, "azure");
    assert_eq!(price.input_per_mtok, PricePerMtok::parse("0.165").unwrap());
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].targets.len(), 2);
    assert_eq!(c.routes[0].retries, 1);
    assert_eq!(c.routes[1].targets[1].provider, "bedrock");
    let bedrock = &c.providers[1];
    assert_eq!(
        (bedrock.region.as_deref(), bedrock.aws_profile.as_deref()),
        (Some("us-east-1"), Some("work"))
    );
}

fn provider(kind: &str) -> ProviderConfig {
    ProviderConfig {
        name: format!("my-{kind}"),
        kind: kind.into(),
        ..ProviderConfig::default()
    }
}

#[test]
fn presets_fill_base_url_key_and_header() {
    let env = |var: &str| Some(format!("key-from-{var}"));
    for (kind, base, var) in [
        (
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "GEMINI_API_KEY",
        ),
        ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        (
            "deepseek",
            "https://api.deepseek.com/v1",
            "DEEPSEEK_API_KEY",
        ),
        ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        ("together", "https://api.together.ai/v1", "TOGETHER_API_KEY"),
        (
            "fireworks",
            "https://api.fireworks.ai/inference/v1",
            "FIREWORKS_API_KEY",
        ),
        (
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
        ),
    ] {
        let p = provider(kind);
        let r = p.resolve(env).unwrap();
        assert_eq!(r.api, Api::OpenAi, "{kind}");
        assert_eq!(r.base_url.as_deref(), Some(base), "{kind}");
        assert_eq!(r.api_key, Some(format!("key-from-{var}")), "{kind}");
        assert_eq!(r.api_key_header, None, "{kind} sends Authorization: Bearer");
        assert_eq!(p.catalog_provider(), kind);
        // A preset's key is required: a missing variable is a start-up error naming it.
        let e = p.resolve(|_| None).unwrap_err().to_string();
        assert!(e.contains(var), "{e}");
    }
    // The file's own settings win over the preset's.
    let own = ProviderConfig {
        base_url: Some("http://127.0.0.1:9/v1".into()),
        api_key_env: Some("MY_KEY".into()),
        ..provider("groq")
    };
    let r = own.resolve(env).unwrap();
    assert_eq!(r.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
    assert_eq!(r.api_key.as_deref(), Some("key-from-MY_KEY"));
}

#[test]
fn bedrock_takes_its_region_from_the_file_or_aws_variables_and_its_host_from_the_region() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let named = ProviderConfig {
        region: Some("eu-central-1".into()),
        ..provider("bedrock")
    };
    let r = named.resolve(env(&[("AWS_REGION", "us-west-2")])).unwrap();
    assert_eq!(r.api, Api::Bedrock);
    assert_eq!(r.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        r.base_url.as_deref(),
        Some("https://bedrock-runtime.eu-central-1.amazonaws.com")
    );
    assert_eq!(r.api_key, None);
    assert_eq!(named.catalog_provider(), "bedrock");
    let r = provider("bedrock")
        .resolve(env(&[("AWS_DEFAULT_REGION", "ap-northeast-1")]))
        .unwrap();
    assert_eq!(r.region.as_deref(), Some("ap-northeast-1"));
    let e = provider("bedrock")
        .resolve(env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("needs a region") && e.contains("AWS_REGION"),
        "{e}"
    );
    let e = ProviderConfig {
        region: Some("us-east-1".into()),
        ..provider("openai")
    }
    .resolve(env(&[]))
    .unwrap_err()
    .to_string();
    assert!(e.contains("for kind \"bedrock\" only"), "{e}");
}

#[test]
fn azure_and_self_hosted_presets_need_their_base_url() {
    for kind in ["azure", "vllm", "ollama", "openai"] {
        let e = provider(kind).resolve(|_| None).unwrap_err().to_string();
        assert!(e.contains("needs base_url"), "{kind}: {e}");
    }
    // Self-hosted servers often take no key: an unset default variable is no error for them.
    for kind in ["vllm", "ollama"] {
        let p = ProviderConfig {
            base_url: Some("http://127.0.0.1:8000/v1".into()),
            ..provider(kind)
        };
        assert_eq!(p.resolve(|_| None).unwrap().api_key, None);
        assert_eq!(p.catalog_provider(), p.name, "priced by their own prices");
    }
    let azure = ProviderConfig {
        base_url: Some("https://res.openai.azure.com/openai/deployments/{model}".into()),
        ..provider("azure")
    };
    let e = azure.resolve(|_| Some("k".into())).unwrap_err().to_string();
    assert!(e.contains("api-version"), "{e}");
    let mut azure = azure;
    azure
        .query
        .insert("api-version".into(), "2024-10-21".into());
    let r = azure
        .resolve(|v| (v == "AZURE_OPENAI_API_KEY").then(|| "k".to_string()))
        .unwrap();
    assert_eq!(r.api_key_header.as_deref(), Some("api-key"));
    assert_eq!(azure.catalog_provider(), "openai");
    let e = provider("watsonx")
        .resolve(|_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gemini") && e.contains("ollama"), "{e}");
}

#[test]
fn included_catalog_files_are_overrides_the_file_can_still_override() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("imported.toml"),
        "[[model]]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\ninput_per_mtok = \"9\"\noutput_per_mtok = \"9\"\n\
         [[model]]\nprovider = \"openai\"\nmodel = \"gpt-4o\"\ninput_per_mtok = \"8\"\noutput_per_mtok = \"8\"\n",
    )
    .unwrap();
    let path = dir.path().join("spendgate.toml");
    std::fs::write(
        &path,
        "[pricing]\ninclude = [\"imported.toml\"]\n[[pricing.model]]\nprovider = \"openai\"\nmodel = \"gpt-4o\"\n\
         input_per_mtok = \"7\"\noutput_per_mtok = \"7\"\n",
    )
    .unwrap();
    let catalog = Config::load(Some(&path)).unwrap().catalog().unwrap();
    let price = |m: &str| catalog.get(m).unwrap().input_per_mtok;
    assert_eq!(price("gpt-4o-mini"), PricePerMtok::parse("9").unwrap());
    assert_eq!(price("gpt-4o"), PricePerMtok::parse("7").unwrap());
    std::fs::write(&path, "[pricing]\ninclude = [\"missing.toml\"]\n").unwrap();
    let e = format!("{:#}", Config::load(Some(&path)).unwrap_err());
    assert!(
        e.contains("missing.toml") && e.contains("[pricing] include"),
        "{e}"
    );
}

#[test]
fn the_store_url_selects_the_backend_and_never_shows_a_password() {
    let mut c = Config::default();
    assert_eq!(
        c.store_location().unwrap(),
        StoreLocation::Sqlite(c.data_dir.clone())
    );
    c.store.url = Some("sqlite:///var/lib/sg".into());
    assert_eq!(
        c.store_location().unwrap(),
        StoreLocation::Sqlite("/var/lib/sg".into())
    );
    c.store.url = Some("./data".into());
    assert_eq!(
        c.store_location().unwrap(),
        StoreLocation::Sqlite("./data".into())
    );
    c.store.url = Some("postgres://app:pw@db:5432/spend".into());
    assert!(matches!(
        c.store_location().unwrap(),
        StoreLocation::Postgres(_)
    ));
    c.store.url = Some("mysql://app:hunter2@db/spend".into());
    let e = c.store_location().unwrap_err().to_string();
    assert!(e.contains("postgres://") && !e.contains("hunter2"), "{e}");
    let parsed =
        Config::parse("[store]\nurl = \"postgres://x@h/db\"\nretention_days = 90").unwrap();
    assert_eq!(parsed.store.retention_days, Some(90));
}

#[tokio::test]
async fn mistakes_are_named() {
    let e = Config::parse("listen = 5").unwrap_err().to_string();
    assert!(e.contains("listen"), "{e}");
    let e = format!("{:#}", Config::parse("nope = 1").unwrap_err());
    assert!(e.contains("unknown field"), "{e}");
    let c = Config::parse("[pricing]\nunknown_models = \"fallback\"").unwrap();
    assert!(c
        .catalog()
        .unwrap_err()
        .to_string()
        .contains("fallback_input_per_mtok"));
    let c = Config::parse("[cache]\nenabled = true\nscope = \"everyone\"").unwrap_err();
    assert!(format!("{c:#}").contains("scope"), "{c:#}");
    let c = Config::parse("[cache]\nenabled = true\nmax_bytes = 10\nmax_entry_bytes = 20").unwrap();
    let e = c.response_cache().await.unwrap_err().to_string();
    assert!(e.contains("max_entry_bytes"), "{e}");
    assert!(Config::default().response_cache().await.unwrap().is_none());
}
