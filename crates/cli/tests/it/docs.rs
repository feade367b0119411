//! The documentation as a new user meets it: every Markdown link in README.md, ARCHITECTURE.md
//! and docs/*.md resolves inside the repository (file and heading anchor, GitHub's slugs) or is
//! a real http(s) URL (not fetched); the README's quick start runs as written; the deployment
//! files (deploy/compose.yaml, the Dockerfile) agree with the `hilo` they start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde_json::Value;

use crate::{root, text};

/// GitHub's heading anchor: lower case; letters, digits, `-`, `_` and spaces kept (every
/// other character dropped); each space a `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A Markdown file's links (with the line they are on) and its heading anchors.
struct Page {
    links: Vec<(usize, String)>,
    anchors: BTreeSet<String>,
}

fn read_page(text: &str) -> Page {
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut links = Vec::new();
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut heading: Option<String> = None;
    for (event, range) in Parser::new_ext(
        text,
        Options::ENABLE_TABLES
            | Options::ENABLE_FOOTNOTES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_TASKLISTS
            | Options::ENABLE_GFM,
    )
    .into_offset_iter()
    {
        match event {
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => {
                links.push((line_of(range.start), dest_url.to_string()));
            }
            Event::Start(Tag::Heading { id, .. }) => {
                if let Some(id) = id {
                    anchors.insert(id.to_string());
                }
                heading = Some(String::new());
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    let base = slug(&h);
                    let n = seen.entry(base.clone()).or_insert(0);
                    let anchor = if *n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    };
                    *n += 1;
                    anchors.insert(anchor);
                }
            }
            Event::Html(h) | Event::InlineHtml(h) => {
                // <a id="x"> / <a name="x"> anchors.
                for attr in ["id=\"", "name=\""] {
                    for (i, _) in h.match_indices(attr) {
                        let rest = &h[i + attr.len()..];
                        if let Some(end) = rest.find('"') {
                            anchors.insert(rest[..end].to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Page { links, anchors }
}

/// `path` with `.` and `..` resolved lexically; `None` if it climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A real URL: http(s), a host name with a dot and a top-level domain of letters, no spaces.
fn real_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    let tld = host.rsplit('.').next().unwrap_or("");
    !url.contains(char::is_whitespace)
        && host.contains('.')
        && !tld.is_empty()
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && !matches!(host, "example.com" | "example.org")
}

/// Every problem with the links of `files` (paths relative to `repo`).
fn check_links(repo: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut pages: BTreeMap<PathBuf, Page> = BTreeMap::new();
    let mut page = |rel: &Path| -> Option<BTreeSet<String>> {
        if !pages.contains_key(rel) {
            let text = std::fs::read_to_string(repo.join(rel)).ok()?;
            pages.insert(rel.to_path_buf(), read_page(&text));
        }
        pages.get(rel).map(|p| p.anchors.clone())
    };
    let mut problems = Vec::new();
    for file in files {
        let Ok(source) = std::fs::read_to_string(repo.join(file)) else {
            problems.push(format!("{}: cannot be read", file.display()));
            continue;
        };
        let here = read_page(&source);
        for (line, link) in &here.links {
            let at = format!("{}:{line}: link `{link}`", file.display());
            if link.starts_with("http://") || link.starts_with("https://") {
                if !real_url(link) {
                    problems.push(format!("{at}: not a real http(s) URL"));
                }
                continue;
            }
            if link.starts_with("mailto:") {
                continue;
            }
            if link.contains("://") || link.starts_with('/') {
                problems.push(format!(
                    "{at}: write a path relative to this file, or a http(s) URL"
                ));
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                let base = file.parent().unwrap_or(Path::new(""));
                match normalize(&base.join(path)) {
                    Some(t) => t,
                    None => {
                        problems.push(format!("{at}: leaves the repository"));
                        continue;
                    }
                }
            };
            if !repo.join(&target).exists() {
                problems.push(format!("{at}: {} does not exist", target.display()));
                continue;
            }
            if let Some(anchor) = anchor
                && target.extension().is_some_and(|e| e == "md")
            {
                match page(&target) {
                    Some(anchors) if anchors.contains(anchor) => {}
                    Some(anchors) => problems.push(format!(
                        "{at}: no heading `#{anchor}` in {} (it has: {})",
                        target.display(),
                        anchors.into_iter().collect::<Vec<_>>().join(", ")
                    )),
                    None => problems.push(format!("{at}: cannot read {}", target.display())),
                }
            }
        }
    }
    problems
}

/// README.md, ARCHITECTURE.md and every docs/*.md, relative to the repository.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().unwrap()))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "no docs/*.md");
    files.extend(docs);
    files
}

#[test]
fn every_link_in_readme_architecture_and_docs_resolves() {
    let files = doc_files();
    let problems = check_links(&root(), &files);
    assert!(
        problems.is_empty(),
        "{} broken link(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself finds what it must: a missing file, a missing anchor, a link out of the
/// repository, a non-URL; and accepts GitHub's slugs (duplicates numbered, code kept).
#[test]
fn the_link_checker_finds_broken_links() {
    assert_eq!(
        slug("The HTTP API (`hilo serve`)"),
        "the-http-api-hilo-serve"
    );
    assert_eq!(
        slug("Durability: the store, crashes"),
        "durability-the-store-crashes"
    );
    assert_eq!(slug("`hilo init` — a project"), "hilo-init--a-project");
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    std::fs::create_dir(r.join("docs")).unwrap();
    std::fs::write(
        r.join("docs/a.md"),
        "# A page\n\n## Same\n\n## Same\n\nok: [b](b.md#the-b-page), [self](#same-1), \
         [up](../README.md), [web](https://docs.rs/tokio), [mail](mailto:x@y.org)\n\n\
         ```md\n[in code](nope.md)\n```\n\n`[span](nope.md)`\n\n\
         bad: [gone](missing.md), [anchor](b.md#nope), [out](../../shared/x.md), \
         [abs](/etc/passwd), [local](http://127.0.0.1:8080/api), [ftp](ftp://x.org/f)\n",
    )
    .unwrap();
    std::fs::write(r.join("docs/b.md"), "# The B page\n").unwrap();
    std::fs::write(r.join("README.md"), "# R\n").unwrap();
    let problems = check_links(r, &[PathBuf::from("docs/a.md")]);
    let joined = problems.join("\n");
    assert_eq!(problems.len(), 6, "{joined}");
    for bad in [
        "`missing.md`: docs/missing.md does not exist",
        "`b.md#nope`: no heading `#nope`",
        "`../../shared/x.md`: leaves the repository",
        "`/etc/passwd`: write a path relative",
        "`http://127.0.0.1:8080/api`: not a real http(s) URL",
        "`ftp://x.org/f`: write a path relative",
    ] {
        assert!(joined.contains(bad), "{bad} not in:\n{joined}");
    }
}

/// `hilo ARGS` (the binary this test built) in the repository, like the README's commands.
fn hilo_here(args: &[&str]) -> std::process::Output {
    crate::init::hilo_in(&root(), args)
}

/// The README's quick start, run as written (`cargo run -q --bin hilo --` is the binary this
/// test built; shell globs expanded here), with the demo's files and database in a temporary
/// folder; then `hilo init` on a clean folder, validated and run.
#[test]
fn the_readme_quick_start_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // Every `hilo` command of the README's sh blocks.
    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && matches!(line.trim(), "```sh" | "```bash" | "```shell");
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = line.split(" #").next().unwrap_or("");
        for part in code.split("&&") {
            let part = part.trim();
            let rest = part
                .strip_prefix("cargo run -q --bin hilo -- ")
                .or_else(|| part.strip_prefix("cargo run --release --bin hilo -- "))
                .or_else(|| part.strip_prefix("hilo "));
            if let Some(rest) = rest {
                commands.push(rest.split_whitespace().map(String::from).collect());
            }
        }
    }
    let validate = commands
        .iter()
        .find(|c| c[0] == "validate")
        .expect("the README's quick start shows `hilo validate`");
    assert!(
        commands.iter().any(|c| c[0] == "demo"),
        "the README's quick start shows `hilo demo`: {commands:?}"
    );

    // validate examples/*.yaml examples/*.json
    let mut args: Vec<String> = vec!["validate".into()];
    for pattern in &validate[1..] {
        if let Some((dir, ext)) = pattern.split_once("/*.") {
            let mut matched: Vec<String> = std::fs::read_dir(root().join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
                .collect();
            matched.sort();
            assert!(!matched.is_empty(), "{pattern} matches nothing");
            args.extend(matched);
        } else {
            args.push(pattern.clone());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = hilo_here(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches(": ok — ").count(),
        args.len() - 1,
        "{}",
        text(&out.stdout)
    );

    // demo, into a temporary folder and database.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let db = tmp.path().join("hilo.db");
    let out = hilo_here(&[
        "--db",
        db.to_str().unwrap(),
        "demo",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("succeeded")
            && stdout.contains("compensated")
            && stdout.contains("handed_over"),
        "{stdout}"
    );
    assert!(dir.join("shop.db").is_file());

    // hilo init on a clean folder, then validate and run what it wrote.
    crate::init::init_and_run(tmp.path());
}

/// deploy/compose.yaml hangs together: every `depends_on` names a service with a
/// healthcheck when it waits for `service_healthy`; each hilo service runs a real `hilo`
/// subcommand on PostgreSQL (HILO_DB) with the mounted hilo.toml; the Dockerfile's healthcheck
/// calls the health route the server serves.
#[test]
fn the_deployment_files_agree_with_hilo() {
    let text_of = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    let compose: Value =
        hilo_core::source::parse_value(&text_of("deploy/compose.yaml"), hilo_core::Format::Yaml)
            .unwrap();
    let services = compose["services"].as_object().expect("services");
    for name in ["hilo", "worker", "postgres", "redis"] {
        assert!(services.contains_key(name), "service `{name}` missing");
    }
    let help = text(&hilo_here(&["--help"]).stdout);
    let subcommands: BTreeSet<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert!(subcommands.contains("serve") && subcommands.contains("init"));
    let mut hilo_services = 0;
    for (name, svc) in services {
        assert!(
            svc.get("image").is_some() || svc.get("build").is_some(),
            "`{name}`: no image or build"
        );
        assert!(
            svc["healthcheck"]["test"].is_array(),
            "`{name}`: no healthcheck"
        );
        if let Some(deps) = svc.get("depends_on") {
            let deps = deps.as_object().expect("depends_on with conditions");
            for (dep, cond) in deps {
                assert!(
                    services.contains_key(dep),
                    "`{name}` depends on unknown `{dep}`"
                );
                assert!(
                    matches!(
                        cond["condition"].as_str(),
                        Some(
                            "service_healthy"
                                | "service_started"
                                | "service_completed_successfully"
                        )
                    ),
                    "`{name}` → `{dep}`: {cond}"
                );
            }
        }
        if svc["image"] != "hilo:latest" {
            continue;
        }
        let command = svc["command"].as_array().expect("a hilo service's command");
        // A hilo service: its subcommand exists and its --help accepts the flags used.
        hilo_services += 1;
        let args: Vec<&str> = command.iter().map(|v| v.as_str().unwrap()).collect();
        assert!(
            subcommands.contains(args[0]),
            "`{name}`: `hilo {}` is not a subcommand",
            args[0]
        );
        let sub_help = text(&hilo_here(&[args[0], "--help"]).stdout);
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                sub_help.contains(flag),
                "`{name}`: `hilo {}` has no {flag}",
                args[0]
            );
        }
        let env = &svc["environment"];
        let db = env["HILO_DB"].as_str().expect("HILO_DB");
        assert!(
            db.starts_with("postgres://") && db.contains("@postgres"),
            "{db}"
        );
        assert!(env["HILO_CONFIG"].is_string(), "`{name}`: HILO_CONFIG");
        for dep in ["postgres", "redis"] {
            assert_eq!(
                svc["depends_on"][dep]["condition"], "service_healthy",
                "`{name}` waits for {dep}"
            );
        }
    }
    assert_eq!(hilo_services, 2, "serve and worker");
    assert_eq!(services["hilo"]["command"][0], "serve");
    assert_eq!(services["worker"]["command"][0], "worker");

    // The mounted hilo.toml is one this hilo reads, and its queue points at the redis service.
    let config = root().join("deploy/hilo.toml");
    let out = hilo_here(&[
        "--config",
        config.to_str().unwrap(),
        "validate",
        "examples/refund_approval.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let toml = text_of("deploy/hilo.toml");
    assert!(toml.contains("redis://redis:6379"), "{toml}");
    assert!(toml.contains("addr = \"0.0.0.0:8080\""), "{toml}");

    // The image: non-root, a health check on the served health route, the data volume.
    let dockerfile = text_of("Dockerfile");
    for needle in [
        "USER 10001:10001",
        "HEALTHCHECK",
        "/api/v1/health",
        "VOLUME",
        "EXPOSE 8080",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
    }
    assert!(
        dockerfile.contains("COPY deploy/healthcheck.sh /usr/local/bin/hilo-healthcheck"),
        "the image's health check is deploy/healthcheck.sh"
    );
    assert_eq!(
        services["hilo"]["healthcheck"]["test"][1],
        "/usr/local/bin/hilo-healthcheck"
    );

    // That health check, run for real against `hilo serve`: healthy, then not once it stopped.
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, url) = crate::serve::serve(&tmp.path().join("hilo.db"), &[]);
    let port = url.rsplit(':').next().unwrap().to_string();
    let check = || {
        std::process::Command::new("bash")
            .arg(root().join("deploy/healthcheck.sh"))
            .env("HILO_HEALTH_PORT", &port)
            .output()
            .unwrap()
    };
    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    crate::serve::sigterm(&server);
    server.wait().unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("hilo health:"),
        "{}",
        text(&out.stderr)
    );

    // The systemd unit runs `hilo serve` as a real subcommand.
    let unit = text_of("deploy/hilo.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/hilo serve"),
        "{unit}"
    );
}
