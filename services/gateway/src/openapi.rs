//! The gateway's OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]`
//! annotations (`routes`) and the types of [`crate::api`], served at `/v1/openapi.json` and
//! checked in as `docs/openapi/gateway.json`.

use kizuna::http::openapi::{add_bearer_scheme, assemble};
use kizuna::http::problem::Problem;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kizuna gateway",
        description = "Signed platform webhooks (Shopify, Zendesk, Typeform) and Kizuna's own JSON in, kizuna.v1 input events out. A 200 is sent only after the broker acknowledged every event (acks=all, idempotent producer). Every refusal is RFC 9457 problem details (application/problem+json).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "webhooks", description = "Platform webhooks, each verified with the platform's own signature on the raw body"),
        (name = "events", description = "Kizuna's own InputEvent JSON"),
        (name = "operations", description = "Metrics, probes and this description"),
    ),
    components(schemas(Problem)),
)]
struct GatewayDoc;

/// The gateway's document: its header, the routes' operations, the signature schemes, and a
/// problem as the `default` response of every operation.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = assemble(GatewayDoc::openapi(), paths);
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, header_name, what) in [
        (
            "shopifyHmac",
            "X-Shopify-Hmac-Sha256",
            "Base64 HMAC-SHA256 of the raw body with sources.shopify.secret",
        ),
        (
            "zendeskSignature",
            "X-Zendesk-Webhook-Signature",
            "Base64 HMAC-SHA256 of timestamp + raw body with sources.zendesk.secret",
        ),
        (
            "typeformSignature",
            "Typeform-Signature",
            "`sha256=` + base64 HMAC-SHA256 of the raw body with sources.typeform.secret",
        ),
    ] {
        components.add_security_scheme(
            name,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                header_name,
                what,
            ))),
        );
    }
    add_bearer_scheme(
        &mut doc,
        "kizunaToken",
        "sources.kizuna.token. A 401 answers `WWW-Authenticate: Bearer realm=\"kizuna-gateway\"`.",
    );
    doc
}

kizuna::openapi_endpoint!(crate::routes::openapi_document());

#[cfg(test)]
mod tests {
    #[test]
    fn the_checked_in_openapi_document_is_the_generated_one() {
        kizuna::http::openapi::assert_checked_in(
            env!("CARGO_MANIFEST_DIR"),
            "gateway.json",
            &crate::routes::openapi_document(),
        );
    }
}
