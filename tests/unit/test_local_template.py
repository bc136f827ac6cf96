"""The local cloud's template loader: YAML tags, parameters, conditions, Globals and intrinsics."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any

import pytest

from local.template import (
    Resolver,
    Template,
    TemplateError,
    dependency_order,
    load_yaml,
    merge_globals,
    references,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_cloud" / "template.yaml"

BASE = """
Parameters:
  Stage:
    Type: String
    Default: test
    AllowedValues: [test, prod]
  Size:
    Type: Number
    Default: 3
    MinValue: 1
  Zones:
    Type: CommaDelimitedList
    Default: "a,b,c"
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsTest: !Not [!Condition IsProd]
  Both: !And [!Condition IsTest, !Equals [!Ref Size, 3]]
  Either: !Or [!Condition IsProd, !Equals ["x", "y"]]
Mappings:
  Settings:
    test: {Greeting: hi-test}
    prod: {Greeting: hi-prod}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Queue:
    Type: AWS::SQS::Queue
  ProdOnly:
    Type: AWS::SNS::Topic
    Condition: IsProd
"""


class FakeLookup:
    """Resource values as `<id>` for Ref and `<id>.<attr>` for GetAtt."""

    def ref(self, logical_id: str) -> Any:
        return f"<{logical_id}>"

    def get_att(self, logical_id: str, attribute: str) -> Any:
        return f"<{logical_id}>.{attribute}"


def load(tmp_path: Path, text: str = BASE, **overrides: str) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(text))
    return Template.load(path, region="eu-west-1", stack_name="stack", parameter_overrides=overrides)


def resolve(tmp_path: Path, value: Any, **overrides: str) -> Any:
    return Resolver(load(tmp_path, **overrides), FakeLookup()).resolve(value)


def test_short_tags_become_long_form_and_dates_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            """
            A: !Ref X
            B: !GetAtt Res.Attr.Nested
            C: !Sub ["${x}", {x: !Ref Y}]
            D: !If [Cond, !Select [0, !Split [",", "a,b"]], !Condition Other]
            Version: 2012-10-17
            """
        )
    )
    document = load_yaml(path)
    assert document["A"] == {"Ref": "X"}
    assert document["B"] == {"Fn::GetAtt": ["Res", "Attr.Nested"]}
    assert document["C"] == {"Fn::Sub": ["${x}", {"x": {"Ref": "Y"}}]}
    assert document["D"] == {
        "Fn::If": ["Cond", {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}, {"Condition": "Other"}]
    }
    assert document["Version"] == "2012-10-17"


def test_ref_parameters_pseudo_parameters_and_resources(tmp_path: Path) -> None:
    value = {
        "stage": {"Ref": "Stage"},
        "size": {"Ref": "Size"},
        "zones": {"Ref": "Zones"},
        "region": {"Ref": "AWS::Region"},
        "account": {"Ref": "AWS::AccountId"},
        "stack": {"Ref": "AWS::StackName"},
        "partition": {"Ref": "AWS::Partition"},
        "suffix": {"Ref": "AWS::URLSuffix"},
        "table": {"Ref": "Table"},
    }
    assert resolve(tmp_path, value) == {
        "stage": "test",
        "size": "3",
        "zones": ["a", "b", "c"],
        "region": "eu-west-1",
        "account": "123456789012",
        "stack": "stack",
        "partition": "aws",
        "suffix": "amazonaws.com",
        "table": "<Table>",
    }


def test_get_att_in_list_and_dotted_forms(tmp_path: Path) -> None:
    assert resolve(tmp_path, {"Fn::GetAtt": ["Queue", "Arn"]}) == "<Queue>.Arn"
    assert resolve(tmp_path, {"Fn::GetAtt": "Queue.QueueUrl"}) == "<Queue>.QueueUrl"


def test_sub_with_attributes_pseudo_parameters_escapes_and_variables(tmp_path: Path) -> None:
    text = "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${Stage}/${Table}/${Queue.Arn}/${!Literal}"
    assert resolve(tmp_path, {"Fn::Sub": text}) == (
        "arn:aws:x:eu-west-1:123456789012:test/<Table>/<Queue>.Arn/${Literal}"
    )
    listed = {"Fn::Sub": ["${Name}-${Stage}", {"Name": {"Fn::Join": ["-", ["a", {"Ref": "Queue"}]]}}]}
    assert resolve(tmp_path, listed) == "a-<Queue>-test"


def test_conditions_and_if(tmp_path: Path) -> None:
    template = load(tmp_path)
    assert template.conditions == {"IsProd": False, "IsTest": True, "Both": True, "Either": False}
    assert resolve(tmp_path, {"Fn::If": ["IsProd", "yes", "no"]}) == "no"
    assert resolve(tmp_path, {"Fn::If": ["IsProd", "yes", "no"]}, Stage="prod") == "yes"
    properties = {"Keep": 1, "Drop": {"Fn::If": ["IsProd", 2, {"Ref": "AWS::NoValue"}]}}
    assert resolve(tmp_path, properties) == {"Keep": 1}
    assert resolve(tmp_path, ["a", {"Ref": "AWS::NoValue"}, "b"]) == ["a", "b"]


def test_resources_with_false_conditions_are_skipped(tmp_path: Path) -> None:
    assert "ProdOnly" not in load(tmp_path).resources
    assert load(tmp_path).skipped == ["ProdOnly"]
    assert "ProdOnly" in load(tmp_path, Stage="prod").resources
    with pytest.raises(TemplateError, match="Condition left out"):
        resolve(tmp_path, {"Ref": "ProdOnly"})


def test_select_join_split_base64_getazs(tmp_path: Path) -> None:
    assert resolve(tmp_path, {"Fn::Select": ["1", {"Ref": "Zones"}]}) == "b"
    assert resolve(tmp_path, {"Fn::Join": [":", ["x", {"Ref": "Size"}, True]]}) == "x:3:true"
    assert resolve(tmp_path, {"Fn::Split": ["/", {"Fn::Sub": "a/${Stage}/c"}]}) == ["a", "test", "c"]
    assert resolve(tmp_path, {"Fn::Base64": {"Ref": "Stage"}}) == base64.b64encode(b"test").decode()
    assert resolve(tmp_path, {"Fn::GetAZs": ""}) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    with pytest.raises(TemplateError, match="outside a list"):
        resolve(tmp_path, {"Fn::Select": [5, ["a"]]})


def test_find_in_map(tmp_path: Path) -> None:
    assert resolve(tmp_path, {"Fn::FindInMap": ["Settings", {"Ref": "Stage"}, "Greeting"]}) == "hi-test"
    assert resolve(tmp_path, {"Fn::FindInMap": ["Settings", "prod", "Greeting"]}) == "hi-prod"
    fallback = {"Fn::FindInMap": ["Settings", "dev", "Greeting", {"DefaultValue": "hi-default"}]}
    assert resolve(tmp_path, fallback) == "hi-default"
    with pytest.raises(TemplateError, match="has no"):
        resolve(tmp_path, {"Fn::FindInMap": ["Settings", "dev", "Greeting"]})


def test_parameter_validation(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not one of"):
        load(tmp_path, Stage="staging")
    with pytest.raises(TemplateError, match="below MinValue"):
        load(tmp_path, Size="0")
    with pytest.raises(TemplateError, match="do not exist"):
        load(tmp_path, Nope="1")
    assert load(tmp_path, Zones="x,y").parameters["Zones"] == ["x", "y"]


def test_unknown_references_and_unsupported_functions_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="unknown parameter or resource Missing"):
        resolve(tmp_path, {"Ref": "Missing"})
    with pytest.raises(TemplateError, match="Fn::ImportValue is not supported"):
        resolve(tmp_path, {"Fn::ImportValue": "x"})


def test_globals_merge_maps_append_lists_and_override_scalars(tmp_path: Path) -> None:
    template = load(
        tmp_path,
        """
        Globals:
          Function:
            Timeout: 10
            Layers: [!Ref LayerA]
            Environment:
              Variables: {SHARED: global, FROM_GLOBALS: g}
          HttpApi:
            Auth: {DefaultAuthorizer: A}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Timeout: 3
              Layers: [!Ref LayerB]
              Environment:
                Variables: {SHARED: local, FROM_FUNCTION: f}
          Plain:
            Type: AWS::Serverless::Function
          Api:
            Type: AWS::Serverless::HttpApi
          LayerA:
            Type: AWS::Serverless::LayerVersion
          LayerB:
            Type: AWS::Serverless::LayerVersion
        """,
    )
    function = template.resources["Fn"]["Properties"]
    assert function["Timeout"] == 3
    assert function["Layers"] == [{"Ref": "LayerA"}, {"Ref": "LayerB"}]
    assert function["Environment"]["Variables"] == {"SHARED": "local", "FROM_GLOBALS": "g", "FROM_FUNCTION": "f"}
    assert template.resources["Plain"]["Properties"]["Timeout"] == 10
    assert template.resources["Api"]["Properties"]["Auth"] == {"DefaultAuthorizer": "A"}
    assert "Properties" not in template.resources["LayerA"]


def test_merge_globals_treats_intrinsics_as_values() -> None:
    assert merge_globals({"Ref": "A"}, {"Ref": "B"}) == {"Ref": "B"}
    assert merge_globals({"X": 1}, {"Fn::If": ["C", {"X": 2}, {}]}) == {"Fn::If": ["C", {"X": 2}, {}]}


def test_references_and_dependency_order(tmp_path: Path) -> None:
    template = load(tmp_path)
    value = {"a": {"Ref": "Table"}, "b": {"Fn::Sub": "${Queue.Arn}-${Stage}-${!Table}"}, "c": {"Ref": "Stage"}}
    assert references(value, template) == {"Table", "Queue"}
    assert dependency_order({"a": ["b"], "b": ["c"], "c": [], "d": []}) == ["c", "d", "b", "a"]
    with pytest.raises(TemplateError, match="circular dependency"):
        dependency_order({"a": ["b"], "b": ["a"]})


def test_fixture_template_loads_with_its_conditions() -> None:
    template = Template.load(FIXTURE, stack_name="fixture")
    assert template.conditions == {"IsProd": False, "IsNotProd": True, "TestAndNotProd": True}
    assert "ProdOnlyTopic" in template.skipped
    env = template.resources["EchoFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STAGE"] == {"Ref": "Stage"}
    assert env["GREETING"] == {"Fn::FindInMap": ["StageSettings", {"Ref": "Stage"}, "Greeting"]}
    assert Resolver(template).resolve(env["GREETING"]) == "hello-test"
