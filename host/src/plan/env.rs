//! `${VAR}` and `${VAR:-default}` in pipeline specs.
//!
//! Substitution happens on the text, before YAML parsing, so a value can be
//! any YAML (a number, a path, a list). `$$` writes a literal `$`. Values are
//! inserted as they are; a value with a newline would shift the line numbers
//! of later errors, so such values are refused.

/// Substitutes variables in `text`. `lookup` returns a variable's value.
/// On error returns the 1-based line and a message.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut line = 1;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        line += rest[..i].matches('\n').count();
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err((line, "`${` without a closing `}`".to_owned()));
        };
        let expr = &body[..end];
        if expr.contains('\n') {
            return Err((
                line,
                "`${` without a closing `}` on the same line".to_owned(),
            ));
        }
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                line,
                format!("`${{{expr}}}`: a variable name is letters, digits and `_`"),
            ));
        }
        let value = match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                return Err((
                    line,
                    format!(
                        "environment variable {name} is not set (set it, or write `${{{name}:-default}}` for a default)"
                    ),
                ));
            }
        };
        if value.contains('\n') {
            return Err((line, format!("the value of {name} contains a newline")));
        }
        out.push_str(&value);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::substitute;

    fn env(name: &str) -> Option<String> {
        match name {
            "INPUT" => Some("/data/in.jsonl".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let text = "path: ${INPUT}\np: ${PARALLELISM:-2}\ne: ${EMPTY:-x}\ncost: $$5 and $x";
        assert_eq!(
            substitute(text, env).unwrap(),
            "path: /data/in.jsonl\np: 2\ne: x\ncost: $5 and $x"
        );
    }

    #[test]
    fn names_the_line_of_a_missing_variable() {
        let err = substitute("a: 1\nb: ${OUTPUT}\n", env).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("OUTPUT is not set"), "{}", err.1);
        assert_eq!(substitute("a: ${X", env).unwrap_err().0, 1);
        assert!(
            substitute("a: ${X Y}", env)
                .unwrap_err()
                .1
                .contains("variable name")
        );
    }
}
