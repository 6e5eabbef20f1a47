//! Roles on every endpoint, over real HTTP against the engine on real PostgreSQL: each endpoint
//! with no token (401 + `WWW-Authenticate`), a viewer, an operator and an admin token (403
//! naming the role needed, or allowed); JWTs signed by a key of a JWKS this test serves over
//! HTTP (a viewer and an admin admitted, the audit recording the JWT's name; a wrong
//! signature, an expired token, a wrong audience refused; the keys cached); and the HTTP
//! hygiene: 413 over the body limit, security headers, 429 after a burst of admin calls; and
//! `kizuna hash-token`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kizuna::config::access::{JwtSettings, Role, TokenSettings};
use kizuna_e2e::{Broker, TestEnv};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::helpers::{Scene, WAIT, kizuna_cli};
use crate::points_kit;

kizuna_e2e::on_each_broker! {
    every_endpoint_answers_by_role_and_limits_hold,
    hash_token_prints_a_table_and_admin_calls_are_rate_limited,
}

const CUSTOMER: &str = "cust-role";
const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "kizuna-e2e";

/// An ES256 key pair: its PKCS#8 document (to sign) and its public JWK.
struct SigningKey {
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn signing_key(kid: &str) -> anyhow::Result<SigningKey> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating a P-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("reading the P-256 key"))?;
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    anyhow::ensure!(point.len() == 65, "an uncompressed P-256 point");
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    Ok(SigningKey {
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk,
    })
}

/// A JWT signed with `key`, under the key id `kid`, carrying `claims` (plus iss, aud, exp
/// unless `claims` sets them).
fn jwt(key: &SigningKey, kid: &str, claims: Value) -> anyhow::Result<String> {
    let mut body = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": chrono::Utc::now().timestamp() + 600,
    });
    if let (Some(b), Value::Object(more)) = (body.as_object_mut(), claims) {
        b.extend(more);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    Ok(jsonwebtoken::encode(
        &header,
        &body,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.pkcs8),
    )?)
}

/// The JWKS this test serves: its keys (the test may rotate them) and how often it was fetched.
#[derive(Clone)]
struct Jwks {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

/// Serves `{"keys": [...]}` at `/jwks.json` on a free port.
async fn serve_jwks(jwk: Value) -> anyhow::Result<(SocketAddr, Jwks)> {
    let jwks = Jwks {
        keys: Arc::new(Mutex::new(vec![jwk])),
        fetches: Arc::new(AtomicUsize::new(0)),
    };
    let served = jwks.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let served = served.clone();
            async move {
                served.fetches.fetch_add(1, Ordering::SeqCst);
                let keys = served.keys.lock().map(|k| k.clone()).unwrap_or_default();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, jwks))
}

fn token(role: Role, secret: &str) -> TokenSettings {
    TokenSettings {
        role,
        sha256: kizuna::http::auth::hash_token(secret),
    }
}

/// One answer: status, headers, JSON body (Null when not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Answer> {
    let mut req = http.request(method, url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await?;
    Ok(Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

/// An endpoint: its method, path, body, the role it needs and its answer when allowed.
struct Endpoint {
    method: Method,
    path: String,
    body: Option<Value>,
    needs: Role,
    ok: u16,
}

fn endpoints() -> Vec<Endpoint> {
    let c = CUSTOMER;
    let e = |method, path: String, body: Option<Value>, needs, ok| Endpoint {
        method,
        path,
        body,
        needs,
        ok,
    };
    let override_body = json!({ "tier": "gold", "reason": "role test", "expires_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339() });
    let evaluate = json!({ "customer_id": c, "event": { "purchase": crate::inputs::purchase("evt-dry", c, "ord-dry", 1_000) } });
    vec![
        e(
            Method::GET,
            format!("/v1/customers/{c}"),
            None,
            Role::Viewer,
            200,
        ),
        e(
            Method::GET,
            format!("/v1/customers/{c}/timeline"),
            None,
            Role::Viewer,
            200,
        ),
        e(
            Method::GET,
            format!("/v1/customers/{c}/points"),
            None,
            Role::Viewer,
            200,
        ),
        e(
            Method::GET,
            "/v1/programme/liability".into(),
            None,
            Role::Viewer,
            200,
        ),
        e(
            Method::POST,
            "/v1/evaluate".into(),
            Some(evaluate),
            Role::Viewer,
            200,
        ),
        e(
            Method::POST,
            format!("/v1/customers/{c}/redemptions"),
            Some(json!({"points": 10})),
            Role::Operator,
            201,
        ),
        e(
            Method::POST,
            format!("/v1/customers/{c}/redemptions/KEY/cancel"),
            None,
            Role::Operator,
            200,
        ),
        e(
            Method::POST,
            format!("/v1/customers/{c}/points/adjustments"),
            Some(json!({"points": 5, "reason": "role test"})),
            Role::Admin,
            201,
        ),
        e(
            Method::POST,
            format!("/v1/customers/{c}/tier-override"),
            Some(override_body),
            Role::Admin,
            200,
        ),
        e(
            Method::GET,
            "/v1/admin/recompute".into(),
            None,
            Role::Admin,
            200,
        ),
        e(
            Method::GET,
            format!("/v1/customers/{c}/export"),
            None,
            Role::Admin,
            200,
        ),
        // An id never seen: admitted, then 404 (erasing the test's customer would end the test).
        e(
            Method::DELETE,
            "/v1/customers/cust-never-seen".into(),
            None,
            Role::Admin,
            404,
        ),
        e(
            Method::POST,
            "/v1/admin/recompute".into(),
            None,
            Role::Admin,
            202,
        ),
    ]
}

async fn every_endpoint_answers_by_role_and_limits_hold(broker: Broker) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    points_kit::add_points(&mut env)?;
    let key = signing_key("k1")?;
    let (jwks_addr, jwks) = serve_jwks(key.jwk.clone()).await?;
    let ops = format!("ops-{}", env.id);
    let http = &mut env.settings.http;
    http.tokens.insert("ops".into(), token(Role::Admin, &ops));
    http.max_body_bytes = 4096;
    http.jwt = Some(JwtSettings {
        jwks_url: format!("http://{jwks_addr}/jwks.json"),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        role_claim: "kizuna_role".into(),
        name_claim: "sub".into(),
        refresh_secs: 300,
        leeway_secs: 5,
    });
    let s = Scene::start_in(env).await?;
    let app = &s.app;
    let t = s.env.tokens();
    // 100,000 JPY: 1,000 points, spendable at once.
    s.feed.buy(CUSTOMER, "evt-r1", "ord-r1", 100_000).await?;
    points_kit::wait_points(&s.env, CUSTOMER, 1_000, |_| true, WAIT).await?;

    let by_role = [
        (Role::Viewer, t.viewer.as_str()),
        (Role::Operator, t.operator.as_str()),
        (Role::Admin, ops.as_str()),
    ];
    for (i, ep) in endpoints().into_iter().enumerate() {
        let path = ep.path.replace("KEY", "red-1");
        let url = app.url(&path);
        let what = format!("{} {path}", ep.method);
        // No token, a wrong one: 401 with the challenge.
        for bearer in [None, Some("not-a-token")] {
            let a = call(
                &app.http,
                ep.method.clone(),
                &url,
                bearer,
                Some("k"),
                ep.body.as_ref(),
            )
            .await?;
            assert_eq!(a.status, 401, "{what} {bearer:?}: {}", a.body);
            let challenge = a
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok());
            assert!(
                challenge.is_some_and(|c| c.starts_with("Bearer realm=\"kizuna\"")),
                "{what}: {challenge:?}"
            );
            assert_eq!(
                a.body["type"]
                    .as_str()
                    .map(|t| t.ends_with("#problem-unauthorized")),
                Some(true),
                "{what}"
            );
        }
        for (role, bearer) in by_role {
            let idem = format!("idem-{i}-{}", role.as_str());
            // The cancel cancels the redemption the operator made (`red-1`).
            let key = if path.contains("/cancel") {
                None
            } else if path.ends_with("/redemptions") {
                Some("red-1".to_owned())
            } else {
                Some(idem)
            };
            let a = call(
                &app.http,
                ep.method.clone(),
                &url,
                Some(bearer),
                key.as_deref(),
                ep.body.as_ref(),
            )
            .await?;
            if role < ep.needs {
                assert_eq!(a.status, 403, "{what} as {role:?}: {}", a.body);
                assert_eq!(a.body["required_role"], json!(ep.needs.as_str()), "{what}");
                assert!(
                    a.body["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains(ep.needs.as_str())),
                    "{}",
                    a.body
                );
            } else {
                assert_eq!(a.status, ep.ok, "{what} as {role:?}: {}", a.body);
                if ep.method == Method::GET {
                    let cache = a.headers.get("cache-control").and_then(|v| v.to_str().ok());
                    assert_eq!(cache, Some("no-store"), "{what}");
                    let sniff = a
                        .headers
                        .get("x-content-type-options")
                        .and_then(|v| v.to_str().ok());
                    assert_eq!(sniff, Some("nosniff"), "{what}");
                }
            }
            if a.status == 202 {
                // Let the recompute finish before anything else writes.
                kizuna_e2e::wait_for("the recompute to finish", WAIT, || async {
                    let st = call(
                        &app.http,
                        Method::GET,
                        &app.url("/v1/admin/recompute"),
                        Some(&t.admin),
                        None,
                        None,
                    )
                    .await?;
                    Ok((st.body["recompute"]["state"] == json!("finished")).then_some(()))
                })
                .await?;
            }
        }
    }
    // The audit records the token's name.
    let (_, customer) = app.get(&format!("/v1/customers/{CUSTOMER}")).await?;
    assert_eq!(customer["override"]["set_by"], json!("ops"), "{customer}");

    // JWTs: a viewer reads; an admin adjusts, recorded by its name; the keys are fetched once.
    let viewer_jwt = jwt(&key, "k1", json!({"sub": "vera", "kizuna_role": "viewer"}))?;
    let admin_jwt = jwt(
        &key,
        "k1",
        json!({"sub": "alice", "kizuna_role": ["viewer", "admin"]}),
    )?;
    let customer_url = app.url(&format!("/v1/customers/{CUSTOMER}"));
    let adjust_url = app.url(&format!("/v1/customers/{CUSTOMER}/points/adjustments"));
    let a = call(
        &app.http,
        Method::GET,
        &customer_url,
        Some(&viewer_jwt),
        None,
        None,
    )
    .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let grant = json!({"points": 7, "reason": "jwt grant"});
    let a = call(
        &app.http,
        Method::POST,
        &adjust_url,
        Some(&viewer_jwt),
        Some("jwt-1"),
        Some(&grant),
    )
    .await?;
    assert_eq!(
        (a.status, a.body["required_role"].clone()),
        (403, json!("admin")),
        "{}",
        a.body
    );
    let a = call(
        &app.http,
        Method::POST,
        &adjust_url,
        Some(&admin_jwt),
        Some("jwt-1"),
        Some(&grant),
    )
    .await?;
    assert_eq!(a.status, 201, "{}", a.body);
    let (_, points) = app.get(&format!("/v1/customers/{CUSTOMER}/points")).await?;
    let reasons: Vec<&str> = points["movements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"adjustment by jwt:alice: jwt grant"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"adjustment by ops: role test"),
        "{reasons:?}"
    );
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "the keys are cached"
    );

    // Refused JWTs: signed by another key under the same id, expired, for another audience,
    // or naming no role.
    let forger = signing_key("k1")?;
    let refused = [
        (
            jwt(
                &forger,
                "k1",
                json!({"sub": "mallory", "kizuna_role": "admin"}),
            )?,
            401,
            "signature",
        ),
        (
            jwt(
                &key,
                "k1",
                json!({"sub": "alice", "kizuna_role": "admin", "exp": chrono::Utc::now().timestamp() - 600}),
            )?,
            401,
            "expired",
        ),
        (
            jwt(
                &key,
                "k1",
                json!({"sub": "alice", "kizuna_role": "admin", "aud": "another-api"}),
            )?,
            401,
            "audience",
        ),
        (jwt(&key, "k1", json!({"sub": "alice"}))?, 403, ""),
    ];
    for (bad, status, reason) in refused {
        let a = call(
            &app.http,
            Method::GET,
            &customer_url,
            Some(&bad),
            None,
            None,
        )
        .await?;
        assert_eq!(a.status, status, "{reason}: {}", a.body);
        if status == 401 {
            assert_eq!(a.body["reason"], json!(reason), "{}", a.body);
            let challenge = a
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok());
            assert_eq!(
                challenge,
                Some("Bearer realm=\"kizuna\", error=\"invalid_token\"")
            );
        }
    }
    // Unknown key ids right after a fetch do not reach the provider (at most one fetch every
    // 10 s)…
    let rotated = signing_key("k2")?;
    let rotated_jwt = jwt(
        &rotated,
        "k2",
        json!({"sub": "rita", "kizuna_role": "viewer"}),
    )?;
    for kid in ["k3", "k4"] {
        let unknown = jwt(&key, kid, json!({"sub": "a", "kizuna_role": "admin"}))?;
        let a = call(
            &app.http,
            Method::GET,
            &customer_url,
            Some(&unknown),
            None,
            None,
        )
        .await?;
        assert_eq!(
            (a.status, a.body["reason"].clone()),
            (401, json!("unknown_key")),
            "{}",
            a.body
        );
    }
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "no fetch for a flood of key ids"
    );
    // …and a key the provider rotates in is found once that time has passed.
    if let Ok(mut keys) = jwks.keys.lock() {
        keys.push(rotated.jwk.clone());
    }
    kizuna_e2e::wait_for("the rotated key to be fetched", WAIT, || async {
        let a = call(
            &app.http,
            Method::GET,
            &customer_url,
            Some(&rotated_jwt),
            None,
            None,
        )
        .await?;
        Ok((a.status == 200).then_some(()))
    })
    .await?;
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        2,
        "one more fetch for the new key"
    );

    // Body limit: 413, a problem, after the role is checked.
    let big = json!({ "points": 5, "reason": "x".repeat(8_000) });
    let a = call(
        &app.http,
        Method::POST,
        &adjust_url,
        None,
        Some("big"),
        Some(&big),
    )
    .await?;
    assert_eq!(a.status, 401, "the role first");
    let a = call(
        &app.http,
        Method::POST,
        &adjust_url,
        Some(&ops),
        Some("big"),
        Some(&big),
    )
    .await?;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(
        a.body["type"]
            .as_str()
            .map(|t| t.ends_with("#problem-payload-too-large")),
        Some(true),
        "{}",
        a.body
    );

    // The console's headers: never framed, its own CSP.
    let login = app.http.get(app.url("/console/login")).send().await?;
    let h = login.headers();
    assert_eq!(
        h.get("x-frame-options").and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    assert!(
        h.get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("frame-ancestors 'none'"))
    );
    assert_eq!(
        h.get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );

    s.finish().await
}

/// `kizuna hash-token` (the binary: `cargo build --bin kizuna` first) prints a table the engine
/// accepts: its token is admitted with its role. And admin calls are rate limited per caller.
async fn hash_token_prints_a_table_and_admin_calls_are_rate_limited(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    let secret = format!("desk-token-{}", env.id);
    let (ok, out, err) = kizuna_cli(
        &env,
        &["hash-token", "--name", "desk_2", "--role", "viewer"],
        Some(format!("{secret}\n").as_bytes()),
    )?;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"[http.tokens.desk_2]"), "{out}");
    assert_eq!(lines.get(1), Some(&"role = \"viewer\""), "{out}");
    let sha256 = lines
        .get(2)
        .and_then(|l| l.strip_prefix("sha256 = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(sha256, kizuna::http::auth::hash_token(&secret), "{out}");
    let (short, _, err) = kizuna_cli(&env, &["hash-token"], Some(b"short\n"))?;
    assert!(!short && err.contains("16 characters"), "{err}");
    env.settings.http.tokens.insert(
        "desk_2".into(),
        TokenSettings {
            role: Role::Viewer,
            sha256,
        },
    );
    let burst = format!("burst-{}", env.id);
    env.settings
        .http
        .tokens
        .insert("burst".into(), token(Role::Admin, &burst));
    env.settings.http.admin_requests_per_minute = 1;
    env.settings.http.admin_burst = 5;
    let app = env.start().await?;
    let url = app.url("/v1/customers/nobody");
    let a = call(&app.http, Method::GET, &url, Some(&secret), None, None).await?;
    assert_eq!(
        a.status, 404,
        "admitted, and the customer is unknown: {}",
        a.body
    );
    let a = call(
        &app.http,
        Method::POST,
        &app.url("/v1/admin/recompute"),
        Some(&secret),
        None,
        None,
    )
    .await?;
    assert_eq!(a.status, 403, "{}", a.body);

    // Admin calls: a burst of 5, then 429 with Retry-After; other callers are unaffected.
    let recompute = app.url("/v1/admin/recompute");
    for i in 0..5 {
        let a = call(&app.http, Method::GET, &recompute, Some(&burst), None, None).await?;
        assert_eq!(a.status, 200, "call {i}: {}", a.body);
    }
    let a = call(&app.http, Method::GET, &recompute, Some(&burst), None, None).await?;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(
        a.body["type"]
            .as_str()
            .map(|t| t.ends_with("#problem-rate-limited")),
        Some(true)
    );
    let wait: u64 = a
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let admin = env.tokens().admin;
    let a = call(&app.http, Method::GET, &recompute, Some(&admin), None, None).await?;
    assert_eq!(a.status, 200, "another caller: {}", a.body);
    // Reads are not limited.
    let a = call(&app.http, Method::GET, &url, Some(&burst), None, None).await?;
    assert_eq!(a.status, 404);
    app.stop().await?;
    env.cleanup().await
}
