"""Fuzzing bundle.json (issue 15): a mutation is a one-line BundleError naming the file, or a normal load."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories.trained import small_config
from morphomass.errors import BundleError, BundleVersionWarning
from morphomass.predict import load_bundle, write_bundle
from morphomass.predict.bundle import bundle_content_sha256

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.just("../x"),
    st.just("/etc/hostname"),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@pytest.fixture(name="fuzz_dir", scope="module")
def fixture_fuzz_dir(trained_workdir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    write_bundle(small_config(), trained_workdir)
    return Path(shutil.copytree(trained_workdir.models, tmp_path_factory.mktemp("fuzz") / "models"))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_manifest_is_refused_in_one_line_or_loads(fuzz_dir: Path, data: st.DataObject) -> None:
    original = json.loads((fuzz_dir / "bundle.json").read_text(encoding="utf-8"))
    manifest = json.loads(json.dumps(original))
    paths = [p for p in _paths(manifest) if p and p[0] not in ("config", "bundle_sha256")]
    path = data.draw(st.sampled_from(paths))
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["delete", "retype", "nest"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "retype":
        parent[path[-1]] = data.draw(VALUES)
    else:
        parent[path[-1]] = [[[[parent[path[-1]]]]]]
    manifest["bundle_sha256"] = bundle_content_sha256(manifest)
    target = fuzz_dir / "bundle.json"
    try:
        target.write_text(json.dumps(manifest), encoding="utf-8")
        try:
            # a library version changed to another string is harmless and announced by a warning, by design
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BundleVersionWarning)
                bundle = load_bundle(fuzz_dir)
                bundle.networks()
                bundle.boosters()
        except BundleError as err:
            assert "\n" not in str(err)
            assert str(fuzz_dir) in str(err) or "bundle.json" in str(err)
    finally:
        target.write_text(json.dumps(original), encoding="utf-8")
