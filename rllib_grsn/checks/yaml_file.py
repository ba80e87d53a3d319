"""Reading a tuned_examples YAML file safely: any bytes in, data or one clear line out.

- The file is read as bytes and decoded by its byte-order mark (UTF-8, UTF-16, UTF-32) or as UTF-8;
  anything else is refused with the offending byte's position.
- Files larger than :data:`MAX_BYTES` are refused, and so are aliases that expand the document
  beyond :data:`MAX_NODES` values (a "billion laughs" file is a few hundred bytes).
- A key given twice in one mapping (two experiments of one name, two ``run:`` keys) is an error:
  YAML would silently keep the last one.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from rllib_grsn.checks.problems import ExperimentError, shown

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_MERGE = "tag:yaml.org,2002:merge"


class _FileProblem(Exception):
    pass


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys. Its pure-Python parser, as ``yaml.safe_load``:
    libyaml's accepts some text it refuses (a tab inside a plain key)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: construct_mapping below says so
                continue
            line = key_node.start_mark.line + 1
            if seen is not None:
                raise _FileProblem(
                    f"line {line}: duplicate key {shown(key)} (first given at line {seen}); YAML would "
                    "keep only the last one: remove or rename one"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _decode(data: bytes) -> str:
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise _FileProblem(
            f"not {encoding.upper().removesuffix('-SIG')} text (byte {data[err.start]:#04x} at offset "
            f"{err.start}); save the file as UTF-8"
        ) from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Values the node stands for once every alias is expanded (each shared node counted per use)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise _FileProblem(f"line {node.start_mark.line + 1}: an alias refers to a node that contains it")
    open_nodes.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_nodes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(
            _expanded_size(k, sizes, open_nodes) + _expanded_size(v, sizes, open_nodes) for k, v in node.value
        )
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    if size > MAX_NODES:
        raise _FileProblem(f"the document expands to more than {MAX_NODES} values through its aliases")
    return size


def _parse(text: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """The data of the YAML file at ``path``; ExperimentError (one line, naming the file) otherwise."""
    source = str(path)
    path = Path(path)
    try:
        if not path.is_file():
            raise _FileProblem("not a file" if path.exists() else "file not found")
        if path.stat().st_size > MAX_BYTES:
            raise _FileProblem(
                f"{path.stat().st_size} bytes, more than the {MAX_BYTES} a config file may have"
            )
        return _parse(_decode(path.read_bytes()))
    except OSError as err:
        raise ExperimentError(source, [f"cannot read it: {err.strerror or err}"]) from None
    except _FileProblem as err:
        raise ExperimentError(source, [str(err)]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(err.problem or err.context or "").split())
        raise ExperimentError(source, [f"not valid YAML{where}: {problem}"]) from None
    except yaml.YAMLError as err:
        raise ExperimentError(source, [f"not valid YAML: {' '.join(str(err).split())}"]) from None
    except RecursionError:
        raise ExperimentError(source, ["not valid here: nested too deeply"]) from None
