"""The set-up leaves an environment where the MOSTLY AI SDK trains and generates locally."""

import numpy as np
import pandas as pd


def test_transformers_and_engine_import():
    import transformers  # noqa: F401  (breaks when torchvision wheels do not match torch)
    from mostlyai.engine import TabularARGN  # noqa: F401


def test_local_training_and_generation(tmp_path):
    from mostlyai.sdk import MostlyAI

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"a": rng.normal(size=300).round(2), "b": rng.choice(["x", "y", "z"], 300)})
    mostly = MostlyAI(local=True, local_dir=tmp_path, quiet=True)
    config = {"name": "setup-check", "tables": [{"name": "data", "data": data, "tabular_model_configuration": {"max_training_time": 0.2, "max_epochs": 2}}]}
    generator = mostly.train(config=config, progress_bar=False)
    synthetic = mostly.generate(generator, size=150, progress_bar=False).data()
    assert list(synthetic.columns) == ["a", "b"] and len(synthetic) == 150
