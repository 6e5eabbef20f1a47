use super::*;

#[test]
fn defaults_load_and_pass_their_own_checks() {
    let s = Settings::load(None).expect("defaults are valid");
    assert_eq!(s.kafka.topics.purchases, "purchases");
    assert!(s.ingest.batch_max_events > 1);
}

#[test]
fn dump_redacts_secrets() {
    let mut s = Settings::load(None).expect("defaults are valid");
    s.database.url = SecretString::from("postgres://kizuna:hunter2@db:5432/kizuna");
    s.kafka
        .secret_properties
        .insert("sasl.password".into(), SecretString::from("s3cr3t"));
    s.console.viewer_token = Some(SecretString::from("viewer-t0ken"));
    s.console.admin_token = Some(SecretString::from("admin-t0ken"));
    let dump = s.redacted_toml().expect("printable");
    assert!(!dump.contains("hunter2"), "{dump}");
    assert!(!dump.contains("viewer-t0ken"), "{dump}");
    assert!(!dump.contains("admin-t0ken"), "{dump}");
    assert!(!dump.contains("s3cr3t"), "{dump}");
    assert!(
        dump.contains("postgres://kizuna:<redacted>@db:5432/kizuna"),
        "{dump}"
    );
    assert!(dump.contains("sasl.password"), "{dump}");
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn secrets_can_come_from_files() {
    let dir = std::env::temp_dir().join(format!("kizuna-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("db_url");
    std::fs::write(&file, "postgres://app:from-a-file@db/kizuna\n").expect("write secret");
    let mut s = Settings::load(None).expect("defaults are valid");
    s.database.url = SecretString::from(format!("file:{}", file.display()));
    s.read_secret_files().expect("readable");
    assert_eq!(s.database_url(), "postgres://app:from-a-file@db/kizuna");
    assert!(
        !s.redacted_toml()
            .expect("printable")
            .contains("from-a-file")
    );
    s.http.admin_token = Some(SecretString::from("file:/nonexistent/token".to_owned()));
    let err = s.read_secret_files().expect_err("missing file").to_string();
    assert!(err.contains("http.admin_token"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn settings_round_trip_through_the_environment_and_print_every_key() {
    let mut s = Settings::load(None).expect("defaults are valid");
    s.kafka.brokers = "broker-a:9092,broker-b:9092".into();
    s.kafka.topics.add_prefix("t1.");
    s.database.url = SecretString::from("postgres://app:pw@db:5432/kizuna");
    s.http.admin_token = Some(SecretString::from("token-1".to_owned()));
    s.ingest.revoke_drain_ms = Some(1_000);
    s.ingest.writers = 3;
    s.clock = Clock::EventTime;
    s.log.format = LogFormat::Json;
    s.http.metrics_bind = Some("127.0.0.1:9100".parse().expect("address"));
    s.registry.url = Some("http://registry:8081/apis/ccompat/v7".into());
    s.registry.username = Some("kizuna".into());
    s.registry.password = Some(SecretString::from("registry-pw".to_owned()));
    s.registry.cache_size = 17;
    s.outputs.format = OutputFormat::ConfluentProtobuf;
    let env: std::collections::HashMap<String, String> =
        s.to_env().expect("to env").into_iter().collect();
    assert_eq!(env["KIZUNA_KAFKA__TOPICS__PURCHASES"], "t1.purchases");
    assert_eq!(env["KIZUNA_HTTP__ADMIN_TOKEN"], "token-1");
    assert_eq!(env["KIZUNA_REGISTRY__PASSWORD"], "registry-pw");
    assert_eq!(env["KIZUNA_OUTPUTS__FORMAT"], "confluent-protobuf");
    let back = Settings::load_from(None, Some(env)).expect("loads back");
    let printed = |s: &Settings| s.redacted_toml().expect("printable");
    assert_eq!(printed(&back), printed(&s));
    assert_eq!(back.database_url(), "postgres://app:pw@db:5432/kizuna");
    assert_eq!(
        back.http
            .admin_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        Some("token-1".to_owned())
    );
    // Every key of the defaults file is printed by `kizuna config`: the printout is the
    // settings' own serialisation, so it cannot miss one.
    let defaults: toml::Table = DEFAULTS.parse().expect("defaults parse");
    let shown: toml::Table = printed(&s).parse().expect("printout parses");
    for (section, keys) in &defaults {
        if let toml::Value::Table(keys) = keys {
            for key in keys.keys() {
                assert!(
                    shown.get(section).and_then(|t| t.get(key)).is_some(),
                    "kizuna config misses {section}.{key}"
                );
            }
        }
    }
    assert!(printed(&s).contains("revoke_drain_ms = 1000"));
    assert!(!printed(&s).contains("registry-pw"));
    assert_eq!(
        back.registry
            .password
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        Some("registry-pw".to_owned())
    );
}

#[test]
fn registry_settings_that_cannot_work_are_refused() {
    let mut s = Settings::load(None).expect("defaults are valid");
    s.outputs.format = OutputFormat::ConfluentProtobuf;
    let err = s.check().expect_err("no registry").to_string();
    assert!(err.contains("registry.url"), "{err}");
    s.registry.url = Some("http://user:pw@registry:8081".into());
    let err = s.check().expect_err("credentials in the url").to_string();
    assert!(err.contains("registry.username"), "{err}");
    s.registry.url = Some("registry:8081".into());
    assert!(s.check().is_err());
    s.registry.url = Some("https://registry.example.com/apis/ccompat/v7".into());
    assert!(s.check().is_ok());
    s.registry.username = Some("kizuna".into());
    assert!(s.check().is_err(), "a username without a password");
}

#[test]
fn a_topic_prefix_applies_to_every_topic() {
    let env = std::collections::HashMap::from([(
        "KIZUNA_KAFKA__TOPIC_PREFIX".to_owned(),
        "demo-1.".to_owned(),
    )]);
    let s = Settings::load_from(None, Some(env)).expect("loads");
    let t = &s.kafka.topics;
    for topic in t.inputs().into_iter().chain(t.outputs()) {
        assert!(topic.starts_with("demo-1."), "{topic}");
    }
}

#[test]
fn linger_longer_than_the_session_is_refused() {
    let mut s = Settings::load(None).expect("defaults are valid");
    s.ingest.batch_linger_ms = s.kafka.session_timeout_ms;
    let err = s.check().expect_err("must be refused").to_string();
    assert!(err.contains("session_timeout_ms"), "{err}");
}

#[test]
fn a_revoke_drain_beyond_half_the_session_is_refused() {
    let mut s = Settings::load(None).expect("defaults are valid");
    s.ingest.revoke_drain_ms = Some(s.kafka.session_timeout_ms / 2);
    let err = s.check().expect_err("must be refused").to_string();
    assert!(err.contains("revoke_drain_ms"), "{err}");
    s.ingest.revoke_drain_ms = None;
    assert!(s.check().is_ok());
    assert_eq!(
        s.revoke_drain().as_millis() as u64,
        s.kafka.session_timeout_ms / 3
    );
}

#[test]
fn an_input_topic_cannot_be_an_output() {
    let mut s = Settings::load(None).expect("defaults are valid");
    s.kafka.topics.dead_letter = s.kafka.topics.purchases.clone();
    assert!(s.check().is_err());
}
