"""`--show-config` / `--show-config-json`: the configuration the service would run with.

traitlets' own `--show-config` prints only what config files and the command line set.
An operator asking "what will this run with?" needs every option's effective value, the
defaults and what came from the environment (PORT, KERNEL_NAME, ...) included, and where
each came from. The token itself is never shown."""

from __future__ import annotations

import json
from collections.abc import Mapping
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


#: Environment variables that kernel provisioners read in the service's process:
#: gateway_provisioners' (`GP_*`), and the Docker API's and Kubernetes' client settings.
PROVISIONER_VARIABLES = ("DOCKER_HOST", "DOCKER_NETWORK", "KUBECONFIG")


def provisioner_settings(
    kernelspecs: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str], default_provisioner: str
) -> dict[str, dict[str, Any]]:
    """The provisioner each kernelspec runs with (`kernelspecs`: jupyter_client's
    `get_all_specs()`) and its configuration, with the file it came from; then the
    provisioners' variables set in `environ`. `default_provisioner` is what a kernelspec
    that names none gets (jupyter_client's, or the sandbox's)."""
    result: dict[str, dict[str, Any]] = {}
    for name, found in sorted(kernelspecs.items()):
        provisioner = found["spec"].get("metadata", {}).get("kernel_provisioner", {})
        source = f"kernelspec {found['resource_dir']}" if provisioner else DEFAULT
        result[f"kernelspec.{name}.provisioner"] = {
            "value": provisioner.get("provisioner_name", default_provisioner),
            "source": source,
        }
        if provisioner.get("config"):
            result[f"kernelspec.{name}.provisioner_config"] = {"value": provisioner["config"], "source": source}
    for variable in sorted(environ):
        if variable.startswith("GP_") or variable in PROVISIONER_VARIABLES:
            result[f"environment.{variable}"] = {"value": environ[variable], "source": "environment"}
    return result


def format_configuration(configuration: dict[str, dict[str, Any]]) -> str:
    """One line per option: `Class.option = value  [source]`."""
    width = max(len(f"{name} = {entry['value']!r}") for name, entry in configuration.items())
    lines = [
        f"{name} = {entry['value']!r}".ljust(width) + f"  [{entry['source']}]" for name, entry in configuration.items()
    ]
    return "\n".join(lines)
