"""The language a customer wrote in, guessed from the message text alone.

Routing and reply templates may depend on it, and most channels (SMS, WhatsApp, chat) never say.
fastText's lid.176.ftz model through fasttext-predict was chosen by bench/language_detection.py,
which weighs accuracy on our kind of text (short, typos, emojis) against zip size and cold start.
Guessing is best effort: no text, too little text, a missing model or a confused model all mean
`None` ("don't know"), never an error that fails a contact.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.enrichment.settings import (  # noqa: F401 (re-exported)
    DEFAULT_LANGUAGES,
    DEFAULT_MIN_CONFIDENCE,
)

logger = logging.getLogger(__name__)

#: Shipped next to this module (Chalice packages everything under chalicelib/); NOTICE says whose.
MODEL_PATH = Path(__file__).with_name("lid.176.ftz")
#: A message's language shows in its opening; prediction time grows with length (long emails).
MAX_CHARS = 2000
_LABEL_PREFIX = "__label__"


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    #: ISO 639-1 code as the model names it (lid.176 uses 639-1 where one exists).
    code: str
    #: The model's probability for `code`, in [0, 1].
    confidence: float
    source: str = "fasttext"


class LanguageDetector(ABC):
    """Port: guesses the language of one message.

    `detect` never raises. It does the shared work once: it returns None for missing text or text
    with fewer than two letters (a 👍, an order number), and it caps the length, collapses
    whitespace into single spaces and replaces invalid characters before `_guess` sees the text.
    """

    def detect(self, text: str | None) -> LanguageGuess | None:
        if not text or not _has_two_letters(text):
            return None
        line = " ".join(text[:MAX_CHARS].split())
        # JSON payloads can carry lone surrogates (half an emoji), which fastText's binding rejects.
        return self._guess(line.encode("utf-8", errors="replace").decode("utf-8"))

    @abstractmethod
    def _guess(self, text: str) -> LanguageGuess | None:
        """The best guess for one line of non-empty text, or None below the implementation's bar."""


class FastTextDetector(LanguageDetector):
    """fastText language identification, restricted to the languages the hub expects.

    Restricting means taking the most probable of `languages` among all the model's predictions,
    so every answer is one the hub's rules and templates can act on; its confidence stays the
    model's own probability, so a message in another language (pt) mostly falls below the bar.
    The model is loaded on the first `detect`, not at import or construction, so functions that
    never detect (the webhook Lambda) do not pay for it; it is loaded once per process and file.
    """

    def __init__(
        self,
        languages: tuple[str, ...] = DEFAULT_LANGUAGES,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        *,
        model_path: Path = MODEL_PATH,
    ) -> None:
        if not languages:
            raise ValueError("languages must name at least one language")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be between 0 and 1")
        self.languages = tuple(code.lower() for code in languages)
        self.min_confidence = min_confidence
        self.model_path = Path(model_path)
        self._wanted = frozenset(_LABEL_PREFIX + code for code in self.languages)

    def _guess(self, text: str) -> LanguageGuess | None:
        model = _shared_model(self.model_path)
        if model is None:
            return None
        try:
            labels, probabilities = model.predict(text, k=-1)
        except Exception as exc:  # noqa: BLE001 - the binding raises what it likes; never fail a contact
            logger.warning("language detection failed: %s", type(exc).__name__)
            return None
        for label, probability in zip(labels, probabilities):
            if label in self._wanted:
                # The model's softmax can exceed 1 by a rounding error.
                confidence = min(float(probability), 1.0)
                if confidence < self.min_confidence:
                    return None
                return LanguageGuess(code=label.removeprefix(_LABEL_PREFIX), confidence=confidence)
        return None


def _has_two_letters(text: str) -> bool:
    letters = 0
    for char in text:
        if char.isalpha():
            letters += 1
            if letters == 2:
                return True
    return False


# --- the model, shared by every detector in the process ----------------------------------------

_models: dict[Path, Any] = {}
_models_lock = threading.Lock()


def _shared_model(path: Path) -> Any:
    """The loaded model for `path`, or None when it cannot be loaded (warned about once)."""
    try:
        return _models[path]
    except KeyError:
        pass
    with _models_lock:
        if path not in _models:
            _models[path] = _load_model(path)
        return _models[path]


def _load_model(path: Path) -> Any:
    try:
        import fasttext  # fasttext-predict: imported here so that importing this module stays cheap
    except ImportError:
        logger.warning("language detection is off: the fasttext module (fasttext-predict) is not installed")
        return None
    try:
        return fasttext.load_model(str(path))
    except Exception as exc:  # noqa: BLE001 - ValueError for a missing or foreign file; anything else, off too
        logger.warning("language detection is off: cannot load %s (%s: %s)", path.name, type(exc).__name__, exc)
        return None
