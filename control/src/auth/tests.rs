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
