"""`$(...)` substitution grammar and evaluation."""

from pathlib import Path

import pytest

from mtopt_launch.substitutions import (
    Substitution,
    SubstitutionContext,
    SubstitutionError,
    Text,
    parse_substitutions,
    substitute,
)


def ctx(configurations=None, environ=None, file="/ws/launch/a.launch.yaml"):
    return SubstitutionContext(dict(configurations or {}), Path(file), dict(environ or {}))


def test_plain_text_is_one_text_part():
    assert parse_substitutions("hello world") == [Text("hello world")]
    assert parse_substitutions("cost $5") == [Text("cost $5")]


def test_parse_nested_and_quoted_arguments():
    parts = parse_substitutions("a-$(env 'MY VAR' \"x y\")-$(var $(var which))")
    assert parts[0] == Text("a-")
    assert parts[1] == Substitution("env", ((Text("MY VAR"),), (Text("x y"),)))
    assert parts[2] == Text("-")
    assert parts[3] == Substitution("var", ((Substitution("var", ((Text("which"),),)),),))


def test_backslash_escapes_dollar():
    assert substitute(r"\$(var x)", ctx()) == "$(var x)"


def test_var_env_default_optenv_dirname_filename():
    c = ctx({"x": "1", "which": "x"}, {"HOME_DIR": "/h"})
    assert substitute("$(var x)", c) == "1"
    assert substitute("$(var $(var which))", c) == "1"
    assert substitute("$(env HOME_DIR)/y", c) == "/h/y"
    assert substitute("$(env MISSING fallback)", c) == "fallback"
    assert substitute("$(env HOME_DIR fallback)", c) == "/h"
    assert substitute("[$(optenv MISSING)]", c) == "[]"
    assert substitute("$(optenv MISSING d)", c) == "d"
    assert substitute("$(dirname)/../config", c) == "/ws/launch/../config"
    assert substitute("$(filename)", c) == "/ws/launch/a.launch.yaml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$(var nope)", "undefined launch configuration 'nope'"),
        ("$(env NOT_SET_ANYWHERE)", "environment variable 'NOT_SET_ANYWHERE' is not set"),
        ("$(exec-in-pkg x y)", "unsupported substitution $(exec-in-pkg)"),
        ("$(var a b)", "takes 1 argument(s), got 2"),
        ("$(dirname x)", "takes 0 argument(s)"),
        ("$(var x", "expected ')'"),
        ("$( var x)", "expected a substitution name"),
    ],
)
def test_errors_name_the_problem(text, message):
    with pytest.raises(SubstitutionError) as info:
        substitute(text, ctx({"x": "1"}))
    assert message in str(info.value)


def test_eval_is_ros2_python_expression():
    c = ctx({"cells": "3", "name": "cell"})
    assert substitute("$(eval '$(var cells) >= 2')", c) == "True"
    assert substitute("$(eval '$(var cells) >= 4')", c) == "False"
    assert substitute("$(eval $(var cells)*2)", c) == "6"
    # math names are in scope without a prefix, and as `math.` (ros2's PythonExpression).
    assert substitute("$(eval 'floor(2.7) + math.ceil(0.2)')", c) == "3"
    assert substitute("$(eval \"'$(var name)' + str($(var cells) - 1)\")", c) == "cell2"
    # Extra modules (comma-separated) are available under their names.
    assert substitute("$(eval 'os.path.basename(\"/a/b\")' 'math, os')", c) == "b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$(eval '1 +')", "$(eval '1 +') failed: SyntaxError"),
        ("$(eval 'undefined_name')", "NameError"),
        ("$(eval '1' 'no_such_module_xyz')", "cannot import module 'no_such_module_xyz'"),
        ("$(eval)", "takes 1 to 2 argument(s), got 0"),
    ],
)
def test_eval_errors_name_the_problem(text, message):
    with pytest.raises(SubstitutionError) as info:
        substitute(text, ctx())
    assert message in str(info.value)


def test_find_pkg_share_and_prefix_through_the_ament_index(tmp_path, monkeypatch, install_package):
    # Two prefixes hold `dup_pkg`: the first on AMENT_PREFIX_PATH wins, as in ament_index.
    first = install_package(tmp_path / "first", "dup_pkg")
    second = install_package(tmp_path / "second", "dup_pkg")
    install_package(second, "only_second")
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{first}:{second}")
    c = ctx()
    assert substitute("$(find-pkg-share dup_pkg)/config", c) == f"{first}/share/dup_pkg/config"
    assert substitute("$(find-pkg-prefix dup_pkg)", c) == str(first)
    assert substitute("$(find-pkg-share only_second)", c) == f"{second}/share/only_second"
    # The package name may itself be a substitution.
    assert substitute("$(find-pkg-share $(var p))", ctx({"p": "only_second"})) == (
        f"{second}/share/only_second"
    )


def test_find_pkg_share_of_an_unknown_package_names_it(tmp_path, monkeypatch, install_package):
    install_package(tmp_path / "install", "known_pkg")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    with pytest.raises(SubstitutionError) as info:
        substitute("$(find-pkg-share no_such_pkg)/launch", ctx())
    message = str(info.value)
    assert message.startswith("$(find-pkg-share no_such_pkg): package 'no_such_pkg' not found")
    assert str(tmp_path / "install") in message  # where it looked
    with pytest.raises(SubstitutionError, match="takes 1 argument"):
        substitute("$(find-pkg-share)", ctx())
    # No AMENT_PREFIX_PATH at all: still an error naming the package, not a crash.
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    with pytest.raises(SubstitutionError, match="cannot look up package 'known_pkg'"):
        substitute("$(find-pkg-prefix known_pkg)", ctx())
