//! Typeform `form_response` events → kizuna.v1 `SurveyResponse`, one per score answer.

use kizuna::inputs::decode::WireEvent;
use kizuna_proto::v1;
use serde::Deserialize;
use serde_json::Value;

use super::{Draft, MapError, Mapped, customer_id, first_time, lookup, text, timestamp};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeformMapping {
    pub customer_id: Vec<String>,
    pub customer_id_prefix: String,
    pub occurred_at: Vec<String>,
    pub comment_refs: Vec<String>,
    pub scores: Vec<ScoreRule>,
}

/// Which question is a score, and of which kind. At least one of ref, id, field_type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRule {
    #[serde(default, rename = "ref")]
    pub field_ref: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub field_type: Option<String>,
    pub kind: ScoreKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    Nps,
    Csat,
    Ces,
}

impl ScoreKind {
    fn proto(self) -> v1::SurveyKind {
        match self {
            ScoreKind::Nps => v1::SurveyKind::Nps,
            ScoreKind::Csat => v1::SurveyKind::Csat,
            ScoreKind::Ces => v1::SurveyKind::Ces,
        }
    }
}

impl TypeformMapping {
    pub fn check(&self) -> anyhow::Result<()> {
        for (i, rule) in self.scores.iter().enumerate() {
            if rule.field_ref.is_none() && rule.id.is_none() && rule.field_type.is_none() {
                anyhow::bail!("typeform.scores[{i}] needs a ref, an id or a field_type");
            }
        }
        Ok(())
    }

    fn rule(&self, field: &Question<'_>) -> Option<&ScoreRule> {
        self.scores.iter().find(|r| {
            r.field_ref
                .as_deref()
                .is_some_and(|x| Some(x) == field.field_ref)
                || r.id.as_deref().is_some_and(|x| Some(x) == field.id)
                || r.field_type
                    .as_deref()
                    .is_some_and(|x| Some(x) == field.field_type)
        })
    }
}

/// An answer's question: its id, ref (from the answer, or the form definition) and type.
struct Question<'a> {
    id: Option<&'a str>,
    field_ref: Option<&'a str>,
    field_type: Option<&'a str>,
}

fn question<'a>(answer: &'a Value, definition: Option<&'a Vec<Value>>) -> Question<'a> {
    let id = lookup(answer, "field.id").and_then(Value::as_str);
    let from_definition = |key: &str| {
        definition.and_then(|fields| {
            fields
                .iter()
                .find(|f| id.is_some() && lookup(f, "id").and_then(Value::as_str) == id)
                .and_then(|f| lookup(f, key).and_then(Value::as_str))
        })
    };
    Question {
        id,
        field_ref: lookup(answer, "field.ref")
            .and_then(Value::as_str)
            .or_else(|| from_definition("ref")),
        field_type: lookup(answer, "field.type")
            .and_then(Value::as_str)
            .or_else(|| from_definition("type")),
    }
}

/// Maps one Typeform delivery.
pub fn map(body: &Value, m: &TypeformMapping) -> Result<Mapped, MapError> {
    match lookup(body, "event_type").and_then(text).as_deref() {
        Some("form_response") => {}
        Some(other) => {
            return Ok(Mapped::Ignored(format!(
                "event type {:?} is not form_response",
                other.chars().take(64).collect::<String>()
            )));
        }
        None => return Err(MapError::missing("event_type")),
    }
    let form = lookup(body, "form_response").ok_or_else(|| MapError::missing("form_response"))?;
    let answers = lookup(form, "answers")
        .and_then(Value::as_array)
        .ok_or_else(|| MapError::missing("form_response.answers"))?;
    let definition = lookup(form, "definition.fields").and_then(Value::as_array);
    let survey_id = lookup(form, "form_id")
        .and_then(text)
        .ok_or_else(|| MapError::missing("form_response.form_id"))?;
    let comment = answers.iter().find_map(|a| {
        let q = question(a, definition);
        q.field_ref
            .filter(|r| m.comment_refs.iter().any(|c| c == r))
            .and_then(|_| lookup(a, "text").and_then(text))
    });
    let mut scored = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        let q = question(answer, definition);
        let Some(rule) = m.rule(&q) else { continue };
        scored.push((
            i,
            q.field_ref.or(q.id).unwrap_or("answer").to_owned(),
            rule.kind,
            answer,
        ));
    }
    if scored.is_empty() {
        return Ok(Mapped::Ignored(
            "the response has no answer to a score question of typeform.scores".into(),
        ));
    }
    let (customer, customer_path) = customer_id(body, &m.customer_id, &m.customer_id_prefix)?;
    let (occurred, occurred_path) = first_time(body, &m.occurred_at)?
        .ok_or_else(|| MapError::missing(m.occurred_at.first().cloned().unwrap_or_default()))?;
    let mut drafts = Vec::new();
    for (i, question_key, kind, answer) in scored {
        let path = format!("form_response.answers.{i}.number");
        let score = lookup(answer, "number")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                MapError::new(
                    path.clone(),
                    "invalid_field",
                    format!("{path} is not a whole number"),
                )
            })?;
        let event = v1::SurveyResponse {
            event_id: String::new(),
            customer_id: customer.clone(),
            occurred_at: Some(timestamp(occurred)),
            survey_id: survey_id.clone(),
            kind: kind.proto() as i32,
            score,
            comment: comment.clone(),
        };
        drafts.push(
            Draft::new(WireEvent::Survey(event), format!("answer:{question_key}"))
                .from("customer_id", customer_path.clone())
                .from("occurred_at", occurred_path.clone())
                .from("survey_id", "form_response.form_id")
                .from("score", path),
        );
    }
    Ok(Mapped::Events(drafts))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::Mapping;

    fn response(answers: Value) -> Value {
        json!({
            "event_id": "01HX", "event_type": "form_response",
            "form_response": {
                "form_id": "lT4Z3j", "submitted_at": "2026-05-01T10:00:00Z",
                "hidden": {"customer_id": "cust-7"},
                "definition": {"fields": [
                    {"id": "q1", "ref": "how_likely", "type": "nps"},
                    {"id": "q2", "ref": "why", "type": "long_text"},
                    {"id": "q3", "ref": "effort", "type": "opinion_scale"}
                ]},
                "answers": answers
            }
        })
    }

    #[test]
    fn nps_answers_map_by_type_and_others_by_ref() {
        let m = Mapping::parse_over_built_in(
            "[typeform]\ncomment_refs = [\"why\"]\n[[typeform.scores]]\nfield_type = \"nps\"\nkind = \"nps\"\n[[typeform.scores]]\nref = \"effort\"\nkind = \"ces\"\n",
        )
        .expect("mapping")
        .typeform;
        let body = response(json!([
            {"type": "number", "number": 9, "field": {"id": "q1", "type": "nps"}},
            {"type": "text", "text": "fast delivery", "field": {"id": "q2", "type": "long_text"}},
            {"type": "number", "number": 2, "field": {"id": "q3", "type": "opinion_scale"}}
        ]));
        let Mapped::Events(drafts) = map(&body, &m).expect("maps") else {
            panic!("events expected");
        };
        let got: Vec<(String, v1::SurveyKind, u32, Option<String>)> = drafts
            .iter()
            .map(|d| match &d.event {
                WireEvent::Survey(s) => (d.part.clone(), s.kind(), s.score, s.comment.clone()),
                _ => panic!("survey expected"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "answer:how_likely".to_owned(),
                    v1::SurveyKind::Nps,
                    9,
                    Some("fast delivery".to_owned())
                ),
                (
                    "answer:effort".to_owned(),
                    v1::SurveyKind::Ces,
                    2,
                    Some("fast delivery".to_owned())
                ),
            ]
        );
    }

    #[test]
    fn responses_without_scores_are_ignored_and_gaps_are_named() {
        let m = Mapping::built_in().expect("built-in").typeform;
        let text_only = response(
            json!([{"type": "text", "text": "x", "field": {"id": "q2", "type": "long_text"}}]),
        );
        assert!(matches!(map(&text_only, &m), Ok(Mapped::Ignored(_))));
        let mut anonymous = response(
            json!([{"type": "number", "number": 9, "field": {"id": "q1", "type": "nps"}}]),
        );
        anonymous["form_response"]["hidden"] = json!({});
        let err = map(&anonymous, &m).expect_err("no customer");
        assert_eq!(err.field, "form_response.hidden.customer_id");
        let fractional = response(
            json!([{"type": "number", "number": 9.5, "field": {"id": "q1", "type": "nps"}}]),
        );
        let err = map(&fractional, &m).expect_err("not whole");
        assert_eq!(err.field, "form_response.answers.0.number");
    }
}
