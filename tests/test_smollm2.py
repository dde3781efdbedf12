"""On the real default model (SmolLM2-135M-Instruct): the probe subject knows things, and naive training learns."""

import pytest

import continual

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_stage(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "hogwarts"
    return continual.run(stream="facts", strategy="naive", model="smollm2-135m", tasks="hogwarts", steps=60,
                         lr=1e-4, probe_options={"perplexity.tokens": 512, "kl.tokens": 128}, progress=False,
                         out=str(out))


def test_base_model_knows_general_knowledge_well_above_chance(one_stage):
    base = one_stage.probe.iloc[0]
    assert base["after"] == "base" and one_stage.summary["probe_columns"]["cloze"]["chance"] == pytest.approx(0.25)
    assert base["cloze"] > 0.55, base["cloze"]
    assert 5 < base["perplexity"] < 100  # a real LM on modern English prose


def test_base_model_is_near_chance_on_the_facts_and_naive_training_raises_them(one_stage):
    m = one_stage.matrix
    assert abs(m.loc["base", "hogwarts"] - 0.5) < 0.15
    assert m.loc["hogwarts", "hogwarts"] >= 0.8
    assert m.loc["hogwarts", "hogwarts"] - m.loc["base", "hogwarts"] >= 0.25
    assert one_stage.probe.iloc[-1]["kl"] > 0
