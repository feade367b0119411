//! Tests of reading hilo.toml (the `tests` module of `config.rs`).

use super::*;

#[test]
fn reads_tools_servers_and_profiles() {
    let c = Config::parse(
        r#"
[[tools.custom]]
name = "create_return"
http = { method = "post", url = "http://x/returns" }

[mcp.servers.files]
command = "x"

[llm.profiles.cheap]
primary = "gpt-4o-mini"
"#,
    )
    .unwrap();
    assert!(c.catalog.tools.contains("create_return"));
    assert!(c.catalog.tools.contains("http_request"));
    assert!(c.catalog.mcp_servers.contains("files"));
    assert!(c.catalog.profiles.contains("cheap"));
    assert_eq!(c.tools[0].http.as_ref().unwrap().method, "POST");
    assert_eq!(c.llm.profiles["cheap"].primary.to_vec(), ["gpt-4o-mini"]);
    let err = Config::parse("[llm.profiles.cheap]\nprimary = \"m\"\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("profiles.cheap: unknown model `m`"),
        "{err:#}"
    );
    // Unknown sections were once ignored silently; now a typo is an error.
    let err = Config::parse("[unknown.section]\nignored = true\n").unwrap_err();
    assert!(
        format!("{err:#}").starts_with("[unknown]: unknown section: unknown field `unknown`"),
        "{err:#}"
    );
}

/// The keys `check_schema` accepts in the table at `path` (`NAME` stands for any name;
/// `array`: a list of tables), from its unknown-key message; `None` when the table is
/// free-form (checked by another decoder).
fn accepted_keys(path: &[String], array: bool) -> Option<Vec<String>> {
    let mut v = serde_json::json!({"__probe__": 1});
    if array {
        v = Value::Array(vec![v]);
    }
    for seg in path.iter().rev() {
        let seg = if seg == "NAME" { "x" } else { seg.as_str() };
        v = serde_json::json!({ seg: v });
    }
    let e = check_schema(&v, &[]).err()?.to_string();
    let list = e
        .split_once("(the keys here are: ")
        .and_then(|(_, r)| r.split_once(';'))
        .map(|(l, _)| l)
        .unwrap_or_else(|| panic!("no key list in {e}"));
    Some(list.split(", ").map(str::to_string).collect())
}

#[test]
fn the_reference_matches_the_code() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
    )
    .unwrap();
    // (table path, list of tables, keys of its table)
    let mut sections: Vec<(Vec<String>, bool, Vec<String>)> = Vec::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### `[") {
            let array = h.starts_with('[');
            let inner = h.trim_start_matches('[').split(']').next().unwrap();
            let path = inner
                .split('.')
                .map(|k| k.trim_matches('"').to_string())
                .collect();
            sections.push((path, array, Vec::new()));
        } else if let Some(row) = line.strip_prefix("| `")
            && let Some((_, _, keys)) = sections.last_mut()
        {
            keys.push(row.split('`').next().unwrap().to_string());
        }
    }
    assert!(sections.len() > 30, "{sections:?}");
    let documented = |path: &[String]| sections.iter().any(|(p, _, _)| p == path);
    for top in accepted_keys(&[], false).unwrap() {
        assert!(
            sections.iter().any(|(p, _, _)| p[0] == top),
            "the section [{top}] is missing from docs/configuration.md"
        );
    }
    for (path, array, keys) in &sections {
        let table = path.join(".");
        let Some(accepted) = accepted_keys(path, *array) else {
            assert!(
                keys.is_empty(),
                "[{table}] is free-form in the code but has a table in the doc"
            );
            continue;
        };
        for k in keys {
            assert!(
                accepted.contains(k),
                "[{table}] `{k}` is documented but not accepted (accepted: {accepted:?})"
            );
        }
        for k in &accepted {
            let mut sub = path.clone();
            sub.push(k.clone());
            let mut named = sub.clone();
            named.push("NAME".into());
            assert!(
                keys.contains(k) || documented(&sub) || documented(&named),
                "[{table}] `{k}` is accepted but missing from docs/configuration.md"
            );
        }
    }
}

#[test]
fn memory_embeddings_are_read_and_checked() {
    let c = Config::parse(
        "[memory.embeddings]\nprovider = \"openai\"\nmodel = \"m\"\ntimeout_ms = \"10s\"\n",
    )
    .unwrap();
    assert_eq!(
        c.embeddings.provider,
        Some(hilo_embed::ProviderName::Openai)
    );
    assert_eq!(c.embeddings.timeout_ms, Some(10_000));
    assert_eq!(Config::parse("").unwrap().embeddings.provider, None);
    let e = err_of("[memory.embeddings]\nprovider = \"local\"\nbatch = 8\n");
    assert!(
            e.starts_with("[memory.embeddings] batch: unknown key: unknown field `batch`; did you mean `batch_size`?"),
            "{e}"
        );
    let e = err_of("[memory.embeddings]\nprovider = \"lokal\"\n");
    assert!(e.starts_with("[memory.embeddings] provider:"), "{e}");
    assert!(e.contains("expected `local` or `openai`"), "{e}");
}

fn err_of(text: &str) -> String {
    format!("{:#}", Config::parse(text).unwrap_err())
}

#[test]
fn unknown_keys_name_their_path_and_the_likely_key() {
    let e = err_of("[tools.settings.create_return]\ntimout_ms = 5000\n");
    assert!(
            e.starts_with("[tools.settings.create_return] timout_ms: unknown key: unknown field `timout_ms`; did you mean `timeout_ms`?"),
            "{e}"
        );
    assert!(e.contains("cache_ttl_ms"), "{e}");
    let e = err_of("[sever]\naddr = \"x\"\n");
    assert!(e.starts_with("[sever]: unknown section"), "{e}");
    assert!(e.contains("did you mean `server`?"), "{e}");
    let e = err_of("[tools.settings.x]\nrate_limit = { calls = 1, per_ms = 1000, burts = 2 }\n");
    assert!(
        e.starts_with("[tools.settings.x.rate_limit] burts: unknown key"),
        "{e}"
    );
    assert!(e.contains("did you mean `burst`?"), "{e}");
    let e = err_of("[llm.router]\ntimeout = 5\n");
    assert!(e.starts_with("[llm.router] timeout: unknown key"), "{e}");
    assert!(e.contains("did you mean `timeout_ms`?"), "{e}");
    let e = err_of("[tenants.\"*\".tools]\ndisable = [\"x\"]\n");
    assert!(
        e.starts_with("[tenants.\"*\".tools] disable: unknown key"),
        "{e}"
    );
    let e = err_of(
        "[[llm.models]]\nname = \"m\"\nprovider = \"openai\"\ncontext_window = 1\ncapabilities = []\nqualty = 1\n",
    );
    assert!(e.starts_with("[llm.models.0] qualty: unknown key"), "{e}");
    assert!(e.contains("did you mean `quality`?"), "{e}");
    let e = err_of("[store]\ndurabilty = \"full\"\n");
    assert!(e.contains("did you mean `durability`?"), "{e}");
}

#[test]
fn wrong_types_name_the_key() {
    let e = err_of("[server]\nmax_connections = \"many\"\n");
    assert!(
        e.starts_with("[server] max_connections: invalid type: string \"many\""),
        "{e}"
    );
    let e = err_of("[store]\ndurability = \"fast\"\n");
    assert!(
        e.starts_with("[store] durability: unknown variant `fast`"),
        "{e}"
    );
    let e = err_of("[callbacks]\ntimeout_ms = \"10 seconds\"\n");
    assert!(
        e.starts_with("[callbacks] timeout_ms: `10 seconds` is not a duration"),
        "{e}"
    );
}

#[test]
fn durations_in_every_ms_key() {
    let c = Config::parse(
        r#"
[server]
sync_timeout_ms = "45s"
idle_timeout_ms = 60000
key_cache_ms = "1m30s"
[callbacks]
max_backoff_ms = "1h"
[tiers.free]
max_execution_ms = "7d"
[tools.settings.http_request]
timeout_ms = "500ms"
cache_ttl_ms = "15m"
rate_limit = { calls = 10, per_ms = "1s", max_wait_ms = "2s" }
circuit = { failures = 5, open_ms = "30s" }
[llm.router]
timeout_ms = "2m"
circuit = { failures = 3, open_ms = "24h" }
[mcp.servers.files]
command = "x"
timeout_ms = "10s"
startup_timeout_ms = "1m"
[databases.default]
url = "sqlite://x.db"
statement_timeout_ms = "5m"
[conversations]
reply_timeout_ms = "30s"
"#,
    )
    .unwrap();
    let s = &c.server.server;
    assert_eq!(
        (s.sync_timeout_ms, s.idle_timeout_ms, s.key_cache_ms),
        (45_000, 60_000, 90_000)
    );
    assert_eq!(c.server.callbacks.max_backoff_ms, 3_600_000);
    assert_eq!(
        c.server.tiers.tiers["free"].max_execution_ms,
        Some(604_800_000)
    );
    let t = &c.executor.settings["http_request"];
    assert_eq!((t.timeout_ms, t.cache_ttl_ms), (Some(500), Some(900_000)));
    let r = t.rate_limit.unwrap();
    assert_eq!((r.per_ms, r.max_wait_ms), (1_000, 2_000));
    assert_eq!(t.circuit.unwrap().open_ms, 30_000);
    assert_eq!(c.llm.router.timeout_ms, 120_000);
    assert_eq!(c.llm.router.circuit.open_ms, 86_400_000);
    assert_eq!(c.mcp["files"].timeout_ms, Some(10_000));
    assert_eq!(c.mcp["files"].startup_timeout_ms, 60_000);
    assert_eq!(
        c.executor.databases["default"].statement_timeout_ms,
        Some(300_000)
    );
    assert_eq!(c.server.conversations.reply_timeout_ms, 30_000);
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    env_overrides(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn environment_variables_go_over_the_file() {
    let vars = env(&[
        ("HILO_SERVER__MAX_CONNECTIONS", "10"),
        ("HILO_SERVER__ADDR", "0.0.0.0:9000"),
        ("HILO_SERVER__SYNC_TIMEOUT_MS", "2m"),
        ("HILO_CALLBACKS__ALLOW_HOSTS", "[\"127.0.0.1\"]"),
        ("HILO_TOOLS__SETTINGS__HTTP_REQUEST__TIMEOUT_MS", "5s"),
        ("HILO_STORE__DURABILITY", "full"),
        ("HILO_LLM__MODELS__0__QUALITY", "0.9"),
        // Not overrides: no `__`.
        ("HILO_DB", "x.db"),
        ("HILO_LEASE_MS", "100"),
        ("PATH", "/bin"),
    ]);
    assert_eq!(vars.len(), 7);
    let c = Config::parse_with_env(
            "[server]\nmax_connections = 5\nworkers = 3\n[[llm.models]]\nname = \"m\"\nprovider = \"openai\"\ncontext_window = 1000\ncapabilities = [\"chat\"]\nquality = 0.1\n",
            &vars,
        )
        .unwrap();
    let s = &c.server.server;
    assert_eq!(s.max_connections, 10);
    assert_eq!(s.workers, 3, "the file's other keys stay");
    assert_eq!(s.addr, "0.0.0.0:9000");
    assert_eq!(s.sync_timeout_ms, 120_000);
    assert_eq!(c.server.callbacks.allow_hosts, ["127.0.0.1"]);
    assert_eq!(c.executor.settings["http_request"].timeout_ms, Some(5_000));
    assert_eq!(c.durability, hilo_store::Durability::Full);
    assert_eq!(c.llm.models["m"].quality, 0.9);
    // Without a file at all.
    let c = Config::load_found(None, &env(&[("HILO_SERVER__WORKERS", "2")])).unwrap();
    assert_eq!(c.server.server.workers, 2);
    // Mistakes name the variable.
    let e = format!(
        "{:#}",
        Config::parse_with_env("", &env(&[("HILO_SERVER__MAX_CONECTIONS", "1")])).unwrap_err()
    );
    assert!(
        e.contains("[server] max_conections: unknown key")
            && e.contains("did you mean `max_connections`?")
            && e.contains("set by the environment variable HILO_SERVER__MAX_CONECTIONS"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Config::parse_with_env("", &env(&[("HILO_SERVER__WORKERS", "many")])).unwrap_err()
    );
    assert!(
        e.contains("[server] workers: invalid type: string \"many\"")
            && e.contains("HILO_SERVER__WORKERS"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Config::parse_with_env(
            "[server]\naddr = \"x\"\n",
            &env(&[("HILO_SERVER__ADDR__PORT", "1")])
        )
        .unwrap_err()
    );
    assert!(
        e.contains("`server.addr` is a value in hilo.toml, not a table"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Config::parse_with_env("", &env(&[("HILO_SERVER____ADDR", "1")])).unwrap_err()
    );
    assert!(e.contains("empty part"), "{e}");
}

#[test]
fn discovery_prefers_explicit_then_here_then_the_user_directory() {
    let root = std::env::temp_dir().join(format!("hilo-discover-{}", std::process::id()));
    let here = root.join("project");
    let user = root.join("config");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(user.join("hilo")).unwrap();
    assert_eq!(discover(None, &here, Some(&user)), None);
    assert_eq!(discover(None, &here, None), None);
    std::fs::write(user.join("hilo/hilo.toml"), "").unwrap();
    assert_eq!(
        discover(None, &here, Some(&user)),
        Some((user.join("hilo/hilo.toml"), Found::UserConfigDir))
    );
    std::fs::write(here.join("hilo.toml"), "").unwrap();
    assert_eq!(
        discover(None, &here, Some(&user)),
        Some((here.join("hilo.toml"), Found::WorkingDir))
    );
    let other = root.join("other.toml");
    assert_eq!(
        discover(Some(&other), &here, Some(&user)),
        Some((other.clone(), Found::Explicit))
    );
    let e = format!(
        "{:#}",
        Config::load_found(discover(Some(&other), &here, None), &[]).unwrap_err()
    );
    assert!(
        e.contains("other.toml (given by --config or HILO_CONFIG)"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn conversations_bind_workflows_per_tenant_and_channel() {
    // As in the README.
    let c = Config::parse(
        r#"
[conversations]
workflow = "customer_support"
history = 10
reply_timeout_ms = 30000
summary_profile = "fast"
[[conversations.bindings]]
tenant = "acme"
channel = "web"
workflow = "acme_web_support"
callback_url = "https://chat.acme.example/hilo"
"#,
    )
    .unwrap();
    let conv = &c.server.conversations;
    let web = conv.binding("acme", "web").unwrap();
    assert_eq!(web.workflow, "acme_web_support");
    assert_eq!(
        web.callback_url.as_deref(),
        Some("https://chat.acme.example/hilo")
    );
    assert_eq!(
        conv.binding("acme", "mobile").unwrap().workflow,
        "customer_support"
    );
    assert_eq!(conv.summary_profile.as_deref(), Some("fast"));
    let err = Config::parse(
        "[conversations]
workflw = \"x\"\n",
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown field `workflw`"),
        "{err:#}"
    );
}

#[test]
fn tiers_reach_the_executor_and_the_router() {
    let c = Config::parse(
        r#"
[tiers.free]
allowed_tools = ["transform_json"]
allowed_models = ["local-router"]
monthly_budget_usd = 5.0
max_running = 2

[tiers.pro]
allowed_models = ["local-router", "gpt-4o-mini"]
max_running = 20

[tenants.acme]
tier = "pro"

[server]
default_tier = "free"

[llm.budgets.allowed_models]
acme = ["gpt-4o-mini", "gpt-4o"]
"#,
    )
    .unwrap();
    let b = &c.llm.budgets;
    // The tenant's own list narrowed by its tier's; the default tier for everyone else.
    assert_eq!(b.models_for("acme"), Some(&["gpt-4o-mini".to_string()][..]));
    assert_eq!(
        b.models_for("globex"),
        Some(&["local-router".to_string()][..])
    );
    assert_eq!(b.monthly_usd, Some(5.0));
    assert_eq!(
        c.executor.tenants["*"].enabled.as_deref(),
        Some(&["transform_json".to_string()][..])
    );
    // The store's claims: the tenant's tier, the default tier for everyone else.
    assert_eq!(
        c.running_limits,
        hilo_store::RunningLimits {
            tenants: [("acme".to_string(), 20)].into(),
            default: Some(2),
        }
    );
}

#[test]
fn mcp_servers_are_read_and_checked() {
    let c = Config::parse(
        "[mcp.servers.files]\ncommand = \"mcp-files\"\nargs = [\"--root\", \"/srv\"]\n",
    )
    .unwrap();
    assert_eq!(c.mcp["files"].args, ["--root", "/srv"]);
    assert!(c.catalog.mcp_servers.contains("files"));
    let err = Config::parse("[mcp.servers.files]\ncommand = \"x\"\nurl = \"http://h/mcp\"\n")
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("[mcp.servers.files]: sets both `command` and `url`"),
        "{err:#}"
    );
    let err = Config::parse("[mcp.servers.files]\ncmd = \"x\"\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown field `cmd`"),
        "{err:#}"
    );
}

#[test]
fn bad_tools_are_reported() {
    let err = Config::parse("[[tools.custom]]\nname = \"x\"\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("needs the field `http`"),
        "{err:#}"
    );
    let err = Config::parse(
        "[[tools.custom]]\nname = \"http_request\"\nhttp = {method = \"GET\", url = \"u\"}\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("declared twice"));
}

#[test]
fn retention_is_read_from_store_and_tiers_and_a_bad_one_names_its_key() {
    use hilo_runtime::retention::Retention;
    const DAY: u64 = 86_400_000;
    let c = Config::parse(
        "[store]\nretention = \"30d\"\n[tiers.free]\nretention = \"7d\"\n[tiers.gold]\nretention = \"forever\"\n[tenants.acme]\ntier = \"free\"\n",
    )
    .unwrap();
    assert_eq!(c.server.retention, Retention::For(30 * DAY));
    let policy = hilo_runtime::retention::Policy {
        default: c.server.retention,
        tiers: c.server.tiers.clone(),
    };
    assert_eq!(policy.of("acme"), Retention::For(7 * DAY));
    assert_eq!(policy.of("other"), Retention::For(30 * DAY));
    assert_eq!(
        Config::parse("").unwrap().server.retention,
        Retention::Forever,
        "kept forever by default"
    );
    for (text, key) in [
        ("[store]\nretention = \"30\"\n", "[store] retention"),
        ("[store]\nretention = 30\n", "[store] retention"),
        ("[store]\nretention = \"5m\"\n", "[store] retention"),
        (
            "[tiers.free]\nretention = \"7dd\"\n",
            "[tiers.free] retention",
        ),
    ] {
        let e = Config::parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}
