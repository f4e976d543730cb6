"""Qlib's expression language (`Mean($close, 5)/$close`), parsed into a small tree.

Parsing follows Qlib's own `parse_field`: `$name` becomes a field, `Name(` an operator call, and Python
evaluates the rest, so operator precedence and argument order are exactly Qlib's. Each node knows how
far back and ahead it reads (Qlib's `get_extended_window_size`), which decides where its series starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

ELEMENTWISE = {"Abs": "absolute", "Log": "log", "Sign": "sign"}
PAIRWISE = {
    "Add": "add",
    "Sub": "subtract",
    "Mul": "multiply",
    "Div": "divide",
    "Greater": "maximum",
    "Less": "minimum",
    "Gt": "greater",
    "Ge": "greater_equal",
    "Lt": "less",
    "Le": "less_equal",
    "Eq": "equal",
    "Ne": "not_equal",
    "Power": "power",
}
ROLLING = ("Mean", "Sum", "Std", "Var", "Max", "Min", "IdxMax", "IdxMin", "Rank", "Slope", "Rsquare", "Resi")
SUPPORTED = sorted([*ELEMENTWISE, *PAIRWISE, *ROLLING, "Ref", "Quantile", "Corr"])


class NotExtendable(ValueError):
    """An evaluation cannot resume from the saved states (a state is missing or an expression's shape
    does not allow it): the frame is rebuilt whole."""


class UnsupportedExpression(ValueError):
    """An expression the fast engine does not compute; Qlib's engine (features.engine=qlib) does."""


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple = ()

    # Python operators build the same nodes as Qlib's Expression class does.
    def __add__(self, other):
        return Node("Add", (self, _wrap(other)))

    def __radd__(self, other):
        return Node("Add", (_wrap(other), self))

    def __sub__(self, other):
        return Node("Sub", (self, _wrap(other)))

    def __rsub__(self, other):
        return Node("Sub", (_wrap(other), self))

    def __mul__(self, other):
        return Node("Mul", (self, _wrap(other)))

    def __rmul__(self, other):
        return Node("Mul", (self, _wrap(other)))  # Qlib's __rmul__ keeps the expression on the left

    def __truediv__(self, other):
        return Node("Div", (self, _wrap(other)))

    def __rtruediv__(self, other):
        return Node("Div", (_wrap(other), self))

    def __gt__(self, other):
        return Node("Gt", (self, _wrap(other)))

    def __ge__(self, other):
        return Node("Ge", (self, _wrap(other)))

    def __lt__(self, other):
        return Node("Lt", (self, _wrap(other)))

    def __le__(self, other):
        return Node("Le", (self, _wrap(other)))

    def __pow__(self, other):
        return Node("Power", (self, _wrap(other)))

    __hash__ = object.__hash__

    def __eq__(self, other):  # noqa: D105 - identity, as for any tree node; `==` in expressions is Eq
        return self is other

    @property
    def children(self) -> tuple[Node, ...]:
        return tuple(arg for arg in self.args if isinstance(arg, Node))

    @cached_property
    def _window(self) -> tuple[int, int]:
        return self._compute_window()

    def window(self) -> tuple[int, int]:
        return self._window

    def _compute_window(self) -> tuple[int, int]:
        """(days before, days after) the node reads beyond the day it is computed for."""
        if self.op in ("Feature", "Const"):
            return 0, 0
        spans = [child.window() for child in self.children]
        back, ahead = max(b for b, _ in spans), max(a for _, a in spans)
        if self.op == "Ref":
            shift = self.args[1]
            return max(back + shift, back), max(ahead - shift, ahead)
        if self.op in ROLLING or self.op in ("Quantile", "Corr"):
            return back + self.length - 1, ahead
        return back, ahead

    @property
    def length(self) -> int:
        return int(self.args[2] if self.op == "Corr" else self.args[1])

    def key(self) -> str:
        return self._key

    @cached_property
    def _key(self) -> str:
        if self.op == "Feature":
            return f"${self.args[0]}"
        if self.op == "Const":
            return repr(self.args[0])
        inner = ",".join(arg.key() if isinstance(arg, Node) else repr(arg) for arg in self.args)
        return f"{self.op}({inner})"

    def fields(self) -> set[str]:
        if self.op == "Feature":
            return {self.args[0]}
        return set().union(*(child.fields() for child in self.children)) if self.children else set()


def _wrap(value) -> Node:
    if isinstance(value, Node):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnsupportedExpression(f"constant {value!r}")
    return Node("Const", (value,))


def _operator(name: str):
    def build(*args):
        nodes = tuple(_wrap(a) if isinstance(a, Node) or i < _arity(name) else a for i, a in enumerate(args))
        return Node(name, nodes)

    return build


def _arity(name: str) -> int:
    if name in PAIRWISE or name == "Corr":
        return 2
    return 1


class _Operators:
    def __getattr__(self, name: str):
        if name not in SUPPORTED:
            raise UnsupportedExpression(f"operator {name}")
        return _operator(name)


def parse(expression: str) -> Node:
    """The tree of one Qlib expression; UnsupportedExpression names what the fast engine lacks."""
    if "$$" in expression:
        raise UnsupportedExpression("point-in-time fields ($$)")
    code = re.sub(r"\$(\w+)", r'Feature("\1")', expression)
    code = re.sub(r"(\w+\s*)\(", r"Operators.\1(", code)
    namespace = {"Operators": _Operators(), "Feature": lambda name: Node("Feature", (name,))}
    namespace["Operators"].Feature = namespace["Feature"]
    try:
        tree = eval(code, {"__builtins__": {}}, namespace)  # noqa: S307 - Qlib's own parsing, same input
    except UnsupportedExpression:
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure is an expression the engine can't read
        raise UnsupportedExpression(f"{expression!r} ({exc})") from None
    node = _wrap(tree)
    _check(node)
    return node


def _check(node: Node) -> None:
    if (node.op in ROLLING or node.op in ("Quantile", "Corr")) and node.length <= 0:
        raise UnsupportedExpression(f"{node.op} with window {node.length} (expanding windows)")
    if node.op == "Ref" and node.args[1] == 0:
        raise UnsupportedExpression("Ref(x, 0)")
    for child in node.children:
        _check(child)
