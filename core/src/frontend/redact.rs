//! Secrets taken out of a pipeline's text before it is shown (`wirectl pipeline get`): the
//! value of every key named like a credential (`password`, `sasl.password`, `api_key`,
//! `secret`, `token`, in YAML `key: value` or SQL `'key' = 'value'` form) and the password
//! of a URL's user info (`postgres://user:PASSWORD@host`). A `${NAME}` reference stays: it
//! names an environment variable, not a secret. Keys ending in `_file` hold paths and stay.
//!
//! The text is redacted as text, line by line, so that it reads as the user wrote it; the
//! stored text (raft metadata, backups) keeps the secret, which the connector needs.

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// `text` with its secrets replaced by [`REDACTED`].
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&redact_keys(&redact_url_passwords(line)));
    }
    out
}

/// Whether a key (lower case, unquoted) holds a credential.
fn is_secret_key(key: &str) -> bool {
    const SECRET: [&str; 5] = ["password", "secret", "api_key", "apikey", "token"];
    SECRET.iter().any(|s| key.ends_with(s))
}

/// Whether `value` is only an environment reference, `${NAME}`.
fn is_reference(value: &str) -> bool {
    value.starts_with("${") && value.ends_with('}') && value.matches('}').count() == 1
}

/// The line with the password of every `scheme://user:password@` replaced.
fn redact_url_passwords(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || "/?#'\"}]".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@').map(|at| &authority[..at]) {
            Some(userinfo) => match userinfo.split_once(':') {
                Some((user, password)) if !password.is_empty() && !is_reference(password) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                    out.push_str(&authority[userinfo.len()..]);
                }
                _ => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The line with the value of every credential key replaced.
fn redact_keys(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let is_key_char = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
        if !is_key_char(bytes[i]) || (i > 0 && is_key_char(bytes[i - 1])) {
            i += 1;
            continue;
        }
        // A key starts at `i`: read it, an optional closing quote, spaces, then `:` or `=`.
        let start = i;
        while i < bytes.len() && is_key_char(bytes[i]) {
            i += 1;
        }
        let key = line[start..i].to_ascii_lowercase();
        let mut j = i;
        if j < bytes.len() && (bytes[j] == b'\'' || bytes[j] == b'"') {
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let separated = match bytes.get(j) {
            Some(b':') => bytes.get(j + 1).is_none_or(|b| b.is_ascii_whitespace()),
            Some(b'=') => true,
            _ => false,
        };
        if !separated || !is_secret_key(&key) {
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let (from, to) = match bytes.get(j) {
            Some(&quote) if quote == b'\'' || quote == b'"' => {
                let close = line[j + 1..]
                    .find(quote as char)
                    .map_or(line.len(), |k| j + 1 + k);
                (j + 1, close)
            }
            _ => {
                // A `${NAME}` reference's `}` does not end the value.
                let after = match line[j..].strip_prefix("${") {
                    Some(inside) => inside.find('}').map_or(j, |k| j + 2 + k + 1),
                    None => j,
                };
                let end = line[after..]
                    .find(|c: char| ",}]#\r\n".contains(c))
                    .map_or(line.len(), |k| after + k);
                (j, j + line[j..end].trim_end().len())
            }
        };
        let value = &line[from..to];
        if !value.is_empty() && !is_reference(value) {
            out.push_str(&line[copied..from]);
            out.push_str(REDACTED);
            copied = to;
        }
        i = to.max(i);
    }
    out.push_str(&line[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_yaml_block_and_flow_style_are_redacted() {
        let text = "sinks:\n  es:\n    type: elasticsearch\n    username: wire\n    password: hunter2\n    api_key_file: /etc/key\n  other: {type: x, password: 's3 cr,et', user: me}\n";
        let want = "sinks:\n  es:\n    type: elasticsearch\n    username: wire\n    password: <redacted>\n    api_key_file: /etc/key\n  other: {type: x, password: '<redacted>', user: me}\n";
        assert_eq!(redact_secrets(text), want);
    }

    #[test]
    fn kafka_properties_and_sql_options_are_redacted() {
        let yaml = "    properties: {sasl.password: pw, sasl.username: u}\n";
        assert_eq!(
            redact_secrets(yaml),
            "    properties: {sasl.password: <redacted>, sasl.username: u}\n"
        );
        let sql = "WITH ('connector' = 'kafka', 'properties.sasl.password' = 'pw', 'topic' = 't')";
        assert_eq!(
            redact_secrets(sql),
            "WITH ('connector' = 'kafka', 'properties.sasl.password' = '<redacted>', 'topic' = 't')"
        );
    }

    #[test]
    fn url_passwords_are_redacted_and_references_kept() {
        let text = "url: postgres://wire:pa55@db:5432/app\nuri: mongodb://u:${PW}@h:1,h2:2/?x=1\nhost: http://h:9200\n";
        let want = "url: postgres://wire:<redacted>@db:5432/app\nuri: mongodb://u:${PW}@h:1,h2:2/?x=1\nhost: http://h:9200\n";
        assert_eq!(redact_secrets(text), want);
        let kept = "password: ${ES_PASSWORD}\napi_key: \"${KEY}\"\n";
        assert_eq!(redact_secrets(kept), kept);
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        let text = "name: q5\nsources:\n  bids: {type: nexmark, stream: bid, events: 300000}\n# password policy: none here\ntokens: 3\n";
        assert_eq!(redact_secrets(text), text);
    }
}
