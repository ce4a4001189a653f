"""Trace rules as a file (TOML) and as stored configuration (JSON in trace_meta).

    mix_prefix = "urn:epc:class:lgtin:4012345.999999"  # optional: tank mixes' lot URNs
    require_known = false     # optional: refuse sales of lots no event commissioned

    [[rule]]
    node = "0a01"             # the board (hex id) whose records the rule places
    instrument = "S1"         # optional: only its records with this `inst`
    kind = "sale"             # receive | sale | delivery | dispense
    site = "urn:epc:id:sgln:4012345.00001.0"
    device = "urn:epc:id:giai:4012345.SCALE1"  # optional deviceID (default: the record's inst)
    tank = "T1"               # delivery and dispense: the tank
    region = "de"             # optional: variable-measure codes: a biip region (gs1.REGIONS)
                              # or a label layout such as "02IIIIIWWWWWC" (rcn.py)

Invariant: `parse` returns a `RuleSet` only for a file whose every rule is complete and
unambiguous; otherwise RuleError names the field as `rule[i].field`. `dumps`/`loads`
round-trip a RuleSet through the JSON kept in trace_meta under `rules`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass
from typing import Any

from . import CodeError, RuleError, gs1, rcn
from .rules import KINDS, Rule

DEFAULT_MIX_PREFIX = "urn:epc:class:lgtin:4012345.999999"
META_KEY = "rules"
_FIELDS = {"node", "instrument", "kind", "site", "device", "tank", "region"}


@dataclass(frozen=True)
class RuleSet:
    rules: dict[tuple[str, str | None], Rule]
    mix_prefix: str = DEFAULT_MIX_PREFIX
    require_known: bool = False


def parse(text: str) -> RuleSet:
    """A TOML rules file → RuleSet; RuleError names `rule[i].field` at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError("file", f"not TOML: {exc}") from exc
    return from_dict(data)


def from_dict(data: dict[str, Any]) -> RuleSet:
    unknown = set(data) - {"mix_prefix", "require_known", "rule"}
    if unknown:
        raise RuleError(sorted(unknown)[0], "unknown setting")
    mix_prefix = data.get("mix_prefix", DEFAULT_MIX_PREFIX)
    if not isinstance(mix_prefix, str) or not mix_prefix.startswith(("urn:", "https://")):
        raise RuleError("mix_prefix", "expected a lot URN prefix (urn:epc:class:lgtin:CP.ITEM)")
    require_known = data.get("require_known", False)
    if not isinstance(require_known, bool):
        raise RuleError("require_known", "expected true or false")
    items = data.get("rule", [])
    if not isinstance(items, list) or not items:
        raise RuleError("rule", "no [[rule]] tables")
    rules: dict[tuple[str, str | None], Rule] = {}
    for i, item in enumerate(items):
        key, rule = _rule(item, f"rule[{i}]")
        if key in rules:
            raise RuleError(f"rule[{i}].node", f"a second rule for node {key[0]} instrument "
                            f"{key[1]!r}")
        rules[key] = rule
    return RuleSet(rules, mix_prefix, require_known)


def _rule(item: Any, where: str) -> tuple[tuple[str, str | None], Rule]:
    if not isinstance(item, dict):
        raise RuleError(where, "expected a table")
    extra = set(item) - _FIELDS
    if extra:
        raise RuleError(f"{where}.{sorted(extra)[0]}", "unknown field")
    for name in _FIELDS:
        if name in item and not isinstance(item[name], str):
            raise RuleError(f"{where}.{name}", "expected a string")
    node = item.get("node", "").lower()
    try:
        bytes.fromhex(node)
    except ValueError:
        node = ""
    if not node:
        raise RuleError(f"{where}.node", "expected the board's id in hex")
    if item.get("kind") not in KINDS:
        raise RuleError(f"{where}.kind", f"expected one of {KINDS}, got {item.get('kind')!r}")
    if not item.get("site"):
        raise RuleError(f"{where}.site", "missing: the SGLN of the stall, tank or station")
    if item["kind"] in ("delivery", "dispense") and not item.get("tank"):
        raise RuleError(f"{where}.tank", f"a {item['kind']} rule names its tank")
    region = item.get("region")
    if region is not None and rcn.is_layout(region):
        try:
            rcn.parse_layout(region)
        except CodeError as exc:
            raise RuleError(f"{where}.region", exc.reason) from exc
    elif region is not None and region.lower() not in gs1.REGIONS:
        raise RuleError(f"{where}.region", f"no variable-measure rules for {region!r}; "
                        f"known: {', '.join(sorted(gs1.REGIONS))} or a label layout such "
                        "as 02IIIIIWWWWWC")
    rule = Rule(item["kind"], item["site"], item.get("device"), item.get("tank"), region)
    return (node, item.get("instrument")), rule


def dumps(ruleset: RuleSet) -> str:
    return json.dumps({"mix_prefix": ruleset.mix_prefix,
                       "require_known": ruleset.require_known,
                       "rule": [{"node": node, **({"instrument": inst} if inst else {}),
                                 **{("device" if k == "instrument" else k): v
                                    for k, v in asdict(rule).items() if v is not None}}
                                for (node, inst), rule in ruleset.rules.items()]},
                      sort_keys=True)


def loads(text: str) -> RuleSet:
    return from_dict(json.loads(text))
