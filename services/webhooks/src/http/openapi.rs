//! The admin API's OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]`
//! annotations and the types of [`super::api`], served at `/v1/openapi.json` and checked in
//! as `docs/openapi/webhooks.json`.

use kizuna::http::openapi::{add_admin_token_scheme, assemble, header};

/// Name of the security scheme of the admin API.
pub const ADMIN_TOKEN: &str = kizuna::http::openapi::ADMIN_TOKEN;

/// The admin API's document: its header, the routes' operations, the admin scheme, and a
/// problem as the `default` response of every operation.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = assemble(
        header(
            "Kizuna webhooks",
            "The admin API of kizuna-webhooks, which posts the engine's outputs to subscribers as Standard Webhooks: create, list, pause, resume and delete subscriptions, rotate their secrets, replay, and read the delivery log and the dead letters. Every error is RFC 9457 problem details (application/problem+json).",
            &[(
                "subscriptions",
                "Webhook subscriptions, behind the bearer token http.admin_token",
            )],
        ),
        paths,
    );
    add_admin_token_scheme(&mut doc);
    doc
}

kizuna::openapi_endpoint!(super::openapi_document(), "webhooks.json");
