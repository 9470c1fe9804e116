"""Reading CloudFormation YAML in tests: the short-form tags (`!Ref x` → {"Ref": x},
`!GetAtt a.b` → {"Fn::GetAtt": [a, b]}, `!Sub x` → {"Fn::Sub": x}, …) as the long forms."""

from __future__ import annotations

from pathlib import Path

import yaml


class CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=CfnLoader)
