"""The one model layer (dnalm): loading any architecture, presets, the listing, capabilities, and
the rule that commands reach models only through it."""

import ast
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import dnalm
import janusdna
from conftest import DATA, ORACLE
from dnalm.interface import DNALM
from janus_cli.main import app

JANUS_CLI = Path(__file__).parents[1] / "janus_cli"
ARCHITECTURE_PACKAGES = set(dnalm.registry.ARCHITECTURE_PACKAGES.values())
REFERENCE = DATA / "grch37_chr20_30.0-30.2Mb.fa.gz"


def janus(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import in a file; level > 0 for relative imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(f"{node.module or ''}.{alias.name}".strip("."), node.level) for alias in node.names]
    return found


def test_nothing_in_janus_cli_imports_an_architecture_only_the_shared_layer():
    offenders = [f"{path.relative_to(JANUS_CLI)}: {module}"
                 for path in JANUS_CLI.rglob("*.py")
                 for module, level in imported_modules(path)
                 if level == 0 and module.split(".")[0] in ARCHITECTURE_PACKAGES]
    assert offenders == []


def test_no_command_module_imports_another_command_module():
    commands = {path.stem for path in (JANUS_CLI / "commands").glob("*.py")} - {"__init__"}
    offenders = []
    for path in (JANUS_CLI / "commands").glob("*.py"):
        for module, level in imported_modules(path):
            parts = module.split(".")
            if (level == 1 and parts[0] in commands) or "commands" in parts[:-1] or (level == 2 and parts[0] == "commands"):
                offenders.append(f"{path.name}: {'.' * level}{module}")
    assert offenders == []


def test_the_import_scan_would_see_an_offending_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import janusdna\nfrom .embed import x\nfrom ..commands.embed import y\n")
    assert imported_modules(sample) == [("janusdna", 0), ("embed.x", 1), ("commands.embed.y", 2)]


def test_a_config_without_arch_loads_as_janusdna_and_save_writes_arch(tmp_path):
    shipped = dnalm.resolve_model_path(dnalm.DEFAULT_MODEL)
    assert "arch" not in json.loads((shipped / "config.json").read_text())
    model = dnalm.load(dnalm.DEFAULT_MODEL)
    assert isinstance(model, janusdna.JanusDNA) and model.arch == "janusdna"
    dnalm.save(model, tmp_path / "m")
    written = json.loads((tmp_path / "m" / "config.json").read_text())
    assert written["arch"] == "janusdna" and written["format"] == "janus-model"
    again = dnalm.load(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_an_unknown_arch_is_a_clear_error(tmp_path):
    dnalm.save(dnalm.load(dnalm.DEFAULT_MODEL), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "arch": "dnabert9"}))
    with pytest.raises(dnalm.CheckpointError, match="unknown architecture 'dnabert9'"):
        dnalm.load(tmp_path / "m")


def test_the_public_janusdna_api_keeps_working(tmp_path):
    model = janusdna.from_preset("janusdna-d32", seed=0)
    assert isinstance(model, janusdna.JanusDNA)
    janusdna.save(model, tmp_path / "m")
    assert isinstance(janusdna.load(tmp_path / "m"), janusdna.JanusDNA)
    imported = janusdna.from_original(ORACLE / "last.ckpt", ORACLE / "model_config.json")
    ids = janusdna.encode("ACGT" * 8).unsqueeze(0)
    assert imported(ids).shape == (1, 32, 16)
    assert janusdna.load(janusdna.DEFAULT_MODEL).base_log_probs(ids).shape == (1, 32, 4)


def test_every_preset_is_named_after_its_architecture_and_listed():
    listed = dnalm.list_models()
    assert {"name", "arch", "kind", "parameters"} == set(listed[0])
    presets = [entry for entry in listed if entry["kind"] == "preset"]
    assert {entry["arch"] for entry in presets} == set(dnalm.registry.ARCHITECTURE_PACKAGES)
    assert all(entry["name"].startswith(entry["arch"] + "-") for entry in listed)
    shipped = [entry for entry in listed if entry["kind"] == "shipped"]
    assert {"name": dnalm.DEFAULT_MODEL, "arch": "janusdna", "kind": "shipped", "parameters": 4_011_200} in shipped
    assert {entry["arch"] for entry in shipped} == {"janusdna", "hybridna", "mergedna"}  # one shipped model each
    d144 = next(entry for entry in presets if entry["name"] == "janusdna-d144")
    assert d144["parameters"] == 35_533_376  # the paper's Table 4 (without final_mlp)


def test_info_list_prints_lines_and_json():
    text = janus("info", "--list")
    assert text.exit_code == 0, text.output
    lines = text.stdout.strip().splitlines()
    assert lines[0] == "name\tarch\tkind\tparameters"
    assert f"{dnalm.DEFAULT_MODEL}\tjanusdna\tshipped\t4011200" in lines
    as_json = janus("info", "--list", "--json")
    assert json.loads(as_json.stdout) == dnalm.list_models()
    assert janus("info").exit_code == 2 and janus("info", "janusdna-d32", "--list").exit_code == 2


def test_info_of_a_preset_names_its_architecture_without_building_weights():
    result = janus("info", "janusdna-d144", "--json")
    described = json.loads(result.stdout)
    assert described["arch"] == "janusdna" and described["weights_sha256"] == "-"
    assert described["prediction_context"] == dnalm.ALL_BUT_SELF


def test_require_names_the_architecture_and_what_to_use_instead():
    model = dnalm.load(dnalm.DEFAULT_MODEL)
    dnalm.require(model, "per_base_prediction", "janus likelihood")
    with pytest.raises(dnalm.CapabilityError, match=r"janus generate needs a model that generates .*janusdna models do not; .*causal"):
        dnalm.require(model, "generation", "janus generate")


LACKING_GENERATION = [name for name, arch in dnalm.architectures().items()
                      if "generation" not in arch.model_class.capabilities()]


def test_every_architecture_predicts_bases_and_some_cannot_generate():
    assert all("per_base_prediction" in arch.model_class.capabilities() for arch in dnalm.architectures().values())
    assert set(LACKING_GENERATION) == {"janusdna", "mergedna"}


@pytest.mark.parametrize("arch_name", LACKING_GENERATION)
def test_commands_refuse_what_an_architecture_cannot_do_with_exit_2(tmp_path, arch_name):
    arch = dnalm.architecture(arch_name)
    smallest = min(arch.presets, key=lambda name: arch.presets[name].d_model)
    model_dir = dnalm.save(dnalm.from_preset(smallest, seed=0), tmp_path / "m")
    result = janus("generate", "--model", model_dir, "--length", 8, "--beam", 2)
    assert result.exit_code == 2
    assert f"{arch_name} models do not" in result.stderr and result.stderr.count("\n") == 1


class InterfaceOnly:
    """A model that lets a command use only what DNALM declares (and the nn.Module calls a runner
    needs), recording which interface methods it called."""

    ALLOWED = {name for name in dir(DNALM) if not name.startswith("_") and name not in dir(torch.nn.Module)}
    ALLOWED |= {"config", "to", "eval", "arch", "prediction_context", "default_pooling"}

    def __init__(self, model):
        self._model, self.calls = model, set()

    def __getattr__(self, name):
        if name not in self.ALLOWED:
            raise AssertionError(f"a command used {name!r}, which is not part of the dnalm interface")
        self.calls.add(name)
        value = getattr(self._model, name)
        if name in ("to", "eval", "batch_invariant"):
            return lambda *args, **kwargs: (value(*args, **kwargs), self)[1]
        return value

    def __call__(self, *args):
        self.calls.add("forward")
        return self._model(*args)


def test_every_inference_command_runs_through_the_interface(tmp_path, tiny_model_dir, monkeypatch):
    real_load = dnalm.load
    wrapped = []

    def load_interface_only(*args, **kwargs):
        wrapped.append(InterfaceOnly(real_load(*args, **kwargs)))
        return wrapped[-1]

    monkeypatch.setattr(dnalm, "load", load_interface_only)
    bed = tmp_path / "r.bed"
    bed.write_text("20\t1000\t1100\n")
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=20>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"20\t1051\t.\t{_reference_base(1050)}\tA,C\t.\t.\t.\n")
    commands = {
        "embed": ["embed", bed, "-o", tmp_path / "e.parquet"],
        "likelihood": ["likelihood", bed, "--mutagenesis", "-o", tmp_path / "l.parquet"],
        "score-variants": ["score-variants", vcf, "--window", 64, "-o", tmp_path / "s.parquet"],
    }
    for name, args in commands.items():
        result = janus(*args, "--fasta", REFERENCE, "--model", tiny_model_dir, "--threads", 1)
        assert result.exit_code == 0, f"{name}: {result.output}"
    assert [w.calls >= {"batch_invariant"} for w in wrapped] == [True] * 3
    assert "hidden_states" in wrapped[0].calls and "base_log_probs" in wrapped[1].calls
    assert "hidden_and_base_log_probs" in wrapped[2].calls
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 2


def _reference_base(position: int) -> str:
    from janus_cli.io.fasta import Reference

    with Reference(REFERENCE) as reference:
        return reference.fetch("20", position, position + 1)
