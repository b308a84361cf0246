"""best-mlp: the validation split, choosing on validation, testing once, storing and reusing runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mlplab import experiments
from mlplab.data import Data, Split
from mlplab.errors import ConfigError
from mlplab.experiments import best_mlp
from mlplab.experiments.best_mlp import RECIPES, TARGET, Config, Recipe, target_conclusion, validation_split
from mlplab.train import TrainConfig
from mlplab.train import evaluate as real_evaluate


def tiny(name: str, hidden: tuple[int, ...], augment: str = "none", lr: float = 0.05) -> Recipe:
    train = TrainConfig(epochs=2, batch_size=64, lr=lr, momentum=0.5, schedule="cosine", augment=augment)
    return Recipe(name, f"a tiny {name}", hidden, (0.1,), train)


TINY = {r.name: r for r in (tiny("narrow", (4,)), tiny("wide", (64,), "flip"), tiny("slow", (64,), lr=1e-4))}


def test_the_validation_split_is_a_fixed_disjoint_part_of_the_training_set():
    X = torch.arange(100, dtype=torch.float32)[:, None]
    data = Data(Split(X, torch.arange(100) % 3), Split(X[:10], torch.zeros(10, dtype=torch.long)))
    carved, test = validation_split(data, 20)
    kept, held = set(carved.train.X.ravel().tolist()), set(carved.test.X.ravel().tolist())
    assert len(held) == 20 and len(kept) == 80 and not kept & held and kept | held == set(range(100))
    assert torch.equal(carved.test.y, carved.test.X.ravel().long() % 3)  # labels travel with their rows
    assert test is data.test
    again, _ = validation_split(data, 20)
    assert torch.equal(again.test.X, carved.test.X)  # the same rows every time
    for bad in (0, 100):
        with pytest.raises(ConfigError, match="validation"):
            validation_split(data, bad)


def test_every_named_recipe_is_a_valid_config_with_its_settings_in_one_line():
    for name, recipe in RECIPES.items():
        assert recipe.name == name
        recipe.model_config(784, 10), recipe.train_config(2, "cpu")
        line = recipe.describe()
        assert recipe.train.optimizer in line and f"augment {recipe.train.augment}" in line
    with pytest.raises(ConfigError, match="candidates"):
        Config(candidates=("nope",))


def test_the_target_conclusion_is_computed_from_the_seeds():
    recipe = RECIPES["adamw-2x1024-flip"]
    met = target_conclusion(recipe, {0: 0.903, 1: 0.905, 2: 0.904})
    assert met.values["met"] and met.values["mean"] == pytest.approx(0.904)
    assert "is met" in met.text and "0.8833" in met.text  # its CI lies above every reference
    missed = target_conclusion(recipe, {0: 0.899, 1: 0.897, 2: 0.898})
    assert not missed.values["met"] and "NOT met" in missed.text
    quick = target_conclusion(recipe, {0: 0.84, 1: 0.85, 2: 0.845}, quick=True)
    assert quick.values["met"] is None and "judged on the full run" in quick.text and "NOT" not in quick.text
    wide = target_conclusion(recipe, {0: 0.85, 1: 0.95, 2: 0.90})
    assert wide.values["above"] == []  # a mean above a reference with a CI across it is not "above"


def test_end_to_end_on_synthetic_data_chooses_on_validation_and_tests_only_the_choice(tmp_path, monkeypatch):
    config = Config(quick=True, data="synthetic", out=str(tmp_path), seeds=2, candidates=tuple(TINY), recipes=TINY)
    evaluated = []
    monkeypatch.setattr("mlplab.train.evaluate", lambda model, split, *a, **k: (
        evaluated.append(len(split)), real_evaluate(model, split, *a, **k))[1])  # fmt: skip
    result = best_mlp.run(config)
    selection, runs, tested = result.tables["selection"], result.tables["runs"], result.tables["test"]
    assert set(runs["recipe"]) == set(TINY) and len(runs) == 6 and (selection["n"] == 2).all()
    chosen = result.conclusions[0].values["best"]
    assert chosen == selection.loc[selection["val_acc_mean"].idxmax(), "recipe"]
    assert chosen != "slow"  # lr 1e-4 for 2 epochs learns next to nothing
    assert set(tested["recipe"]) == {chosen} and list(tested["seed"]) == [0, 1]
    n_test = 512  # the synthetic blobs' test split: evaluated once per seed of the chosen recipe
    assert evaluated.count(n_test) == 2
    assert result.conclusions[1].values["n"] == 2 and len(result.tables["curves"]) == 3 * 2
    folder = result.save(tmp_path / "saved")
    assert (folder / "figures" / "validation.png").exists() and (folder / "tables" / "test.csv").exists()


def test_a_rerun_loads_the_stored_runs_and_a_changed_recipe_is_stored_apart(tmp_path):
    config = Config(quick=True, data="synthetic", out=str(tmp_path), seeds=1, candidates=("narrow",), recipes=TINY)
    first = best_mlp.run(config)
    assert first.conclusions[0].text.endswith("the only value tried")  # one candidate: nothing to beat
    checkpoints = sorted((tmp_path / "quick" / "synthetic" / "runs").rglob("checkpoint.pt"))
    assert len(checkpoints) == 1
    stamp = checkpoints[0].stat().st_mtime_ns
    again = best_mlp.run(config)
    assert checkpoints[0].stat().st_mtime_ns == stamp  # loaded, not retrained
    assert again.tables["runs"]["val_acc"].tolist() == first.tables["runs"]["val_acc"].tolist()
    assert again.tables["test"]["test_acc"].tolist() == first.tables["test"]["test_acc"].tolist()
    longer = dataclasses.replace(config, epochs=3)
    best_mlp.run(longer)
    assert len(list((tmp_path / "quick" / "synthetic" / "runs").rglob("checkpoint.pt"))) == 2  # apart


def test_it_is_in_the_registry():
    assert "best-mlp" in experiments.names() and "validation" in experiments.summary("best-mlp")
    assert TARGET == 0.9


def test_the_docs_table_lists_every_recipe():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "experiments.md").read_text()
    listed = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    assert listed == set(RECIPES)
