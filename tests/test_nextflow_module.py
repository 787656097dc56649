"""Structure checks of the nf-core-style Nextflow module in examples/nextflow.

Nextflow itself is not run (it downloads its runtime at first start, and the machines this
project is tested on have no internet). Instead main.nf, meta.yml and the example workflow are
parsed and checked against each other and against the janus CLI that the module calls.
"""

import fnmatch
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
import yaml

from janus_cli.main import app

REPO = Path(__file__).resolve().parent.parent
NF_DIR = REPO / "examples" / "nextflow"
MODULE_DIR = NF_DIR / "modules" / "janus" / "scorevariants"
MODULE_NF = MODULE_DIR / "main.nf"
META_YML = MODULE_DIR / "meta.yml"
PROCESS = "JANUS_SCOREVARIANTS"
COMMAND = "score-variants"  # the janus subcommand the module runs
# Options the module sets itself in its script block; everything else belongs in ext.args.
MODULE_OPTIONS = {"--fasta", "-o", "--model", "--threads"}


# ---------------------------------------------------------------------------------------------
# A small parser for the subset of Nextflow DSL2 that nf-core modules use.


def _strip_comment(line):
    """Drop a // comment that is not inside a string literal."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif line.startswith("//", i):
            return line[:i]
    return line


def _split_top_level(text, sep=","):
    """Split on sep outside parentheses, brackets and quotes."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _unquote(s):
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _parse_declaration(line):
    """`tuple val(meta), path("*.x"), emit: y` -> ([("val", "meta"), ("path", "*.x")], {"emit": "y"})."""
    elements, attrs = [], {}
    for part in _split_top_level(line):
        kv = re.fullmatch(r"(\w+):\s*(.+)", part)
        if kv:
            attrs[kv.group(1)] = _unquote(kv.group(2))
            continue
        part = re.sub(r"^tuple\s+", "", part)
        m = re.fullmatch(r"(val|path|env|eval|stdin|file)\s*\(\s*(.*?)\s*\)", part) or re.fullmatch(
            r"(val|path|env|eval|stdin|file)\s+(.+)", part
        )
        assert m, f"cannot parse declaration element {part!r} in {line!r}"
        elements.append((m.group(1), _unquote(m.group(2))))
    return elements, attrs


def parse_process(path, name):
    text = path.read_text()
    m = re.search(rf"^process\s+{name}\s*\{{", text, re.M)
    assert m, f"process {name} not found in {path}"
    body = text[m.end() : text.rindex("}")]
    head, sections, current = [], {}, None
    for raw in body.splitlines():
        sec = re.fullmatch(r"\s*(input|output|when|script|stub|exec|shell):\s*", raw)
        if sec:
            current = sec.group(1)
            sections[current] = []
        elif current is None:
            head.append(raw)
        else:
            sections[current].append(raw)
    sections = {k: "\n".join(v) for k, v in sections.items()}

    def declarations(section):
        out = []
        for line in sections.get(section, "").splitlines():
            line = _strip_comment(line).strip()
            if line:
                out.append(_parse_declaration(line))
        return out

    return {
        "head": "\n".join(head),
        "sections": sections,
        "inputs": declarations("input"),
        "outputs": declarations("output"),
    }


def split_groovy_block(block):
    """Split a script/stub section into (Groovy preamble, shell text of its triple-quoted string)."""
    start = block.index('"""')
    end = block.index('"""', start + 3)
    return block[:start], block[start + 3 : end]


def groovy_defs(preamble):
    """`def x = ...` (or `x = ...`) assignments of a script preamble, name -> source text."""
    defs = {}
    for line in preamble.splitlines():
        m = re.match(r"\s*(?:def\s+)?(\w+)\s*=\s*(.+?)\s*$", _strip_comment(line))
        if m:
            defs[m.group(1)] = m.group(2)
    return defs


def janus_invocation(shell):
    """Tokens of the `janus <command> ...` call in a script's shell text (line continuations joined)."""
    joined = re.sub(r"\\\\\s*\n", " ", shell)  # Groovy `\\` + newline = shell line continuation
    for line in joined.splitlines():
        tokens = line.split()
        if tokens[:1] == ["janus"] and len(tokens) > 1 and not tokens[1].startswith("-"):
            return tokens
    raise AssertionError("no `janus <command>` call in the script block")


def _var_name(token):
    m = re.fullmatch(r"\$\{?([\w.]+)\}?", token)
    return m.group(1) if m else None


def options_used(tokens, defs):
    """Options in a janus call, including those inside Groovy variables it interpolates
    (e.g. `def model_arg = model ? "--model ${model}" : ''`); $args (task.ext.args) is left out."""
    opts = {t for t in tokens if t.startswith("-")}
    for t in tokens:
        var = _var_name(t)
        if var and var != "args" and var in defs:
            for literal in re.findall(r"\"([^\"]*)\"|'([^']*)'", defs[var]):
                opts |= {w for w in " ".join(literal).split() if w.startswith("-")}
    return opts


def janus_command(name):
    group = typer.main.get_command(app)
    cmd = group.commands.get(name)
    if cmd is None:
        pytest.fail(
            f"`janus {name}` does not exist in janus_cli/main.py (commands: {', '.join(sorted(group.commands))}); "
            f"the Nextflow module {MODULE_NF.relative_to(REPO)} calls it, so its options cannot be checked"
        )
    return cmd


def _options(cmd):
    # param_type_name rather than isinstance(click.Option): recent typer vendors its own click.
    return [p for p in cmd.params if p.param_type_name == "option"]


def option_names(cmd):
    return {o for p in _options(cmd) for o in (*p.opts, *p.secondary_opts)}


def value_options(cmd):
    return {o for p in _options(cmd) if not p.is_flag for o in p.opts}


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proc():
    return parse_process(MODULE_NF, PROCESS)


@pytest.fixture(scope="module")
def script(proc):
    preamble, shell = split_groovy_block(proc["sections"]["script"])
    return groovy_defs(preamble), shell


@pytest.fixture(scope="module")
def meta_yml():
    return yaml.safe_load(META_YML.read_text())


def test_process_header(proc):
    assert re.search(r'^\s*tag\s+"\$meta\.id"\s*$', proc["head"], re.M)
    assert re.search(r"^\s*label\s+'process_medium'\s*$", proc["head"], re.M)
    conda = re.search(r'^\s*conda\s+"\$\{moduleDir\}/(\S+)"\s*$', proc["head"], re.M)
    assert conda and (MODULE_DIR / conda.group(1)).is_file()
    env = yaml.safe_load((MODULE_DIR / conda.group(1)).read_text())
    assert "dependencies" in env
    assert proc["sections"]["when"].strip() == "task.ext.when == null || task.ext.when"


def test_inputs(proc):
    assert [els for els, _ in proc["inputs"]] == [
        [("val", "meta"), ("path", "vcf")],
        [("val", "meta2"), ("path", "fasta"), ("path", "fai"), ("path", "gzi")],
        [("path", "model")],
    ]


def test_outputs(proc):
    outputs = {attrs["emit"]: (els, attrs) for els, attrs in proc["outputs"]}
    assert outputs["scores"][0] == [("val", "meta"), ("path", "*.parquet")]
    assert outputs["versions"][0] == [("path", "versions.yml")]
    els, attrs = outputs["versions_janus"]
    assert els == [("val", "${task.process}"), ("val", "janus"), ("eval", "janus --version")]
    assert attrs["topic"] == "versions"


def test_script_runs_janus_score_variants(script):
    defs, shell = script
    assert defs["args"] == "task.ext.args ?: ''"
    assert defs["prefix"] == 'task.ext.prefix ?: "${meta.id}"'
    tokens = janus_invocation(shell)
    assert tokens[1] == COMMAND
    pairs = dict(zip(tokens, tokens[1:]))
    assert tokens[2] == "$vcf"  # the VCF is the positional argument
    assert pairs["--fasta"] == "$fasta"
    assert pairs["-o"] == "${prefix}.parquet"
    assert pairs["--threads"] == "$task.cpus"
    assert "$args" in tokens
    assert options_used(tokens, defs) == MODULE_OPTIONS


def test_script_options_exist_in_janus_cli(script):
    defs, shell = script
    cmd = janus_command(COMMAND)
    used = options_used(janus_invocation(shell), defs)
    missing = used - option_names(cmd)
    assert not missing, f"the module passes {sorted(missing)}, which `janus {COMMAND}` does not have"
    flags = used - value_options(cmd)
    assert not flags, f"the module gives values to {sorted(flags)}, which are flags of `janus {COMMAND}`"


def test_config_ext_args_options_exist_in_janus_cli():
    config = (NF_DIR / "nextflow.config").read_text()
    assert re.search(rf"withName:\s*'{PROCESS}'", config)
    ext_args = re.findall(r"ext\.args\s*=\s*'([^']*)'", config)
    assert ext_args, "nextflow.config sets no ext.args example"
    names = option_names(janus_command(COMMAND))
    for args in ext_args:
        opts = {t.split("=")[0] for t in shlex.split(args) if t.startswith("-")}
        assert opts and opts <= names, f"ext.args {args!r}: {sorted(opts - names)} not options of janus {COMMAND}"
        assert not opts & MODULE_OPTIONS, f"ext.args {args!r} repeats an option the module already sets"


def _expand(name, prefix="sample"):
    return name.replace("${prefix}", prefix)


def test_stub_creates_every_output_file(proc, script):
    assert "stub" in proc["sections"], "no stub: block"
    preamble, stub = split_groovy_block(proc["sections"]["stub"])
    assert groovy_defs(preamble)["prefix"] == script[0]["prefix"]
    touched = {_expand(f) for args in re.findall(r"^\s*touch\s+(.+)$", stub, re.M) for f in args.split()}
    written = {_expand(f) for f in re.findall(r">\s*(\S+)", stub)}
    stub_files = touched | written
    script_files = {_expand(f) for f in re.findall(r">\s*(\S+)", script[1])}
    tokens = janus_invocation(script[1])
    script_files.add(_expand(tokens[tokens.index("-o") + 1]))
    for els, attrs in proc["outputs"]:
        for qualifier, pattern in els:
            if qualifier == "path":
                assert any(fnmatch.fnmatch(f, pattern) for f in stub_files), f"stub makes no {pattern} ({attrs['emit']})"
                assert any(fnmatch.fnmatch(f, pattern) for f in script_files), f"script makes no {pattern}"
    assert "janus score-variants" not in stub


def _versions_heredoc(shell):
    m = re.search(r"cat <<-END_VERSIONS > versions\.yml\n(.*?)\n\s*END_VERSIONS", shell, re.S)
    assert m, "no versions.yml heredoc"
    return [line.strip() for line in m.group(1).splitlines()]


def test_versions_yml_uses_janus_version(proc, script):
    expected = ['"${task.process}":', r"janus: \$(janus --version)"]
    assert _versions_heredoc(script[1]) == expected
    assert _versions_heredoc(split_groovy_block(proc["sections"]["stub"])[1]) == expected


@pytest.mark.parametrize("argv", [[sys.executable, "-m", "janus_cli"], [str(Path(sys.executable).with_name("janus"))]])
def test_janus_version_is_bare(argv):
    if not Path(argv[0]).exists():
        pytest.skip("no janus console script next to this python")
    result = subprocess.run([*argv, "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", result.stdout), repr(result.stdout)


def _names(entries):
    """meta.yml channel: a list of one-key maps -> their keys."""
    return [next(iter(e)) for e in entries]


def test_meta_yml_matches_main_nf(proc, meta_yml):
    assert meta_yml["name"] == PROCESS.lower()
    for key in ("description", "keywords", "tools", "input", "output", "authors"):
        assert meta_yml.get(key), f"meta.yml has no {key}"
    assert len(meta_yml["keywords"]) >= 3
    assert "janus" in meta_yml["tools"][0]

    assert [_names(ch) for ch in meta_yml["input"]] == [[n for _, n in els] for els, _ in proc["inputs"]]

    nf_outputs = {attrs["emit"]: [n for _, n in els] for els, attrs in proc["outputs"]}
    assert set(meta_yml["output"]) == set(nf_outputs)
    for emit, entries in meta_yml["output"].items():
        # A tuple output is a list holding one list; a single path is a list of one-key maps.
        flat = _names(entries[0]) if isinstance(entries[0], list) else _names(entries)
        assert flat == nf_outputs[emit], emit
    topic = [els for els, attrs in proc["outputs"] if attrs.get("topic") == "versions"]
    assert [_names(ch) for ch in meta_yml["topics"]["versions"]] == [[n for _, n in els] for els in topic]


def test_example_workflow():
    text = (NF_DIR / "main.nf").read_text()
    inc = re.search(r"include\s*\{\s*(\w+)\s*\}\s*from\s*'([^']+)'", text)
    assert inc and inc.group(1) == PROCESS
    assert (NF_DIR / (inc.group(2) + ".nf")).resolve() == MODULE_NF.resolve()

    params = dict(re.findall(r'^params\.(\w+)\s*=\s*"([^"]*)"', text, re.M))
    for name in ("vcf", "fasta", "fai", "gzi"):
        assert "${projectDir}" in params[name], name
        path = Path(params[name].replace("${projectDir}", str(NF_DIR))).resolve()
        assert path.is_file(), f"params.{name} default {path} does not exist"
        assert path.is_relative_to(REPO / "examples" / "data")

    call = re.search(rf"^\s*{PROCESS}\s*\((.*)\)\s*$", text, re.M)
    assert call and len(_split_top_level(call.group(1))) == len(parse_process(MODULE_NF, PROCESS)["inputs"])


def test_readme_is_honest_about_not_running_nextflow():
    readme = (NF_DIR / "README.md").read_text()
    assert "tests/test_nextflow_module.py" in readme
    assert "not been run" in readme
