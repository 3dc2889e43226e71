"""The tf.data reader against the official samples and datasets we write, and the array fast path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from metadata.arrays import DECODE_BATCH_BYTES, max_side, read_on, to_arrays
from metadata.check import check_dataset, read_solution
from metadata.errors import AutoDLDataError, RecordError, SampleCountError
from metadata.reader import AutoDLDataset, frame_positions

MINICIAO_TRAIN_COUNTS = [8, 8, 11, 6, 9, 6, 7, 9, 8, 10]
MONKEYS_TRAIN_COUNTS = [3, 3, 2, 1, 3, 3, 3, 2, 3, 3]


def _read_all(split_dir: Path) -> tuple[list[np.ndarray], np.ndarray]:
    xs, ys = [], []
    for x, y in AutoDLDataset(str(split_dir)).get_dataset().as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return xs, np.array(ys)


@pytest.mark.parametrize("name, counts, shape, n_test", [
    ("miniciao", MINICIAO_TRAIN_COUNTS, (1, 32, 32, 3), 18),
    ("Monkeys", MONKEYS_TRAIN_COUNTS, (1, None, None, 3), 4),
])
def test_official_samples(samples_dir: Path, name: str, counts: list[int], shape: tuple, n_test: int) -> None:
    data = samples_dir / name / f"{name}.data"
    ds = AutoDLDataset(str(data / "train")).get_dataset()
    assert isinstance(ds.element_spec, tuple) and len(ds.element_spec) == 2
    assert tuple(ds.element_spec[0].shape) == shape
    assert ds.element_spec[0].dtype == tf.float32 and tuple(ds.element_spec[1].shape) == (10,)
    xs, ys = _read_all(data / "train")
    assert len(xs) == sum(counts)
    assert ys.sum(0).tolist() == counts
    assert all(0.0 <= x.min() and x.max() <= 1.0 and x.shape[0] == 1 and x.shape[-1] == 3 for x in xs)
    test_xs, test_ys = _read_all(data / "test")
    assert len(test_xs) == n_test and not test_ys.any()


def test_parse_map_is_sequential_like_the_official_reader(samples_dir: Path) -> None:
    """The kit maps `_parse_function` without `num_parallel_calls`: a parallel parse here made every local read
    faster than the platform's, and hid what tf.data's default rewrites (which parallelize it) are worth."""
    ds = AutoDLDataset(str(samples_dir / "miniciao" / "miniciao.data" / "train")).get_dataset()
    kind = type(ds).__name__  # tf.data's own classes: _MapDataset, or _ParallelMapDataset with num_parallel_calls
    assert kind.endswith("MapDataset") and "Parallel" not in kind, kind


def test_monkeys_sizes_vary(samples_dir: Path) -> None:
    xs, _ = _read_all(samples_dir / "Monkeys/Monkeys.data/train")
    heights = {x.shape[1] for x in xs}
    assert min(heights) == 199 and max(heights) == 524


def test_max_side_reads_varying_sizes_and_trusts_a_static_shape(samples_dir: Path, make_array_dataset) -> None:
    split = AutoDLDataset(str(samples_dir / "Monkeys/Monkeys.data/train"))
    xs, _ = _read_all(samples_dir / "Monkeys/Monkeys.data/train")
    sides = [max(x.shape[1:3]) for x in xs]
    assert len(set(sides)) > 1
    for n in (1, 5, len(xs)):
        assert max_side(split, n) == max_side(split.get_dataset(), n) == max(sides[:n])
    assert max_side(split, len(xs), max_seconds=1e-9) == sides[0]  # time up after the first sample
    for enough in (sides[0], max(sides[:3])):  # reading stops at the first side that large
        first = next(i for i, side in enumerate(sides) if side >= enough)
        assert max_side(split, len(xs), enough=enough) == max(sides[:first + 1]) >= enough
    assert max_side(split, len(xs), enough=max(sides) + 1) == max(sides)  # never reached: all of them
    out, _ = make_array_dataset("side", shape=(9, 7, 3))
    train = AutoDLDataset(str(out / "side.data/train")).get_dataset()
    assert max_side(train, 3) == 9
    declared = tf.data.Dataset.from_tensors((tf.zeros([1, 12, 20, 3]), tf.zeros([2])))
    assert declared.element_spec[0].shape.is_fully_defined() and max_side(declared, 1) == 20
    junk = tf.data.Dataset.from_tensor_slices([b"not an image"]).map(
        lambda s: (tf.image.decode_png(s)[None], tf.zeros([2])))
    assert max_side(junk.take(0), 3) == 0  # nothing read, no size declared
    with pytest.raises(RecordError, match="could not be read or decoded"):
        max_side(junk, 3)


def test_max_side_reads_in_single_ops(samples_dir: Path, make_array_dataset, monkeypatch) -> None:
    """The peek never creates a Python iterator (0.05-0.1 s each over the platform's dataset): the first sample by
    `get_single_element`, the sides of the rest as one batch; the same answers as a read sample by sample."""
    xs, _ = _read_all(samples_dir / "Monkeys/Monkeys.data/train")
    sides = [max(x.shape[1:3]) for x in xs]
    out, _ = make_array_dataset("peek", n_train=70, shape=(9, 7, 3))
    fixed = AutoDLDataset(str(out / "peek.data/train")).get_dataset()

    def crop(i: tf.Tensor, element: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        side = 4 + 4 * tf.cast(tf.equal(i, 50), tf.int32)  # 4 px, but sample 50: 8 px (7 wide)
        return element[0][:, :side, :side], element[1]

    varying = fixed.enumerate().map(crop)
    monkeypatch.setattr(tf.data.Dataset, "__iter__", lambda self: pytest.fail("a Python iterator was created"))
    split = AutoDLDataset(str(samples_dir / "Monkeys/Monkeys.data/train")).get_dataset()
    for n in (1, 2, 8, 9, 20, len(xs), 100):
        assert max_side(split, n) == max(sides[:n])
    assert varying.element_spec[0].shape[-3] is None
    assert [max_side(varying, n) for n in (1, 8, 50, 51, 100)] == [4, 4, 4, 8, 8]  # 51+: the second read finds it
    assert max_side(varying, 100, enough=4) == 4  # settled by the first sample


def test_to_arrays_measures_the_images_own_side(samples_dir: Path, make_array_dataset) -> None:
    """`native_side`: the largest side before resizing among the samples read (varying sizes read one by one,
    a static shape from the shape); our reader decodes at the size asked: known from the metadata, else 0."""
    xs, _ = _read_all(samples_dir / "Monkeys/Monkeys.data/train")
    sides = [max(x.shape[1:3]) for x in xs]
    split = AutoDLDataset(str(samples_dir / "Monkeys/Monkeys.data/train"))
    assert to_arrays(split.get_dataset(), size=(8, 8)).native_side == max(sides)
    assert to_arrays(split.get_dataset(), size=(8, 8), max_samples=3).native_side >= max(sides[:3])
    assert to_arrays(split, size=(8, 8)).native_side == 0  # decoded straight at 8 px: not measured
    out, _ = make_array_dataset("native", n_train=10, shape=(9, 7, 3))
    fixed = AutoDLDataset(str(out / "native.data/train"))
    assert fixed.get_dataset().element_spec[0].shape.is_fully_defined()
    assert to_arrays(fixed.get_dataset(), size=(16, 16)).native_side == to_arrays(fixed, size=(4, 4)).native_side == 9


def test_read_on_goes_on_where_a_read_stopped(make_array_dataset) -> None:
    out, _ = make_array_dataset("on", n_train=50, shape=(9, 7, 3))
    ds = AutoDLDataset(str(out / "on.data/train")).get_dataset()
    whole = to_arrays(ds, size=(8, 8))
    part = to_arrays(ds, size=(8, 8), max_samples=30, batch_size=8, max_seconds=1e-9)  # one batch: time is up
    assert len(part) == 8 and not part.complete
    more = read_on(part, 20, max_seconds=1e-9)  # again one batch at least
    assert len(more) == 16 and not more.complete
    more = read_on(more, 20)  # 20 of the 24 read: four wait in `rest`
    assert len(more) == 20 and not more.complete
    end = read_on(more, 100)
    assert end.complete and end.rest is None and len(end) == 50
    np.testing.assert_array_equal(end.x, whole.x)
    np.testing.assert_array_equal(end.y, whole.y)
    assert read_on(end, 100) is end  # nothing after it


def test_compressed_round_trip_rgb_and_gray(make_array_dataset) -> None:
    for shape in ((9, 7, 3), (9, 7, 1)):
        out, arrays = make_array_dataset(f"rt{shape[-1]}", shape=shape)
        train = AutoDLDataset(str(out / f"rt{shape[-1]}.data/train"))
        assert train.get_metadata().get_tensor_shape() == (1, 9, 7, shape[-1])
        got = to_arrays(train)
        assert got.complete and got.x.dtype == np.uint8 and got.x.shape == (12, 1, 9, 7, shape[-1])
        # Train is shuffled: match samples by content; labels must travel with their image.
        index = {arr.tobytes(): i for i, arr in enumerate(arrays["x_train"])}
        for x, y in zip(got.x, got.y):
            i = index[x[0].tobytes()]
            assert np.argmax(y) == arrays["y_train"][i] and y.sum() == 1
        test = to_arrays(AutoDLDataset(str(out / f"rt{shape[-1]}.data/test")))
        np.testing.assert_array_equal(test.x[:, 0], arrays["x_test"])  # test order is preserved
        assert not test.y.any()
        solution = read_solution(str(out / f"rt{shape[-1]}.solution"))
        np.testing.assert_array_equal(solution.argmax(1), arrays["y_test"])


def test_dense_round_trip_matches_float_reader(make_array_dataset) -> None:
    out, arrays = make_array_dataset("dense", fmt="dense", shape=(5, 6, 1))
    test = AutoDLDataset(str(out / "dense.data/test"))
    assert not test.get_metadata().is_compressed()
    np.testing.assert_array_equal(to_arrays(test).x[:, 0], arrays["x_test"])
    floats, _ = _read_all(out / "dense.data/test")
    np.testing.assert_allclose(np.stack(floats)[:, 0], arrays["x_test"] / 255.0, atol=1e-6)


def test_video_round_trip(make_array_dataset) -> None:
    out, arrays = make_array_dataset("video", shape=(4, 6, 6, 3))
    test = AutoDLDataset(str(out / "video.data/test"))
    meta = test.get_metadata()
    assert meta.get_tensor_shape() == (4, 6, 6, 3) and meta.metadata_.is_sequence
    np.testing.assert_array_equal(to_arrays(test).x, arrays["x_test"])
    floats, _ = _read_all(out / "video.data/test")
    assert floats[0].shape == (4, 6, 6, 3)


def test_multilabel_round_trip(make_array_dataset) -> None:
    out, arrays = make_array_dataset("multi", multilabel=True, classes=4)
    train = to_arrays(AutoDLDataset(str(out / "multi.data/train")))
    assert sorted(map(tuple, train.y.astype(int))) == sorted(map(tuple, arrays["y_train"]))
    np.testing.assert_array_equal(read_solution(str(out / "multi.solution")), arrays["y_test"])
    assert check_dataset(str(out)).splits["train"].multilabel


@pytest.mark.parametrize("shards", [2, 5])
def test_shards_solution_follows_read_order(make_array_dataset, shards: int) -> None:
    out, arrays = make_array_dataset("sharded", n_train=20, n_test=17, shards=shards, classes=5)
    test = AutoDLDataset(str(out / "sharded.data/test"))
    assert len(test.files) == shards
    got = to_arrays(test)
    solution = read_solution(str(out / "sharded.solution"))
    assert len(got) == 17
    index = {arr.tobytes(): i for i, arr in enumerate(arrays["x_test"])}
    for row, x in enumerate(got.x):
        assert solution[row].argmax() == arrays["y_test"][index[x[0].tobytes()]]


def test_to_arrays_on_official_style_dataset(samples_dir: Path) -> None:
    """The platform hands a bare tf.data.Dataset; the fast path must take it and agree with ours."""
    split = AutoDLDataset(str(samples_dir / "Monkeys/Monkeys.data/train"))
    ours = to_arrays(split, size=(48, 40))
    bare = to_arrays(split.get_dataset(), size=(48, 40))
    assert ours.x.shape == bare.x.shape == (26, 1, 48, 40, 3)
    assert np.abs(ours.x.astype(int) - bare.x).max() <= 1  # rounding order differs by at most 1
    np.testing.assert_array_equal(ours.y, bare.y)


def test_platform_objects_of_one_shape_are_converted_a_batch_at_a_time(make_array_dataset) -> None:
    """Clips of one static shape: whole batches are converted; the values, the limits and the count of
    samples outside [0, 1] are those of converting sample by sample."""
    out, arrays = make_array_dataset("batched", n_train=70, n_test=3, shape=(3, 10, 12, 3))
    split = AutoDLDataset(str(out / "batched.data/train"))
    for size in ((10, 12), (6, 5)):
        got = to_arrays(split.get_dataset(), size=size, batch_size=16)
        expected = np.stack([tf.cast(tf.round(tf.clip_by_value(tf.image.resize(x, size, antialias=True), 0.0, 1.0)
                                              * 255.0), tf.uint8).numpy() for x, _ in split.get_dataset()])
        assert got.x.shape == (70, 3, *size, 3) and got.complete
        np.testing.assert_array_equal(got.x, expected)
        few = to_arrays(split.get_dataset(), size=size, max_samples=21, batch_size=16)
        assert len(few) == 21 and not few.complete
        np.testing.assert_array_equal(few.x, expected[:21])
    # values beyond [0, 1] (a dataset on another scale) are counted per sample
    doubled = split.get_dataset().map(lambda x, y: (tf.where(tf.range(3)[:, None, None, None] == 0, 2 * x, x), y))
    beyond = int((arrays["x_train"][:, 0] > 127.5).any(axis=(1, 2, 3)).sum())  # 2x above 1 in the first frame
    assert 0 < beyond and to_arrays(doubled, batch_size=16).out_of_range == beyond


def test_frame_positions_are_the_uniform_sampling_of_the_learner() -> None:
    from learner.video import sample_frame_indices

    for t in range(1, 200):
        for k in (1, 2, 3, 4, 7, 8, 16, 32):
            expected = np.arange(t) if t <= k else sample_frame_indices(t, k, "uniform")
            np.testing.assert_array_equal(frame_positions(t, k), expected, err_msg=f"t={t}, k={k}")
            if t in (1, 2, 5, 16, 17, 33, 181):  # an unknown length: the same frames from tensor ops
                np.testing.assert_array_equal(frame_positions(tf.constant(t), k).numpy(), expected, err_msg=f"t={t}")


@pytest.mark.parametrize("fmt", ["compressed", "dense"])
def test_clips_keep_evenly_spaced_frames_on_every_path(make_array_dataset, fmt: str) -> None:
    """Ours (only the kept frames are decoded), the platform's float objects (kept before conversion), and the
    stream: the same frames as decoding every frame and picking them; clips no longer than `frames` unchanged."""
    out, arrays = make_array_dataset("clips", n_train=9, n_test=2, shape=(11, 6, 6, 3), fmt=fmt)
    split = AutoDLDataset(str(out / "clips.data/train"))
    everything = to_arrays(split).x
    picked = everything[:, frame_positions(11, 4)]
    assert picked.shape == (9, 4, 6, 6, 3)
    np.testing.assert_array_equal(to_arrays(split, frames=4).x, picked)
    np.testing.assert_array_equal(to_arrays(split.get_dataset(), frames=4).x, picked)
    np.testing.assert_array_equal(to_arrays(split, frames=11).x, everything)
    np.testing.assert_array_equal(to_arrays(split, frames=20).x, everything)
    resized = to_arrays(split, size=(4, 4)).x[:, frame_positions(11, 3)]
    np.testing.assert_array_equal(to_arrays(split, size=(4, 4), frames=3).x, resized)
    from metadata.arrays import uint8_batches
    x, _ = next(uint8_batches(split, size=(6, 6), batch_size=3, frames=4, shuffle_buffer=1))
    assert x.shape == (3, 4, 6, 6, 3)


def test_clips_shorter_than_the_sequence_are_padded_before_frames_are_kept(tmp_path: Path) -> None:
    """A record with fewer frames than `sequence_size` is padded with zero frames (data.proto); keeping frames
    picks among the padded sequence, so a padding position gives a zero frame."""
    from metadata.convert import convert_arrays

    x = np.full((2, 4, 5, 5, 1), 200, np.uint8)
    convert_arrays(x, np.array([0, 1]), x, np.array([0, 1]), str(tmp_path / "pad"), name="pad", progress=False)
    meta = tmp_path / "pad" / "pad.data" / "train" / "metadata.textproto"
    meta.write_text(meta.read_text().replace("sequence_size: 4", "sequence_size: 7"))
    split = AutoDLDataset(str(tmp_path / "pad" / "pad.data" / "train"))
    full = to_arrays(split).x
    assert full.shape == (2, 7, 5, 5, 1) and full[:, :4].min() == 200 and full[:, 4:].max() == 0
    np.testing.assert_array_equal(to_arrays(split, frames=3).x, full[:, frame_positions(7, 3)])


def test_long_clips_are_converted_in_batches_bounded_in_bytes_and_reads_stop_on_time(make_array_dataset) -> None:
    out, _ = make_array_dataset("long", n_train=30, n_test=2, shape=(30, 96, 96, 3))
    split = AutoDLDataset(str(out / "long.data/train"))
    bound = DECODE_BATCH_BYTES // (30 * 96 * 96 * 3 * 4)  # float32 clips per conversion batch
    assert bound < 30
    got = to_arrays(split.get_dataset(), frames=8, batch_size=64)
    assert got.x.shape == (30, 8, 96, 96, 3) and got.complete
    quick = to_arrays(split.get_dataset(), max_seconds=1e-9, batch_size=64)  # one batch, then the time is up
    assert len(quick) == bound and not quick.complete
    mine = to_arrays(split, max_seconds=1e-9, batch_size=4)
    assert len(mine) == 4 and not mine.complete


def test_variable_sizes_need_a_size(samples_dir: Path) -> None:
    with pytest.raises(ValueError, match="different shapes"):
        to_arrays(AutoDLDataset(str(samples_dir / "Monkeys/Monkeys.data/train")))


def test_to_arrays_limits(samples_dir: Path) -> None:
    split = AutoDLDataset(str(samples_dir / "miniciao/miniciao.data/train"))
    few = to_arrays(split, max_samples=10)
    assert len(few) == 10 and not few.complete
    capped = to_arrays(split, max_bytes=20 * 32 * 32 * 3, batch_size=8)
    assert len(capped) == 20 and not capped.complete
    floats = to_arrays(split, dtype="float32", max_samples=5)
    assert floats.x.dtype == np.float32 and floats.x.max() <= 1.0
    everything = to_arrays(split)
    assert everything.complete and len(everything) == 82
    np.testing.assert_array_equal(everything.x[:10], few.x)


def test_sparse_records_parse_like_the_kit(tmp_path: Path) -> None:
    split = tmp_path / "sparse.data" / "train"
    split.mkdir(parents=True)
    (split / "metadata.textproto").write_text(
        "is_sequence: false\nsample_count: 1\nsequence_size: 1\noutput_dim: 2\n"
        "matrix_spec {\n  col_count: 100\n  row_count: 1\n  num_channels: 1\n  format: SPARSE\n}\n")

    def ints(v: list[int]) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    record = tf.train.SequenceExample(
        context=tf.train.Features(feature={"label_index": ints([1]), "label_score": tf.train.Feature(
            float_list=tf.train.FloatList(value=[1.0]))}),
        feature_lists=tf.train.FeatureLists(feature_list={
            "0_sparse_col_index": tf.train.FeatureList(feature=[ints([3, 40])]),
            "0_sparse_row_index": tf.train.FeatureList(feature=[ints([0, 0])]),
            "0_sparse_channel_index": tf.train.FeatureList(feature=[ints([0, 0])]),
            "0_sparse_value": tf.train.FeatureList(feature=[tf.train.Feature(
                float_list=tf.train.FloatList(value=[0.5, 2.0]))]),
        }))
    with tf.io.TFRecordWriter(str(split / "sample-sparse-train.tfrecord")) as w:
        w.write(record.SerializeToString())
    (x, y), = AutoDLDataset(str(split)).get_dataset().as_numpy_iterator()
    # Tabular sparse data comes out as (column index, value) rows of shape [1, nnz, 2, 1].
    np.testing.assert_array_equal(x[0, :, :, 0], [[3, 0.5], [40, 2.0]])
    np.testing.assert_array_equal(y, [0, 1])


# -- bad input --------------------------------------------------------------------------------------

def test_truncated_tfrecord_names_file_and_record(make_array_dataset) -> None:
    out, _ = make_array_dataset("trunc")
    path = out / "trunc.data/test/sample-trunc-test.tfrecord"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    split = AutoDLDataset(str(out / "trunc.data/test"))
    with pytest.raises(RecordError, match=r"sample-trunc-test\.tfrecord: record 5 ") as info:
        to_arrays(split)
    assert info.value.index == 5 and info.value.path.endswith("sample-trunc-test.tfrecord")
    with pytest.raises(RecordError, match="record 5"):
        check_dataset(str(out))


def test_corrupt_record_crc_is_reported(make_array_dataset) -> None:
    out, _ = make_array_dataset("crc")
    path = out / "crc.data/test/sample-crc-test.tfrecord"
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside record 0's payload
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=r"sample-crc-test\.tfrecord: record 0 "):
        to_arrays(AutoDLDataset(str(out / "crc.data/test")))


def test_undecodable_image_in_record_is_reported(tmp_path: Path, make_array_dataset) -> None:
    out, _ = make_array_dataset("bad")
    split = out / "bad.data/test"
    path = split / "sample-bad-test.tfrecord"
    records = [r.numpy() for r in tf.data.TFRecordDataset([str(path)])]
    broken = tf.train.SequenceExample.FromString(records[2])
    broken.feature_lists.feature_list["0_compressed"].feature[0].bytes_list.value[0] = b"\x89PNG not an image"
    records[2] = broken.SerializeToString()
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    with pytest.raises(RecordError, match=r"sample-bad-test\.tfrecord: record 2 does not parse or decode"):
        to_arrays(AutoDLDataset(str(split)))


def test_sample_count_mismatch(make_array_dataset) -> None:
    out, _ = make_array_dataset("count")
    meta = out / "count.data/train/metadata.textproto"
    meta.write_text(meta.read_text().replace("sample_count: 12", "sample_count: 13"))
    with pytest.raises(SampleCountError, match=r"count\.data/train.*sample_count is 13.*hold 12"):
        to_arrays(AutoDLDataset(str(out / "count.data/train")))
    with pytest.raises(SampleCountError, match=r"metadata\.textproto: sample_count is 13"):
        check_dataset(str(out))


@pytest.mark.parametrize("content, match", [
    ("1 0 0\n" * 5, "5 rows x 3 columns, expected 6 rows"),
    ("1 0\n" * 6, "6 rows x 2 columns, expected 6 rows .* x 3 columns"),
    ("1 0 2\n" * 6, "values must be 0 or 1"),
])
def test_bad_solution(make_array_dataset, content: str, match: str) -> None:
    out, _ = make_array_dataset("sol")
    (out / "sol.solution").write_text(content)
    with pytest.raises(AutoDLDataError, match=r"sol\.solution: .*" + match):
        check_dataset(str(out))


def test_missing_shards_is_an_error(tmp_path: Path, make_array_dataset) -> None:
    out, _ = make_array_dataset("noshard")
    os.remove(out / "noshard.data/test/sample-noshard-test.tfrecord")
    with pytest.raises(AutoDLDataError, match=r"noshard\.data/test: no TFRecord files"):
        AutoDLDataset(str(out / "noshard.data/test"))
