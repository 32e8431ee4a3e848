import pytest

from diffusers_spatial.metric.real_photos import labelled_statements, score_real_photos
from diffusers_spatial.photos import PhotoUnavailableError, load_photo
from diffusers_spatial.relations import parse_spatial_prompt


def test_statements_are_labelled_from_the_hand_checked_boxes():
    statements = {s.prompt: s.truth for s in labelled_statements(["dog", "person"])}
    # dog.jpg: dog lower-left, truck upper-right; person.jpg: dog, person, horse from left to right
    assert statements["a dog on the left of a truck"] is True
    assert statements["a truck on the left of a dog"] is False
    assert statements["a person on the left of a horse"] is True
    assert statements["a horse on the left of a dog"] is False
    for prompt in statements:  # every protocol, T2I-CompBench's relation list included, can read them
        assert parse_spatial_prompt(prompt) is not None
    assert any(statements.values()) and not all(statements.values())


def test_metric_separates_true_from_false_statements_on_real_photos(tmp_path):
    try:
        load_photo("dog")
    except PhotoUnavailableError as err:
        pytest.skip(f"darknet photos not installed: {err}")
    result = score_real_photos(tmp_path, progress=False)
    esplora_true = result["true"]["summary"]["esplora"]["accuracy"]
    esplora_false = result["false"]["summary"]["esplora"]["accuracy"]
    assert esplora_true > 0.3 and esplora_false < 0.1
    assert (tmp_path / "true-statements" / "report.md").is_file()
    assert (tmp_path / "false-statements" / "accuracy_per_relation.png").is_file()
    for folder in ("true-statements", "false-statements"):  # the photos with their boxes and verdicts
        assert (tmp_path / folder / "contact_sheet.png").stat().st_size > 10_000
    assert result["false"]["value_label"] == "acceptance of false statements"
