"""Email bytes → SMS text. Pure: no I/O, no clock, no configuration object.

What a person would call "the message" of a mail:
- the text/plain body if there is one, else the HTML body rendered as text (lxml);
- transfer encodings undone and charsets decoded, with the fallbacks real mail needs (labels
  that lie, missing labels, legacy and CJK charsets, unknown labels);
- attachments, calendar parts, S/MIME and PGP signatures ignored; multipart/signed read through;
- the signature (after a `-- ` line) and quoted replies removed: `>` lines, "On … wrote:"
  attributions, Outlook's "-----Original Message-----" and "From: … Sent: …" header blocks,
  HTML blockquotes and the quote/signature containers of Gmail, Apple Mail and Thunderbird;
- whitespace tidied for SMS: NBSP and tabs become spaces (they would force UCS-2), zero-width
  characters go, at most one blank line in a row;
- the subject prepended, ignored or used only when the body is empty.

An empty result raises BridgeError(INVALID_MESSAGE) (SMTP 554 5.6.0).
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from dataclasses import dataclass
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from typing import Any, Iterator

import lxml.etree
import lxml.html

from bridge.core.errors import BridgeError, ErrorName

SUBJECT_MODES = ("prepend", "ignore", "only-if-body-empty")
_MAX_DEPTH = 24  # MIME nesting we follow; deeper parts are ignored


@dataclass(frozen=True)
class MailText:
    text: str  # the SMS text (never empty)
    subject: str
    message_id: str | None  # the Message-ID header as sent, e.g. "<abc@host>"
    body_kind: str  # "plain" | "html" | "none"
    body: str = ""  # the text without the subject
    in_reply_to: str | None = None  # the In-Reply-To header (one or more "<id>")


def mail_to_text(raw: bytes, *, subject: str = "prepend") -> str:
    """The SMS text of one mail; BridgeError(INVALID_MESSAGE) when there is none."""
    return parse_mail(raw, subject=subject).text


def parse_mail(raw: bytes, *, subject: str = "prepend") -> MailText:
    if subject not in SUBJECT_MODES:
        raise ValueError(f"subject must be one of {SUBJECT_MODES}")
    msg = BytesParser(policy=compat32).parsebytes(raw)
    subject_text = " ".join(_header_text(_raw_header(msg, "Subject")).translate(_INVISIBLE).split())
    message_id = _message_id(msg, "Message-ID")
    body, kind = _body(msg)
    if subject == "ignore" or not subject_text:
        text = body
    elif subject == "only-if-body-empty":
        text = body or subject_text
    else:
        text = f"{subject_text}\n{body}" if body else subject_text
    if not text:
        raise BridgeError(ErrorName.INVALID_MESSAGE, "the mail has no text")
    return MailText(text, subject_text, message_id, kind, body,
                    _message_id(msg, "In-Reply-To"))


# ---------------------------------------------------------------- headers


def _message_id(msg: Message, header: str) -> str | None:
    """A Message-ID or In-Reply-To header, unfolded, at most a line long."""
    value = _raw_header(msg, header)
    if value is None:
        return None
    text = "".join(_header_text(value).split())  # folded ids
    return text[:998] or None


def _raw_header(msg: Message, name: str) -> str | None:
    """The first header of that name as received (8-bit bytes kept as surrogate escapes)."""
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def _header_text(raw: str | None) -> str:
    """An RFC 2047 header as text; raw 8-bit headers read as UTF-8, else windows-1252."""
    if not raw:
        return ""
    try:
        chunks: list[tuple[bytes | str, str | None]] = decode_header(raw)
    except Exception:  # malformed encoded words: keep the header as it is
        chunks = [(raw, None)]
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogateescape")
        try:
            out.append(decode_bytes(chunk, charset))
        except Exception:
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


# ---------------------------------------------------------------- charsets

# Labels that real mail uses for something wider than what the label names (WHATWG-style).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "l1": "cp1252", "us-ascii": "ascii", "ascii": "ascii", "ansi_x3.4-1968": "ascii",
    "iso-8859-9": "cp1254", "iso-8859-11": "cp874", "tis-620": "cp874",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "cp936": "gb18030", "csgb2312": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "ks_c_5601": "cp949",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "windows-31j": "cp932", "ms_kanji": "cp932",
    "big5": "big5hkscs", "x-big5": "big5hkscs",
    "iso-2022-jp": "iso2022_jp_ext",
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
}
# When the labelled codec fails, these are tried (strictly) before giving up on the label.
_CHARSET_WIDER = {
    "iso2022_jp_ext": ("iso2022_jp_2", "iso2022_jp_3", "iso2022_jp_2004"),
    "cp932": ("shift_jis_2004",),
    "gb18030": (),
}


def decode_bytes(data: bytes, label: str | None) -> str:
    """Decode text bytes under a (possibly wrong, missing or unknown) charset label."""
    if not data:
        return ""
    codec = _codec(label)
    if codec is not None and codec not in ("ascii", "utf-8"):
        for name in (codec, *_CHARSET_WIDER.get(codec, ())):
            try:
                return data.decode(name)
            except (UnicodeDecodeError, LookupError):
                continue
        try:
            return data.decode("utf-8")  # a lying label
        except UnicodeDecodeError:
            return data.decode(codec, "replace")
    # utf-8, us-ascii, missing or unknown label: UTF-8 if it is valid, else windows-1252.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    name = label.strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        return _CHARSET_ALIASES.get(codecs.lookup(name).name, codecs.lookup(name).name)
    except (LookupError, ValueError):  # unknown, or not even a name (a NUL in it)
        return None


# ---------------------------------------------------------------- MIME structure


def _body(msg: Message) -> tuple[str, str]:
    for kind, part in _candidates(msg, 0, salvage=True):
        try:
            text = _part_text(kind, part)
        except Exception:  # one broken part does not hide the others
            continue
        if text:
            return text, kind
    return "", "none"


def _is_attachment(part: Message) -> bool:
    raw_disposition = part.get("Content-Disposition")
    if raw_disposition is None and "name" not in str(part.get("Content-Type") or "").lower():
        return False  # the common case, without the cost of parsing parameters
    disposition = str(raw_disposition or "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return True
    try:
        return part.get_filename() is not None
    except Exception:
        return True


def _candidates(part: Message, depth: int, *, salvage: bool) -> Iterator[tuple[str, Message]]:
    """Text parts that could be the body, best first."""
    if depth > _MAX_DEPTH:
        return
    ctype = part.get_content_type()
    if part.is_multipart():
        # Only a multipart's payload is read here: a leaf's get_payload() decodes 8-bit text
        # with its charset label, and a label with a NUL in it raises ValueError.
        payload = part.get_payload()
        children = [c for c in payload if isinstance(c, Message)]
        subtype = part.get_content_subtype()
        if subtype == "alternative":
            found = [c for child in children for c in _candidates(child, depth + 1, salvage=salvage)]
            yield from (c for c in found if c[0] == "plain")
            yield from (c for c in found if c[0] == "html")
        elif subtype == "signed":  # RFC 1847: the content, then the signature
            if children:
                yield from _candidates(children[0], depth + 1, salvage=salvage)
        elif subtype == "related":
            start = part.get_param("start")
            root = next((c for c in children if start and c.get("Content-ID") == start),
                        children[0] if children else None)
            if root is not None:
                yield from _candidates(root, depth + 1, salvage=salvage)
        else:  # mixed, report, digest, unknown: the inline parts in order
            for child in children:
                if not _is_attachment(child):
                    yield from _candidates(child, depth + 1, salvage=salvage)
        return
    if ctype.startswith("multipart/"):
        # A multipart whose boundary is missing or does not match: find the real one.
        repaired = _salvage(part) if salvage else None
        if repaired is not None:
            yield from _candidates(repaired, depth + 1, salvage=False)
        return
    if ctype == "text/plain" and not _is_attachment(part):
        yield "plain", part
    elif ctype == "text/html" and not _is_attachment(part):
        yield "html", part


_BOUNDARY_LINE = re.compile(r"^--(\S{1,70}?)(--)?[ \t]*\r?$", re.M)
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:", re.M)


def _salvage(part: Message) -> Message | None:
    # As bytes: get_payload() would decode 8-bit text by the part's charset label, which may
    # be anything (a NUL in it raises ValueError).
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return None
    payload = raw.decode("utf-8", "surrogateescape")
    counts: Counter[str] = Counter()
    for m in _BOUNDARY_LINE.finditer(payload):
        following = payload[m.end():m.end() + 200].lstrip("\r\n")
        if _HEADER_LINE.match(following) or m.group(2):
            counts[m.group(1)] += 1
    if not counts:
        return None
    boundary = counts.most_common(1)[0][0]
    head = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    data = head.encode("ascii", "replace") + payload.encode("utf-8", "surrogateescape")
    repaired = BytesParser(policy=compat32).parsebytes(data)
    return repaired if repaired.is_multipart() else None


def _part_text(kind: str, part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        data = b""
    label = part.get_content_charset(None)
    if kind == "html":
        if label is None:
            label = _sniff_html_charset(data)
        return clean_text(html_to_text(decode_bytes(data, label)))
    text = decode_bytes(data, label)
    if "flowed" in str(part.get("Content-Type") or "").lower() \
            and str(part.get_param("format") or "").lower() == "flowed":
        delsp = str(part.get_param("delsp") or "").lower() == "yes"
        text = unflow(text, delsp=delsp)
    return clean_text(text)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def _sniff_html_charset(data: bytes) -> str | None:
    m = _META_CHARSET.search(data[:4096])
    return m.group(1).decode("ascii") if m else None


# ---------------------------------------------------------------- format=flowed


def unflow(text: str, *, delsp: bool = False) -> str:
    """RFC 3676: join soft-broken lines, remove space-stuffing, keep quote depth."""
    out: list[str] = []
    para: str | None = None
    para_depth = 0

    def emit(depth: int, body: str) -> None:
        out.append(">" * depth + (" " if depth and body else "") + body)

    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        if body.startswith(" "):
            body = body[1:]
        flowed = body.endswith(" ") and body != "-- "
        if para is not None and depth != para_depth:
            emit(para_depth, para)
            para = None
        if flowed and delsp:
            body = body[:-1]
        para = body if para is None else para + body
        para_depth = depth
        if not flowed:
            emit(depth, para)
            para = None
    if para is not None:
        emit(para_depth, para)
    return "\n".join(out)


# ---------------------------------------------------------------- HTML


_SKIP_TAGS = frozenset({
    "head", "style", "script", "title", "template", "noscript", "blockquote", "object",
    "svg", "math", "iframe", "select", "button", "img", "video", "audio", "map",
})
_SKIP_CLASSES = frozenset({
    "gmail_quote", "gmail_attr", "gmail_signature", "gmail_signature_prefix",
    "moz-signature", "moz-cite-prefix", "moz-forward-container-quote", "yahoo_quoted",
    "protonmail_quote", "protonmail_signature_block",
})
_BLOCK_TAGS = frozenset({
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "table", "tr", "pre",
    "hr", "section", "article", "header", "footer", "address", "center", "dl", "dt", "dd",
    "form", "fieldset", "figure", "figcaption", "main", "nav", "aside", "caption",
    "tbody", "thead", "tfoot", "body", "html",
})
_CELL_TAGS = frozenset({"td", "th"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all", re.I)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_WS = re.compile(r"[ \t\r\n\f\v]+")


class _Renderer:
    """Lines of text from HTML events: blocks start lines, <br> ends one, NBSP is content."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cur: list[str] = []
        self.content = False
        self.space = False
        self.pre = 0

    def text(self, s: str | None) -> None:
        if not s:
            return
        if self.pre:
            first, *rest = s.replace("\r\n", "\n").split("\n")
            self._add(first)
            for piece in rest:
                self.hard_break()
                self._add(piece)
            return
        s = _WS.sub(" ", s)
        if s.startswith(" "):
            self.space = bool(self.cur)
            s = s[1:]
        if not s:
            return
        trailing = s.endswith(" ")
        if trailing:
            s = s[:-1]
        if self.space and self.cur:
            self.cur.append(" ")
        self._add(s)
        self.space = trailing

    def _add(self, s: str) -> None:
        if s:
            self.cur.append(s)
            if s.strip(" \t") or "\xa0" in s:
                self.content = True

    def separator(self) -> None:
        self.space = bool(self.cur)

    def soft_break(self) -> None:
        if self.content:
            self.hard_break()
        else:
            self.cur = []
            self.space = False

    def hard_break(self) -> None:
        self.lines.append("".join(self.cur))
        self.cur = []
        self.content = False
        self.space = False

    def result(self) -> str:
        self.soft_break()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    """Visible text of an HTML mail body, one line per block; quotes and signatures dropped."""
    html = _XML_DECL.sub("", html, count=1).replace("\x00", "")
    if not html.strip():
        return ""
    try:
        root = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return ""
    out = _Renderer()
    lists: list[list[int]] = []  # per open list: [counter] for <ol>, [] for <ul>
    walker = lxml.etree.iterwalk(root, events=("start", "end", "comment", "pi"))
    for event, el in walker:
        if event in ("comment", "pi"):
            out.text(el.tail)
            continue
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if event == "start":
            if _skip(el, tag):
                walker.skip_subtree()
                el.set("data-sms-skipped", "1")
                continue
            if tag == "br":
                out.hard_break()
            elif tag in _BLOCK_TAGS:
                out.soft_break()
                if tag == "pre":
                    out.pre += 1
                elif tag == "ol":
                    lists.append([0])
                elif tag == "ul":
                    lists.append([])
                elif tag == "li":
                    if lists and lists[-1]:
                        lists[-1][0] += 1
                        out.text(f"{lists[-1][0]}. ")
                    else:
                        out.text("- ")
            out.text(el.text)
        else:
            if el.get("data-sms-skipped") is None:
                if tag in _BLOCK_TAGS:
                    out.soft_break()
                    if tag == "pre":
                        out.pre -= 1
                    elif tag in ("ol", "ul") and lists:
                        lists.pop()
                elif tag in _CELL_TAGS:
                    out.separator()
            out.text(el.tail)
    return out.result()


def _skip(el: Any, tag: str) -> bool:
    if tag in _SKIP_TAGS:
        return True
    classes = set((el.get("class") or "").split())
    if classes & _SKIP_CLASSES:
        return True
    style = el.get("style")
    return bool(style and _HIDDEN_STYLE.search(style))


# ---------------------------------------------------------------- cleaning


_SIGNATURE = re.compile(r"^-- ?$")
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine"
                       r"|Mensaje original|Messaggio originale)\s*-{2,}\s*$", re.I)
_ATTRIBUTION = re.compile(
    r"^\s*(On\s.{1,300}\swrote:|Am\s.{1,300}\sschrieb\s.{0,200}:|Le\s.{1,300}\sa écrit\s?:"
    r"|El\s.{1,300}\sescribió:|Il\s.{1,300}\sha scritto:|Op\s.{1,300}\sschreef\s.{0,200}:)\s*$",
    re.I)
_ATTRIBUTION_START = re.compile(r"^\s*(On|Am|Le|El|Il|Op)\s", re.I)
_FROM = re.compile(r"^\s*\*?(From|Von|De|Da|Van)\s*:\*?\s", re.I)
_SENT = re.compile(r"^\s*\*?(Sent|Date|Gesendet|Datum|Envoyé|Enviado|Inviato|Verzonden)\s*:\*?\s",
                   re.I)
_TO_OR_SUBJECT = re.compile(r"^\s*\*?(To|Subject|An|Betreff|À|Objet|Para|Asunto|A|Oggetto|Aan"
                            r"|Onderwerp|Cc)\s*:\*?", re.I)
_RULE = re.compile(r"^[\s_\-=*]*$")
_MOBILE_FOOTER = re.compile(
    r"^(Sent from my \S.{0,40}|Sent from (Outlook|Mail|Yahoo Mail)( for \S.{0,30})?"
    r"|Get Outlook for (iOS|Android)|Von meinem \S.{0,40} gesendet|Envoyé de mon \S.{0,40})$",
    re.I)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200e\u200f\ufeff\u00ad\u2060\u034f"), None)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Quoted replies and signature removed, whitespace tidied for SMS."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = _cut_reply_and_signature(lines)
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.lstrip(" ").startswith(">"):
            continue
        if _ATTRIBUTION.match(line):
            continue
        # An attribution wrapped over two lines ("On …, John <" / "john@x> wrote:").
        if i + 1 < len(lines) and _ATTRIBUTION_START.match(line) \
                and _ATTRIBUTION.match(f"{line} {lines[i + 1]}"):
            continue
        if i > 0 and _ATTRIBUTION_START.match(lines[i - 1]) \
                and _ATTRIBUTION.match(f"{lines[i - 1]} {line}"):
            continue
        kept.append(line)
    text = _tidy("\n".join(kept))
    tail = text.rsplit("\n", 1)
    if len(tail) == 2 and _MOBILE_FOOTER.match(tail[1].strip()):
        text = _tidy(tail[0])
    elif _MOBILE_FOOTER.match(text):
        text = ""
    return text


def _cut_reply_and_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line) or _ORIGINAL.match(line):
            return _drop_rules(lines[:i])
        if _FROM.match(line):
            window = lines[i + 1:i + 7]
            if any(_SENT.match(w) for w in window) and any(_TO_OR_SUBJECT.match(w) for w in window):
                return _drop_rules(lines[:i])
    return lines


def _drop_rules(lines: list[str]) -> list[str]:
    """Trailing separator lines ("_____", "-----") left above a cut."""
    while lines and _RULE.match(lines[-1]):
        lines = lines[:-1]
    return lines


def _tidy(text: str) -> str:
    text = text.translate(_INVISIBLE).replace("\xa0", " ").replace("\t", " ")
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
