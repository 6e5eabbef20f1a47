//! Kafka security, live: the engine and the gateway against Apache Kafka with a SASL_SSL
//! listener (SCRAM-SHA-512 users created when the storage was formatted, a TLS certificate
//! signed by a CA of its own), which `deploy/local/kafka-secure.sh` starts on 127.0.0.1:9096
//! beside the plain brokers. Events go in through the gateway and straight to the input topic,
//! are applied, and the outputs are read back, every client over SASL_SSL; kizuna-webhooks
//! starts on it too. A wrong password and a CA that did not sign the broker's certificate stop
//! the `kizuna` binary at start-up, within seconds, with a message naming what failed; a wrong
//! password stops the gateway and kizuna-webhooks too.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna_e2e::webhooks::WebhooksApp;
use kizuna_e2e::{Broker, Received, SecuredKafka, TestEnv};
use kizuna_gateway::startup::Gateway;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{Scene, WAIT};
use crate::inputs::purchase;

/// Why the tests do not run on tansu: they run on a third broker of their own.
macro_rules! secured_kafka_only {
    () => {
        "runs on the secured Apache Kafka of deploy/local/kafka-secure.sh (SASL_SSL, \
         SCRAM-SHA-512), whichever broker the other tests use; once is enough"
    };
}

kizuna_e2e::on_each_broker! {
    the_engine_and_the_gateway_work_over_sasl_ssl: tansu_skip = secured_kafka_only!(),
    a_wrong_password_stops_start_up_with_a_clear_message: tansu_skip = secured_kafka_only!(),
    an_untrusted_certificate_stops_start_up_with_a_clear_message: tansu_skip = secured_kafka_only!(),
}

/// How long a start-up with bad credentials may take before it must have failed.
const FAIL_WITHIN: Duration = Duration::from_secs(20);

const GATEWAY_TOKEN: &str = "secured-kafka-test-token";

async fn the_engine_and_the_gateway_work_over_sasl_ssl(_: Broker) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    // Topics are created over SASL_SSL here already.
    let env = TestEnv::on_secured(&secured).await?;
    assert_eq!(env.settings.kafka.brokers, secured.bootstrap);
    let s = Scene::start_in(env).await?;

    // Straight to the input topic, with the test's own SASL_SSL producer.
    s.feed
        .buy("cust-sasl-1", "evt-s1", "ord-s1", 20_000)
        .await?;
    s.feed
        .buy("cust-sasl-1", "evt-s2", "ord-s2", 15_000)
        .await?;

    // Through the gateway: it produces over SASL_SSL too, and answers only after the broker
    // acknowledged.
    let mut gw_settings = kizuna_gateway::config::Settings::defaults()?;
    gw_settings.http.bind = "127.0.0.1:0".parse()?;
    gw_settings.sources.kizuna.token = Some(SecretString::from(GATEWAY_TOKEN));
    let gateway = Gateway::build(gw_settings, s.env.settings.clone()).await?;
    let gw_port = gateway.port();
    let gw_stop = gateway.stop_token();
    let gw_task = tokio::spawn(gateway.run_until_stopped());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let ready = http
        .get(format!("http://127.0.0.1:{gw_port}/readyz"))
        .send()
        .await?
        .status();
    assert_eq!(
        ready.as_u16(),
        200,
        "the gateway reaches the secured broker"
    );
    let lines = [
        json!({"purchase": purchase("evt-g1", "cust-sasl-2", "ord-g1", 18_000)}),
        json!({"purchase": purchase("evt-g2", "cust-sasl-2", "ord-g2", 17_000)}),
    ]
    .map(|l| l.to_string())
    .join("\n");
    let answer = http
        .post(format!("http://127.0.0.1:{gw_port}/v1/events"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {GATEWAY_TOKEN}"))
        .body(lines)
        .send()
        .await?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    assert!(status.is_success(), "gateway answered {status}: {body}");
    let placed = body["events"].as_array().map_or(0, Vec::len);
    assert_eq!(placed, 2, "both events acknowledged by the broker: {body}");

    // Both customers' purchases are applied (the engine consumed over SASL_SSL)…
    for customer in ["cust-sasl-1", "cust-sasl-2"] {
        let state = s
            .app
            .wait_for_customer(customer, "two purchases applied", |c| {
                c["metrics"]["orders"] == json!(2.0)
            })
            .await?;
        assert_eq!(state["tier"], json!("silver"), "{customer}: {state}");
    }

    // …and their tier changes published (the relay produced over SASL_SSL), read back by a
    // SASL_SSL consumer.
    let out = s
        .env
        .reader(&s.topics().tier_changed)?
        .collect_until(WAIT, |got| tier_changes(got).len() >= 2)
        .await?;
    let mut customers = tier_changes(&out);
    customers.sort();
    assert_eq!(customers, ["cust-sasl-1", "cust-sasl-2"], "{out:?}");

    gw_stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), gw_task)
        .await
        .context("the gateway did not stop within 30 s")???;

    // kizuna-webhooks starts over SASL_SSL too: its start-up check passes, it creates its topic
    // and subscribes to the outputs.
    let webhooks = WebhooksApp::start(kizuna_e2e::webhooks::settings(&s.env)?).await?;
    webhooks.stop().await?;
    s.finish().await
}

/// The customers of the TierChanged CloudEvents among `got`.
fn tier_changes(got: &[Received]) -> Vec<String> {
    got.iter()
        .filter(|m| m.header("ce_type") == Some("kizuna.v1.TierChanged"))
        .filter_map(|m| m.key.clone())
        .collect()
}

async fn a_wrong_password_stops_start_up_with_a_clear_message(_: Broker) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    let env = TestEnv::on_secured(&secured).await?;
    let wrong = "not-the-password-0451";
    let mut properties = secured.properties();
    properties.push(("sasl.password".into(), wrong.into()));

    let expected = format!(
        "authentication to the Kafka broker(s) {} failed",
        secured.bootstrap
    );
    let stderr = engine_start_fails(&env, &properties, &expected).await?;
    assert!(stderr.contains("sasl.mechanism=SCRAM-SHA-512"), "{stderr}");
    assert!(stderr.contains("sasl.username=kizuna"), "{stderr}");
    assert!(
        !stderr.contains(wrong),
        "the password is never printed: {stderr}"
    );

    // The gateway, which stays up when a broker is merely unreachable, refuses to start too.
    let mut engine = env.settings.clone();
    engine
        .kafka
        .secret_properties
        .insert("sasl.password".into(), SecretString::from(wrong));
    let mut gw_settings = kizuna_gateway::config::Settings::defaults()?;
    gw_settings.http.bind = "127.0.0.1:0".parse()?;
    gw_settings.sources.kizuna.token = Some(SecretString::from(GATEWAY_TOKEN));
    let started = Instant::now();
    let built = Gateway::build(gw_settings, engine).await;
    let took = started.elapsed();
    let err = match built {
        Ok(_) => anyhow::bail!("the gateway started with a wrong password"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&expected), "{expected:?} in: {err}");
    assert!(took < FAIL_WITHIN, "the gateway failed after {took:?}");

    // kizuna-webhooks, which reads the same properties from its own configuration, too.
    let mut webhooks = kizuna_e2e::webhooks::settings(&env)?;
    webhooks
        .kafka
        .secret_properties
        .insert("sasl.password".into(), SecretString::from(wrong));
    let started = Instant::now();
    let err = match WebhooksApp::start(webhooks).await {
        Ok(_) => anyhow::bail!("kizuna-webhooks started with a wrong password"),
        Err(e) => format!("{e:#}"),
    };
    let took = started.elapsed();
    assert!(err.contains(&expected), "{expected:?} in: {err}");
    assert!(!err.contains(wrong), "the password is never printed: {err}");
    assert!(took < FAIL_WITHIN, "kizuna-webhooks failed after {took:?}");
    env.cleanup().await
}

async fn an_untrusted_certificate_stops_start_up_with_a_clear_message(
    _: Broker,
) -> anyhow::Result<()> {
    let secured = SecuredKafka::start().await?;
    let env = TestEnv::on_secured(&secured).await?;
    // Debian's public CAs: none of them signed the local broker's certificate.
    let public_cas = "/etc/ssl/certs/ca-certificates.crt";
    anyhow::ensure!(
        Path::new(public_cas).is_file(),
        "{public_cas} is missing (apt-get install ca-certificates)"
    );
    let mut properties: Vec<(String, String)> = secured
        .properties()
        .into_iter()
        .filter(|(k, _)| k != "ssl.ca.location")
        .collect();
    properties.push(("ssl.ca.location".into(), public_cas.into()));
    properties.push(("sasl.password".into(), secured.password.clone()));

    let expected = format!(
        "the TLS handshake with the Kafka broker(s) {} failed",
        secured.bootstrap
    );
    let stderr = engine_start_fails(&env, &properties, &expected).await?;
    assert!(stderr.contains(public_cas), "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    env.cleanup().await
}

/// Runs `kizuna run` (the built binary) configured like `env`, with the librdkafka
/// `properties` in a configuration file (they cannot be environment variables), and checks that
/// it fails within `FAIL_WITHIN` with `expected` in its stderr, which it returns. A run that
/// does not end is killed after `FAIL_WITHIN` and a margin.
async fn engine_start_fails(
    env: &TestEnv,
    properties: &[(String, String)],
    expected: &str,
) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("kizuna-secured-{}", env.id));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("kizuna.toml");
    let mut toml = String::from("[kafka.properties]\n");
    let mut secrets = String::from("[kafka.secret_properties]\n");
    for (k, v) in properties {
        let line = format!("{} = {}\n", json!(k), json!(v));
        if k == "sasl.password" {
            secrets.push_str(&line);
        } else {
            toml.push_str(&line);
        }
    }
    toml.push('\n');
    toml.push_str(&secrets);
    std::fs::write(&config, toml)?;

    let mut settings = env.settings.clone();
    settings.kafka.properties.clear();
    settings.kafka.secret_properties.clear();
    let mut cmd = tokio::process::Command::new(kizuna_e2e::process::engine_binary()?);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KIZUNA_") {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("run")
        .env_remove("RUST_LOG")
        .envs(kizuna_e2e::process::engine_env(&settings, 0))
        .env("KIZUNA_HTTP__BIND", "127.0.0.1:0")
        .env("KIZUNA_CONFIG", &config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().context("starting kizuna run")?;
    let out = tokio::time::timeout(
        FAIL_WITHIN + Duration::from_secs(10),
        child.wait_with_output(),
    )
    .await
    .with_context(|| {
        format!(
            "kizuna run neither failed nor exited within {:?}: start-up hangs",
            FAIL_WITHIN + Duration::from_secs(10)
        )
    })??;
    let took = started.elapsed();
    std::fs::remove_dir_all(&dir).ok();
    eprintln!(
        "kizuna run exited with {} after {took:?}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the engine must not start: {stderr}");
    assert!(
        took < FAIL_WITHIN,
        "failed after {took:?}, not within {FAIL_WITHIN:?}"
    );
    assert!(stderr.contains(expected), "{expected:?} in: {stderr}");
    Ok(stderr)
}
