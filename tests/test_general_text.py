import pandas as pd
import pytest

from continual.errors import ContinualError
from continual.probes.general_text import WIKITEXT_CONFIG, general_text


def test_offline_probe_and_train_text_are_disjoint():
    probe, train = general_text("offline", "probe"), general_text("offline", "train")
    assert len(probe) > 100_000 and len(train) > 300_000
    probe_docs, train_docs = set(probe.split("\n\n")), set(train.split("\n\n"))
    assert not probe_docs & train_docs
    # no long passage of the probe appears in the training text either
    assert all(probe[i:i + 200] not in train for i in range(0, len(probe) - 200, 20_000))


def wikitext_fixture(root):
    """A local folder in the layout of the hub repository Salesforce/wikitext (parquet shards + README configs)."""
    (root / WIKITEXT_CONFIG).mkdir(parents=True)
    splits = {"test": ["", " = Probe article = \n", " The probe text is held out . \n"],
              "train": ["", " = Train article = \n", " The training text is for replay . \n"],
              "validation": [" = Validation = \n"]}
    for split, lines in splits.items():
        pd.DataFrame({"text": lines}).to_parquet(root / WIKITEXT_CONFIG / f"{split}-00000-of-00001.parquet")
    files = "".join(f"  - split: {s}\n    path: {WIKITEXT_CONFIG}/{s}-*\n" for s in splits)
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {WIKITEXT_CONFIG}\n  data_files:\n{files}---\n")
    return root


def test_hub_source_reads_the_wikitext_layout(tmp_path):
    repo = wikitext_fixture(tmp_path / "wikitext")
    probe = general_text("hub", "probe", hub_path=str(repo))
    train = general_text("hub", "train", hub_path=str(repo))
    assert "held out" in probe and "Probe article" in probe and "replay" not in probe
    assert "replay" in train and "held out" not in train


def test_unknown_source_and_unreachable_hub_are_clear_errors(tmp_path):
    with pytest.raises(ContinualError, match="unknown general-text source 'web'"):
        general_text("web")
    with pytest.raises(ContinualError, match="could not load"):
        general_text("hub", hub_path=str(tmp_path / "missing"))
