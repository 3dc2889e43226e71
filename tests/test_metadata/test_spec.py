"""Metadata parsing, the official `AutoDLMetadata` interface, text layout and bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from metadata.errors import MetadataError
from metadata.spec import AutoDLMetadata, DataSpecification, metadata_to_text, parse_metadata_text, read_metadata_file


def test_miniciao_metadata_values(samples_dir: Path) -> None:
    train = AutoDLMetadata(str(samples_dir / "miniciao/miniciao.data/train"))
    test = AutoDLMetadata(str(samples_dir / "miniciao/miniciao.data/test"))
    assert train.get_tensor_shape() == (1, 32, 32, 3)
    assert train.size() == 82 and test.size() == 18
    assert train.get_output_size() == 10
    assert train.is_compressed() and not train.is_sparse()
    assert train.get_bundle_size() == 1
    assert train.get_matrix_size() == (32, 32)
    assert train.get_tensor_size() == (32, 32, 3)
    assert train.get_sequence_size() == 1
    assert dict(train.get_label_to_index_map())["cat"] == 3
    assert train.get_class_names()[:3] == ["airplane", "automobile", "bird"]
    assert train.get_dataset_name().endswith("miniciao.data/train")


def test_monkeys_metadata_defaults(samples_dir: Path) -> None:
    meta = AutoDLMetadata(str(samples_dir / "Monkeys/Monkeys.data/train"))
    assert meta.get_tensor_shape() == (1, -1, -1, 3)  # num_channels unset -> 3 for COMPRESSED
    assert meta.metadata_.matrix_spec[0].num_channels == -1
    assert meta.size() == 26 and meta.get_output_size() == 10
    assert len(meta.get_label_to_index_map()) == 0


def test_num_channels_default_is_one_for_dense() -> None:
    spec = parse_metadata_text("output_dim: 2 sample_count: 1 matrix_spec { row_count: 4 col_count: 4 }")
    assert AutoDLMetadata("x", spec).get_num_channels() == 1


def test_text_layout_matches_official_file(samples_dir: Path) -> None:
    path = samples_dir / "Monkeys/Monkeys.data/train/metadata.textproto"
    assert metadata_to_text(read_metadata_file(str(path))) == path.read_text()
    mini = samples_dir / "miniciao/miniciao.data/train/metadata.textproto"
    spec = read_metadata_file(str(mini))
    text = metadata_to_text(spec)
    assert parse_metadata_text(text) == spec
    # Same lines as the kit's file; only the order of the label-map blocks (hash order there) differs.
    assert text.splitlines()[:14] == mini.read_text().splitlines()[:14]
    assert sorted(text.splitlines()) == sorted(mini.read_text().splitlines())


def test_label_names_with_quotes_round_trip() -> None:
    spec = parse_metadata_text("output_dim: 2 sample_count: 3 matrix_spec { format: COMPRESSED "
                               "row_count: -1 col_count: -1 }")
    spec.label_to_index_map["it's \\ odd"] = 1
    assert parse_metadata_text(metadata_to_text(spec)) == spec


def test_missing_metadata_names_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"metadata\.textproto: metadata file not found"):
        read_metadata_file(str(tmp_path))


def test_malformed_metadata_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "metadata.textproto"
    path.write_text("output_dim: 3\nsample_cont: 4\n")
    with pytest.raises(MetadataError, match=r"metadata\.textproto: malformed metadata: 2:"):
        read_metadata_file(str(path))


@pytest.mark.parametrize("text, field", [
    ("sample_count: 1 matrix_spec { format: COMPRESSED }", "output_dim"),
    ("output_dim: 0 sample_count: 1 matrix_spec { }", "output_dim"),
    ("output_dim: 2 matrix_spec { }", "sample_count"),
    ("output_dim: 2 sample_count: 1", "matrix_spec"),
    ("output_dim: 2 sample_count: 1 matrix_spec { row_count: -5 col_count: 3 }", r"matrix_spec\[0\]\.row_count"),
    ("output_dim: 2 sample_count: 1 matrix_spec { row_count: -1 col_count: -1 format: DENSE }", r"matrix_spec\[0\]"),
    ("output_dim: 2 sample_count: 1 sequence_size: 0 matrix_spec { format: COMPRESSED }", "sequence_size"),
    ("output_dim: 2 sample_count: 1 matrix_spec { format: COMPRESSED } "
     "label_to_index_map { key: 'a' value: 5 }", "label_to_index_map"),
])
def test_invalid_fields_are_named(text: str, field: str) -> None:
    with pytest.raises(MetadataError, match=rf"meta\.txt: field '{field}"):
        parse_metadata_text(text, source="meta.txt")


def test_coexists_with_official_autodl_proto(tmp_path: Path) -> None:
    """The platform registers `autodl.DataSpecification` first; ours must still import and parse."""
    (tmp_path / "data.proto").write_text(textwrap.dedent("""
        syntax = "proto2";
        package autodl;
        message MatrixSpec { optional int32 col_count = 1; optional int32 row_count = 2; }
        message DataSpecification { repeated MatrixSpec matrix_spec = 1; optional int32 output_dim = 3;
                                    optional int32 sample_count = 7; }
    """))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
                    "data.proto"], check=True)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import data_pb2  # the official module, registered first
        from metadata.spec import parse_metadata_text
        spec = parse_metadata_text("output_dim: 3 sample_count: 2 matrix_spec {{ format: COMPRESSED }}")
        official = data_pb2.DataSpecification()
        from google.protobuf import text_format
        text_format.Merge("output_dim: 3 sample_count: 2", official)
        print(spec.output_dim, official.output_dim)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "3"]


def test_generated_module_is_current() -> None:
    """`metadata/autodl_data_pb2.py` was generated from the committed .proto (run `make proto`)."""
    import metadata.autodl_data_pb2 as pb

    proto = (Path(__file__).resolve().parents[2] / "metadata/autodl_data.proto").read_text()
    for field in DataSpecification.DESCRIPTOR.fields:
        assert f" {field.name} = {field.number}" in proto
    assert pb.DESCRIPTOR.package == "autodl_submission"
