"""The Label Studio labeling config built from the class catalog, and its comparison with a project's."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mlci.catalog import NONE_OF_THE_ABOVE, ClassCatalog, Concept
from mlci.config import DEFAULT_LABELING_QUESTION
from mlci.labelstudio import compare_labeling_config, labeling_config

TRICKY = ClassCatalog((
    Concept("holiday", 'trees & "presents" <or> a party\nwith family'),
    Concept("gift giving", "giving, receiving, or opening/unwrapping"),
    Concept("no definition"),
))


def _choices(xml: str) -> list[ET.Element]:
    return ET.fromstring(xml).find("Choices").findall("Choice")


def test_config_shows_question_clip_and_every_concept_in_catalog_order(catalog):
    xml = labeling_config(catalog, DEFAULT_LABELING_QUESTION)
    root = ET.fromstring(xml)
    assert [el.tag for el in root] == ["Header", "Video", "Choices"]
    assert root.find("Header").get("value") == DEFAULT_LABELING_QUESTION
    assert root.find("Video").attrib == {"name": "video", "value": "$video"}
    choices = root.find("Choices")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("concepts", "video", "multiple")
    assert [c.get("value") for c in choices] == [*catalog.names, NONE_OF_THE_ABOVE]
    gift = choices[catalog.names.index("gift giving")]
    assert gift.get("hint") == "scenes of gift giving, receiving, or opening/unwrapping"
    assert gift.get("html") == "<b>gift giving</b> - scenes of gift giving, receiving, or opening/unwrapping"


def test_definitions_and_question_survive_escaping():
    question = 'Tick "all" that apply & nothing <else>'
    xml = labeling_config(TRICKY, question)
    assert ET.fromstring(xml).find("Header").get("value") == question
    holiday, gift, bare, none = _choices(xml)
    assert holiday.get("hint") == 'trees & "presents" <or> a party\nwith family'
    # The html attribute is HTML: its text is escaped once more, so the browser shows it as written.
    assert holiday.get("html") == "<b>holiday</b> - trees &amp; &quot;presents&quot; &lt;or&gt; a party\nwith family"
    assert bare.attrib == {"value": "no definition"}
    assert none.get("value") == NONE_OF_THE_ABOVE


@pytest.mark.parametrize("question", ["", "   ", "$question", None])
def test_question_must_be_text_that_is_not_a_task_field(catalog, question):
    with pytest.raises(ValueError, match="question must be non-empty text"):
        labeling_config(catalog, question)


def test_own_config_matches_and_layout_does_not_matter(catalog):
    assert compare_labeling_config(labeling_config(catalog, "Which?"), catalog) == []
    names = "".join(f'<choice value="{n}"/>' for n in reversed([*catalog.names, NONE_OF_THE_ABOVE]))
    hand_made = ('<View><View><video name="video" value="$video"/></View>'
                 f'<choices name="concepts" toName="video" choice="multiple">{names}</choices></View>')
    assert compare_labeling_config(hand_made, catalog) == []


def _edited(catalog: ClassCatalog, old: str, new: str) -> str:
    xml = labeling_config(catalog, "Which?")
    assert old in xml
    return xml.replace(old, new)


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('<Choice value="halloween"', '<Choice value="Halloween"',
         ["choices missing: ['halloween']", "choices not in the class catalog: ['Halloween']"]),
        ('<Choice value="halloween"', '<Choice value="halloween" alias="hw"',
         ["choices with an alias, which exports carry instead of the value: {'halloween': 'hw'}"]),
        ('choice="multiple"', 'choice="single"', ["<Choices name='concepts'> is choice='single' (Label Studio's "
                                                  "default is single); mlci needs choice='multiple'"]),
        ('choice="multiple"', "", ["<Choices name='concepts'> is choice='single' (Label Studio's default is "
                                   "single); mlci needs choice='multiple'"]),
        ('<Choices name="concepts"', '<Choices name="labels"', ["no <Choices name='concepts'> (Choices tags: ['labels'])"]),
        ('<Video name="video"', '<Video name="clip"', ["no <Video name='video'> (Video tags: ['clip'])"]),
        ('toName="video"', 'toName="clip"', ["<Choices name='concepts'> has toName='clip', not 'video'"]),
        ('value="$video"', 'value="$url"', ["<Video name='video'> reads '$url', not '$video'"]),
    ],
)
def test_each_difference_that_matters_is_named(catalog, old, new, expected):
    assert compare_labeling_config(_edited(catalog, old, new), catalog) == expected


def test_missing_and_extra_concepts(catalog):
    smaller = ClassCatalog(catalog.concepts[:-1])
    xml = labeling_config(smaller, "Which?")
    assert compare_labeling_config(xml, catalog) == [f"choices missing: [{catalog.names[-1]!r}]"]
    assert compare_labeling_config(labeling_config(catalog, "Which?"), smaller) == [
        f"choices not in the class catalog: [{catalog.names[-1]!r}]"
    ]


@pytest.mark.parametrize(
    "xml, start",
    [
        ("", "the labeling config is empty"),
        ("<View><Video name='video'", "the labeling config is not well-formed XML"),
        ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
         "<View><Header value='&lol2;'/></View>", "the labeling config declares a DTD"),
    ],
)
def test_unreadable_configs_are_one_difference_and_no_entity_is_expanded(catalog, xml, start):
    diffs = compare_labeling_config(xml, catalog)
    assert len(diffs) == 1 and diffs[0].startswith(start)
