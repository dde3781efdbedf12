import math

import pytest
import torch

from continual.probes.retention import ProbeSettings, RetentionProbe, load_cloze_items

TEXT = " ".join(f"Sentence number {i} tells of the quick brown fox and the lazy dog in the capital of France."
                for i in range(60))
ITEMS = [{"prompt": "The capital of France is", "answer": "Paris", "distractors": ["Berlin", "Rome", "Oslo"]},
         {"prompt": "The quick brown fox jumps over the lazy", "answer": "dog", "distractors": ["cat", "sun", "hat"]},
         {"prompt": "Two plus two is", "answer": "four", "distractors": ["five", "six", "nine"]}]
SETTINGS = ProbeSettings(text_tokens=300, kl_tokens=100, window=64, batch_size=8, text_batch_size=2)


def perturbed(tiny, scale=0.05):
    from continual.models import load_model
    other = load_model("tiny", seed=0).model
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return other


def windows_reference(model, probe, kl_ref_model=None):
    """Perplexity and KL computed window by window, unbatched, in float64."""
    nll, n, kl, kl_n = 0.0, 0, 0.0, 0
    with torch.no_grad():
        for w in probe.windows:
            lp = model(torch.tensor([w])).logits[0, :-1].double().log_softmax(-1)
            nll -= float(lp[torch.arange(len(w) - 1), torch.tensor(w[1:])].sum())
            n += len(w) - 1
            if kl_ref_model is not None and kl_n < probe.settings.kl_tokens:
                ref = kl_ref_model(torch.tensor([w])).logits[0, :-1].double().log_softmax(-1)
                k = min(len(w) - 1, probe.settings.kl_tokens - kl_n)
                kl += float((ref[:k].exp() * (ref[:k] - lp[:k])).sum())
                kl_n += k
    return math.exp(nll / n), (kl / kl_n if kl_n else None), n


def test_windows_predict_exactly_the_asked_number_of_tokens(tiny):
    probe = RetentionProbe(tiny.tokenizer, TEXT, ITEMS, SETTINGS)
    assert sum(len(w) - 1 for w in probe.windows) == 300
    assert all(len(w) <= 64 for w in probe.windows)
    assert probe.chance == pytest.approx(0.25)


def test_base_row_and_measurements_match_a_plain_reference(tiny):
    probe = RetentionProbe(tiny.tokenizer, TEXT, ITEMS, SETTINGS)
    base = probe.calibrate(tiny.model)
    ppl, _, _ = windows_reference(tiny.model, probe)
    assert base["perplexity"] == pytest.approx(ppl, rel=1e-5)
    assert base["kl"] == 0.0 and base["ppl_ratio"] == 1.0
    again = probe.measure(tiny.model)
    assert abs(again["kl"]) < 1e-6 and again["ppl_ratio"] == pytest.approx(1.0, abs=1e-6)

    changed = perturbed(tiny)
    row = probe.measure(changed)
    ppl2, kl2, _ = windows_reference(changed, probe, kl_ref_model=tiny.model)
    assert row["perplexity"] == pytest.approx(ppl2, rel=1e-5)
    assert row["ppl_ratio"] == pytest.approx(ppl2 / ppl, rel=1e-5)
    assert kl2 > 1e-4 and row["kl"] == pytest.approx(kl2, rel=1e-4)


def test_retention_follows_the_cloze_score(tiny):
    probe = RetentionProbe(tiny.tokenizer, TEXT, ITEMS, SETTINGS)
    probe.calibrate(tiny.model)
    probe.base["cloze"] = 1.0  # pretend the base was good: retention is then linear in the cloze score
    row = probe.measure_from(cloze=0.5, cloze_norm=0.5, mean_nll=1.0, kl=0.0)
    assert row["retention"] == pytest.approx(1 / 3)
    probe.base["cloze"] = 0.5  # 3 items: 0.25 above chance is within two standard errors (0.5): undefined
    assert math.isnan(probe.measure_from(cloze=0.5, cloze_norm=0.5, mean_nll=1.0, kl=0.0)["retention"])


def test_cloze_items_are_well_formed():
    items = load_cloze_items()
    assert len(items) >= 150
    assert len({it["prompt"] for it in items}) == len(items)
    for it in items:
        assert len(it["distractors"]) == 3 and it["answer"] not in it["distractors"]
        assert not it["prompt"].endswith(" ") and not it["answer"].startswith(" ")
