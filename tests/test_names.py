"""The metric name policy: ``safe_name`` and ``NameRegistry`` (the rules: craft_callbacks.names)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from craft_callbacks import safe_name
from craft_callbacks.names import MAX_NAME_LENGTH, NameRegistry

SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
HASHED = re.compile(r"-[0-9a-f]{8}$")

# Every character Python can put in a str, lone surrogates included.
ANY_CHARACTER = st.one_of(
    st.characters(codec="ascii"),
    st.characters(codec=None, exclude_categories=()),
    st.characters(categories=["Cs"]),
)
ANY_TEXT = st.text(ANY_CHARACTER, max_size=600)
LONG_TEXT = st.text(ANY_CHARACTER, min_size=256, max_size=1200)


def assert_safe(name: str) -> None:
    assert SAFE.match(name), name
    assert name not in ("", ".", "..")
    assert len(name) <= MAX_NAME_LENGTH == 255


# -- the examples documented in names.py ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("précision", "precision"),
        ("train/loss", "train_loss"),
        ("eval/accuracy", "eval_accuracy"),
        ("val loss", "val_loss"),
        ("a?b#c%d", "a_b_c_d"),
        ("损失", "__"),
        ("", "_"),
        ("..", "__"),
        (".", "_"),
    ],
)
def test_documented_examples(source: str, expected: str) -> None:
    assert safe_name(source) == expected


@pytest.mark.parametrize(
    "source",
    ["loss", "train_loss", "eval-accuracy", "lr.group.0", "A1_b-2.c", "a..b", ".hidden", "x" * 255],
)
def test_safe_names_are_kept_as_they_are(source: str) -> None:
    assert safe_name(source) == source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Ångström", "Angstrom"),
        ("naïve café", "naive_cafe"),
        ("ﬁne", "fine"),  # a ligature decomposes to ASCII letters
        ("Ω", "_"),
        ("\ud800x", "_x"),  # a lone surrogate
        ("tab\tnew\nline", "tab_new_line"),
        ("../etc/passwd", ".._etc_passwd"),
        ("...", "___"),
    ],
)
def test_other_characters(source: str, expected: str) -> None:
    assert safe_name(source) == expected


def test_a_1000_character_name_is_cut_to_255_with_a_hash() -> None:
    source = "x" * 1000
    name = safe_name(source)
    assert len(name) == 255
    assert name.startswith("x" * 246)
    assert HASHED.search(name)
    assert safe_name(source) == name


def test_exactly_255_characters_is_kept_256_is_cut() -> None:
    assert safe_name("y" * 255) == "y" * 255
    cut = safe_name("y" * 256)
    assert len(cut) == 255 and cut != "y" * 255 and HASHED.search(cut)


def test_long_names_sharing_a_prefix_stay_apart() -> None:
    prefix = "model/layers/" * 80
    first, second = safe_name(prefix + "weight"), safe_name(prefix + "bias")
    assert first != second
    assert first[:246] == second[:246]
    assert len(first) == len(second) == 255


def test_long_names_that_differ_only_in_unsafe_characters_stay_apart() -> None:
    # "/" and "?" both map to "_": without the hash of the source they would collide.
    assert safe_name("a/" * 200) != safe_name("a?" * 200)


@pytest.mark.parametrize("source", ["." * 1000, "é" * 1000, "损" * 300, "/" * 400])
def test_long_unsafe_names_are_safe(source: str) -> None:
    assert_safe(safe_name(source))


# -- properties -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_any_text_maps_to_a_safe_name_deterministically(source: str) -> None:
    name = safe_name(source)
    assert_safe(name)
    assert safe_name(source) == name
    # A safe name is its own safe name.
    assert safe_name(name) == name


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_.\-]{1,255}", fullmatch=True).filter(lambda s: s.strip(".")))
def test_names_already_safe_are_unchanged(source: str) -> None:
    assert safe_name(source) == source


@settings(max_examples=100, deadline=None)
@given(LONG_TEXT, st.text(min_size=1, max_size=5))
def test_long_names_with_different_endings_stay_apart(prefix: str, ending: str) -> None:
    a, b = prefix + ending, prefix + ending + "!"
    assert safe_name(a) != safe_name(b)
    assert_safe(safe_name(a))
    assert_safe(safe_name(b))


# -- NameRegistry -----------------------------------------------------------------------------------


def test_registry_first_key_keeps_the_name_the_second_is_kept_apart() -> None:
    registry = NameRegistry()
    assert registry.resolve("train/loss") == ("train_loss", None)
    name, clash = registry.resolve("train_loss")
    assert clash == "train/loss"
    assert name != "train_loss"
    assert name.startswith("train_loss-") and HASHED.search(name)
    assert_safe(name)
    # Asking again answers the same, with no new clash.
    assert registry.resolve("train/loss") == ("train_loss", None)
    assert registry.resolve("train_loss") == (name, None)


def test_registry_three_keys_on_one_name_get_three_names() -> None:
    registry = NameRegistry()
    names = [registry.resolve(source)[0] for source in ("a/b", "a b", "a_b")]
    assert names[0] == "a_b"
    assert len(set(names)) == 3
    for name in names:
        assert_safe(name)


def test_registry_collision_of_long_names_stays_within_255() -> None:
    registry = NameRegistry()
    long_name = "z" * 1000
    first, _ = registry.resolve(long_name)
    # A key whose plain safe name equals the first key's (cut, hashed) name.
    second, clash = registry.resolve(first)
    assert clash == long_name
    assert second != first
    assert_safe(second)


def test_registry_is_deterministic_across_runs() -> None:
    sources = ["train/loss", "train_loss", "x" * 400, "", ".", "_", "损失", "__"]
    runs = []
    for _ in range(2):
        registry = NameRegistry()
        runs.append([registry.resolve(source)[0] for source in sources])
    assert runs[0] == runs[1]


@settings(max_examples=150, deadline=None)
@given(st.lists(ANY_TEXT, max_size=30))
def test_registry_gives_each_key_its_own_safe_name(sources: list[str]) -> None:
    registry = NameRegistry()
    names: dict[str, str] = {}
    for source in sources:
        name, clash = registry.resolve(source)
        assert_safe(name)
        if source in names:
            assert name == names[source]
            assert clash is None
        else:
            # A clash is reported exactly when the plain safe name was already taken by another key.
            taken = {v: k for k, v in names.items()}
            plain = safe_name(source)
            if plain in taken:
                assert clash == taken[plain]
                assert name != plain
            else:
                assert clash is None
                assert name == plain
            names[source] = name
    assert len(set(names.values())) == len(names)
