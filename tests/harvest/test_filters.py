"""The spec's entity filters, one case each."""

from __future__ import annotations

from luminary.harvest.filters import cap_word_repeats, entity_ok, prompt_words, tuple_ok

BANNED = prompt_words(["<ENT0> can <ENT1> in <ENT2> ."])


def test_each_entity_filter():
    assert entity_ok("ice cream") and entity_ok("dog", BANNED)
    for bad in ["the", "ox", "a dog", "dog dog", "123", "dog's", "e-mail", "can", "caf\ufffd"]:
        assert not entity_ok(bad, BANNED), bad


def test_tuple_filters_and_word_cap():
    assert tuple_ok(["dog", "bark"]) and not tuple_ok(["dog", "dog"]) and not tuple_ok(["dog", "dogs"])
    assert not tuple_ok(["hot dog", "hot"])
    ranked = [([f"dog{i}", "bone"], -float(i)) for i in range(8)]
    kept = cap_word_repeats(ranked)
    assert [e for e, _s in kept] == [e for e, _s in ranked[:5]]  # "bone" in at most 5 tuples
