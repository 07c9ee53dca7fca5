//! Just enough UCUM to compare and convert the units of vital signs and laboratory results:
//! unit expressions (`mg/dL`, `kg/m2`, `10*3/uL`, `{beats}/min`) reduced to a factor on the
//! base units and a dimension vector. Units with an offset (`Cel`, `[degF]`) are not
//! convertible here and compare only with themselves.

use rust_decimal::Decimal;

/// Exponents of the base dimensions: length, mass, time, current, temperature, amount,
/// luminosity, arbitrary (international) units.
pub type Dimension = [i8; 8];

/// A value expressed in base units.
#[derive(Clone, Debug, PartialEq)]
pub struct Canonical {
    pub value: Decimal,
    pub dimension: Dimension,
}

const L: usize = 0;
const M: usize = 1;
const T: usize = 2;
const I: usize = 3;
const K: usize = 4;
const N: usize = 5;
const J: usize = 6;
const U: usize = 7;

fn dim(pairs: &[(usize, i8)]) -> Dimension {
    let mut d = [0i8; 8];
    for (index, exponent) in pairs {
        d[*index] = *exponent;
    }
    d
}

/// (code, factor to base units as text, dimension)
fn atom(code: &str) -> Option<(Decimal, Dimension)> {
    let (factor, dimension): (&str, Dimension) = match code {
        "1" => ("1", dim(&[])),
        "m" => ("1", dim(&[(L, 1)])),
        "g" => ("1", dim(&[(M, 1)])),
        "s" => ("1", dim(&[(T, 1)])),
        "A" => ("1", dim(&[(I, 1)])),
        "K" => ("1", dim(&[(K, 1)])),
        "mol" => ("1", dim(&[(N, 1)])),
        "cd" => ("1", dim(&[(J, 1)])),
        "min" => ("60", dim(&[(T, 1)])),
        "h" => ("3600", dim(&[(T, 1)])),
        "d" => ("86400", dim(&[(T, 1)])),
        "wk" => ("604800", dim(&[(T, 1)])),
        "mo" => ("2629800", dim(&[(T, 1)])),
        "a" => ("31557600", dim(&[(T, 1)])),
        "L" | "l" => ("0.001", dim(&[(L, 3)])),
        "%" => ("0.01", dim(&[])),
        "[ppm]" => ("0.000001", dim(&[])),
        "[in_i]" => ("0.0254", dim(&[(L, 1)])),
        "[ft_i]" => ("0.3048", dim(&[(L, 1)])),
        "[yd_i]" => ("0.9144", dim(&[(L, 1)])),
        "[mi_i]" => ("1609.344", dim(&[(L, 1)])),
        "[lb_av]" => ("453.59237", dim(&[(M, 1)])),
        "[oz_av]" => ("28.349523125", dim(&[(M, 1)])),
        "[stone_av]" => ("6350.29318", dim(&[(M, 1)])),
        "Pa" => ("1000", dim(&[(M, 1), (L, -1), (T, -2)])),
        "bar" => ("100000000", dim(&[(M, 1), (L, -1), (T, -2)])),
        "m[Hg]" => ("133322387.415", dim(&[(M, 1), (L, -1), (T, -2)])),
        "m[H2O]" => ("9806650", dim(&[(M, 1), (L, -1), (T, -2)])),
        "N" => ("1000", dim(&[(M, 1), (L, 1), (T, -2)])),
        "J" => ("1000", dim(&[(M, 1), (L, 2), (T, -2)])),
        "cal" => ("4184", dim(&[(M, 1), (L, 2), (T, -2)])),
        "W" => ("1000", dim(&[(M, 1), (L, 2), (T, -3)])),
        "Hz" => ("1", dim(&[(T, -1)])),
        "eq" => ("1", dim(&[(N, 1)])),
        "osm" => ("1", dim(&[(N, 1)])),
        "U" => ("0.0000000166666666666666666667", dim(&[(N, 1), (T, -1)])),
        "kat" => ("1", dim(&[(N, 1), (T, -1)])),
        "[iU]" | "[IU]" => ("1", dim(&[(U, 1)])),
        "[arb'U]" => ("1", dim(&[(U, 1)])),
        "[drp]" => ("0.00000005", dim(&[(L, 3)])),
        "[pi]" => ("3.1415926535897932384626433833", dim(&[])),
        "rad" => ("1", dim(&[])),
        "deg" => ("0.0174532925199432957692369077", dim(&[])),
        _ => return None,
    };
    Some((Decimal::from_str_exact(factor).ok()?, dimension))
}

const PREFIXES: &[(&str, &str)] = &[
    ("da", "10"),
    ("Y", "1000000000000000000000000"),
    ("Z", "1000000000000000000000"),
    ("E", "1000000000000000000"),
    ("P", "1000000000000000"),
    ("T", "1000000000000"),
    ("G", "1000000000"),
    ("M", "1000000"),
    ("k", "1000"),
    ("h", "100"),
    ("d", "0.1"),
    ("c", "0.01"),
    ("m", "0.001"),
    ("u", "0.000001"),
    ("n", "0.000000001"),
    ("p", "0.000000000001"),
    ("f", "0.000000000000001"),
    ("a", "0.000000000000000001"),
];

/// Prefixes apply only to metric atoms.
fn is_metric(code: &str) -> bool {
    matches!(
        code,
        "m" | "g"
            | "s"
            | "A"
            | "K"
            | "mol"
            | "cd"
            | "L"
            | "l"
            | "Pa"
            | "bar"
            | "m[Hg]"
            | "m[H2O]"
            | "N"
            | "J"
            | "cal"
            | "W"
            | "Hz"
            | "eq"
            | "osm"
            | "U"
            | "kat"
            | "[iU]"
            | "[IU]"
    )
}

fn prefixed_atom(code: &str) -> Option<(Decimal, Dimension)> {
    if let Some(found) = atom(code) {
        return Some(found);
    }
    for (prefix, factor) in PREFIXES {
        if let Some(rest) = code.strip_prefix(prefix)
            && is_metric(rest)
        {
            let (base, dimension) = atom(rest)?;
            return Some((Decimal::from_str_exact(factor).ok()? * base, dimension));
        }
    }
    None
}

/// `value unit` in base units, or `None` when the unit is not understood here.
pub fn canonical(value: Decimal, unit: &str) -> Option<Canonical> {
    let (factor, dimension) = parse(unit)?;
    Some(Canonical { value: value.checked_mul(factor)?, dimension })
}

/// Parses a unit expression into its factor and dimension.
pub fn parse(unit: &str) -> Option<(Decimal, Dimension)> {
    let chars: Vec<char> = unit.chars().collect();
    let mut parser = UnitParser { chars, at: 0 };
    let result = parser.expression()?;
    (parser.at == parser.chars.len()).then_some(result)
}

struct UnitParser {
    chars: Vec<char>,
    at: usize,
}

impl UnitParser {
    fn expression(&mut self) -> Option<(Decimal, Dimension)> {
        let mut factor = Decimal::ONE;
        let mut dimension = [0i8; 8];
        let mut divide = false;
        if self.chars.get(self.at) == Some(&'/') {
            self.at += 1;
            divide = true;
        }
        loop {
            let (term_factor, term_dimension) = self.term()?;
            combine(&mut factor, &mut dimension, term_factor, term_dimension, divide)?;
            match self.chars.get(self.at) {
                Some('.') => {
                    self.at += 1;
                    divide = false;
                }
                Some('/') => {
                    self.at += 1;
                    divide = true;
                }
                _ => return Some((factor, dimension)),
            }
        }
    }

    fn term(&mut self) -> Option<(Decimal, Dimension)> {
        if self.chars.get(self.at) == Some(&'(') {
            self.at += 1;
            let inner = self.expression()?;
            if self.chars.get(self.at) != Some(&')') {
                return None;
            }
            self.at += 1;
            let exponent = self.exponent().unwrap_or(1);
            let result = power(inner, exponent)?;
            self.annotation();
            return Some(result);
        }
        if self.chars.get(self.at) == Some(&'{') {
            self.annotation();
            return Some((Decimal::ONE, [0; 8]));
        }
        // `10*3`, `10^3`: powers of ten.
        let start = self.at;
        while self.chars.get(self.at).is_some_and(char::is_ascii_digit) {
            self.at += 1;
        }
        if self.at > start && matches!(self.chars.get(self.at), Some('*' | '^')) {
            let base: String = self.chars[start..self.at].iter().collect();
            self.at += 1;
            let exponent = self.exponent()?;
            let base = Decimal::from_str_exact(&base).ok()?;
            let result = power((base, [0; 8]), exponent)?;
            self.annotation();
            return Some(result);
        }
        if self.at > start {
            // A plain number is a dimensionless factor (e.g. the unit `1`).
            let number: String = self.chars[start..self.at].iter().collect();
            self.annotation();
            return Some((Decimal::from_str_exact(&number).ok()?, [0; 8]));
        }
        // An atom (with brackets kept whole), then an optional exponent.
        let start = self.at;
        while let Some(&c) = self.chars.get(self.at) {
            if c == '[' {
                while self.chars.get(self.at).is_some_and(|c| *c != ']') {
                    self.at += 1;
                }
                self.at += 1;
                continue;
            }
            if c == '.'
                || c == '/'
                || c == '{'
                || c == '('
                || c == ')'
                || c == '-'
                || c == '+'
                || c.is_ascii_digit()
            {
                break;
            }
            self.at += 1;
        }
        let code: String = self.chars[start..self.at.min(self.chars.len())].iter().collect();
        if code.is_empty() {
            return None;
        }
        let found = prefixed_atom(&code)?;
        let exponent = self.exponent().unwrap_or(1);
        self.annotation();
        power(found, exponent)
    }

    fn exponent(&mut self) -> Option<i32> {
        let start = self.at;
        if matches!(self.chars.get(self.at), Some('+' | '-')) {
            self.at += 1;
        }
        let digits_start = self.at;
        while self.chars.get(self.at).is_some_and(char::is_ascii_digit) {
            self.at += 1;
        }
        if self.at == digits_start {
            self.at = start;
            return None;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        text.parse().ok()
    }

    fn annotation(&mut self) {
        if self.chars.get(self.at) == Some(&'{') {
            while self.chars.get(self.at).is_some_and(|c| *c != '}') {
                self.at += 1;
            }
            self.at += 1;
        }
    }
}

fn power((factor, dimension): (Decimal, Dimension), exponent: i32) -> Option<(Decimal, Dimension)> {
    let mut result = Decimal::ONE;
    for _ in 0..exponent.unsigned_abs() {
        result = result.checked_mul(factor)?;
    }
    if exponent < 0 {
        result = Decimal::ONE.checked_div(result)?;
    }
    let mut scaled = [0i8; 8];
    for (i, d) in dimension.iter().enumerate() {
        scaled[i] = d.checked_mul(i8::try_from(exponent).ok()?)?;
    }
    Some((result, scaled))
}

fn combine(
    factor: &mut Decimal,
    dimension: &mut Dimension,
    term_factor: Decimal,
    term_dimension: Dimension,
    divide: bool,
) -> Option<()> {
    if divide {
        *factor = factor.checked_div(term_factor)?;
        for i in 0..8 {
            dimension[i] = dimension[i].checked_sub(term_dimension[i])?;
        }
    } else {
        *factor = factor.checked_mul(term_factor)?;
        for i in 0..8 {
            dimension[i] = dimension[i].checked_add(term_dimension[i])?;
        }
    }
    Some(())
}

/// Multiplies or divides two units symbolically (`cm` * `m` -> `cm.m`), for quantity
/// arithmetic; the result is then expressed in canonical form by the caller when needed.
pub fn combine_units(a: &str, b: &str, divide: bool) -> String {
    let wrap = |u: &str| if u.contains('/') || u.contains('.') { format!("({u})") } else { u.to_string() };
    match (a, b, divide) {
        (a, "1", _) => a.to_string(),
        ("1", b, false) => b.to_string(),
        ("1", b, true) => format!("/{}", wrap(b)),
        (a, b, false) => format!("{}.{}", wrap(a), wrap(b)),
        (a, b, true) => format!("{}/{}", wrap(a), wrap(b)),
    }
}

/// A UCUM unit string for a dimension in base units (`g.m-1`), the form arithmetic results
/// are reported in.
pub fn unit_for(dimension: &Dimension) -> String {
    const NAMES: [&str; 8] = ["m", "g", "s", "A", "K", "mol", "cd", "[iU]"];
    let parts: Vec<String> = dimension
        .iter()
        .enumerate()
        .filter(|(_, e)| **e != 0)
        .map(|(i, e)| if *e == 1 { NAMES[i].to_string() } else { format!("{}{e}", NAMES[i]) })
        .collect();
    if parts.is_empty() { "1".to_string() } else { parts.join(".") }
}

/// Converts `value` from one unit to another, if they measure the same thing.
pub fn convert(value: Decimal, from: &str, to: &str) -> Option<Decimal> {
    let source = canonical(value, from)?;
    let (factor, dimension) = parse(to)?;
    (dimension == source.dimension).then(|| source.value.checked_div(factor)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    #[test]
    fn converts_lab_and_vital_units() {
        assert_eq!(convert(d("4"), "g", "mg"), Some(d("4000")));
        assert_eq!(convert(d("1"), "wk", "d"), Some(d("7")));
        assert_eq!(convert(d("100"), "mg/dL", "g/L"), Some(d("1")));
        assert_eq!(convert(d("1"), "[lb_av]", "kg").map(|v| v.round_dp(8)), Some(d("0.45359237")));
        assert_eq!(convert(d("120"), "mm[Hg]", "kPa").map(|v| v.round_dp(3)), Some(d("15.999")));
        assert_eq!(convert(d("1"), "10*3/uL", "10*9/L"), Some(d("1")));
        assert_eq!(convert(d("72"), "{beats}/min", "/min"), Some(d("72")));
        assert_eq!(convert(d("1"), "m2", "cm2"), Some(d("10000")));
        assert!(convert(d("1"), "g", "m").is_none());
        assert!(convert(d("1"), "Cel", "K").is_none());
        assert!(parse("kg/m2").is_some());
        assert!(parse("mmol/L").is_some());
        assert!(parse("nonsense").is_none());
    }
}
