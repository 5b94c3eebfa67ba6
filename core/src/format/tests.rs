use super::*;

#[test]
fn epoch_zero_formats() {
    assert_eq!(&format_rfc3339(0).unwrap(), b"1970-01-01T00:00:00.000Z");
}
