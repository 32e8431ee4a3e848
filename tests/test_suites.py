import pytest

from diffusers_spatial.relations import CONVERSE, head_noun, parse_spatial_prompt
from diffusers_spatial.suites import SUITES, build_suite, read_suite, write_suite
from diffusers_spatial.vocabulary import singularize


@pytest.mark.parametrize("name", SUITES)
def test_every_prompt_parses_back_to_its_fact(name):
    for p in build_suite(name, num_pairs=40, seed=3):
        parsed = parse_spatial_prompt(p.prompt)
        assert parsed is not None, p.prompt
        assert parsed.relation == p.relation
        # World objects are "<colour> <shape>": the shape is the noun.
        noun = head_noun if name.startswith("world") else singularize
        assert parsed.subject_noun == noun(p.subject)
        assert parsed.object_noun == noun(p.object)


@pytest.mark.parametrize("name", SUITES)
def test_counterfactual_twins_state_the_same_fact(name):
    suite = build_suite(name, num_pairs=10)
    by_fact = {}
    for p in suite:
        by_fact.setdefault(p.fact_id, []).append(p)
    for twins in by_fact.values():
        written, swapped = twins
        assert (written.order, swapped.order) == ("as_written", "swapped")
        assert (swapped.subject, swapped.relation, swapped.object) == (
            written.object,
            CONVERSE[written.relation],
            written.subject,
        )


def test_full_sr2d_has_visor_size_and_unique_prompts():
    suite = build_suite("sr2d")
    assert len(suite) == 25_280  # 3,160 COCO pairs x 4 relations x 2 orders, as VISOR's SR2D
    assert len({p.prompt for p in suite}) == len(suite)
    assert len({p.prompt_id for p in suite}) == len(suite)


def test_seeded_and_sized():
    assert build_suite("3d", num_pairs=5, seed=1) == build_suite("3d", num_pairs=5, seed=1)
    assert build_suite("3d", num_pairs=5, seed=1) != build_suite("3d", num_pairs=5, seed=2)
    assert len(build_suite("3d", num_pairs=5)) == 5 * 2 * 2


def test_geneval_wording():
    p = build_suite("geneval_position", num_pairs=1)[0]
    assert p.prompt.startswith("a photo of a") or p.prompt.startswith("a photo of an")


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown prompt suite 'nope'"):
        build_suite("nope")
    with pytest.raises(ValueError, match="num_pairs"):
        build_suite("sr2d", num_pairs=0)
    with pytest.raises(ValueError, match="num_pairs must be an integer >= 1 or None, got '3'"):
        build_suite("sr2d", num_pairs="3")
    with pytest.raises(ValueError, match="seed must be an integer, got 'x'"):
        build_suite("sr2d", num_pairs=3, seed="x")


def test_jsonl_round_trip(tmp_path):
    suite = build_suite("heldout", num_pairs=3)
    write_suite(suite, tmp_path / "s.jsonl")
    assert read_suite(tmp_path / "s.jsonl") == suite
    (tmp_path / "bad.jsonl").write_text('{"prompt": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_suite(tmp_path / "bad.jsonl")
