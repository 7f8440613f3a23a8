"""What a person looks for in seller mail, as concept tokens in five languages.

A word n-gram model learns the wording of the templates it was trained on; a person
reading a new template looks for a handful of *signals* instead: was something
suspended or reinstated, is a response required, was a claim decided for or against the
seller, how many stars did the buyer give. This module names those signals with a small
hand-written lexicon (English, German, French, Italian, Spanish) and turns a mail into
tokens such as ``c:suspended`` or ``s:stars_low``. Because the lexicon, not one
template, names a concept, the tokens carry over to wording and languages the model
never saw.

The lexicon itself is data: one file per language in ``triage/lexicon/`` (read and
checked by :mod:`triage.lexicon`). Patterns are matched on lower-cased text with accents
stripped, so ``zurückgezogen`` is written ``zuruckgezogen`` and ``désactivé`` is
``desactive``. Each concept's comment there says why it matters for the taxonomy.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from triage import lexicon

# Readable text beyond this rarely changes what a notice is about (footers, legal text).
SIGNAL_CAP = 1500

# concept -> alternatives (accent-free, lower case), from the per-language data files
# (triage/lexicon/<lang>.yaml). Order does not matter. Set at the end of this module,
# once the matcher's own check of a pattern (``anchor``) is defined.
LEXICON: dict[str, tuple[str, ...]]


STAR_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "ein": 1, "eine": 1, "einen": 1, "zwei": 2, "drei": 3, "vier": 4, "funf": 5,
    "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5,
    "una": 1, "due": 2, "tre": 3, "quattro": 4, "cinque": 5,
    "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5,
}  # fmt: skip
_NUMBER = r"(\d|" + "|".join(sorted(STAR_WORDS, key=len, reverse=True)) + r")"
# The distinctive part is searched for first and the number read just before it, since a
# pattern that starts with a number would be tried at every position of every mail.
# "4 out of 5", "2/5", "2 von 5 Sternen", "3 sur 5", "1 su 5", "2 de 5"
STAR_OUT_OF = re.compile(r"(?:out of|/|von|sur|su|de) ?5\b")
# "2 stars", "1-star", "2 Sterne", "2 étoiles", "2 stelle", "2 estrellas"
STAR_COUNT = re.compile(r"(?:stars?|sterne?n?|etoiles?|stelle|stella|estrellas?)\b")
NUMBER_BEFORE = re.compile(r"\b" + _NUMBER + r"(?:[.,]0)?[ -]?$")
# "Rating: 2", "Bewertung: 4", "Note : 3", "Valutazione: 1", "Puntuación: 5"
STAR_FIELD = re.compile(
    r"(?:rating|bewertung|note|valutazione|puntuacion|calificacion|valoracion|sterne|stars)"
    r" ?: ?(\d)\b"
)
STAR_GLYPHS = re.compile(r"[★☆]{3,5}")


class Guard(NamedTuple):
    """Text that every match of a pattern holds: needles that start or end with a mark."""

    mark: str
    starting: tuple[str, ...]
    ending: tuple[str, ...]
    size: int

    @classmethod
    def of(cls, mark: str, needles: Iterable[str]) -> Guard:
        needles = tuple(needles)
        starting = tuple(needle for needle in needles if needle.startswith(mark))
        ending = tuple(needle for needle in needles if needle.endswith(mark))
        if set(starting) | set(ending) != set(needles):
            raise ValueError(f"a needle of {needles} neither starts nor ends with {mark!r}")
        return cls(mark, starting, ending, len(mark))


# A pattern is run only on text that holds one of its guard's needles, found from where
# the mark (a rare string) is: a regex tried at every "s" or "o" of every mail costs far
# more than that.
STAR_GUARDS = {
    STAR_OUT_OF: (
        Guard.of("5", (f"{word}{space}5" for word in ("out of", "/", "von", "sur", "su", "de")
                       for space in (" ", ""))),
    ),
    STAR_COUNT: (
        Guard.of("st", ("star", "stern", "stelle", "stella", "strella")),
        Guard.of("etoile", ("etoile",)),
    ),
    STAR_FIELD: (
        Guard.of(":", (f"{word}{space}:" for word in ("rating", "bewertung", "note", "valutazione",
                                                       "puntuacion", "calificacion", "valoracion",
                                                       "sterne", "stars")
                       for space in (" ", ""))),
    ),
}  # fmt: skip


def star_bucket(stars: int) -> str:
    """1-2 stars are negative (high), 3 neutral (normal), 4-5 positive (low)."""
    if stars <= 2:
        return "stars_low"
    return "stars_mid" if stars == 3 else "stars_high"


def _star_value(word: str) -> int | None:
    value = int(word) if word.isdigit() else STAR_WORDS.get(word, 0)
    return value if 1 <= value <= 5 else None


def _finditer(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    if any(holds(text, guard) for guard in STAR_GUARDS[pattern]):
        yield from pattern.finditer(text)


def holds(text: str, guard: Guard) -> bool:
    """Whether ``text`` holds one of the guard's needles, looked for where its mark is."""
    at = text.find(guard.mark)
    while at >= 0:
        if text.startswith(guard.starting, at) or text.endswith(guard.ending, 0, at + guard.size):
            return True
        at = text.find(guard.mark, at + 1)
    return False


def star_rating(text: str, normalised: str | None = None) -> int | None:
    """The star rating a mail states, if it states one."""
    if "★" in text or "☆" in text:
        glyphs = STAR_GLYPHS.search(text)
        if glyphs:
            return glyphs.group(0).count("★") or None
    low = normalise(text) if normalised is None else normalised
    for pattern in (STAR_OUT_OF, STAR_COUNT):
        for match in _finditer(pattern, low):
            number = NUMBER_BEFORE.search(low, max(0, match.start() - 12), match.start())
            value = _star_value(number.group(1)) if number else None
            if value is not None:
                return value
    for match in _finditer(STAR_FIELD, low):
        value = _star_value(match.group(1))
        if value is not None:
            return value
    return None


LEADING_GROUP = re.compile(r"^\(([^()]*)\)(\??)")
KEY_SIZE = 3
# The first letters of every word, where the word starts: the keys of the index.
WORD_KEY = re.compile(r"(?<![a-z0-9])[a-z0-9]{1,3}")


def expand(alternative: str) -> list[str]:
    """Spell out a leading ``(a|b)`` group, so each alternative starts with a literal."""
    body = alternative.removeprefix(r"\b")
    match = LEADING_GROUP.match(body)
    if not match:
        return [alternative]
    options = match.group(1).split("|") + ([""] if match.group(2) else [])
    rest = body[match.end() :]
    return [spelled for option in options for spelled in expand(option + rest)]


def anchor(alternative: str) -> str:
    """The first letters of the word an alternative must start at (its index key)."""
    body = alternative.removeprefix(r"\b")
    word = re.match(r"[a-z0-9]*", body)
    literal = word.group(0) if word else ""
    if not literal:
        raise ValueError(f"lexicon entry {alternative!r} does not start with a literal word")
    # A literal cut short by a pattern (``cancel+``, ``stornierung\w*``) keeps only its stem.
    follower = body[len(literal) : len(literal) + 1]
    if follower in ("+", "*", "?", "{") and len(literal) > 1:
        literal = literal[:-1]
    if len(literal) < KEY_SIZE and follower not in ("", " ", "-", ".", "'", "\\"):
        raise ValueError(f"lexicon entry {alternative!r} starts with too short a literal")
    return literal[:KEY_SIZE]


class LazyPattern:
    """A regular expression compiled when first matched.

    Compiling the index's 1,300 patterns was a third of a second of every start; a
    backfill or a classify meets only some of them, and a daemon whose screen settles
    every mail none. The pattern's syntax is checked at load all the same: every
    alternative is also in the candidate pattern, which is compiled at once.
    """

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled: re.Pattern[str] | None = None

    def match(self, text: str, pos: int) -> re.Match[str] | None:
        compiled = self._compiled
        if compiled is None:  # two threads may both compile it: harmless
            compiled = self._compiled = re.compile(self.source)
        return compiled.match(text, pos)


def _index(
    lexicon: dict[str, tuple[str, ...]],
) -> dict[str, list[tuple[str, tuple[str, ...], LazyPattern]]]:
    """Per index key, per concept: the literal openings and one pattern of its alternatives."""
    spelled: dict[str, dict[str, list[str]]] = {}
    for name, alternatives in lexicon.items():
        for alternative in alternatives:
            for spelling in expand(alternative):
                spelled.setdefault(anchor(spelling), {}).setdefault(name, []).append(spelling)
    return {
        key: [
            (
                name,
                tuple({head_and_rest(s)[0] for s in alts}),
                LazyPattern("|".join(f"(?:{s})" for s in alts)),
            )
            for name, alts in by.items()
        ]
        for key, by in spelled.items()
    }


# The literal letters an alternative opens with; a quantified last letter is not one.
LITERAL_HEAD = re.compile(r"[a-z0-9 '-]*")
# An opening parenthesis that captures (escapes are matched first and kept as they are).
# Groups that capture cost the engine bookkeeping at every try; the scan needs none.
CAPTURING = re.compile(r"\\.|\((?!\?)")


def head_and_rest(alternative: str) -> tuple[str, str]:
    """An alternative split into its literal opening and the pattern that follows it."""
    body = alternative.removeprefix(r"\b")
    literal = LITERAL_HEAD.match(body)
    head = literal.group() if literal else ""
    if body[len(head) : len(head) + 1] in ("*", "+", "?", "{"):
        head = head[:-1]
    rest = body[len(head) :]
    if _alternates_at_top(rest):  # "ab|cd" must not become "a" + "b|cd"
        return "", body
    return head, CAPTURING.sub(lambda m: "(?:" if m.group() == "(" else m.group(), rest)


def _alternates_at_top(pattern: str) -> bool:
    depth, i = 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 1
        elif char == "[":  # to the class's end; a "]" first in a class is a letter of it
            i += 2 if pattern[i + 1 : i + 2] == "^" else 1
            i = pattern.index("]", i + 1 if pattern[i : i + 1] == "]" else i)
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False


def trie_pattern(pairs: list[tuple[str, str]]) -> str:
    """One regex for many (literal opening, rest) pairs, the openings shared as a trie.

    Python's regex engine tries alternatives one by one, but skips at once those that
    start with a letter other than the one at hand: a trie keeps each step to one letter.
    """
    root: dict[str, Any] = {}
    for head, rest in pairs:
        node = root
        for char in head:
            node = node.setdefault(char, {})
        node.setdefault("", set()).add(rest)
    return _trie_node(root)


def _trie_node(node: dict[str, Any]) -> str:
    rests = sorted(node.get("", ()))
    if "" in rests:  # the opening alone suffices: nothing longer can add a match
        return ""
    branches = [f"(?:{'|'.join(rests)})"] if rests else []
    branches += [re.escape(char) + _trie_node(node[char]) for char in sorted(node) if char]
    return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"


def _candidate_pattern(lexicon: dict[str, tuple[str, ...]]) -> re.Pattern[str]:
    alternatives = {
        spelling
        for alternatives in lexicon.values()
        for alternative in alternatives
        for spelling in expand(alternative)
    }
    trie = trie_pattern([head_and_rest(spelling) for spelling in sorted(alternatives)])
    return re.compile(f"[^a-z0-9](?={trie})")


def _usable(alternative: str) -> None:
    """Raise ValueError for a pattern the index cannot key (see :func:`anchor`)."""
    for spelling in expand(alternative):
        anchor(spelling)


Index = dict[str, list[tuple[str, tuple[str, ...], LazyPattern]]]


def _matcher(found: dict[str, tuple[str, ...]]) -> tuple[re.Pattern[str], Index]:
    try:
        return _candidate_pattern(found), _index(found)
    except re.error:
        lexicon.find_bad_pattern()  # names the file and line
        raise


LEXICON = lexicon.load(check=_usable)
# CANDIDATE: where a word starts at which some alternative of some concept matches
# (``\b`` and the index key left aside, so these are a few more places than the
# concepts are found at); one scan of the text in C, the index's own patterns then run
# at those places only. INDEX: each alternative is tried only where a word starting
# with its first letters begins, and only where the text goes on with the literal
# opening of one of the concept's.
CANDIDATE, INDEX = _matcher(LEXICON)
# Letters NFKD does not take apart; str.replace is far quicker than str.translate here.
FOLDS = (("’", "'"), ("ß", "ss"), ("œ", "oe"), ("æ", "ae"))


def normalise(text: str) -> str:
    """Lower case, accents stripped, apostrophes and spaces folded."""
    text = text.lower()
    if not text.isascii():
        for letter, spelled in FOLDS:
            text = text.replace(letter, spelled)
        text = unicodedata.normalize("NFKD", text)
    return " ".join(text.encode("ascii", "ignore").decode("ascii").split())


# A concept that, when found, says another match was negated ("no listing was removed").
SUPPRESSES = {
    "recovery_refused": ("reinstated", "resolved", "approved"),
    "edited_not_removed": ("action_taken", "listing_removed"),
    "not_removed": ("action_taken", "listing_removed"),
    "no_impact": ("against_seller",),
    "may_be_removed": ("listing_removed",),
    # "We removed two images; your listing is still active": a part, not the listing.
    "part_removed": ("listing_removed",),
    "not_at_risk": ("at_risk",),
    "info_needed": ("closed_withdrawn",),
    "back_in_target": ("above_target",),
    # A claim "resolved" by granting it to the buyer is a decision against the seller
    # (after "no_impact", which may have found the decision negated).
    "against_seller": ("resolved",),
}


def candidates(text: str) -> list[int]:
    """The word starts of a normalised text where some concept may match."""
    # A space in front finds a word at the very start as any other: one pattern to
    # compile (its trie is most of the lexicon's start-up), not a second for the start.
    return [match.end() - 1 for match in CANDIDATE.finditer(" " + text)]


def concepts(text: str) -> set[str]:
    """The concepts a normalised text mentions."""
    found: set[str] = set()
    for pos in candidates(text):
        word = WORD_KEY.match(text, pos)
        for name, heads, pattern in INDEX.get(word.group() if word else "", ()):
            if name not in found and text.startswith(heads, pos) and pattern.match(text, pos):
                found.add(name)
    return suppress(found)


def suppress(found: set[str]) -> set[str]:
    """Drop the concepts that another concept found says were negated."""
    for name, negated in SUPPRESSES.items():
        if name in found:
            found.difference_update(negated)
    return found


def signal_tokens(subject: str, body: str) -> str:
    """Concept tokens: ``c:X`` anywhere, ``s:X`` in the subject, and the star bucket."""
    subject_n = normalise(subject)
    body_n = normalise(body[:SIGNAL_CAP])
    in_subject = concepts(subject_n)
    tokens = [f"c:{name}" for name in sorted(suppress(in_subject | concepts(body_n)))]
    tokens += [f"s:{name}" for name in sorted(in_subject)]
    text = f"{subject}\n{body[:SIGNAL_CAP]}"
    stars = star_rating(text, f"{subject_n}\n{body_n}")
    if stars is not None:
        tokens.append(f"c:{star_bucket(stars)}")
    return " ".join(tokens) or "c:none"
