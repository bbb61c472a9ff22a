"""A tiny GraphQL interpreter for the fake W&B backend (tests/wandb_server.py).

It parses executable documents (operations, variables with defaults, aliases, arguments,
fragments, inline fragments) and resolves them over Python objects: a `Node` answers field
`foo(a: 1)` with its method `f_foo(a=1)`, a dict answers by key, a list maps over its items.
A field nobody answers resolves to null and is reported, so a client asking for something the
fake does not model shows up in the test instead of passing by accident.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class GraphQLError(Exception):
    """A document that cannot be parsed or executed."""


class Node:
    """Base of resolvable objects: field `x` is answered by method `f_x(**arguments)`."""


@dataclass
class Field:
    name: str
    alias: str
    args: dict[str, Any]
    selections: list[Any] | None


@dataclass
class Spread:
    fragment: str


@dataclass
class Inline:
    selections: list[Any]


@dataclass
class Operation:
    kind: str
    name: str | None
    defaults: dict[str, Any]
    selections: list[Any]


@dataclass
class Document:
    operations: list[Operation] = field(default_factory=list)
    fragments: dict[str, list[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Var:
    name: str


_TOKEN = re.compile(
    r'(?P<ws>[\s,\ufeff]+|#[^\n]*)|(?P<block>"""(?:[^"\\]|\\.|"(?!""))*""")|(?P<str>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<name>[_A-Za-z]\w*)|(?P<punct>\.\.\.|[!$():=@\[\]{}|&])"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise GraphQLError(f"unexpected character {text[pos]!r} at {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise GraphQLError(f"unexpected end of document, wanted {want or 'more'}")
        tok = self.toks[self.i]
        if want is not None and tok[1] != want:
            raise GraphQLError(f"expected {want!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def name(self) -> str:
        kind, text = self.take()
        if kind != "name":
            raise GraphQLError(f"expected a name, got {text!r}")
        return text

    def document(self) -> Document:
        doc = Document()
        while self.peek() is not None:
            head = self.peek()
            if head == "{":
                doc.operations.append(Operation("query", None, {}, self.selections()))
            elif head == "fragment":
                self.take()
                name = self.name()
                self.take("on")
                self.name()
                self.directives()
                doc.fragments[name] = self.selections()
            elif head in ("query", "mutation", "subscription"):
                kind = self.take()[1]
                op_name = self.name() if self.peek() not in ("(", "{", "@") else None
                defaults = self.variable_defs() if self.peek() == "(" else {}
                self.directives()
                doc.operations.append(Operation(kind, op_name, defaults, self.selections()))
            else:
                raise GraphQLError(f"unexpected {head!r} at top level")
        return doc

    def variable_defs(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        self.take("(")
        while self.peek() != ")":
            self.take("$")
            name = self.name()
            self.take(":")
            self.type_ref()
            if self.peek() == "=":
                self.take()
                defaults[name] = self.value()
            self.directives()
        self.take(")")
        return defaults

    def type_ref(self) -> None:
        if self.peek() == "[":
            self.take()
            self.type_ref()
            self.take("]")
        else:
            self.name()
        if self.peek() == "!":
            self.take()

    def directives(self) -> None:
        while self.peek() == "@":
            self.take()
            self.name()
            if self.peek() == "(":
                self.arguments()

    def selections(self) -> list[Any]:
        out: list[Any] = []
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "...":
                self.take()
                if self.peek() == "on":
                    self.take()
                    self.name()
                    self.directives()
                    out.append(Inline(self.selections()))
                elif self.peek() in ("{", "@"):
                    self.directives()
                    out.append(Inline(self.selections()))
                else:
                    out.append(Spread(self.name()))
                    self.directives()
                continue
            alias = name = self.name()
            if self.peek() == ":":
                self.take()
                name = self.name()
            args = self.arguments() if self.peek() == "(" else {}
            self.directives()
            sub = self.selections() if self.peek() == "{" else None
            out.append(Field(name, alias, args, sub))
        self.take("}")
        return out

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        self.take("(")
        while self.peek() != ")":
            name = self.name()
            self.take(":")
            args[name] = self.value()
        self.take(")")
        return args

    def value(self) -> Any:
        kind, text = self.take()
        if text == "$":
            return _Var(self.name())
        if kind == "num":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "str":
            return _unescape(text[1:-1])
        if kind == "block":
            return text[3:-3]
        if text == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
            self.take("]")
            return items
        if text == "{":
            obj = {}
            while self.peek() != "}":
                key = self.name()
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)
        raise GraphQLError(f"unexpected {text!r} where a value belongs")


def _unescape(s: str) -> str:
    import json

    return str(json.loads(f'"{s}"'))


def parse(text: str) -> Document:
    """Parse a GraphQL executable document."""
    return _Parser(text).document()


def execute(doc: Document, variables: dict[str, Any], root: Any, problem: Callable[[str], None]) -> Any:
    """Run the document's (first) operation against `root`; unknown fields are reported via `problem`."""
    if not doc.operations:
        raise GraphQLError("document has no operation")
    op = doc.operations[0]
    env = {**op.defaults, **variables}

    def subst(v: Any) -> Any:
        if isinstance(v, _Var):
            return env.get(v.name)
        if isinstance(v, list):
            return [subst(x) for x in v]
        if isinstance(v, dict):
            return {k: subst(x) for k, x in v.items()}
        return v

    def flat(selections: list[Any]) -> list[Field]:
        out: list[Field] = []
        for sel in selections:
            if isinstance(sel, Field):
                out.append(sel)
            elif isinstance(sel, Inline):
                out.extend(flat(sel.selections))
            else:
                if sel.fragment not in doc.fragments:
                    raise GraphQLError(f"unknown fragment {sel.fragment}")
                out.extend(flat(doc.fragments[sel.fragment]))
        return out

    def resolve(obj: Any, selections: list[Any] | None, path: str) -> Any:
        if obj is None:
            return None
        if isinstance(obj, list):
            return [resolve(x, selections, path) for x in obj]
        if selections is None:
            if isinstance(obj, Node):
                raise GraphQLError(f"{path} is an object and needs a selection")
            return obj
        result: dict[str, Any] = {}
        for f in flat(selections):
            where = f"{path}.{f.name}"
            if f.name == "__typename":
                result[f.alias] = type(obj).__name__.strip("_").removesuffix("Node")
                continue
            if isinstance(obj, Node):
                method = getattr(obj, "f_" + f.name, None)
                if method is None:
                    problem(f"unknown field {where}")
                    value = None
                else:
                    try:
                        value = method(**{k: subst(v) for k, v in f.args.items()})
                    except TypeError as e:
                        problem(f"bad arguments for {where}: {e}")
                        value = None
            elif isinstance(obj, dict):
                if f.name not in obj:
                    problem(f"unknown field {where}")
                value = obj.get(f.name)
            else:
                raise GraphQLError(f"{path} is a scalar and cannot have field {f.name}")
            result[f.alias] = resolve(value, f.selections, where)
        return result

    return resolve(root, op.selections, op.name or "query")
