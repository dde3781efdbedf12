import numpy as np
import pytest
import torch

from continual.bench import TokenCounter
from continual.scoring import score_candidates, split_continuation


def slow_reference(model, tokenizer, prompt, candidate):
    """One unpadded sequence at a time, full log-softmax: the definition, written the plain way."""
    full = tokenizer(prompt + candidate)["input_ids"]
    head = tokenizer(prompt)["input_ids"]
    k = next((i for i, (a, b) in enumerate(zip(full, head)) if a != b), min(len(full), len(head)))
    with torch.no_grad():
        logp = model(torch.tensor([full])).logits[0].double().log_softmax(-1)
    return sum(float(logp[t - 1, full[t]]) for t in range(k, len(full))), len(full) - k


PROMPTS = ["Harry Potter is Lord Voldemort's", "The cat sat on the", "Two plus two is", "A friend in need is a"]
CANDIDATES = [[" friend", " enemy"], [" mat", " moon", " quick brown fox"], [" four", " five"],
              [" friend indeed", " foe", " x"]]


def test_batched_scores_match_one_at_a_time_reference(tiny):
    model, tok = tiny.model, tiny.tokenizer
    scores = score_candidates(model, tok, PROMPTS, CANDIDATES, batch_size=3)
    for i, (prompt, cands) in enumerate(zip(PROMPTS, CANDIDATES)):
        for c, cand in enumerate(cands):
            ref, n = slow_reference(model, tok, prompt, cand)
            assert scores.logprob[i][c] == pytest.approx(ref, abs=1e-5)
            assert scores.n_tokens[i][c] == n


def test_scores_do_not_depend_on_batch_size(tiny):
    a = score_candidates(tiny.model, tiny.tokenizer, PROMPTS, CANDIDATES, batch_size=1)
    b = score_candidates(tiny.model, tiny.tokenizer, PROMPTS, CANDIDATES, batch_size=64)
    for x, y in zip(a.logprob, b.logprob):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_bpe_merge_across_the_boundary_moves_into_the_candidate(tiny):
    tok = tiny.tokenizer
    prompt, cand = "A good fri", "end"  # "friend" is one token of the tiny tokenizer
    assert tok.convert_ids_to_tokens(tok(prompt + cand)["input_ids"])[-1] == "Ġfriend"
    ctx, cont = split_continuation(tok, prompt, cand)
    assert ctx + cont == tok(prompt + cand)["input_ids"]
    assert ctx == tok(prompt)["input_ids"][:len(ctx)]
    assert len(ctx) < len(tok(prompt)["input_ids"])  # the prompt's last token was merged away
    assert tok.decode(cont) == " friend"
    score = score_candidates(tiny.model, tok, [prompt], [[cand]]).logprob[0][0]
    assert score == pytest.approx(slow_reference(tiny.model, tok, prompt, cand)[0], abs=1e-5)


def test_accuracy_and_length_normalised_accuracy(tiny):
    from continual.scoring import CandidateScores
    s = CandidateScores([np.array([-1.0, -3.0]), np.array([-4.0, -3.0])], [np.array([1, 4]), np.array([1, 4])])
    assert s.accuracy([0, 0]) == 0.5  # summed: example 2 prefers candidate 1
    assert s.accuracy([0, 0], normalise=True) == 0.0  # mean: -1 vs -0.75 -> candidate 1; -4 vs -0.75 -> 1
    assert list(s.predictions(normalise=True)) == [1, 1]


def test_empty_continuation_is_an_error(tiny):
    with pytest.raises(ValueError, match="adds no token"):
        split_continuation(tiny.tokenizer, "The cat", "")


# ---------------------------------------------------------------------------- shared-prefix (KV cache) fast path

MULTI_PROMPTS = ["Harry Potter is Lord Voldemort's", "A good fri", "The capital of France is", "x"]
MULTI_CANDIDATES = [[" sworn enemy", " best friend", " friend"], ["end", "end of mine", " quick brown fox"],
                    [" Paris", " the city of Lyon", " Rome, Italy"], [" y z", " y w q"]]


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_shared_prefix_path_equals_the_row_path(tiny, batch_size):
    # batch_size 1 and 2 split one example's candidate remainders over several passes from the same cache
    rows = score_candidates(tiny.model, tiny.tokenizer, MULTI_PROMPTS, MULTI_CANDIDATES, share_prompt=False)
    shared = score_candidates(tiny.model, tiny.tokenizer, MULTI_PROMPTS, MULTI_CANDIDATES, batch_size=batch_size)
    for a, b in zip(rows.logprob, shared.logprob):
        np.testing.assert_allclose(b, a, atol=1e-4)
    for i, (prompt, cands) in enumerate(zip(MULTI_PROMPTS, MULTI_CANDIDATES)):
        for c, cand in enumerate(cands):
            assert shared.logprob[i][c] == pytest.approx(slow_reference(tiny.model, tiny.tokenizer, prompt, cand)[0],
                                                         abs=1e-4)


def test_shared_prefix_runs_each_prompt_once(tiny):
    long_prompt = "A friend in need is a friend indeed, and the old saying goes on to say that the"
    cands = [[" quick brown fox", " lazy old dog", " small grey cat"]]
    counted = {}
    for share in (False, True):
        counter = TokenCounter(tiny.model)
        score_candidates(counter, tiny.tokenizer, [long_prompt], cands, share_prompt=share)
        counted[share] = counter.tokens
    prompt_tokens = len(tiny.tokenizer(long_prompt)["input_ids"])
    assert counted[False] >= 3 * prompt_tokens  # a full row per candidate
    assert counted[True] < counted[False] - prompt_tokens  # the prompt ran once, not three times


def test_single_token_candidates_keep_one_shared_row(tiny):
    # facts-style answers need no cache: both candidates are read from one row, whichever path is asked for
    counter = TokenCounter(tiny.model)
    score_candidates(counter, tiny.tokenizer, PROMPTS[:1], CANDIDATES[:1])
    assert counter.tokens == len(tiny.tokenizer(PROMPTS[0])["input_ids"])


def test_shared_prefix_path_through_a_lora_model(tiny):
    from peft import LoraConfig, get_peft_model

    from continual.models import load_model
    model = get_peft_model(load_model("tiny", seed=0).model, LoraConfig(r=4, target_modules="all-linear",
                                                                       init_lora_weights=False))
    rows = score_candidates(model, tiny.tokenizer, MULTI_PROMPTS, MULTI_CANDIDATES, share_prompt=False)
    shared = score_candidates(model, tiny.tokenizer, MULTI_PROMPTS, MULTI_CANDIDATES)
    for a, b in zip(rows.logprob, shared.logprob):
        np.testing.assert_allclose(b, a, atol=1e-4)


class FullLogitsOnly(torch.nn.Module):
    """A causal LM whose forward takes no ``logits_to_keep``: the scorer must compute every position for it."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask=None, **kwargs):
        assert "logits_to_keep" not in kwargs
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


@pytest.mark.parametrize("share_prompt", [False, True])
def test_lm_head_on_needed_positions_only_changes_nothing(tiny, share_prompt):
    prompts, cands = PROMPTS + MULTI_PROMPTS, CANDIDATES + MULTI_CANDIDATES
    kept = score_candidates(tiny.model, tiny.tokenizer, prompts, cands, share_prompt=share_prompt)
    full = score_candidates(FullLogitsOnly(tiny.model), tiny.tokenizer, prompts, cands, share_prompt=share_prompt)
    for a, b in zip(full.logprob, kept.logprob):
        np.testing.assert_allclose(b, a, atol=1e-5)
