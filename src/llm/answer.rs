//! Reading a chat-completions answer: `choices[0].message.content` holds the JSON object
//! `{"title", "explanation"}` (bare, in a ```json fence, or with words around it); both are
//! cleaned to plain text and checked. Anything else is [`Malformed`]. Nothing here panics on a
//! hostile answer: serde_json refuses nesting deeper than 128 levels, and the body was capped
//! before it got here.

use serde::Deserialize;

/// A title longer than this (characters) is refused.
pub(crate) const TITLE_CAP: usize = 100;
/// An explanation longer than this (characters) is refused.
pub(crate) const EXPLANATION_CAP: usize = 600;

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(pub String);

/// A suggestion's wording: the LLM's, or the template's when there is none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Wording {
    /// A short title, plain text.
    pub title: String,
    /// One or two sentences, plain text.
    pub explanation: String,
}

#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<Message>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    content: Option<String>,
    refusal: Option<String>,
}

/// The error object of an OpenAI-style error answer (`{"error": {"message", "type", "code"}}`;
/// some servers send `{"error": "text"}`).
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Object {
        message: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        code: Option<serde_json::Value>,
    },
    Text(String),
}

/// The message of an error answer, cut to 200 characters, or a part of the body when it is not
/// one. Never the request (which held the key only in a header).
pub(crate) fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(ErrorAnswer {
            error:
                ErrorBody::Object {
                    message,
                    kind,
                    code,
                },
        }) => {
            let mut text = message.unwrap_or_default();
            let code = code
                .map(|c| match c {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .filter(|c| c != "null")
                .or(kind);
            if let Some(code) = code {
                text = format!("{text} ({code})");
            }
            text
        }
        Ok(ErrorAnswer {
            error: ErrorBody::Text(text),
        }) => text,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    super::prompt::clean(&text, 200)
}

/// The wording in a chat-completions answer body.
pub(crate) fn parse(body: &[u8]) -> Result<Wording, Malformed> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|e| Malformed(format!("not a chat-completions answer: {e}")))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| Malformed("the answer has no choices".into()))?;
    let message = choice
        .message
        .ok_or_else(|| Malformed("the first choice has no message".into()))?;
    let content = match (message.content, message.refusal) {
        (Some(c), _) if !c.trim().is_empty() => c,
        (_, Some(refusal)) => {
            return Err(Malformed(format!(
                "the model refused: {}",
                super::prompt::clean(&refusal, 200)
            )));
        }
        _ => {
            return Err(Malformed(match choice.finish_reason.as_deref() {
                Some(reason) => format!("the message is empty (finish_reason {reason})"),
                None => "the message is empty".into(),
            }));
        }
    };
    wording(&content)
}

/// The `{title, explanation}` object in a message's content.
pub(crate) fn wording(content: &str) -> Result<Wording, Malformed> {
    let object =
        json_object(content).ok_or_else(|| Malformed("the message holds no JSON object".into()))?;
    let value: serde_json::Value = serde_json::from_str(object)
        .map_err(|e| Malformed(format!("the message's JSON is invalid: {e}")))?;
    let field = |name: &str, cap: usize| -> Result<String, Malformed> {
        let raw = value
            .get(name)
            .ok_or_else(|| Malformed(format!("`{name}` is missing")))?
            .as_str()
            .ok_or_else(|| Malformed(format!("`{name}` is not a string")))?;
        let text = plain(raw);
        let chars = text.chars().count();
        if chars == 0 {
            return Err(Malformed(format!("`{name}` is empty")));
        }
        if chars > cap {
            return Err(Malformed(format!(
                "`{name}` has {chars} characters, more than {cap}"
            )));
        }
        Ok(text)
    };
    Ok(Wording {
        title: field("title", TITLE_CAP)?
            .trim_end_matches('.')
            .trim_end()
            .to_owned(),
        explanation: field("explanation", EXPLANATION_CAP)?,
    })
}

/// The JSON object in `content`: the text between a ```json fence's lines, else from the first
/// `{` to the last `}`.
fn json_object(content: &str) -> Option<&str> {
    let mut text = content.trim();
    if let Some(rest) = text.strip_prefix("```") {
        // the fence's info string (`json`) runs to the end of its line
        let rest = rest.split_once('\n').map_or("", |(_, body)| body);
        text = rest.trim_end().strip_suffix("```").unwrap_or(rest).trim();
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (start < end).then(|| &text[start..=end])
}

/// `text` as plain text: markdown emphasis, code and heading marks taken out, white space and
/// control characters folded into single spaces.
fn plain(text: &str) -> String {
    let stripped = text
        .replace("**", "")
        .replace("__", "")
        .replace('`', "")
        .lines()
        .map(|line| line.trim_start().trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join(" ");
    super::prompt::clean(&stripped, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(content: &str) -> Vec<u8> {
        serde_json::json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "m",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn bare_fenced_and_wrapped_objects_are_read() {
        let bare = r#"{"title": "Kitchen light at 06:45.", "explanation": "It went on."}"#;
        let expected = Wording {
            title: "Kitchen light at 06:45".into(),
            explanation: "It went on.".into(),
        };
        for content in [
            bare.to_owned(),
            format!("```json\n{bare}\n```"),
            format!("```\n{bare}\n```"),
            format!("Sure! Here it is:\n{bare}\nHope this helps."),
        ] {
            assert_eq!(
                parse(&completion(&content)),
                Ok(expected.clone()),
                "{content}"
            );
        }
    }

    #[test]
    fn markdown_is_taken_out_of_the_fields() {
        let w = wording(
            "{\"title\": \"## **Morning** `light`\", \"explanation\": \"Turns on\\n\\n__at 06:45__.\"}",
        )
        .expect("wording");
        assert_eq!(w.title, "Morning light");
        assert_eq!(w.explanation, "Turns on at 06:45.");
    }

    #[test]
    fn anything_else_is_malformed() {
        let long = "a".repeat(TITLE_CAP + 1);
        let cases: Vec<Vec<u8>> = vec![
            b"not json".to_vec(),
            b"{}".to_vec(),
            br#"{"choices": []}"#.to_vec(),
            br#"{"choices": [{"finish_reason": "stop"}]}"#.to_vec(),
            br#"{"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "length"}]}"#.to_vec(),
            br#"{"choices": [{"message": {"content": null, "refusal": "no"}}]}"#.to_vec(),
            completion("I cannot do that."),
            completion(r#"{"title": "x"}"#),
            completion(r#"{"title": 3, "explanation": "y"}"#),
            completion(r#"{"title": "  ", "explanation": "y"}"#),
            completion(r#"{"title": "x", "explanation": "**"}"#),
            completion(&format!(r#"{{"title": "{long}", "explanation": "y"}}"#)),
            completion(r#"{"title": "x", "explanation": "y""#),
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            vec![0xff, 0xfe, b'{'],
        ];
        for body in cases {
            assert!(
                parse(&body).is_err(),
                "{}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
    }

    #[test]
    fn error_answers_give_their_message() {
        let openai = br#"{"error": {"message": "Incorrect API key provided: sk-ab***yz.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}"#;
        assert_eq!(
            error_message(openai),
            "Incorrect API key provided: sk-ab***yz. (invalid_api_key)"
        );
        let ollama = br#"{"error": {"message": "model \"x\" not found, try pulling it first", "type": "api_error", "param": null, "code": null}}"#;
        assert_eq!(
            error_message(ollama),
            "model \"x\" not found, try pulling it first (api_error)"
        );
        assert_eq!(error_message(br#"{"error": "overloaded"}"#), "overloaded");
        assert_eq!(error_message(b"<html>\n502\n</html>"), "<html> 502 </html>");
    }
}
