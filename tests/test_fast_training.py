"""The device-resident trainer: it learns, reproduces, fails cleanly, and its data path is right."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmatic.fast_training import (
    DeviceDataset,
    FastTrainResult,
    TrainSettings,
    conventional_train,
    inherit_weights,
    lr_factor,
    train_network,
)
from llmatic.training import TrainResult

CPU = torch.device("cpu")
SIZE = 16


def stripes(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(n, 3, 16, 16)`` noisy images: class 0 horizontal stripes, class 1 vertical.

    Orientation survives crops and mirror images, so augmented training can learn it.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    phase = torch.randint(0, 4, (n, 1, 1), generator=generator)
    wave = ((torch.arange(SIZE).view(1, SIZE, 1) + phase) // 2 % 2).float()  # (n, 16, 1)
    horizontal = wave.expand(n, SIZE, SIZE)
    pattern = torch.where(labels.view(n, 1, 1) == 0, horizontal, horizontal.transpose(1, 2))
    colour = torch.rand(n, 3, 1, 1, generator=generator) * 0.5 + 0.5
    noise = torch.randn(n, 3, SIZE, SIZE, generator=generator) * 0.15
    images = (pattern[:, None] * colour * 0.7 + 0.15 + noise).clamp(0, 1)
    return (images * 255).round().to(torch.uint8), labels


def splits(n_train: int = 512, n_val: int = 256) -> tuple[DeviceDataset, DeviceDataset]:
    train = DeviceDataset(*stripes(n_train, seed=1), device=CPU)
    val = DeviceDataset(*stripes(n_val, seed=2), device=CPU, mean=train.mean, std=train.std)
    return train, val


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


FAST = TrainSettings(epochs=4, batch_size=64, lr=0.2, eval_batch_size=128)


def test_learns_a_learnable_task_well_above_chance():
    train, val = splits()
    result = train_network(
        tiny_cnn(), train=train, val=val, test=val, settings=FAST, seed=0, device=CPU
    )
    assert isinstance(result, TrainResult) and isinstance(result, FastTrainResult)
    assert result.val_accuracy > 85.0
    assert result.test_accuracy == result.val_accuracy  # the same split, scored twice
    assert result.steps == 4 * (512 // 64) and result.images_seen == result.steps * 64
    assert not result.stopped_by_budget
    assert math.isfinite(result.final_train_loss)
    assert 0 < result.first_step_seconds <= result.train_seconds <= result.seconds


def test_without_a_test_split_test_accuracy_is_nan():
    train, val = splits(128, 64)
    settings = TrainSettings(epochs=1, batch_size=64)
    result = train_network(
        tiny_cnn(), train=train, val=val, test=None, settings=settings, seed=0, device=CPU
    )
    assert math.isnan(result.test_accuracy) and 0 <= result.val_accuracy <= 100


def test_deterministic_runs_repeat_exactly_and_seeds_differ():
    train, val = splits(256, 128)
    settings = TrainSettings(epochs=2, batch_size=64, deterministic=True)

    def run(seed: int) -> tuple[float, dict[str, torch.Tensor]]:
        model = tiny_cnn()
        result = train_network(
            model, train=train, val=val, test=None, settings=settings, seed=seed, device=CPU
        )
        return result.val_accuracy, model.state_dict()

    accuracy_a, weights_a = run(3)
    accuracy_b, weights_b = run(3)
    _, weights_c = run(4)
    assert accuracy_a == accuracy_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)
    # The global switches are put back afterwards.
    assert not torch.are_deterministic_algorithms_enabled()


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * SIZE * SIZE, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


def test_a_nan_loss_raises_floating_point_error():
    train, val = splits(128, 64)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        train_network(NaNNet(), train=train, val=val, test=None, settings=FAST, seed=0, device=CPU)


def test_a_huge_learning_rate_raises_floating_point_error():
    train, val = splits(128, 64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 64), nn.ReLU(), nn.Linear(64, 2))
    settings = TrainSettings(epochs=20, batch_size=32, lr=1e9, warmup=0.0, augment=False)
    with pytest.raises(FloatingPointError):
        train_network(model, train=train, val=val, test=None, settings=settings, seed=0, device=CPU)


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * SIZE * SIZE, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x.flatten(1)), x


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Sequential(nn.Flatten()), "no trainable parameters"),
        (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1)), "logits"),
        (nn.Sequential(nn.Conv2d(3, 2, 1)), "shape"),
        (TupleNet(), "not a tensor"),
    ],
)
def test_a_wrong_output_or_no_parameters_raises_value_error(model, match):
    train, val = splits(128, 64)
    with pytest.raises(ValueError, match=match):
        train_network(model, train=train, val=val, test=None, settings=FAST, seed=0, device=CPU)


def test_the_time_budget_stops_training_early_and_still_scores():
    train, val = splits()
    settings = TrainSettings(epochs=1000, batch_size=64, time_budget_s=0.5)
    began = time.perf_counter()
    result = train_network(
        tiny_cnn(), train=train, val=val, test=val, settings=settings, seed=0, device=CPU
    )
    assert time.perf_counter() - began < 10.0  # 1000 epochs would take minutes
    assert result.stopped_by_budget
    assert 1 <= result.steps < 1000 * (512 // 64)
    assert 0.5 <= result.train_seconds < 5.0
    assert 0 <= result.val_accuracy <= 100 and 0 <= result.test_accuracy <= 100


def test_uint8_storage_and_normalised_batches():
    train, _ = splits()
    assert train.images.dtype == torch.uint8 and train.images.shape == (512, 3, SIZE, SIZE)
    assert train.labels.dtype == torch.int64
    images = torch.cat([x for x, _ in train.batches(batch_size=100)])
    assert images.dtype == torch.float32 and images.shape == (512, 3, SIZE, SIZE)
    per_channel = images.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-3)
    assert torch.allclose(per_channel.std(1), torch.ones(3), atol=1e-2)
    half = next(train.batches(batch_size=8, dtype=torch.bfloat16))[0]
    assert half.dtype == torch.bfloat16


def test_from_unit_float_quantises_to_uint8():
    images, labels = stripes(16, seed=0)
    dataset = DeviceDataset.from_unit_float(images.float() / 255, labels, device=CPU)
    assert dataset.images.dtype == torch.uint8 and torch.equal(dataset.images, images)
    with pytest.raises(ValueError, match="uint8"):
        DeviceDataset(images.float(), labels, device=CPU)
    with pytest.raises(ValueError, match="reflect"):
        dataset.augmented(
            torch.arange(4), pad=SIZE, pad_mode="reflect", generator=None, dtype=torch.float32
        )


def every_crop_and_flip(image: torch.Tensor, pad: int, mode: str) -> list[torch.Tensor]:
    """All ``(2 pad + 1)^2 x 2`` shifted and mirrored versions of a ``(C, H, W)`` image."""
    padded = F.pad(image[None], (pad,) * 4, mode=mode)[0]
    height, width = image.shape[-2:]
    crops = [
        padded[:, top : top + height, left : left + width]
        for top in range(2 * pad + 1)
        for left in range(2 * pad + 1)
    ]
    return crops + [crop.flip(-1) for crop in crops]


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_augmentation_is_a_crop_and_flip_deterministic_under_the_generator(pad_mode):
    train, _ = splits(64, 8)
    indices = torch.arange(64)

    def augmented(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return train.augmented(
            indices, pad=4, pad_mode=pad_mode, generator=generator, dtype=torch.float32
        )

    plain = train.normalise(train.images, dtype=torch.float32)
    first, again, other = augmented(0), augmented(0), augmented(1)
    assert first.shape == plain.shape and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    changed = [not torch.equal(first[i], plain[i]) for i in range(64)]
    assert sum(changed) > 48  # identity has probability 1/162 per image
    mode = "reflect" if pad_mode == "reflect" else "constant"
    for i in range(16):
        candidates = every_crop_and_flip(plain[i], 4, mode)
        assert any(torch.allclose(first[i], c, atol=1e-5) for c in candidates)


def test_shuffled_batches_follow_the_generator_and_cover_the_split():
    train, _ = splits(100, 8)

    def labels(seed: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return [y for _, y in train.batches(batch_size=30, shuffle=True, generator=generator)]

    first = labels(5)
    assert [len(y) for y in first] == [30, 30, 30, 10]
    assert all(torch.equal(a, b) for a, b in zip(first, labels(5), strict=True))
    assert torch.cat(first).sort().values.tolist() == train.labels.sort().values.tolist()
    dropped = list(train.batches(batch_size=30, drop_last=True))
    assert len(dropped) == 3


def test_inheritance_copies_exactly_the_same_named_same_shaped_tensors():
    torch.manual_seed(0)
    donor = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
    donor_state = {k: v.clone() + 1.0 for k, v in donor.state_dict().items()}
    donor_state["1.weight"] = torch.ones(5)  # same name, other shape: skipped
    donor_state["99.weight"] = torch.ones(3)  # a name the model lacks: ignored
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copied = inherit_weights(model, donor_state)
    expected = ("0.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked")
    assert copied == expected
    after = model.state_dict()
    for name in after:
        if name in expected:
            assert torch.equal(after[name], donor_state[name].to(after[name].dtype))
        else:
            assert torch.equal(after[name], before[name])

    train, val = splits(128, 64)
    result = train_network(
        tiny_cnn(),
        train=train,
        val=val,
        test=None,
        settings=TrainSettings(epochs=1, batch_size=64),
        seed=0,
        device=CPU,
        inherit_from=donor_state,
    )
    assert result.inherited == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"epochs": float("inf")},
        {"time_budget_s": 0},
        {"batch_size": 0},
        {"lr": -1.0},
        {"momentum": 1.0},
        {"momentum": 0.0},  # with nesterov=True
        {"weight_decay": -1e-3},
        {"label_smoothing": 1.0},
        {"schedule": "cosine"},
        {"warmup": 1.0},
        {"pad": -1},
        {"pad_mode": "edge"},
        {"precision": "fp8"},
        {"eval_batch_size": 0},
    ],
)
def test_settings_validation_raises_value_error(bad):
    with pytest.raises(ValueError):
        TrainSettings(**bad)


def test_settings_are_keyword_only_and_momentum_zero_works_without_nesterov():
    with pytest.raises(TypeError):
        TrainSettings(10.0)  # type: ignore[misc]
    assert TrainSettings(momentum=0.0, nesterov=False).momentum == 0.0


@pytest.mark.parametrize("schedule", ["triangular", "one_cycle"])
def test_schedules_warm_up_peak_and_decay_to_zero(schedule):
    factors = [lr_factor(p / 100, schedule=schedule, warmup=0.2) for p in range(101)]
    assert factors[0] < 0.05 and factors[100] == pytest.approx(0.0, abs=1e-9)
    assert max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 20
    assert all(a <= b for a, b in zip(factors[:20], factors[1:21], strict=True))
    assert all(a >= b for a, b in zip(factors[20:], factors[21:], strict=False))


def test_bf16_autocast_on_cpu_trains():
    train, val = splits(128, 64)
    settings = TrainSettings(epochs=1, batch_size=64, precision="bf16")
    result = train_network(
        tiny_cnn(), train=train, val=val, test=None, settings=settings, seed=0, device=CPU
    )
    assert result.steps == 2 and math.isfinite(result.final_train_loss)


def test_the_conventional_baseline_runs_the_same_recipe():
    images, labels = stripes(256, seed=1)
    val = stripes(128, seed=2)
    settings = TrainSettings(epochs=4, batch_size=64)
    result = conventional_train(
        tiny_cnn(), train=(images, labels), val=val, settings=settings, seed=0, device=CPU
    )
    assert result.steps == 4 * 4 and math.isnan(result.test_accuracy)
    assert result.val_accuracy > 70.0
