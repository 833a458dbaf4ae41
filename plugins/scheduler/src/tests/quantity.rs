//! Quantity parsing: suffixes, exponents, fractions, rounding up, and what does not parse.

use crate::quantity::{milli, units};

#[test]
fn cpu_in_millicores() {
    assert_eq!(milli("100m"), Some(100));
    assert_eq!(milli("1"), Some(1000));
    assert_eq!(milli("0.5"), Some(500));
    assert_eq!(milli(".25"), Some(250));
    assert_eq!(milli("1.5"), Some(1500));
    assert_eq!(milli("2.5m"), Some(3), "rounded up");
    assert_eq!(milli("0.0001"), Some(1), "rounded up");
    assert_eq!(milli("5e-3"), Some(5));
    assert_eq!(milli("100u"), Some(1));
    assert_eq!(milli("+2"), Some(2000));
}

#[test]
fn bytes_with_binary_and_decimal_suffixes() {
    assert_eq!(units("128974848"), Some(128_974_848));
    assert_eq!(units("123Mi"), Some(128_974_848));
    assert_eq!(units("129e6"), Some(129_000_000));
    assert_eq!(units("129M"), Some(129_000_000));
    assert_eq!(units("1Ki"), Some(1024));
    assert_eq!(units("1.5Gi"), Some(1_610_612_736));
    assert_eq!(units(".5Ki"), Some(512));
    assert_eq!(units("1k"), Some(1000));
    assert_eq!(units("2G"), Some(2_000_000_000));
    assert_eq!(units("1T"), Some(1_000_000_000_000));
    assert_eq!(units("1Pi"), Some(1 << 50));
    assert_eq!(units("1Ei"), Some(1 << 60));
    assert_eq!(units("1e3"), Some(1000));
    assert_eq!(
        units("1E3"),
        Some(1000),
        "E followed by digits is an exponent"
    );
    assert_eq!(
        units("1E"),
        Some(1_000_000_000_000_000_000),
        "E alone is exa"
    );
    assert_eq!(units("1e+3"), Some(1000));
    assert_eq!(units("1e-3"), Some(1), "rounded up");
    assert_eq!(units("0.5"), Some(1), "rounded up");
    assert_eq!(units("1n"), Some(1), "rounded up");
    assert_eq!(units("0"), Some(0));
    assert_eq!(units("-1"), Some(-1));
    assert_eq!(units("-1.5"), Some(-1), "negative values round up too");
    assert_eq!(units("12E"), Some(i64::MAX), "too large saturates");
}

#[test]
fn malformed_quantities_do_not_parse() {
    for text in [
        "", "abc", "1Zi", "1.2.3", "e3", "1e", "1e+", "1 Gi", "Gi", "--1", "1ee3", ".",
    ] {
        assert_eq!(units(text), None, "{text:?}");
    }
}
