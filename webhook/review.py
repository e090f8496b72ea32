"""AdmissionReview v1 in, AdmissionReview v1 out: the envelope around the pure engine.

The envelope is typed with pydantic; the pod inside stays a plain dict (no PodSpec model on
the hot path).
"""

from __future__ import annotations

import base64
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webhook.mutation import Decision, Injector, Mode, NamespaceInfo

log = logging.getLogger(__name__)

API_VERSION = "admission.k8s.io/v1"
NamespaceLookup = Callable[[str], NamespaceInfo | None]


class _Envelope(BaseModel):
    # Unknown fields are allowed: newer kube-apiservers add fields to the request.
    model_config = ConfigDict(extra="allow")


class GroupVersionKind(_Envelope):
    group: str = ""
    version: str = ""
    kind: str


class GroupVersionResource(_Envelope):
    group: str = ""
    version: str = ""
    resource: str


class AdmissionRequest(_Envelope):
    uid: str = Field(min_length=1, max_length=256)
    kind: GroupVersionKind
    resource: GroupVersionResource
    subResource: str | None = None
    name: str | None = None
    namespace: str | None = None
    operation: str
    object: dict[str, Any] | None = None
    dryRun: bool | None = None


class AdmissionReview(_Envelope):
    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class BadReview(ValueError):
    """Not a well-formed AdmissionReview v1: answered with HTTP 400."""


@dataclass(frozen=True, slots=True)
class Request:
    """The fields of an admission request that the webhook reads."""

    uid: str
    operation: str
    group: str
    resource: str
    sub_resource: str | None
    name: str | None
    namespace: str | None
    object: dict[str, Any] | None
    dry_run: bool | None


@dataclass(frozen=True)
class Result:
    """What happened to one review, for the response, the log line and the metrics."""

    body: bytes
    decision: Decision
    uid: str
    namespace: str | None
    pod: str | None
    dry_run: bool


def _describe(err: ValidationError) -> str:
    # Field locations and messages only: input values may hold anything, secrets included.
    parts = []
    for item in err.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse(body: bytes) -> AdmissionReview:
    try:
        return AdmissionReview.model_validate_json(body)
    except ValidationError as err:
        raise BadReview(
            f"not an admission.k8s.io/v1 AdmissionReview with a request: {_describe(err)}"
        ) from None


def _str_or_absent(obj: dict[str, Any], key: str) -> bool:
    return key not in obj or type(obj[key]) is str


def _fast_request(body: bytes) -> Request | None:
    """orjson and exact type checks for the common case (~3x faster than the model).

    Accepts only what AdmissionReview accepts with every field of its exact JSON type;
    anything else (invalid JSON, a missing or mistyped field, a value pydantic would coerce
    or explain) returns None and goes through the model, so answers stay the model's.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if (
        type(doc) is not dict
        or doc.get("apiVersion") != API_VERSION
        or doc.get("kind") != "AdmissionReview"
    ):
        return None
    req = doc.get("request")
    if type(req) is not dict:
        return None
    uid, kind, res, obj, dry = (
        req.get("uid"),
        req.get("kind"),
        req.get("resource"),
        req.get("object"),
        req.get("dryRun"),
    )
    if (
        type(uid) is not str
        or not 1 <= len(uid) <= 256
        or type(req.get("operation")) is not str
        or type(kind) is not dict
        or type(kind.get("kind")) is not str
        or not (_str_or_absent(kind, "group") and _str_or_absent(kind, "version"))
        or type(res) is not dict
        or type(res.get("resource")) is not str
        or not (_str_or_absent(res, "group") and _str_or_absent(res, "version"))
        or not all(
            v is None or type(v) is str
            for v in (req.get("subResource"), req.get("name"), req.get("namespace"))
        )
        or not (obj is None or type(obj) is dict)
        or not (dry is None or type(dry) is bool)
    ):
        return None
    return Request(
        uid=uid,
        operation=req["operation"],
        group=res.get("group", ""),
        resource=res["resource"],
        sub_resource=req.get("subResource"),
        name=req.get("name"),
        namespace=req.get("namespace"),
        object=obj,
        dry_run=dry,
    )


def parse_request(body: bytes) -> Request:
    """The request of an AdmissionReview v1; raises BadReview for anything else."""
    fast = _fast_request(body)
    if fast is not None:
        return fast
    request = parse(body).request
    return Request(
        uid=request.uid,
        operation=request.operation,
        group=request.resource.group,
        resource=request.resource.resource,
        sub_resource=request.subResource,
        name=request.name,
        namespace=request.namespace,
        object=request.object,
        dry_run=request.dryRun,
    )


def is_pod_create(request: Request) -> bool:
    return (
        request.operation == "CREATE"
        and request.group == ""
        and request.resource == "pods"
        and not request.sub_resource
    )


def response_body(uid: str, decision: Decision) -> bytes:
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(decision.patch)).decode()
    if not decision.allowed:
        response["status"] = {
            "code": decision.code,
            "message": decision.message,
            "reason": "BadRequest" if decision.code == 400 else "Forbidden",
        }
    if decision.warnings:
        response["warnings"] = decision.warnings
    return orjson.dumps(
        {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
    )


def review(
    body: bytes,
    mode: Mode,
    injector: Injector,
    namespaces: NamespaceLookup | None = None,
) -> Result:
    """Decide one review. Raises BadReview for a malformed one; never raises otherwise."""
    return _review(body, mode, injector, namespaces)[0]


def _review(
    body: bytes,
    mode: Mode,
    injector: Injector,
    namespaces: NamespaceLookup | None,
) -> tuple[Result, NamespaceInfo | None]:
    """The review and the namespace defaults its decision used."""
    request = parse_request(body)
    pod = request.object if isinstance(request.object, dict) else {}
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    pod_name = request.name or (meta or {}).get("name") or (meta or {}).get("generateName")
    namespace = request.namespace
    ns = None
    if not is_pod_create(request) or request.object is None:
        decision = Decision(True, "skipped", "not-pod-create")
    else:
        try:
            ns = namespaces(namespace) if namespaces and namespace else None
            decision = injector.decide(request.object, mode, namespace, ns)
        except Exception:
            # A bug must not block pods the DaemonSet still covers (/mutate), and must not let
            # an unlogged pod into a sidecar namespace (/mutate/namespace): fail like the
            # webhook entry's failurePolicy would.
            log.exception("injection failed for %s/%s", namespace, pod_name)
            if mode is Mode.NAMESPACE:
                decision = Decision(
                    False, "error", "internal-error", "logaas webhook internal error", 500
                )
            else:
                decision = Decision(
                    True,
                    "error",
                    "internal-error",
                    warnings=["logaas: sidecar not injected: internal error"],
                )
    result = Result(
        body=response_body(request.uid, decision),
        decision=decision,
        uid=request.uid,
        namespace=namespace,
        pod=pod_name if isinstance(pod_name, str) else None,
        dry_run=bool(request.dry_run),
    )
    return result, ns


# kube-apiserver (Go encoding/json) writes an AdmissionReview's fields in this order, the
# request's uid first; and every response begins the same way up to its uid.
_REQUEST_HEAD = b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"'
_RESPONSE_HEAD = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"'
# A uid that is its own JSON text: 1-256 printable ASCII characters without '"' or '\'.
_PLAIN_UID = re.compile(rb'[\x20\x21\x23-\x5b\x5d-\x7e]{1,256}"')
CACHE_ENTRIES = 128
CACHE_MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Answer:
    decision: Decision
    namespace: str | None
    pod: str | None
    dry_run: bool
    # The response after its uid: a copy, not a view of the response, which orjson leaves
    # in a 64 KiB block.
    tail: bytes
    ns: NamespaceInfo | None


class Reviewer:
    """`review` for one webhook entry, answering repeated reviews from a small cache.

    A Deployment's scale-up makes kube-apiserver send the same pod, byte for byte, once per
    replica: only request.uid differs. The engine is pure, so such a review gets the answer
    of the first one with its own uid, without parsing 10+ KB again. Only reviews in
    kube-apiserver's exact serialization (uid first, plain uid) and at most CACHE_MAX_BODY
    bytes are cached, only decisions without an internal error, and a hit re-checks the
    namespace defaults (the watched cache may have changed them). Everything else, and
    every first sight, takes the full path.
    """

    def __init__(
        self,
        mode: Mode,
        injector: Injector,
        namespaces: NamespaceLookup | None = None,
        entries: int = CACHE_ENTRIES,
    ) -> None:
        self.mode = mode
        self.injector = injector
        self.namespaces = namespaces
        self.entries = entries
        self._answers: OrderedDict[bytes, _Answer] = OrderedDict()

    def __call__(self, body: bytes) -> Result:
        key = None
        if len(body) <= CACHE_MAX_BODY and body.startswith(_REQUEST_HEAD):
            uid_match = _PLAIN_UID.match(body, len(_REQUEST_HEAD))
            if uid_match is not None:
                end = uid_match.end() - 1
                key = body[end:]
                answer = self._answers.get(key)
                if answer is not None and self._same_namespace(answer):
                    uid = body[len(_REQUEST_HEAD) : end]
                    return Result(
                        body=_RESPONSE_HEAD + uid + answer.tail,
                        decision=answer.decision,
                        uid=uid.decode("ascii"),
                        namespace=answer.namespace,
                        pod=answer.pod,
                        dry_run=answer.dry_run,
                    )
        result, ns = _review(body, self.mode, self.injector, self.namespaces)
        if key is not None and result.decision.outcome != "error":
            uid_bytes = result.uid.encode()
            head = _RESPONSE_HEAD + uid_bytes + b'"'
            if result.body.startswith(head):  # always, for a plain uid
                if len(self._answers) >= self.entries:
                    # Oldest first.
                    self._answers.popitem(last=False)
                self._answers[key] = _Answer(
                    result.decision,
                    result.namespace,
                    result.pod,
                    result.dry_run,
                    result.body[len(head) - 1 :],
                    ns,
                )
        return result

    def _same_namespace(self, answer: _Answer) -> bool:
        namespace = answer.namespace
        if self.namespaces is None or not namespace:
            return True
        try:
            return self.namespaces(namespace) == answer.ns
        except Exception:
            return False  # the full path reports it
