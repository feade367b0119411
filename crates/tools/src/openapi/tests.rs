//! Unit tests of the OpenAPI import: versions, references (cycles, bombs, remote), schemas,
//! parameter names, styles and encodings, bodies, security and base URLs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

use super::*;

fn doc(v: Value) -> Document {
    load(&v.to_string()).unwrap()
}

fn import(v: Value) -> Import {
    operations(
        &doc(v),
        &Select {
            prefix: "t".into(),
            ..Select::default()
        },
    )
    .unwrap()
}

fn api(paths: Value, components: Value) -> Value {
    json!({"openapi": "3.0.3", "info": {"title": "t", "version": "1"},
           "servers": [{"url": "https://api.example.com/v1/"}],
           "paths": paths, "components": components})
}

fn only(i: &Import) -> &Operation {
    assert_eq!(i.tools.len(), 1, "{:?}", i.skipped);
    &i.tools[0]
}

#[test]
fn versions_and_syntax() {
    let e = load("swagger: '2.0'\ninfo: {title: x, version: '1'}\npaths: {}\n").unwrap_err();
    assert_eq!(e.code(), "OPENAPI_UNSUPPORTED_VERSION");
    assert!(
        e.to_string().contains("Swagger 2.0") && e.to_string().contains("swagger2openapi"),
        "{e}"
    );
    let e = load("openapi: 3.2.0\npaths: {}\n").unwrap_err();
    assert!(e.to_string().contains("OpenAPI 3.2.0"), "{e}");
    let e = load("title: not an api\n").unwrap_err();
    assert!(e.to_string().contains("no `openapi` field"), "{e}");
    let e = load("{\"openapi\": \"3.0.0\",").unwrap_err();
    assert_eq!(e.code(), "OPENAPI_INVALID");
    assert!(e.to_string().contains("line 1"), "{e}");
    let e = load("openapi: 3.1.0\npaths: [1]\n").unwrap_err();
    assert_eq!(e.pointer(), Some("/paths"));
    let d = load("openapi: 3.1.0\ninfo: {title: Y, version: '1'}\npaths: {}\n").unwrap();
    assert!(d.is_3_1() && d.title() == Some("Y"));
    assert_eq!(
        d.digest(),
        digest_of("openapi: 3.1.0\ninfo: {title: Y, version: '1'}\npaths: {}\n")
    );
    // Unquoted `3.0` in YAML is a number.
    assert_eq!(load("openapi: 3.0\npaths: {}\n").unwrap().version(), "3.0");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let e = load(&format!("{{\"openapi\": \"3.0.0\", \"x\": {deep}}}")).unwrap_err();
    assert_eq!(e.code(), "OPENAPI_INVALID");
    assert_eq!(
        load(&" ".repeat(MAX_DOCUMENT_BYTES + 1))
            .unwrap_err()
            .code(),
        "OPENAPI_TOO_LARGE"
    );
}

#[test]
fn yaml_alias_bomb_is_refused() {
    let mut text =
        String::from("openapi: 3.0.0\npaths: {}\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = load(&text).unwrap_err();
    assert_eq!(e.code(), "OPENAPI_INVALID", "{e}");
}

#[test]
fn names_collide_deterministically() {
    let i = import(api(
        json!({
            "/a": {"get": {"operationId": "x/y"}, "post": {"operationId": "x_y"}},
            "/b/{id}": {"get": {}, "delete": {"operationId": "x/y"}},
        }),
        json!({}),
    ));
    let names: Vec<&str> = i.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["t.x_y", "t.x_y_2", "t.get_b_id", "t.x_y_3"]);
    assert!(i.tools[1].notes.iter().any(|n| n.contains("already taken")));
}

#[test]
fn cyclic_schema_is_inlined_to_a_bound() {
    let i = import(api(
        json!({"/tree": {"post": {"operationId": "put", "requestBody": {"required": true, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}),
        json!({"schemas": {"Node": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}}}),
    ));
    let op = only(&i);
    let body = &op.input_schema["properties"]["body"];
    let level2 = &body["properties"]["children"]["items"];
    assert_eq!(level2["type"], "object");
    let below = &level2["properties"]["children"]["items"];
    assert_eq!(below, &json!({"description": "(recursive: Node)"}));
    assert!(
        op.notes.iter().any(|n| n.contains("recursive")),
        "{:?}",
        op.notes
    );
    assert!(jsonschema::validator_for(&op.input_schema).is_ok());
}

/// Ten references to a schema with ten references to … nine levels: 10^9 leaves if inlined,
/// as the request body of `operations` operations.
fn bomb(operations: usize) -> Value {
    let mut schemas = serde_json::Map::new();
    schemas.insert("L0".into(), json!({"type": "string", "enum": ["a", "b"]}));
    for level in 1..10 {
        let refs: Vec<Value> = (0..10)
            .map(|_| json!({"$ref": format!("#/components/schemas/L{}", level - 1)}))
            .collect();
        schemas.insert(format!("L{level}"), json!({"anyOf": refs}));
    }
    let paths: serde_json::Map<String, Value> = (0..operations)
        .map(|n| {
            (
                format!("/p{n}"),
                json!({"post": {"requestBody": {"content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/L9"}}}}}}),
            )
        })
        .collect();
    api(Value::Object(paths), json!({"schemas": schemas}))
}

#[test]
fn reference_bomb_is_bounded() {
    let started = std::time::Instant::now();
    let i = import(bomb(2));
    assert_eq!(i.tools.len(), 2);
    assert!(started.elapsed().as_secs() < 60, "bounded work");
    let op = &i.tools[0];
    assert!(
        op.notes
            .iter()
            .any(|n| n.contains("this operation's schema reached")),
        "{:?}",
        op.notes
    );
    // Each visited object is at most a few nodes of output.
    let nodes = op.input_schema.to_string().matches('{').count();
    assert!(nodes <= 2 * MAX_SCHEMA_NODES_PER_OPERATION, "{nodes}");
    assert!(jsonschema::validator_for(&op.input_schema).is_ok());
}

#[test]
fn the_import_budget_bounds_all_operations_together() {
    let budgets = schema::Budgets {
        per_operation: 1_000,
        per_import: 5_000,
    };
    let select = Select {
        prefix: "t".into(),
        ..Select::default()
    };
    let i = import::operations_within(&doc(bomb(20)), &select, budgets).unwrap();
    assert_eq!(i.tools.len(), 20);
    assert!(
        i.tools[0]
            .notes
            .iter()
            .any(|n| n.contains("this operation's schema reached hilo's bound (1000 nodes)"))
    );
    // Five operations spend the import's budget; the rest accept any body, and say why.
    let last = &i.tools[19];
    assert!(
        last.notes
            .iter()
            .any(|n| n.contains("the import's schemas reached hilo's bound (5000 nodes)")),
        "{:?}",
        last.notes
    );
    assert_eq!(
        last.input_schema["properties"]["body"],
        json!({"description": "(not expanded: too large)"})
    );
}

#[test]
fn costly_patterns_are_dropped() {
    let i = import(api(
        json!({"/p": {"get": {"parameters": [
            {"name": "a", "in": "query", "schema": {"type": "string", "pattern": "^.{1,2097152}"}},
            {"name": "b", "in": "query", "schema": {"type": "string", "pattern": "^[é]{2,3}[a-z]{1,1000}$"}},
            {"name": "d", "in": "query", "schema": {"type": "string", "pattern": "\\é{5000}"}},
            {"name": "c", "in": "query", "schema": {"type": "string", "pattern": "\\{99999"}}]}}}),
        json!({}),
    ));
    let props = &only(&i).input_schema["properties"];
    assert!(props["a"].get("pattern").is_none());
    assert_eq!(props["b"]["pattern"], "^[é]{2,3}[a-z]{1,1000}$");
    assert!(props["d"].get("pattern").is_none());
    assert_eq!(props["c"]["pattern"], "\\{99999");
    assert!(
        only(&i)
            .notes
            .iter()
            .any(|n| n.contains("repetition count over 1000"))
    );
}

#[test]
fn remote_and_broken_refs() {
    let i = import(api(
        json!({
            "/remote": {"get": {"parameters": [{"$ref": "common.yaml#/parameters/Id"}]}},
            "/schema": {"get": {"parameters": [{"name": "q", "in": "query",
                "schema": {"$ref": "https://example.com/s.json"}}]}},
            "/nowhere": {"get": {"parameters": [{"$ref": "#/components/parameters/Nope"}]}},
            "/loop": {"get": {"parameters": [{"$ref": "#/components/parameters/A"}]}},
            "/missing-schema": {"get": {"parameters": [{"name": "q", "in": "query",
                "schema": {"$ref": "#/components/schemas/Nope"}}]}},
        }),
        json!({"parameters": {"A": {"$ref": "#/components/parameters/B"},
                              "B": {"$ref": "#/components/parameters/A"}}}),
    ));
    let reason = |p: &str| {
        i.skipped
            .iter()
            .find(|s| s.path == p)
            .map(|s| s.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("/remote")
            .contains("`$ref: common.yaml#/parameters/Id` at `/paths/~1remote/get/parameters/0`"),
        "{}",
        reason("/remote")
    );
    assert!(reason("/remote").contains("bundle"));
    assert!(
        reason("/schema").contains("https://example.com/s.json")
            && reason("/schema").contains("/parameters/0/schema")
    );
    assert!(
        reason("/nowhere").contains("nothing is at that pointer"),
        "{}",
        reason("/nowhere")
    );
    assert!(reason("/loop").contains("loop"), "{}", reason("/loop"));
    let op = only(&i);
    assert_eq!(op.path, "/missing-schema");
    assert!(op.notes.iter().any(|n| n.contains("points nowhere")));
}

#[test]
fn schemas_become_json_schema() {
    let i = import(api(
        json!({"/s": {"post": {"requestBody": {"content": {"application/json": {"schema": {
        "type": "object",
        "required": ["id", "name"],
        "discriminator": {"propertyName": "kind"},
        "x-internal": true,
        "example": {"name": "n"},
        "properties": {
            "id": {"type": "integer", "readOnly": true},
            "name": {"type": "string", "nullable": true, "enum": ["a", "b"]},
            "size": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
            "file": {"type": "file"},
            "tuple": {"type": "array", "items": [{"type": "string"}]},
            "bad": {"type": "string", "pattern": "(?<=x"}
        }}}}}}}}),
        json!({}),
    ));
    let body = &only(&i).input_schema["properties"]["body"];
    assert_eq!(
        body["required"],
        json!(["name"]),
        "readOnly left out of a request"
    );
    assert!(body.get("properties").unwrap().get("id").is_none());
    assert!(
        body.get("discriminator").is_none()
            && body.get("x-internal").is_none()
            && body.get("example").is_none()
    );
    assert_eq!(
        body["properties"]["name"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(body["properties"]["name"]["enum"], json!(["a", "b", null]));
    assert_eq!(
        body["properties"]["size"],
        json!({"type": "number", "exclusiveMinimum": 0})
    );
    assert_eq!(body["properties"]["file"], json!({}));
    assert_eq!(
        body["properties"]["tuple"]["prefixItems"],
        json!([{"type": "string"}])
    );
    assert!(
        body["properties"]["bad"].get("pattern").is_none(),
        "{}",
        body["properties"]["bad"]
    );
    assert!(
        only(&i).notes.iter().any(|n| n.contains("pattern")),
        "{:?}",
        only(&i).notes
    );
}

#[test]
fn parameter_names_collide_by_location() {
    let i = import(api(
        json!({"/items/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                           {"name": "trace", "in": "header", "schema": {"type": "string"}}],
            "put": {
                "parameters": [
                    {"name": "id", "in": "query", "schema": {"type": "string"}},
                    {"name": "body", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "id", "in": "cookie", "schema": {"type": "string"}},
                    {"name": "trace", "in": "header", "description": "op-level wins", "schema": {"type": "boolean"}},
                    {"name": "Content-Type", "in": "header", "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}}}),
        json!({}),
    ));
    let op = only(&i);
    let props: Vec<&String> = op.input_schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        props,
        ["id", "query_id", "query_body", "trace", "cookie_id", "body"]
    );
    assert_eq!(op.input_schema["required"], json!(["id", "query_body"]));
    assert_eq!(op.input_schema["properties"]["trace"]["type"], "boolean");
    assert_eq!(
        op.input_schema["properties"]["trace"]["description"],
        "op-level wins"
    );
    let parts = op
        .request(&json!({"id": 5, "query_id": "a&b=c", "query_body": "q", "trace": true, "cookie_id": "x y;z", "body": {"k": 1}}))
        .unwrap();
    assert_eq!(parts.path, "/items/5");
    assert_eq!(parts.query_string(), "id=a%26b%3Dc&body=q");
    assert_eq!(parts.headers, [("trace".to_string(), "true".to_string())]);
    assert_eq!(parts.cookie_header().as_deref(), Some("id=x%20y%3Bz"));
    assert_eq!(
        parts.body,
        Some(RequestBody::Json {
            content_type: "application/json".into(),
            value: json!({"k": 1})
        })
    );
    assert_eq!(
        parts.url("https://h/v1/"),
        "https://h/v1/items/5?id=a%26b%3Dc&body=q"
    );
    assert_eq!(op.class, hilo_core::ToolClass::Dangerous);
}

fn styled(location: &str, style: &str, explode: bool) -> Operation {
    let path = if location == "path" { "/x/{v}/y" } else { "/x" };
    let i = import(api(
        json!({path: {"get": {"parameters": [
            {"name": "v", "in": location, "style": style, "explode": explode, "schema": {}}]}}}),
        json!({}),
    ));
    only(&i).clone()
}

#[test]
fn path_styles_and_encoding() {
    let arr = json!(["a", "b c"]);
    let obj = json!({"r": 1, "g": "x/y"});
    let cases = [
        ("simple", false, json!("a/b?c#d"), "/x/a%2Fb%3Fc%23d/y"),
        ("simple", false, arr.clone(), "/x/a,b%20c/y"),
        ("simple", false, obj.clone(), "/x/r,1,g,x%2Fy/y"),
        ("simple", true, obj.clone(), "/x/r=1,g=x%2Fy/y"),
        ("label", false, arr.clone(), "/x/.a,b%20c/y"),
        ("label", true, arr.clone(), "/x/.a.b%20c/y"),
        ("matrix", false, json!(5), "/x/;v=5/y"),
        ("matrix", false, arr.clone(), "/x/;v=a,b%20c/y"),
        ("matrix", true, arr.clone(), "/x/;v=a;v=b%20c/y"),
        ("matrix", true, obj.clone(), "/x/;r=1;g=x%2Fy/y"),
        ("simple", false, json!(true), "/x/true/y"),
        ("simple", false, json!(2.5), "/x/2.5/y"),
        ("simple", false, json!("é"), "/x/%C3%A9/y"),
    ];
    for (style, explode, value, want) in cases {
        let op = styled("path", style, explode);
        let parts = op.request(&json!({ "v": value })).unwrap();
        assert_eq!(parts.path, want, "{style} {explode} {value}");
    }
    let op = styled("path", "simple", false);
    for bad in [json!(".."), json!("."), json!("")] {
        let e = op.request(&json!({ "v": bad })).unwrap_err();
        assert_eq!(e.code(), "INVALID_INPUT");
        assert!(e.to_string().contains("argument `v`"), "{e}");
    }
    // `..` inside a longer value is one encoded segment; `../x` cannot climb.
    assert_eq!(
        op.request(&json!({"v": "../x"})).unwrap().path,
        "/x/..%2Fx/y"
    );
    let e = op.request(&json!({})).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.get_x_v_y: argument `v`: required"),
        "{e}"
    );
    let e = op.request(&json!({"v": null})).unwrap_err();
    assert!(e.to_string().contains("missing or null"), "{e}");
    let e = op.request(&json!({"v": 1, "w": 2})).unwrap_err();
    assert!(
        e.to_string().contains("argument `w`") && e.to_string().contains("`v`"),
        "{e}"
    );
    // A GET takes no body: one given is refused, not dropped.
    let e = op.request(&json!({"v": 1, "body": {"a": 1}})).unwrap_err();
    assert!(e.to_string().contains("argument `body`"), "{e}");
}

#[test]
fn query_styles_and_encoding() {
    let arr = json!(["a", "b,c"]);
    let obj = json!({"R": 100, "G": "x y"});
    let cases = [
        ("form", true, json!("a b&c=d+e"), "v=a%20b%26c%3Dd%2Be"),
        ("form", true, arr.clone(), "v=a&v=b%2Cc"),
        ("form", false, arr.clone(), "v=a,b%2Cc"),
        ("form", true, obj.clone(), "R=100&G=x%20y"),
        ("form", false, obj.clone(), "v=R,100,G,x%20y"),
        ("form", true, json!([]), "v="),
        ("spaceDelimited", false, arr.clone(), "v=a%20b%2Cc"),
        ("pipeDelimited", false, arr.clone(), "v=a|b%2Cc"),
        ("pipeDelimited", true, arr.clone(), "v=a&v=b%2Cc"),
        ("deepObject", true, obj.clone(), "v[R]=100&v[G]=x%20y"),
        (
            "deepObject",
            true,
            json!({"a": {"b": [1, 2]}}),
            "v[a][b][0]=1&v[a][b][1]=2",
        ),
        ("form", true, json!(false), "v=false"),
    ];
    for (style, explode, value, want) in cases {
        let op = styled("query", style, explode);
        let parts = op.request(&json!({ "v": value })).unwrap();
        assert_eq!(parts.query_string(), want, "{style} {explode} {value}");
    }
    // Absent and null optional parameters are left out.
    let op = styled("query", "form", true);
    assert!(op.request(&json!({})).unwrap().query.is_empty());
    assert!(op.request(&json!({"v": null})).unwrap().query.is_empty());
    assert!(op.request(&Value::Null).unwrap().query.is_empty());
}

#[test]
fn headers_cookies_and_reserved() {
    let op = styled("header", "simple", false);
    assert_eq!(
        op.request(&json!({"v": [1, 2]})).unwrap().headers[0].1,
        "1,2"
    );
    assert_eq!(
        op.request(&json!({"v": {"a": 1, "b": 2}})).unwrap().headers[0].1,
        "a,1,b,2"
    );
    let e = op
        .request(&json!({"v": "x\r\nSet-Cookie: a=b"}))
        .unwrap_err();
    assert!(e.to_string().contains("control characters"), "{e}");
    let op = styled("header", "simple", true);
    assert_eq!(
        op.request(&json!({"v": {"a": 1, "b": 2}})).unwrap().headers[0].1,
        "a=1,b=2"
    );
    let op = styled("cookie", "form", true);
    let parts = op.request(&json!({"v": ["a", "b"]})).unwrap();
    assert_eq!(parts.cookie_header().as_deref(), Some("v=a; v=b"));
    let op = styled("cookie", "form", false);
    assert_eq!(
        op.request(&json!({"v": ["a", "b;c"]}))
            .unwrap()
            .cookie_header()
            .as_deref(),
        Some("v=a,b%3Bc")
    );

    let i = import(api(
        json!({"/r": {"get": {"parameters": [
            {"name": "path", "in": "query", "allowReserved": true, "schema": {"type": "string"}},
            {"name": "filter", "in": "query", "content": {"application/json": {"schema": {"type": "object"}}}}]}}}),
        json!({}),
    ));
    let parts = only(&i)
        .request(&json!({"path": "/a/b:c?d&e=f#g", "filter": {"a": [1]}}))
        .unwrap();
    assert_eq!(
        parts.query_string(),
        "path=/a/b:c?d%26e%3Df%23g&filter=%7B%22a%22%3A%5B1%5D%7D"
    );
}

#[test]
fn bodies_json_form_and_unsupported() {
    let i = import(api(
        json!({
            "/upload": {"post": {"requestBody": {"required": true, "content": {
                "multipart/form-data": {"schema": {"type": "object"}},
                "application/octet-stream": {}}}}},
            "/maybe": {"put": {"requestBody": {"content": {"text/plain": {}}}}},
            "/form": {"post": {"requestBody": {"required": true, "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "object",
                    "properties": {"a": {"type": "string"}}}}}}}},
            "/vendor": {"patch": {"requestBody": {"content": {
                "application/xml": {}, "application/vnd.api+json; charset=utf-8": {"schema": {"type": "object"}}}}}},
        }),
        json!({}),
    ));
    let up = &i.skipped[0];
    assert_eq!((up.method.as_str(), up.path.as_str()), ("POST", "/upload"));
    assert!(
        up.reason
            .contains("multipart/form-data, application/octet-stream"),
        "{}",
        up.reason
    );
    let maybe = i.tools.iter().find(|t| t.path == "/maybe").unwrap();
    assert!(maybe.body.is_none() && maybe.notes.iter().any(|n| n.contains("never sends")));
    let form = i.tools.iter().find(|t| t.path == "/form").unwrap();
    let parts = form
        .request(&json!({"body": {"a": "x y&z", "tags": ["p", "q"], "meta": {"k": "v"}}}))
        .unwrap();
    assert_eq!(
        parts.body,
        Some(RequestBody::Form {
            content_type: "application/x-www-form-urlencoded".into(),
            text: "a=x%20y%26z&tags=p&tags=q&meta[k]=v".into()
        })
    );
    let e = form.request(&json!({})).unwrap_err();
    assert!(
        e.to_string().contains("argument `body`") && e.to_string().contains("required"),
        "{e}"
    );
    let vendor = i.tools.iter().find(|t| t.path == "/vendor").unwrap();
    assert_eq!(
        vendor.body.as_ref().unwrap().content_type,
        "application/vnd.api+json; charset=utf-8"
    );
    assert!(vendor.request(&json!({})).unwrap().body.is_none());
}

#[test]
fn security_and_base_urls() {
    let mut d = api(
        json!({
            "/a": {"get": {}},
            "/b": {"servers": [{"url": "/rel"}], "post": {"security": [{"key": []}, {}]}},
            "/c": {"delete": {"security": [], "servers": [{"url": "https://{region}.example.com/{v}",
                "variables": {"region": {"default": "eu"}, "v": {"default": "v2"}}}]}},
            "/d": {"get": {"security": [{"oauth": ["repo"], "basic": []}, {"nope": []}]}},
        }),
        json!({"securitySchemes": {
            "bearer": {"type": "http", "scheme": "Bearer", "bearerFormat": "JWT"},
            "key": {"type": "apiKey", "in": "cookie", "name": "sid"},
            "basic": {"$ref": "#/components/securitySchemes/basic2"},
            "basic2": {"type": "http", "scheme": "basic"},
            "oauth": {"type": "oauth2", "flows": {"authorizationCode": {
                "authorizationUrl": "https://x/auth", "tokenUrl": "https://x/token", "scopes": {}}}}}}),
    );
    d["security"] = json!([{"bearer": []}]);
    let i = import(d);
    let by = |p: &str| i.tools.iter().find(|t| t.path == p).unwrap();
    assert_eq!(
        by("/a").security,
        [SecurityRequirement {
            schemes: vec![Scheme::Bearer {
                scheme: "bearer".into(),
                format: Some("JWT".into())
            }]
        }]
    );
    assert_eq!(
        by("/a").base_url,
        BaseUrl {
            url: "https://api.example.com/v1".into(),
            source: BaseUrlSource::Document,
            relative: false
        }
    );
    assert_eq!(
        by("/b").security[0].schemes,
        [Scheme::ApiKey {
            scheme: "key".into(),
            location: Location::Cookie,
            name: "sid".into()
        }]
    );
    assert!(
        by("/b").security[1].schemes.is_empty(),
        "anonymous alternative"
    );
    assert_eq!(
        by("/b").base_url,
        BaseUrl {
            url: "/rel".into(),
            source: BaseUrlSource::PathItem,
            relative: true
        }
    );
    assert!(by("/c").security.is_empty());
    assert_eq!(by("/c").base_url.url, "https://eu.example.com/v2");
    assert_eq!(by("/c").base_url.source, BaseUrlSource::Operation);
    let d = &by("/d").security;
    assert_eq!(
        d.len(),
        1,
        "the alternative naming an unknown scheme is left out"
    );
    assert!(
        matches!(&d[0].schemes[0], Scheme::OAuth2 { scopes, token_url: Some(t), .. } if scopes == &["repo"] && t == "https://x/token")
    );
    assert_eq!(
        d[0].schemes[1],
        Scheme::Basic {
            scheme: "basic".into()
        }
    );
    assert!(by("/d").notes.iter().any(|n| n.contains("`nope`")));

    let bare = json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/x": {"head": {}}}});
    let i = import(bare.clone());
    assert_eq!(
        only(&i).base_url,
        BaseUrl {
            url: "/".into(),
            source: BaseUrlSource::Default,
            relative: true
        }
    );
    assert_eq!(only(&i).class, hilo_core::ToolClass::Safe);
    let sel = Select {
        prefix: "p".into(),
        operations: vec![],
        base_url: Some("https://h/api/".into()),
    };
    let i = operations(&doc(bare.clone()), &sel).unwrap();
    assert_eq!(
        only(&i).base_url,
        BaseUrl {
            url: "https://h/api".into(),
            source: BaseUrlSource::Select,
            relative: false
        }
    );
    let bad = Select {
        prefix: "bad prefix".into(),
        ..Select::default()
    };
    assert_eq!(
        operations(&doc(bare.clone()), &bad).unwrap_err().code(),
        "OPENAPI_INVALID"
    );
    let bad = Select {
        base_url: Some("ftp://h".into()),
        ..Select::default()
    };
    assert!(
        operations(&doc(bare), &bad)
            .unwrap_err()
            .to_string()
            .contains("ftp://h")
    );
}

#[test]
fn path_templates_and_parameter_edge_cases() {
    let i = import(api(
        json!({"/u/{user}/f/{file}": {"get": {"parameters": [
            {"name": "file", "in": "path", "schema": {"type": "string"}},
            {"name": "ghost", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "old", "in": "formData", "schema": {"type": "string"}}]}}}),
        json!({}),
    ));
    let op = only(&i);
    assert_eq!(op.input_schema["required"], json!(["file", "user"]));
    assert!(
        op.notes.iter().any(|n| n.contains("`{user}`")),
        "{:?}",
        op.notes
    );
    assert!(op.notes.iter().any(|n| n.contains("`ghost`")));
    assert!(op.notes.iter().any(|n| n.contains("formData")));
    let parts = op
        .request(&json!({"user": "a b", "file": "x.txt"}))
        .unwrap();
    assert_eq!(parts.path, "/u/a%20b/f/x.txt");
}

#[test]
fn refs_with_escapes_and_31_siblings() {
    let i = operations(
        &doc(
            json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"post": {"requestBody": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/a~1b%20c", "description": "from the sibling"}}}}},
                "parameters": [{"name": "q", "in": "query", "schema": {
                    "$ref": "#/components/schemas/a~1b%20c", "maxLength": 3}}]}},
            "components": {"schemas": {"a/b c": {"type": ["string", "null"], "description": "orig",
                "examples": ["x"], "maxLength": 10}}}}),
        ),
        &Select::default(),
    )
    .unwrap();
    let op = only(&i);
    assert_eq!(op.name, "post_a", "no prefix: no dot");
    assert_eq!(
        op.input_schema["properties"]["body"],
        json!({"type": ["string", "null"], "description": "from the sibling", "maxLength": 10})
    );
    // A constraint on both sides keeps both.
    assert_eq!(
        op.input_schema["properties"]["q"],
        json!({"allOf": [{"type": ["string", "null"], "description": "orig", "maxLength": 10},
                         {"maxLength": 3}]})
    );
}

#[test]
fn filter_by_id_tag_and_name() {
    let d = api(
        json!({"/a": {"get": {"operationId": "list/a", "tags": ["alpha"]}, "post": {"operationId": "make"}},
               "/b": {"get": {"tags": ["beta"]}}}),
        json!({}),
    );
    let pick = |ops: &[&str]| {
        let s = Select {
            prefix: "t".into(),
            operations: ops.iter().map(|s| s.to_string()).collect(),
            base_url: None,
        };
        let i = operations(&doc(d.clone()), &s).unwrap();
        (
            i.tools.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            i.unmatched,
            i.filtered_out,
        )
    };
    assert_eq!(pick(&["list/a"]), (vec!["t.list_a".to_string()], vec![], 2));
    assert_eq!(
        pick(&["beta", "t.make"]),
        (vec!["t.make".to_string(), "t.get_b".to_string()], vec![], 1)
    );
    assert_eq!(
        pick(&["list_a", "typo"]),
        (vec!["t.list_a".to_string()], vec!["typo".to_string()], 2)
    );
}
