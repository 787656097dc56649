"""Plain-gzip FASTA (hg38.fa.gz as UCSC/Ensembl/NCBI ship it) is opened through an indexed bgzip
copy made once in the cache; and `janus pretrain` takes one end to end."""

import gzip
import json
import os
import random
import subprocess
import sys
import textwrap
import time

import pysam
import pytest

from conftest import DATA
from janus_cli.errors import DataError
from janus_cli.io import fasta
from janus_cli.io.fasta import Reference

NOTICE = "is gzip, not bgzip: making an indexed bgzip copy"

# two contigs, soft-masked (lowercase) stretches, uneven last lines
CONTIGS = {
    "chrA": "ACGTacgtNNNNACGTTTGGCCaaattt" * 5 + "GATTACA",
    "chrB": "nnnnGGGGccccTTTTAAAA" * 7 + "AC",
}


def fasta_text(contigs=CONTIGS, width=60):
    return "".join(f">{name} some description\n" + "".join(seq[i:i + width] + "\n" for i in range(0, len(seq), width))
                   for name, seq in contigs.items())


def write_plain_gzip(path, contigs=CONTIGS):
    with gzip.open(path, "wt") as fh:
        fh.write(fasta_text(contigs))
    assert fasta.is_plain_gzip(path)
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test caches under tmp_path, never in the real ~/.cache."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("JANUS_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def conversions(monkeypatch):
    """Count calls of the gzip -> bgzip converter."""
    calls = []
    real = fasta.bgzip_from_gzip

    def counting(source, target):
        calls.append(source)
        real(source, target)

    monkeypatch.setattr(fasta, "bgzip_from_gzip", counting)
    return calls


def entries(cache):
    """Finished copies in the cache (what a later run would use), and leftovers of unfinished ones."""
    root = cache / "fasta"
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    return [n for n in names if not n.startswith(".")], [n for n in names if n.startswith(".")]


def test_plain_gzip_fetches_the_same_upper_cased_text_as_plain_fasta(tmp_path, cache):
    plain = tmp_path / "genome.fa"
    plain.write_text(fasta_text())
    gz = write_plain_gzip(tmp_path / "genome.fa.gz")
    with Reference(plain) as want, Reference(gz) as got:
        assert got.lengths == want.lengths == {name: len(seq) for name, seq in CONTIGS.items()}
        for name, seq in CONTIGS.items():
            assert got.fetch(name, 0, len(seq)) == want.fetch(name, 0, len(seq)) == seq.upper()
            for start, end in [(0, 1), (3, 70), (61, 62), (len(seq) - 5, len(seq))]:
                assert got.fetch(name, start, end) == seq[start:end].upper()
            assert got.fetch_padded(name, -3, 4) == "NNN" + seq[:4].upper()
        assert got.path == gz  # what metadata records: the path the user gave
        assert got.opened_path.parent.parent == cache / "fasta"
        assert not fasta.is_plain_gzip(got.opened_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "genome.fa", "genome.fa.fai", "genome.fa.gz"]


def test_copy_is_made_once_and_said_once(tmp_path, cache, conversions, capsys):
    gz = write_plain_gzip(tmp_path / "hg38.fa.gz")
    with Reference(gz) as first:
        opened = first.opened_path
        assert first.fetch("chrB", 0, 8) == "NNNNGGGG"
    err = capsys.readouterr().err
    assert err.count(NOTICE) == 1 and str(gz) in err and str(opened) in err
    stamp = (opened.stat().st_ino, opened.stat().st_mtime_ns)
    for _ in range(2):
        with Reference(gz) as again:
            assert again.opened_path == opened
            assert again.fetch("chrB", 0, 8) == "NNNNGGGG"
    assert len(conversions) == 1
    assert (opened.stat().st_ino, opened.stat().st_mtime_ns) == stamp
    assert capsys.readouterr().err == ""  # reuse is quiet
    done, leftovers = entries(cache)
    assert len(done) == 1 and leftovers == []
    assert sorted(p.name for p in opened.parent.iterdir()) == sorted(
        ["hg38.fa.gz", "hg38.fa.gz.fai", "hg38.fa.gz.gzi", "source.json"])


def test_changed_or_touched_source_is_copied_again(tmp_path, cache, conversions, capsys):
    gz = write_plain_gzip(tmp_path / "genome.fa.gz")
    with Reference(gz) as ref:
        old = ref.opened_path
    changed = {"chrA": "TTTTtttt", "chrC": "GGGGCCCCAAAA"}
    write_plain_gzip(gz, changed)
    os.utime(gz, ns=(time.time_ns(), old.stat().st_mtime_ns + 10**9))  # a later mtime even on coarse clocks
    with Reference(gz) as ref:
        assert ref.lengths == {"chrA": 8, "chrC": 12}
        assert ref.fetch("chrA", 0, 8) == "TTTTTTTT"
        new = ref.opened_path
    assert new != old and len(conversions) == 2
    assert entries(cache) == ([new.parent.name], [])  # the stale copy is dropped
    os.utime(gz, ns=(time.time_ns(), gz.stat().st_mtime_ns + 10**9))  # touch only: same bytes, new mtime
    with Reference(gz) as ref:
        assert ref.fetch("chrC", 0, 12) == "GGGGCCCCAAAA"
    assert len(conversions) == 3
    assert capsys.readouterr().err.count(NOTICE) == 3


def test_interrupted_conversion_leaves_nothing_a_later_run_would_use(tmp_path, cache, monkeypatch, capsys):
    gz = write_plain_gzip(tmp_path / "genome.fa.gz")
    real = fasta.bgzip_from_gzip

    def interrupted(source, target):
        with gzip.open(source, "rb") as src, pysam.BGZFile(str(target), "wb") as out:
            out.write(src.read(50))
        raise KeyboardInterrupt  # Ctrl-C midway

    monkeypatch.setattr(fasta, "bgzip_from_gzip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Reference(gz)
    assert entries(cache) == ([], [])
    monkeypatch.setattr(fasta, "bgzip_from_gzip", real)
    with Reference(gz) as ref:
        assert ref.fetch("chrA", 0, 12) == "ACGTACGTNNNN"
    assert len(entries(cache)[0]) == 1


def test_killed_conversion_is_not_mistaken_for_a_finished_copy(tmp_path, cache, conversions):
    """kill -9 midway (no cleanup runs): the half-written copy is never read; the next run converts."""
    gz = write_plain_gzip(tmp_path / "genome.fa.gz")
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import gzip, os, signal, pysam
        from janus_cli.io import fasta
        def killed(source, target):
            with gzip.open(source, "rb") as src, pysam.BGZFile(str(target), "wb") as out:
                out.write(src.read(50))
            os.kill(os.getpid(), signal.SIGKILL)
        fasta.bgzip_from_gzip = killed
        fasta.Reference({str(gz)!r})
        """)], env={**os.environ, "JANUS_CACHE_DIR": str(cache)}, capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    done, leftovers = entries(cache)
    assert done == [] and len(leftovers) == 1
    with Reference(gz) as ref:
        assert ref.fetch("chrB", 0, 12) == "NNNNGGGGCCCC"
    assert len(conversions) == 1
    assert len(entries(cache)[0]) == 1
    # the dead run's leftover is removed by a later conversion once it has been idle long enough
    leftover = cache / "fasta" / leftovers[0]
    for path in [leftover, *leftover.iterdir()]:
        os.utime(path, (time.time() - 2 * fasta.LEFTOVER_AGE,) * 2)
    os.utime(gz, ns=(time.time_ns(), gz.stat().st_mtime_ns + 10**9))
    Reference(gz).close()
    assert entries(cache)[1] == []


def test_corrupt_gzip_is_a_data_error_and_leaves_nothing(tmp_path, cache):
    gz = tmp_path / "cut.fa.gz"
    whole = gzip.compress(fasta_text().encode())
    gz.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.fa\.gz: cannot decompress.*truncated"):
        Reference(gz)
    assert entries(cache) == ([], [])


def test_another_process_publishing_first_is_fine(tmp_path, cache, monkeypatch):
    """Two conversions of one file at once: the one that renames second uses the first's copy."""
    gz = write_plain_gzip(tmp_path / "genome.fa.gz")
    real = fasta.bgzip_from_gzip
    nested = []

    def racing(source, target):
        if not nested:  # while we convert, "another process" converts and publishes
            nested.append(True)
            nested.append(fasta.bgzip_copy(source))
        real(source, target)

    monkeypatch.setattr(fasta, "bgzip_from_gzip", racing)
    with Reference(gz) as ref:
        assert ref.opened_path == nested[1]
        assert ref.fetch("chrA", 0, 8) == "ACGTACGT"
    assert entries(cache) == ([nested[1].parent.name], [])


def test_concurrent_processes_both_get_a_good_copy(tmp_path, cache):
    rng = random.Random(0)
    contigs = {f"c{i}": "".join(rng.choice("ACGTacgtN") for _ in range(300_000)) for i in range(2)}
    gz = write_plain_gzip(tmp_path / "big.fa.gz", contigs)
    script = textwrap.dedent(f"""
        import sys
        from janus_cli.io.fasta import Reference
        with Reference({str(gz)!r}) as ref:
            print(ref.fetch("c1", 123_456, 123_556))
        """)
    env = {**os.environ, "JANUS_CACHE_DIR": str(cache)}
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == [contigs["c1"][123_456:123_556].upper()] * 2
    done, leftovers = entries(cache)
    assert len(done) == 1 and leftovers == []


def test_janus_cache_dir_and_xdg_cache_home_are_honoured(tmp_path, monkeypatch):
    gz = write_plain_gzip(tmp_path / "genome.fa.gz")
    monkeypatch.setenv("JANUS_CACHE_DIR", str(tmp_path / "mine"))
    with Reference(gz) as ref:
        assert ref.opened_path.is_relative_to(tmp_path / "mine" / "fasta")
    monkeypatch.delenv("JANUS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with Reference(gz) as ref:
        assert ref.opened_path.is_relative_to(tmp_path / "xdg" / "janus" / "fasta")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fasta.cache_dir() == tmp_path / "home" / ".cache" / "janus"


def test_unwritable_cache_dir_says_how_to_fix_it(tmp_path, monkeypatch, read_only_dir):
    gz = write_plain_gzip(tmp_path / "hg38.fa.gz")
    monkeypatch.setenv("JANUS_CACHE_DIR", str(read_only_dir / "cache"))
    with pytest.raises(DataError) as caught:
        Reference(gz)
    message = str(caught.value)
    assert str(gz) in message and str(read_only_dir / "cache") in message
    assert "JANUS_CACHE_DIR" in message and f"zcat {gz} | bgzip > " in message


def test_bgzipped_fasta_is_opened_in_place(tmp_path, cache, conversions, capsys):
    bgz = tmp_path / "genome.fa.gz"
    with pysam.BGZFile(str(bgz), "wb") as out:
        out.write(fasta_text().encode())
    with Reference(bgz) as ref:
        assert ref.opened_path == ref.path == bgz
        assert ref.fetch("chrA", 0, 8) == "ACGTACGT"
    assert conversions == [] and not cache.exists()
    assert capsys.readouterr().err == ""
    assert (tmp_path / "genome.fa.gz.fai").is_file() and (tmp_path / "genome.fa.gz.gzi").is_file()


def test_janus_pretrain_takes_a_plain_gzip_genome_end_to_end(tmp_path, cache):
    """The command users type (`janus pretrain --fasta hg38.fa.gz`) on a real stretch of GRCh37,
    recompressed with plain gzip: it trains, and the cached copy is made once and said once."""
    with Reference(DATA / "grch37_chr20_30.0-30.2Mb.fa.gz") as reference:
        genome = write_plain_gzip(tmp_path / "genome.fa.gz", {"20": reference.fetch("20", 0, 20_000)})
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"d_model": 16, "n_layers": 2, "fusion_attn_dim": 32, "n_experts": 4,
                                  "max_seq_len": 64, "name": "tiny"}))
    env = {**os.environ, "JANUS_CACHE_DIR": str(cache)}
    runs = [subprocess.run([sys.executable, "-m", "janus_cli", "pretrain", "--fasta", str(genome), "--config", str(config),
                            "-o", str(tmp_path / run), "--steps", "2", "--batch-size", "2", "--threads", "1", "-q"],
                           capture_output=True, text=True, env=env) for run in ("one", "two")]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert (tmp_path / "two" / "model" / "model.safetensors").is_file()
    assert NOTICE in runs[0].stderr and NOTICE not in runs[1].stderr
