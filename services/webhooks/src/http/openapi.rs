//! The admin API's OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]`
//! annotations and the types of [`super::api`], served at `/v1/openapi.json` and checked in
//! as `docs/openapi/webhooks.json`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use kizuna::http::openapi::{add_bearer_scheme, render};
use kizuna::http::problem::{Problem, add_default_problem_responses};
use utoipa::OpenApi;

/// Name of the security scheme of the admin API.
pub const ADMIN_TOKEN: &str = kizuna::http::openapi::ADMIN_TOKEN;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kizuna webhooks",
        description = "The admin API of kizuna-webhooks, which posts the engine's outputs to subscribers as Standard Webhooks: create, list, pause, resume and delete subscriptions, rotate their secrets, replay, and read the delivery log and the dead letters. Every error is RFC 9457 problem details (application/problem+json).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "subscriptions", description = "Webhook subscriptions, behind the bearer token http.admin_token"),
        (name = "operations", description = "Metrics, probes and this description"),
    ),
    components(schemas(Problem)),
)]
struct WebhooksDoc;

/// The admin API's document: its header, the routes' operations, the admin scheme, and a
/// problem as the `default` response of every operation.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = WebhooksDoc::openapi();
    doc.merge(paths);
    add_bearer_scheme(
        &mut doc,
        ADMIN_TOKEN,
        "The admin token (`http.admin_token`). A 401 answers `WWW-Authenticate: Bearer realm=\"kizuna\"`; with no token configured the admin API answers 403.",
    );
    add_default_problem_responses(&mut doc);
    doc
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| render(&super::openapi_document()));

/// This API's OpenAPI 3.1 description.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kizuna::http::openapi::check_checked_in;

    #[test]
    fn the_checked_in_openapi_document_is_the_generated_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi/webhooks.json");
        if let Err(e) = check_checked_in(&path, &super::super::openapi_document()) {
            panic!("{e}");
        }
    }
}
