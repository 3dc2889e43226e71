"""`metadata.textproto`: parsing, validation and the official `AutoDLMetadata` interface."""

from __future__ import annotations

import os
from collections.abc import Mapping

from google.protobuf import text_format

from metadata import autodl_data_pb2 as pb
from metadata.errors import MetadataError

__all__ = [
    "METADATA_FILENAME",
    "DataSpecification",
    "MatrixSpec",
    "AutoDLMetadata",
    "parse_metadata_text",
    "read_metadata_file",
    "metadata_to_text",
]

METADATA_FILENAME = "metadata.textproto"
DataSpecification = pb.DataSpecification
MatrixSpec = pb.MatrixSpec


def parse_metadata_text(text: str, source: str = "<string>") -> pb.DataSpecification:
    """Parse and validate the text of a `metadata.textproto`.

    Raises:
        MetadataError: naming `source` and the offending line or field.
    """
    spec = pb.DataSpecification()
    try:
        text_format.Merge(text, spec)
    except text_format.ParseError as exc:
        raise MetadataError(f"{source}: malformed metadata: {exc}") from exc
    _validate(spec, source)
    return spec


def read_metadata_file(path: str) -> pb.DataSpecification:
    """Read `path` (a `metadata.textproto`, or a split folder holding one)."""
    if os.path.isdir(path):
        path = os.path.join(path, METADATA_FILENAME)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        raise MetadataError(f"{path}: metadata file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{path}: cannot read metadata: {exc}") from exc
    return parse_metadata_text(text, source=path)


def metadata_to_text(spec: pb.DataSpecification) -> str:
    """Serialise in the layout of the official files (field order, single quotes, final blank line).

    Scalars come first in the kit's order, then each `matrix_spec` block, then the maps sorted by
    index. A spec parsed from an official file without maps is reproduced byte for byte.
    """
    def scalar(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def quote(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    lines = []
    for name in ("is_sequence", "sample_count", "sequence_size", "output_dim"):
        if spec.HasField(name):
            lines.append(f"{name}: {scalar(getattr(spec, name))}")
    for m in spec.matrix_spec:
        lines.append("matrix_spec {")
        for name in ("col_count", "row_count", "num_channels", "is_sequence_col", "is_sequence_row",
                     "has_locality_col", "has_locality_row", "format", "is_sparse"):
            if m.HasField(name):
                value = MatrixSpec.Format.Name(m.format) if name == "format" else scalar(getattr(m, name))
                lines.append(f"  {name}: {value}")
        lines.append("}")
    for map_name in ("label_to_index_map", "feature_to_index_map", "channel_to_index_map"):
        for key, value in sorted(getattr(spec, map_name).items(), key=lambda kv: (kv[1], kv[0])):
            lines += [f"{map_name} {{", f"  key: {quote(key)}", f"  value: {value}", "}"]
    return "\n".join(lines) + "\n\n"


def _validate(spec: pb.DataSpecification, source: str) -> None:
    def fail(field: str, problem: str) -> None:
        raise MetadataError(f"{source}: field '{field}' {problem}")

    if not spec.HasField("output_dim"):
        fail("output_dim", "is missing")
    if spec.output_dim < 1:
        fail("output_dim", f"must be >= 1, got {spec.output_dim}")
    if not spec.HasField("sample_count"):
        fail("sample_count", "is missing")
    if spec.sample_count < 0:
        fail("sample_count", f"must be >= 0, got {spec.sample_count}")
    if len(spec.matrix_spec) == 0:
        fail("matrix_spec", "is missing (one block per matrix bundle is required)")
    if spec.sequence_size == 0 or spec.sequence_size < -1:
        fail("sequence_size", f"must be >= 1 (or -1 for variable), got {spec.sequence_size}")
    for i, m in enumerate(spec.matrix_spec):
        for name in ("row_count", "col_count"):
            value = getattr(m, name)
            if value < -1:  # 0 (unset) and -1 both mean "varies", as the official reader reads them
                fail(f"matrix_spec[{i}].{name}", f"must be >= 1, or -1 when sizes vary, got {value}")
        if m.num_channels == 0 or m.num_channels < -1:
            fail(f"matrix_spec[{i}].num_channels", f"must be >= 1 or -1 (unset), got {m.num_channels}")
        if m.format == MatrixSpec.DENSE and (m.row_count < 1 or m.col_count < 1):
            fail(f"matrix_spec[{i}]", "DENSE data needs fixed row_count and col_count")
    for key, value in spec.label_to_index_map.items():
        if not 0 <= value < spec.output_dim:
            fail("label_to_index_map", f"maps {key!r} to {value}, outside [0, {spec.output_dim})")


class AutoDLMetadata:
    """The official `AutoDLMetadata` interface over a parsed `DataSpecification`.

    Method names, defaults (`bundle_index=0`) and return values follow the AutoDL kit, so code
    written against the platform's object works with ours and vice versa.

    Args:
        dataset_name: the split folder holding `metadata.textproto`; returned as is by
            `get_dataset_name()` (the platform passes a path, not a bare name).
        spec: an already parsed specification; read from `dataset_name` when omitted.
    """

    def __init__(self, dataset_name: str, spec: pb.DataSpecification | None = None):
        self.dataset_name_ = dataset_name
        self.metadata_ = spec if spec is not None else read_metadata_file(dataset_name)

    def get_dataset_name(self) -> str:
        return self.dataset_name_

    def is_compressed(self, bundle_index: int = 0) -> bool:
        return self.metadata_.matrix_spec[bundle_index].format == MatrixSpec.COMPRESSED

    def is_sparse(self, bundle_index: int = 0) -> bool:
        return self.metadata_.matrix_spec[bundle_index].format == MatrixSpec.SPARSE

    def get_bundle_size(self) -> int:
        return len(self.metadata_.matrix_spec)

    def get_matrix_size(self, bundle_index: int = 0) -> tuple[int, int]:
        m = self.metadata_.matrix_spec[bundle_index]
        return (m.row_count, m.col_count)

    def get_num_channels(self, bundle_index: int = 0) -> int:
        n = self.metadata_.matrix_spec[bundle_index].num_channels
        if n == -1:  # unset: the kit assumes RGB for encoded images, one channel otherwise
            return 3 if self.is_compressed(bundle_index) else 1
        return n

    def get_tensor_size(self, bundle_index: int = 0) -> tuple[int, int, int]:
        row, col = self.get_matrix_size(bundle_index)
        return (row, col, self.get_num_channels(bundle_index))

    def get_tensor_shape(self, bundle_index: int = 0) -> tuple[int, int, int, int]:
        row, col = self.get_matrix_size(bundle_index)
        return (self.get_sequence_size(), row, col, self.get_num_channels(bundle_index))

    def get_sequence_size(self) -> int:
        return self.metadata_.sequence_size

    def get_output_size(self) -> int:
        return self.metadata_.output_dim

    def size(self) -> int:
        return self.metadata_.sample_count

    def get_label_to_index_map(self) -> Mapping[str, int]:
        return self.metadata_.label_to_index_map

    def get_feature_to_index_map(self) -> Mapping[str, int]:
        return self.metadata_.feature_to_index_map

    def get_channel_to_index_map(self) -> Mapping[str, int]:
        return self.metadata_.channel_to_index_map

    def get_class_names(self) -> list[str | None]:
        """Class names in index order (None where the label map has no entry)."""
        names: list[str | None] = [None] * self.get_output_size()
        for name, index in self.get_label_to_index_map().items():
            names[index] = name
        return names

    def __repr__(self) -> str:
        return (f"AutoDLMetadata({self.dataset_name_!r}, size={self.size()}, "
                f"shape={self.get_tensor_shape()}, classes={self.get_output_size()})")
