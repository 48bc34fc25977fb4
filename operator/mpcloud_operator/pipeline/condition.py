"""The analysis conditions (`result < 0.05 && !isNaN(result)`) as a small, safe expression language.

Parsed by a recursive-descent parser into a tree of closures and evaluated on one number — never `eval`, no
names but `result`, no attribute access, no loops: an expression costs at most its length. Grammar:

    expr   := or
    or     := and (("||" | "or") and)*
    and    := not (("&&" | "and") not)*
    not    := ("!" | "not") not | cmp
    cmp    := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum    := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := "-" unary | atom
    atom   := NUMBER | "result" | "result[0]" | "true" | "false" | NAME "(" expr ")" | "(" expr ")"

NAME is isNaN, isInf (booleans) or abs (a number); `result[0]` is `result` (Argo Rollouts' spelling for a
one-series query). Types are checked when parsing: the whole condition must be a boolean, operands of
arithmetic and comparisons numbers, of logic booleans. Division by zero gives ±Inf or NaN, as in PromQL.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 256
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|(?P<op>&&|\|\||<=|>=|==|!=|[<>!+\-*/()\[\]])|(?P<name>[A-Za-z_][A-Za-z0-9_]*))")
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
            "!=": operator.ne}
_OR = {"||": lambda a, b: bool(a) or bool(b), "or": lambda a, b: bool(a) or bool(b)}
_AND = {"&&": lambda a, b: bool(a) and bool(b), "and": lambda a, b: bool(a) and bool(b)}
_SUM = {"+": operator.add, "-": operator.sub}
_TERM: dict[str, Callable[[Any, Any], object]] = {"*": operator.mul, "/": lambda a, b: _divide(a, b)}
_FUNCTIONS: dict[str, tuple[Callable[[float], object], str]] = {
    "isNaN": (math.isnan, "bool"), "isInf": (math.isinf, "bool"), "abs": (abs, "num")}


class ConditionError(ValueError):
    """The condition does not parse (the message says where and why)."""


@dataclass(frozen=True)
class _Node:
    kind: str  # "num" | "bool"
    fn: Callable[[float], object]


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ConditionError(f"unexpected {text[pos:].strip()[:10]!r} at {pos}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, *values: str) -> str | None:
        if self.peek() in values:
            self.i += 1
            return self.tokens[self.i - 1][1]
        return None

    def expect(self, value: str) -> None:
        if self.take(value) is None:
            raise ConditionError(f"expected {value!r} {self.where()}")

    def where(self) -> str:
        if self.i >= len(self.tokens):
            return "at the end"
        return f"at {self.tokens[self.i][2]} ({self.tokens[self.i][1]!r})"

    @staticmethod
    def need(node: _Node, kind: str, what: str) -> None:
        if node.kind != kind:
            raise ConditionError(f"{what} needs {'a number' if kind == 'num' else 'a boolean'}")

    def parse(self) -> _Node:
        if not self.tokens:
            raise ConditionError("the condition is empty")
        node = self.or_()
        if self.i != len(self.tokens):
            raise ConditionError(f"unexpected {self.tokens[self.i][1]!r} at {self.tokens[self.i][2]}")
        self.need(node, "bool", "a condition")
        return node

    def chain(self, operand: Callable[[], _Node], kind: str, ops: dict[str, Callable[[Any, Any], object]]) -> _Node:
        """operand (op operand)*, left-associative; operands and result of kind `kind`."""
        node = operand()
        while (op := self.take(*ops)) is not None:
            right = operand()
            self.need(node, kind, op)
            self.need(right, kind, op)
            node = _Node(kind, lambda r, a=node.fn, b=right.fn, f=ops[op]: f(a(r), b(r)))
        return node

    def or_(self) -> _Node:
        return self.chain(self.and_, "bool", _OR)

    def and_(self) -> _Node:
        return self.chain(self.not_, "bool", _AND)

    def not_(self) -> _Node:
        if (op := self.take("!", "not")) is not None:
            inner = self.not_()
            self.need(inner, "bool", op)
            return _Node("bool", lambda r, a=inner.fn: not a(r))
        return self.cmp()

    def cmp(self) -> _Node:
        node = self.sum()
        op = self.take(*_COMPARE)
        if op is None:
            return node
        right = self.sum()
        self.need(node, "num", op)
        self.need(right, "num", op)
        if self.peek() in _COMPARE:
            raise ConditionError(f"comparisons do not chain: use && {self.where()}")
        return _Node("bool", lambda r, a=node.fn, b=right.fn, f=_COMPARE[op]: f(a(r), b(r)))

    def sum(self) -> _Node:
        return self.chain(self.term, "num", _SUM)

    def term(self) -> _Node:
        return self.chain(self.unary, "num", _TERM)

    def unary(self) -> _Node:
        if self.take("-") is not None:
            inner = self.unary()
            self.need(inner, "num", "-")
            return _Node("num", lambda r, a=inner.fn: -a(r))
        return self.atom()

    def atom(self) -> _Node:
        if self.i >= len(self.tokens):
            raise ConditionError("the condition ends too early")
        kind, value, _ = self.tokens[self.i]
        if kind == "num":
            self.i += 1
            number = float(value)
            return _Node("num", lambda r, n=number: n)
        if self.take("(") is not None:
            node = self.or_()
            self.expect(")")
            return node
        if kind != "name":
            raise ConditionError(f"unexpected {value!r} {self.where()}")
        self.i += 1
        if value == "result":
            if self.take("[") is not None:
                if self.take("0") is None:
                    raise ConditionError("only result[0] may be indexed (the query must return one series)")
                self.expect("]")
            return _Node("num", lambda r: r)
        if value in ("true", "false"):
            return _Node("bool", lambda r, v=value == "true": v)
        if value in _FUNCTIONS:
            fn, kind_out = _FUNCTIONS[value]
            self.expect("(")
            arg = self.or_()
            self.expect(")")
            self.need(arg, "num", f"{value}()")
            return _Node(kind_out, lambda r, f=fn, a=arg.fn: f(a(r)))
        raise ConditionError(f"unknown name {value!r}: use result, true, false, isNaN(), isInf(), abs()")


Condition = Callable[[float], bool]


def parse(text: str) -> Condition:
    """The condition as a function of `result`; ConditionError when it is not a valid condition."""
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"longer than {MAX_LENGTH} characters")
    node = _Parser(text).parse()
    return lambda result: bool(node.fn(float(result)))


def problem(text: str) -> str | None:
    """Why `text` is not a valid condition, or None."""
    try:
        parse(text)
    except ConditionError as exc:
        return str(exc)
    return None
