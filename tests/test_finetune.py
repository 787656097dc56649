"""janus finetune / predict: metrics against hand-computed values, length bucketing, strand
symmetry, learning on real GUE promoter sequences, the linear probe, predict's output, errors."""

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import dnalm
from dnalm import lora
import janusdna
from conftest import DATA, HG38
from janus_cli.commands import finetune as ft
from janus_cli.commands.predict import predict
from janus_cli.engine.regions import RecordOptions
from janus_cli.errors import DataError, UsageError
from janus_cli.io.fasta import Reference

GUE = DATA / "gue_prom_core_notata_small"
FASTA = DATA / "grch37_chr20_30.0-30.2Mb.fa.gz"
TINY = janusdna.JanusDNAConfig(d_model=16, n_layers=2, fusion_attn_dim=32, n_experts=4, max_seq_len=128, name="tiny")


def janus(*args):
    return subprocess.run([sys.executable, "-m", "janus_cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    return janusdna.save(janusdna.JanusDNA(TINY), tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def promoter_model(tmp_path_factory, tiny_model):
    """The tiny model finetuned for 3 epochs on 600 real GUE core-promoter sequences."""
    out = tmp_path_factory.mktemp("promoters") / "model"
    metrics = ft.finetune(ft.FinetuneOptions(
        train=GUE / "train.csv", val=GUE / "dev.csv", test=GUE / "test.csv", out=out, model=str(tiny_model),
        epochs=3, lr=3e-3, threads=1, quiet=True,
    ))
    return out, metrics


def predict_table(inputs, model, out) -> pd.DataFrame:
    """janus predict on a table of sequences, through the library function the command calls."""
    predict(RecordOptions(inputs=inputs, model=str(model), out=str(out), threads=1, quiet=True), argv=["janus", "predict"])
    return pd.read_parquet(out)


def write_csv(path, sequences, **columns):
    pd.DataFrame({"sequence": sequences, **columns}).to_csv(path, index=False)
    return path


def random_sequences(n, lengths, seed):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=rng.choice(lengths))) for _ in range(n)]


def test_binary_metrics_match_hand_computed_values():
    true = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])  # TP 3, FN 1, TN 4, FP 2
    assert ft.accuracy(true, pred) == pytest.approx(0.7)
    assert ft.matthews_corrcoef(true, pred) == pytest.approx((3 * 4 - 2 * 1) / math.sqrt(5 * 4 * 6 * 5))
    assert ft.macro_f1(true, pred) == pytest.approx((6 / 9 + 8 / 11) / 2)
    # positive-negative pairs won: 0.9 beats all 6, 0.8 beats 5 and ties 1, each 0.4 beats 4 and ties 1
    scores = np.array([0.9, 0.8, 0.4, 0.4, 0.4, 0.3, 0.2, 0.1, 0.8, 0.05])
    assert ft.auroc(true == 1, scores) == pytest.approx((6 + 5.5 + 4.5 + 4.5) / 24)
    assert ft.matthews_corrcoef(true, np.zeros(10, dtype=int)) == 0.0
    assert math.isnan(ft.auroc(np.ones(3, dtype=bool), np.array([0.1, 0.2, 0.3])))
    # average precision, thresholds from the top: 0.9 (1 of 1 positive), 0.8 (2 of 3: one positive,
    # one negative tied), 0.4 (4 of 6: two positives), then no more positives
    assert ft.auprc(true == 1, scores) == pytest.approx((1 / 1 + 2 / 3 + 2 * 4 / 6) / 4)
    assert ft.auprc(np.array([0, 1, 0, 1], dtype=bool), np.array([0.1, 0.9, 0.2, 0.8])) == pytest.approx(1.0)


def test_multiclass_metrics_match_hand_computed_values():
    true = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    # Gorodkin: (correct * n - true_counts . pred_counts) / sqrt((n^2 - |pred_counts|^2)(n^2 - |true_counts|^2))
    assert ft.matthews_corrcoef(true, pred) == pytest.approx((4 * 6 - (2 * 2 + 2 * 3 + 2 * 1)) / math.sqrt(22 * 24))
    assert ft.macro_f1(true, pred) == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    probs = np.eye(3)[pred] * 0.5 + 0.5 / 3
    metrics = ft.classification_metrics(true, probs)
    assert "auroc" not in metrics and metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["loss"] == pytest.approx(-(4 * math.log(0.5 + 0.5 / 3) + 2 * math.log(0.5 / 3)) / 6)


def test_length_batches_never_mix_lengths_and_cover_every_sequence():
    lengths = np.random.default_rng(0).choice([50, 60, 70], size=101)

    def shuffled(seed):
        return [b.tolist() for b in ft.length_batches(lengths, 8, np.random.default_rng(seed))]

    batches = shuffled(1)
    assert all(len(set(lengths[b])) == 1 and 1 <= len(b) <= 8 for b in batches)
    assert sorted(sum(batches, [])) == list(range(101))
    assert batches == shuffled(1) and batches != shuffled(2)
    in_order = np.concatenate(ft.length_batches(lengths, 8))
    assert (np.diff(lengths[in_order]) >= 0).all() and sorted(in_order) == list(range(101))


def test_training_reverse_complements_a_random_half():
    ids = torch.randint(7, 11, (1000, 20))
    augmented = ft.random_strands(ids, np.random.default_rng(0))
    is_reverse = (augmented == janusdna.reverse_complement(ids)).all(1)
    assert ((augmented == ids).all(1) | is_reverse).all()
    assert 450 < is_reverse.sum() < 550


def test_aux_loss_is_the_backbones(tiny_model):
    backbone = janusdna.load(tiny_model)
    ids = torch.randint(7, 11, (3, 30))
    outputs, aux = dnalm.SequenceClassifier(backbone, 2).forward_with_aux(ids)
    assert outputs.shape == (3, 2)
    assert aux.item() > 0 and aux.item() == pytest.approx(backbone.forward_with_aux(ids)[1].item())


def test_finetuning_beats_chance_on_real_promoters(promoter_model):
    out, metrics = promoter_model
    assert metrics["epochs"][-1]["train_loss"] < math.log(2) - 0.03
    assert metrics["test"]["accuracy"] > 0.6 and metrics["test"]["mcc"] > 0.2 and metrics["test"]["auroc"] > 0.65
    assert json.loads((out / "metrics.json").read_text())["test"]["mcc"] == pytest.approx(metrics["test"]["mcc"])
    meta = json.loads((out / "head.json").read_text())
    assert meta["task"] == "classification" and meta["labels"] == ["0", "1"] and meta["pooling"] == "mean"
    assert meta["backbone"]["weights_sha256"] == janusdna.weights_sha256(meta["backbone"]["path"])


def test_saved_model_is_the_best_epoch_and_reproduces_the_metrics(promoter_model, tmp_path):
    out, metrics = promoter_model
    assert metrics["best_epoch"] < len(metrics["epochs"])  # so that keeping the best epoch is exercised
    for split, expected in (("dev", metrics["epochs"][metrics["best_epoch"] - 1]["val"]), ("test", metrics["test"])):
        table = predict_table(GUE / f"{split}.csv", out, tmp_path / "p.parquet")
        true = pd.read_csv(GUE / f"{split}.csv")["label"].to_numpy()
        recomputed = ft.classification_metrics(true, table[["prob_0", "prob_1"]].to_numpy())
        assert recomputed["mcc"] == pytest.approx(expected["mcc"])
        assert recomputed["auroc"] == pytest.approx(expected["auroc"], abs=1e-6)


def test_predictions_are_strand_symmetric(promoter_model, tmp_path):
    out, _ = promoter_model
    sequences = random_sequences(12, [33, 70, 101], seed=0)
    reverse = [janusdna.decode(janusdna.reverse_complement(janusdna.encode(s))) for s in sequences]
    forward, backward = (predict_table(write_csv(tmp_path / name, seqs), out, tmp_path / "p.parquet")
                         for name, seqs in (("forward.csv", sequences), ("reverse.csv", reverse)))
    np.testing.assert_allclose(forward["prob_1"], backward["prob_1"], rtol=0, atol=1e-6)
    # a single strand alone is not symmetric, so the averaging is what makes the check pass
    model = dnalm.load_finetuned(out).classifier
    with torch.inference_mode():
        one_strand = [model(janusdna.encode(s)[None]) for s in (sequences[0], reverse[0])]
    assert (one_strand[0] - one_strand[1]).abs().max() > 1e-4


def test_predict_on_bed_with_strands_writes_parquet_and_tsv(promoter_model, tmp_path):
    out, _ = promoter_model
    bed = tmp_path / "regions.bed"
    bed.write_text("20\t1000\t1070\tr1\t0\t+\n20\t1000\t1070\tr1_minus\t0\t-\n20\t5000\t5050\tr2\t0\t.\n")
    plus, minus = ft.read_examples(bed, label_col="name", fasta=FASTA).ids[:2]
    with Reference(FASTA) as reference:
        assert torch.equal(plus, janusdna.encode(reference.fetch("20", 1000, 1070)))
    assert torch.equal(minus, janusdna.reverse_complement(plus))
    with open(bed, "a") as handle:
        handle.write("chr7\t10\t80\tr3\t0\t+\n")  # predict skips it (finetune's BED reader refuses it)

    result = janus("predict", bed, "--fasta", FASTA, "--model", out, "-o", tmp_path / "p.parquet", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert list(table.columns) == ["chrom", "start", "end", "name", "strand", "prob_0", "prob_1", "pred_label",
                                   "skip_reason"]
    assert table["name"].tolist() == ["r1", "r1_minus", "r2", "r3"]
    assert table["skip_reason"].tolist()[3] == "chrom_missing" and table["prob_1"].isna().tolist()[3]
    scored = table.iloc[:3]
    np.testing.assert_allclose(scored["prob_0"] + scored["prob_1"], 1, atol=1e-6)
    assert scored["pred_label"].tolist() == np.where(scored["prob_1"] > scored["prob_0"], "1", "0").tolist()
    assert table["prob_1"][0] == pytest.approx(table["prob_1"][1], abs=1e-6)  # same interval, other strand
    with Reference(FASTA) as reference:
        sequences = [reference.fetch("20", 1000, 1070), reference.fetch("20", 5000, 5050)]
    from_table = predict_table(write_csv(tmp_path / "seqs.csv", sequences), out, tmp_path / "t.parquet")
    np.testing.assert_allclose(scored["prob_1"].to_numpy()[[0, 2]], from_table["prob_1"], atol=1e-5)

    tsv = janus("predict", bed, "--fasta", FASTA, "--model", out, "-o", "-", "--threads", "1")
    assert tsv.returncode == 0, tsv.stderr
    from_stdout = pd.read_csv(io.StringIO(tsv.stdout), sep="\t", dtype=str, keep_default_na=False)
    assert from_stdout["skip_reason"].tolist() == [".", ".", ".", "chrom_missing"]
    np.testing.assert_allclose(from_stdout["prob_1"][:3].astype(float), scored["prob_1"], atol=1e-6)


def test_linear_probe_leaves_the_backbone_unchanged(tiny_model, tmp_path):
    ft.finetune(ft.FinetuneOptions(train=GUE / "train.csv", out=tmp_path / "probe", model=str(tiny_model),
                                   freeze_backbone=True, max_steps=5, threads=1, quiet=True))
    before, after = janusdna.load(tiny_model).state_dict(), janusdna.load(tmp_path / "probe").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    head = dnalm.load_finetuned(tmp_path / "probe").classifier.head
    assert head.weight.abs().sum() > 0  # the head did train (it starts at zero)


def test_regression_learns_gc_content(tiny_model, tmp_path):
    """A synthetic task with sequences of mixed lengths: predict the GC fraction."""
    sequences = random_sequences(400, [40, 48, 56], seed=1)
    rng = np.random.default_rng(2)  # make half of them GC-rich, so that the targets spread out
    sequences = [s if rng.random() < 0.5 else s.replace("A", "G").replace("T", "C", len(s) // 8) for s in sequences]
    gc = [(s.count("G") + s.count("C")) / len(s) for s in sequences]
    write_csv(tmp_path / "train.csv", sequences[:300], gc=gc[:300])
    write_csv(tmp_path / "test.csv", sequences[300:], gc=gc[300:], id=[f"s{i}" for i in range(100)])
    metrics = ft.finetune(ft.FinetuneOptions(train=tmp_path / "train.csv", test=tmp_path / "test.csv",
                                             label_col="gc", regression=True, out=tmp_path / "gc",
                                             model=str(tiny_model), epochs=3, lr=3e-3, threads=1, quiet=True))
    assert metrics["test"]["pearson_r"] > 0.8
    table = predict_table(tmp_path / "test.csv", tmp_path / "gc", tmp_path / "p.parquet")
    assert list(table.columns) == ["name", "prediction", "skip_reason"]
    assert table["name"].tolist() == [f"s{i}" for i in range(100)]
    assert np.mean((table["prediction"] - gc[300:]) ** 2) == pytest.approx(metrics["test"]["mse"], rel=1e-4)


def test_input_errors_name_the_file_and_row(tmp_path, tiny_model):
    bad = write_csv(tmp_path / "bad.csv", ["ACGT", "ACGT", "ACXT"], label=[0, 1, 0])
    with pytest.raises(DataError, match=r"bad\.csv: row 3: invalid DNA character 'X'"):
        ft.read_examples(bad)
    nolabel = write_csv(tmp_path / "nolabel.csv", ["ACGT"], target=[1])
    with pytest.raises(DataError, match=r"nolabel\.csv: no label column .*--label-col"):
        ft.read_examples(nolabel)
    with pytest.raises(DataError, match=r"nolabel\.csv: no column 'dna'"):
        ft.read_examples(nolabel, seq_col="dna")
    short_bed = tmp_path / "short.bed"
    short_bed.write_text("20\t0\t10\tx\n")
    with pytest.raises(DataError, match=r"short\.bed:1: no column 7"):
        ft.read_examples(short_bed, label_col="7", fasta=FASTA)
    outside = tmp_path / "outside.bed"
    outside.write_text("20\t0\t10\tx\n20\t199990\t200010\ty\n")
    with pytest.raises(DataError, match=r"outside\.bed: record 2 \(20:199990-200010\): .*past the end of 20"):
        ft.read_examples(outside, label_col="name", fasta=FASTA)
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 but not parquet")
    with pytest.raises(DataError, match=r"junk\.parquet: cannot read as a CSV/TSV/Parquet table"):
        ft.read_examples(tmp_path / "junk.parquet")
    with pytest.raises(DataError, match=r"absent\.tsv: file not found"):
        ft.read_examples(tmp_path / "absent.tsv")
    unseen = write_csv(tmp_path / "unseen.csv", ["ACGT"] * 2, label=[0, 2])
    with pytest.raises(DataError, match=r"unseen\.csv: row 2: label '2' is not one of the training labels"):
        ft.finetune(ft.FinetuneOptions(train=GUE / "dev.csv", val=unseen, out=tmp_path / "o", model=str(tiny_model),
                                       threads=1))


def test_cli_exit_codes(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", ["ACGT", "AC-T"], label=[0, 1])
    result = janus("finetune", bad, "--model", "janusdna-d32", "-o", tmp_path / "out")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("janus: error: ") and f"{bad}: row 2" in result.stderr
    assert not (tmp_path / "out").exists()

    bed = tmp_path / "regions.bed"
    bed.write_text("20\t0\t10\tx\t0\t+\n")
    result = janus("finetune", bed, "--label-col", "name", "--model", "janusdna-d32", "-o", tmp_path / "out")
    assert result.returncode == 2 and "--fasta" in result.stderr

    result = janus("predict", bad, "--model", GUE, "-o", "-")
    assert result.returncode == 1 and "not a finetuned model directory" in result.stderr and result.stdout == ""


def test_a_hybridna_backbone_finetunes_with_its_poolings_and_predicts(tmp_path, tiny_hybridna_dir):
    out = tmp_path / "last"
    ft.finetune(ft.FinetuneOptions(train=GUE / "dev.csv", out=out, model=str(tiny_hybridna_dir), pooling="last",
                                   max_steps=3, threads=1, quiet=True))
    assert json.loads((out / "head.json").read_text())["pooling"] == "last"
    table = predict_table(GUE / "test.csv", out, tmp_path / "p.parquet")
    finetuned = dnalm.load_finetuned(out)
    sequence = pd.read_csv(GUE / "test.csv")["sequence"][0]
    with torch.inference_mode():
        expected = torch.softmax(finetuned.classifier.strand_averaged(janusdna.encode(sequence)[None]), -1)[0, 1]
    assert table["prob_1"][0] == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(UsageError, match="--pooling: pooling 'center-ish': a hybridna model pools by echo, mean"):
        ft.finetune(ft.FinetuneOptions(train=GUE / "dev.csv", out=tmp_path / "bad", model=str(tiny_hybridna_dir),
                                       pooling="center-ish", max_steps=1, threads=1, quiet=True))


def test_lora_merged_weights_compute_what_the_adapted_model_computes(model_dir_of_every_arch):
    model = dnalm.load(model_dir_of_every_arch).eval()
    targets = model.lora_targets()
    assert targets and all(isinstance(model.get_submodule(name), torch.nn.Linear) for name in targets)
    lora.add_lora(model, rank=4, alpha=8.0, targets=targets)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {f"{name}.lora_{ab}" for name in targets for ab in "ab"}
    torch.manual_seed(0)
    with torch.no_grad():
        for p in lora.lora_parameters(model):
            p.normal_(std=0.2)  # B starts at zero; give it a real update to fold in
    ids = janusdna.encode("ACGTTGCAAGGCTTACGATCGATCGGATTACAGATTACCAGTGGTACCATG")[None]
    with torch.inference_mode():
        adapted = model.hidden_states(ids)
        lora.merge_lora(model)
        merged = model.hidden_states(ids)
        plain = dnalm.load(model_dir_of_every_arch).eval().hidden_states(ids)
    assert not any(isinstance(m, lora.LoRALinear) for m in model.modules())
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)
    assert (adapted - plain).abs().max() > 1e-3  # the adapters did change the model


def test_lora_finetuning_changes_only_the_target_layers(tiny_model, tmp_path):
    out = tmp_path / "lora"
    metrics = ft.finetune(ft.FinetuneOptions(train=GUE / "train.csv", out=out, model=str(tiny_model), lora_rank=2,
                                             max_steps=5, lr=1e-2, threads=1, quiet=True))
    assert metrics["steps"] == 5
    before, after = janusdna.load(tiny_model).state_dict(), janusdna.load(out).state_dict()
    assert before.keys() == after.keys()  # merged back into a plain model
    targets = {f"{name}.weight" for name in janusdna.load(tiny_model).lora_targets()}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= targets
    meta = json.loads((out / "head.json").read_text())["finetune"]
    assert meta["lora_rank"] == 2 and meta["lora_alpha"] == 4.0
    with pytest.raises(UsageError, match="--freeze-backbone"):
        ft.finetune(ft.FinetuneOptions(train=GUE / "train.csv", out=tmp_path / "both", model=str(tiny_model),
                                       lora_rank=2, freeze_backbone=True, max_steps=1, threads=1, quiet=True))


# --- labelled variants ------------------------------------------------------------------------

HG38_REGION = HG38


@pytest.fixture(scope="module")
def motif_variants(tmp_path_factory):
    """The synthetic task of benchmarks/eqtl_synthetic.py at small size: pairs of SNVs at the same
    site, the positive one creating a TATA box, the negative one not."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from eqtl_synthetic import make_variants

    table = make_variants(HG38_REGION, "chr21:22,000,001-23,000,000", pairs=160, window=16, seed=0)
    path = tmp_path_factory.mktemp("variants") / "variants.tsv"
    table.to_csv(path, sep="\t", index=False)
    return path, table


@pytest.mark.slow
def test_a_variant_pair_head_learns_what_the_alt_allele_creates(motif_variants, tmp_path):
    path, table = motif_variants
    metrics = ft.finetune(ft.FinetuneOptions(train=path, out=tmp_path / "pair", model="janusdna-d48-chr20",
                                             fasta=HG38_REGION, window=16, epochs=2, batch_size=16, lr=1e-3, threads=1,
                                             quiet=True))
    assert metrics["test_examples"] == (table["split"] == "test").sum()
    assert metrics["test"]["auroc"] >= 0.8 and metrics["test"]["auprc"] >= 0.8


def test_a_variant_pair_head_is_saved_and_applied_by_score_variants(motif_variants, tmp_path):
    path, table = motif_variants
    out = tmp_path / "pair"
    metrics = ft.finetune(ft.FinetuneOptions(train=path, out=out, model="janusdna-d48-chr20", fasta=HG38_REGION,
                                             window=16, max_steps=2, batch_size=16, lr=1e-3, threads=1, quiet=True))
    assert metrics["test_examples"] == (table["split"] == "test").sum() and "auprc" in metrics["test"]
    meta = json.loads((out / "head.json").read_text())
    assert (meta["variant_features"], meta["variant_window"], meta["labels"]) == ("pair", 16, ["0", "1"])

    # the REF windows of the two classes are the same, so a head on them alone is at chance
    with Reference(HG38_REGION) as reference:
        ref_windows = [reference.fetch("chr21", p - 1 - 8, p - 1 + 8) for p in table["pos"]]
    ref_only = tmp_path / "ref_only.csv"
    pd.DataFrame({"sequence": ref_windows, "label": table["label"], "split": table["split"]})[
        table["split"] != "test"].to_csv(ref_only, index=False)
    ref_test = tmp_path / "ref_test.csv"
    pd.DataFrame({"sequence": ref_windows, "label": table["label"]})[table["split"] == "test"].to_csv(ref_test, index=False)
    ref_metrics = ft.finetune(ft.FinetuneOptions(train=ref_only, test=ref_test, out=tmp_path / "ref", model="janusdna-d48-chr20",
                                                 max_steps=3, threads=1, quiet=True))
    assert ref_metrics["test"]["auroc"] == 0.5

    # score-variants applies the pair head to a variant's REF and ALT windows together
    vcf = tmp_path / "test.vcf"
    test_rows = table[table["split"] == "test"].head(4)
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr21>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
        f"chr21\t{r.pos}\t.\t{r.ref}\t{r.alt}\t.\t.\t.\n" for r in test_rows.itertuples()))
    scored = tmp_path / "scored.parquet"
    result = janus("score-variants", vcf, "--fasta", HG38_REGION, "--model", out, "--window", 16, "--scores", "llr",
                   "--threads", 1, "-o", scored)
    assert result.returncode == 0, result.stderr
    columns = pq.read_schema(scored).names
    assert "prob_1" in columns and "prob_1_ref" not in columns
    finetuned = dnalm.load_finetuned(out)
    first = test_rows.iloc[0]
    with Reference(HG38_REGION) as reference:
        ref_text = reference.fetch("chr21", first.pos - 1 - 8, first.pos - 1 + 8)
    alt_text = ref_text[:8] + first.alt + ref_text[9:]
    with torch.inference_mode():
        pair = torch.stack([janusdna.encode(ref_text), janusdna.encode(alt_text)])[None]
        expected = torch.softmax(finetuned.classifier.strand_averaged(pair), -1)[0, 1]
    assert pq.read_table(scored).column("prob_1")[0].as_py() == pytest.approx(float(expected), abs=1e-5)


def test_holdout_chroms_and_variant_input_errors(motif_variants, tmp_path):
    path, table = motif_variants
    with pytest.raises(UsageError, match="holds out every training variant"):
        ft.finetune(ft.FinetuneOptions(train=path, out=tmp_path / "a", model="janusdna-d48-chr20", fasta=HG38_REGION,
                                       window=16, holdout_chroms=["chr21"], max_steps=1, threads=1, quiet=True))
    vcf = tmp_path / "labelled.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr21>\n"
                   '##INFO=<ID=EQTL,Number=1,Type=Integer,Description="label">\n'
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
                       f"chr21\t{r.pos}\t.\t{r.ref}\t{r.alt}\t.\t.\tEQTL={r.label}\n" for r in table.head(40).itertuples()))
    with pytest.raises(DataError, match="--label-field"):
        ft.finetune(ft.FinetuneOptions(train=vcf, out=tmp_path / "b", model="janusdna-d48-chr20", fasta=HG38_REGION,
                                       window=16, max_steps=1, threads=1, quiet=True))
    metrics = ft.finetune(ft.FinetuneOptions(train=vcf, out=tmp_path / "c", model="janusdna-d48-chr20", fasta=HG38_REGION,
                                             label_field="EQTL", variant_features="alt", window=16, max_steps=1,
                                             threads=1, quiet=True))
    assert metrics["train_examples"] == 40
    assert json.loads((tmp_path / "c" / "head.json").read_text())["variant_features"] == "alt"
