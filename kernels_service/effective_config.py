"""`--show-config` / `--show-config-json`: the configuration the service would run with.

traitlets' own `--show-config` prints only what config files and the command line set.
An operator asking "what will this run with?" needs every option's effective value, the
defaults and what came from the environment (PORT, KERNEL_NAME, ...) included, and where
each came from. The token itself is never shown."""

from __future__ import annotations

import json
from typing import Any

from traitlets.config import Application

DEFAULT = "default"
CONFIGURED = "command line or config file"


def shown_value(name: str, value: Any) -> Any:
    """The value as shown: the token only as whether and how it is set."""
    if name == "token":
        if value is None:
            return "(none given: one is generated at start and logged)"
        return "(empty: no token)" if value == "" else "(set)"
    if isinstance(value, str):
        return str(value)  # a command line's DeferredConfigString too
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


def effective_configuration(app: Application, environment: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`{"<Class>.<option>": {"value", "source"}}` for each of the app's own options and
    `log_level`, then whatever the configuration sets for other classes (kernel managers)."""
    own_class = type(app).__name__
    configured = app.config.get(own_class, {})
    names = sorted({*type(app).class_own_traits(config=True), "log_level"})
    result: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in configured or (name == "log_level" and "log_level" in app.config.get("Application", {})):
            source = CONFIGURED
        elif name in environment:
            source = f"environment {environment[name]}"
        else:
            source = DEFAULT
        result[f"{own_class}.{name}"] = {"value": shown_value(name, getattr(app, name)), "source": source}
    for section, options in sorted(app.config.items()):
        if section in (own_class, "Application") or not hasattr(options, "items"):
            continue
        for name, value in sorted(options.items()):
            result[f"{section}.{name}"] = {"value": shown_value(name, value), "source": CONFIGURED}
    return result


def format_configuration(configuration: dict[str, dict[str, Any]]) -> str:
    """One line per option: `Class.option = value  [source]`."""
    width = max(len(f"{name} = {entry['value']!r}") for name, entry in configuration.items())
    lines = [
        f"{name} = {entry['value']!r}".ljust(width) + f"  [{entry['source']}]" for name, entry in configuration.items()
    ]
    return "\n".join(lines)
