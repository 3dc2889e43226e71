"""Converters: real image folders from the pool, arrays, videos, TFDS; and their bad input."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from metadata import convert
from metadata.arrays import to_arrays
from metadata.check import check_dataset, format_report, main as check_main, read_solution
from metadata.errors import DatasetExistsError, SourceError
from metadata.reader import AutoDLDataset


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("dataset, classes, channels", [
    ("mnist", "0,3,7", 1),
    ("cifar10", "airplane,cat,ship", 3),
])
def test_pool_subset_converts_and_checks(raw_dir: Path, tmp_path: Path, dataset: str, classes: str,
                                         channels: int, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / dataset
    code = convert.main(["folders", str(raw_dir / dataset), str(out), "--classes", classes,
                         "--max-per-class", "20", "--no-progress"])
    assert code == 0
    report = check_dataset(str(out))
    assert report.output_dim == 3 and report.shape[-1] == channels
    assert report.splits["train"].count == 60 and report.splits["test"].count == 15
    assert (out / f"{dataset}_label.name").read_text().split() == classes.split(",")
    assert check_main([str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    # Encoded bytes are stored as they are: the first test record holds a file of the source folder.
    record = next(iter(tf.data.TFRecordDataset([str(out / f"{dataset}.data/test/sample-{dataset}-test.tfrecord")])))
    stored = tf.train.SequenceExample.FromString(record.numpy()).feature_lists.feature_list["0_compressed"]
    stored_bytes = stored.feature[0].bytes_list.value[0]
    sources = {p.read_bytes() for c in classes.split(",") for p in (raw_dir / dataset / "test" / c).iterdir()}
    assert stored_bytes in sources


def test_flat_layout_gets_stratified_split(raw_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "flat"
    for cls, n in (("daisy", 10), ("rose", 5)):
        (src / cls).mkdir(parents=True)
        for p in sorted((raw_dir / "flowers/train" / cls).iterdir())[:n]:
            shutil.copy(p, src / cls / p.name)
    summary = convert.convert_image_folders(str(src), str(tmp_path / "out"), name="fl", test_fraction=0.2,
                                            progress=False)
    assert summary.test.label_counts.tolist() == [2, 1]
    assert summary.train.label_counts.tolist() == [8, 4]
    assert check_dataset(str(tmp_path / "out")).shape == (1, 128, 128, 3)


def test_existing_output_is_not_overwritten(make_array_dataset, tmp_path: Path) -> None:
    out, _ = make_array_dataset("keep")
    before = (out / "keep.solution").read_bytes()
    x = np.zeros((4, 5, 5), np.uint8)
    with pytest.raises(DatasetExistsError, match=r"keep: already exists"):
        convert.convert_arrays(x, [0, 1, 0, 1], x, [0, 1, 0, 1], str(out), name="keep", progress=False)
    assert (out / "keep.solution").read_bytes() == before
    convert.convert_arrays(x, [0, 1, 0, 1], x, [0, 1, 0, 1], str(out), name="keep", progress=False,
                           overwrite=True)
    assert (out / "keep.solution").read_text() == "1 0\n0 1\n1 0\n0 1\n"
    assert not list(tmp_path.glob(".*tmp-*"))


def test_failed_conversion_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    (src / "a" / "ok.png").write_bytes(_png(np.zeros((4, 4), np.uint8)))
    (src / "a" / "ok2.png").write_bytes(_png(np.zeros((4, 4), np.uint8)))
    (src / "b" / "fine.png").write_bytes(_png(np.ones((4, 4), np.uint8)))
    (src / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(SourceError, match=r"broken\.png: image does not decode"):
        convert.convert_image_folders(str(src), str(tmp_path / "out"), test_fraction=0.5, progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*tmp-*"))


def test_cli_reports_bad_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert convert.main(["folders", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "nowhere: source folder does not exist" in capsys.readouterr().err


def test_unreadable_folder_and_empty_class(tmp_path: Path) -> None:
    (tmp_path / "src/a").mkdir(parents=True)
    (tmp_path / "src/b").mkdir()
    for i in range(3):
        (tmp_path / f"src/a/{i}.png").write_bytes(_png(np.zeros((4, 4), np.uint8)))
    with pytest.raises(SourceError, match=r"without image files in the train split: b"):
        convert.convert_image_folders(str(tmp_path / "src"), str(tmp_path / "out"), progress=False)
    with pytest.raises(SourceError, match=r"no class folder named zebra"):
        convert.convert_image_folders(str(tmp_path / "src"), str(tmp_path / "out"), classes=["zebra"],
                                      progress=False)


def test_other_formats_are_reencoded_losslessly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    for cls in ("a", "b"):
        (tmp_path / f"src/train/{cls}").mkdir(parents=True)
        (tmp_path / f"src/test/{cls}").mkdir(parents=True)
    for i, img in enumerate(images):
        split = "train" if i < 2 else "test"
        Image.fromarray(img).save(tmp_path / f"src/{split}/{'ab'[i % 2]}/{i}.tiff")
    convert.convert_image_folders(str(tmp_path / "src"), str(tmp_path / "out"), name="tif", progress=False)
    test = to_arrays(AutoDLDataset(str(tmp_path / "out/tif.data/test")))
    got = {x[0].tobytes() for x in test.x}
    assert got == {images[2].tobytes(), images[3].tobytes()}


def test_npz_gray_images_and_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "arrays.npz"
    x_train, x_test = rng.integers(0, 256, (10, 7, 7), np.uint8), rng.integers(0, 256, (4, 7, 7), np.uint8)
    np.savez(path, x_train=x_train, y_train=np.arange(10) % 2, x_test=x_test, y_test=[0, 1, 1, 0],
             class_names=np.array(["even", "odd"]))
    assert convert.main(["npz", str(path), str(tmp_path / "npz"), "--no-progress"]) == 0
    test = to_arrays(AutoDLDataset(str(tmp_path / "npz/npz.data/test")))
    np.testing.assert_array_equal(test.x[:, 0, :, :, 0], x_test)
    assert read_solution(str(tmp_path / "npz/npz.solution")).argmax(1).tolist() == [0, 1, 1, 0]
    assert (tmp_path / "npz/npz_label.name").read_text() == "even\nodd\n"


@pytest.mark.parametrize("arrays, match", [
    (dict(x_train=np.zeros((3, 4, 4, 5)), y_train=[0, 1, 0]), "5 channels"),
    (dict(x_train=np.zeros((3, 4, 4)), y_train=[0, 1]), "3 samples but y_train has 2"),
    (dict(x_train=np.full((3, 4, 4), 2.0), y_train=[0, 1, 0]), r"must lie in \[0, 1\]"),
    (dict(x_train=np.zeros((3, 4, 4)), y_train=[[0, 2], [1, 0], [0, 1]]), "only 0 and 1"),
    (dict(x_train=np.zeros((3, 4, 4)), y_train=[0, -1, 0]), "negative class index"),
])
def test_npz_bad_arrays(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_test=np.zeros((2, 4, 4)), y_test=[0, 1], **arrays)
    with pytest.raises(SourceError, match=r"bad\.npz.*" + match):
        convert.convert_npz(str(path), str(tmp_path / "out"), progress=False)


def test_npz_missing_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", x_train=np.zeros((2, 3, 3)))
    with pytest.raises(SourceError, match=r"m\.npz: missing array\(s\) y_train, x_test, y_test"):
        convert.convert_npz(str(tmp_path / "m.npz"), str(tmp_path / "out"))


def test_video_folders_resampled_to_common_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    clips = {}
    for split, n_clips in (("train", 3), ("test", 2)):
        for cls in ("walk", "run"):
            for c in range(n_clips):
                length = 3 + c * 2  # 3, 5, 7 frames
                frames = rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8)
                folder = tmp_path / "src" / split / cls / f"clip{c}"
                folder.mkdir(parents=True)
                for k, frame in enumerate(frames):
                    (folder / f"frame{k}.png").write_bytes(_png(frame))  # natural order: 2 < 10
                clips[(split, cls, c)] = frames
    convert.main(["videos", str(tmp_path / "src"), str(tmp_path / "vid"), "--frames", "4", "--no-progress"])
    report = check_dataset(str(tmp_path / "vid"))
    assert report.shape == (4, 8, 8, 3)
    test = to_arrays(AutoDLDataset(str(tmp_path / "vid/vid.data/test")))
    firsts = {clips[("test", cls, c)][0].tobytes(): clips[("test", cls, c)] for cls in ("walk", "run") for c in (0, 1)}
    for x in test.x:
        frames = firsts[x[0].tobytes()]
        np.testing.assert_array_equal(x[-1], frames[-1])  # uniform resampling keeps both ends


def test_tfds_with_offline_mock_data(tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=8):
        summary = convert.convert_tfds("mnist", str(tmp_path / "tm"), progress=False)
    report = check_dataset(str(tmp_path / "tm"))
    assert summary.train.count == 8 and report.shape == (1, 28, 28, 1) and report.output_dim == 10
    assert "OK" in format_report(report)
