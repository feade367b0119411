//! `[memory.embeddings]` and `build`: every wrong key is named, keys come from the credential
//! store or the environment, a local provider in a build without the model says which build.

use std::collections::BTreeMap;

use async_trait::async_trait;
use hilo_embed::{EmbeddingsConfig, Keys, SecretSource, build};
use serde_json::json;

use crate::server::FakeServer;

fn cfg(v: serde_json::Value) -> EmbeddingsConfig {
    serde_json::from_value(v).unwrap()
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
    let map: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

async fn config_error(c: serde_json::Value, env: &[(&str, &str)]) -> String {
    let env = env_of(env);
    let keys = Keys {
        env: &env,
        secrets: None,
    };
    match build(&cfg(c), &keys).await {
        Err(e) => {
            assert_eq!(e.code(), "EMBED_CONFIG", "{e}");
            e.to_string()
        }
        Ok(_) => panic!("no error"),
    }
}

struct Vault;

#[async_trait]
impl SecretSource for Vault {
    async fn secret(&self, name: &str) -> Result<Option<String>, String> {
        Ok((name == "embed_key").then(|| "sk-from-vault".to_string()))
    }
}

#[test]
fn the_section_reads_every_key() {
    let c = cfg(json!({
        "provider": "openai", "model": "m", "base_url": "http://x/v1", "api_key_env": "K",
        "api_key_secret": "s", "dimensions": 8, "batch_size": 4,
        "cost_per_million_tokens": 0.1, "timeout_ms": "45s", "max_retries": 1,
    }));
    assert_eq!(c.timeout_ms, Some(45_000));
    assert_eq!(c.dimensions, Some(8));
    let err = serde_json::from_value::<EmbeddingsConfig>(json!({"provider": "lokal"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected `local` or `openai`"), "{err}");
    let err = serde_json::from_value::<EmbeddingsConfig>(json!({"modle": "x"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `modle`"), "{err}");
}

#[tokio::test]
async fn no_provider_is_no_embedder() {
    let keys = Keys::env_only();
    assert!(
        build(&EmbeddingsConfig::default(), &keys)
            .await
            .unwrap()
            .is_none()
    );
    let e = config_error(json!({"model": "x"}), &[]).await;
    assert!(
        e.starts_with(
            "EMBED_CONFIG: [memory.embeddings] model: `model` is set but `provider` is not"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn openai_from_the_configuration_with_keys_from_the_vault_or_the_environment() {
    let server = FakeServer::start().await;
    let env = env_of(&[("EMBED_TEST_KEY", "sk-from-env")]);
    let c = cfg(json!({
        "provider": "openai", "model": "embed-small", "base_url": server.url,
        "dimensions": 4, "api_key_env": "EMBED_TEST_KEY", "api_key_secret": "embed_key",
        "cost_per_million_tokens": 1.0, "batch_size": 8,
    }));
    let keys = Keys {
        env: &env,
        secrets: Some(&Vault),
    };
    let e = build(&c, &keys).await.unwrap().unwrap();
    assert_eq!(
        (
            e.info().provider.as_str(),
            e.info().model.as_str(),
            e.info().dimensions
        ),
        ("openai", "embed-small", 4)
    );
    let out = e.embed(&["a b c".to_string()]).await.unwrap();
    assert_eq!((out.input_tokens, out.cost_nanos), (3, 3_000));
    let (body, auth) = &server.requests()[0];
    assert_eq!(
        auth.as_deref(),
        Some("Bearer sk-from-vault"),
        "the vault goes first"
    );
    assert_eq!(body["dimensions"], 4, "configured dimensions are sent");

    // Without the vault, the environment variable.
    let keys = Keys {
        env: &env,
        secrets: None,
    };
    let e = build(&c, &keys).await.unwrap().unwrap();
    e.embed(&["x".to_string()]).await.unwrap();
    assert_eq!(
        server.requests()[1].1.as_deref(),
        Some("Bearer sk-from-env")
    );
}

#[tokio::test]
async fn wrong_keys_are_named_with_what_to_do() {
    let e = config_error(json!({"provider": "openai"}), &[]).await;
    assert!(
        e.contains("api_key_env: no API key: $OPENAI_API_KEY is not set"),
        "{e}"
    );
    let e = config_error(
        json!({"provider": "openai", "base_url": "http://localhost:11434/v1"}),
        &[],
    )
    .await;
    assert!(
        e.contains("model: is required for http://localhost:11434/v1"),
        "{e}"
    );
    let e = config_error(
        json!({"provider": "openai", "base_url": "http://h/v1", "model": "nomic-embed-text"}),
        &[],
    )
    .await;
    assert!(
        e.contains("dimensions: the length of `nomic-embed-text`'s vectors"),
        "{e}"
    );
    let e = config_error(
        json!({"provider": "openai", "base_url": "localhost/v1"}),
        &[],
    )
    .await;
    assert!(
        e.contains("base_url: `localhost/v1` is not an http:// or https:// URL"),
        "{e}"
    );
    let e = config_error(json!({"provider": "openai", "api_key_secret": "k"}), &[]).await;
    assert!(
        e.contains("neither the secret `k` (tenant default; `hilo secrets set k`) nor $OPENAI_API_KEY is set"),
        "{e}"
    );
    let e = config_error(json!({"provider": "openai", "batch_size": 0}), &[]).await;
    assert!(e.contains("batch_size: must be at least 1"), "{e}");
    let e = config_error(
        json!({"provider": "openai", "model_dir": "/m"}),
        &[("OPENAI_API_KEY", "k")],
    )
    .await;
    assert!(
        e.contains("model_dir: `model_dir` is for provider = \"local\""),
        "{e}"
    );
    // api.openai.com's own models need no dimensions or price.
    let env = env_of(&[("OPENAI_API_KEY", "sk")]);
    let keys = Keys {
        env: &env,
        secrets: None,
    };
    let e = build(&cfg(json!({"provider": "openai"})), &keys)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.info().model, "text-embedding-3-small");
    assert_eq!(e.info().dimensions, 1536);
}

#[tokio::test]
async fn local_keys_are_checked() {
    let e = config_error(json!({"provider": "local", "base_url": "http://x"}), &[]).await;
    assert!(
        e.contains("base_url: `base_url` is for provider = \"openai\""),
        "{e}"
    );
    let e = config_error(json!({"provider": "local", "model": "bge-small"}), &[]).await;
    assert!(
        e.contains("model: the local provider runs all-MiniLM-L6-v2 only"),
        "{e}"
    );
    let e = config_error(json!({"provider": "local", "dimensions": 768}), &[]).await;
    assert!(e.contains("384 dimensions, not 768"), "{e}");
}

#[cfg(not(feature = "local"))]
#[tokio::test]
async fn local_without_the_feature_says_which_build() {
    let e = config_error(json!({"provider": "local"}), &[]).await;
    assert!(
        e.contains("provider: \"local\" needs a hilo built with the local embedding model"),
        "{e}"
    );
    assert!(e.contains("--features local-embeddings"), "{e}");
}

#[cfg(feature = "local")]
#[tokio::test]
async fn local_with_no_model_files_says_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_of(&[]);
    let keys = Keys {
        env: &env,
        secrets: None,
    };
    let c = cfg(json!({"provider": "local", "model_dir": dir.path()}));
    let err = build(&c, &keys).await.err().unwrap();
    assert_eq!(err.code(), "EMBED_MODEL_MISSING");
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors, config.json, tokenizer.json not found"),
        "{msg}"
    );
    assert!(msg.contains("scripts/install-embedding-model"), "{msg}");
}

#[test]
fn the_default_model_dir() {
    let d = hilo_embed::default_model_dir(&env_of(&[("HOME", "/home/u")]));
    assert_eq!(
        d,
        std::path::Path::new("/home/u/.local/share/hilo/models/all-MiniLM-L6-v2")
    );
    let d = hilo_embed::default_model_dir(&env_of(&[
        ("HOME", "/home/u"),
        ("HILO_EMBED_MODEL_DIR", "/m"),
    ]));
    assert_eq!(d, std::path::Path::new("/m"));
}
