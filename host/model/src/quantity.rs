//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`) as integers, rounded up like
//! `Quantity.MilliValue()` and `Quantity.Value()`.

/// The most digits a quantity's number may have (more than any real quantity uses).
const MAX_DIGITS: usize = 36;

/// A quantity in thousandths of a unit (cpu), rounded up; `None` when it does not parse.
pub fn milli(text: &str) -> Option<i64> {
    scaled(text, 3)
}

/// A quantity in units (bytes, counts), rounded up; `None` when it does not parse.
pub fn units(text: &str) -> Option<i64> {
    scaled(text, 0)
}

/// `value × 10^scale`, rounded up and clamped to `i64`.
fn scaled(text: &str, scale: i32) -> Option<i64> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() == 0
        || whole.len() + fraction.len() > MAX_DIGITS
        || fraction.contains('.')
    {
        return None;
    }
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa * 10 + u128::from(digit - b'0');
    }
    let (pow10, pow2) = suffix_exponents(suffix)?;
    let frac_len = i32::try_from(fraction.len()).ok()?;
    let magnitude = scale_up(mantissa, pow10 + scale - frac_len, pow2, negative);
    let clamped = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Some(if negative { -clamped } else { clamped })
}

/// The powers of ten and two a suffix multiplies by.
fn suffix_exponents(suffix: &str) -> Option<(i32, i32)> {
    let decimal = match suffix {
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "" => Some(0),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(pow10) = decimal {
        return Some((pow10, 0));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(pow2) = binary {
        return Some((0, pow2));
    }
    let exponent = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    let digits = exponent.trim_start_matches(['+', '-']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
        return None;
    }
    Some((exponent.parse().ok()?, 0))
}

/// `mantissa × 10^pow10 × 2^pow2` as a magnitude, rounded away from zero for positive values
/// and towards zero for negative ones (so that the signed result is rounded up); saturating.
fn scale_up(mantissa: u128, pow10: i32, pow2: i32, negative: bool) -> u128 {
    let shifted = mantissa.saturating_mul(1u128 << pow2);
    if pow10 >= 0 {
        let factor = 10u128.checked_pow(pow10.unsigned_abs());
        return factor
            .and_then(|f| shifted.checked_mul(f))
            .unwrap_or(if shifted == 0 { 0 } else { u128::MAX });
    }
    let Some(divisor) = 10u128.checked_pow(pow10.unsigned_abs()) else {
        return u128::from(!negative && shifted > 0);
    };
    let quotient = shifted / divisor;
    if !negative && !shifted.is_multiple_of(divisor) {
        quotient + 1
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::{milli, units};

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
}
