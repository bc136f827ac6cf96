"""Reads a SAM template and evaluates CloudFormation intrinsic functions.

The local cloud must build the resources and function environments that `sam deploy` would, so
parameters, conditions, mappings, pseudo parameters, SAM Globals and every intrinsic used in our
templates are evaluated here the way CloudFormation does. Resource values (`Ref`, `Fn::GetAtt`)
come from a `ResourceLookup` that the provisioner fills in dependency order.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

ACCOUNT_ID = "123456789012"

INTRINSIC_KEYS = frozenset(
    {
        "Ref",
        "Fn::GetAtt",
        "Fn::Sub",
        "Fn::If",
        "Fn::Equals",
        "Fn::Not",
        "Fn::And",
        "Fn::Or",
        "Fn::Select",
        "Fn::Join",
        "Fn::Split",
        "Fn::FindInMap",
        "Fn::Base64",
        "Fn::GetAZs",
        "Fn::ToJsonString",
        "Fn::Length",
        "Fn::ImportValue",
        "Fn::Cidr",
        "Fn::Transform",
    }
)

# SAM Globals section name -> the resource type it applies to.
GLOBALS_SECTIONS = {
    "Function": "AWS::Serverless::Function",
    "Api": "AWS::Serverless::Api",
    "HttpApi": "AWS::Serverless::HttpApi",
    "SimpleTable": "AWS::Serverless::SimpleTable",
    "StateMachine": "AWS::Serverless::StateMachine",
    "LayerVersion": "AWS::Serverless::LayerVersion",
}

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(Exception):
    """The template cannot be evaluated; the message names the resource or function at fault."""


class _NoValue:
    """`AWS::NoValue`: removes the property or list item that evaluates to it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class ResourceLookup(Protocol):
    """Values of already provisioned resources, as CloudFormation would return them."""

    def ref(self, logical_id: str) -> Any: ...

    def get_att(self, logical_id: str, attribute: str) -> Any: ...


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short tags as their long form and keeps dates as text."""


def _construct_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise TemplateError(f"unsupported YAML node for !{suffix}")
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        value = [logical_id, attribute]
    return {f"Fn::{suffix}": value}


def _construct_text(loader: CfnLoader, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise TemplateError("a timestamp must be a scalar")
    return str(loader.construct_scalar(node))


CfnLoader.add_multi_constructor("!", _construct_tag)
# CloudFormation reads `Version: 2012-10-17` as a string, not a date.
CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)


def load_yaml(path: Path) -> dict[str, Any]:
    """Parses a template file (YAML or JSON) into plain data with long-form intrinsics."""
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(document, dict):
        raise TemplateError(f"{path} is not a template: its top level is not a mapping")
    return document


def is_intrinsic(value: Any) -> bool:
    """True for a one-key mapping that CloudFormation evaluates instead of passing through."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in INTRINSIC_KEYS


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rule: maps merge (local wins), lists append (globals first), others override."""
    if is_intrinsic(global_value) or is_intrinsic(local_value):
        return copy.deepcopy(local_value)
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = copy.deepcopy(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return copy.deepcopy(global_value) + copy.deepcopy(local_value)
    return copy.deepcopy(local_value)


def scalar_text(value: Any, where: str) -> str:
    """CloudFormation's string form of a scalar: booleans lower-case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {type(value).__name__} {value!r}")


@dataclass
class Template:
    """A loaded template with parameters, conditions and Globals applied."""

    path: Path
    body: dict[str, Any]
    region: str
    stack_name: str
    account_id: str = ACCOUNT_ID
    parameters: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def mappings(self) -> dict[str, Any]:
        return dict(self.body.get("Mappings") or {})

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        region: str = "us-east-1",
        stack_name: str = "churnguard-local",
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> Template:
        body = load_yaml(path)
        template = cls(path=path.resolve(), body=body, region=region, stack_name=stack_name)
        template.parameters = _resolve_parameters(body.get("Parameters") or {}, parameter_overrides or {})
        resolver = Resolver(template)
        for name in body.get("Conditions") or {}:
            template.conditions[name] = resolver.condition(name)
        raw_resources = body.get("Resources") or {}
        if not isinstance(raw_resources, dict) or not raw_resources:
            raise TemplateError(f"{path} has no Resources")
        globals_section = body.get("Globals") or {}
        for logical_id, resource in raw_resources.items():
            if not isinstance(resource, dict) or "Type" not in resource:
                raise TemplateError(f"resource {logical_id} has no Type")
            condition = resource.get("Condition")
            if condition is not None and not resolver.condition(condition):
                template.skipped.append(logical_id)
                continue
            template.resources[logical_id] = _apply_globals(resource, globals_section)
        return template

    def pseudo_parameter(self, name: str) -> Any:
        """The value of an `AWS::` pseudo parameter."""
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/"
                "00000000-0000-0000-0000-000000000000"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def resources_of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res["Type"] in types}


def _apply_globals(resource: dict[str, Any], globals_section: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(resource)
    for section, resource_type in GLOBALS_SECTIONS.items():
        if resource["Type"] != resource_type or section not in globals_section:
            continue
        properties = merged["Properties"] = merged.get("Properties") or {}
        for key, global_value in (globals_section[section] or {}).items():
            properties[key] = (
                merge_globals(global_value, properties[key]) if key in properties else copy.deepcopy(global_value)
            )
    return merged


def _resolve_parameters(declared: dict[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameters {', '.join(unknown)} do not exist in the template")
    values: dict[str, Any] = {}
    for name, declaration in declared.items():
        spec = declaration or {}
        raw: Any
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no Default: pass a value for it")
        text = scalar_text(raw, f"parameter {name}") if not isinstance(raw, list) else ",".join(map(str, raw))
        _validate_parameter(name, spec, text)
        kind = str(spec.get("Type", "String"))
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            values[name] = [item.strip() for item in text.split(",")] if text else []
        else:
            values[name] = text
    return values


def _validate_parameter(name: str, spec: dict[str, Any], text: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and text not in [scalar_text(v, f"parameter {name}") for v in allowed]:
        raise TemplateError(f"parameter {name}={text!r} is not one of {allowed}")
    if spec.get("Type") == "Number":
        try:
            number = float(text)
        except ValueError:
            raise TemplateError(f"parameter {name}={text!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={text} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={text} is above MaxValue {spec['MaxValue']}")
    if "AllowedPattern" in spec and not re.fullmatch(str(spec["AllowedPattern"]), text):
        raise TemplateError(f"parameter {name}={text!r} does not match {spec['AllowedPattern']}")
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name} is shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name} is longer than MaxLength {spec['MaxLength']}")


class Resolver:
    """Evaluates intrinsic functions against a template and the resources provisioned so far."""

    def __init__(self, template: Template, lookup: ResourceLookup | None = None) -> None:
        self._template = template
        self._lookup = lookup
        self._evaluating: set[str] = set()
        self._handlers: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Equals": lambda args: self._truth({"Fn::Equals": args}),
            "Fn::Not": lambda args: self._truth({"Fn::Not": args}),
            "Fn::And": lambda args: self._truth({"Fn::And": args}),
            "Fn::Or": lambda args: self._truth({"Fn::Or": args}),
            "Fn::Select": self._select,
            "Fn::Join": self._join,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": lambda arg: base64.b64encode(self._text(arg, "Fn::Base64").encode()).decode(),
            "Fn::GetAZs": lambda _arg: [f"{self._template.region}{zone}" for zone in "abc"],
            "Fn::ToJsonString": lambda arg: json.dumps(self.resolve(arg), separators=(",", ":")),
            "Fn::Length": lambda arg: len(self._list(arg, "Fn::Length")),
        }

    def resolve(self, value: Any) -> Any:
        """Returns `value` with every intrinsic evaluated and `AWS::NoValue` entries removed."""
        if isinstance(value, dict):
            if is_intrinsic(value):
                name, argument = next(iter(value.items()))
                handler = self._handlers.get(name)
                if handler is None:
                    raise TemplateError(f"{name} is not supported by the local cloud")
                return handler(argument)
            resolved_map = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved_map.items() if item is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self.resolve(element) for element in value) if item is not NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        """Evaluates the named condition of the Conditions section (memoised on the template)."""
        if name in self._template.conditions:
            return self._template.conditions[name]
        declared = self._template.body.get("Conditions") or {}
        if name not in declared:
            raise TemplateError(f"condition {name} is not declared")
        if name in self._evaluating:
            raise TemplateError(f"condition {name} refers to itself")
        self._evaluating.add(name)
        try:
            result = self._truth(declared[name])
        finally:
            self._evaluating.discard(name)
        self._template.conditions[name] = result
        return result

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and len(value) == 1:
            name, args = next(iter(value.items()))
            logic: dict[str, Callable[[Any], bool]] = {
                "Condition": self.condition,
                "Fn::Equals": self._equals,
                "Fn::Not": lambda items: not self._truth(self._single(items, "Fn::Not")),
                "Fn::And": lambda items: all(self._truth(i) for i in self._list(items, "Fn::And", resolve=False)),
                "Fn::Or": lambda items: any(self._truth(i) for i in self._list(items, "Fn::Or", resolve=False)),
            }
            if name in logic:
                return logic[name](args)
        resolved = self.resolve(value)
        if isinstance(resolved, bool):
            return resolved
        if isinstance(resolved, str) and resolved.lower() in ("true", "false"):
            return resolved.lower() == "true"
        raise TemplateError(f"{value!r} is not a condition")

    def _equals(self, args: Any) -> bool:
        left, right = self._pair(args, "Fn::Equals")
        return bool(self._comparable(left) == self._comparable(right))

    def _single(self, args: Any, name: str) -> Any:
        items = self._list(args, name, resolve=False)
        if len(items) != 1:
            raise TemplateError(f"{name} takes a list of one condition, got {args!r}")
        return items[0]

    def _comparable(self, value: Any) -> Any:
        resolved = self.resolve(value)
        if isinstance(resolved, (bool, int, float)):
            return scalar_text(resolved, "Fn::Equals")
        return resolved

    def _pair(self, args: Any, name: str) -> tuple[Any, Any]:
        if not isinstance(args, list) or len(args) != 2:
            raise TemplateError(f"{name} takes a list of two values, got {args!r}")
        return args[0], args[1]

    def _list(self, value: Any, name: str, *, resolve: bool = True) -> list[Any]:
        resolved = self.resolve(value) if resolve else value
        if not isinstance(resolved, list):
            raise TemplateError(f"{name} expects a list, got {resolved!r}")
        return resolved

    def _text(self, value: Any, name: str) -> str:
        return scalar_text(self.resolve(value), name)

    def _ref(self, target: Any) -> Any:
        name = self._text(target, "Ref")
        if name.startswith("AWS::"):
            return self._template.pseudo_parameter(name)
        if name in self._template.parameters:
            return self._template.parameters[name]
        return self._resource_ref(name)

    def _resource_ref(self, logical_id: str) -> Any:
        if logical_id in self._template.skipped:
            raise TemplateError(f"Ref to {logical_id}, which its Condition left out of the stack")
        if logical_id not in self._template.resources:
            raise TemplateError(f"Ref to unknown parameter or resource {logical_id}")
        if self._lookup is None:
            raise TemplateError(f"Ref to resource {logical_id} where only parameters are allowed")
        return self._lookup.ref(logical_id)

    def _get_att(self, args: Any) -> Any:
        if isinstance(args, str):
            logical_id, _, attribute = args.partition(".")
        else:
            logical_id, attribute_value = self._pair(args, "Fn::GetAtt")
            attribute = self._text(attribute_value, "Fn::GetAtt")
        if logical_id in self._template.skipped:
            raise TemplateError(f"Fn::GetAtt of {logical_id}, which its Condition left out of the stack")
        if logical_id not in self._template.resources:
            raise TemplateError(f"Fn::GetAtt of unknown resource {logical_id}")
        if self._lookup is None:
            raise TemplateError(f"Fn::GetAtt of {logical_id} where only parameters are allowed")
        return self._lookup.get_att(logical_id, attribute)

    def _sub(self, args: Any) -> str:
        if isinstance(args, list):
            if len(args) != 2 or not isinstance(args[1], dict):
                raise TemplateError(f"Fn::Sub takes a string or [string, variables], got {args!r}")
            text, variables = args[0], {k: self.resolve(v) for k, v in args[1].items()}
        else:
            text, variables = args, {}
        if not isinstance(text, str):
            raise TemplateError(f"Fn::Sub needs a string template, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return scalar_text(variables[name], f"Fn::Sub ${{{name}}}")
            if "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                return scalar_text(self._get_att([logical_id, attribute]), f"Fn::Sub ${{{name}}}")
            return scalar_text(self._ref(name), f"Fn::Sub ${{{name}}}")

        return _SUB_VARIABLE.sub(substitute, text)

    def _if(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) != 3:
            raise TemplateError(f"Fn::If takes [condition, if-true, if-false], got {args!r}")
        name, when_true, when_false = args
        return self.resolve(when_true if self.condition(name) else when_false)

    def _select(self, args: Any) -> Any:
        index_value, items_value = self._pair(args, "Fn::Select")
        index = int(self._text(index_value, "Fn::Select"))
        items = self._list(items_value, "Fn::Select")
        if not 0 <= index < len(items):
            raise TemplateError(f"Fn::Select index {index} is outside a list of {len(items)}")
        return items[index]

    def _join(self, args: Any) -> str:
        delimiter, items_value = self._pair(args, "Fn::Join")
        items = self._list(items_value, "Fn::Join")
        return self._text(delimiter, "Fn::Join").join(scalar_text(item, "Fn::Join") for item in items)

    def _split(self, args: Any) -> list[str]:
        delimiter, source = self._pair(args, "Fn::Split")
        return self._text(source, "Fn::Split").split(self._text(delimiter, "Fn::Split"))

    def _find_in_map(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) not in (3, 4):
            raise TemplateError(f"Fn::FindInMap takes [map, key, key] (+ default), got {args!r}")
        map_name, top, second = (self._text(arg, "Fn::FindInMap") for arg in args[:3])
        mapping = self._template.mappings.get(map_name)
        if mapping is None:
            raise TemplateError(f"Fn::FindInMap: no mapping {map_name}")
        try:
            return self.resolve(mapping[top][second])
        except (KeyError, TypeError):
            if len(args) == 4 and isinstance(args[3], dict) and "DefaultValue" in args[3]:
                return self.resolve(args[3]["DefaultValue"])
            raise TemplateError(f"Fn::FindInMap: {map_name} has no [{top}][{second}]") from None


def references(value: Any, template: Template) -> set[str]:
    """Logical ids of the resources `value` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()

    def add(name: Any) -> None:
        if isinstance(name, str) and name in template.resources:
            found.add(name)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if is_intrinsic(node):
            name, argument = next(iter(node.items()))
            if name == "Ref":
                add(argument)
            elif name == "Fn::GetAtt":
                add(argument.partition(".")[0] if isinstance(argument, str) else argument[0])
            elif name == "Fn::Sub":
                text, variables = (argument[0], argument[1]) if isinstance(argument, list) else (argument, {})
                if isinstance(text, str):
                    for variable in _SUB_VARIABLE.findall(text):
                        if not variable.startswith("!") and variable not in variables:
                            add(variable.partition(".")[0])
                walk(variables)
                return
        for item in node.values():
            walk(item)

    walk(value)
    return found


def dependency_order(nodes: Mapping[str, Iterable[str]]) -> list[str]:
    """Orders nodes so each comes after its dependencies, keeping template order among equals."""
    pending = {node: set(deps) & set(nodes) for node, deps in nodes.items()}
    order: list[str] = []
    while pending:
        ready = [node for node, deps in pending.items() if not deps]
        if not ready:
            raise TemplateError(f"circular dependency between resources: {', '.join(sorted(pending))}")
        for node in ready:
            order.append(node)
            del pending[node]
        for deps in pending.values():
            deps.difference_update(ready)
    return order
