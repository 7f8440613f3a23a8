"""The trained classifier: a parsed :class:`Message` gets a type, a severity and a confidence.

Features are TF-IDF word 1-2-grams and ``char_wb`` 3-4-grams of the subject and the
readable body, tokens for the sender (address local part, domain, display name) and
Amazon's ``X-Space-Notification-Type`` header, and concept tokens from the multilingual
lexicon in :mod:`triage.signals` (what a person looks for: suspended, decided in your
favour, must ship today, 2 stars...). One logistic regression picks the type; per type,
another picks the severity among those the policy table allows, saying ``critical`` as
soon as its probability passes a threshold chosen on held-out families, because a missed
critical costs far more than a false alarm.

The model is saved with skops (never a bare pickle) and loaded only when every type
in the file is one we expect.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import re
import shutil
import tempfile
import time
import weakref
import zipfile
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import sklearn
import skops
import skops.io as sio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupKFold

from triage import taxonomy
from triage.errors import ModelError
from triage.message import Message, parse
from triage.settings import default_model_dir
from triage.signals import signal_tokens

log = logging.getLogger(__name__)

MODEL_FILE = "triage-model.skops"
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
FORMAT_VERSION = 2
BODY_CAP = 1500  # the opening of a mail says what it is about; the rest is footers
CHAR_CAP = 120  # char n-grams are the costly part of predicting; the subject and opening suffice
MIN_FAMILIES = 3
MAX_TERMS = 40_000  # per feature block; keeps predicting fast and the file small
VOCABULARY_SAMPLE = 8  # mails per family read to build the vocabulary
# The concept block is a few tokens against thousands of n-grams: it needs a louder voice,
# and louder still for severity, where a handful of concepts decide (held-out tuned).
WEIGHTS = {"signal": 1.5}
SEVERITY_SIGNAL_BOOST = 2.0
C_TYPE = 5.0
C_SEVERITY = 5.0
CRITICAL_THRESHOLDS = (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05)
CRITICAL_RECALL_GOAL = 0.995
# The only types a model file may contain; anything else is refused before loading.
TRUSTED_TYPES = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.tuple",
        "builtins.bool",
        "builtins.NoneType",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.float64",
        "numpy.int64",
        "numpy.int32",
        "numpy.str_",
        "numpy.core.multiarray._reconstruct",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csr.csr_array",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.linear_model._logistic.LogisticRegression",
    }
)
TAG = re.compile(r"<[^>]+>")
STYLE = re.compile(r"<(style|script|head)\b.*?</\1>", re.S | re.I)
FOLD_DIGITS = str.maketrans("123456789", "000000000")
FOLD_DIGIT_BYTES = bytes.maketrans(b"123456789", b"000000000")
DIGIT = re.compile(r"[1-9]")


@dataclass(frozen=True)
class Prediction:
    type: str
    severity: str
    confidence: float  # probability of the predicted type, 0-1


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


def origin_tokens(message: Message) -> str:
    """Whether an Amazon domain sent it, and whether it says it is Amazon.

    Mail from elsewhere that does not claim to be Amazon is rarely seller business; mail
    that claims to be Amazon from elsewhere (phishing) is read like what it imitates.
    """
    domain = message.sender_address.partition("@")[2] or message.sender_domain
    tokens = ["c:origin_amazon" if _is_amazon(domain) else "c:origin_other"]
    if AMAZON_NAME.search(f"{message.sender_name} {message.sender_address} {message.subject}"):
        tokens.append("c:named_amazon")
    return " ".join(tokens)


def new_vectorizers() -> dict[str, TfidfVectorizer]:
    return {
        "word": TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32),
        "char": TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True, dtype=np.float32
        ),
        "meta": TfidfVectorizer(token_pattern=r"\S+", lowercase=True, dtype=np.float32),
        "signal": TfidfVectorizer(
            token_pattern=r"\S+", lowercase=False, use_idf=False, binary=True, dtype=np.float32
        ),
    }


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
# the vectorizer's own TF-IDF step weights it.

# Token patterns whose matches are the same as a quicker pattern's (a run of 2+ word
# characters can only start and end at a word boundary), none able to hold a space.
QUICK_TOKENS = {r"(?u)\b\w\w+\b": re.compile(r"\w\w+"), r"\S+": re.compile(r"\S+")}
Units = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]
TABLE_LIMIT = 2**21  # codes looked up in a table (8 bytes each) rather than searched
_counters: weakref.WeakKeyDictionary[TfidfVectorizer, tuple[Any, NgramCounter | None]] = (
    weakref.WeakKeyDictionary()
)


def transform(vec: TfidfVectorizer, docs: Sequence[str]) -> Any:
    """The same matrix as ``vec.transform(docs)``, counted faster where we know how."""
    counter = counter_of(vec)
    tfidf = getattr(vec, "_tfidf", None)  # the vectorizer's own weighting and norm
    if counter is None or tfidf is None:
        return vec.transform(docs)
    counts = counter.count(docs)
    if vec.binary:
        counts.data.fill(1)
    return tfidf.transform(counts, copy=False)


def counter_of(vec: TfidfVectorizer) -> NgramCounter | None:
    """The counter for a fitted ``vec`` (made once per vocabulary), None where there is none."""
    vocabulary = getattr(vec, "vocabulary_", None)
    if vocabulary is None:
        return None
    cached = _counters.get(vec)
    if cached is None or cached[0] is not vocabulary:
        cached = _counters[vec] = (vocabulary, NgramCounter.of(vec))
    return cached[1]


@dataclass
class NgramCounter:
    """Counts of a fitted vectorizer's terms, read from documents as its analyzer reads them.

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
    def of(cls, vec: TfidfVectorizer) -> NgramCounter | None:
        """The counter for ``vec``, or None if its analyzer is not one reproduced here."""
        if vec.input != "content" or vec.preprocessor is not None or vec.strip_accents:
            return None
        vocabulary: dict[str, int] = vec.vocabulary_
        low, high = vec.ngram_range
        units: Units
        if vec.analyzer == "word" and vec.tokenizer is None and vec.stop_words is None:
            tokens = QUICK_TOKENS.get(vec.token_pattern)
            if tokens is None:
                return None
            grams = {term: tuple(term.split(" ")) for term in vocabulary}
            alphabet = sorted({token for gram in grams.values() for token in gram})
            ids = {token: i for i, token in enumerate(alphabet)}
            units = TokenIds.of(vec, tokens, ids)
        # From 2 up, the n-grams inside space-padded words are those of the words joined
        # by single spaces less the ones across a space, and no such one is a term.
        elif vec.analyzer == "char_wb" and 2 <= low <= 3:
            grams = {term: tuple(term) for term in vocabulary}
            alphabet = sorted({char for gram in grams.values() for char in gram})
            ids = {char: i for i, char in enumerate(alphabet)}
            points = np.array([ord(char) for char in alphabet], dtype=np.uint32)
            units = functools.partial(_char_ids, vec.build_preprocessor(), points)
        else:
            return None
        size = len(alphabet) + 1
        if size**high >= 2**62:
            return None
        codes = {}
        for n in range(low, high + 1):
            terms = [(_code([ids[u] for u in g], size), vocabulary[t]) for t, g in grams.items()
                     if len(g) == n]  # fmt: skip
            terms.sort()
            codes[n] = (
                np.array([code for code, _ in terms], dtype=np.int64),
                np.array([column for _, column in terms], dtype=np.int64),
            )
        return cls(vocabulary, vec.dtype, units, size, codes)

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
    def of(cls, vec: TfidfVectorizer, tokens: re.Pattern[str], ids: dict[str, int]) -> TokenIds:
        if tokens.pattern != r"\w\w+":
            return cls(vec.build_preprocessor(), tokens.findall, ids, None, {})
        latin = bytes(
            ord(char.lower() if vec.lowercase else char) if re.match(r"\w", char) else 32
            for char in map(chr, range(256))
        )
        latin_ids = {t.encode("latin-1"): i for t, i in ids.items() if max(t) <= "\xff"}
        for unit in range(256):  # single word characters are not tokens
            latin_ids.setdefault(bytes([unit]), SKIPPED)
        return cls(vec.build_preprocessor(), tokens.findall, ids, latin, latin_ids)

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


def _features(vectorizers: dict[str, Any], messages: Sequence[Message]) -> Any:
    return _stack(vectorizers, _columns(messages), fit=False)


def _stack(vectorizers: dict[str, Any], columns: dict[str, list[str]], fit: bool) -> Any:
    blocks = [
        (vec.fit_transform(columns[name]) if fit else transform(vec, columns[name]))
        * WEIGHTS.get(name, 1.0)
        for name, vec in vectorizers.items()
    ]
    return sp.hstack(blocks, format="csr")


def shared_vocabulary(
    vec: TfidfVectorizer, docs: Sequence[str], families: Sequence[str]
) -> list[str]:
    """Terms used by at least MIN_FAMILIES families.

    A term only one template family uses teaches that family's wording, not the kind of
    mail; dropping such terms is what lets the model read wording it has never seen.
    """
    analyze = vec.build_analyzer()
    per_family: dict[str, list[str]] = {}
    for doc, family in zip(docs, families, strict=True):
        sample = per_family.setdefault(family, [])
        if len(sample) < VOCABULARY_SAMPLE:
            sample.append(doc)
    seen: Counter[str] = Counter()
    for sample in per_family.values():
        seen.update({term for doc in sample for term in analyze(doc)})
    common = sorted(
        (term for term, n in seen.items() if n >= MIN_FAMILIES),
        key=lambda term: (-seen[term], term),
    )
    return sorted(common[:MAX_TERMS])


def _cell(kind: str, severity: str) -> str:
    return f"{kind}/{severity}"


# --- the fitted model -------------------------------------------------------------


@dataclass
class _Fitted:
    vectorizers: dict[str, Any]
    type_model: LogisticRegression
    severity_models: dict[str, LogisticRegression]  # one per type with a choice of severity
    critical_threshold: float

    def __post_init__(self) -> None:
        for vec in self.vectorizers.values():  # now, so the first batch does not pay for it
            counter_of(vec)

    @classmethod
    def fit(
        cls,
        messages: Sequence[Message],
        types: Sequence[str],
        severities: Sequence[str],
        families: Sequence[str],
        critical_threshold: float,
    ) -> _Fitted:
        vectorizers: dict[str, Any] = new_vectorizers()
        columns = _columns(messages)
        for name, vec in vectorizers.items():
            if name != "signal":  # concept tokens are the lexicon's, never a family's
                vec.vocabulary = shared_vocabulary(vec, columns[name], families)
        features = _stack(vectorizers, columns, fit=True)
        type_model = LogisticRegression(C=C_TYPE, max_iter=500).fit(features, types)
        return cls(
            vectorizers,
            type_model,
            _severity_models(features, types, severities),
            critical_threshold,
        )

    def scores(
        self, messages: Sequence[Message]
    ) -> tuple[list[str], list[float], list[dict[str, float]]]:
        """Predicted types, their probabilities, and per type the severity probabilities."""
        features = _features(self.vectorizers, messages)
        type_proba = self.type_model.predict_proba(features)
        best = np.argmax(type_proba, axis=1)
        kinds = [str(self.type_model.classes_[i]) for i in best]
        confidences = [float(type_proba[row, i]) for row, i in enumerate(best)]
        severity_probas: list[dict[str, float]] = [{} for _ in kinds]
        features = _boost(self.vectorizers, features)
        for kind in set(kinds):
            rows = [i for i, k in enumerate(kinds) if k == kind]
            model = self.severity_models.get(kind)
            if model is None:  # the policy table allows one severity only
                for i in rows:
                    severity_probas[i] = {taxonomy.ALLOWED_SEVERITIES[kind][0]: 1.0}
                continue
            names = [str(c) for c in model.classes_]
            for i, proba in zip(rows, model.predict_proba(features[rows]), strict=True):
                severity_probas[i] = {n: float(p) for n, p in zip(names, proba, strict=True)}
        return kinds, confidences, severity_probas

    def predict(self, messages: Sequence[Message]) -> list[Prediction]:
        kinds, confidences, severity_probas = self.scores(messages)
        return [
            Prediction(kind, choose_severity(kind, probas, self.critical_threshold), conf)
            for kind, conf, probas in zip(kinds, confidences, severity_probas, strict=True)
        ]


def _boost(vectorizers: dict[str, Any], features: Any) -> Any:
    """The features with the concept block made louder, as the severity models read them."""
    scale = np.concatenate(
        [
            np.full(len(vec.vocabulary_), SEVERITY_SIGNAL_BOOST if name == "signal" else 1.0)
            for name, vec in vectorizers.items()
        ]
    )
    return features @ sp.diags(scale.astype(np.float32), format="csr")


def _severity_models(
    features: Any, types: Sequence[str], severities: Sequence[str]
) -> dict[str, LogisticRegression]:
    """Per type, a model of its severities trained on that type's mail alone.

    Inside one type the words that matter are few ("in your favour", "removed", the
    stars); a model that sees only that type's mail weighs them without the noise of
    telling the types apart.
    """
    models = {}
    for kind in sorted(set(types)):
        rows = [i for i, t in enumerate(types) if t == kind]
        labels = [severities[i] for i in rows]
        if len(set(labels)) > 1:
            models[kind] = LogisticRegression(C=C_SEVERITY, max_iter=500).fit(
                features[rows], labels
            )
    return models


def choose_severity(kind: str, probas: dict[str, float], critical_threshold: float) -> str:
    """The likeliest allowed severity, but ``critical`` once it passes the threshold."""
    allowed = taxonomy.ALLOWED_SEVERITIES[kind]
    if "critical" in allowed and probas.get("critical", 0.0) >= critical_threshold:
        return "critical"
    candidates = {s: probas.get(s, 0.0) for s in allowed}
    return max(candidates, key=lambda s: (candidates[s], -taxonomy.severity_rank(s)))


class Classifier:
    """The shipped model: ``Classifier.load().predict(messages)``."""

    def __init__(self, fitted: _Fitted, metadata: dict[str, Any]) -> None:
        self._fitted = fitted
        self.metadata = metadata

    @classmethod
    def load(cls, model_dir: Path | None = None) -> Classifier:
        """Load ``triage-model.skops``; a missing, foreign or stale file raises ModelError."""
        model_dir = default_model_dir() if model_dir is None else Path(model_dir)
        path = model_dir / MODEL_FILE
        if not path.exists():
            raise ModelError(f"no trained model at {path}; run `triage train` to make one")
        bundle = _load_bundle(path)
        metadata = _read_metadata(model_dir / METADATA_FILE)
        return cls(_unbundle(path, bundle), metadata)

    def predict(self, messages: Sequence[Message]) -> list[Prediction]:
        """One prediction per message, vectorised in one batch."""
        if not messages:
            return []
        return self._fitted.predict(messages)


def _load_bundle(path: Path) -> dict[str, Any]:
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises many kinds on a file that is not its own
        raise ModelError(f"{path} is not a readable skops model: {exc}") from exc
    unexpected = sorted(set(untrusted) - TRUSTED_TYPES)
    if unexpected:
        raise ModelError(f"{path} contains types triage does not trust: {', '.join(unexpected)}")
    try:
        bundle = sio.load(path, trusted=list(untrusted))
    except Exception as exc:  # version skew shows up as many kinds of error
        raise ModelError(f"{path} cannot be loaded with this scikit-learn/skops: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT_VERSION:
        raise ModelError(f"{path} is not a triage model of format {FORMAT_VERSION}; retrain it")
    return bundle


def _unbundle(path: Path, bundle: dict[str, Any]) -> _Fitted:
    try:
        fitted = _Fitted(
            vectorizers={name: bundle[name] for name in ("word", "char", "meta", "signal")},
            type_model=bundle["type_model"],
            severity_models=dict(bundle["severity_models"]),
            critical_threshold=float(bundle["critical_threshold"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} lacks part of the model ({exc}); retrain it") from exc
    unknown = sorted(set(map(str, fitted.type_model.classes_)) - set(taxonomy.TYPES))
    if unknown:
        raise ModelError(f"{path} was trained on types this triage does not know: {unknown}")
    return fitted


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable model metadata: {exc}") from exc


def save(fitted: _Fitted, path: Path) -> None:
    bundle = {
        "format": FORMAT_VERSION,
        **fitted.vectorizers,
        "type_model": fitted.type_model,
        "severity_models": fitted.severity_models,
        "critical_threshold": fitted.critical_threshold,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # The vocabularies are JSON inside the zip: deflating takes the file from ~19 MB to ~3 MB.
    sio.dump(bundle, path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)


# --- training and held-out evaluation ---------------------------------------------


@dataclass
class Scores:
    """Held-out scores of one slice of the corpus (all of it, or one language)."""

    mails: int
    type_macro_f1: float
    type_f1: dict[str, float]
    severity_accuracy: float
    critical_recall: float
    critical_precision: float
    criticals: int


@dataclass
class TrainReport:
    mails: int
    families: int
    folds: int
    critical_threshold: float
    overall: Scores
    by_lang: dict[str, Scores]
    threshold_tradeoff: list[dict[str, float]]
    counts: dict[str, dict[str, int]]
    seconds: dict[str, float] = field(default_factory=dict)
    confusions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Corpus:
    messages: list[Message]
    types: list[str]
    severities: list[str]
    families: list[str]
    langs: list[str]
    digest: str


def read_corpus(corpus_dir: Path) -> _Corpus:
    """Parse every mail listed in ``labels.csv``."""
    import hashlib

    from triage.corpus import read_labels

    rows = read_labels(corpus_dir)
    if not rows:
        raise ModelError(f"{corpus_dir}/labels.csv lists no mail; render the corpus first")
    digest = hashlib.sha256()
    messages = []
    for row in rows:
        try:
            raw = (corpus_dir / row.path).read_bytes()
        except OSError as exc:
            raise ModelError(f"{corpus_dir / row.path}: {exc.strerror}") from exc
        digest.update(raw)
        messages.append(parse(raw))
    return _Corpus(
        messages,
        [r.type for r in rows],
        [r.severity for r in rows],
        [r.family for r in rows],
        [r.lang for r in rows],
        digest.hexdigest(),
    )


def _scores(
    true_t: Sequence[str], pred_t: Sequence[str], true_s: Sequence[str], pred_s: Sequence[str]
) -> Scores:
    labels = sorted(set(true_t))
    f1 = f1_score(true_t, pred_t, labels=labels, average=None, zero_division=0)
    crit_true = np.array([s == "critical" for s in true_s])
    crit_pred = np.array([s == "critical" for s in pred_s])
    hits = int((crit_true & crit_pred).sum())
    return Scores(
        mails=len(true_t),
        type_macro_f1=round(float(np.mean(f1)), 4),
        type_f1={label: round(float(v), 4) for label, v in zip(labels, f1, strict=True)},
        severity_accuracy=round(float(accuracy_score(true_s, pred_s)), 4),
        critical_recall=round(hits / max(int(crit_true.sum()), 1), 4),
        critical_precision=round(hits / max(int(crit_pred.sum()), 1), 4),
        criticals=int(crit_true.sum()),
    )


def _held_out(corpus: _Corpus, folds: int) -> tuple[list[str], list[float], list[dict[str, float]]]:
    """Out-of-fold types and severity probabilities, whole families held out."""
    n = len(corpus.messages)
    kinds: list[str] = [""] * n
    confs: list[float] = [0.0] * n
    probas: list[dict[str, float]] = [{}] * n
    splitter = GroupKFold(n_splits=folds)
    for number, (train_idx, test_idx) in enumerate(
        splitter.split(corpus.messages, corpus.types, corpus.families), start=1
    ):
        fitted = _Fitted.fit(
            [corpus.messages[i] for i in train_idx],
            [corpus.types[i] for i in train_idx],
            [corpus.severities[i] for i in train_idx],
            [corpus.families[i] for i in train_idx],
            critical_threshold=0.5,
        )
        k, c, p = fitted.scores([corpus.messages[i] for i in test_idx])
        for pos, i in enumerate(test_idx):
            kinds[i], confs[i], probas[i] = k[pos], c[pos], p[pos]
        log.info("fold %d/%d done", number, folds)
    return kinds, confs, probas


def _tradeoff(
    corpus: _Corpus, kinds: list[str], probas: list[dict[str, float]]
) -> list[dict[str, float]]:
    rows = []
    for threshold in CRITICAL_THRESHOLDS:
        sev = [choose_severity(k, p, threshold) for k, p in zip(kinds, probas, strict=True)]
        s = _scores(corpus.types, kinds, corpus.severities, sev)
        rows.append(
            {
                "threshold": threshold,
                "critical_recall": s.critical_recall,
                "critical_precision": s.critical_precision,
                "severity_accuracy": s.severity_accuracy,
            }
        )
    return rows


def pick_threshold(tradeoff: list[dict[str, float]]) -> float:
    """The highest threshold whose held-out critical recall meets the goal (else the lowest)."""
    for row in tradeoff:  # ordered from high to low threshold
        if row["critical_recall"] >= CRITICAL_RECALL_GOAL:
            return row["threshold"]
    return tradeoff[-1]["threshold"]


def _confusions(corpus: _Corpus, kinds: list[str], severities: list[str]) -> list[dict[str, Any]]:
    pairs = Counter(
        (f"{t}/{s}", f"{k}/{p}")
        for t, s, k, p in zip(corpus.types, corpus.severities, kinds, severities, strict=True)
        if (t, s) != (k, p)
    )
    return [{"true": a, "predicted": b, "mails": n} for (a, b), n in pairs.most_common(15)]


def _counts(corpus: _Corpus) -> dict[str, dict[str, int]]:
    return {
        "type": dict(sorted(Counter(corpus.types).items())),
        "cell": dict(sorted(Counter(map(_cell, corpus.types, corpus.severities)).items())),
        "lang": dict(sorted(Counter(corpus.langs).items())),
        "families_per_lang": dict(
            sorted(
                Counter(
                    lang for lang, _ in set(zip(corpus.langs, corpus.families, strict=True))
                ).items()
            )
        ),
    }


def evaluate(corpus: _Corpus, folds: int) -> TrainReport:
    kinds, _, probas = _held_out(corpus, folds)
    tradeoff = _tradeoff(corpus, kinds, probas)
    threshold = pick_threshold(tradeoff)
    sev = [choose_severity(k, p, threshold) for k, p in zip(kinds, probas, strict=True)]
    by_lang = {}
    for lang in sorted(set(corpus.langs)):
        idx = [i for i, value in enumerate(corpus.langs) if value == lang]
        by_lang[lang] = _scores(
            [corpus.types[i] for i in idx],
            [kinds[i] for i in idx],
            [corpus.severities[i] for i in idx],
            [sev[i] for i in idx],
        )
    return TrainReport(
        mails=len(corpus.messages),
        families=len(set(corpus.families)),
        folds=folds,
        critical_threshold=threshold,
        overall=_scores(corpus.types, kinds, corpus.severities, sev),
        by_lang=by_lang,
        threshold_tradeoff=tradeoff,
        counts=_counts(corpus),
        confusions=_confusions(corpus, kinds, sev),
    )


def train(
    corpus_dir: Path, out_dir: Path, folds: int = 5,
    extra_samples: Sequence[tuple[Message, str, str, str]] = (),
) -> TrainReport:
    """Evaluate on held-out families, fit on everything, write model, metadata and card.

    ``extra_samples`` (message, type, severity, family), e.g. a seller's corrections,
    join the final fit only: the held-out scores stay those of the corpus.
    """
    started = time.perf_counter()
    corpus = read_corpus(Path(corpus_dir))
    parsed = time.perf_counter()
    families = len(set(corpus.families))
    if folds < 2 or families < folds:
        raise ModelError(f"need at least {folds} families for {folds} folds, found {families}")
    report = evaluate(corpus, folds)
    evaluated = time.perf_counter()
    extra = list(zip(*extra_samples, strict=True)) or [(), (), (), ()]
    fitted = _Fitted.fit(
        [*corpus.messages, *extra[0]], [*corpus.types, *extra[1]],
        [*corpus.severities, *extra[2]], [*corpus.families, *extra[3]],
        report.critical_threshold,
    )
    out_dir = Path(out_dir)
    save(fitted, out_dir / MODEL_FILE)
    report.seconds = {
        "read_and_parse": round(parsed - started, 1),
        "cross_validation": round(evaluated - parsed, 1),
        "final_fit_and_save": round(time.perf_counter() - evaluated, 1),
        "total": round(time.perf_counter() - started, 1),
    }
    metadata = _metadata(report, corpus.digest)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    (out_dir / CARD_FILE).write_text(model_card(metadata), encoding="utf-8")
    return report


def _metadata(report: TrainReport, digest: str) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            "scikit-learn": sklearn.__version__,
            "skops": skops.__version__,
            "numpy": np.__version__,
        },
        "labels": {
            "types": list(taxonomy.TYPES),
            "severities": {k: list(v) for k, v in taxonomy.ALLOWED_SEVERITIES.items()},
        },
        "corpus_sha256": digest,
        "features": {"body_cap": BODY_CAP, "char_cap": CHAR_CAP},
        **asdict(report),
    }


def format_report(report: TrainReport) -> str:
    o = report.overall
    lines = [
        f"{report.mails} mails, {report.families} families, {report.folds}-fold CV by family",
        f"type macro-F1 {o.type_macro_f1:.3f}  severity exact {o.severity_accuracy:.3f}  "
        f"critical recall {o.critical_recall:.3f} precision {o.critical_precision:.3f} "
        f"(threshold {report.critical_threshold})",
        "per type F1: " + "  ".join(f"{k} {v:.3f}" for k, v in o.type_f1.items()),
    ]
    for lang, s in report.by_lang.items():
        lines.append(
            f"  {lang}: {s.mails} mails  type macro-F1 {s.type_macro_f1:.3f}  severity "
            f"{s.severity_accuracy:.3f}  critical recall {s.critical_recall:.3f}"
        )
    lines.append("seconds: " + ", ".join(f"{k} {v}" for k, v in report.seconds.items()))
    return "\n".join(lines)


def train_command(args: argparse.Namespace) -> int:
    from triage.corpus import default_corpus_dir, render_corpus

    corpus_dir = Path(args.corpus) if args.corpus else default_corpus_dir()
    out_dir = Path(args.out) if args.out else default_model_dir()
    with tempfile.TemporaryDirectory(prefix="triage-corpus-") as work:
        if not (corpus_dir / "labels.csv").exists():
            # An installed package ships the families only: render them aside, never
            # into the package's own folder.
            shutil.copytree(corpus_dir / "families", Path(work) / "families")
            corpus_dir = Path(work)
            args.render = True
        if getattr(args, "render", False):
            rows = render_corpus(corpus_dir)
            print(f"rendered {len(rows)} mails")
        report = train(corpus_dir, out_dir, folds=args.folds)
    print(format_report(report))
    print(f"model written to {out_dir / MODEL_FILE}")
    return 0


# --- the model card ---------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def model_card(meta: dict[str, Any]) -> str:
    """The model card (``models/README.md``) written from the metadata of one training run."""
    o, counts = meta["overall"], meta["counts"]
    langs = meta["by_lang"]
    lang_rows = [
        (
            lang,
            s["mails"],
            counts["families_per_lang"].get(lang, 0),
            f"{s['type_macro_f1']:.3f}",
            f"{s['severity_accuracy']:.3f}",
            f"{s['critical_recall']:.3f} ({s['criticals']})",
        )
        for lang, s in langs.items()
    ]
    type_rows = [
        (t, counts["type"].get(t, 0), f"{o['type_f1'].get(t, 0):.3f}") for t in taxonomy.TYPES
    ]
    cell_rows = list(counts["cell"].items())
    trade_rows = [
        (
            r["threshold"],
            f"{r['critical_recall']:.3f}",
            f"{r['critical_precision']:.3f}",
            f"{r['severity_accuracy']:.3f}",
        )
        for r in meta["threshold_tradeoff"]
    ]
    confusion_rows = [(c["true"], c["predicted"], c["mails"]) for c in meta["confusions"]]
    v = meta["versions"]
    return CARD.format(
        mails=meta["mails"],
        families=meta["families"],
        folds=meta["folds"],
        trained_at=meta["trained_at"],
        digest=meta["corpus_sha256"][:16],
        macro=o["type_macro_f1"],
        sev=o["severity_accuracy"],
        crec=o["critical_recall"],
        cprec=o["critical_precision"],
        threshold=meta["critical_threshold"],
        lang_table=_table(
            (
                "lang",
                "mails",
                "families",
                "type macro-F1",
                "severity exact",
                "critical recall (criticals)",
            ),
            lang_rows,
        ),
        type_table=_table(("type", "mails", "held-out F1"), type_rows),
        cell_table=_table(("type/severity", "mails"), cell_rows),
        trade_table=_table(
            ("threshold", "critical recall", "critical precision", "severity exact"), trade_rows
        ),
        confusion_table=_table(("true", "predicted", "mails"), confusion_rows),
        seconds=", ".join(f"{k} {s} s" for k, s in meta["seconds"].items()),
        sklearn=v["scikit-learn"],
        skops=v["skops"],
        numpy=v["numpy"],
        body_cap=BODY_CAP,
        char_cap=CHAR_CAP,
        goal=CRITICAL_RECALL_GOAL,
        signal_weight=WEIGHTS.get("signal", 1.0),
        heldout=meta.get("heldout_note", HELDOUT_NONE),
    )


HELDOUT_NONE = (
    "Not scored for this model yet: `python models/heldout/evaluate.py` scores it on mail\n"
    "written apart from the corpus (its wording is in no family)."
)

CARD = """# triage classifier: model card

Written by `triage train`; do not edit by hand (retrain instead).
Trained {trained_at} on {mails} mails from {families} template families
(corpus sha256 `{digest}...`).

## What it does

Given one parsed mail, it names its **type** (one of the twelve in the taxonomy) and its
**severity** (one the policy table allows for that type), with the probability of the type
as `confidence`. The seller's `rules.yaml` and the trust check (is this really Amazon?)
run after it; the model never decides whether mail is genuine.

## Data

The corpus lives in `models/corpus/`. Its source is *template families*
(`families/<lang>/<family>.yaml`): each is one way of writing one kind of mail (one Amazon
template of one era, or one style of buyer), with several subjects and bodies and
`[[a|b]]` alternatives. `python -m triage.corpus` renders each family deterministically
into raw RFC 5322 mail (`mail/<lang>/<family>/NNNN.eml`: HTML notice layouts, text, or
multipart/alternative; quoted-printable, base64 or 8bit) with realistic random slot values
(names, orders, ASINs, amounts in the marketplace's currency, dates in the language's
format) and writes `labels.csv`. The mail was written for this project from the public
shape of Amazon seller notifications and buyer messages; it contains no real person's mail.

{lang_table}

{type_table}

<details><summary>Mails per type/severity cell</summary>

{cell_table}

</details>

## Method

- Text: subject plus the first {body_cap} characters of the readable body (HTML tags
  dropped, digits folded to 0 so order numbers and amounts teach shape, not values).
- Features: TF-IDF word 1-2-grams; TF-IDF `char_wb` 3-4-grams of the first {char_cap}
  characters (they carry across languages and inflections); tokens for the sender's
  address local part, Amazon or not, subdomain, display-name words and the
  `X-Space-Notification-Type` header.
- Concepts (`triage/signals.py`): a small hand-written lexicon in English, German, French,
  Italian and Spanish names what a person looks for — suspended / at risk / reinstated,
  verification and deadlines, a metric above its target or back in it, a claim filed /
  a response required / decided for or against the seller, chargebacks, listings removed
  for policy vs. a warning with nothing removed yet, IP complaints, must ship today /
  overdue, cancellations, returns and refunds, stranded stock, inbound problems, restock
  limits, removal orders, storage fees, new listings, declined payments, funds on hold,
  disbursements and invoices, undelivered messages, webinars, promotions, surveys,
  advertising, shopping mail about one's own purchase — and reads star ratings
  ("1 out of 5", "★★☆☆☆", "Rating: 2", "2 Sterne", "2 étoiles", "2 stelle",
  "2 estrellas") into low / mid / high. Each becomes a token (`c:` anywhere, `s:` in the
  subject) in a block weighted {signal_weight}x, not filtered by family: because the
  lexicon, not one template, names a concept, it carries over to wording and languages
  the model never saw. A few negations are handled ("no listing has been removed yet",
  "you will not be debited", "now below the target").
- Type: multinomial logistic regression over all blocks. Severity: one logistic
  regression per type with a choice of severity, trained on that type's mail only, and
  clamped to the policy table; `critical` is said as soon as its probability within the
  type reaches **{threshold}** (the highest threshold whose held-out critical recall met
  {goal}), since a missed critical costs far more than a false alarm.
- Saved with skops (`triage-model.skops`, deflated); loading refuses any type outside a
  fixed list.

## Held-out scores

{folds}-fold cross-validation that holds out **whole families** (`GroupKFold` on the family),
so every score is on wording the model never saw in training.

- type macro-F1: **{macro:.3f}**
- severity exactly right: **{sev:.3f}**
- critical recall: **{crec:.3f}**, precision {cprec:.3f}

Critical threshold trade-off (held out):

{trade_table}

Most frequent held-out mistakes:

{confusion_table}

Timing of this run: {seconds}.

## Blind held-out set

{heldout}

## Limits

- The corpus is written, not collected: it teaches the signals a person uses (what
  happened, what is asked, the stakes), but real templates change and new ones appear.
  Mail unlike any family (a new Amazon programme, an unusual buyer) can be misread;
  confidence is then usually low.
- Severity inside a type depends on a few words ("granted to the buyer" vs "in your
  favour", star counts); the held-out severity score above is the honest figure.
- The concept lexicon (`triage/signals.py`) matches the start of a word: German
  compounds are caught only where the lexicon spells them out (`Rücksendeanfrage`,
  `Kontosperrung`, `Produktbewertung`). Negation is handled for a few phrases only ("no
  listing has been removed", "will not be debited", "now below the target", "may be
  removed"); other negations read like the plain statement.
- Summaries that mention several ratings ("Positive 98 %, Negative 0 %") and inventory
  notices between routine and urgent (a shipment checked in vs. one with missing units)
  are the weakest cells in the held-out families above.
- Only English, German, French, Italian and Spanish are covered.
- Phishing that copies Amazon's wording is classified like the mail it imitates (a few
  phishing families teach that an unknown domain which names Amazon is read by its
  content); telling it apart is the trust check's job, not the model's.

## Versions

scikit-learn {sklearn}, skops {skops}, numpy {numpy}. A model file from other versions may
refuse to load; `triage train` rebuilds it.

## Retraining with your own corrected mail

1. Add families under `models/corpus/families/<lang>/` (copy one of the same type and
   rewrite its subjects and bodies in the way your mail is written), or fix a label.
   Slots: `{{order_id}}`, `{{asin}}`, `{{amount}}`, `{{date}}`, `{{deadline_date}}`, `{{rate}}`
   (above `{{target}}`), `{{good_rate}}` (below it), `{{tracking_rate}}` / `{{min_target}}`
   (valid tracking), `{{stars}}` / `{{star_glyphs}}` (follow a feedback family's severity);
   `[[a|b]]` picks one alternative and may nest. If your mail says something the lexicon
   does not know, add the phrase to the concept in `triage/signals.py`.
2. `python -m triage.corpus` renders the corpus again; `triage train` (or
   `triage train --render` for both) evaluates, fits and writes `triage-model.skops`,
   `metadata.json` and this card.
3. To use a model elsewhere, set `TRIAGE_MODEL_DIR` to the folder holding it.
"""
