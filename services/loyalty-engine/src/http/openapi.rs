//! The OpenAPI 3.1 description of the engine's HTTP API, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they read and write, served at
//! `/v1/openapi.json` and checked in as `docs/openapi/engine.json`.
//!
//! Also the helpers kizuna-gateway and kizuna-webhooks describe their APIs with: the bearer
//! security schemes, [`assemble`], [`openapi_endpoint!`](crate::openapi_endpoint) (the
//! `/v1/openapi.json` handler), and [`assert_checked_in`], which the three services' tests
//! call to fail when a checked-in document differs from the generated one
//! (`KIZUNA_WRITE_CONTRACTS=1` rewrites it instead).

use std::path::Path;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::problem;

/// Name of the security scheme of endpoints behind `http.admin_token` (kizuna-webhooks).
pub const ADMIN_TOKEN: &str = "adminToken";

/// Name of the engine's security scheme of bearer tokens (`http.tokens`).
pub const BEARER_TOKEN: &str = "bearerToken";

/// Name of the engine's security scheme of JWTs (`http.jwt`).
pub const JWT: &str = "jwt";

/// The engine's document: its header, the routes' operations, the admin scheme, and a
/// problem as the `default` response of every operation.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let header = header(
        "Kizuna loyalty engine",
        "A customer's loyalty state, points and timeline, redemptions, the points liability, a dry run of an event, and the admin API (tier overrides, recompute). Every error is RFC 9457 problem details (application/problem+json).",
        &[
            ("customers", "A customer's state, metrics and timeline"),
            (
                "points",
                "A customer's points and why, redemptions without double spend, the programme's liability",
            ),
            ("admin", "Operators' endpoints, behind the admin role"),
        ],
    );
    let mut doc = assemble(header, paths);
    add_role_schemes(&mut doc);
    doc
}

/// Adds [`BEARER_TOKEN`] and [`JWT`], the engine's two ways of showing a role. The role each
/// operation needs is in its description; `/metrics`, the probes and this document are open.
pub fn add_role_schemes(doc: &mut utoipa::openapi::OpenApi) {
    add_bearer_scheme(
        doc,
        BEARER_TOKEN,
        "A bearer token of http.tokens (stored as its SHA-256, with a name and a role: viewer < operator < admin), or the deprecated http.admin_token (an admin named `admin`). Customer reads need viewer, redemptions operator, tier overrides, adjustments and recomputes admin. No or an unknown token: 401 with `WWW-Authenticate: Bearer realm=\"kizuna\"`; a role too low: 403 `role-required` naming the role (`required_role`); nothing configured: 403 `access-not-configured`; admin calls over http.admin_requests_per_minute: 429 with `Retry-After`.",
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        JWT,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT of the identity provider of http.jwt, checked against its JWKS (iss, aud, exp required); its role claim (http.jwt.role_claim) names viewer, operator or admin, its name claim is what the audit records.",
                ))
                .build(),
        ),
    );
}

/// A service's document header: its title and description, the Apache-2.0 licence, the
/// crate's version, and its tags, then the `operations` tag every service has.
pub fn header(title: &str, description: &str, tags: &[(&str, &str)]) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::tag::TagBuilder;
    use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApiBuilder};
    let tag = |(name, description): (&str, &str)| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    };
    let tags = tags
        .iter()
        .copied()
        .chain([("operations", "Metrics, probes and this description")])
        .map(tag);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(title)
                .description(Some(description))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                ))
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .tags(Some(tags))
        .build()
}

/// A service's document: its header (`#[derive(OpenApi)]`) with the routes' operations, and a
/// problem as the `default` response of every operation.
pub fn assemble(
    header: utoipa::openapi::OpenApi,
    paths: utoipa::openapi::OpenApi,
) -> utoipa::openapi::OpenApi {
    let mut doc = header;
    doc.merge(paths);
    problem::add_default_problem_responses(&mut doc);
    doc
}

/// Adds [`ADMIN_TOKEN`], the bearer scheme of endpoints behind `http.admin_token`.
pub fn add_admin_token_scheme(doc: &mut utoipa::openapi::OpenApi) {
    add_bearer_scheme(
        doc,
        ADMIN_TOKEN,
        "The admin token (`http.admin_token`). A 401 answers `WWW-Authenticate: Bearer realm=\"kizuna\"`; with no token configured the admin API answers 403.",
    );
}

/// Adds an HTTP bearer security scheme to `doc`'s components.
pub fn add_bearer_scheme(doc: &mut utoipa::openapi::OpenApi, name: &str, description: &str) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        name,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        ),
    );
}

/// The document as served and checked in: pretty JSON with a final newline.
pub fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut text = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

crate::openapi_endpoint!(super::openapi_document(), "engine.json");

/// Defines `serve`, the handler of `GET /v1/openapi.json` with its OpenAPI operation: the
/// document `$document` builds, rendered once. Each service's `openapi` module calls it; with
/// the name of its file under `docs/openapi/`, also the test that the file is that document.
#[macro_export]
macro_rules! openapi_endpoint {
    ($document:expr, $checked_in:literal) => {
        $crate::openapi_endpoint!($document);

        #[cfg(test)]
        #[test]
        fn the_checked_in_openapi_document_is_the_generated_one() {
            $crate::http::openapi::assert_checked_in(
                env!("CARGO_MANIFEST_DIR"),
                $checked_in,
                &$document,
            );
        }
    };
    ($document:expr) => {
        static DOCUMENT: ::std::sync::LazyLock<String> =
            ::std::sync::LazyLock::new(|| $crate::http::openapi::render(&$document));

        /// This API's OpenAPI 3.1 description.
        #[utoipa::path(
            get,
            path = "/v1/openapi.json",
            tag = "operations",
            responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
        )]
        pub async fn serve() -> impl ::axum::response::IntoResponse {
            $crate::http::openapi::json_answer(DOCUMENT.as_str())
        }
    };
}

/// A rendered document as a `200 application/json` answer.
pub fn json_answer(document: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document)
}

/// Compares `doc` with the checked-in file at `path`: `Err` with a hint when they differ. With
/// `KIZUNA_WRITE_CONTRACTS=1` it writes the file instead.
pub fn check_checked_in(path: &Path, doc: &utoipa::openapi::OpenApi) -> Result<(), String> {
    let generated = render(doc);
    if std::env::var("KIZUNA_WRITE_CONTRACTS").as_deref() == Ok("1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        return std::fs::write(path, generated).map_err(|e| format!("{}: {e}", path.display()));
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    if checked_in == generated {
        Ok(())
    } else {
        Err(format!(
            "{} differs from the OpenAPI document the code generates; regenerate it with \
             tests/contracts/check.sh --write (or KIZUNA_WRITE_CONTRACTS=1 cargo test \
             -p kizuna-loyalty-engine -p kizuna-gateway -p kizuna-webhooks --lib \
             checked_in_openapi_document) and commit it",
            path.display()
        ))
    }
}

/// Panics when `docs/openapi/<name>` differs from `doc` (see [`check_checked_in`]); the test
/// of each service's document. `manifest_dir` is the crate's `CARGO_MANIFEST_DIR`.
pub fn assert_checked_in(manifest_dir: &str, name: &str, doc: &utoipa::openapi::OpenApi) {
    let path = Path::new(manifest_dir)
        .join("../../docs/openapi")
        .join(name);
    if let Err(e) = check_checked_in(&path, doc) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_its_problems() {
        let doc = crate::http::openapi_document();
        let json = serde_json::to_value(&doc).expect("serializes");
        assert_eq!(json["openapi"], "3.1.0");
        let paths = json["paths"].as_object().expect("paths");
        for path in [
            "/v1/customers/{id}",
            "/v1/customers/{id}/timeline",
            "/v1/customers/{id}/points",
            "/v1/customers/{id}/redemptions",
            "/v1/customers/{id}/redemptions/{key}/cancel",
            "/v1/programme/liability",
            "/v1/customers/{id}/tier-override",
            "/v1/evaluate",
            "/v1/admin/recompute",
            "/v1/customers/{id}/export",
            "/v1/openapi.json",
            "/metrics",
            "/healthz",
            "/readyz",
        ] {
            let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
            for (method, op) in item.as_object().expect("path item") {
                let default = &op["responses"]["default"]["content"]["application/problem+json"];
                assert!(default.is_object(), "{method} {path}: no problem default");
            }
        }
        let override_op = &paths["/v1/customers/{id}/tier-override"]["post"];
        assert_eq!(
            override_op["security"][0][BEARER_TOKEN],
            serde_json::json!([])
        );
        assert_eq!(override_op["security"][1][JWT], serde_json::json!([]));
        for status in ["401", "403", "429"] {
            assert!(override_op["responses"][status].is_object(), "{status}");
        }
        // Every /v1/ operation but this document needs a role; the probes are open.
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let open = !path.starts_with("/v1/") || path == "/v1/openapi.json";
                assert_eq!(op["security"].is_array(), !open, "{method} {path}");
                assert_eq!(op["responses"]["403"].is_object(), !open, "{method} {path}");
            }
        }
        let schemes = &json["components"]["securitySchemes"];
        assert_eq!(schemes[JWT]["bearerFormat"], "JWT");
    }
}
