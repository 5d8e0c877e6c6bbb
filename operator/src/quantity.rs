//! Just enough of Kubernetes' quantity syntax to validate and compare storage sizes.

/// The value of a quantity such as `10Gi`, `500M` or `1.5e9`, in base units.
/// `None` when the text is not a quantity.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.matches('.').count() > 1 || !number.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(value * multiplier)
}

/// Whether two quantities denote the same amount (`1Gi` equals `1024Mi`).
pub fn same(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_and_exponent_suffixes() {
        assert_eq!(parse("10Gi"), Some(10.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("500M"), Some(5e8));
        assert_eq!(parse("1.5e3"), Some(1500.0));
        assert_eq!(parse("250m"), Some(0.25));
        assert_eq!(parse("42"), Some(42.0));
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for text in ["", "Gi", "10GB", "ten", "1.2.3Gi", "10 Gi", "1e"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn compares_by_value_not_by_spelling() {
        assert!(same("1Gi", "1024Mi"));
        assert!(!same("10Gi", "20Gi"));
    }
}
