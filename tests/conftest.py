import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny():
    from continual.models import load_model
    return load_model("tiny", seed=0)


@pytest.fixture(scope="session")
def smollm2():
    from continual.models import load_model
    return load_model("smollm2-135m")
