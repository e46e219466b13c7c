//! The OpenAPI document (`GET /api/openapi.json`, generated from the handlers by utoipa) and the
//! interactive documentation page (`GET /api/docs/`, Swagger UI from `assets/api-docs/`, embedded
//! in the binary; every URL in the page is relative, so it also works behind ingress).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts; paths and schemas are added as services are registered.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "HomeIQ API",
        description = "Home Assistant history, registry, live state changes and operations. Errors share one shape: `{\"error\": {\"code\", \"message\", \"field\"?}}`. Clients other than Home Assistant's ingress gateway send `Authorization: Bearer <http.api_token>` when a token is configured; every client is rate limited (429 with `Retry-After`).",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "registry", description = "Devices, entities, areas, floors, labels, integrations"),
        (name = "history", description = "Recorded states, aggregates and event statistics"),
        (name = "live", description = "State changes as they happen"),
        (name = "operations", description = "Health, metrics and configuration"),
        (name = "webhooks", description = "Signed webhooks triggered by state changes: targets, test deliveries, delivery log"),
        (name = "patterns", description = "Routines learned from the home's history, and the analysis runs that learn them"),
        (name = "suggestions", description = "Automations proposed from what was learned and from the registry: deploy to Home Assistant, dismiss, undo, versions"),
        (name = "import", description = "Importing Home Assistant's past: the states its recorder holds and its long-term statistics"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::default(),
        ]);
    }
}

/// Documents the answers of the middleware in [`super::guard`] on every operation they apply to:
/// 403 for a cross-site write (any method but `GET`/`HEAD`), 415 for a body that is not JSON.
pub(crate) fn document_guards(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut op.responses.responses;
            responses.entry("403".into()).or_insert_with(|| {
                error("Refused: the request's `Origin` is another site (or, without `http.api_token`, not the ingress gateway)").into()
            });
            if op.request_body.is_some() {
                responses.entry("415".into()).or_insert_with(|| {
                    error("The body is not declared `Content-Type: application/json`").into()
                });
            }
        }
    }
}

/// The rendered document.
pub(crate) struct OpenApiJson(pub crate::prepared::PreparedJson);

/// `GET /api/openapi.json`.
pub(crate) async fn openapi_json(
    request: HttpRequest,
    doc: web::Data<OpenApiJson>,
) -> HttpResponse {
    crate::http::prepared_json_ok(&request, &doc.0)
}

const INDEX: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>HomeIQ API</title>
  <link rel="stylesheet" href="swagger-ui.css">
</head>
<body>
  <div id="ui"></div>
  <script src="swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "../openapi.json", dom_id: "#ui", deepLinking: true });
  </script>
</body>
</html>
"##;

const BUNDLE_GZ: &[u8] = include_bytes!("../../assets/api-docs/swagger-ui-bundle.js.gz");
const CSS_GZ: &[u8] = include_bytes!("../../assets/api-docs/swagger-ui.css.gz");

/// `GET /api/docs`: to the page, keeping relative URLs working.
pub(crate) async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "docs/"))
        .finish()
}

/// `GET /api/docs/`: the Swagger UI page.
pub(crate) async fn docs_index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(INDEX)
}

fn gzipped(content_type: &'static str, body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_ENCODING, "gzip"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body)
}

/// `GET /api/docs/swagger-ui-bundle.js`.
pub(crate) async fn docs_bundle() -> HttpResponse {
    gzipped("text/javascript; charset=utf-8", BUNDLE_GZ)
}

/// `GET /api/docs/swagger-ui.css`.
pub(crate) async fn docs_css() -> HttpResponse {
    gzipped("text/css; charset=utf-8", CSS_GZ)
}

#[cfg(test)]
mod tests {
    /// The checked-in copy of the document, relative to the repository root.
    const CHECKED_IN: &str = "frontend/openapi.json";

    /// The panel's types are generated from `frontend/openapi.json` (the image's Node stage runs
    /// before the binary exists), so the checked-in copy must be the document the server serves,
    /// pretty-printed (utoipa keeps paths, schemas and properties sorted: the output is stable).
    /// `UPDATE_OPENAPI=1` rewrites it instead of failing.
    #[test]
    fn checked_in_openapi_document_is_current() {
        let mut doc = super::super::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        doc.push('\n');
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN);
        if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(&path, &doc).expect("write the OpenAPI document");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if checked_in == doc {
            return;
        }
        let (line, found, expected) = checked_in
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(doc.lines().map(Some).chain(std::iter::repeat(None)))
            .enumerate()
            .find(|(_, (found, expected))| found != expected)
            .map(|(i, (found, expected))| (i + 1, found, expected))
            .unwrap_or((0, None, None));
        panic!(
            "{CHECKED_IN} is not the server's OpenAPI document (line {line}: it has {found:?}, \
             the server {expected:?}).\nRefresh it and the panel's generated types with\n    \
             npm --prefix frontend run refresh:api\n(the document alone: UPDATE_OPENAPI=1 cargo \
             test --lib checked_in_openapi) and commit both.",
            found = found.unwrap_or("<end of file>"),
            expected = expected.unwrap_or("<end of document>"),
        );
    }
}
