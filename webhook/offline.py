"""Offline injection: find the pod templates in manifests, run the engine, apply its patch.

Two layers, both free of HTTP and Kubernetes clients:

- the walker (`find_templates`, `OfflineInjector`) works on any JSON-like tree (plain dicts or
  ruamel's round-trip maps): it finds every pod template (Pod, Deployment, StatefulSet,
  DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, and the items of a `List`), asks
  the webhook's engine (`webhook.mutation.Injector`, the same code and settings as `/mutate`)
  and applies the RFC 6902 patch it returns, in place;
- the text layer (`inject_text`, `render_yaml`, `render_json`) reads YAML or JSON with one or
  many documents and writes them back in order. A document the engine leaves alone is written
  back byte for byte; an injected one is re-emitted by ruamel's round-trip dumper, which keeps
  its comments, quoting and (guessed) indentation.

Decisions come from plain data loaded with PyYAML's YAML 1.1 rules, which is how kubectl reads
a manifest (`on`, `yes` and `0644` mean what Kubernetes thinks they mean).
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelYAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from webhook import names
from webhook.mutation import Decision, Injector, Mode
from webhook.settings import Settings

JSON = dict[str, Any]
Pointer = tuple[str | int, ...]

# Where each workload kind keeps its pod template (the Pod is its own template). Matched by
# kind only, so old apiVersions (extensions/v1beta1, apps/v1beta2, batch/v1beta1) work too.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class InputError(ValueError):
    """Input that cannot be read as manifests: names the source and the parser's complaint."""


# --------------------------------------------------------------------------- walker


@dataclass(frozen=True)
class Target:
    """One pod template inside a document."""

    pointer: Pointer  # from the document root to the template (empty for a Pod)
    kind: str
    name: str
    namespace: str | None
    item: int | None = None  # index in a List's items

    def describe(self) -> str:
        who = f"{self.kind}/{self.name}"
        return who if self.item is None else f"List item {self.item}: {who}"


@dataclass(frozen=True)
class Result:
    target: Target
    decision: Decision


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        for key, suffix in (("name", ""), ("generateName", "*")):
            value = meta.get(key)
            if isinstance(value, str) and value:
                return value + suffix
    return "(unnamed)"


def _namespace(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata")
    value = meta.get("namespace") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) and value else None


def is_list(doc: Any) -> bool:
    kind = doc.get("kind") if isinstance(doc, Mapping) else None
    return (
        isinstance(kind, str)
        and (kind == "List" or kind.endswith("List"))
        and isinstance(doc.get("items"), list)
    )


def find_templates(doc: Any) -> Iterator[Target]:
    """Every pod template in a document (the items of a List included), in document order."""
    if is_list(doc):
        for index, item in enumerate(doc["items"]):
            for target in _templates(item, ("items", index)):
                yield Target(target.pointer, target.kind, target.name, target.namespace, index)
    else:
        yield from _templates(doc, ())


def _templates(doc: Any, prefix: Pointer) -> Iterator[Target]:
    if not isinstance(doc, Mapping):
        return
    kind = doc.get("kind")
    path = TEMPLATE_PATHS.get(kind) if isinstance(kind, str) else None
    if path is None:
        return
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    if isinstance(node, Mapping):
        yield Target((*prefix, *path), str(kind), _name(doc), _namespace(doc))


def resolve(doc: Any, pointer: Pointer) -> Any:
    node = doc
    for key in pointer:
        node = node[key]
    return node


def pod_of(template: Mapping[str, Any]) -> JSON:
    """The Pod the engine sees for a template: its metadata (when present) and spec."""
    pod: JSON = {"apiVersion": "v1", "kind": "Pod"}
    if template.get("metadata") is not None:
        pod["metadata"] = template["metadata"]
    pod["spec"] = template.get("spec")
    return pod


def _value_problem(template: Mapping[str, Any], namespace_enabled: bool) -> str | None:
    """Kubernetes accepts only string annotation values; say so instead of skipping silently."""
    meta = template.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping):
        return None
    if not namespace_enabled and names.INJECT not in annotations:
        return None
    for key, value in annotations.items():
        if not isinstance(value, str):
            shown = json.dumps(value, default=str)
            return (
                f"pod annotation {key}: {shown} is not a string; Kubernetes accepts only string "
                f'annotation values, quote it (e.g. {key}: "{value}")'
            )
    return None


class OfflineInjector:
    """The webhook's engine applied to manifests: one per settings and opt-in mode."""

    def __init__(
        self,
        settings: Settings,
        namespace_enabled: bool = False,
        namespace: str | None = None,
    ) -> None:
        self.injector = Injector(settings)
        self.namespace_enabled = namespace_enabled
        self.mode = Mode.NAMESPACE if namespace_enabled else Mode.POD
        # For documents that name none, as `kubectl apply -n` would put them there.
        self.namespace = namespace

    def inject(self, doc: Any) -> list[Result]:
        """Decide every pod template of a plain document and patch the ones to inject.

        Each template is patched before the next is decided, so a template reached twice (a
        YAML alias) is injected once.
        """
        results: list[Result] = []
        for target in find_templates(doc):
            template = resolve(doc, target.pointer)
            problem = _value_problem(template, self.namespace_enabled)
            if problem:
                decision = Decision(False, "denied", "invalid-annotation", problem, 400)
            else:
                namespace = target.namespace or self.namespace
                decision = self.injector.decide(pod_of(template), self.mode, namespace)
            if decision.outcome == "injected":
                apply_patch(doc, target.pointer, decision.patch)
            results.append(Result(target, decision))
        return results


def apply_patch(
    doc: Any,
    pointer: Pointer,
    patch: list[JSON],
    convert: Callable[[Any], Any] = copy.deepcopy,
) -> None:
    """Apply the engine's patch for the template at `pointer`, in place (plain or ruamel tree).

    The patch addresses the Pod built by `pod_of`; its metadata and spec are the template's own
    objects, so `add` ops land in the template. A metadata the patch creates is written back
    (after apiVersion/kind, where a reader looks for it).
    """
    template = resolve(doc, pointer)
    pod = pod_of(template)
    ops = [{**op, "value": convert(op["value"])} if "value" in op else op for op in patch]
    jsonpatch.apply_patch(pod, ops, in_place=True)
    if "metadata" in pod and template.get("metadata") is not pod["metadata"]:
        _set_front(template, "metadata", pod["metadata"])
    if template.get("spec") is not pod["spec"]:
        template["spec"] = pod["spec"]


def _set_front(mapping: MutableMapping[str, Any], key: str, value: Any) -> None:
    if key in mapping:
        mapping[key] = value
        return
    position = sum(1 for k in ("apiVersion", "kind") if k in mapping)
    if isinstance(mapping, CommentedMap):
        mapping.insert(position, key, value)
        return
    items = list(mapping.items())
    items.insert(position, (key, value))
    mapping.clear()
    mapping.update(items)


# --------------------------------------------------------------------------- text layer


class _KubeLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """YAML 1.1 as kubectl reads it: timestamps stay strings (sigs.k8s.io/yaml goes via JSON)."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

# Document markers; a line's own break (LF or CRLF) may follow.
_START = re.compile(r"^---(?:[ \t]|\r?\n?$)")
_END = re.compile(r"^\.\.\.(?:[ \t]|\r?\n?$)")


class _Named(io.StringIO):
    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name = name


@dataclass
class Document:
    """One document of a source, with its verbatim text when it can be written back as is."""

    source: str
    index: int  # 1-based position in its source
    data: Any  # plain data (PyYAML, YAML 1.1)
    text: str | None  # verbatim text, None when it cannot be written back byte for byte
    json: bool = False  # came from a JSON source
    results: list[Result] = field(default_factory=list)
    rt: Any = None  # ruamel round-trip tree, built only when the document changes

    @property
    def changed(self) -> bool:
        return any(r.decision.outcome == "injected" for r in self.results)

    def describe(self) -> str:
        return f"{self.source}: document {self.index}"


def split_documents(text: str) -> list[str]:
    """Cut YAML text into per-document pieces at `---` lines and after `...` lines.

    A line starting with `---` or `...` followed by a blank is a document marker wherever it
    appears (YAML forbids it inside scalars), so this never cuts a document in two. Joining the
    pieces gives the text back.
    """
    pieces: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if _START.match(bare) and current:
            pieces.append("".join(current))
            current = []
        current.append(line)
        if _END.match(bare):
            pieces.append("".join(current))
            current = []
    if current:
        pieces.append("".join(current))
    return pieces


# Aliases may make a small document huge once expanded (a "billion laughs"), and nesting may
# exhaust the writers' recursion; kube-apiserver refuses both. Far above any real manifest.
MAX_NODES = 1_000_000
MAX_DEPTH = 256


def unshare(value: Any, budget: list[int] | None = None, depth: int = 0) -> Any:
    """A tree with no node reachable twice: YAML aliases expanded, as the API server sees them."""
    budget = [MAX_NODES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise InputError(f"expands to more than {MAX_NODES} nodes (YAML aliases?)")
    if depth > MAX_DEPTH:
        raise InputError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {key: unshare(item, budget, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [unshare(item, budget, depth + 1) for item in value]
    return value


def _load_all(text: str, source: str) -> list[Any]:
    return [unshare(d) for d in yaml.load_all(_Named(text, source), Loader=_KubeLoader)]


def parse(text: str, source: str) -> list[Document]:
    """The documents of one source (YAML or JSON, one or many documents), in order."""
    stripped = text.lstrip()
    # Like kubectl's YAMLOrJSONDecoder: JSON only when it opens an object; `[1e3]` is YAML
    # (the string "1e3"), not a JSON array of numbers.
    if stripped[:1] == "{":
        try:
            data = json.loads(text)
        except ValueError:
            pass  # flow-style YAML, or broken JSON: let the YAML parser explain
        else:
            return [Document(source, 1, unshare(data), None, json=True)]
    documents: list[Document] = []
    try:
        filler = ""  # comment-only pieces travel with the next document (or the last one)
        for piece in split_documents(text):
            datas = _load_all(piece, source)
            if not datas:
                filler += piece
                continue
            if len(datas) > 1:
                raise yaml.YAMLError("several documents in one piece")
            documents.append(Document(source, len(documents) + 1, datas[0], filler + piece))
            filler = ""
        if filler and documents and documents[-1].text is not None:
            documents[-1].text += filler
        elif filler:
            documents.append(Document(source, 0, None, filler))  # comments only
    except yaml.YAMLError:
        # Directives or other rare layouts: read the whole stream; documents are re-emitted.
        try:
            datas = _load_all(text, source)
        except yaml.YAMLError as err:
            raise InputError(f"{source}: not valid YAML or JSON: {err}") from None
        documents = [Document(source, i, data, None) for i, data in enumerate(datas, 1)]
    return documents


def inject_documents(documents: list[Document], injector: OfflineInjector) -> None:
    """Decide every pod template and patch the plain data of the ones to inject."""
    for document in documents:
        document.results = injector.inject(document.data)


def errors(documents: list[Document]) -> list[str]:
    return [
        f"{d.describe()} ({r.target.describe()}): {r.decision.message}"
        for d in documents
        for r in d.results
        if not r.decision.allowed
    ]


def warnings(documents: list[Document]) -> list[str]:
    return [
        f"{d.describe()} ({r.target.describe()}): {w}"
        for d in documents
        for r in d.results
        for w in r.decision.warnings
    ]


# ----- YAML output


def _ambiguous(value: str) -> bool:
    """Would a YAML 1.1 reader (kubectl) take this plain scalar for something else?"""
    resolver = yaml.resolver.Resolver()
    resolved = resolver.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return bool(resolved != "tag:yaml.org,2002:str")


def to_round_trip(value: Any) -> Any:
    """Plain patch values as ruamel nodes: block style, multi-line strings as literal blocks."""
    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            quoted = isinstance(key, str) and _ambiguous(key)
            node[DoubleQuotedScalarString(key) if quoted else key] = to_round_trip(item)
        return node
    if isinstance(value, list):
        return CommentedSeq(to_round_trip(item) for item in value)
    if isinstance(value, str):
        printable = all(c == "\n" or c.isprintable() for c in value)
        if "\n" in value and printable:
            return LiteralScalarString(value)
        if not printable or _ambiguous(value):
            return DoubleQuotedScalarString(value)  # escapes what a plain scalar cannot hold
    return value


def _unflow(tree: Any, pointer: Pointer, path: str) -> None:
    """Block style on every collection from the root down to where an op adds something.

    A block collection cannot live inside a flow one, so the parents of what the patch adds
    are switched to block style; the rest of a flow-style document keeps its style.
    """
    tokens: list[str | int] = list(pointer)
    for raw in path.split("/")[1:-1]:
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    node = tree
    for token in [None, *tokens]:
        if token is not None:
            key: Any = int(token) if isinstance(node, list) and isinstance(token, str) else token
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError, ValueError):
                return
        if isinstance(node, CommentedMap | CommentedSeq):
            node.fa.set_block_style()


_KEY_ONLY = re.compile(r"^( *)(?:- +)?[^#\s-][^:#]*:\s*(?:#.*)?$")
_ITEM = re.compile(r"^( *)- ")
_KEY = re.compile(r"^( *)[^#\s-]")


def _guess_indent(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) as the document's author wrote them."""
    mapping: int | None = None
    offset: int | None = None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    for line, nxt in itertools.pairwise(lines):
        parent = _KEY_ONLY.match(line)
        if not parent:
            continue
        # The column of the key itself ("- key:" starts its key after the dash).
        column = len(line) - len(line.lstrip(" -"))
        item, key = _ITEM.match(nxt), _KEY.match(nxt)
        if item and offset is None:
            offset = len(item.group(1)) - column
        elif key and mapping is None and len(key.group(1)) > column:
            mapping = len(key.group(1)) - column
        if mapping is not None and offset is not None:
            break
    mapping = mapping if mapping in (2, 3, 4, 8) else 2
    offset = offset if offset is not None and 0 <= offset <= mapping else 2
    return mapping, offset


def _round_trip_yaml(text: str | None) -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    mapping, offset = _guess_indent(text) if text else (2, 2)
    rt.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return rt


def _reload(document: Document) -> Any:
    """The document's round-trip tree, patched like its plain data; None if ruamel disagrees."""
    if document.text is None or document.json:
        return None
    try:
        trees = list(_round_trip_yaml(document.text).load_all(document.text))
    except RuamelYAMLError:
        return None
    if len(trees) != 1:
        return None
    tree = trees[0]
    if _shares_nodes(tree):
        return None  # anchors, aliases or merge keys: patching would reach shared nodes
    for result in document.results:
        if result.decision.outcome != "injected":
            continue
        try:
            apply_patch(tree, result.target.pointer, result.decision.patch, to_round_trip)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError):
            return None
        for op in result.decision.patch:
            _unflow(tree, result.target.pointer, str(op["path"]))
    return tree


def _shares_nodes(tree: Any) -> bool:
    seen: set[int] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, CommentedMap | CommentedSeq):
            continue
        if id(node) in seen or (isinstance(node, CommentedMap) and node.merge):
            return True
        seen.add(id(node))
        stack.extend(node.values() if isinstance(node, CommentedMap) else node)
    return False


def _dump(document: Document) -> str:
    tree = _reload(document)
    if tree is None:
        tree = to_round_trip(document.data)
    out = io.StringIO()
    _round_trip_yaml(document.text).dump(tree, out)
    return out.getvalue()


def render_yaml(documents: list[Document]) -> str:
    """All documents as one YAML stream, in order; unchanged ones byte for byte."""
    chunks: list[str] = []
    for document in documents:
        if document.text is not None and not document.json and not document.changed:
            chunk = document.text
        else:
            chunk = _header(document.text) + _dump(document)
            if document.text and "\r\n" in document.text:
                chunk = chunk.replace("\r\n", "\n").replace("\n", "\r\n")  # keep CRLF files CRLF
        if chunks and not _starts_with_marker(chunk):
            chunk = "---\n" + chunk
        if chunk and not chunk.endswith("\n"):
            chunk += "\n"
        chunks.append(chunk)
    return "".join(chunks)


def _starts_with_marker(chunk: str) -> bool:
    """Does a `---` line come before any content (comments and blank lines do not count)?"""
    for line in chunk.splitlines():
        if _START.match(line):
            return True
        if line.strip() and not line.lstrip().startswith("#"):
            return False
    return False


def _header(text: str | None) -> str:
    """What ruamel drops from a re-emitted piece: comments before its `---` line, and the line."""
    if text is None or not _starts_with_marker(text):
        return ""
    kept: list[str] = []
    for line in text.splitlines(keepends=True):
        if _START.match(line):
            kept.append("---\n")
            break
        kept.append(line)
    return "".join(kept)


# ----- JSON output


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str) else k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return value


def render_json(documents: list[Document]) -> str:
    """One object for one document; a v1 List (as kubectl prints one) for several."""
    objects = [_jsonable(d.data) for d in documents if d.data is not None]
    if len(objects) == 1:
        out: Any = objects[0]
    else:
        out = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}}
        out["items"] = objects
    return json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n"


def inject_text(text: str, source: str, injector: OfflineInjector) -> list[Document]:
    """Parse one source and decide/patch every document (see `errors` and `warnings`)."""
    try:
        documents = parse(text.removeprefix("\ufeff"), source)
        inject_documents(documents, injector)
    except InputError as err:
        message = str(err)
        raise InputError(
            message if message.startswith(source) else f"{source}: {message}"
        ) from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply to be a Kubernetes manifest") from None
    return documents
