//! `hilo tools import` as a user runs it: a small Petstore-like OpenAPI 3.0 document written
//! here (a path parameter, a query array, a header, a JSON body, an operation without
//! operationId, a multipart-only operation that is skipped, an API key), refused documents, a
//! filter with a tag and a typo, a URL served by a one-shot local server, and GitHub's
//! description when `.ci/openapi` has installed it. No database is ever created.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::{root, text};

const PETSTORE: &str = r##"openapi: 3.0.3
info:
  title: Petstore
  version: 1.0.0
servers:
  - url: https://petstore.example.com/v1
security:
  - api_key: []
paths:
  /pets:
    get:
      operationId: listPets
      tags: [pets]
      summary: List pets
      parameters:
        - {name: limit, in: query, schema: {type: integer, maximum: 100}}
        - name: tags
          in: query
          explode: false
          schema: {type: array, items: {type: string}}
        - {name: X-Request-Id, in: header, schema: {type: string}}
      responses:
        "200": {description: the pets}
    post:
      operationId: createPet
      tags: [pets]
      summary: Add a pet
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewPet"}
      responses:
        "201": {description: created}
  /pets/{petId}:
    parameters:
      - {name: petId, in: path, required: true, schema: {type: string}}
    get:
      operationId: showPetById
      tags: [pets]
      summary: Info for a pet
      responses:
        "200": {description: the pet}
    delete:
      summary: Delete a pet
      responses:
        "204": {description: deleted}
  /pets/{petId}/photo:
    post:
      operationId: uploadPhoto
      tags: [photos]
      parameters:
        - {name: petId, in: path, required: true, schema: {type: string}}
      requestBody:
        required: true
        content:
          multipart/form-data:
            schema: {type: object, properties: {file: {type: string, format: binary}}}
      responses:
        "200": {description: ok}
  /store/inventory:
    get:
      operationId: getInventory
      tags: [store]
      security: []
      responses:
        "200": {description: counts}
components:
  securitySchemes:
    api_key: {type: apiKey, in: header, name: X-API-Key}
  schemas:
    NewPet:
      type: object
      required: [name]
      properties:
        name: {type: string}
        tag: {type: string}
"##;

/// `hilo ARGS` in `dir`, with a database path that must never be created.
fn import(dir: &Path, args: &[&str]) -> Output {
    let db = dir.join("never.db");
    let out = Command::new(env!("CARGO_BIN_EXE_hilo"))
        .args(["--color", "never", "tools", "import"])
        .args(args)
        .current_dir(dir)
        .env("HILO_DB", &db)
        .env_remove("HILO_CONFIG")
        .env_remove("HILO_SERVER")
        .output()
        .unwrap();
    assert!(!db.exists(), "tools import created a database");
    out
}

fn json_of(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)))
}

/// The lines of a table, with runs of spaces as one (column widths are not the point).
fn squeezed(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn petstore() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("petstore.yaml"), PETSTORE).unwrap();
    dir
}

#[test]
fn import_prints_tools_and_skips_for_a_person() {
    let dir = petstore();
    let o = import(dir.path(), &["petstore.yaml", "--prefix", "pets"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines = squeezed(&out);
    assert_eq!(lines[0], "Petstore 1.0.0 · OpenAPI 3.0.3", "{out}");
    assert_eq!(lines[1], "source: petstore.yaml");
    assert!(lines[2].starts_with("digest: sha256:"), "{out}");
    assert_eq!(lines[2].len(), "digest: sha256:".len() + 64, "{out}");
    assert!(
        lines
            .contains(&"base URL: https://petstore.example.com/v1 (the document's servers)".into()),
        "{out}"
    );
    assert!(
        lines.contains(
            &"auth: api_key (API key in header `X-API-Key`), some operations need none".into()
        ),
        "{out}"
    );
    for row in [
        "TOOL METHOD PATH CLASS INPUT (* required)",
        "pets.listPets GET /pets safe limit, tags, X-Request-Id",
        "pets.createPet POST /pets dangerous body*",
        "pets.showPetById GET /pets/{petId} safe petId*",
        // No operationId: the name comes from the method and the path.
        "pets.delete_pets_petid DELETE /pets/{petId} dangerous petId*",
        "pets.getInventory GET /store/inventory safe -",
        "skipped (1):",
        "5 tools, 1 skipped, 0 filtered out",
    ] {
        assert!(lines.contains(&row.to_string()), "no `{row}` in:\n{out}");
    }
    let skip = lines
        .iter()
        .find(|l| l.starts_with("POST /pets/{petId}/photo (uploadPhoto): "))
        .unwrap_or_else(|| panic!("no skipped upload in:\n{out}"));
    assert!(
        skip.contains("only multipart/form-data") && skip.contains("HTTP tool"),
        "{skip}"
    );
    // One line per tool, in the document's order; the summary last.
    let names: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("pets."))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pets.listPets",
            "pets.createPet",
            "pets.showPetById",
            "pets.delete_pets_petid",
            "pets.getInventory"
        ]
    );
    assert_eq!(lines.last().unwrap(), "5 tools, 1 skipped, 0 filtered out");
    assert!(!out.contains('\x1b'), "colours with --color never:\n{out}");
    assert_eq!(text(&o.stderr), "", "no warnings without a filter");
}

#[test]
fn import_json_has_the_document_tools_and_skips() {
    let dir = petstore();
    let v = json_of(&import(
        dir.path(),
        &["petstore.yaml", "--prefix", "pets", "--json"],
    ));
    let doc = &v["document"];
    assert_eq!(doc["title"], "Petstore");
    assert_eq!(doc["version"], "1.0.0");
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["digest"].as_str().unwrap().starts_with("sha256:"));
    let tools = v["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 5);
    let tool = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v:#}"))
    };

    let list = tool("pets.listPets");
    assert_eq!(list["operation_id"], "listPets");
    assert_eq!(list["method"], "GET");
    assert_eq!(list["path"], "/pets");
    assert_eq!(list["class"], "safe");
    assert_eq!(list["description"], "List pets");
    let props = &list["input_schema"]["properties"];
    assert_eq!(props["limit"]["type"], "integer");
    assert_eq!(props["tags"]["type"], "array");
    assert_eq!(props["tags"]["items"]["type"], "string");
    assert_eq!(props["X-Request-Id"]["type"], "string");
    assert_eq!(list["input_schema"]["additionalProperties"], false);
    assert!(list["input_schema"].get("required").is_none());
    assert_eq!(list["base_url"]["url"], "https://petstore.example.com/v1");
    assert_eq!(list["base_url"]["relative"], false);
    let scheme = &list["security"][0]["schemes"][0];
    assert_eq!(scheme["type"], "api_key");
    assert_eq!(scheme["location"], "header");
    assert_eq!(scheme["name"], "X-API-Key");

    let create = tool("pets.createPet");
    assert_eq!(create["class"], "dangerous");
    assert_eq!(create["input_schema"]["required"][0], "body");
    let body = &create["input_schema"]["properties"]["body"];
    assert_eq!(body["required"][0], "name");
    assert_eq!(body["properties"]["tag"]["type"], "string");

    let show = tool("pets.showPetById");
    assert_eq!(show["input_schema"]["required"][0], "petId");

    let delete = tool("pets.delete_pets_petid");
    assert_eq!(delete["operation_id"], Value::Null);
    assert_eq!(delete["method"], "DELETE");
    assert_eq!(delete["class"], "dangerous");

    // `security: []` on the operation: no credentials.
    assert_eq!(tool("pets.getInventory")["security"], serde_json::json!([]));

    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["method"], "POST");
    assert_eq!(skipped[0]["path"], "/pets/{petId}/photo");
    assert_eq!(skipped[0]["operation_id"], "uploadPhoto");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data")
    );
    assert_eq!(v["unmatched"], serde_json::json!([]));
    assert_eq!(v["filtered_out"], 0);
}

#[test]
fn import_filters_by_operation_id_and_tag_and_warns_of_typos() {
    let dir = petstore();
    let o = import(
        dir.path(),
        &[
            "petstore.yaml",
            "--prefix",
            "pets",
            "--operations",
            "pets,getInventry",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines = squeezed(&out);
    assert_eq!(
        lines.last().unwrap(),
        "3 tools, 0 skipped, 3 filtered out",
        "{out}"
    );
    assert!(!out.contains("getInventory"), "{out}");
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "warning: --operations `getInventry` matches no operationId, tool name or tag"
        ),
        "{err}"
    );

    // Repeated flags and commas alike; an operationId and a tag together.
    let v = json_of(&import(
        dir.path(),
        &[
            "petstore.yaml",
            "--prefix",
            "pets",
            "--operations",
            "getInventory,photos",
            "--operations",
            "nope",
            "--json",
        ],
    ));
    let names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pets.getInventory"]);
    // The photo upload is selected by its tag, and skipped for its body.
    assert_eq!(v["skipped"][0]["operation_id"], "uploadPhoto");
    assert_eq!(v["unmatched"], serde_json::json!(["nope"]));
    assert_eq!(v["filtered_out"], 4);
}

#[test]
fn import_refuses_what_it_cannot_read_with_what_to_do() {
    let dir = petstore();
    std::fs::write(
        dir.path().join("swagger.yaml"),
        "swagger: \"2.0\"\ninfo: {title: Old, version: \"1\"}\npaths: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "openapi: 3.0.3\ninfo: [\n").unwrap();
    let refused = |args: &[&str], says: &[&str]| {
        let o = import(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "", "{args:?}");
        let err = text(&o.stderr);
        for s in says {
            assert!(err.contains(s), "{args:?}: no `{s}` in {err}");
        }
    };
    refused(
        &["swagger.yaml", "--prefix", "old"],
        &[
            "cannot import swagger.yaml",
            "Swagger 2.0",
            "hilo reads OpenAPI 3.0.x and 3.1.x",
            "convert it to OpenAPI 3",
            "OPENAPI_UNSUPPORTED_VERSION",
        ],
    );
    refused(
        &["broken.yaml", "--prefix", "b"],
        &["cannot import broken.yaml", "not valid YAML", "line 2"],
    );
    refused(
        &["missing.yaml", "--prefix", "m"],
        &["cannot read missing.yaml", "check the path"],
    );
    refused(
        &["petstore.yaml", "--prefix", "pets/v1"],
        &["--prefix", "`pets/v1` cannot start a tool name"],
    );
    refused(&["petstore.yaml", "--prefix", ""], &["--prefix is empty"]);
    refused(
        &["petstore.yaml", "--prefix", "p", "--base-url", "ftp://x"],
        &["--base-url", "not an absolute http(s) URL"],
    );
    refused(
        &["file:///etc/passwd", "--prefix", "p"],
        &["only http and https URLs"],
    );
}

/// Serves one HTTP response on a local port; returns the port.
fn serve_once(response: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(&response);
    });
    port
}

fn response(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n{body}").into_bytes()
}

#[test]
fn import_fetches_only_the_url_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let doc = r#"{"openapi": "3.1.0", "info": {"title": "Served", "version": "2"},
      "servers": [{"url": "/api/v3"}],
      "paths": {"/items/{id}": {"get": {"operationId": "getItem",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}]}}}}"#;
    let port = serve_once(response(
        "200 OK",
        &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            doc.len()
        ),
        doc,
    ));
    // Credentials in the URL are used, never printed.
    let url = format!("http://ana:hunter2@127.0.0.1:{port}/spec.json?token=s3cr3t");
    let v = json_of(&import(dir.path(), &[&url, "--prefix", "served", "--json"]));
    assert_eq!(v["document"]["openapi"], "3.1.0");
    assert_eq!(
        v["document"]["source"],
        format!("http://127.0.0.1:{port}/spec.json?…")
    );
    let tool = &v["tools"][0];
    assert_eq!(tool["name"], "served.getItem");
    // A relative server URL is relative to where the document came from.
    assert_eq!(
        tool["base_url"]["url"],
        format!("http://127.0.0.1:{port}/api/v3")
    );
    assert_eq!(tool["base_url"]["relative"], false);
    let all = v.to_string();
    assert!(!all.contains("hunter2") && !all.contains("s3cr3t"), "{all}");

    let port = serve_once(response("404 Not Found", "Content-Length: 0\r\n", ""));
    let o = import(
        dir.path(),
        &[
            &format!("http://127.0.0.1:{port}/nope.yaml?key=s3cr3t"),
            "--prefix",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("cannot fetch http://127.0.0.1:{port}/nope.yaml?…"))
            && err.contains("404 Not Found")
            && !err.contains("s3cr3t"),
        "{err}"
    );

    // Over the size hilo reads: refused from the announced length, before reading a byte.
    let port = serve_once(response("200 OK", "Content-Length: 70000000\r\n", ""));
    let o = import(
        dir.path(),
        &[
            &format!("http://127.0.0.1:{port}/huge.json"),
            "--prefix",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("64 MiB"), "{}", text(&o.stderr));
}

/// GitHub's description (`@octokit/openapi`, installed in `.ci/openapi` by `.ci/run`):
/// more than a thousand tools, and the command finishes.
#[test]
fn import_github_description() {
    let file =
        root().join(".ci/openapi/node_modules/@octokit/openapi/generated/api.github.com.json");
    if !file.is_file() {
        assert!(
            std::env::var_os("HILO_OPENAPI_REQUIRE").is_none(),
            "{} is missing and HILO_OPENAPI_REQUIRE is set: run `npm ci` in .ci/openapi",
            file.display()
        );
        println!(
            "skipped: {} is missing; run `npm ci` in .ci/openapi",
            file.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = file.to_str().unwrap();
    let v = json_of(&import(dir.path(), &[path, "--prefix", "github", "--json"]));
    let tools = v["tools"].as_array().unwrap();
    assert!(tools.len() > 1_000, "{} tools", tools.len());
    assert!(tools.iter().any(|t| t["name"] == "github.repos_get"));

    let o = import(
        dir.path(),
        &[path, "--prefix", "github", "--operations", "issues"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines = squeezed(&out);
    let rows: Vec<&String> = lines.iter().filter(|l| l.starts_with("github.")).collect();
    assert!(rows.len() > 20, "{out}");
    assert!(
        rows.iter().any(|r| r.starts_with(
            "github.issues_create POST /repos/{owner}/{repo}/issues dangerous owner*, repo*, body*"
        )),
        "{out}"
    );
    assert!(lines.last().unwrap().ends_with("filtered out"), "{out}");
}
