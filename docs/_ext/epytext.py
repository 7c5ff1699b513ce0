"""
A small Sphinx extension: spicesrv's docstrings are written in epytext
(Twisted's convention, read by pydoctor); this turns the markup they use
into reST in ``autodoc-process-docstring``, so autodoc renders them cleanly.

What it converts, and nothing more:

- ``L{name}`` and ``L{text <name>}`` -> ``:py:obj:`name```;
- ``C{code}`` -> ````code````, ``I{x}`` -> ``*x*``, ``B{x}`` -> ``**x**``,
  ``U{url}`` / ``U{text <url>}`` -> a link;
- the fields ``@param x:``, ``@type x:``, ``@ivar x:``, ``@cvar x:``,
  ``@var x:``, ``@raise E:``, ``@return:``, ``@rtype:``, ``@see:``,
  ``@note:`` -> their Sphinx field-list equivalents;
- an indented block after a paragraph (the docstrings' examples) is shown
  as code, not as a quotation;
- a zope interface's docstring gets a line with its tagged values
  (``type``, ``major_version``, ``minor_version``).
"""

import re

from sphinx.util.docstrings import prepare_docstring

# One level of nested braces is enough for spicesrv's docstrings
# (C{{"event": ...}}).
_BRACED = r"\{((?:[^{}]|\{[^{}]*\})*)\}"

# The markup letter must not end a longer word (SPICE{...} is not markup).
_LINK = re.compile(r"(?<![A-Za-z])L" + _BRACED)
_CODE = re.compile(r"(?<![A-Za-z])C" + _BRACED)
_ITALIC = re.compile(r"(?<![A-Za-z])I" + _BRACED)
_BOLD = re.compile(r"(?<![A-Za-z])B" + _BRACED)
_URL = re.compile(r"(?<![A-Za-z])U" + _BRACED)
_TARGET = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)

_FIELDS = {
    "param": "param", "type": "type", "ivar": "ivar", "cvar": "cvar",
    "var": "var", "raise": "raises", "raises": "raises", "return": "returns",
    "returns": "returns", "rtype": "rtype", "see": "see", "note": "note",
    "keyword": "keyword", "kwarg": "keyword",
}
_FIELD = re.compile(r"^(\s*)@(\w+)(?:\s+([^:]+?))?\s*:(\s|$)")


# What reST allows right before inline markup, and right after it; anything
# else needs an escaped space ("\\ "), which renders as nothing.
_BEFORE_OK = set(" \t\n-:/'\"<([{")
_AFTER_OK = set(" \t\n-.,:;!?\\/'\")]}>")


def _separate(pattern, render, text):
    """
    Replace each match with C{render(match)}, escaping where the result
    would touch a character reST does not allow next to inline markup.
    """
    out = []
    last = 0
    for match in pattern.finditer(text):
        before = text[last:match.start()]
        replacement = render(match)
        if replacement and before and before[-1] not in _BEFORE_OK:
            before += "\\ "
        out.append(before)
        out.append(replacement)
        last = match.end()
        following = text[last:last + 1]
        if replacement and following and following not in _AFTER_OK:
            out.append("\\ ")
    out.append(text[last:])
    return "".join(out)


def _link(match):
    body = match.group(1).strip()
    target = _TARGET.match(body)
    if target:
        return ":py:obj:`%s <%s>`" % (target.group(1), target.group(2).strip())
    return ":py:obj:`%s`" % (body,)


def _code(match):
    body = match.group(1).strip()
    return "``%s``" % (body,) if body else ""


def _url(match):
    body = match.group(1).strip()
    target = _TARGET.match(body)
    if target:
        return "`%s <%s>`__" % (target.group(1), target.group(2).strip())
    return "`%s <%s>`__" % (body, body)


def convertText(text):
    """
    Convert the inline markup of one docstring (as a single string).
    """
    text = _separate(_CODE, _code, text)
    text = _separate(_LINK, _link, text)
    text = _separate(_ITALIC, lambda m: "*%s*" % m.group(1), text)
    text = _separate(_BOLD, lambda m: "**%s**" % m.group(1), text)
    text = _separate(_URL, _url, text)
    return text


def convertFields(lines):
    """
    Turn epytext fields into Sphinx fields, in place.  A C{@type} belongs to
    the C{@param} or C{@ivar} of the same name; one with neither (epytext
    allows it) gets an empty C{:param:}, or Sphinx would drop it.
    """
    found = []
    for index, line in enumerate(lines):
        match = _FIELD.match(line)
        if match is None or match.group(2) not in _FIELDS:
            continue
        indent, field, argument = match.group(1), _FIELDS[match.group(2)], match.group(3)
        argument = argument.strip() if argument else None
        rest = line[match.end():].lstrip()
        found.append((index, indent, field, argument, rest))
    params = {arg for _, _, field, arg, _ in found if field == "param"}
    variables = {arg for _, _, field, arg, _ in found if field in ("ivar", "cvar", "var")}
    for index, indent, field, argument, rest in reversed(found):
        if field == "type" and argument in variables:
            field = "vartype"
        head = "%s:%s %s:" % (indent, field, argument) if argument else "%s:%s:" % (indent, field)
        lines[index] = head + (" " + rest if rest else "")
        if field == "type" and argument not in params:
            lines.insert(index, "%s:param %s:" % (indent, argument))


def markExamples(lines):
    """
    Show an indented block that follows a paragraph as code, as the
    docstrings mean it (reST would make it a quotation): a paragraph ending
    with a single C{:} gets C{::}; otherwise a C{::} line is put before the
    block.  Lists, fields and directives are left alone.
    """
    index = 2
    while index < len(lines):
        block, blank, intro = lines[index], lines[index - 1], lines[index - 2]
        if (block.strip() and not blank.strip() and intro.strip()
                and _indent(block) > _indent(intro)
                and not _isStructure(intro) and not _isStructure(block)):
            if intro.rstrip().endswith("::"):
                pass
            elif intro.rstrip().endswith(":"):
                lines[index - 2] = intro.rstrip() + ":"
            else:
                lines[index - 1:index] = ["", _indent(intro) * " " + "::", ""]
                index += 2
        index += 1


def _isStructure(line):
    """
    Whether a line belongs to a list, a field or a directive.
    """
    stripped = line.lstrip()
    return (stripped.startswith(("- ", "* ", "+ ", ":", "..", "@"))
            or re.match(r"\d+\.\s", stripped) is not None)


def _indent(line):
    return len(line) - len(line.lstrip())


_TAGS = ("type", "major_version", "minor_version")


def taggedValues(what, obj, lines):
    """
    The lines to add to a zope interface's own docstring (not to its
    members', which autointerface processes under the interface's name):
    its tagged values, which say what its providers must have.
    """
    if what != "interface" or not hasattr(obj, "queryTaggedValue") or not obj.__doc__:
        return []
    first = prepare_docstring(obj.__doc__)[:1]
    if lines[:1] != first:
        return []
    values = [(tag, obj.queryTaggedValue(tag)) for tag in _TAGS]
    values = [(tag, value) for tag, value in values if value is not None]
    if not values:
        return []
    return ["", "Tagged values: " + ", ".join(
        "``%s`` = ``%r``" % (tag, value) for tag, value in values) + "."]


def processDocstring(app, what, name, obj, options, lines):
    extra = taggedValues(what, obj, lines)
    text = convertText("\n".join(lines))
    lines[:] = text.split("\n") + extra
    convertFields(lines)
    markExamples(lines)


def setup(app):
    app.connect("autodoc-process-docstring", processDocstring)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
