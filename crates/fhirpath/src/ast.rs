//! The parsed form of an expression.

use fhir::{DateTime, Time};
use rust_decimal::Decimal;

use crate::functions::Function;
use crate::value::Quantity;

/// A literal as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Boolean(bool),
    String(String),
    Integer(i64),
    Long(i64),
    Decimal(Decimal),
    Date(DateTime),
    DateTime(DateTime),
    Time(Time),
    Quantity(Quantity),
}

/// A type name in `is`, `as`, `ofType()`: `Patient`, `FHIR.Patient`, `System.Integer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeSpecifier {
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for TypeSpecifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Multiply,
    Divide,
    Div,
    Mod,
    Add,
    Subtract,
    Concatenate,
    Union,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
    Equivalent,
    NotEquivalent,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// An expression node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Literal(Literal),
    /// `{}`
    Empty,
    This,
    Index,
    Total,
    /// `%name`
    Variable(String),
    /// `target.name`, or `name` at the start of a path (applied to `$this`).
    Member {
        target: Option<Box<Expr>>,
        name: String,
    },
    /// A type name at the start of a path (`Patient.name`): the focus items of that type.
    TypeFilter(&'static str),
    /// `target.f(args)`, or `f(args)` applied to `$this`.
    Call {
        target: Option<Box<Expr>>,
        function: Function,
        args: Vec<Expr>,
    },
    /// `target[index]`
    Indexer {
        target: Box<Expr>,
        index: Box<Expr>,
    },
    /// `-operand` (`+operand` parses to the operand itself).
    Negate(Box<Expr>),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Is {
        operand: Box<Expr>,
        type_name: TypeSpecifier,
    },
    As {
        operand: Box<Expr>,
        type_name: TypeSpecifier,
    },
}

impl Expr {
    /// How deep the tree is, measured without recursion (a tree as deep as its text is long
    /// must not overflow the stack measuring it).
    pub(crate) fn depth<'e>(&'e self) -> usize {
        let mut deepest = 0;
        let mut stack: Vec<(&'e Expr, usize)> = vec![(self, 1)];
        while let Some((expr, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            let mut push = |child: &'e Expr| stack.push((child, depth + 1));
            match expr {
                Expr::Literal(_)
                | Expr::Empty
                | Expr::This
                | Expr::Index
                | Expr::Total
                | Expr::Variable(_)
                | Expr::TypeFilter(_)
                | Expr::Member { target: None, .. } => {}
                Expr::Member { target: Some(target), .. } => push(target),
                Expr::Call { target, args, .. } => {
                    if let Some(target) = target {
                        push(target);
                    }
                    args.iter().for_each(&mut push);
                }
                Expr::Indexer { target, index } => {
                    push(target);
                    push(index);
                }
                Expr::Negate(operand) | Expr::Is { operand, .. } | Expr::As { operand, .. } => push(operand),
                Expr::Binary { left, right, .. } => {
                    push(left);
                    push(right);
                }
            }
        }
        deepest
    }

    /// Calls `f` on this node and every node below it, parents first.
    pub(crate) fn visit<'e>(&'e self, f: &mut impl FnMut(&'e Expr)) {
        f(self);
        match self {
            Expr::Literal(_)
            | Expr::Empty
            | Expr::This
            | Expr::Index
            | Expr::Total
            | Expr::Variable(_)
            | Expr::TypeFilter(_) => {}
            Expr::Member { target, .. } => {
                if let Some(target) = target {
                    target.visit(f);
                }
            }
            Expr::Call { target, args, .. } => {
                if let Some(target) = target {
                    target.visit(f);
                }
                for arg in args {
                    arg.visit(f);
                }
            }
            Expr::Indexer { target, index } => {
                target.visit(f);
                index.visit(f);
            }
            Expr::Negate(operand) | Expr::Is { operand, .. } | Expr::As { operand, .. } => operand.visit(f),
            Expr::Binary { left, right, .. } => {
                left.visit(f);
                right.visit(f);
            }
        }
    }
}
