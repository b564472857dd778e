"""Recursive-descent parser: expression text to an unchecked syntax tree.

Grammar, loosest binding first::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum
                   | ["not"] "in" "[" [item ("," item)* [","]] "]"
                   | ("~" | "=~") STRING ]
    sum     := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := "-" unary | primary
    primary := NUMBER | SIZE | DURATION | DATE | STRING | "true" | "false"
             | IDENTIFIER | "(" expr ")"
    item    := ["-"] (NUMBER | SIZE | DURATION | DATE | STRING | "true" | "false")

Comparisons do not chain (``1 < size < 5`` is an error; use ``and``).
"""

from __future__ import annotations

from tiering.policy import lexer
from tiering.policy.lexer import Token
from tiering.policy.syntax import (
    BOOL, DURATION, NUMBER, SIZE, TEXT, TIME, And, Arith, Compare, ExpressionError, InList, Literal, Match, Name,
    Neg, Node, Not, Or,
)

COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_LITERAL_KINDS = {
    lexer.NUMBER: NUMBER, lexer.SIZE: SIZE, lexer.DURATION: DURATION, lexer.DATE: TIME, lexer.STRING: TEXT,
}


def parse(text: str) -> Node:
    """The syntax tree of ``text``; raises ``ExpressionError`` with the column."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = lexer.tokenize(text)
        self.i = 0

    # -- token helpers ---------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, *texts: str) -> bool:
        tok = self.tok
        return tok.kind in (lexer.OP, lexer.IDENT) and tok.text in texts

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def previous(self) -> str:
        return repr(self.tokens[self.i - 1].text) if self.i else "the start"

    def fail(self, expected: str) -> ExpressionError:
        where = f" after {self.previous()}" if self.i else ""
        return ExpressionError(self.text, self.tok.pos, f"expected {expected}{where}, found {self.tok.shown()}")

    def span(self, start: int) -> str:
        end = self.tokens[self.i - 1]
        return self.text[start : end.pos + len(end.text)]

    # -- grammar -----------------------------------------------------------------

    def parse(self) -> Node:
        if self.tok.kind == lexer.END:
            raise ExpressionError(self.text, 0, "empty expression; expected a condition such as size > 1GiB")
        node = self.expr()
        if self.tok.kind != lexer.END:
            if self.at(*COMPARISONS, "~", "=~", "in"):
                raise ExpressionError(self.text, self.tok.pos, f"comparisons cannot be chained; use 'and' before {self.tok.shown()}")
            raise self.fail("'and', 'or', an operator or the end of the expression")
        return node

    def expr(self) -> Node:
        return self._chain("or", Or, self.conjunction)

    def conjunction(self) -> Node:
        return self._chain("and", And, self.negation)

    def _chain(self, word: str, cls: type[And | Or], operand) -> Node:
        start, items = self.tok.pos, [operand()]
        while self.at(word) and self.tok.kind == lexer.IDENT:
            self.take()
            items.append(operand())
        return items[0] if len(items) == 1 else cls(pos=start, src=self.span(start), items=tuple(items))

    def negation(self) -> Node:
        if self.at("not"):
            start = self.take().pos
            operand = self.negation()
            return Not(pos=start, src=self.span(start), operand=operand)
        return self.comparison()

    def comparison(self) -> Node:
        start, left = self.tok.pos, self.sum()
        if self.at(*COMPARISONS):
            op = self.take().text
            right = self.sum()
            return Compare(pos=start, src=self.span(start), op=op, left=left, right=right)
        if self.at("in") or (self.at("not") and self.tokens[self.i + 1].text == "in"):
            negated = self.take().text == "not"
            if negated:
                self.take()
            items = self.items()
            return InList(pos=start, src=self.span(start), left=left, items=items, negated=negated)
        if self.at("~", "=~"):
            op = self.take().text
            if self.tok.kind != lexer.STRING:
                raise self.fail(f"a quoted {'glob pattern' if op == '~' else 'regular expression'}")
            pattern = self.take()
            return Match(pos=start, src=self.span(start), op=op, left=left, pattern=pattern.value, pattern_pos=pattern.pos)
        return left

    def items(self) -> tuple[Literal, ...]:
        if not self.at("["):
            raise self.fail("'[' starting a list of values")
        self.take()
        items: list[Literal] = []
        while not self.at("]"):
            if items:
                if not self.at(","):
                    raise self.fail("',' or ']'")
                self.take()
                if self.at("]"):
                    break
            items.append(self.item())
        self.take()
        return tuple(items)

    def item(self) -> Literal:
        node = self.unary()
        if not isinstance(node, Literal):
            raise ExpressionError(self.text, node.pos, f"expected a literal value in the list, found {node.src!r}")
        return node

    def sum(self) -> Node:
        return self._arith(("+", "-"), self.term)

    def term(self) -> Node:
        return self._arith(("*", "/"), self.unary)

    def _arith(self, ops: tuple[str, ...], operand) -> Node:
        start, node = self.tok.pos, operand()
        while self.at(*ops) and self.tok.kind == lexer.OP:
            op = self.take().text
            right = operand()
            node = Arith(pos=start, src=self.span(start), op=op, left=node, right=right)
        return node

    def unary(self) -> Node:
        if not self.at("-") or self.tok.kind != lexer.OP:
            return self.primary()
        start = self.take().pos
        operand = self.unary()
        if isinstance(operand, Literal) and operand.kind in (NUMBER, SIZE, DURATION):
            return Literal(pos=start, src=self.span(start), kind=operand.kind, value=-operand.value)  # type: ignore[operator]
        return Neg(pos=start, src=self.span(start), operand=operand)

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind in _LITERAL_KINDS:
            self.take()
            return Literal(pos=tok.pos, src=tok.text, kind=_LITERAL_KINDS[tok.kind], value=tok.value)
        if tok.kind == lexer.IDENT and tok.text in ("true", "false"):
            self.take()
            return Literal(pos=tok.pos, src=tok.text, kind=BOOL, value=tok.text == "true")
        if tok.kind == lexer.IDENT and tok.text not in lexer.KEYWORDS:
            self.take()
            return Name(pos=tok.pos, src=tok.text, name=tok.text)
        if self.at("("):
            return self.group()
        raise self.fail("a value")

    def group(self) -> Node:
        opening = self.take()
        node = self.expr()
        if not self.at(")"):
            where = f"column {opening.pos + 1}" if "\n" not in self.text else "its line"
            raise self.fail(f"')' to close '(' at {where}")
        self.take()
        return node
