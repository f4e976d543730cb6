"""What a registered model name and an alias may be, checked where a user gives them: in the config
(retrain.model_name, retrain.alias) and on the command line (register)."""

from __future__ import annotations

import re

# Aliases the MLflow registry keeps for itself: `latest` and version aliases such as v1, v2.
RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)
# Registered model names go into MLflow filter strings and MODEL@ALIAS / MODEL/VERSION references: words
# separated by single spaces, no quotes, '/' or '@'. Aliases are MLflow's own rule.
MODEL_NAME = re.compile(r"[A-Za-z0-9_.\-]+(?: [A-Za-z0-9_.\-]+)*")
ALIAS = re.compile(r"[A-Za-z_][\w\-]*")


def model_name_problem(name: str) -> str | None:
    if not MODEL_NAME.fullmatch(name or "") or len(name) > 200:
        return (f"model name '{name}' can't be registered: use letters, digits, '.', '_', '-' and single spaces "
                "(at most 200 characters)")
    return None


def alias_problem(alias: str) -> str | None:
    if not ALIAS.fullmatch(alias or ""):
        return f"alias '{alias}' is not an alias: use a letter or '_' first, then letters, digits, '_' and '-'"
    if RESERVED_ALIAS.fullmatch(alias):
        return f"alias '{alias}' is reserved by the MLflow registry (latest, v1, v2, ...): choose another"
    return None
