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


class StageRunner:
    """Drives strategy hooks through real training stages on the tiny model and a small facts stream."""

    def __init__(self, strategy, steps=4, lr=1e-2, batch_size=4):
        from continual.config import RunConfig
        from continual.models import load_model
        from continual.streams import get_stream

        self.loaded = load_model("tiny", seed=0)
        self.tokenizer = self.loaded.tokenizer
        self.stream = get_stream("facts", options={"camp_size": 3})
        self.strategy = strategy
        self.model = strategy.setup(self.loaded.model)
        self.config = RunConfig(model="tiny", steps=steps, lr=lr, batch_size=batch_size, progress=False,
                                strategy=strategy.name)

    def context(self, index):
        from strategies.base import StageContext
        return StageContext(index=index, task=self.stream.tasks[index], stream=self.stream, tokenizer=self.tokenizer,
                            device="cpu", seed=0, batch_size=self.config.batch_size, general_source="offline",
                            max_length=self.config.max_length)

    def stage(self, index):
        from continual.training import train_stage
        return train_stage(self.model, self.strategy, self.context(index), self.config, self.config.steps)

    def logits(self, model=None, text="Harry Potter is Lord Voldemort's"):
        import torch
        ids = torch.tensor([self.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            return (model or self.model)(input_ids=ids).logits
