#!/usr/bin/env python3
"""Validates HomeIQ's add-on manifest the way the Supervisor reads it, without a Supervisor.

    python3 addon/validate.py [REPO_ROOT]

Checks config.yaml (keys and value shapes the Supervisor accepts, schema types, every option with
a schema entry and every required schema entry with an option, defaults matching their types),
translations/en.yaml (a name and description for every option, nested ones under `fields`),
the version against CHANGELOG.md's newest release, no `image` key and no build.yaml, the
architectures, repository.yaml, and that every setting of README's Configuration table is either
an option or provided by the Supervisor. Exits 1 listing every problem, 0 when all is well.

The key list and the schema-type pattern follow the Supervisor's own validation
(supervisor/addons/validate.py and supervisor/addons/options.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

# Top-level config.yaml keys the Supervisor accepts (anything else is silently dropped by it, so a
# typo would go unnoticed: we fail instead). Deprecated spellings (snapshot*, auto_uart,
# codenotary) are not accepted here.
KNOWN_KEYS = {
    "name", "version", "slug", "description", "arch", "machine", "url", "startup", "boot",
    "init", "advanced", "stage", "ports", "ports_description", "watchdog", "webui", "ingress",
    "ingress_port", "ingress_entry", "ingress_stream", "panel_icon", "panel_title",
    "panel_admin", "homeassistant", "host_network", "host_pid", "host_ipc", "host_uts",
    "host_dbus", "devices", "udev", "tmpfs", "map", "environment", "privileged", "apparmor",
    "full_access", "audio", "video", "gpio", "usb", "uart", "devicetree", "kernel_modules",
    "realtime", "hassio_api", "hassio_role", "homeassistant_api", "stdin", "legacy",
    "docker_api", "auth_api", "services", "discovery", "backup_exclude", "backup_pre",
    "backup_post", "restore_pre", "restore_post", "backup", "options", "schema", "image",
    "ulimits", "timeout", "journald", "breaking_versions",
}
REQUIRED_KEYS = {"name", "version", "slug", "description", "arch"}
ARCHES = {"aarch64", "amd64"}
STARTUP = {"initialize", "system", "services", "application", "once"}
BOOT = {"auto", "manual", "manual_only"}
BACKUP = {"hot", "cold"}
STAGE = {"stable", "experimental", "deprecated"}
BOOL_KEYS = {
    "init", "advanced", "ingress", "ingress_stream", "panel_admin", "host_network", "host_pid",
    "host_ipc", "host_uts", "host_dbus", "udev", "tmpfs", "apparmor", "full_access", "audio",
    "video", "gpio", "usb", "uart", "devicetree", "kernel_modules", "realtime", "hassio_api",
    "homeassistant_api", "stdin", "legacy", "docker_api", "auth_api", "journald",
}
STR_KEYS = {
    "name", "description", "panel_icon", "panel_title", "ingress_entry", "backup_pre",
    "backup_post", "restore_pre", "restore_post",
}
RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
RE_VERSION = re.compile(r"^\d+\.\d+\.\d+([-.+][0-9A-Za-z.-]+)?$")
RE_WATCHDOG = re.compile(r"^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$")
RE_PORT_KEY = re.compile(r"^\d{1,5}(?:/(?:tcp|udp))?$")
RE_PANEL_ICON = re.compile(r"^mdi:[a-z0-9-]+$")
# the Supervisor's RE_SCHEMA_ELEMENT
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d\.]+)?,(?P<f_max>[\d\.]+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
# README settings the Supervisor (or the run scripts) provide: never add-on options
# (http.ingress_gateway: the Supervisor's ingress gateway, found by HomeIQ itself under the Supervisor;
# http.panel_dir: the image ships the built panel in /usr/share/homeiq/panel, found by `auto`)
SUPERVISOR_PROVIDED = {
    "data_dir", "http.bind", "http.port", "http.ingress_gateway", "http.panel_dir", "ha.url", "ha.token",
}
# add-on options that are no README setting (read by the run scripts, not the binary)
RUN_SCRIPT_OPTIONS = {"storage"}


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def newest_release(changelog: str) -> str | None:
    """The newest released version in a Keep-a-Changelog file (`## [x.y.z]`, not Unreleased)."""
    for m in re.finditer(r"^## \[([^\]]+)\]", changelog, re.M):
        if m.group(1).lower() != "unreleased":
            return m.group(1)
    return None


def check_type(path: str, typ: str, value, errors: list[str]) -> None:
    """Checks that one default value fits its schema element."""
    m = RE_SCHEMA_ELEMENT.match(typ)
    if not m:
        errors.append(f"schema {path}: unknown type {typ!r}")
        return
    if value is None:
        return
    base = typ.rstrip("?")

    def rng(lo, hi, v):
        if lo is not None and v < float(lo):
            errors.append(f"option {path}: {v} below minimum {lo}")
        if hi is not None and v > float(hi):
            errors.append(f"option {path}: {v} above maximum {hi}")

    if base.startswith("bool"):
        if not isinstance(value, bool):
            errors.append(f"option {path}: {value!r} is not a bool")
    elif base.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"option {path}: {value!r} is not an int")
        else:
            rng(m.group("i_min"), m.group("i_max"), value)
    elif base.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"option {path}: {value!r} is not a float")
        else:
            rng(m.group("f_min"), m.group("f_max"), value)
    elif base.startswith("list("):
        if str(value) not in m.group("list").split("|"):
            errors.append(f"option {path}: {value!r} not one of {m.group('list')}")
    elif base.startswith("match("):
        if not re.match(m.group("match"), str(value)):
            errors.append(f"option {path}: {value!r} does not match {m.group('match')}")
    elif base == "url":
        if not re.match(r"^[a-z][a-z0-9+.-]*://[^\s/]+", str(value)):
            errors.append(f"option {path}: {value!r} is not a URL")
    elif base == "port":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            errors.append(f"option {path}: {value!r} is not a port")
    elif not isinstance(value, str):
        errors.append(f"option {path}: {value!r} is not a string")


def check_schema(path: str, schema, options, errors: list[str], leaves: set[str]) -> None:
    """Walks schema and options together (options may be None when a dict has no defaults)."""
    if isinstance(schema, dict):
        if options is not None and not isinstance(options, dict):
            errors.append(f"option {path}: must be a dict")
            options = {}
        options = options or {}
        for key in options:
            if key not in schema:
                errors.append(f"option {join(path, key)}: no schema entry")
        for key, sub in schema.items():
            sub_path = join(path, key)
            if key not in options:
                if isinstance(sub, dict):
                    errors.append(f"option {sub_path}: nested dict without a default")
                elif isinstance(sub, str) and not sub.endswith("?"):
                    errors.append(f"option {sub_path}: required in schema but no default")
                elif isinstance(sub, list) and not (
                    sub and isinstance(sub[0], str) and sub[0].endswith("?")
                ):
                    errors.append(f"option {sub_path}: required list without a default")
            check_schema(sub_path, sub, options.get(key), errors, leaves)
    elif isinstance(schema, list):
        leaves.add(path)
        if len(schema) != 1:
            errors.append(f"schema {path}: a list schema holds exactly one element type")
            return
        if isinstance(schema[0], list):
            errors.append(f"schema {path}: a list may not directly contain a list")
            return
        if options is not None and not isinstance(options, list):
            errors.append(f"option {path}: must be a list")
            return
        if isinstance(schema[0], str):
            check_type(path, schema[0], None, errors)
        for i, item in enumerate(options or []):
            check_schema(f"{path}[{i}]", schema[0], item, errors, set())
    elif isinstance(schema, str):
        leaves.add(path)
        check_type(path, schema, options, errors)
    else:
        errors.append(f"schema {path}: {schema!r} is neither a type, a list nor a dict")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_translations(path: str, schema: dict, trans, errors: list[str]) -> None:
    """Every schema key needs `name` and `description`; nested dicts use `fields`."""
    trans = trans if isinstance(trans, dict) else {}
    for key in trans:
        if key not in schema:
            errors.append(f"translation {join(path, key)}: no such option")
    for key, sub in schema.items():
        sub_path = join(path, key)
        entry = trans.get(key)
        if not isinstance(entry, dict):
            errors.append(f"translation {sub_path}: missing")
            continue
        for field in ("name", "description"):
            if not isinstance(entry.get(field), str) or not entry[field].strip():
                errors.append(f"translation {sub_path}: no {field}")
        extra = set(entry) - {"name", "description", "fields"}
        if extra:
            errors.append(f"translation {sub_path}: unknown keys {sorted(extra)}")
        inner = sub[0] if isinstance(sub, list) and sub else sub
        if isinstance(inner, dict):
            check_translations(sub_path, inner, entry.get("fields"), errors)
        elif "fields" in entry:
            errors.append(f"translation {sub_path}: `fields` on an option without sub-options")


def readme_settings(readme: str) -> set[str]:
    """Setting keys from README's Configuration table (`a` / `b` cells hold several)."""
    section = readme.split("## Configuration", 1)[-1].split("\n## ", 1)[0]
    keys: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        for key in re.findall(r"`([a-z_.]+)`", cell):
            keys.add(key)
    return keys


def validate(root: Path) -> list[str]:
    errors: list[str] = []
    config_path = root / "config.yaml"
    if not config_path.exists():
        return [f"{config_path}: missing"]
    config = load_yaml(config_path)
    if not isinstance(config, dict):
        return ["config.yaml: not a mapping"]

    for key in sorted(set(config) - KNOWN_KEYS):
        errors.append(f"config.yaml: unknown key {key!r}")
    for key in sorted(REQUIRED_KEYS - set(config)):
        errors.append(f"config.yaml: required key {key!r} missing")
    if "image" in config:
        errors.append("config.yaml: `image` must be absent (the Supervisor builds the Dockerfile)")
    for retired in ("build.yaml", "build.yml", "build.json"):
        if (root / retired).exists():
            errors.append(f"{retired}: retired, the Dockerfile names its base image")

    for key in sorted(BOOL_KEYS & set(config)):
        if not isinstance(config[key], bool):
            errors.append(f"config.yaml: {key} must be true or false")
    for key in sorted(STR_KEYS & set(config)):
        if not isinstance(config[key], str):
            errors.append(f"config.yaml: {key} must be a string")
    version = str(config.get("version", ""))
    if not RE_VERSION.match(version):
        errors.append(f"config.yaml: version {version!r} is not x.y.z")
    if not RE_SLUG.match(str(config.get("slug", ""))):
        errors.append("config.yaml: slug has invalid characters")
    arch = config.get("arch")
    if not isinstance(arch, list) or not arch:
        errors.append("config.yaml: arch must be a non-empty list")
    else:
        for a in arch:
            if a not in ARCHES:
                errors.append(f"config.yaml: arch {a!r} is not one of {sorted(ARCHES)}")
    for key, allowed in (("startup", STARTUP), ("boot", BOOT), ("backup", BACKUP),
                         ("stage", STAGE)):
        if key in config and config[key] not in allowed:
            errors.append(f"config.yaml: {key} {config[key]!r} not one of {sorted(allowed)}")
    if "watchdog" in config and not RE_WATCHDOG.match(str(config["watchdog"])):
        errors.append("config.yaml: watchdog must look like http://[HOST]:[PORT:8099]/path")
    if "panel_icon" in config and not RE_PANEL_ICON.match(str(config["panel_icon"])):
        errors.append("config.yaml: panel_icon must be mdi:<name>")
    if "ingress_port" in config:
        p = config["ingress_port"]
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
            errors.append("config.yaml: ingress_port must be a port")
    if "timeout" in config:
        t = config["timeout"]
        if isinstance(t, bool) or not isinstance(t, int) or not 10 <= t <= 300:
            errors.append("config.yaml: timeout must be 10..300")
    if "backup_exclude" in config and not (
        isinstance(config["backup_exclude"], list)
        and all(isinstance(x, str) for x in config["backup_exclude"])
    ):
        errors.append("config.yaml: backup_exclude must be a list of strings")
    ports = config.get("ports") or {}
    if not isinstance(ports, dict):
        errors.append("config.yaml: ports must be a mapping")
        ports = {}
    for key, value in ports.items():
        if not RE_PORT_KEY.match(str(key)):
            errors.append(f"config.yaml: port {key!r} must be NUMBER/tcp or NUMBER/udp")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= 65535):
            errors.append(f"config.yaml: port {key}: {value!r} is neither null nor a port")
    for key in (config.get("ports_description") or {}):
        if key not in ports:
            errors.append(f"config.yaml: ports_description {key!r} names no port")

    options = config.get("options", {}) or {}
    schema = config.get("schema", {}) or {}
    if not isinstance(options, dict) or not isinstance(schema, dict):
        errors.append("config.yaml: options and schema must be mappings")
        return errors
    leaves: set[str] = set()
    check_schema("", schema, options, errors, leaves)
    for provided in sorted(SUPERVISOR_PROVIDED):
        if provided in leaves:
            errors.append(f"schema {provided}: provided by the Supervisor, never an option")

    # translations
    trans_path = root / "translations" / "en.yaml"
    if not trans_path.exists():
        errors.append("translations/en.yaml: missing")
    else:
        trans = load_yaml(trans_path) or {}
        if set(trans) - {"configuration", "network"}:
            errors.append(f"translations/en.yaml: unknown keys {sorted(set(trans) - {'configuration', 'network'})}")
        check_translations("", schema, trans.get("configuration"), errors)
        for port in ports:
            if port not in (trans.get("network") or {}):
                errors.append(f"translation network.{port}: missing")

    # CHANGELOG
    changelog = root / "CHANGELOG.md"
    if changelog.exists():
        newest = newest_release(changelog.read_text(encoding="utf-8"))
        if newest != version:
            errors.append(
                f"config.yaml: version {version} differs from CHANGELOG's newest release {newest}"
            )
    else:
        errors.append("CHANGELOG.md: missing")

    # README's settings are options or provided by the Supervisor
    readme = root / "README.md"
    if readme.exists():
        for key in sorted(readme_settings(readme.read_text(encoding="utf-8"))):
            if key not in leaves and key not in SUPERVISOR_PROVIDED:
                errors.append(f"README setting {key}: no add-on option")
        extra = leaves - readme_settings(readme.read_text(encoding="utf-8")) - RUN_SCRIPT_OPTIONS
        for key in sorted(extra):
            errors.append(f"option {key}: not a README setting (typo?)")

    # repository.yaml
    repo_path = root / "repository.yaml"
    if not repo_path.exists():
        errors.append("repository.yaml: missing")
    else:
        repo = load_yaml(repo_path) or {}
        for key in ("name", "url", "maintainer"):
            if not isinstance(repo.get(key), str):
                errors.append(f"repository.yaml: {key} missing")

    for name in ("icon.png", "logo.png", "Dockerfile", "DOCS.md", "apparmor.txt"):
        if not (root / name).exists():
            errors.append(f"{name}: missing")
    return errors


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    errors = validate(root)
    for e in errors:
        print(f"validate: {e}", file=sys.stderr)
    if errors:
        print(f"validate: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    config = load_yaml(root / "config.yaml")
    print(f"validate: config.yaml ok (version {config['version']}, "
          f"{len(json.dumps(config['options']))} bytes of default options)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
