"""The built-in probes (cloze, perplexity, kl) against plain unbatched references, and the probe registry."""

import math

import pytest
import torch

from continual.errors import ContinualError
from continual.probes import PROBES, ProbeContext, check_columns, make_probes
from continual.probes.base import Column, Probe
from continual.probes.cloze import load_cloze_items

TEXT = " ".join(f"Sentence number {i} tells of the quick brown fox and the lazy dog in the capital of France."
                for i in range(60))
ITEMS = [{"prompt": "The capital of France is", "answer": "Paris", "distractors": ["Berlin", "Rome", "Oslo"]},
         {"prompt": "The quick brown fox jumps over the lazy", "answer": "dog", "distractors": ["cat", "sun", "hat"]},
         {"prompt": "Two plus two is", "answer": "four", "distractors": ["five", "six", "nine"]}]


@pytest.fixture
def files(tmp_path):
    import yaml
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "items.yaml").write_text(yaml.safe_dump({"items": ITEMS}))
    return tmp_path


def probes(tiny, files, spec="cloze,perplexity,kl"):
    made = make_probes(spec, {"cloze.items": str(files / "items.yaml"), "perplexity.tokens": "300",
                              "perplexity.window": "64", "perplexity.batch_size": "2",
                              "perplexity.text_file": str(files / "text.txt"), "kl.tokens": "100", "kl.window": "64",
                              "kl.text_file": str(files / "text.txt")} if spec == "cloze,perplexity,kl" else {})
    for p in made:
        p.setup(ProbeContext(tokenizer=tiny.tokenizer, general_text="offline", batch_size=8, seed=0))
    return {p.name: p for p in made}


def perturbed(scale=0.05):
    from continual.models import load_model
    other = load_model("tiny", seed=0).model
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return other


def reference(model, windows, kl_model=None, kl_tokens=0):
    """Perplexity and KL computed window by window, unbatched, in float64."""
    nll, n, kl, kl_n = 0.0, 0, 0.0, 0
    with torch.no_grad():
        for w in windows:
            lp = model(torch.tensor([w])).logits[0, :-1].double().log_softmax(-1)
            nll -= float(lp[torch.arange(len(w) - 1), torch.tensor(w[1:])].sum())
            n += len(w) - 1
            if kl_model is not None and kl_n < kl_tokens:
                ref = kl_model(torch.tensor([w])).logits[0, :-1].double().log_softmax(-1)
                k = min(len(w) - 1, kl_tokens - kl_n)
                kl += float((ref[:k].exp() * (ref[:k] - lp[:k])).sum())
                kl_n += k
    return math.exp(nll / n), (kl / kl_n if kl_n else None)


def test_windows_predict_exactly_the_asked_number_of_tokens(tiny, files):
    made = probes(tiny, files)
    assert sum(len(w) - 1 for w in made["perplexity"].windows) == 300
    assert all(len(w) <= 64 for w in made["perplexity"].windows)
    kl = made["kl"].windows  # full windows: the KL positions sit in the same contexts as the perplexity's
    assert all(len(w) == 64 for w in kl) and sum(len(w) - 1 for w in kl) >= 100
    assert kl == made["perplexity"].windows[:len(kl)]
    assert made["cloze"].chance == pytest.approx(0.25)


def test_base_rows_and_measurements_match_a_plain_reference(tiny, files):
    made = probes(tiny, files)
    base = {k: v for p in made.values() for k, v in p.calibrate(tiny.model).items()}
    ppl, _ = reference(tiny.model, made["perplexity"].windows)
    assert base["perplexity"] == pytest.approx(ppl, rel=1e-5)
    assert base["kl"] == 0.0 and base["ppl_ratio"] == 1.0
    assert abs(made["kl"].measure(tiny.model)["kl"]) < 1e-6

    changed = perturbed()
    row = {k: v for p in made.values() for k, v in p.measure(changed).items()}
    ppl2, _ = reference(changed, made["perplexity"].windows)
    _, kl2 = reference(changed, made["kl"].windows, kl_model=tiny.model, kl_tokens=100)
    assert row["perplexity"] == pytest.approx(ppl2, rel=1e-5)
    assert row["ppl_ratio"] == pytest.approx(ppl2 / ppl, rel=1e-5)
    assert kl2 > 1e-4 and row["kl"] == pytest.approx(kl2, rel=1e-4)
    assert set(row) == {c.name for p in made.values() for c in p.columns()}  # every declared column, no other


def test_retention_follows_the_cloze_score(tiny, files):
    cloze = probes(tiny, files)["cloze"]
    cloze.base_cloze = 1.0  # pretend the base was perfect: retention is then linear in the cloze score
    scored = cloze.measure(tiny.model)
    assert scored["retention"] == pytest.approx((scored["cloze"] - 0.25) / 0.75)
    cloze.base_cloze = 0.5  # 3 items: 0.25 above chance is within two standard errors (0.5): undefined
    assert math.isnan(cloze.measure(tiny.model)["retention"])


def test_columns_declare_direction_chance_and_role(tiny, files):
    columns = {c.name: c for p in probes(tiny, files).values() for c in p.columns()}
    assert columns["cloze"].higher_is_better and columns["cloze"].chance == pytest.approx(0.25)
    assert columns["retention"].primary and not columns["cloze_norm"].headline
    assert columns["kl"].higher_is_better is False and columns["ppl_ratio"].higher_is_better is False


def test_cloze_items_are_well_formed():
    items = load_cloze_items()
    assert len(items) >= 150
    assert len({it["prompt"] for it in items}) == len(items)
    for it in items:
        assert len(it["distractors"]) == 3 and it["answer"] not in it["distractors"]
        assert not it["prompt"].endswith(" ") and not it["answer"].startswith(" ")


class Twin(Probe):
    name = "twin"

    def columns(self):
        return [Column("kl", "a clash with the kl probe's column")]

    def measure(self, model):
        return {"kl": 0.0}


@pytest.mark.parametrize("spec,options,message", [
    ("cloze,cloze", {}, "names a probe twice"),
    ("magic", {}, "unknown probe 'magic'"),
    ("cloze", {"kl.tokens": 5}, "names none of cloze"),
    ("kl", {"kl.tokens": "0"}, "kl.tokens must be at least 1"),
    ("kl", {"kl.tokenz": "5"}, "unknown option(s) kl.tokenz"),
    ("nosuch.module:Probe", {}, "cannot import probe"),
])
def test_bad_probe_specs_are_clear_errors(spec, options, message):
    with pytest.raises(ContinualError) as info:
        make_probes(spec, options)
    assert message in str(info.value)


def test_two_probes_may_not_report_one_column(tiny, files):
    made = make_probes("kl,tests.test_probes:Twin", {"kl.text_file": str(files / "text.txt")})
    for p in made:
        p.setup(ProbeContext(tokenizer=tiny.tokenizer, general_text="offline", batch_size=8, seed=0))
    with pytest.raises(ContinualError, match="both report a column 'kl'"):
        check_columns(made)
    assert "twin" not in PROBES  # an imported probe is used, not registered
