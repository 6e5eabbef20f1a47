use super::*;

#[test]
fn yen_has_no_decimals_in_either_language() {
    assert_eq!(money(Lang::En, 1_234_567.4, "JPY"), "¥1,234,567");
    assert_eq!(money(Lang::Ja, 12_000.0, "JPY"), "12,000円");
    assert_eq!(money(Lang::En, 999.0, "JPY"), "¥999");
}

#[test]
fn dates_follow_the_locale() {
    let at = DateTime::parse_from_rfc3339("2027-01-15T10:00:00Z")
        .expect("valid")
        .with_timezone(&Utc);
    assert_eq!(date(Lang::En, at), "15 Jan 2027");
    assert_eq!(date(Lang::Ja, at), "2027年1月15日");
}

#[test]
fn accept_language_picks_the_best_supported() {
    let mut h = HeaderMap::new();
    h.insert(
        axum::http::header::ACCEPT_LANGUAGE,
        "fr-FR,ja;q=0.9,en;q=0.8".parse().expect("header"),
    );
    assert_eq!(Lang::from_headers(&h), Lang::Ja);
    h.insert(
        axum::http::header::ACCEPT_LANGUAGE,
        "en-GB,ja;q=0.5".parse().expect("header"),
    );
    assert_eq!(Lang::from_headers(&h), Lang::En);
    h.insert(
        axum::http::header::COOKIE,
        "kizuna_lang=ja".parse().expect("header"),
    );
    assert_eq!(Lang::from_headers(&h), Lang::Ja);
}

#[test]
fn every_key_has_both_languages_and_no_key_repeats() {
    // A repeated key or a missing language is a parse error of `labels.toml`.
    let labels: HashMap<String, Label> =
        toml::from_str(include_str!("labels.toml")).expect("labels.toml reads whole");
    assert!(labels.len() > 100, "{} labels", labels.len());
    for (k, label) in &labels {
        assert!(!label.en.is_empty() && !label.ja.is_empty(), "{k}");
    }
    assert_eq!(LABELS.len(), labels.len());
    assert_eq!(Lang::Ja.t("app"), "絆 コンソール");
    assert_eq!(Lang::En.t("nav.churn"), "Churn queue");
}
