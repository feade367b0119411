//! `hilo init [DIR]`: a starter project that runs as generated, with no API key — a commented
//! `hilo.toml`, one workflow (a local-router classification, a `switch`, `set` nodes, a
//! `human` fallback, `merge` and `finish`), a test input, the workflow JSON Schema for editors
//! and a README of next steps. Existing files are never overwritten without `--force`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use serde_json::json;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project folder (made if missing)
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite files that already exist (by default hilo init refuses, exit 2, and writes nothing)
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object: {"dir", "files", "next"}
    #[arg(long)]
    pub json: bool,
}

/// The starter workflow's file, relative to the project folder.
pub const WORKFLOW_FILE: &str = "workflows/triage.yaml";
/// Its test input.
pub const INPUT_FILE: &str = "inputs/triage.json";

const CONFIG: &str = r#"# hilo.toml — the installation's configuration. hilo reads ./hilo.toml (or --config FILE,
# or HILO_CONFIG). Every section is optional: delete what you do not need. The settings below
# are the defaults; the commented ones show what else there is (docs/ in the hilo repository
# lists every key).
#
# The database is not set here: --db PATH|URL or HILO_DB (a SQLite file, or postgres://…).

[store]
durability = "normal"          # "full": every commit survives a power loss too (slower)

[server]                       # `hilo serve`: the HTTP API, with a worker embedded
addr = "127.0.0.1:8080"
workers = 8                    # executions driven at once by the embedded worker

# Models. With no provider configured, agents use hilo's built-in local router (no network,
# no API key): the starter workflow runs on it. Add a provider and the `fast` profile uses it.
#
# [llm.providers.openai]
# kind = "openai"              # key from OPENAI_API_KEY; base_url = "http://…/v1" for Ollama, vLLM…
#
# [llm.budgets]
# daily_usd = 20.0
# on_exceed = "downgrade"      # or "refuse"

# Tools: declarative HTTP tools usable by every workflow.
#
# [[tools.custom]]
# name = "create_ticket"
# class = "dangerous"
# http = { method = "POST", url = "{{ secrets.helpdesk_url }}/tickets", body = { subject = "${ args.subject }" } }

# [tools.settings.http_request]  # any tool: timeout, rate limit, circuit breaker
# timeout_ms = 10000
"#;

const WORKFLOW: &str = r#"# yaml-language-server: $schema=../hilo.schema.json
#
# A starter workflow. It sorts a customer message with the `fast` profile (with no model
# configured: hilo's built-in local router, which compares the message with the examples
# below), drafts a reply by category, and asks a person when it is unsure.
#
#   hilo validate workflows/triage.yaml
#   hilo run workflows/triage.yaml --input @inputs/triage.json
#   hilo graph workflows/triage.yaml
name: triage
version: 1
description: Sort a customer message and draft the first reply; ask a person when unsure
input:
  type: object
  required: [message]
  properties:
    message: {type: string, minLength: 1}
    name: {type: string}
nodes:
  - id: classify
    type: agent
    agent: simple
    with:
      profile: fast
      prompt: "{{ input.message }}"
      labels: [complaint, question, praise]
      examples:
        complaint:
          - my parcel arrived broken
          - the product stopped working after two days
          - nobody answers my emails, this is unacceptable
          - I was charged twice and I am angry
          - the delivery is three weeks late
        question:
          - how do I change my password?
          - do you ship to Canada?
          - what are your opening hours?
          - can I pay by bank transfer?
          - where can I find my invoice?
        praise:
          - thank you, the support was excellent
          - I love the new app, great work
          - the delivery was fast, thanks a lot
          - your team was very helpful
          - great product, I will order again
  - id: route
    type: switch
    cases:
      - {when: "classify.output.confidence < `0.4`", to: ask_a_person}
      - {when: "classify.output.label == 'complaint'", to: apologise}
      - {when: "classify.output.label == 'question'", to: answer}
    default: thank
  - id: apologise
    type: set
    vars:
      priority: high
      reply: "Dear {{ input.name | default('customer') }}, we are sorry. A person will look at this today."
  - id: answer
    type: set
    vars:
      priority: normal
      reply: "Hello {{ input.name | default('there') }}, thanks for asking: our help centre has the answer."
  - id: thank
    type: set
    vars:
      priority: low
      reply: "Thank you, {{ input.name | default('there') }}! We are glad to hear it."
  - id: ask_a_person
    type: human
    prompt: "Unsure how to sort: {{ input.message }}. Write the reply."
    schema:
      type: object
      required: [reply]
      properties:
        reply: {type: string, minLength: 1}
    timeout_ms: 86400000
  - id: from_person
    type: set
    vars:
      priority: normal
      reply: "${ ask_a_person.output.reply }"
  - id: collect
    type: merge
    wait: any
  - id: done
    type: finish
    output:
      category: "${ classify.output.label }"
      confidence: "${ classify.output.confidence }"
      priority: "${ vars.priority }"
      reply: "${ vars.reply }"
edges:
  - {from: classify, to: route}
  - {from: apologise, to: collect}
  - {from: answer, to: collect}
  - {from: thank, to: collect}
  - {from: ask_a_person, to: from_person}
  - {from: from_person, to: collect}
  - {from: collect, to: done}
"#;

const INPUT: &str = r#"{
  "message": "My parcel arrived broken and nobody answers my emails",
  "name": "Ada"
}
"#;

const README: &str = r#"# A hilo project

Made by `hilo init`. What is here:

| file | what it is |
|---|---|
| `hilo.toml` | the configuration (store, server, models, tools), with comments |
| `workflows/triage.yaml` | a workflow: classify a message, draft a reply, ask a person when unsure |
| `inputs/triage.json` | an input to run it with |
| `hilo.schema.json` | the workflow format's JSON Schema (`hilo schema`), for editors |

## Next steps

```sh
hilo validate workflows/triage.yaml                          # every error at once, with line:col
hilo run workflows/triage.yaml --input @inputs/triage.json   # runs it durably; no API key needed
hilo graph workflows/triage.yaml                             # a Mermaid flowchart of it
```

Executions are kept in a SQLite file: `--db hilo.db` (or `export HILO_DB=hilo.db`) keeps them
in this folder; without it, hilo uses `hilo.db` in your data directory. Then:

```sh
hilo executions list                         # what ran
hilo run workflows/triage.yaml --input '{"message": "hmm"}'   # unsure: waits for a person (exit 3)
hilo answer <execution id> ask_a_person --input '{"reply": "We will call you back."}'
hilo workflows import workflows/triage.yaml  # store it, versioned
hilo serve                                   # the HTTP API on 127.0.0.1:8080 (hilo keys create)
```

Editors: the first line of the workflow (`# yaml-language-server: $schema=…`) gives completion
and checks in VS Code's YAML extension, Helix, Neovim; after upgrading hilo, refresh the schema
with `hilo schema > hilo.schema.json`.

Models: with no provider configured, the `fast` profile is hilo's built-in local router (no
network). Uncomment `[llm.providers.openai]` in `hilo.toml` and set `OPENAI_API_KEY` to use a
real model.
"#;

/// Every file `hilo init` writes, relative to the project folder, with its contents.
pub fn files() -> anyhow::Result<Vec<(&'static str, String)>> {
    let schema = serde_json::to_string_pretty(&hilo_core::schema::workflow_schema())?;
    Ok(vec![
        ("hilo.toml", CONFIG.to_string()),
        (WORKFLOW_FILE, WORKFLOW.to_string()),
        (INPUT_FILE, INPUT.to_string()),
        ("hilo.schema.json", format!("{schema}\n")),
        ("README.md", README.to_string()),
    ])
}

/// `hilo init`.
pub fn init(args: &InitArgs) -> Result<(), Exit> {
    let dir = &args.dir;
    let files = files()?;
    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .map(|(name, _)| dir.join(name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(Exit::invalid(anyhow!(
                "hilo init: {} already exist{}: {}; nothing was written. Pass --force to overwrite, or give another folder (`hilo init DIR`)",
                if existing.len() == 1 {
                    "a file"
                } else {
                    "files"
                },
                if existing.len() == 1 { "s" } else { "" },
                existing.join(", ")
            )));
        }
    }
    let mut written = Vec::new();
    for (name, text) in &files {
        let path = dir.join(name);
        write(&path, text, args.force)?;
        written.push(path.display().to_string());
    }
    let mut next = Vec::new();
    if dir != Path::new(".") {
        next.push(format!("cd {}", dir.display()));
    }
    next.push(format!("hilo validate {WORKFLOW_FILE}"));
    next.push(format!("hilo run {WORKFLOW_FILE} --input @{INPUT_FILE}"));
    next.push(format!("hilo graph {WORKFLOW_FILE}"));
    if args.json {
        let doc = json!({"dir": dir.display().to_string(), "files": written, "next": next});
        outln!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?
        );
        return Ok(());
    }
    for path in &written {
        outln!("wrote {path}");
    }
    outln!("\nNext:");
    for cmd in &next {
        outln!("  {cmd}");
    }
    Ok(())
}

/// Writes `text` to `path`, making its folder; without `force` a file that appeared since the
/// check is not overwritten either.
fn write(path: &Path, text: &str, force: bool) -> Result<(), Exit> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            anyhow!(
                "hilo init: cannot create the folder {}: {e}",
                parent.display()
            )
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Exit::invalid(anyhow!(
                "hilo init: {} already exists; pass --force to overwrite it",
                path.display()
            ))
        } else {
            Exit::from(anyhow!("hilo init: cannot write {}: {e}", path.display()))
        }
    })?;
    file.write_all(text.as_bytes())
        .map_err(|e| anyhow!("hilo init: cannot write {}: {e}", path.display()))?;
    Ok(())
}
