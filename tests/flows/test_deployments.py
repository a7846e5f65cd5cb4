"""The deployment declarations: ``vlpet serve``'s deployments and ``prefect.yaml`` name the same flows."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
NAMES = {"download", "prepare", "extract-features", "build-dataset"}


def test_every_flow_is_served_as_default():
    from flows.serve import deployment_names, deployments

    deps = deployments()
    assert {d.name for d in deps} == {"default"}
    assert {n.split("/")[0] for n in deployment_names()} >= NAMES
    for d in deps:  # module-path entrypoints: the runner finds them from any working directory
        module, attr = d.entrypoint.rsplit(".", 1)
        assert getattr(importlib.import_module(module), attr).name == d.flow_name


def test_prefect_yaml_declares_the_same_deployments():
    from flows.prefect_flows import FLOWS

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found = set()
    for dep in spec["deployments"]:
        path, attr = dep["entrypoint"].split(":")
        assert (REPO / path).is_file() and dep["name"] == "default"
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        found.add(getattr(module, attr).name)
        assert dep["work_pool"]["name"] == "vlpet-process"
    assert found == {f.name for f in FLOWS} >= NAMES


def test_extract_flow_parameters_are_the_interface():
    from flows.prefect_flows import extract_features_flow

    params = extract_features_flow.parameters.properties
    assert {"media", "store", "extractor", "device", "cluster", "batch_size", "workers", "pretrained",
            "weights"} <= set(params)
    assert params["extractor"]["default"] == "clip-rn101-grid" and params["device"]["default"] == "auto"
    # official weights unless random ones are asked for by name, spelled as on the command line
    assert params["weights"]["default"] == "official" and params["weights"]["enum"] == ["official", "random"]
    assert set(extract_features_flow.parameters.required) == {"media", "store"}
