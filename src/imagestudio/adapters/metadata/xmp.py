"""The XMP packet we write (``imagestudio:parameters`` and ``imagestudio:generation``) and read.

A small packet: one ``rdf:Description`` with ``xmp:CreatorTool``, the AUTOMATIC1111 text and our
JSON as elements of the ``imagestudio`` namespace (:data:`NAMESPACE`). Reading accepts them as
elements or as attributes (XMP writers may rewrite one as the other), and refuses a packet with
a document type declaration before parsing it, so no entity is ever expanded.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape

__all__ = ["NAMESPACE", "XmpFields", "json_for_xml", "read_xmp", "xmp_packet"]

NAMESPACE: Final = "urn:imagestudio:xmp:1.0/"
"""The namespace of our XMP properties (prefix ``imagestudio``)."""
_RDF: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XMP: Final = "http://ns.adobe.com/xap/1.0/"
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot carry, not even as character references."""
_DECLARATION: Final = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_ROOTS: Final = ((b"<x:xmpmeta", b"</x:xmpmeta>"), (b"<rdf:RDF", b"</rdf:RDF>"))


def _text(value: str) -> str:
    """``value`` as element content: markup escaped, carriage returns kept, the characters XML
    cannot carry replaced (the JSON beside it carries them escaped)."""
    return escape(_NOT_XML.sub("\ufffd", value)).replace("\r", "&#13;")


def json_for_xml(document: str) -> str:
    """JSON text whose characters XML cannot carry are written as ``\\u`` escapes (they can only
    stand inside JSON strings, where such an escape means the same character)."""
    return _NOT_XML.sub(lambda match: "".join(f"\\u{unit:04x}" for unit in _units(match.group())), document)


def _units(char: str) -> list[int]:
    code = ord(char)
    if code < 0x10000:
        return [code]
    code -= 0x10000
    return [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]


def xmp_packet(*, parameters: str | None, generation: str, creator: str) -> bytes:
    """The packet, UTF-8; ``parameters`` (the AUTOMATIC1111 text) may be left out to save room."""
    lines = [
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>',
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
        f'<rdf:RDF xmlns:rdf="{_RDF}">',
        f'<rdf:Description rdf:about="" xmlns:xmp="{_XMP}" xmlns:imagestudio="{NAMESPACE}">',
        f"<xmp:CreatorTool>{_text(creator)}</xmp:CreatorTool>",
    ]
    if parameters is not None:
        lines.append(f"<imagestudio:parameters>{_text(parameters)}</imagestudio:parameters>")
    lines += [
        f"<imagestudio:generation>{_text(json_for_xml(generation))}</imagestudio:generation>",
        "</rdf:Description>",
        "</rdf:RDF>",
        "</x:xmpmeta>",
        '<?xpacket end="w"?>',
    ]
    return "\n".join(lines).encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class XmpFields:
    parameters: str | None = None
    generation: str | None = None


def read_xmp(packet: bytes) -> XmpFields:
    """Our two properties in ``packet``; nothing for a packet that is not XML we may parse."""
    if _DECLARATION.search(packet):
        return XmpFields()
    for opening, closing in _ROOTS:  # the packet's XML, without its processing instructions and padding
        start, end = packet.find(opening), packet.rfind(closing)
        if 0 <= start < end:
            document = packet[start : end + len(closing)]
            break
    else:
        return XmpFields()
    try:
        root = ElementTree.fromstring(document)  # noqa: S314 - no DTD gets here (_DECLARATION), so no entity
    except (ElementTree.ParseError, ValueError, RecursionError):
        return XmpFields()
    found: dict[str, str] = {}
    for element in root.iter():
        for name in ("parameters", "generation"):
            qualified = f"{{{NAMESPACE}}}{name}"
            if element.tag == qualified and element.text is not None:
                found.setdefault(name, element.text)
            elif qualified in element.attrib:
                found.setdefault(name, element.attrib[qualified])
    return XmpFields(parameters=found.get("parameters"), generation=found.get("generation"))
