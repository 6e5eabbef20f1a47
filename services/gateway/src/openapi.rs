//! The gateway's OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]`
//! annotations (`routes`) and the types of [`crate::api`], served at `/v1/openapi.json` and
//! checked in as `docs/openapi/gateway.json`.

use kizuna::http::openapi::{add_bearer_scheme, assemble, header};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

/// The gateway's document: its header, the routes' operations, the signature schemes, and a
/// problem as the `default` response of every operation.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = assemble(
        header(
            "Kizuna gateway",
            "Signed platform webhooks (Shopify, Zendesk, Typeform) and Kizuna's own JSON in, kizuna.v1 input events out. A 200 is sent only after the broker acknowledged every event (acks=all, idempotent producer). Every refusal is RFC 9457 problem details (application/problem+json).",
            &[
                (
                    "webhooks",
                    "Platform webhooks, each verified with the platform's own signature on the raw body",
                ),
                ("events", "Kizuna's own InputEvent JSON"),
            ],
        ),
        paths,
    );
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

kizuna::openapi_endpoint!(crate::routes::openapi_document(), "gateway.json");
