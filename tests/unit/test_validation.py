"""validation.validate: a bad request raises InvalidRequest naming the field; a good one gets
its effective limits (zeros filled from the pool's defaults, checked against the ceiling)."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxd_pool import (
    CEILING_LIMITS,
    DEFAULT_LIMITS,
    ExecutionRequest,
    InvalidRequest,
    Limits,
    PoolConfig,
    Runtime,
)
from sandboxd_pool.types import Mode
from sandboxd_pool.validation import (
    MAX_ARG_BYTES,
    MAX_ENV_ENTRIES,
    MAX_EVENT_DEPTH,
    MAX_EVENT_VALUES,
    MIN_LIMITS,
    NAME_MAX,
    PAGE_BYTES,
    validate,
)

CONFIG = PoolConfig()


def request(runtime: Runtime = Runtime.PYTHON, **fields: Any) -> ExecutionRequest:
    fields.setdefault("code", "print(1)")
    return ExecutionRequest(runtime=runtime, **fields)


def field_of(req: ExecutionRequest, config: PoolConfig = CONFIG) -> str:
    with pytest.raises(InvalidRequest) as info:
        validate(req, config)
    assert str(info.value).startswith(f"{info.value.field}: ")
    return info.value.field


class TestValidRequests:
    def test_minimal_request_gets_the_default_limits(self) -> None:
        assert validate(request(), CONFIG) == DEFAULT_LIMITS

    def test_set_limits_win_over_defaults(self) -> None:
        limits = validate(request(limits=Limits(wall_time_ms=500)), CONFIG)
        assert limits.wall_time_ms == 500
        assert limits.memory_bytes == DEFAULT_LIMITS.memory_bytes

    def test_limits_exactly_at_the_ceiling_and_minimum_are_accepted(self) -> None:
        assert validate(request(limits=CEILING_LIMITS), CONFIG) == CEILING_LIMITS
        assert validate(request(limits=MIN_LIMITS), CONFIG) == MIN_LIMITS

    def test_everything_at_once(self) -> None:
        req = request(
            Runtime.JAVASCRIPT,
            code="console.log(1)",
            stdin=bytearray(b"\x00\xff"),
            args=("a", "", "ünï", "--x=1"),
            env={"A": "1", "EMPTY": "", "UNICODE": "é"},
            files={
                "data.txt": b"x",
                "a/b/c.bin": b"\x00",
                "./dot.txt": b"",
                "main.py": b"fine for JavaScript",
                "pkg/main.js": b"only the top-level main.js is reserved",
            },
        )
        assert validate(req, CONFIG) == DEFAULT_LIMITS

    def test_code_exactly_at_max_code_bytes(self) -> None:
        config = PoolConfig(max_code_bytes=8)
        assert validate(request(code="é" * 4), config) == DEFAULT_LIMITS


class TestRuntimeAndCode:
    def test_runtime_not_enabled(self) -> None:
        config = PoolConfig(runtimes=(Runtime.PYTHON,))
        assert field_of(request(Runtime.JAVASCRIPT, code="1"), config) == "runtime"

    def test_runtime_not_a_runtime(self) -> None:
        assert field_of(request(runtime="python")) == "runtime"  # type: ignore[arg-type]

    def test_code_above_max_code_bytes_counts_utf8_bytes(self) -> None:
        config = PoolConfig(max_code_bytes=8)
        assert field_of(request(code="é" * 5), config) == "code"
        assert field_of(request(code="x" * 9), config) == "code"

    def test_code_not_a_string(self) -> None:
        assert field_of(request(code=b"print(1)")) == "code"

    def test_code_not_encodable(self) -> None:
        assert field_of(request(code="print('\ud800')")) == "code"


class TestStdin:
    def test_stdin_not_bytes(self) -> None:
        assert field_of(request(stdin="text")) == "stdin"

    def test_stdin_above_max(self) -> None:
        config = PoolConfig(max_stdin_bytes=4)
        assert field_of(request(stdin=b"12345"), config) == "stdin"
        assert validate(request(stdin=b"1234"), config) == DEFAULT_LIMITS


class TestArgsAndEnv:
    def test_nul_in_an_arg_names_its_index(self) -> None:
        assert field_of(request(args=("ok", "bad\x00arg"))) == "args[1]"

    def test_arg_not_a_string(self) -> None:
        assert field_of(request(args=("ok", 3))) == "args[1]"

    def test_arg_too_long(self) -> None:
        assert field_of(request(args=("x" * (MAX_ARG_BYTES + 1),))) == "args[0]"

    def test_arg_not_encodable(self) -> None:
        assert field_of(request(args=("\udcff",))) == "args[0]"

    @pytest.mark.parametrize(
        ("env", "field"),
        [
            ({"A=B": "1"}, "env['A=B']"),
            ({"": "1"}, "env['']"),
            ({"NUL\x00": "1"}, "env['NUL\\x00']"),
            ({"A": "v\x00"}, "env['A']"),
            ({"A": 1}, "env['A']"),
            ({"A": "x" * (MAX_ARG_BYTES + 1)}, "env['A']"),
        ],
    )
    def test_bad_env_entry(self, env: dict[str, Any], field: str) -> None:
        assert field_of(request(env=env)) == field

    def test_too_many_env_entries(self) -> None:
        env = {f"V{i}": "" for i in range(MAX_ENV_ENTRIES + 1)}
        assert field_of(request(env=env)) == "env"


class TestFiles:
    @pytest.mark.parametrize(
        "path",
        [
            "/etc/passwd",
            "/work/x",
            "../x",
            "a/../../x",
            "a/../b",
            "a/..",
            "..",
            ".",
            "./",
            "",
            "a//b",
            "a/",
            "nul\x00.txt",
        ],
    )
    def test_bad_path(self, path: str) -> None:
        assert field_of(request(files={path: b"x"})) == f"files[{path!r}]"

    @pytest.mark.parametrize("path", ["..data", "...", "a/..b", "..x/y", "a/.../b", "./..data"])
    def test_names_that_only_start_with_two_dots_are_files(self, path: str) -> None:
        # SECURITY.md "Service attack review": the proto forbids only `..` components; these were
        # INVALID_ARGUMENT.
        assert validate(request(files={path: b"x"}), CONFIG) == DEFAULT_LIMITS

    @pytest.mark.parametrize("path", ["main.py", "./main.py", "a/../main.py"])
    def test_python_main_is_reserved(self, path: str) -> None:
        assert field_of(request(files={path: b"x"})) == f"files[{path!r}]"

    def test_javascript_main_is_reserved(self) -> None:
        req = request(Runtime.JAVASCRIPT, code="1", files={"main.js": b"x"})
        assert field_of(req) == "files['main.js']"

    def test_content_not_bytes(self) -> None:
        assert field_of(request(files={"a.txt": "text"})) == "files['a.txt']"

    def test_too_many_files(self) -> None:
        config = PoolConfig(max_files=2)
        files = {f"f{i}": b"" for i in range(3)}
        assert field_of(request(files=files), config) == "files"

    def test_total_file_bytes_above_max(self) -> None:
        config = PoolConfig(max_files_bytes=10)
        assert field_of(request(files={"a": b"x" * 6, "b": b"y" * 5}), config) == "files"
        assert validate(request(files={"a": b"x" * 5, "b": b"y" * 5}), config) == DEFAULT_LIMITS

    # Found by tests/fuzz: each of these ran and came back RUNTIME_ERROR with the bootstrap's
    # traceback (the worker could not write the files), not INVALID_ARGUMENT.
    @pytest.mark.parametrize(
        ("paths", "bad"),
        [
            (["a", "a/b"], "a/b"),
            (["a/b", "a"], "a"),
            (["a/b/c", "a/b"], "a/b"),
            (["a/./b", "a/b"], "a/b"),
            (["./a", "a"], "a"),
            (["main.py/x"], "main.py/x"),
        ],
    )
    def test_paths_that_cannot_all_be_written(self, paths: list[str], bad: str) -> None:
        assert field_of(request(files=dict.fromkeys(paths, b"x"))) == f"files[{bad!r}]"

    def test_sibling_and_nested_files_are_fine(self) -> None:
        files = dict.fromkeys(["a/b", "a/c", "a/d/e", "ab", "b/a", "x/main.py"], b"x")
        assert validate(request(files=files), CONFIG) == DEFAULT_LIMITS

    def test_a_path_component_longer_than_name_max(self) -> None:
        ok = "d/" + "n" * NAME_MAX
        assert validate(request(files={ok: b""}), CONFIG) == DEFAULT_LIMITS
        assert field_of(request(files={ok + "n": b""})) == f"files[{ok + 'n'!r}]"
        # bytes, not characters
        long_name = "é" * (NAME_MAX // 2 + 1)
        assert field_of(request(files={long_name: b""})) == f"files[{long_name!r}]"

    def test_code_and_files_must_fit_the_tmpfs(self) -> None:
        tmpfs = MIN_LIMITS.tmpfs_bytes
        limits = Limits(tmpfs_bytes=tmpfs)
        # code "print(1)" takes a page; the files the rest, exactly
        fits = {"a": b"x" * (tmpfs - 2 * PAGE_BYTES), "b": b"y" * PAGE_BYTES}
        assert validate(request(files=fits, limits=limits), CONFIG).tmpfs_bytes == tmpfs
        over = {**fits, "c": b"z"}  # one byte takes a whole page
        assert field_of(request(files=over, limits=limits)) == "limits.tmpfs_bytes"
        many_small = {f"f{i}": b"s" for i in range(tmpfs // PAGE_BYTES)}
        assert field_of(request(files=many_small, limits=limits)) == "limits.tmpfs_bytes"
        assert field_of(request(code="#" * tmpfs + "\n", limits=limits)) == "limits.tmpfs_bytes"


LIMIT_FIELDS = tuple(Limits.__dataclass_fields__)


class TestLimits:
    @pytest.mark.parametrize("name", LIMIT_FIELDS)
    def test_above_the_ceiling(self, name: str) -> None:
        limits = Limits(**{name: getattr(CEILING_LIMITS, name) + 1})
        assert field_of(request(limits=limits)) == f"limits.{name}"

    @pytest.mark.parametrize("name", LIMIT_FIELDS)
    def test_negative(self, name: str) -> None:
        assert field_of(request(limits=Limits(**{name: -1}))) == f"limits.{name}"

    @pytest.mark.parametrize("name", LIMIT_FIELDS)
    def test_not_an_integer(self, name: str) -> None:
        assert field_of(request(limits=Limits(**{name: 1.5}))) == f"limits.{name}"

    def test_below_the_minimum(self) -> None:
        limits = Limits(memory_bytes=MIN_LIMITS.memory_bytes - 1)
        assert field_of(request(limits=limits)) == "limits.memory_bytes"

    def test_a_config_ceiling_binds_the_defaults_too(self) -> None:
        # A ceiling below the default: a request leaving the field zero is over the ceiling.
        config = PoolConfig(ceiling_limits=Limits(**{**vars(CEILING_LIMITS), "wall_time_ms": 5}))
        assert field_of(request(), config) == "limits.wall_time_ms"
        assert validate(request(limits=Limits(wall_time_ms=5)), config).wall_time_ms == 5


class TestEvent:
    def handler(self, event: bytes) -> ExecutionRequest:
        return request(code="def handler(e, c): return e", mode=Mode.HANDLER, event=event)

    def test_nested_json_is_accepted(self) -> None:
        assert validate(self.handler(b"[" * 50 + b"]" * 50), CONFIG) == DEFAULT_LIMITS

    def test_a_json_amplification_event_is_refused_without_being_built(self) -> None:
        # SECURITY.md "Service attack review": 64 MiB of `[[],[],...]` made json.loads build
        # 22 million lists (+1.8 GB).
        event = b"[" + b"[]," * 22_369_000 + b"[]]"
        with pytest.raises(InvalidRequest, match=f"has more than {MAX_EVENT_VALUES} values"):
            validate(self.handler(event), CONFIG)

    def test_events_at_the_bounds_are_accepted(self) -> None:
        at_most = b"[" + b"0," * (MAX_EVENT_VALUES - 2) + b"0]"
        assert validate(self.handler(at_most), CONFIG) == DEFAULT_LIMITS
        deep = b"[" * MAX_EVENT_DEPTH + b"]" * MAX_EVENT_DEPTH
        assert validate(self.handler(deep), CONFIG) == DEFAULT_LIMITS
        assert field_of(self.handler(b"[" + at_most + b"]")) == "event"
        assert field_of(self.handler(b"[" + deep + b"]")) == "event"

    @pytest.mark.parametrize(
        ("event", "reason"),
        [
            (b"\xff", "is not valid UTF-8"),
            (b"NaN", "is not valid JSON"),
            (b"[1,]", "is not valid JSON"),
        ],
    )
    def test_the_reason_is_in_the_message(self, event: bytes, reason: str) -> None:
        with pytest.raises(InvalidRequest, match=reason):
            validate(self.handler(event), CONFIG)

    def test_nesting_is_accepted_to_512_and_refused_beyond(self) -> None:
        """The proto's bound, not Python's recursion limit (which let ~990 through)."""
        for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
            deepest = opening * 512 + b"1" + closing * 512
            assert validate(self.handler(deepest), CONFIG) == DEFAULT_LIMITS
            too_deep = opening * 513 + b"1" + closing * 513
            assert field_of(self.handler(too_deep)) == "event"
        # brackets inside strings are text, however many
        assert validate(self.handler(b'["' + b"[{" * 2000 + b'"]'), CONFIG) == DEFAULT_LIMITS
        escaped = b'["\\"' + b"[" * 600 + b'"]'  # an escaped quote does not end the string
        assert validate(self.handler(escaped), CONFIG) == DEFAULT_LIMITS

    def test_json_nested_past_the_parser_is_invalid_not_a_crash(self) -> None:
        # Found by tests/fuzz: a RecursionError escaped validation (INTERNAL from the daemon).
        for depth in (5_000, 100_000):
            deep = b"[" * depth + b"]" * depth
            assert field_of(self.handler(deep)) == "event"
            assert field_of(self.handler(b'{"a":' * depth + b"1" + b"}" * depth)) == "event"
