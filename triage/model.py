"""The trained classifier: a parsed :class:`Message` gets a type, a severity and a confidence.

Features are TF-IDF word 1-2-grams and ``char_wb`` 3-4-grams of the subject and the
readable body, tokens for the sender (address local part, domain, display name) and
Amazon's ``X-Space-Notification-Type`` header, and concept tokens from the multilingual
lexicon in :mod:`triage.signals` (what a person looks for: suspended, decided in your
favour, appeal refused, must ship today, 2 stars...). One logistic regression picks the
type; per type, another picks the severity among those the policy table allows, saying
``critical`` as soon as its probability passes a threshold chosen on held-out wording,
because a missed critical costs far more than a false alarm. A verdict between that
threshold and a sure level is marked ``possibly_critical``.

Training (:mod:`triage.train`) uses scikit-learn; what it fitted is saved as plain data
(``triage-model.json`` for settings, labels and thresholds, ``triage-model.npz`` for
vocabularies, idf and weights, read with ``allow_pickle=False``) and predicted here with
numpy and scipy alone, so neither a scikit-learn upgrade nor a hostile file can change
what loading does.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import re
import zipfile
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from triage import taxonomy
from triage.errors import ModelError
from triage.message import Message
from triage.resources import METADATA_FILE, MODEL_FILE, WEIGHTS_FILE
from triage.settings import default_model_dir
from triage.signals import signal_tokens

log = logging.getLogger(__name__)

CARD_FILE = "README.md"
FORMAT_VERSION = 3
BODY_CAP = 1500  # the opening of a mail says what it is about; the rest is footers
CHAR_CAP = 120  # char n-grams are the costly part of predicting; the subject and opening suffice
# The concept block is a few tokens against thousands of n-grams: it needs a louder voice,
# and louder still for severity, where a handful of concepts decide (held-out tuned).
SEVERITY_SIGNAL_BOOST = 2.0
# The feature blocks a model file may describe, and how each reads its text; a file that
# names anything else is refused (the loader runs no code the file chooses).
BLOCK_NAMES = ("word", "char", "meta", "signal")
ANALYZERS = {("word", r"(?u)\b\w\w+\b"), ("word", r"\S+"), ("char_wb", None)}
TAG = re.compile(r"<[^>]+>")
STYLE = re.compile(r"<(style|script|head)\b.*?</\1>", re.S | re.I)
FOLD_DIGITS = str.maketrans("123456789", "000000000")
FOLD_DIGIT_BYTES = bytes.maketrans(b"123456789", b"000000000")
DIGIT = re.compile(r"[1-9]")


# --- features ---------------------------------------------------------------------


def readable_body(message: Message) -> str:
    """The opening of the body with markup dropped."""
    body = message.text[: BODY_CAP * 4]
    if "<" in body and ">" in body:
        body = TAG.sub(" ", STYLE.sub(" ", body))
    return body[:BODY_CAP]


def readable_text(message: Message, body: str | None = None) -> str:
    """Subject and the opening of the body, markup dropped and digits folded to 0."""
    body = readable_body(message) if body is None else body
    return fold_digits(" ".join(f"{message.subject}\n{body}".split()))


def fold_digits(text: str) -> str:
    # str.translate is quick on ASCII text only; Latin-1 goes through bytes, and a regex
    # is steadier on the rest.
    if text.isascii():
        return text.translate(FOLD_DIGITS)
    try:
        return text.encode("latin-1").translate(FOLD_DIGIT_BYTES).decode("latin-1")
    except UnicodeEncodeError:
        return DIGIT.sub("0", text)


def opening(text: str, size: int) -> str:
    """``" ".join(text.split())[:size]``, splitting no more of ``text`` than that needs."""
    cut = 2 * size
    while True:
        # Spacing a head of the text gives a head of the spaced text.
        spaced = " ".join(text[:cut].split())
        if len(spaced) >= size or cut >= len(text):
            return spaced[:size]
        cut *= 4


@functools.lru_cache(maxsize=4096)
def _is_amazon(domain: str) -> bool:
    """Cached: a mailbox gets mail from few domains, and the check walks Amazon's list."""
    return taxonomy.is_amazon_domain(domain)


def sender_tokens(message: Message) -> str:
    """Who sent it, as tokens that generalise across Amazon's marketplaces."""
    local, _, domain = message.sender_address.partition("@")
    domain = domain or message.sender_domain
    tokens = [f"from:{local}"] + [f"from:{part}" for part in re.split(r"[-_.+]", local) if part]
    if _is_amazon(domain):
        sub = domain.split(".amazon.")[0] if ".amazon." in domain else ""
        tokens += ["dom:amazon", f"sub:{sub}"]
    else:
        tokens.append("dom:" + ".".join(domain.split(".")[-2:]))
    tokens += [f"name:{w}" for w in re.findall(r"\w+", message.sender_name.lower())]
    if message.notification_type:
        tokens.append(f"nt:{message.notification_type.lower()}")
    return " ".join(tokens)


AMAZON_NAME = re.compile(r"amaz[o0]n", re.I)
# The forward prefixes mail clients write in the five languages (and Outlook's "I:",
# "RV:", "ENC:"), possibly after a reply prefix.
FORWARDED = re.compile(r"^\s*(?:(?:re|aw|sv)\s*:\s*)*(?:fwd?|wg|tr|rv|i|enc|inoltro)\s*:", re.I)


def origin_tokens(message: Message) -> str:
    """Whether an Amazon domain sent it, and whether it says it is Amazon.

    Mail from elsewhere that does not claim to be Amazon is rarely seller business; mail
    that claims to be Amazon from elsewhere (phishing) is read like what it imitates.
    """
    domain = message.sender_address.partition("@")[2] or message.sender_domain
    if _is_amazon(domain):
        tokens = ["c:origin_amazon"]
    elif FORWARDED.match(message.subject):
        # A colleague passing a notice on: what it says decides, not who passed it.
        tokens = ["c:origin_forwarded"]
    else:
        tokens = ["c:origin_other"]
    if AMAZON_NAME.search(f"{message.sender_name} {message.sender_address} {message.subject}"):
        tokens.append("c:named_amazon")
    return " ".join(tokens)


def _columns(messages: Sequence[Message]) -> dict[str, list[str]]:
    bodies = [readable_body(m) for m in messages]
    texts = [f"{m.subject}\n{b}" for m, b in zip(messages, bodies, strict=True)]
    return {
        # The readable text: word tokens are the same whether its spaces are folded or not.
        "word": [fold_digits(t) for t in texts],
        "char": [fold_digits(opening(t, CHAR_CAP)) for t in texts],
        "meta": [sender_tokens(m) for m in messages],
        "signal": [
            f"{signal_tokens(m.subject, b)} {origin_tokens(m)}"
            for m, b in zip(messages, bodies, strict=True)
        ],
    }



# --- vectorising fast -------------------------------------------------------------
# scikit-learn's analyzers build every n-gram of a text as a string and look each one up
# in Python, which made vectorising the costliest part of predicting. Here the only
# strings made are the tokens; tokens and characters become small integers, an n-gram one
# integer, and numpy finds the vocabulary's among them for a whole batch at once. The
# count matrix is the one scikit-learn builds, entry for entry (tests/test_model.py), and
# :class:`Block` weights it as scikit-learn's TF-IDF does, with the idf saved by training.

# Token patterns whose matches are the same as a quicker pattern's (a run of 2+ word
# characters can only start and end at a word boundary), none able to hold a space.
QUICK_TOKENS = {r"(?u)\b\w\w+\b": re.compile(r"\w\w+"), r"\S+": re.compile(r"\S+")}
Units = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]
TABLE_LIMIT = 2**21  # codes looked up in a table (8 bytes each) rather than searched


@dataclass
class NgramCounter:
    """Counts of a block's terms, read from documents as its analyzer reads them.

    ``units`` splits documents into the units an n-gram is made of (tokens, or
    characters), each given as its id among the vocabulary's units (``size - 1`` for one
    the vocabulary does not have) and the index of its document. An n-gram of ids is one
    number in base ``size``; ``codes[n]`` holds the vocabulary's n-grams as such numbers,
    sorted, with their columns.
    """

    vocabulary: dict[str, int]
    dtype: Any
    units: Units
    size: int
    codes: dict[int, tuple[np.ndarray, np.ndarray]]
    # Per n whose codes are few: the column of every code, -1 for none.
    tables: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n, (codes, terms) in self.codes.items():
            if self.size**n <= TABLE_LIMIT:
                self.tables[n] = np.full(self.size**n, -1, dtype=np.int64)
                self.tables[n][codes] = terms

    @classmethod
    def of(cls, block: Block) -> NgramCounter:
        """The counter for ``block``; ModelError if its analyzer is not one read here."""
        vocabulary = block.vocabulary
        low, high = block.ngram_range
        units: Units
        if block.analyzer == "word":
            tokens = QUICK_TOKENS.get(block.token_pattern or "")
            if tokens is None:
                raise ModelError(f"block {block.name}: token pattern {block.token_pattern!r}")
            grams = {term: tuple(term.split(" ")) for term in vocabulary}
            alphabet = sorted({token for gram in grams.values() for token in gram})
            ids = {token: i for i, token in enumerate(alphabet)}
            units = TokenIds.of(block, tokens, ids)
        # From 2 up, the n-grams inside space-padded words are those of the words joined
        # by single spaces less the ones across a space, and no such one is a term.
        elif block.analyzer == "char_wb" and 2 <= low <= 3:
            grams = {term: tuple(term) for term in vocabulary}
            alphabet = sorted({char for gram in grams.values() for char in gram})
            ids = {char: i for i, char in enumerate(alphabet)}
            points = np.array([ord(char) for char in alphabet], dtype=np.uint32)
            units = functools.partial(_char_ids, block.preprocess, points)
        else:
            raise ModelError(f"block {block.name}: analyzer {block.analyzer} {block.ngram_range}")
        size = len(alphabet) + 1
        if size**high >= 2**62:
            raise ModelError(f"block {block.name}: too many distinct units for {high}-grams")
        codes = {}
        for n in range(low, high + 1):
            terms = [(_code([ids[u] for u in g], size), vocabulary[t]) for t, g in grams.items()
                     if len(g) == n]  # fmt: skip
            terms.sort()
            codes[n] = (
                np.array([code for code, _ in terms], dtype=np.int64),
                np.array([column for _, column in terms], dtype=np.int64),
            )
        return cls(vocabulary, np.float32, units, size, codes)

    def count(self, docs: Sequence[str]) -> Any:
        """The documents' count matrix: rows docs, columns the vocabulary, sorted indices."""
        ids, doc = self.units(docs)
        rows, columns = [], []
        for n, (codes, terms) in self.codes.items():
            if len(ids) < n or not len(codes):
                continue
            span = len(ids) - n + 1
            code = ids[:span].copy()
            for k in range(1, n):
                code = code * self.size + ids[k : k + span]
            if n in self.tables:  # small enough to look up directly
                column = self.tables[n][code]
                hit = (column >= 0) & (doc[:span] == doc[n - 1 :])
                rows.append(doc[:span][hit])
                columns.append(column[hit])
                continue
            at = np.minimum(np.searchsorted(codes, code), len(codes) - 1)
            hit = (codes[at] == code) & (doc[:span] == doc[n - 1 :])
            rows.append(doc[:span][hit])
            columns.append(terms[at[hit]])
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        column = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
        return count_matrix(row, column, (len(docs), len(self.vocabulary)), self.dtype)


def count_matrix(row: np.ndarray, column: np.ndarray, shape: tuple[int, int], dtype: Any) -> Any:
    """How often each (row, column) pair occurs, as CSR with each row's columns sorted."""
    if shape[0] < 2**16 and shape[1] < 2**16:  # two stable radix sorts, linear in time
        order = np.argsort(column.astype(np.uint16), kind="stable")
        order = order[np.argsort(row[order].astype(np.uint16), kind="stable")]
    else:
        order = np.lexsort((column, row))
    row, column = row[order], column[order]
    key = row * shape[1] + column
    first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))[: len(key)])
    counts = np.diff(np.append(first, len(key)))
    indptr = np.zeros(shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(row[first], minlength=shape[0]), out=indptr[1:])
    matrix = sp.csr_matrix(
        (counts.astype(dtype), column[first].astype(np.int32), indptr), shape=shape
    )
    matrix.has_sorted_indices = True
    return matrix


def _code(ids: Sequence[int], size: int) -> int:
    code = 0
    for i in ids:
        code = code * size + i
    return code


# A word character beyond Latin-1. No other character beyond it lower-cases to a word
# character (tests/test_model.py), so text without one can be read as Latin-1 bytes.
WIDE_WORD_CHAR = re.compile(r"[^\W\x00-\xff]")
SKIPPED = -1  # the id of a single word character, which is no token


@dataclass
class TokenIds:
    """Documents as the ids of their tokens, ``len(ids)`` for a token the vocabulary lacks.

    Text whose word characters are all Latin-1 (most mail in the five languages) is split
    as bytes: one translation lower-cases word characters and blanks the rest, and
    ``bytes.split`` cuts the tokens several times faster than the token regex does.
    """

    preprocess: Callable[[str], str]
    findall: Callable[[str], list[str]]
    ids: dict[str, int]
    latin: bytes | None  # the translation, or None if tokens are not word runs
    latin_ids: dict[bytes, int]

    @classmethod
    def of(cls, block: Block, tokens: re.Pattern[str], ids: dict[str, int]) -> TokenIds:
        if tokens.pattern != r"\w\w+":
            return cls(block.preprocess, tokens.findall, ids, None, {})
        latin = bytes(
            ord(char.lower() if block.lowercase else char) if re.match(r"\w", char) else 32
            for char in map(chr, range(256))
        )
        latin_ids = {t.encode("latin-1"): i for t, i in ids.items() if max(t) <= "\xff"}
        for unit in range(256):  # single word characters are not tokens
            latin_ids.setdefault(bytes([unit]), SKIPPED)
        return cls(block.preprocess, tokens.findall, ids, latin, latin_ids)

    def latin_bytes(self, doc: str) -> bytes | None:
        """The document as Latin-1 bytes, word characters lower-cased and the rest blank."""
        if self.latin is None:
            return None
        try:
            return doc.encode("latin-1").translate(self.latin)
        except UnicodeEncodeError:
            if WIDE_WORD_CHAR.search(doc):
                return None
            # None of the characters beyond Latin-1 is a word character: "?" blanks them.
            return doc.encode("latin-1", "replace").translate(self.latin)

    def __call__(self, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        found = array("q")
        lengths = []
        unknown = itertools.repeat(len(self.ids))
        for doc in docs:
            latin = self.latin_bytes(doc)
            if latin is not None:
                tokens = latin.split()
                found.extend(map(self.latin_ids.get, tokens, unknown))
                lengths.append(len(tokens))
            else:
                words = self.findall(self.preprocess(doc))
                found.extend(map(self.ids.get, words, unknown))
                lengths.append(len(words))
        ids = np.frombuffer(found, dtype=np.int64)
        doc_of = np.repeat(np.arange(len(docs)), lengths)
        kept = ids != SKIPPED
        return ids[kept], doc_of[kept]


def _char_ids(
    preprocess: Callable[[str], str], points: np.ndarray, docs: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    texts = [f" {' '.join(preprocess(doc).split())} " for doc in docs]
    # Four bytes a character, so positions stay those of the text (lone surrogates too).
    chars = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    at = np.minimum(np.searchsorted(points, chars), len(points) - 1)
    ids = np.where(points[at] == chars, at, len(points)).astype(np.int64)
    return ids, np.repeat(np.arange(len(docs)), [len(text) for text in texts])



# --- the fitted model, as plain data ----------------------------------------------


@dataclass
class Block:
    """One feature block: how it reads its text, its terms, and their TF-IDF weighting.

    The weighting is scikit-learn's ``TfidfVectorizer``'s, spelled out: counts (1 when
    ``binary``), ``1 + log`` of them when ``sublinear_tf``, times the term's idf, each
    row scaled to unit length; the block is then multiplied by ``weight``.
    """

    name: str
    analyzer: str  # "word" (tokens of token_pattern) or "char_wb"
    token_pattern: str | None
    lowercase: bool
    ngram_range: tuple[int, int]
    binary: bool
    sublinear_tf: bool
    terms: list[str]  # column order
    idf: np.ndarray | None  # float32 per term, None without idf
    weight: float = 1.0
    vocabulary: dict[str, int] = field(init=False, repr=False)
    counter: NgramCounter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.vocabulary = {term: i for i, term in enumerate(self.terms)}
        if len(self.vocabulary) != len(self.terms):
            raise ModelError(f"block {self.name}: a term is listed twice")
        if self.idf is not None and self.idf.shape != (len(self.terms),):
            raise ModelError(f"block {self.name}: {len(self.terms)} terms but idf {self.idf.shape}")
        self.counter = NgramCounter.of(self)  # now, so the first batch does not pay for it

    def preprocess(self, doc: str) -> str:
        return doc.lower() if self.lowercase else doc

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "analyzer": self.analyzer,
            "token_pattern": self.token_pattern,
            "lowercase": self.lowercase,
            "ngram_range": list(self.ngram_range),
            "binary": self.binary,
            "sublinear_tf": self.sublinear_tf,
            "use_idf": self.idf is not None,
            "weight": self.weight,
        }

    def transform(self, docs: Sequence[str]) -> Any:
        """The block's TF-IDF matrix of ``docs`` (CSR, float32, rows of unit length)."""
        matrix = self.counter.count(docs)
        data = matrix.data
        if self.binary:
            data.fill(1)
        elif self.sublinear_tf:
            np.log(data, out=data)
            data += 1
        if self.idf is not None:
            data *= self.idf[matrix.indices]
        lengths = np.diff(matrix.indptr)
        squares = np.zeros(len(lengths), dtype=np.float64)
        filled = lengths > 0
        if filled.any():
            squares[filled] = np.add.reduceat(
                data.astype(np.float64) ** 2, matrix.indptr[:-1][filled]
            )
        norms = np.sqrt(squares).astype(np.float32)
        norms[norms == 0] = 1
        data /= np.repeat(norms, lengths)
        return matrix


@dataclass
class LinearModel:
    """A fitted logistic regression: classes, weights and intercepts (public attributes)."""

    classes: list[str]
    coef: np.ndarray  # (classes, features), or (1, features) for two classes
    intercept: np.ndarray

    def predict_proba(self, features: Any) -> np.ndarray:
        scores = np.asarray(features @ self.coef.T, dtype=np.float64) + self.intercept
        if len(self.classes) == 2:  # one score, the second class's log-odds
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores


@dataclass(frozen=True)
class Prediction:
    type: str
    severity: str
    confidence: float  # probability of the predicted type, 0-1
    # Critical is possible but not sure: said with a probability below the sure level, or
    # the runner-up severity. Alerts and the digest say "possibly critical".
    possibly_critical: bool = False
    decided_by: str = "model"  # what the verdict says decided it: "model", "learned model"


@dataclass(frozen=True)
class Scored:
    """What the model makes of one mail before a severity is chosen."""

    type: str
    confidence: float
    severity_proba: dict[str, float]  # within the type, over its allowed severities
    critical_anywhere: float  # P(critical) summed over every type that can be critical


@dataclass
class Weights:
    """Everything prediction needs: the blocks, the type model, one severity model per type."""

    blocks: list[Block]
    type_model: LinearModel
    severity_models: dict[str, LinearModel]  # one per type with a choice of severity
    critical_threshold: float
    sure_level: float

    def features(self, messages: Sequence[Message]) -> Any:
        columns = _columns(messages)
        return sp.hstack(
            [block.transform(columns[block.name]) * block.weight for block in self.blocks],
            format="csr",
        )

    def boost(self, features: Any) -> Any:
        """The features with the concept block made louder, as the severity models read them."""
        scale = np.concatenate(
            [
                np.full(len(b.terms), SEVERITY_SIGNAL_BOOST if b.name == "signal" else 1.0)
                for b in self.blocks
            ]
        )
        return features @ sp.diags(scale.astype(np.float32), format="csr")

    def scores(self, messages: Sequence[Message]) -> list[Scored]:
        features = self.features(messages)
        type_proba = self.type_model.predict_proba(features)
        best = np.argmax(type_proba, axis=1)
        boosted = self.boost(features)
        # Every severity model reads every mail: critical in another likely type counts too.
        per_type = {
            kind: model.predict_proba(boosted) for kind, model in self.severity_models.items()
        }
        column = {kind: i for i, kind in enumerate(self.type_model.classes)}
        anywhere = np.zeros(len(messages))
        for kind, proba in per_type.items():
            names = self.severity_models[kind].classes
            if "critical" in names and kind in column:
                anywhere += type_proba[:, column[kind]] * proba[:, names.index("critical")]
        out = []
        for row, i in enumerate(best):
            kind = self.type_model.classes[i]
            model = self.severity_models.get(kind)
            if model is None:  # the policy table allows one severity only
                severity = {taxonomy.ALLOWED_SEVERITIES[kind][0]: 1.0}
            else:
                probas = per_type[kind][row]
                severity = {n: float(p) for n, p in zip(model.classes, probas, strict=True)}
            out.append(Scored(kind, float(type_proba[row, i]), severity, float(anywhere[row])))
        return out

    def predict(self, messages: Sequence[Message]) -> list[Prediction]:
        return [
            decide(s, self.critical_threshold, self.sure_level) for s in self.scores(messages)
        ]


def choose_severity(kind: str, probas: dict[str, float], critical_threshold: float) -> str:
    """The likeliest allowed severity, but ``critical`` once it passes the threshold."""
    allowed = taxonomy.ALLOWED_SEVERITIES[kind]
    if "critical" in allowed and probas.get("critical", 0.0) >= critical_threshold:
        return "critical"
    candidates = {s: probas.get(s, 0.0) for s in allowed}
    return max(candidates, key=lambda s: (candidates[s], -taxonomy.severity_rank(s)))


def decide(scored: Scored, critical_threshold: float, sure_level: float) -> Prediction:
    """The prediction of one scored mail, unsure criticals marked as such."""
    severity = choose_severity(scored.type, scored.severity_proba, critical_threshold)
    critical = scored.severity_proba.get("critical", 0.0)
    if severity == "critical":
        possibly = critical < sure_level
    else:
        ranked = sorted(scored.severity_proba, key=scored.severity_proba.__getitem__, reverse=True)
        # Runner-up with at least half the threshold: below that, critical is not in doubt.
        runner_up = len(ranked) > 1 and ranked[1] == "critical"
        runner_up = runner_up and critical >= critical_threshold / 2
        possibly = runner_up or scored.critical_anywhere >= critical_threshold
    return Prediction(scored.type, severity, scored.confidence, possibly)


class Classifier:
    """The shipped model: ``Classifier.load().predict(messages)``."""

    def __init__(self, weights: Weights, metadata: dict[str, Any],
                 decided_by: str = "model") -> None:
        self.weights = weights
        self.metadata = metadata
        self.decided_by = decided_by

    @classmethod
    def load(cls, model_dir: Path | None = None) -> Classifier:
        """Load the model files; a missing, foreign or damaged model raises ModelError."""
        model_dir = default_model_dir() if model_dir is None else Path(model_dir)
        if not (model_dir / MODEL_FILE).exists():
            raise ModelError(
                f"no trained model at {model_dir / MODEL_FILE}; run `triage train` to make one"
            )
        weights = load_weights(model_dir)
        metadata = _read_metadata(model_dir / METADATA_FILE)
        return cls(weights, metadata)

    def predict(self, messages: Sequence[Message]) -> list[Prediction]:
        """One prediction per message, vectorised in one batch."""
        if not messages:
            return []
        said = self.weights.predict(messages)
        if self.decided_by != "model":
            said = [replace(p, decided_by=self.decided_by) for p in said]
        return said


# --- the model files --------------------------------------------------------------


def save(weights: Weights, model_dir: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``triage-model.json`` (settings, labels, thresholds) and ``triage-model.npz``."""
    arrays: dict[str, np.ndarray] = {}
    for block in weights.blocks:
        arrays[f"terms/{block.name}"] = np.array(block.terms, dtype=np.str_)
        if block.idf is not None:
            arrays[f"idf/{block.name}"] = block.idf.astype(np.float32)
    models = {"type": weights.type_model}
    models |= {f"severity/{k}": m for k, m in weights.severity_models.items()}
    for name, model in models.items():
        arrays[f"{name}/coef"] = model.coef.astype(np.float32)
        arrays[f"{name}/intercept"] = model.intercept.astype(np.float64)
    spec = {
        "format": FORMAT_VERSION,
        "blocks": [block.settings() for block in weights.blocks],
        "type_classes": weights.type_model.classes,
        "severity_classes": {k: m.classes for k, m in weights.severity_models.items()},
        "critical_threshold": weights.critical_threshold,
        "sure_level": weights.sure_level,
        "severity_signal_boost": SEVERITY_SIGNAL_BOOST,
        **(extra or {}),
    }
    model_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(model_dir / WEIGHTS_FILE, allow_pickle=False, **arrays)
    (model_dir / MODEL_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def load_weights(model_dir: Path) -> Weights:
    """Read and check the two model files; anything unexpected is a ModelError."""
    spec_path, arrays_path = model_dir / MODEL_FILE, model_dir / WEIGHTS_FILE
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{spec_path} is not a readable triage model: {exc}") from exc
    if not isinstance(spec, dict) or spec.get("format") != FORMAT_VERSION:
        raise ModelError(f"{spec_path} is not a triage model of format {FORMAT_VERSION}; retrain")
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{arrays_path} is not a readable weights file: {exc}") from exc
    try:
        return _weights(spec, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{spec_path} lacks or mismatches part of the model ({exc})") from exc
    except ModelError as exc:
        raise ModelError(f"{spec_path}: {exc}") from exc


def _weights(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Weights:
    blocks = []
    for settings in spec["blocks"]:
        name, analyzer = settings["name"], settings["analyzer"]
        pattern = settings["token_pattern"] if analyzer == "word" else None
        if name not in BLOCK_NAMES or (analyzer, pattern) not in ANALYZERS:
            raise ModelError(f"unknown feature block {name!r} ({analyzer}, {pattern!r})")
        terms = arrays[f"terms/{name}"]
        if terms.dtype.kind != "U":
            raise ModelError(f"terms of block {name} are not text")
        low, high = (int(n) for n in settings["ngram_range"])
        blocks.append(
            Block(
                name=name,
                analyzer=analyzer,
                token_pattern=pattern,
                lowercase=bool(settings["lowercase"]),
                ngram_range=(low, high),
                binary=bool(settings["binary"]),
                sublinear_tf=bool(settings["sublinear_tf"]),
                terms=[str(t) for t in terms],
                idf=arrays[f"idf/{name}"].astype(np.float32) if settings["use_idf"] else None,
                weight=float(settings["weight"]),
            )
        )
    width = sum(len(b.terms) for b in blocks)

    def linear(name: str, classes: list[str]) -> LinearModel:
        coef = arrays[f"{name}/coef"].astype(np.float32)
        intercept = arrays[f"{name}/intercept"].astype(np.float64)
        rows = 1 if len(classes) == 2 else len(classes)
        if coef.shape != (rows, width) or intercept.shape != (rows,):
            raise ModelError(f"{name}: weights {coef.shape} do not fit {rows} x {width}")
        return LinearModel([str(c) for c in classes], coef, intercept)

    types = [str(t) for t in spec["type_classes"]]
    unknown = sorted(set(types) - set(taxonomy.TYPES))
    if unknown:
        raise ModelError(f"trained on types this triage does not know: {unknown}")
    severity_models = {}
    for kind, classes in spec["severity_classes"].items():
        if kind not in taxonomy.TYPES or not set(classes) <= set(taxonomy.ALLOWED_SEVERITIES[kind]):
            raise ModelError(f"severities {classes} are not those the taxonomy allows {kind}")
        severity_models[kind] = linear(f"severity/{kind}", classes)
    return Weights(
        blocks,
        linear("type", types),
        severity_models,
        float(spec["critical_threshold"]),
        float(spec["sure_level"]),
    )


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable model metadata: {exc}") from exc
