//! The provider kinds spendgate knows (`PRESETS`): each one's API, base URL, key header and key variable, so
//! that a configuration names a kind and a key and nothing else. Sources are named on each entry.

use super::Api;

/// A kind of provider spendgate knows: how to reach it when the configuration does not say.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The `kind` that selects it.
    pub kind: &'static str,
    pub api: Api,
    /// `None`: the configuration must give `base_url` (a resource of the user's own, a self-hosted server).
    pub base_url: Option<&'static str>,
    /// The variable the key is read from when `api_key_env` is not set.
    pub key_env: Option<&'static str>,
    /// Whether a request can go without a key: self-hosted servers often need none, so a missing variable is not
    /// an error for them.
    pub key_optional: bool,
    /// The header the key is sent in raw, when not `Authorization: Bearer`.
    pub key_header: Option<&'static str>,
    /// The catalog provider its models are priced under; `None`: the provider's `name`.
    pub catalog: Option<&'static str>,
}

const fn openai_compatible(
    kind: &'static str,
    base_url: &'static str,
    key_env: &'static str,
) -> Preset {
    Preset {
        kind,
        api: Api::OpenAi,
        base_url: Some(base_url),
        key_env: Some(key_env),
        key_optional: false,
        key_header: None,
        catalog: Some(kind),
    }
}

/// Every kind of provider. The base URLs are the providers' documented OpenAI-compatible roots (spendgate appends
/// `/chat/completions`, `/embeddings` or `/responses` to them), Anthropic's and Google's own.
pub const PRESETS: &[Preset] = &[
    // Any OpenAI-compatible API; OpenAI itself is `base_url = "https://api.openai.com/v1"`.
    Preset {
        kind: "openai",
        api: Api::OpenAi,
        base_url: None,
        key_env: None,
        key_optional: true,
        key_header: None,
        catalog: None,
    },
    // https://platform.claude.com/docs/en/api/overview: x-api-key and anthropic-version on api.anthropic.com/v1.
    Preset {
        kind: "anthropic",
        api: Api::Anthropic,
        base_url: Some("https://api.anthropic.com/v1"),
        key_env: None,
        key_optional: true,
        key_header: None,
        catalog: None,
    },
    // https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html: POST
    // https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse, signed with AWS Signature Version 4
    // (credentials from AWS's default chain: `providers/aws/chain.rs`), or carrying a Bedrock API key from
    // `api_key_env` or `AWS_BEARER_TOKEN_BEDROCK` (no default key variable: a signature is the usual way); the base
    // URL is the region's. Priced from the catalog's "bedrock" entries.
    Preset {
        kind: "bedrock",
        api: Api::Bedrock,
        base_url: None,
        key_env: None,
        key_optional: true,
        key_header: None,
        catalog: Some("bedrock"),
    },
    Preset {
        kind: "mock",
        api: Api::Mock,
        base_url: None,
        key_env: None,
        key_optional: true,
        key_header: None,
        catalog: None,
    },
    // https://ai.google.dev/gemini-api/docs/openai and
    // https://developers.googleblog.com/gemini-is-now-accessible-from-the-openai-library: the OpenAI library's
    // base URL is .../v1beta/openai/, with the Gemini API key as a Bearer token.
    openai_compatible(
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
    ),
    // Google's own Gemini API (ai.google.dev/api/generate-content): POST {base}/models/{model}:generateContent
    // (and :streamGenerateContent?alt=sse), the key in x-goog-api-key (ai.google.dev/gemini-api/docs/api-key).
    // Its models are the same as the OpenAI-compatible "gemini" kind's, at the same prices; this one also serves
    // Google's SDKs on the gateway's /v1beta route, and OpenAI or Anthropic clients through translation.
    Preset {
        kind: "gemini-native",
        api: Api::Gemini,
        base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
        key_env: Some("GEMINI_API_KEY"),
        key_optional: false,
        key_header: None,
        catalog: Some("gemini"),
    },
    // https://docs.mistral.ai/api/: POST https://api.mistral.ai/v1/chat/completions, Authorization: Bearer.
    openai_compatible("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    // https://api-docs.deepseek.com/: base_url https://api.deepseek.com, or .../v1 for OpenAI compatibility
    // ("the v1 has nothing to do with the model's version").
    openai_compatible(
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
    ),
    // https://docs.x.ai/api/integrations: the OpenAI SDK with baseURL https://api.x.ai/v1.
    openai_compatible("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    // https://console.groq.com/docs/openai: base_url https://api.groq.com/openai/v1.
    openai_compatible("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    // https://docs.together.ai/docs/inference/openai-compatibility: base_url https://api.together.ai/v1 (the older
    // api.together.xyz host serves the same API).
    openai_compatible("together", "https://api.together.ai/v1", "TOGETHER_API_KEY"),
    // https://docs.fireworks.ai/tools-sdks/openai-compatibility: https://api.fireworks.ai/inference/v1.
    openai_compatible(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
    ),
    // https://openrouter.ai/docs/quickstart: https://openrouter.ai/api/v1, Authorization: Bearer; model ids are
    // `vendor/model` (`openai/gpt-4o-mini`).
    openai_compatible(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    ),
    // https://learn.microsoft.com/azure/ai-services/openai/reference: each resource has its own host
    // (https://RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT), the key goes raw in `api-key`, and
    // `api-version` is a query parameter. Deployments serve OpenAI's models at OpenAI's list prices.
    Preset {
        kind: "azure",
        api: Api::OpenAi,
        base_url: None,
        key_env: Some("AZURE_OPENAI_API_KEY"),
        key_optional: false,
        key_header: Some("api-key"),
        catalog: Some("openai"),
    },
    // https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html: `vllm serve` answers on
    // http://HOST:8000/v1 and checks a key only when started with --api-key.
    Preset {
        kind: "vllm",
        api: Api::OpenAi,
        base_url: None,
        key_env: Some("VLLM_API_KEY"),
        key_optional: true,
        key_header: None,
        catalog: None,
    },
    // https://docs.ollama.com/api/openai-compatibility: http://localhost:11434/v1, no key for a local server
    // (https://ollama.com/v1 with OLLAMA_API_KEY for its cloud).
    Preset {
        kind: "ollama",
        api: Api::OpenAi,
        base_url: None,
        key_env: Some("OLLAMA_API_KEY"),
        key_optional: true,
        key_header: None,
        catalog: None,
    },
];
