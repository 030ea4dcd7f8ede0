import pytest

from parser.topics import TopicError, TopicTemplate, filter_matches, validate_filter


def test_template_matches_and_formats() -> None:
    template = TopicTemplate.parse("ev/{device_id}/telemetry")
    assert template.filter == "ev/+/telemetry"
    assert template.match("ev/356307042441013/telemetry") == {"device_id": "356307042441013"}
    assert template.match("ev//telemetry") is None
    assert template.match("ev/a/b/telemetry") is None
    assert template.match("ev/a/status") is None
    assert template.format({"device_id": "d1"}) == "ev/d1/telemetry"
    assert template.names == {"device_id"}


def test_rest_variable_takes_the_remaining_levels() -> None:
    template = TopicTemplate.parse("src/{device_id}/{path...}")
    assert template.filter == "src/+/#"
    assert template.match("src/d1/t/1") == {"device_id": "d1", "path": "t/1"}
    assert template.match("src/d1") is None
    mapped = TopicTemplate.parse("aws/in/{device_id}/{path...}")
    assert mapped.format({"device_id": "d1", "path": "t/1"}) == "aws/in/d1/t/1"


@pytest.mark.parametrize(
    "text", ["", "ev/+/t", "ev/#", "ev/x{id}/t", "ev/{id}/{id}", "{rest...}/t", "a/{1x}"]
)
def test_bad_templates_are_refused(text: str) -> None:
    with pytest.raises(TopicError):
        TopicTemplate.parse(text)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("ev/+/telemetry", "ev/d1/telemetry", True),
        ("ev/+/telemetry", "ev/d1/status", False),
        ("ev/#", "ev", True),  # '#' also matches the parent level (§4.7.1.2)
        ("ev/#", "ev/d1/x", True),
        ("#", "$SYS/broker/load", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("+/+", "a/b/c", False),
        ("a/b", "a/b", True),
        ("+", "", True),
    ],
)
def test_filter_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert filter_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("text", ["", "a/#/b", "a/b#", "a+/b"])
def test_bad_filters_are_refused(text: str) -> None:
    with pytest.raises(TopicError):
        validate_filter(text)


def test_good_filters_pass() -> None:
    for text in ("#", "+", "a/+/c", "a/b/#", "$share/g/ev/#"):
        assert validate_filter(text) == text
