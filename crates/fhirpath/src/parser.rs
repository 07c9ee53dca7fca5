//! A precedence-climbing parser for the FHIRPath grammar.

use fhir::{DateTime, DateTimeKind, Precision, Time};
use rust_decimal::Decimal;

use crate::Error;
use crate::ast::{BinaryOp, Expr, Literal, TypeSpecifier};
use crate::functions::Function;
use crate::lexer::{Token, TokenKind, tokenize};
use crate::value::Quantity;

/// Tokens in one expression, at most (the longest R4 expression has a few hundred).
pub(crate) const MAX_TOKENS: usize = 10_000;
/// How deep an expression may nest (parentheses, arguments, operands, path steps). Parsing,
/// evaluating and dropping an expression recurse over its tree: bounded here, so an
/// expression from outside (a view's path, a command line) cannot overflow a thread's stack.
pub(crate) const MAX_DEPTH: usize = 256;

pub(crate) fn parse(text: &str) -> Result<Expr, Error> {
    let tokens = tokenize(text)?;
    if tokens.len() > MAX_TOKENS {
        return Err(Error::parse(
            0,
            format!("the expression has {} tokens; at most {MAX_TOKENS} are accepted", tokens.len()),
        ));
    }
    let mut parser = Parser { tokens, position: 0, depth: 0 };
    let expr = parser.expression(0)?;
    if expr.depth() > MAX_DEPTH {
        return Err(Error::parse(0, format!("the expression nests more than {MAX_DEPTH} levels deep")));
    }
    match parser.peek() {
        TokenKind::End => Ok(expr),
        other => Err(parser.error(format!("expected an operator or the end, found {}", other.describe()))),
    }
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    /// Recursion depth of the parser itself.
    depth: usize,
}

/// Binding power of infix operators: (left, right). Higher binds tighter.
fn infix(token: &TokenKind) -> Option<(u8, Infix)> {
    let word = match token {
        TokenKind::Symbol(symbol) => *symbol,
        TokenKind::Identifier(name) => name.as_str(),
        _ => return None,
    };
    let (power, op) = match word {
        "implies" => (1, Infix::Binary(BinaryOp::Implies)),
        "or" => (2, Infix::Binary(BinaryOp::Or)),
        "xor" => (2, Infix::Binary(BinaryOp::Xor)),
        "and" => (3, Infix::Binary(BinaryOp::And)),
        "in" => (4, Infix::Binary(BinaryOp::In)),
        "contains" => (4, Infix::Binary(BinaryOp::Contains)),
        "=" => (5, Infix::Binary(BinaryOp::Equal)),
        "~" => (5, Infix::Binary(BinaryOp::Equivalent)),
        "!=" => (5, Infix::Binary(BinaryOp::NotEqual)),
        "!~" => (5, Infix::Binary(BinaryOp::NotEquivalent)),
        "<" => (6, Infix::Binary(BinaryOp::Less)),
        "<=" => (6, Infix::Binary(BinaryOp::LessOrEqual)),
        ">" => (6, Infix::Binary(BinaryOp::Greater)),
        ">=" => (6, Infix::Binary(BinaryOp::GreaterOrEqual)),
        "|" => (7, Infix::Binary(BinaryOp::Union)),
        "is" => (8, Infix::Is),
        "as" => (8, Infix::As),
        "+" => (9, Infix::Binary(BinaryOp::Add)),
        "-" => (9, Infix::Binary(BinaryOp::Subtract)),
        "&" => (9, Infix::Binary(BinaryOp::Concatenate)),
        "*" => (10, Infix::Binary(BinaryOp::Multiply)),
        "/" => (10, Infix::Binary(BinaryOp::Divide)),
        "div" => (10, Infix::Binary(BinaryOp::Div)),
        "mod" => (10, Infix::Binary(BinaryOp::Mod)),
        _ => return None,
    };
    Some((power, op))
}

enum Infix {
    Binary(BinaryOp),
    Is,
    As,
}

const CALENDAR_UNITS: &[&str] = &[
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

impl Parser {
    fn peek(&self) -> &TokenKind {
        &self.tokens[self.position].kind
    }

    fn peek_at(&self, offset: usize) -> &TokenKind {
        &self.tokens[(self.position + offset).min(self.tokens.len() - 1)].kind
    }

    fn at(&self) -> usize {
        self.tokens[self.position].at
    }

    fn advance(&mut self) -> TokenKind {
        let token = self.tokens[self.position].kind.clone();
        if self.position < self.tokens.len() - 1 {
            self.position += 1;
        }
        token
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::parse(self.at(), message)
    }

    fn expect(&mut self, symbol: &'static str) -> Result<(), Error> {
        if self.peek() == &TokenKind::Symbol(symbol) {
            self.advance();
            Ok(())
        } else {
            Err(self.error(format!("expected '{symbol}', found {}", self.peek().describe())))
        }
    }

    fn expression(&mut self, min_power: u8) -> Result<Expr, Error> {
        self.depth += 1;
        let result = self.expression_within(min_power);
        self.depth -= 1;
        result
    }

    fn expression_within(&mut self, min_power: u8) -> Result<Expr, Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("the expression nests more than {MAX_DEPTH} levels deep")));
        }
        let mut left = self.unary()?;
        while let Some((power, op)) = infix(self.peek()) {
            if power <= min_power {
                break;
            }
            self.advance();
            left = match op {
                Infix::Binary(op) => {
                    let right = self.expression(power)?;
                    Expr::Binary { op, left: Box::new(left), right: Box::new(right) }
                }
                Infix::Is => Expr::Is { operand: Box::new(left), type_name: self.type_specifier()? },
                Infix::As => Expr::As { operand: Box::new(left), type_name: self.type_specifier()? },
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, Error> {
        match self.peek() {
            TokenKind::Symbol("-") => {
                self.advance();
                let operand = self.unary_operand()?;
                Ok(Expr::Negate(Box::new(operand)))
            }
            TokenKind::Symbol("+") => {
                self.advance();
                self.unary_operand()
            }
            _ => self.postfix(),
        }
    }

    /// The operand of a sign: only invocations and indexers bind tighter than a sign, so
    /// `-1.abs()` is `-(1.abs())` and `-1 + 2` is `(-1) + 2`.
    fn unary_operand(&mut self) -> Result<Expr, Error> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(self.error(format!("the expression nests more than {MAX_DEPTH} levels deep")))
        } else {
            self.unary()
        };
        self.depth -= 1;
        result
    }

    fn postfix(&mut self) -> Result<Expr, Error> {
        let mut expr = self.term()?;
        loop {
            match self.peek() {
                TokenKind::Symbol(".") => {
                    self.advance();
                    expr = self.invocation(Some(expr))?;
                }
                TokenKind::Symbol("[") => {
                    self.advance();
                    let index = self.expression(0)?;
                    self.expect("]")?;
                    expr = Expr::Indexer { target: Box::new(expr), index: Box::new(index) };
                }
                _ => return Ok(expr),
            }
        }
    }

    fn term(&mut self) -> Result<Expr, Error> {
        let at = self.at();
        match self.peek().clone() {
            TokenKind::Number(text) => {
                self.advance();
                self.number_or_quantity(&text, at)
            }
            TokenKind::Long(text) => {
                self.advance();
                let value = text.parse().map_err(|_| Error::parse(at, format!("{text}L is out of range")))?;
                Ok(Expr::Literal(Literal::Long(value)))
            }
            TokenKind::String(text) => {
                self.advance();
                Ok(Expr::Literal(Literal::String(text)))
            }
            TokenKind::DateTime(text) => {
                self.advance();
                date_time_literal(&text, at)
            }
            TokenKind::Time(text) => {
                self.advance();
                let time = Time::parse(&text, true)
                    .map_err(|e| Error::parse(at, format!("invalid time literal @T{text}: {e}")))?;
                Ok(Expr::Literal(Literal::Time(time)))
            }
            TokenKind::Variable(name) => {
                self.advance();
                Ok(Expr::Variable(name))
            }
            TokenKind::Symbol("(") => {
                self.advance();
                let inner = self.expression(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            TokenKind::Symbol("{") => {
                self.advance();
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            TokenKind::Identifier(name) if name == "true" || name == "false" => {
                self.advance();
                Ok(Expr::Literal(Literal::Boolean(name == "true")))
            }
            TokenKind::Identifier(_) | TokenKind::DelimitedIdentifier(_) | TokenKind::Special(_) => {
                self.invocation(None)
            }
            other => Err(self.error(format!("expected an expression, found {}", other.describe()))),
        }
    }

    fn number_or_quantity(&mut self, text: &str, at: usize) -> Result<Expr, Error> {
        let unit = match self.peek() {
            TokenKind::String(unit) => Some(unit.clone()),
            TokenKind::Identifier(word) if CALENDAR_UNITS.contains(&word.as_str()) => Some(word.clone()),
            _ => None,
        };
        let decimal =
            || Decimal::from_str_exact(text).map_err(|_| Error::parse(at, format!("{text} is out of range")));
        if let Some(unit) = unit {
            self.advance();
            return Ok(Expr::Literal(Literal::Quantity(Quantity::new(decimal()?, unit))));
        }
        if text.contains('.') {
            Ok(Expr::Literal(Literal::Decimal(decimal()?)))
        } else {
            match text.parse::<i64>() {
                Ok(value) if i32::try_from(value).is_ok() => Ok(Expr::Literal(Literal::Integer(value))),
                _ => Err(Error::parse(at, format!("integer {text} is out of range; use {text}L for a Long"))),
            }
        }
    }

    fn identifier_name(&mut self) -> Result<String, Error> {
        match self.advance() {
            TokenKind::Identifier(name) | TokenKind::DelimitedIdentifier(name) => Ok(name),
            other => Err(Error::parse(
                self.tokens[self.position.saturating_sub(1)].at,
                format!("expected a name, found {}", other.describe()),
            )),
        }
    }

    fn invocation(&mut self, target: Option<Expr>) -> Result<Expr, Error> {
        let at = self.at();
        let target = target.map(Box::new);
        if let TokenKind::Special(name) = self.peek().clone() {
            self.advance();
            let special = match name.as_str() {
                "this" => Expr::This,
                "index" => Expr::Index,
                _ => Expr::Total,
            };
            // `$this` after a dot is the same as `$this` alone.
            return Ok(special);
        }
        let delimited = matches!(self.peek(), TokenKind::DelimitedIdentifier(_));
        let name = self.identifier_name()?;
        if !delimited && self.peek() == &TokenKind::Symbol("(") {
            self.advance();
            let function = Function::from_name(&name)
                .ok_or_else(|| Error::parse(at, format!("unknown function '{name}'")))?;
            let mut args = Vec::new();
            if self.peek() != &TokenKind::Symbol(")") {
                loop {
                    args.push(self.expression(0)?);
                    if self.peek() == &TokenKind::Symbol(",") {
                        self.advance();
                    } else {
                        break;
                    }
                }
            }
            self.expect(")")?;
            let (min, max) = function.arity();
            if args.len() < min || args.len() > max {
                let expected = if min == max { format!("{min}") } else { format!("{min} to {max}") };
                return Err(Error::parse(
                    at,
                    format!("{name}() takes {expected} argument(s), {} given", args.len()),
                ));
            }
            if function.takes_type_argument()
                && let Some(arg) = args.first()
            {
                type_of_expr(arg).ok_or_else(|| {
                    Error::parse(at, format!("the argument of {name}() must be a type name"))
                })?;
            }
            return Ok(Expr::Call { target, function, args });
        }
        // A capitalised name at the start of a path is a type name (`Patient.name`) when the
        // definitions know it; resolved once here rather than at every evaluation.
        if target.is_none()
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && let Some(ty) = fhir::definitions().type_def(&name)
        {
            return Ok(Expr::TypeFilter(ty.name));
        }
        Ok(Expr::Member { target, name })
    }

    fn type_specifier(&mut self) -> Result<TypeSpecifier, Error> {
        let first = self.identifier_name()?;
        if self.peek() == &TokenKind::Symbol(".")
            && matches!(self.peek_at(1), TokenKind::Identifier(_) | TokenKind::DelimitedIdentifier(_))
        {
            self.advance();
            let name = self.identifier_name()?;
            return Ok(TypeSpecifier { namespace: Some(first), name });
        }
        Ok(TypeSpecifier { namespace: None, name: first })
    }
}

/// Reads a type name written as an expression (`Patient`, `FHIR.Patient`).
pub(crate) fn type_of_expr(expr: &Expr) -> Option<TypeSpecifier> {
    match expr {
        Expr::TypeFilter(name) => Some(TypeSpecifier { namespace: None, name: name.to_string() }),
        Expr::Member { target: None, name } => Some(TypeSpecifier { namespace: None, name: name.clone() }),
        Expr::Member { target: Some(target), name } => match target.as_ref() {
            Expr::Member { target: None, name: namespace } => {
                Some(TypeSpecifier { namespace: Some(namespace.clone()), name: name.clone() })
            }
            _ => None,
        },
        _ => None,
    }
}

fn date_time_literal(text: &str, at: usize) -> Result<Expr, Error> {
    let value = DateTime::parse(text, DateTimeKind::Partial)
        .map_err(|e| Error::parse(at, format!("invalid date/time literal @{text}: {e}")))?;
    // `@2015` and `@2015-02-04` are Dates; a `T` makes a DateTime, even `@2015T`.
    if text.contains('T') || value.precision > Precision::Day {
        Ok(Expr::Literal(Literal::DateTime(value)))
    } else {
        Ok(Expr::Literal(Literal::Date(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_from_outside_cannot_nest_without_bound() {
        let nested = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&nested).is_err());
        let signs = format!("{}1", "-".repeat(100_000));
        assert!(parse(&signs).is_err());
        let sum = format!("1{}", " + 1".repeat(4_000));
        assert!(parse(&sum).is_err());
        let path = format!("a{}", ".b".repeat(300));
        assert!(parse(&path).is_err());
        let arguments = format!("{}1{}", "iif(true, ".repeat(300), ", 2)".repeat(300));
        assert!(parse(&arguments).is_err());
        assert!(parse(&format!("a{}", ".b".repeat(100))).is_ok());
        assert!(parse(&format!("1{}", " + 1".repeat(200))).is_ok());
    }
}
