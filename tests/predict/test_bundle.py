"""The prediction bundle: what write_bundle records; load_bundle refusing tampered or incompatible bundles."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories.trained import read_bundle_json, small_config
from morphomass.config import NetConfig
from morphomass.errors import WorkdirError
from morphomass.predict import BundleError, BundleVersionWarning, load_bundle, write_bundle
from morphomass.predict.bundle import bundle_content_sha256
from morphomass.workdir import WorkDir


def _rewrite(bundle_dir: Path, change, *, rehash: bool) -> None:
    manifest = read_bundle_json(bundle_dir)
    change(manifest)
    if rehash:
        manifest["bundle_sha256"] = bundle_content_sha256(manifest)
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_bundle_lists_every_file_with_its_hash(bundle_dir: Path) -> None:
    manifest = read_bundle_json(bundle_dir)
    files = manifest["files"]
    assert set(files) == {
        "cnn/cnn1.json",
        "cnn/cnn1.safetensors",
        "cnn/cnn4.json",
        "cnn/cnn4.safetensors",
        "gbm/g_morph.txt",
        "gbm/gi_morph.txt",
        "gbm/intervals_g_morph.json",
        "gbm/intervals_gi_morph.json",
    }
    assert {m["intervals"] for m in manifest["models"].values()} == {
        "gbm/intervals_g_morph.json",
        "gbm/intervals_gi_morph.json",
    }
    assert manifest["interval_levels"] == [0.68, 0.95]
    for rel, entry in files.items():
        data = (bundle_dir / rel).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert all(Path(rel).suffix in (".json", ".safetensors", ".txt") for rel in files)  # never a pickle
    assert manifest["bundle_sha256"] == bundle_content_sha256(manifest)


def test_bundle_records_features_settings_and_ranges(bundle_dir: Path, trained_workdir: WorkDir) -> None:
    manifest = read_bundle_json(bundle_dir)
    config = small_config()
    kept = [c for c in pd.read_parquet(trained_workdir.features / "cnn.parquet").columns if c != "objid"]
    produced = [c for net in manifest["networks"].values() for cols in net["columns"].values() for c in cols]
    assert len(produced) == 37 + 128 + 37  # cnn1 probabilities and trunk, cnn4 features
    assert manifest["features"]["cnn"] == kept
    assert manifest["features"]["dead"] == [c for c in produced if c not in kept]
    assert manifest["features"]["dead"], "untrained ReLU networks have dead units"
    assert manifest["preprocessing"]["settings"]["noise_target"] == config.preprocess.noise_target
    assert "workers" not in manifest["preprocessing"]["settings"]
    assert manifest["preprocessing"]["sizes"] == [69]
    assert manifest["preprocessing"]["m_sun_image_band"] == pytest.approx(5.11)
    assert manifest["config"]["cnn"]["nets"]["cnn1"]["backbone"] == "dieleman"
    assert manifest["models"]["gi"]["catalog_bands"] == "gi"
    gbm_info = json.loads((bundle_dir / "gbm" / "g_morph.json").read_text())
    assert manifest["models"]["g"]["features"] == gbm_info["features"]
    sample = pd.read_parquet(trained_workdir.sample)
    train = sample[sample["split"] == "train"]
    assert manifest["training_ranges"]["z"] == [train["z"].min(), train["z"].max()]
    assert manifest["training_ranges"]["flux_i_nmgy"] == [train["flux_i"].min(), train["flux_i"].max()]
    assert manifest["n_train"] == len(train)
    assert manifest["versions"]["lightgbm"] and manifest["versions"]["torch"]


def test_load_bundle_accepts_the_folder_the_file_or_the_workdir(bundle_dir: Path, tmp_path: Path) -> None:
    assert load_bundle(bundle_dir).model_keys == ["g", "gi"]
    assert load_bundle(bundle_dir / "bundle.json").root == bundle_dir
    assert load_bundle(tmp_path).root == bundle_dir  # tmp_path holds models/bundle.json
    with pytest.raises(BundleError, match="no prediction bundle at"):
        load_bundle(tmp_path / "elsewhere")


@pytest.mark.parametrize("rel", ["cnn/cnn1.safetensors", "gbm/g_morph.txt", "cnn/cnn4.json"])
def test_a_tampered_file_is_refused(bundle_dir: Path, rel: str) -> None:
    path = bundle_dir / rel
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{rel}.* was modified after the bundle was written"):
        load_bundle(bundle_dir)


def test_a_missing_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "gbm" / "gi_morph.txt").unlink()
    with pytest.raises(BundleError, match=r"gi_morph\.txt is missing"):
        load_bundle(bundle_dir)


def test_an_edited_manifest_is_refused(bundle_dir: Path) -> None:
    _rewrite(bundle_dir, lambda m: m["training_ranges"]["z"].__setitem__(1, 5.0), rehash=False)
    with pytest.raises(BundleError, match="bundle.json was modified after it was written"):
        load_bundle(bundle_dir)


def test_another_morphomass_version_is_refused(bundle_dir: Path) -> None:
    _rewrite(bundle_dir, lambda m: m.__setitem__("morphomass_version", "99.0.0"), rehash=True)
    with pytest.raises(BundleError, match=r"made by morphomass 99\.0\.0, this is morphomass"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.__setitem__("format_version", 5), "bundle format version 5"),
        (lambda m: m.__setitem__("format", "other"), "is not a morphomass prediction bundle"),
        (lambda m: m.pop("format"), "is not a morphomass prediction bundle"),
    ],
)
def test_another_format_is_refused(bundle_dir: Path, change, match: str) -> None:
    _rewrite(bundle_dir, change, rehash=True)
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_dir)


def test_the_minimal_train_gbm_manifest_is_refused_with_a_hint(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.json").write_text(json.dumps({"format_version": 1, "main_model": {}}))
    with pytest.raises(BundleError, match="minimal manifest of an older train-gbm"):
        load_bundle(bundle_dir)


def test_a_manifest_that_is_not_json_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="is not valid JSON"):
        load_bundle(bundle_dir)


def test_another_library_version_warns(bundle_dir: Path) -> None:
    _rewrite(bundle_dir, lambda m: m["versions"].__setitem__("lightgbm", "1.0.0"), rehash=True)
    with pytest.warns(BundleVersionWarning, match=r"made with lightgbm 1\.0\.0"):
        load_bundle(bundle_dir)


def test_a_library_that_is_not_installed_is_refused(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from morphomass.predict import bundle as bundle_module

    recorded = read_bundle_json(bundle_dir)["versions"]["lightgbm"]
    monkeypatch.setattr(bundle_module, "library_versions", lambda: {"lightgbm": None})
    with pytest.raises(BundleError, match=rf"made with lightgbm {recorded}, which is not installed here"):
        load_bundle(bundle_dir)


def _copy_workdir(trained_workdir: WorkDir, tmp_path: Path) -> WorkDir:
    return WorkDir(Path(shutil.copytree(trained_workdir.root, tmp_path / "work")))


def test_write_bundle_needs_the_main_gbm(trained_workdir: WorkDir, tmp_path: Path) -> None:
    workdir = _copy_workdir(trained_workdir, tmp_path)
    (workdir.models / "gbm" / "g_morph.txt").unlink()
    with pytest.raises(WorkdirError, match=r"g_morph\.txt \(and its \.json\) not found; run 'morphomass tr"):
        write_bundle(small_config(), workdir)


def test_write_bundle_without_gi_model_offers_g_only(trained_workdir: WorkDir, tmp_path: Path) -> None:
    workdir = _copy_workdir(trained_workdir, tmp_path)
    (workdir.models / "gbm" / "gi_morph.txt").unlink()
    write_bundle(small_config(), workdir)
    bundle = load_bundle(workdir.models)
    assert bundle.model_keys == ["g"]
    assert "flux_i_nmgy" not in bundle.training_ranges


def test_write_bundle_refuses_a_configuration_the_workdir_was_not_made_with(
    trained_workdir: WorkDir, tmp_path: Path
) -> None:
    workdir = _copy_workdir(trained_workdir, tmp_path)
    config = small_config()
    config.preprocess.noise_target = 0.3
    with pytest.raises(WorkdirError, match="differs from the one the preprocess stage ran with"):
        write_bundle(config, workdir)
    workdir.manifest.unlink()  # without records, the networks' cards are what catches it
    config = small_config()
    config.cnn.nets = {"cnn1": NetConfig(backbone="dieleman", input_size=80)}
    expected = r"cnn1\.json is a dieleman at 69 px but the configuration asks for dieleman at 80 px"
    with pytest.raises(WorkdirError, match=expected):
        write_bundle(config, workdir)


def test_write_bundle_refuses_features_no_network_makes(trained_workdir: WorkDir, tmp_path: Path) -> None:
    workdir = _copy_workdir(trained_workdir, tmp_path)
    path = workdir.features / "cnn.parquet"
    pd.read_parquet(path).assign(cnn9_p_t01_a01=np.float32(0.5)).to_parquet(path)
    with pytest.raises(WorkdirError, match=r"has columns no network or encoder source of .* \(\['cnn9"):
        write_bundle(small_config(), workdir)


def test_write_bundle_refuses_a_gbm_on_unknown_features(trained_workdir: WorkDir, tmp_path: Path) -> None:
    workdir = _copy_workdir(trained_workdir, tmp_path)
    info_path = workdir.models / "gbm" / "g_morph.json"
    info = json.loads(info_path.read_text())
    info["features"].append("gz2_p_t01_a01")  # the cheating model's true GZ2 votes: unknown for new galaxies
    info_path.write_text(json.dumps(info))
    with pytest.raises(WorkdirError, match=r"uses features the bundle cannot compute.*gz2_p_t01_a01"):
        write_bundle(small_config(), workdir)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.pop("models"), r"lacks the sections \['models'\]"),
        (lambda m: m["models"].pop("g"), r"has no g-band model \(models\.g\)"),
    ],
)
def test_an_incomplete_manifest_is_refused(bundle_dir: Path, change, match: str) -> None:
    _rewrite(bundle_dir, change, rehash=True)
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_dir)


def test_a_manifest_that_is_not_an_object_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="expected a JSON object"):
        load_bundle(bundle_dir)


def test_write_bundle_needs_every_network(trained_workdir: WorkDir, tmp_path: Path) -> None:
    workdir = _copy_workdir(trained_workdir, tmp_path)
    (workdir.models / "cnn" / "cnn4.safetensors").unlink()
    with pytest.raises(WorkdirError, match=r"cnn4\.safetensors not found; run 'morphomass train-cnn'"):
        write_bundle(small_config(), workdir)
    (workdir.models / "cnn" / "cnn4.json").write_text("{broken")
    with pytest.raises(WorkdirError, match=r"cnn4\.json is not valid JSON"):
        write_bundle(small_config(), workdir)
    (workdir.models / "cnn" / "cnn4.json").unlink()
    with pytest.raises(WorkdirError, match=r"cnn4\.json not found: network cnn4 is not trained"):
        write_bundle(small_config(), workdir)


def test_write_bundle_needs_the_sample_columns_of_the_ranges(
    trained_workdir: WorkDir, tmp_path: Path
) -> None:
    workdir = _copy_workdir(trained_workdir, tmp_path)
    pd.read_parquet(workdir.sample).drop(columns="d25_arcmin").to_parquet(workdir.sample)
    workdir.manifest.unlink()  # the sample changed behind the manifest's back
    with pytest.raises(WorkdirError, match=r"sample\.parquet lacks \['d25_arcmin'\]"):
        write_bundle(small_config(), workdir)


# ------------------------------------------------------------------------------------------------ issue 15


def _rehash_file(bundle_dir: Path, rel: str, data: bytes) -> None:
    """Write ``data`` to a bundle file and record its new hash and size (what a forger would do)."""
    (bundle_dir / rel).write_bytes(data)
    entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _rewrite(bundle_dir, lambda m: m["files"].__setitem__(rel, entry), rehash=True)


def test_an_edited_model_with_recomputed_hashes_is_accepted(bundle_dir: Path) -> None:
    """The honest limit: the hashes catch corruption and accidents, not a forger who recomputes them.

    A model edited consistently (here every leaf value scaled by 10) with its hashes recomputed loads and its
    predictions change; only a signature the user verifies would catch that (README, "Integrity").
    """
    original = load_bundle(bundle_dir).boosters()["g"]
    path = bundle_dir / "gbm" / "g_morph.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    edited = [
        "leaf_value=" + " ".join(repr(10 * float(v)) for v in line.split("=")[1].split())
        if line.startswith("leaf_value=")
        else line
        for line in lines
    ]
    text = "\n".join(edited)
    starts = [m.start() for m in re.finditer(r"^Tree=", text, flags=re.M)] + [text.index("end of trees")]
    sizes = " ".join(str(len(text[i:j].encode())) for i, j in zip(starts, starts[1:], strict=False))
    text = re.sub(r"^tree_sizes=.*$", f"tree_sizes={sizes}", text, count=1, flags=re.M)  # as a forger would
    _rehash_file(bundle_dir, "gbm/g_morph.txt", text.encode())
    forged = load_bundle(bundle_dir).boosters()["g"]
    x = np.random.default_rng(0).normal(size=(4, original.num_feature()))
    assert not np.allclose(forged.predict(x), original.predict(x))


_LOAD_TRUNCATED = """
import json, sys
from morphomass.errors import BundleError
from morphomass.predict import load_bundle
from morphomass.predict.bundle import parse_lightgbm_model
try:
    load_bundle(sys.argv[1])
except BundleError as err:
    print("BundleError:", err)
data = open(sys.argv[2], "rb").read()
refused = 0
end = data.index(b"end of parameters")  # after it, only pandas_categorical, which may be cut harmlessly
cuts = [*range(1, end, 97), *range(end - 300, end)]
for cut in cuts:
    for garbled, variant in enumerate((data[:cut], data[:cut] + b"X" + data[cut + 1 :])):
        try:
            parse_lightgbm_model(variant, where="m.txt")
        except BundleError as err:
            assert "\\n" not in str(err), str(err)
            refused += not garbled  # a garbled byte may be harmless (a parameter's text): survive is enough
print("survived", refused, len(cuts))
"""


def test_a_truncated_gbm_with_fixed_hashes_is_a_bundle_error_not_an_abort(bundle_dir: Path) -> None:
    """A LightGBM model cut short or garbled is checked before the C library sees it (which would abort)."""
    import subprocess
    import sys

    model = bundle_dir / "gbm" / "g_morph.txt"
    original = bundle_dir.parent / "g_morph.txt"
    shutil.copyfile(model, original)
    data = model.read_bytes()
    _rehash_file(bundle_dir, "gbm/g_morph.txt", data[: int(len(data) * 0.7)])
    run = subprocess.run(
        [sys.executable, "-c", _LOAD_TRUNCATED, str(bundle_dir), str(original)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    first, *_, last = run.stdout.strip().split("\n")
    assert re.fullmatch(
        r"BundleError: \S*g_morph\.txt is not a valid LightGBM text model: it is truncated.*", first
    )
    survived, refused, tried = last.split()
    assert survived == "survived" and int(refused) == int(tried)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x01", r"cnn1\.safetensors is not a valid safetensors file \(.*header too small"),
        (b"\x10" + bytes(7) + b"{not a header}}}", r"cnn1\.safetensors is not a valid safetensors file"),
    ],
)
def test_a_bad_safetensors_file_is_a_bundle_error(bundle_dir: Path, data: bytes, match: str) -> None:
    _rehash_file(bundle_dir, "cnn/cnn1.safetensors", data)
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_dir)


def test_weights_of_another_network_are_a_bundle_error(bundle_dir: Path) -> None:
    _rewrite(
        bundle_dir,
        lambda m: m["networks"]["cnn1"].__setitem__("weights", "cnn/cnn4.safetensors"),
        rehash=True,
    )
    bundle = load_bundle(bundle_dir)
    with pytest.raises(
        BundleError, match=r"cnn4\.safetensors: weights do not fit the architecture of its card"
    ):
        bundle.networks()


def test_an_unreadable_weight_file_is_a_bundle_error(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = bundle_dir / "cnn" / "cnn1.safetensors"
    read_bytes = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self == target:
            raise PermissionError(13, "Permission denied")
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(BundleError, match=r"cnn1\.safetensors cannot be read \(Permission denied\)"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.__setitem__("files", {}), "files is empty, so nothing would be checked"),
        (lambda m: m.pop("files"), r"lacks the sections \['files'\]"),
        (
            lambda m: m["files"].pop("gbm/g_morph.txt"),
            r"models\.g\.file = 'gbm/g_morph\.txt' is not an entry of files",
        ),
        (
            lambda m: m["files"].pop("cnn/cnn4.safetensors"),
            r"networks\.cnn4\.weights = 'cnn/cnn4\.safetensors' is not an entry of files",
        ),
        (
            lambda m: m["networks"]["cnn1"].__setitem__("card", "../outside.json"),
            r"networks\.cnn1\.card = '\.\./outside\.json' is not an entry of files",
        ),
        (
            lambda m: m["models"]["g"].__setitem__("features", ["lum_sum", 3]),
            r"models\.g\.features must be a list",
        ),
        (lambda m: m.__setitem__("versions", [1]), "versions must be a JSON object, got list"),
    ],
)
def test_models_and_networks_must_be_listed_files(bundle_dir: Path, change, match: str) -> None:
    _rewrite(bundle_dir, change, rehash=True)
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("outside", ["../secret.txt", "/etc/hostname", "gbm/../../secret.txt", "link.txt"])
def test_a_file_outside_the_bundle_folder_is_refused_without_its_hash(bundle_dir: Path, outside: str) -> None:
    secret = bundle_dir.parent / "secret.txt"
    secret.write_text("not part of the bundle\n")
    (bundle_dir / "link.txt").symlink_to(secret)
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()

    def point_outside(m: dict) -> None:
        m["files"][outside] = m["files"].pop("gbm/g_morph.txt")
        m["models"]["g"]["file"] = outside

    _rewrite(bundle_dir, point_outside, rehash=True)
    with pytest.raises(
        BundleError, match=r"points outside the bundle folder|a link pointing outside"
    ) as info:
        load_bundle(bundle_dir)
    assert digest[:8] not in str(info.value)


def test_a_file_changed_after_loading_is_never_read(bundle_dir: Path) -> None:
    """The GBMs and weights are parsed from the bytes that were hashed, not read again later."""
    bundle = load_bundle(bundle_dir)
    for rel in ("gbm/g_morph.txt", "cnn/cnn1.safetensors", "cnn/cnn1.json"):
        (bundle_dir / rel).write_bytes(b"swapped after the check")
    assert set(bundle.networks()) == {"cnn1", "cnn4"}
    assert bundle.boosters()["g"].num_trees() > 0


def test_a_manifest_nested_very_deeply_or_not_utf8_is_one_line(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match=r"bundle\.json is not valid JSON \(nested too deeply\)"):
        load_bundle(bundle_dir)
    (bundle_dir / "bundle.json").write_bytes(b'{"format": "\xff"}')
    with pytest.raises(BundleError, match=r"bundle\.json is not valid JSON \('utf-8' codec"):
        load_bundle(bundle_dir)


def test_weight_files_follow_the_umask(tmp_path: Path) -> None:
    from morphomass.cnn.architectures import build_gz2_net
    from morphomass.cnn.weights import save_network

    card = {"name": "cnn1", "kind": "gz2", "backbone": "dieleman", "input_size": 69, "dropout": 0.0}
    old = os.umask(0o022)
    try:
        written = save_network(tmp_path, "cnn1", build_gz2_net("dieleman"), {**card, "train_key": "k"})
        os.umask(0o027)
        again = save_network(tmp_path / "g", "cnn1", build_gz2_net("dieleman"), {**card, "train_key": "k"})
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o644}
    assert {stat.S_IMODE(p.stat().st_mode) for p in again} == {0o640}
