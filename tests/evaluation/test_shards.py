"""xiqa saliency: shard selection, the shard file, and its bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from xiqa.data.cache import ImageCache, load_cache
from xiqa.errors import InputError
from xiqa.evaluation.shards import read_shard, run_saliency, sha256_file, shard_indices
from xiqa.model.network import build_model, load_model, save_model, to_model_input
from xiqa.model.predict import predict_probs
from xiqa.saliency import explain

from conftest import assert_one_line_error, run_cli

GRADCAM = {"family": "gradcam", "layer": "layer4.1"}


def _cache_with_labels(labels):
    n = len(labels)
    return ImageCache(
        "mem.h5",
        8,
        np.zeros((n, 8, 8), np.uint8),
        [f"{i}.jpg" for i in range(n)],
        np.array(labels),
        np.full(n, 8),
        np.full(n, 8),
        np.zeros((0, 5)),
    )


def test_shards_split_the_positives_into_contiguous_blocks():
    cache = _cache_with_labels([1, 0, 1, 1, 0, 1, 1])
    assert [shard_indices(cache, k, 2).tolist() for k in range(2)] == [[0, 2, 3], [5, 6]]
    assert [shard_indices(cache, k, 3).tolist() for k in range(3)] == [[0, 2], [3, 5], [6]]
    assert shard_indices(cache, 1, 2, all_images=True).tolist() == [4, 5, 6]
    with pytest.raises(InputError, match="--shard 2 is out of range for --n-shards 2"):
        shard_indices(cache, 2, 2)
    with pytest.raises(InputError, match="out of range"):
        shard_indices(cache, -1, 2)


def test_max_images_keeps_one_fixed_subset_across_shards():
    cache = _cache_with_labels([1, 0] * 10)  # positives at the even rows
    shards = [shard_indices(cache, k, 2, max_images=4) for k in range(2)]
    subset = np.concatenate(shards)
    assert len(subset) == 4 and list(subset) == sorted(subset)
    assert set(subset) <= set(range(0, 20, 2))
    assert subset.tolist() != [0, 2, 4, 6]  # random, not the first four
    again = np.concatenate([shard_indices(cache, k, 3, max_images=4) for k in range(3)])
    assert again.tolist() == subset.tolist()  # the same images however they are sharded
    everything = np.concatenate([shard_indices(cache, k, 2, max_images=50) for k in range(2)])
    assert everything.tolist() == list(range(0, 20, 2))
    for smaller, larger in ((1, 4), (4, 7), (7, 10)):  # caps nest: fewer is a subset of more
        assert set(shard_indices(cache, 0, 1, max_images=smaller)) < set(
            shard_indices(cache, 0, 1, max_images=larger)
        )
    with pytest.raises(InputError, match="--max-images 0 must be at least 1"):
        shard_indices(cache, 0, 2, max_images=0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, build_model("resnet18").eval(), {"arch": "resnet18", "image_size": 32})
    return path


def test_shard_holds_the_maps_explain_gives(model_file, tiny_caches, tmp_path):
    cache = load_cache(tiny_caches["val"])
    model, _ = load_model(model_file)
    rows = shard_indices(cache, 1, 2)
    x = to_model_input(torch.from_numpy(cache.images[rows]))
    targets = torch.from_numpy(cache.label[rows])
    # In the shard's batches of 2: a convolution's float32 sums depend on the batch's size.
    expected = torch.cat(
        [
            explain(model, xs, ts, "gradcam", layer="layer4.1")
            for xs, ts in zip(x.split(2), targets.split(2), strict=True)
        ]
    )
    for dtype, tolerance in (("float32", 1e-6), ("float16", 1e-3)):
        out = tmp_path / f"{dtype}.h5"
        n = run_saliency(
            model_file,
            tiny_caches["val"],
            "my-gradcam",
            1,
            2,
            out,
            params=GRADCAM,
            device="cpu",
            dtype=dtype,
            batch_size=2,
        )
        shard = read_shard(out)
        assert n == len(rows) == len(shard.image_name)
        assert shard.image_name == [cache.image_name[i] for i in rows]
        assert shard.index.tolist() == rows.tolist() and set(shard.target.tolist()) == {1}
        peak = expected.abs().flatten(1).max(1).values.view(-1, 1, 1).numpy()
        assert np.abs(shard.maps - expected.numpy()).max() / peak.min() <= tolerance
        np.testing.assert_allclose(
            shard.prob, predict_probs(model, cache.images[rows], 8, torch.device("cpu")), atol=1e-5
        )
        assert shard.attrs["method"] == "my-gradcam"
        assert shard.attrs["params"] == '{"family": "gradcam", "layer": "layer4.1"}'
        assert shard.attrs["checkpoint_sha256"] == sha256_file(model_file)
        assert shard.attrs["input_size"] == 32 and shard.attrs["target_policy"] == "label"
        with h5py.File(out) as h5:
            assert h5["maps"].dtype == dtype and h5["maps"].chunks == (1, 32, 32)
            assert h5["maps"].compression == "gzip"


def test_a_shard_records_the_layers_it_probed_by_module_name(model_file, tiny_caches, tmp_path):
    """Aliases, and a layer left at its default, are written as the modules they resolved to."""
    combined = ["layer2.0", "layer3.0", "layer4.0", "layer4.1"]
    for params, recorded in (
        ({"family": "normgrad", "layers": ["combined"]}, {"layers": combined}),
        ({"family": "gradcam"}, {"layer": "layer4.1"}),
        ({"family": "gradcam", "layer": "last"}, {"layer": "layer4.1"}),
    ):
        out = tmp_path / "a.h5"
        run_saliency(model_file, tiny_caches["val"], "m", 0, 1, out, params=params, device="cpu")
        assert json.loads(read_shard(out).attrs["params"]) == {**params, **recorded}


def test_predicted_targets_and_all_images(model_file, tiny_caches, tmp_path):
    run_saliency(
        model_file,
        tiny_caches["val"],
        "gradcam",
        0,
        1,
        tmp_path / "p.h5",
        params=GRADCAM,
        target_policy="predicted",
        all_images=True,
        device="cpu",
    )
    shard = read_shard(tmp_path / "p.h5")
    assert len(shard.image_name) == len(load_cache(tiny_caches["val"]))
    np.testing.assert_array_equal(shard.target, (shard.prob > 0.5).astype(int))


def test_reader_checks_what_it_reads(model_file, tiny_caches, tmp_path):
    out = tmp_path / "s.h5"
    run_saliency(model_file, tiny_caches["val"], "gradcam", 0, 1, out, params=GRADCAM, device="cpu")
    with pytest.raises(InputError, match="shard has method 'gradcam', expected 'other'"):
        read_shard(out, expect={"method": "other"})
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(InputError, match="t.h5: not an HDF5 saliency shard|truncated"):
        read_shard(truncated)
    with pytest.raises(InputError, match="not an xiqa saliency shard"):
        read_shard(tiny_caches["val"])


def _saliency(model_file, images, out, *extra):
    return run_cli(
        "saliency",
        "--model",
        model_file,
        "--images",
        images,
        "--out",
        out,
        "--device",
        "cpu",
        *extra,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--method", "nonsense", "--shard", 0, "--n-shards", 1), "unknown method 'nonsense'"),
        (
            ("--method", "m", "--params", '{"family": "lime"}', "--shard", 0, "--n-shards", 1),
            "unknown saliency family 'lime'",
        ),
        (
            (
                "--method",
                "gradcam",
                "--params",
                '{"family": "gradcam", "layer": "layer9"}',
                "--shard",
                0,
                "--n-shards",
                1,
            ),
            "unknown layer 'layer9'",
        ),
        (
            ("--method", "gradcam", "--params", "{not json", "--shard", 0, "--n-shards", 1),
            "--params is not valid JSON",
        ),
        (
            (
                "--method",
                "gradcam",
                "--params",
                '{"family": "gradcam", "layer": "layer4.1"}',
                "--shard",
                2,
                "--n-shards",
                2,
            ),
            "--shard 2 is out of range for --n-shards 2",
        ),
    ],
)
def test_bad_saliency_requests(model_file, tiny_caches, tmp_path, extra, message):
    out = tmp_path / "s.h5"
    assert_one_line_error(_saliency(model_file, tiny_caches["val"], out, *extra), message)
    assert not out.exists() and list(tmp_path.iterdir()) == []


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_carrying_pickled_code_is_refused(tiny_caches, tmp_path, capfd):
    torch.save(
        {"format": "xiqa-model/1", "arch": "resnet18", "image_size": 32, "state_dict": _Exploit()},
        tmp_path / "evil.pt",
    )
    result = _saliency(
        tmp_path / "evil.pt",
        tiny_caches["val"],
        tmp_path / "s.h5",
        "--method",
        "gradcam",
        "--shard",
        0,
        "--n-shards",
        1,
    )
    assert_one_line_error(result, "evil.pt: not a loadable xiqa checkpoint")
    assert "this must never run" not in result.output + capfd.readouterr().out
    assert not (tmp_path / "s.h5").exists()
