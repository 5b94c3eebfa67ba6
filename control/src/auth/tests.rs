use super::*;

/// The table names every RPC of admin.proto, once.
#[test]
fn the_table_covers_every_rpc() {
    let proto = include_str!("../../proto/wire/admin/v1/admin.proto");
    let mut declared: Vec<&str> = proto
        .lines()
        .filter_map(|line| line.trim().strip_prefix("rpc "))
        .filter_map(|rest| rest.split('(').next())
        .collect();
    let mut listed: Vec<&str> = RPC_ROLES.iter().map(|(name, _)| *name).collect();
    declared.sort_unstable();
    listed.sort_unstable();
    assert_eq!(declared, listed);
    assert!(RPC_ROLES
        .iter()
        .all(|(_, roles)| roles.contains(&AccessRole::Admin)));
    assert!(RPC_ROLES
        .iter()
        .all(|(_, roles)| !roles.contains(&AccessRole::Producer)));
    assert!(!allowed("NoSuchRpc", AccessRole::Admin));
}

#[test]
fn tokens_parse_and_hash() {
    let token = generate().unwrap();
    let (id, secret) = parse(&token.text).unwrap();
    assert_eq!(id, token.id);
    assert_eq!(hash_secret(&secret), token.hash);
    assert!(!token.text.contains(&token::hex(&token.hash)));
    let other = generate().unwrap();
    assert_ne!(token.id, other.id);
    assert!(token::same_hash(&token.hash, &token.hash));
    assert!(!token::same_hash(&token.hash, &other.hash));
    for bad in [
        "",
        "wire_",
        "wire_abc_def",
        &token.text[1..],
        &token.text[..token.text.len() - 1],
        &format!("{}x", token.text),
        &token.text.replace("wire_", "WIRE_"),
        &format!(
            "{}+{}",
            &token.text[..token.text.len() - 2],
            &token.text[token.text.len() - 1..]
        ),
        &format!("{}{}", &token.text[..22], token.text[22..].to_uppercase()),
    ] {
        assert!(parse(bad).is_none(), "{bad}");
    }
}

/// `wire certs init`'s admin client certificate carries the admin role; the node certificate
/// none.
#[test]
fn dev_client_certificates_carry_the_admin_role() {
    use rustls_pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    crate::tls::init_dev_certs(dir.path(), &[]).unwrap();
    let der = |name: &str| {
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        CertificateDer::from_pem_slice(&bytes).unwrap()
    };
    assert_eq!(cert_role(&der("client.pem")), Some(AccessRole::Admin));
    assert_eq!(cert_role(&der("node.pem")), None);
}

/// A token of `role` (and `scope`) recorded in `state`; its text.
fn record(
    state: &mut crate::raft::MetaState,
    role: AccessRole,
    scope: Option<(&str, Option<&str>)>,
    expires_at_ms: Option<u64>,
) -> String {
    let token = generate().unwrap();
    let scope = scope.map(|(pipeline, source)| crate::raft::TokenScope {
        pipeline: pipeline.into(),
        source: source.map(str::to_string),
    });
    let record = crate::raft::TokenRecord {
        role,
        hash: token.hash,
        created_at_ms: 0,
        expires_at_ms,
        scope,
    };
    state.tokens.insert(token.id.clone(), record);
    token.text
}

/// Who may ingest where: admin everywhere, a producer within its scope (everywhere without
/// one), no other role, no bad, expired or missing token.
#[test]
fn ingest_tokens_by_role_and_scope() {
    use AccessRole::Producer;
    let mut state = crate::raft::MetaState::default();
    let admin = record(&mut state, Admin, None, None);
    let any = record(&mut state, Producer, None, None);
    let orders = record(&mut state, Producer, Some(("orders", None)), None);
    let rows = record(&mut state, Producer, Some(("orders", Some("rows"))), None);
    let viewer = record(&mut state, Viewer, None, None);
    let operator = record(&mut state, Operator, None, None);
    let expired = record(&mut state, Producer, None, Some(1));
    let forged = format!("{}0", &rows[..rows.len() - 1]);
    let forged = if forged == rows {
        format!("{}1", &rows[..rows.len() - 1])
    } else {
        forged
    };
    let cases: &[(&str, &str, &str, bool)] = &[
        (&admin, "orders", "rows", true),
        (&admin, "other", "x", true),
        (&any, "other", "x", true),
        (&orders, "orders", "rows", true),
        (&orders, "orders", "audit", true),
        (&orders, "other", "rows", false),
        (&rows, "orders", "rows", true),
        (&rows, "orders", "audit", false),
        (&rows, "ordersx", "rows", false),
        (&viewer, "orders", "rows", false),
        (&operator, "orders", "rows", false),
        (&expired, "orders", "rows", false),
        (&forged, "orders", "rows", false),
        ("", "orders", "rows", false),
        ("wire_nope", "orders", "rows", false),
    ];
    for (token, pipeline, source, allowed) in cases {
        assert_eq!(
            ingest_allowed(&state, token, pipeline, source),
            *allowed,
            "{token} -> {pipeline}/{source}"
        );
    }
}
