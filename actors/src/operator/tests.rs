use super::*;

#[test]
fn values_order_nulls_first_and_numbers_by_value() {
    assert_eq!(cmp_ref(ValueRef::Null, ValueRef::I64(-5)), Ordering::Less);
    assert_eq!(
        cmp_ref(ValueRef::I64(2), ValueRef::F64(1.5)),
        Ordering::Greater
    );
    assert_eq!(
        cmp_ref(ValueRef::Str("b"), ValueRef::Str("a")),
        Ordering::Greater
    );
    assert!(datum_eq(&Datum::F64(0.0), &Value::F64(-0.0)));
    assert!(!datum_eq(&Datum::I64(1), &Value::F64(1.0)));
}
