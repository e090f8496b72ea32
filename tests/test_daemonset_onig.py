"""The agent's regexes under Oniguruma, Ruby syntax (Fluent Bit's Onigmo is its Ruby fork and
compiles every pattern with ONIG_SYNTAX_RUBY): each one compiles, and matches exactly where
Python's re (used by the simulator and the other tests) says it does.

Fluent Bit's router uses onig_match (anchored at the start; a match must be non-empty) for
Match_Regex; rewrite_tag and grep use onig_search. libonig5 ships with the base image.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from functools import cache

import pytest

from webhook import fluentbit, names
from webhook.daemonset import agentconf
from webhook.daemonset.render import render_objects
from webhook.daemonset.simulate import container_log_path
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings

ONIG_OPTION_NONE = 0
ONIG_MISMATCH = -1


class Onig:
    def __init__(self) -> None:
        path = ctypes.util.find_library("onig") or "libonig.so.5"
        self.lib = ctypes.CDLL(path)
        lib = self.lib
        self.utf8 = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(lib, "OnigEncodingUTF8")))
        self.ruby = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(lib, "OnigSyntaxRuby")))
        encodings = (ctypes.c_void_p * 1)(self.utf8)
        lib.onig_initialize.argtypes = [ctypes.c_void_p, ctypes.c_int]
        assert lib.onig_initialize(encodings, 1) == 0
        lib.onig_new.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                 ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        for name in ("onig_match", "onig_search"):
            getattr(lib, name).restype = ctypes.c_int
        lib.onig_match.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                   ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint]  # fmt: skip
        lib.onig_search.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                    ctypes.c_uint]  # fmt: skip
        lib.onig_free.argtypes = [ctypes.c_void_p]

    @cache  # noqa: B019 - one instance for the module
    def compile(self, pattern: str) -> ctypes.c_void_p:
        reg = ctypes.c_void_p()
        data = pattern.encode()
        einfo = (ctypes.c_void_p * 3)()
        buf = ctypes.create_string_buffer(data, len(data))
        end = ctypes.cast(ctypes.addressof(buf) + len(data), ctypes.c_char_p)
        ret = self.lib.onig_new(ctypes.byref(reg), buf, end, ONIG_OPTION_NONE, self.utf8,
                                self.ruby, einfo)  # fmt: skip
        if ret != 0:
            raise ValueError(f"Oniguruma rejects {pattern!r} (code {ret})")
        self._keep = [*getattr(self, "_keep", []), buf]
        return reg

    def _bounds(
        self, text: str
    ) -> tuple[ctypes.Array[ctypes.c_char], ctypes.c_char_p, ctypes.c_char_p]:
        data = text.encode()
        buf = ctypes.create_string_buffer(data, len(data))
        start = ctypes.cast(ctypes.addressof(buf), ctypes.c_char_p)
        end = ctypes.cast(ctypes.addressof(buf) + len(data), ctypes.c_char_p)
        return buf, start, end

    def router_match(self, pattern: str, tag: str) -> bool:
        """flb_router_match: onig_match at the start of the tag, length > 0."""
        buf, start, end = self._bounds(tag)
        n = self.lib.onig_match(self.compile(pattern), start, end, start, None, ONIG_OPTION_NONE)
        del buf
        return bool(n > 0)

    def search(self, pattern: str, text: str) -> bool:
        """flb_regex_match / flb_regex_do: onig_search over the whole string."""
        buf, start, end = self._bounds(text)
        n = self.lib.onig_search(
            self.compile(pattern), start, end, start, end, None, ONIG_OPTION_NONE
        )
        del buf
        return bool(n != ONIG_MISMATCH)


@pytest.fixture(scope="module")
def onig() -> Onig:
    return Onig()


def _configs(settings: Settings) -> dict[str, str]:
    namespaces = [NamespaceInfo("plain")]
    for i in range(400):
        name = f"team-{i:03d}-{'x' * (i % 40)}"
        if i % 4 == 0:
            namespaces.append(NamespaceInfo(name, {names.INJECT: names.NS_ENABLED}))
        elif i % 4 == 1:
            namespaces.append(NamespaceInfo(name, {}, {names.GROUP_ID: f"g-{i}"}))
        elif i % 4 == 2:
            namespaces.append(NamespaceInfo(name, {}, {names.GROUP_ID: f"g-{i % 8}"}))
        else:
            namespaces.append(NamespaceInfo(name))
    objects, plan = render_objects(settings, namespaces, "logaas")
    assert plan.processes == 1
    return dict(objects[3]["data"])


def test_onig_agrees_with_python_on_every_agent_regex(onig: Onig, settings: Settings) -> None:
    configs = _configs(settings)
    router: list[str] = []
    searched: list[str] = []
    for name, text in configs.items():
        if name == agentconf.PARSERS_CONFIG:
            continue
        for _kind, pairs in fluentbit.parse(text):
            for key, value in pairs:
                if key == "Match_Regex":
                    router.append(value)
                elif key == "Rule":
                    searched.append(value.split()[1])
                elif key == "Exclude":
                    searched.append(value.split(None, 1)[1])
    assert router and searched
    assert any(s.startswith("^/var") for s in searched)  # rewrite rules and grep overflow
    namespaces = ["plain", "unknown", *[f"team-{i:03d}-{'x' * (i % 40)}" for i in range(400)]]
    paths = [container_log_path("web-7d4f9-x2x", ns, "app", "f" * 64) for ns in namespaces]
    paths += [container_log_path("a.b.c", "team-001-x", "c_d", "0" * 64)]  # dots, underscores
    tags = [agentconf.tag_of_path(p) for p in paths]
    tags = [*tags, *[f"s0.{t}" for t in tags]]
    outcomes = set()
    for pattern in router:
        for tag in tags:
            expected = bool((m := re.match(pattern, tag)) and m.end() > 0)
            assert onig.router_match(pattern, tag) == expected, (pattern[:80], tag)
            outcomes.add(("router", expected))
    for pattern in searched:
        for p in paths:
            expected = bool(re.search(pattern, p))
            assert onig.search(pattern, p) == expected, (pattern[:80], p)
            outcomes.add(("search", expected))
    assert len(outcomes) == 4  # both answers seen for both kinds


def test_onig_check_can_fail(onig: Onig) -> None:
    with pytest.raises(ValueError):
        onig.compile("(?P<n>x)")  # Python's named group: not Ruby syntax
    # a zero-length match does not route (a negative-lookahead-only default would not work)
    assert not onig.router_match(r"^(?!kube\.)", "other.tag")
    assert onig.router_match(r"^kube\.", "kube.x") and not onig.router_match(r"^kube\.", "x.kube.")
