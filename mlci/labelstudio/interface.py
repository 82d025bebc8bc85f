"""The Label Studio labeling interface, built from the class catalog, and its check against a project's.

The interface shows the clip (``<Video name="video" value="$video">``: the ``video`` field of every
task mlci publishes), the labeling question, and one checkbox per concept in catalog order plus
"none of the above" (``<Choices name="concepts" choice="multiple">``). Each concept's definition is
shown next to its checkbox (the ``html`` of the ``Choice``: Label Studio exports its ``value``) and
as its hover ``hint`` (rendered only where Label Studio's choice-hint feature flag is on).

Label Studio configs are user-supplied XML. They are parsed with :mod:`xml.etree.ElementTree` after
refusing any DTD: a labeling config never needs one, and without ``<!DOCTYPE``/``<!ENTITY`` there
is no entity to expand or fetch (what ``defusedxml``'s ``forbid_dtd`` does; defusedxml is not a
dependency of mlci).
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from mlci.catalog import NONE_OF_THE_ABOVE, ClassCatalog

__all__ = ["VIDEO_NAME", "VIDEO_VALUE", "CHOICES_NAME", "labeling_config", "compare_labeling_config"]

#: Name of the ``Video`` object tag; predictions and answers refer to it as ``to_name``.
VIDEO_NAME = "video"
#: Task field holding the clip URL (``data.video`` of ``tasks.json``).
VIDEO_VALUE = "$video"
#: Name of the ``Choices`` control; answers carry it as ``from_name``.
CHOICES_NAME = "concepts"

#: What the seed's ``question.html`` says besides "none of the above".
_NONE_DEFINITION = "none of these labels is a good match"
_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def labeling_config(catalog: ClassCatalog, question: str) -> str:
    """The Label Studio labeling config (XML) asking ``question`` about a clip, with the catalog's concepts.

    Parameters
    ----------
    catalog : ClassCatalog
        Concepts offered, in this order, followed by "none of the above".
    question : str
        Shown above the clip. Must not start with ``$`` (Label Studio would read a task field).

    Returns
    -------
    str
        The ``<View>`` document; every text is escaped by the XML serialiser.
    """
    if not isinstance(question, str) or not question.strip() or question.lstrip().startswith("$"):
        raise ValueError(f"question must be non-empty text not starting with '$', but got {question!r}")
    view = ET.Element("View")
    ET.SubElement(view, "Header", value=question.strip())
    ET.SubElement(view, "Video", name=VIDEO_NAME, value=VIDEO_VALUE)
    choices = ET.SubElement(
        view, "Choices", name=CHOICES_NAME, toName=VIDEO_NAME, choice="multiple", showInline="false",
        required="true", requiredMessage=f"Tick every concept that applies, or {NONE_OF_THE_ABOVE!r}.",
    )
    entries = [(c.name, c.definition) for c in catalog.concepts] + [(NONE_OF_THE_ABOVE, _NONE_DEFINITION)]
    for name, definition in entries:
        attrs = {"value": name}
        if definition.strip():
            # html is markup inside the attribute: escape the texts for HTML, the serialiser escapes for XML.
            attrs["html"] = f"<b>{html.escape(name)}</b> - {html.escape(definition.strip())}"
            attrs["hint"] = definition.strip()
        ET.SubElement(choices, "Choice", attrs)
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode") + "\n"


def _tags(root: ET.Element, tag: str) -> list[ET.Element]:
    # Label Studio matches tag names case-insensitively (<video> is <Video>).
    return [el for el in root.iter() if isinstance(el.tag, str) and el.tag.lower() == tag.lower()]


def compare_labeling_config(existing_xml: str, catalog: ClassCatalog) -> list[str]:
    """How a project's labeling config differs from what mlci publishes and reads; empty when it fits.

    Checked: a ``Video`` named ``video`` reading ``$video``; a ``Choices`` named ``concepts`` on it
    with ``choice="multiple"``; exactly the catalog's concepts plus "none of the above" as choice
    values (compared exactly: predictions use the catalog's spelling); no choice ``alias`` (exports
    would carry the alias instead). Layout, question, hints and order do not matter.

    Parameters
    ----------
    existing_xml : str
        The project's ``label_config``.
    catalog : ClassCatalog

    Returns
    -------
    list of str
        One sentence per difference; a config that is not XML, or has a DTD, is one difference.
    """
    if not isinstance(existing_xml, str) or not existing_xml.strip():
        return [f"the labeling config is empty, but got {existing_xml!r}"]
    if _DTD.search(existing_xml):
        return ["the labeling config declares a DTD (<!DOCTYPE or <!ENTITY); mlci does not parse those"]
    try:
        root = ET.fromstring(existing_xml)
    except ET.ParseError as exc:
        return [f"the labeling config is not well-formed XML ({exc})"]

    diffs: list[str] = []
    videos = _tags(root, "Video")
    video = next((v for v in videos if v.get("name") == VIDEO_NAME), None)
    if video is None:
        diffs.append(f"no <Video name={VIDEO_NAME!r}> (Video tags: {[v.get('name') for v in videos]})")
    elif video.get("value") != VIDEO_VALUE:
        diffs.append(f"<Video name={VIDEO_NAME!r}> reads {video.get('value')!r}, not {VIDEO_VALUE!r}")

    all_choices = _tags(root, "Choices")
    choices = next((c for c in all_choices if c.get("name") == CHOICES_NAME), None)
    if choices is None:
        diffs.append(f"no <Choices name={CHOICES_NAME!r}> (Choices tags: {[c.get('name') for c in all_choices]})")
        return diffs
    if choices.get("toName") != VIDEO_NAME:
        diffs.append(f"<Choices name={CHOICES_NAME!r}> has toName={choices.get('toName')!r}, not {VIDEO_NAME!r}")
    if choices.get("choice", "single") != "multiple":
        diffs.append(f"<Choices name={CHOICES_NAME!r}> is choice={choices.get('choice', 'single')!r} "
                     "(Label Studio's default is single); mlci needs choice='multiple'")

    options = _tags(choices, "Choice")
    values = [c.get("value") for c in options]
    expected = [*catalog.names, NONE_OF_THE_ABOVE]
    missing = [v for v in expected if v not in values]
    extra = [v for v in values if v not in expected]
    if missing:
        diffs.append(f"choices missing: {missing}")
    if extra:
        diffs.append(f"choices not in the class catalog: {extra}")
    aliased = {c.get("value"): c.get("alias") for c in options if c.get("alias") is not None}
    if aliased:
        diffs.append(f"choices with an alias, which exports carry instead of the value: {aliased}")
    return diffs
