//! Small helpers for messages: positions in text people wrote (config files), TOML parsed
//! with errors that name the field, and an error with its causes on one line.

/// `error: cause: cause` in one line; a cause already in the text so far is not repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The 1-based line and column of byte `offset` in `text` (clamped to its end).
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Parse a TOML document people wrote (a config file) into `T`.
///
/// # Errors
/// `line L, column C: FIELD: message`, where FIELD is the path of the value in error as the
/// user wrote it (`certificates[0].deploy`), omitted for the document itself. The quoted
/// source line is never included: it may hold a secret (an EAB key, a TSIG secret, a token,
/// a webhook URL) next to the typo.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let document = toml::Deserializer::parse(text).map_err(|e| toml_message(text, &e, None))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        toml_message(text, e.inner(), field)
    })
}

fn toml_message(text: &str, e: &toml::de::Error, field: Option<String>) -> String {
    let message = e.message().trim_end();
    let message = match field {
        Some(field) => format!("{field}: {message}"),
        None => message.to_string(),
    };
    match e.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one() {
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("a\nbü=x", 5), (2, 3));
        assert_eq!(line_and_column("a\n", 99), (2, 1));
    }

    #[test]
    fn toml_errors_name_the_field_and_never_quote_the_line() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Cert {
            name: String,
            deploy: Option<Vec<String>>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            certificates: Vec<Cert>,
        }
        let text = "[[certificates]]\nname = \"a\"\n\n[[certificates]]\nname = \"b\"\n\
                    deploy = \"systemctl reload nginx\"\n";
        let e = parse_toml::<File>(text).unwrap_err();
        assert!(
            e.starts_with("line 6, column 10: certificates[1].deploy: invalid type: string"),
            "{e}"
        );
        let e = parse_toml::<File>("[[certificates]]\nname = \"a\"\nsecret = \"hunter2\"\n")
            .unwrap_err();
        assert!(
            e.contains("certificates[0].secret: unknown field `secret`"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse_toml::<File>("certificates = [\n").unwrap_err();
        assert!(e.starts_with("line "), "{e}");
    }
}
